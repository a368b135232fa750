"""End to end on the real assignment: the demo's three submissions, feedback, broken input, site.

These tests share one demo course (built once, in one xdist worker).
"""
from __future__ import annotations

import csv
import html
import re
import subprocess
import sys

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder.build.release import find_leaks
from autograder.course import REPO, gradebook_url, is_autograded_test, nbgrader_meta, tool_environment
from autograder.grade import grade_all
from autograder.report.feedback import check_lines

pytestmark = pytest.mark.xdist_group("demo")
ASSIGNMENT = "acceleration"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, built_source):
    folder = tmp_path_factory.mktemp("course") / "demo"
    result = subprocess.run([sys.executable, "-m", "autograder.demo", "--dir", str(folder),
                             "--source", str(built_source)],
                            cwd=REPO, capture_output=True, text=True, env=tool_environment(), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder, result.stdout


def rows(folder):
    with (folder / "grades.csv").open(newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def autograded_cell_scores(folder, student):
    """(notebook, grade_id) -> (auto score, max) for every autograded test cell."""
    scores = {}
    with Gradebook(gradebook_url(folder)) as gb:
        for nb_path in sorted((folder / "source" / ASSIGNMENT).glob("*.ipynb")):
            source = nbformat.read(nb_path, as_version=4)
            record = gb.find_submission_notebook(nb_path.stem, ASSIGNMENT, student)
            grades = {g.name: g for g in record.grades}
            for cell in source.cells:
                if is_autograded_test(cell):
                    grade = grades[nbgrader_meta(cell)["grade_id"]]
                    scores[nb_path.stem, grade.name] = (grade.auto_score, grade.max_score)
    return scores


def test_demo_prints_a_table_of_three_scores(demo):
    _, out = demo
    for student in ("demo-reference", "demo-untouched", "demo-partly-wrong"):
        assert re.search(rf"^{student}\s.*\s(graded|partial)", out, re.M), out


def test_reference_full_untouched_zero_partly_wrong_between(demo):
    folder, _ = demo
    table = rows(folder)
    notebooks = sorted(p.stem for p in (folder / "source" / ASSIGNMENT).glob("*.ipynb"))
    assert list(next(iter(table.values())))[:len(notebooks) + 1] == ["student_id", *notebooks]
    ref, blank, wrong = (table[s] for s in ("demo-reference", "demo-untouched", "demo-partly-wrong"))
    assert float(ref["autograded_max"]) > 0
    assert float(ref["autograded_score"]) == float(ref["autograded_max"])
    assert float(blank["autograded_score"]) == 0 and float(blank["total"]) == 0
    assert 0 < float(wrong["autograded_score"]) < float(wrong["autograded_max"])
    assert all(row["status"] == "graded" for row in (ref, blank, wrong))
    assert int(ref["manual_pending"]) > 0, "the reference's written answers must await a TA"
    for nb in notebooks:
        assert float(wrong[nb]) < float(ref[nb]), f"the partly wrong submission lost nothing in {nb}"


def test_every_autograded_cell_full_for_reference_and_zero_for_release(demo):
    folder, _ = demo
    reference = autograded_cell_scores(folder, "demo-reference")
    untouched = autograded_cell_scores(folder, "demo-untouched")
    assert reference and reference.keys() == untouched.keys()
    assert [cell for cell, (score, top) in reference.items() if score != top] == []
    assert [cell for cell, (score, _) in untouched.items() if score != 0] == []


def page_text(path):
    text = re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8"))
    return {" ".join(line.split()) for line in html.unescape(text).splitlines()}


def normalised_lines(nb):
    return {" ".join(line.split()) for cell in nb.cells for line in cell.source.splitlines()}


def test_feedback_for_every_notebook_shows_no_check_and_explains_failures(demo):
    folder, _ = demo
    sources = sorted((folder / "source" / ASSIGNMENT).glob("*.ipynb"))
    pages = sorted((folder / "feedback").rglob("*.html"))
    assert len(pages) == 3 * len(sources)
    hidden = {" ".join(line.split()) for line in check_lines(ASSIGNMENT, folder)}
    assert hidden, "the checks have lines students never see"
    for page in pages:
        leaked = hidden & page_text(page)
        assert not leaked, f"{page} shows lines of the checks: {sorted(leaked)[:2]}"
        assert "BEGIN HIDDEN TESTS" not in page.read_text()
    partly = " ".join(" ".join(page_text(p)) for p in (folder / "feedback" / "demo-partly-wrong").rglob("*.html"))
    assert "points" in partly and "Checked apart from your notebook" in partly
    untouched = " ".join(page_text(next((folder / "feedback" / "demo-untouched").rglob("*.html"))))
    assert "not implemented yet" in untouched


def test_release_leaks_nothing(demo):
    folder, _ = demo
    assert find_leaks(folder / "source" / ASSIGNMENT, folder / "release" / ASSIGNMENT) == []


def test_broken_submissions_get_a_row_with_a_reason_and_the_batch_goes_on(demo):
    folder, _ = demo
    notebooks = sorted(p.name for p in (folder / "release" / ASSIGNMENT).glob("*.ipynb"))
    broken = folder / "submitted" / "demo-broken" / ASSIGNMENT
    broken.mkdir(parents=True)
    (broken / notebooks[0]).write_text('{"cells": [')
    for name in notebooks[1:2]:
        (broken / name).write_bytes((folder / "release" / ASSIGNMENT / name).read_bytes())
    (folder / "submitted" / "demo-empty" / ASSIGNMENT).mkdir(parents=True)
    new = {row.student_id: row for row in grade_all(folder, ASSIGNMENT, ["demo-broken", "demo-empty"],
                                                     progress=False)}
    assert new["demo-broken"].status == "partial"
    assert notebooks[0] in new["demo-broken"].reason and "not graded" in new["demo-broken"].reason
    if len(notebooks) > 2:
        assert f"{notebooks[2]} missing" in new["demo-broken"].reason
    assert new["demo-empty"].status == "failed" and "no notebook" in new["demo-empty"].reason
    table = rows(folder)
    assert {"demo-reference", "demo-untouched", "demo-partly-wrong", "demo-broken", "demo-empty"} <= set(table)


def test_demo_produces_the_leaderboard(demo):
    folder, out = demo
    page = (folder / "reports" / "leaderboard.html").read_text()
    assert "Reference Rabbit" in page and "demo-reference" not in page, "the nickname replaces the id"
    assert "demo-untouched" in page and "not ranked" in page
    assert (folder / "reports" / "leaderboard.png").stat().st_size > 1000
    assert re.search(r"^leaderboard matmul_blocked: ", out, re.M), out
    with (folder / "reports" / "leaderboard.csv").open(newline="") as handle:
        board = {(row["kernel"], row["student_id"]): row for row in csv.DictReader(handle)}
    assert board["matmul_blocked", "demo-reference"]["status"] in ("ranked", "inconclusive")
    assert board["matmul_blocked", "demo-untouched"]["status"] == "not ranked"
    # that the board never writes grades.csv or the gradebook is proven byte for byte by
    # tests/test_leaderboard.py::test_a_class_board_ranks_only_correct_work_and_never_touches_grades
