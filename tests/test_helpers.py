"""The helpers every notebook imports: timing, machine limits, saved measurements, plots.

The machine-limit tests read no clock: a scripted clock stands in for ``time`` where the rule
(fastest repeat, repeats that lost the CPU left out) is what is tested.
"""
from __future__ import annotations

import json
import sys
import tempfile

import matplotlib
import numpy as np
import pytest

from autograder.course import REPO

matplotlib.use("Agg")
sys.path.insert(0, str(REPO / "modules" / "acceleration"))
import benchmarking  # noqa: E402
import plotting  # noqa: E402


def test_benchmark_size_shrinks_only_under_grading(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert benchmarking.benchmark_size(4096, 256) == 4096 and not benchmarking.under_grading()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert benchmarking.benchmark_size(4096, 256) == 256 and benchmarking.under_grading()


def test_time_call_warms_up_then_times_each_repeat():
    calls = []
    timing = benchmarking.time_call(lambda x: calls.append(x), 7, repeats=4, warmup=2, min_repeat_s=0)
    assert calls == [7] * (2 + 1 + 4), "two warm-up calls, one calibration call, four timed calls"
    assert timing.repeats == 4 and timing.calls_per_repeat == 1
    assert 0 < timing.min_s <= timing.q1_s <= timing.median_s <= timing.q3_s
    assert timing.spread >= 0 and "spread" in str(timing)


def test_time_call_loops_fast_calls_and_reports_per_call_seconds():
    timing = benchmarking.time_call(int, 3, repeats=3, min_repeat_s=1e-3)
    assert timing.calls_per_repeat > 10
    assert timing.median_s < 1e-4


def test_time_call_rejects_bad_arguments():
    with pytest.raises(ValueError, match="repeats"):
        benchmarking.time_call(int, repeats=0)


def test_format_seconds_and_gflops():
    assert benchmarking.format_seconds(1.5) == "1.5 s"
    assert benchmarking.format_seconds(0.0032) == "3.2 ms"
    assert benchmarking.format_seconds(4.1e-5) == "41 us"
    assert benchmarking.gflops(2e9, 0.5) == 4.0


class ScriptedClock:
    """Stands in for the ``time`` module: each ``call()`` advances wall-clock and thread CPU time by
    the next scripted (wall_s, cpu_s); nothing else moves them."""

    def __init__(self, steps: list[tuple[float, float]]):
        self.steps = list(steps)
        self.wall = self.cpu = 0.0
        self.calls = 0

    def perf_counter(self) -> float:
        return self.wall

    def thread_time(self) -> float:
        return self.cpu

    def call(self) -> None:
        wall_s, cpu_s = self.steps[self.calls]
        self.wall += wall_s
        self.cpu += cpu_s
        self.calls += 1


@pytest.fixture
def scripted(monkeypatch):
    """``scripted(steps)``: a ScriptedClock that benchmarking reads in place of ``time``."""
    def install(steps: list[tuple[float, float]]) -> ScriptedClock:
        clock = ScriptedClock(steps)
        monkeypatch.setattr(benchmarking, "time", clock)
        monkeypatch.setattr(benchmarking, "thread_clock_step_s", lambda: 1e-6)
        return clock
    return install


def test_fastest_seconds_is_the_fastest_repeat_after_warmup(scripted):
    clock = scripted([(9.0, 9.0), (5.0, 5.0), (1.0, 1.0), (0.4, 0.4), (0.2, 0.2), (0.3, 0.3)])
    seconds = benchmarking.fastest_seconds(clock.call, repeats=3, warmup=2, budget_s=0, min_repeat_s=0)
    assert seconds == pytest.approx(0.2), "the fastest repeat, not the median (0.3) or a warm-up call (5, 9)"
    assert clock.calls == 2 + 1 + 3, "two warm-up calls, one calibration call, three repeats"


def test_fastest_seconds_goes_on_until_its_time_budget_is_spent(scripted):
    clock = scripted([(1.0, 1.0)] * 2 + [(0.1, 0.1)] * 20 + [(0.05, 0.05)])
    seconds = benchmarking.fastest_seconds(clock.call, repeats=3, warmup=1, budget_s=2.04, min_repeat_s=0)
    assert clock.calls == 1 + 1 + 21 and seconds == pytest.approx(0.05), "repeats until 2.04 s were spent"


def test_fast_calls_are_looped_within_a_repeat(scripted):
    clock = scripted([(1e-6, 1e-6)] * 1000)
    seconds = benchmarking.fastest_seconds(clock.call, repeats=2, warmup=0, budget_s=0, min_repeat_s=1e-4)
    per_repeat = (clock.calls - 1) / 2
    assert 100 <= per_repeat <= 101 and seconds == pytest.approx(1e-6), "100 calls per repeat, per-call seconds"


def test_single_thread_repeats_that_lost_the_cpu_do_not_count(scripted):
    # the first five repeats had the CPU half the time (another program ran), the sixth all of it
    clock = scripted([(0.1, 0.1)] * 3 + [(0.2, 0.1)] * 5 + [(0.11, 0.11)])
    seconds = benchmarking.fastest_seconds(clock.call, repeats=5, warmup=2, budget_s=0, min_repeat_s=0,
                                           single_thread=True)
    assert seconds == pytest.approx(0.11) and clock.calls == 2 + 1 + 6, "one more repeat, undisturbed"


def test_single_thread_warns_when_every_repeat_lost_the_cpu(scripted):
    clock = scripted([(0.1, 0.1)] * 2 + [(0.2, 0.1)] * 3 + [(0.15, 0.05)])
    with pytest.warns(RuntimeWarning, match="lost the CPU to other programs"):
        seconds = benchmarking.fastest_seconds(clock.call, repeats=2, warmup=1, budget_s=0, min_repeat_s=0,
                                               single_thread=True)
    assert seconds == pytest.approx(0.15), "still the fastest repeat"
    assert clock.calls == 1 + 1 + 4, "at most twice the repeats asked for"


def test_cpu_time_is_ignored_for_work_on_other_threads(scripted):
    """BLAS computes on its own threads, so this thread's CPU time says nothing about it."""
    clock = scripted([(0.1, 0.0)] * 3 + [(0.2, 0.0), (0.1, 0.0)])
    seconds = benchmarking.fastest_seconds(clock.call, repeats=2, warmup=2, budget_s=0, min_repeat_s=0)
    assert seconds == pytest.approx(0.1)
    assert clock.calls == 5


def test_fastest_seconds_rejects_bad_arguments():
    with pytest.raises(ValueError, match="repeats"):
        benchmarking.fastest_seconds(int, repeats=0)


def test_peak_and_bandwidth_come_from_the_fastest_repeat(monkeypatch):
    asked = []

    def fastest(call, repeats, budget_s, single_thread=False):
        call()  # the measured work runs
        asked.append(single_thread)
        assert repeats == 3 and budget_s > 0
        return 0.5

    monkeypatch.setattr(benchmarking, "fastest_seconds", fastest)
    assert benchmarking.measure_peak_gflops(n=64, repeats=3) == pytest.approx(2 * 64**3 / 0.5 / 1e9)
    assert benchmarking.measure_copy_bandwidth_gbs(nbytes=2**13, repeats=3) == pytest.approx(2 * 2**13 / 0.5 / 1e9)
    assert asked == [False, True], "only the copy is checked against this thread's CPU time"


def test_machine_limits_are_measured_and_plausible():
    peak = benchmarking.measure_peak_gflops(n=256, repeats=3)
    bandwidth = benchmarking.measure_copy_bandwidth_gbs(nbytes=32 * 2**20, repeats=3)
    assert 0.1 < peak < 1e5 and 0.1 < bandwidth < 1e4


def test_measurements_round_trip_and_explain_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    records = [{"kernel": "BLAS", "flops": 2e6, "bytes": 1.2e4, "time_s": 1e-4}]
    path = benchmarking.save_measurements("01_demo", records)
    assert path.resolve() == tmp_path / "measurements" / "01_demo.json"
    assert benchmarking.load_measurements("01_demo") == records
    with pytest.raises(FileNotFoundError, match="run notebook 02_other first"):
        benchmarking.load_measurements("02_other")


@pytest.mark.parametrize("mode", ["validate", "autograde"])  # what nbgrader 0.9.6 (and selfcheck.py) set
def test_grading_never_writes_into_the_students_measurements(tmp_path, monkeypatch, mode):
    (tmp_path / "student").mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.chdir(tmp_path / "student")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    mine = [{"kernel": "BLAS", "n": 1024, "time_s": 0.02}]
    student_file = benchmarking.save_measurements("01_demo", mine).resolve()
    before = student_file.read_bytes()

    monkeypatch.setenv("NBGRADER_EXECUTION", mode)
    graded = [{"kernel": "BLAS", "n": 128, "time_s": 1e-4}]
    path = benchmarking.save_measurements("01_demo", graded)
    assert student_file.read_bytes() == before, "a grading-size run replaced the student's measurements"
    assert tmp_path / "tmp" in path.parents and json.loads(path.read_text()) == graded
    assert benchmarking.load_measurements("01_demo") == mine, "the student's own measurements come first"
    benchmarking.save_measurements("01_other", graded)
    assert benchmarking.load_measurements("01_other") == graded, "without them, the grading run's are found"
    assert [p.name for p in student_file.parent.iterdir()] == ["01_demo.json"]

    monkeypatch.delenv("NBGRADER_EXECUTION")
    with pytest.raises(FileNotFoundError):
        benchmarking.load_measurements("01_other")  # outside grading a grading run's file is never read


def test_grading_measurements_are_kept_apart_per_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    seen = set()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        seen.add(benchmarking.grading_measurements_dir())
    assert len(seen) == 2 and not any(tmp_path in folder.parents for folder in seen)


def test_plot_helpers_return_labelled_figures():
    fig, ax = plotting.plot_lines([64, 128], {"naive": [1, 2], "BLAS": [10, 40]}, "N", "GFLOP/s")
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "GFLOP/s" and len(ax.lines) == 2
    fig, ax = plotting.plot_bars(["a", "b"], [3.0, 4.0], "time (ms)", reference=(2.0, "copy"))
    assert ax.get_ylabel() == "time (ms)" and len(ax.patches) == 2
    fig, ax = plotting.plot_roofline(200.0, 20.0, {"add": (1 / 12, 1.5), "gemm": (80.0, 150.0)})
    roof = ax.lines[0].get_ydata()
    assert roof.max() == pytest.approx(200.0) and ax.get_xlabel().startswith("arithmetic intensity")
    np.testing.assert_allclose(ax.lines[1].get_xdata(), [10.0, 10.0])  # the ridge point


def test_time_copy_copies_the_requested_dtype():
    timing = benchmarking.time_copy(1000, np.int8, repeats=3)
    assert timing.repeats == 3 and timing.median_s > 0
