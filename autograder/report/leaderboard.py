"""The kernel leaderboard: each graded student's ``matmul_blocked`` and ``gelu_chunked``, timed in
the grading sandbox against the grading machine's own ``np.matmul`` and memory copy.

For every student with a staged submission (``.grading/submitted/``), the benchmarks in
``autograder/checks/<assignment>/leaderboard.py`` run one student at a time with one BLAS
thread. A score is the median over repeats of baseline time / kernel time: the share of the
machine's BLAS (or copy) speed the student's kernel reaches. A result whose repeats spread more
than ``MAX_SPREAD`` (interquartile range over median) is inconclusive and not ranked; a wrong
result, or a run that raised an integrity flag (``autograder/verify_driver.py``), is not ranked
either. Writes ``reports/leaderboard.html``, ``.png`` and ``.csv``; it
never touches the gradebook or ``grades.csv``: the ranking is extra credit at most.
"""
from __future__ import annotations

import argparse
import csv
import html
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import nbformat  # noqa: E402
import numpy as np  # noqa: E402

from autograder.check.answer_key import helper_files  # noqa: E402
from autograder.check.judge import decode  # noqa: E402
from autograder.check.runner import CHECKS_ROOT, check_step_id, run_checks  # noqa: E402
from autograder.course import STAGING, course_arguments, sandbox_limits  # noqa: E402
from autograder.run.sandbox import SCRATCH  # noqa: E402

KERNELS = {  # benchmark -> (notebook, baseline, unit of the machine's rate)
    "matmul_blocked": ("01_loops_and_blocking", "np.matmul", "GFLOP/s"),
    "gelu_chunked": ("02_vectorization_and_fusion", "memory copy", "GB/s"),
}
MAX_SPREAD = 0.25
NICKNAME_FILE = "nickname.txt"
NICKNAME = re.compile(r"^[A-Za-z0-9 _.\-]{1,24}$")


@dataclass
class Entry:
    """One student's result for one kernel."""

    student: str
    shown_as: str
    kernel: str
    status: str                       # ranked | inconclusive | flagged | incorrect | too slow | not run
    score: float | None = None        # median baseline/kernel time, e.g. 0.4 = 40 % of BLAS speed
    spread: float | None = None       # interquartile range of the ratios over their median
    kernel_s: float | None = None     # median seconds per kernel call
    machine_rate: float | None = None  # the baseline's rate in this run (GFLOP/s or GB/s)
    detail: str = ""
    rank: int | None = None


def shown_name(root: Path, assignment: str, student: str) -> str:
    """The student's opt-in nickname (first line of ``nickname.txt`` in the submission), else the id."""
    path = root / "submitted" / student / assignment / NICKNAME_FILE
    if path.is_file():
        lines = path.read_text(errors="replace").strip().splitlines()
        nickname = lines[0].strip() if lines else ""
        if NICKNAME.match(nickname):
            return nickname
    return student


def score_entry(student: str, shown_as: str, kernel: str, observations: dict | None, error: str | None,
                flags: list[str] = ()) -> Entry:
    """An ``Entry`` from one benchmark probe's observations (and the integrity flags of its run)."""
    if observations is None:
        return Entry(student, shown_as, kernel, "not run", detail=error or "no result")
    if flags:
        return Entry(student, shown_as, kernel, "flagged", detail="; ".join(flags[:2]))
    values = {name: decode(obs["value"]) for name, obs in observations.items()}
    kernel_s, baseline_s, work = values["kernel_s"], values["baseline_s"], values["work"]
    if values["correct"] is not True:
        return Entry(student, shown_as, kernel, "incorrect", detail="wrong result on the benchmark input")
    if not baseline_s:
        return Entry(student, shown_as, kernel, "too slow", kernel_s=float(kernel_s[0]),
                     detail=f"{kernel_s[0]:.1f} s per call: not repeated")
    ratios = np.asarray(baseline_s) / np.asarray(kernel_s)
    median = float(np.median(ratios))
    q25, q75 = np.percentile(ratios, [25, 75])
    spread = float((q75 - q25) / median) if median > 0 else float("inf")
    rate = work / float(np.median(baseline_s)) / 1e9
    status = "ranked" if spread <= MAX_SPREAD else "inconclusive"
    return Entry(student, shown_as, kernel, status, median, spread, float(np.median(kernel_s)), rate,
                 "" if status == "ranked" else f"repeats spread {spread:.0%} (limit {MAX_SPREAD:.0%})")


def benchmark_student(root: Path, assignment: str, student: str, benchmarks: str) -> list[Entry]:
    """Run every leaderboard benchmark (``benchmarks``: the text of the leaderboard's checks file)
    on one student's staged submission."""
    staged = root / STAGING / "submitted" / student / assignment
    release = root / "release" / assignment
    shown = shown_name(root, assignment, student)
    entries = []
    for kernel, (notebook, _, _) in KERNELS.items():
        path = staged / f"{notebook}.ipynb"
        if not path.is_file():
            entries.append(Entry(student, shown, kernel, "not run", detail=f"{notebook}.ipynb not submitted"))
            continue
        outcome = run_checks(nbformat.read(path, as_version=4), benchmarks, 0, helper_files(release),
                             nbformat.read(release / f"{notebook}.ipynb", as_version=4), course_root=root,
                             scratch_root=root / STAGING / SCRATCH, limits=sandbox_limits(), only=[kernel], threads=1)
        result = outcome.steps[check_step_id(kernel, 0)]
        entries.append(score_entry(student, shown, kernel, result.observations if result.ok else None,
                                   result.error or result.failure, outcome.flags))
    return entries


