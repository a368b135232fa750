"""``python -m autograder.distributed autograde|worker|grades|status|feedback|leaderboard``: the
Makefile's targets when ``GRADEBOOK=`` (and ``BROKER=``) are given."""
from __future__ import annotations

import sys

from autograder.distributed import autograde, reports, worker

COMMANDS = ("autograde", "worker", "grades", "status", "feedback", "leaderboard")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m autograder.distributed {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "autograde":
        return autograde.main(rest)
    if command == "worker":
        return worker.main(rest)
    return reports.main(command, rest)


if __name__ == "__main__":
    sys.exit(main())
