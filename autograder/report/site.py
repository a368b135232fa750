"""Render the course to ``site/``: reference notebooks executed, student notebooks as released.

``site/index.html`` links every page and says how long each reference notebook took to run. Every
page is a self-contained file that reads offline (``autograder.report.html``).
"""
from __future__ import annotations

import argparse
import html
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.build.source import BuildError
from autograder.course import QUIET_KERNEL, course_arguments, ipc_kernel_manager, tool_environment
from autograder.report.html import html_exporter


def execute_in_order(notebooks: list[Path], graded_sizes: bool) -> list[tuple[nbformat.NotebookNode, float]]:
    """Execute ``notebooks`` one after another in one scratch copy of their folder.

    Later notebooks may read what earlier ones saved (notebook 02 plots notebook 01's kernels).
    Returns each executed notebook with its run time in seconds.
    """
    extra = {"NBGRADER_EXECUTION": "autograde"} if graded_sizes else {}
    env = tool_environment(**extra)
    results = []
    with tempfile.TemporaryDirectory(prefix="site-") as tmp:
        workdir = Path(tmp) / "work"
        shutil.copytree(notebooks[0].parent, workdir,
                        ignore=shutil.ignore_patterns("__pycache__", "measurements", ".ipynb_checkpoints"))
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, km=ipc_kernel_manager(workdir), timeout=600, extra_arguments=QUIET_KERNEL,
                                    resources={"metadata": {"path": str(workdir)}})
            client.owns_km = True  # shut the kernel down when done
            start = time.perf_counter()
            try:
                client.execute(env=env, cwd=str(workdir))
            except CellExecutionError as exc:
                raise BuildError(f"{path.name} failed while executing:\n{exc}") from None
            results.append((nb, time.perf_counter() - start))
    return results


def render_site(root: Path, assignment: str, graded_sizes: bool = False) -> Path:
    """Write ``site/`` for ``assignment``; returns the path of ``site/index.html``."""
    source_dir = root / "source" / assignment
    release_dir = root / "release" / assignment
    notebooks = sorted(source_dir.glob("*.ipynb"))
    if not notebooks or not release_dir.is_dir():
        raise BuildError(f"nothing to render: run 'make release' first ({source_dir}, {release_dir})")
    exporter = html_exporter()
    site = root / "site"
    for sub in ("reference", "student"):
        shutil.rmtree(site / sub, ignore_errors=True)
        (site / sub).mkdir(parents=True)
    rows = []
    for path, (nb, seconds) in zip(notebooks, execute_in_order(notebooks, graded_sizes), strict=True):
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        (site / "reference" / f"{path.stem}.html").write_text(body, encoding="utf-8")
        student_nb = nbformat.read(release_dir / path.name, as_version=4)
        body, _ = exporter.from_notebook_node(student_nb, resources={"metadata": {"name": path.stem}})
        (site / "student" / f"{path.stem}.html").write_text(body, encoding="utf-8")
        rows.append((path.stem, seconds))
        print(f"{path.stem}: executed in {seconds:.1f} s", flush=True)
    sizes = "the sizes used under grading" if graded_sizes else "full benchmark sizes"
    items = "\n".join(
        f'<tr><td>{html.escape(name)}</td><td><a href="reference/{name}.html">reference, executed</a></td>'
        f'<td><a href="student/{name}.html">student version</a></td><td>{seconds:.1f} s</td></tr>'
        for name, seconds in rows)
    index = site / "index.html"
    index.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Acceleration Lab: {html.escape(assignment)}</title>
<style>body {{font-family: sans-serif; max-width: 50em; margin: 2em auto}}
td, th {{padding: 0.3em 1em; text-align: left}}</style></head>
<body><h1>Acceleration Lab: {html.escape(assignment)}</h1>
<p>Reference notebooks executed on this machine at {sizes}, {time.strftime('%Y-%m-%d %H:%M')};
student versions as released, solutions and hidden tests removed.</p>
<table><tr><th>notebook</th><th>reference</th><th>student</th><th>run time</th></tr>
{items}
</table></body></html>
""", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    course_arguments(parser)
    parser.add_argument("--graded-sizes", action="store_true",
                        help="run benchmarks at the small sizes used under grading (a quick preview)")
    args = parser.parse_args(argv)
    try:
        index = render_site(args.root.resolve(), args.assignment, args.graded_sizes)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"site: open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
