"""Batch summary for instructors: counts by status, a score histogram, the slowest submissions."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from autograder.report.grades import STATUSES  # noqa: E402


def plot_score_histogram(rows, assignment: str):
    """Histogram of autograded scores as a fraction of the maximum; returns ``(fig, ax)``."""
    fractions = [100 * r.autograded_score / r.autograded_max for r in rows if r.autograded_max > 0]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.hist(fractions, bins=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.001], color="tab:blue",
            edgecolor="white")
    ax.set_xlabel("autograded score (% of maximum)")
    ax.set_ylabel("submissions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count of submissions is whole
    ax.set_title(f"{assignment}: {len(fractions)} graded submissions")
    fig.tight_layout()
    return fig, ax


def write_summary(rows, out_dir: Path, assignment: str, batch_seconds: float) -> Path:
    """Write ``<assignment>-summary.txt`` and ``<assignment>-scores.png``; returns the text's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {status: sum(r.status == status for r in rows) for status in STATUSES}
    slowest = sorted(rows, key=lambda r: r.seconds, reverse=True)[:5]
    graded_seconds = [r.seconds for r in rows if r.seconds > 0]
    lines = [f"assignment {assignment}: {len(rows)} submissions, batch took {batch_seconds:.0f} s",
             "status: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES)]
    if graded_seconds:
        lines.append(f"seconds per submission: mean {sum(graded_seconds) / len(graded_seconds):.1f}, "
                     f"max {max(graded_seconds):.1f}")
    lines.append("slowest: " + ", ".join(f"{r.student_id} {r.seconds:.1f} s" for r in slowest))
    for status in ("failed", "partial"):
        for row in (r for r in rows if r.status == status):
            lines.append(f"{status}: {row.student_id}: {row.reason}")
    repaired = [r for r in rows if r.repairs]
    for row in repaired:
        lines.append(f"repaired: {row.student_id}: " + "; ".join(row.repairs))
    text = out_dir / f"{assignment}-summary.txt"
    text.write_text("\n".join(lines) + "\n")
    fig, _ = plot_score_histogram(rows, assignment)
    fig.savefig(out_dir / f"{assignment}-scores.png", dpi=100)
    plt.close(fig)
    return text


def write_integrity_reports(rows, out_dir: Path, assignment: str) -> Path:
    """Write ``integrity/<student>.txt`` for each submission with something to review, and
    ``<assignment>-integrity.txt`` listing them; returns the list's path.

    Per student: test cells where the in-kernel test and the outside check disagree (the score is
    already 0 unless both passed), flags (never a change of score), and the files staging
    refused or ignored (never opened or never used).
    """
    folder = out_dir / "integrity"
    folder.mkdir(parents=True, exist_ok=True)
    def files(row):
        return [line for line in row.repairs if line.startswith(("refused ", "ignored "))]
    flagged = [r for r in rows if r.flags or r.disagreements or files(r)]
    names = {r.student_id for r in rows}
    for stale in folder.glob("*.txt"):
        if stale.stem in names and stale.stem not in {r.student_id for r in flagged}:
            stale.unlink()  # regraded and now clean
    for row in flagged:
        lines = [f"{row.student_id}: {len(row.disagreements)} test cell(s) where the in-kernel test and the outside "
                 f"check disagree, {len(row.flags)} flag(s), {len(files(row))} file(s) refused or ignored"]
        lines += [f"disagreement: {line}" for line in row.disagreements]
        lines += [f"flag: {line}" for line in row.flags]
        lines += [f"file: {line}" for line in files(row)]
        (folder / f"{row.student_id}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = out_dir / f"{assignment}-integrity.txt"
    lines = [f"assignment {assignment}: {len(flagged)} of {len(rows)} submissions to review "
             f"(flags never change a score; a test cell scores only when its in-kernel test and its outside "
             f"check both pass)"]
    lines += [f"{r.student_id}: {len(r.disagreements)} disagreement(s), {len(r.flags)} flag(s): "
              + "; ".join((r.disagreements + r.flags + files(r))[:3]) for r in flagged]
    summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return summary