def rank(entries: list[Entry]) -> list[Entry]:
    """Entries of one kernel, ranked ones first by score (highest first), then the rest by status."""
    ranked = sorted((e for e in entries if e.status == "ranked"), key=lambda e: -e.score)
    for number, entry in enumerate(ranked, 1):
        entry.rank = number
    order = ("inconclusive", "too slow", "flagged", "incorrect", "not run")
    return ranked + sorted((e for e in entries if e.status != "ranked"),
                           key=lambda e: (order.index(e.status), e.shown_as))


def plot_leaderboard(boards: dict[str, list[Entry]]):
    """One horizontal bar chart per kernel: score as % of the machine's baseline; returns ``(fig, axes)``."""
    fig, axes = plt.subplots(1, len(boards), figsize=(6.0 * len(boards), 0.5 + 0.35 * max(
        [len(b) for b in boards.values()] + [3])), squeeze=False)
    for ax, (kernel, entries) in zip(axes[0], boards.items()):
        shown = [e for e in entries if e.score is not None]
        names = [e.shown_as for e in shown][::-1]
        values = [100 * e.score for e in shown][::-1]
        colors = ["tab:blue" if e.status == "ranked" else "lightgray" for e in shown][::-1]
        ax.barh(names, values, color=colors)
        ax.set_xlabel(f"speed (% of this machine's {KERNELS[kernel][1]})")
        ax.set_title(f"{kernel} (grey: inconclusive)")
    fig.tight_layout()
    return fig, axes


def write_leaderboard(boards: dict[str, list[Entry]], out_dir: Path, assignment: str) -> Path:
    """Write ``leaderboard.html``, ``leaderboard.png`` and ``leaderboard.csv``; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, _ = plot_leaderboard(boards)
    fig.savefig(out_dir / "leaderboard.png", dpi=100)
    plt.close(fig)
    with (out_dir / "leaderboard.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kernel", "rank", "student_id", "shown_as", "status", "score_percent", "spread_percent",
                         "kernel_seconds", "detail"])
        for kernel, entries in boards.items():
            for e in entries:
                writer.writerow([kernel, e.rank or "", e.student, e.shown_as, e.status,
                                 "" if e.score is None else f"{100 * e.score:.2f}",
                                 "" if e.spread is None else f"{100 * e.spread:.1f}",
                                 "" if e.kernel_s is None else f"{e.kernel_s:.6f}", e.detail])
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(assignment)} leaderboard</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}</style>",
             f"<h1>{html.escape(assignment)}: kernel leaderboard</h1>",
             "<p>Each score is the median, over repeats after a warm-up, of the machine's own baseline time "
             "divided by the kernel's time on the same input, measured one after the other in the same "
             f"process with one BLAS thread. Results whose repeats spread more than {MAX_SPREAD:.0%} are "
             "marked inconclusive instead of ranked. The ranking is extra credit at most; it never changes "
             "an autograded score.</p>", "<img src='leaderboard.png' alt='leaderboard chart'>"]
    for kernel, entries in boards.items():
        rates = [e.machine_rate for e in entries if e.machine_rate]
        machine = (f"; this machine's {KERNELS[kernel][1]}: {np.median(rates):.3g} {KERNELS[kernel][2]}"
                   if rates else "")
        parts.append(f"<h2>{html.escape(kernel)}</h2><p>score = % of {KERNELS[kernel][1]} speed{machine}</p>")
        parts.append("<table><tr><th>rank</th><th>student</th><th>score</th><th>spread</th>"
                     "<th>seconds per call</th><th>status</th></tr>")
        for e in entries:
            cells = [str(e.rank or ""), html.escape(e.shown_as),
                     "" if e.score is None else f"{100 * e.score:.1f} %",
                     "" if e.spread is None else f"{100 * e.spread:.0f} %",
                     "" if e.kernel_s is None else f"{e.kernel_s:.4g}",
                     html.escape(e.status + (f": {e.detail}" if e.detail else ""))]
            parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    page = out_dir / "leaderboard.html"
    page.write_text("\n".join(parts) + "\n")
    return page


def build_leaderboard(root: Path, assignment: str, students: list[str] | None = None,
                      checks_root: Path = CHECKS_ROOT) -> tuple[Path, dict[str, list[Entry]]]:
    """Benchmark ``students`` (default: every staged submission) and write the leaderboard."""
    staged = root / STAGING / "submitted"
    if students is None:
        students = sorted(d.name for d in staged.iterdir() if (d / assignment).is_dir()) if staged.is_dir() else []
    benchmarks = (checks_root / assignment / "leaderboard.py").read_text()
    boards: dict[str, list[Entry]] = {kernel: [] for kernel in KERNELS}
    for student in students:
        for entry in benchmark_student(root, assignment, student, benchmarks):
            boards[entry.kernel].append(entry)
    boards = {kernel: rank(entries) for kernel, entries in boards.items()}
    return write_leaderboard(boards, root / "reports", assignment), boards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    course_arguments(parser, "only this student (repeatable)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if not (root / STAGING / "submitted").is_dir():
        print(f"error: nothing graded under {root / STAGING / 'submitted'}: run 'make autograde' first",
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    page, boards = build_leaderboard(root, args.assignment, args.student)
    counts = ", ".join(f"{kernel}: {sum(e.status == 'ranked' for e in entries)} ranked of {len(entries)}"
                       for kernel, entries in boards.items())
    print(f"leaderboard: {counts}; wrote {page} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
