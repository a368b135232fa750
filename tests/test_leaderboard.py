"""The kernel leaderboard: scores normalised by the machine's own baseline, inconclusive when the
repeats spread, nicknames only when valid, and grades never touched."""
from __future__ import annotations

import numpy as np
import pytest

from autograder.leaderboard import MAX_SPREAD, Entry, rank, score_entry, shown_name, write_leaderboard
from autograder.probekit import same


def observations(kernel_s, baseline_s, correct=True, work=2e9):
    return {"correct": same(correct), "kernel_s": same(list(kernel_s)), "baseline_s": same(list(baseline_s)),
            "work": same(work)}


def test_score_is_the_median_ratio_to_the_machine_baseline():
    entry = score_entry("s1", "s1", "matmul_blocked", observations([2.0, 2.1, 1.9, 2.0, 2.0], [1.0] * 5), None)
    assert entry.status == "ranked"
    assert entry.score == pytest.approx(0.5)
    assert entry.machine_rate == pytest.approx(2.0)  # 2e9 FLOP in 1 s is 2 GFLOP/s


def test_the_same_kernel_on_a_machine_twice_as_fast_scores_the_same():
    slow = score_entry("s", "s", "k", observations([4.0, 4.2, 3.9], [1.0, 1.05, 0.97]), None)
    fast = score_entry("s", "s", "k", observations([2.0, 2.1, 1.95], [0.5, 0.525, 0.485]), None)
    assert slow.score == pytest.approx(fast.score)


def test_a_wide_spread_is_inconclusive_not_ranked():
    entry = score_entry("s", "s", "k", observations([1.0, 3.0, 1.0, 3.0, 1.0, 3.0], [1.0] * 6), None)
    assert entry.status == "inconclusive" and entry.spread > MAX_SPREAD
    assert rank([entry])[0].rank is None


def test_wrong_results_slow_kernels_and_errors_are_never_ranked():
    assert score_entry("s", "s", "k", observations([1.0], [1.0], correct=False), None).status == "incorrect"
    assert score_entry("s", "s", "k", observations([5.0], []), None).status == "too slow"
    assert score_entry("s", "s", "k", None, "NotImplementedError: ").status == "not run"
    flagged = score_entry("s", "s", "k", observations([1.0] * 3, [1.0] * 3), None, ["numpy.matmul replaced"])
    assert flagged.status == "flagged" and "numpy.matmul" in flagged.detail


def test_ranking_orders_by_score_then_lists_the_rest():
    entries = [Entry("a", "a", "k", "ranked", 0.2), Entry("b", "b", "k", "not run"),
               Entry("c", "c", "k", "ranked", 0.6), Entry("d", "d", "k", "inconclusive", 0.9)]
    ordered = rank(entries)
    assert [(e.student, e.rank) for e in ordered] == [("c", 1), ("a", 2), ("d", None), ("b", None)]


@pytest.mark.parametrize("text, shown", [("Fast Fourier\n", "Fast Fourier"), ("<script>x</script>", "s1"),
                                         ("", "s1"), ("a" * 40, "s1")])
def test_nicknames_are_opt_in_and_checked(tmp_path, text, shown):
    folder = tmp_path / "submitted" / "s1" / "acceleration"
    folder.mkdir(parents=True)
    (folder / "nickname.txt").write_text(text)
    assert shown_name(tmp_path, "acceleration", "s1") == shown
    assert shown_name(tmp_path, "acceleration", "s2") == "s2"


def test_page_chart_and_table_are_written_and_escaped(tmp_path):
    boards = {"matmul_blocked": rank([Entry("s<1>", "s<1>", "matmul_blocked", "ranked", 0.3, 0.05, 1e-3, 50.0)]),
              "gelu_chunked": [Entry("s<1>", "s<1>", "gelu_chunked", "not run", detail="NotImplementedError")]}
    page = write_leaderboard(boards, tmp_path, "acceleration")
    text = page.read_text()
    assert "s&lt;1&gt;" in text and "<td>s<1>" not in text
    assert "30.0 %" in text and "extra credit" in text
    assert (tmp_path / "leaderboard.png").stat().st_size > 1000
    assert "matmul_blocked,1,s<1>" in (tmp_path / "leaderboard.csv").read_text()
    assert np.isfinite(boards["matmul_blocked"][0].score)
