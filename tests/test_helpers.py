"""The helpers every notebook imports: timing, machine limits, saved measurements, plots."""
from __future__ import annotations

import sys

import matplotlib
import numpy as np
import pytest

from autograder.build import REPO

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


def test_machine_limits_are_measured_and_plausible():
    peak = benchmarking.measure_peak_gflops(n=256, repeats=3)
    bandwidth = benchmarking.measure_copy_bandwidth_gbs(nbytes=32 * 2**20, repeats=3)
    assert 0.1 < peak < 1e5 and 0.1 < bandwidth < 1e4


def test_measurements_round_trip_and_explain_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = [{"kernel": "BLAS", "flops": 2e6, "bytes": 1.2e4, "time_s": 1e-4}]
    path = benchmarking.save_measurements("01_demo", records)
    assert path.is_file() and benchmarking.load_measurements("01_demo") == records
    with pytest.raises(FileNotFoundError, match="run notebook 02_other first"):
        benchmarking.load_measurements("02_other")


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
