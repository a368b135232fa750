"""``python -m autograder.build source|release``: build ``source/`` from ``modules/``, or ``release/``
from ``source/``; a refused build names every problem and leaves the previous output in place."""
from __future__ import annotations

import argparse
import sys

from autograder.build.release import build_release
from autograder.build.source import BuildError, build_source, display_path
from autograder.course import course_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.build", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["source", "release"])
    course_arguments(parser)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.step == "source":
            written = build_source(root / "modules", root / "source")
            print(f"source: {len(written)} notebooks written under {display_path(root / 'source')}")
        else:
            release_dir = build_release(root, args.assignment)
            count = len(list(release_dir.glob("*.ipynb")))
            print(f"release: {count} notebooks in {display_path(release_dir)}, no solutions or model answers; "
                  f"{display_path(root / 'gradebook.db')} records the assignment and its points for grading")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
