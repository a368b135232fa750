"""Plot helpers shared by every Acceleration Lab notebook.

Each helper returns ``(fig, ax)``, labels its axes with units and never calls ``plt.show()``.
matplotlib is imported on the first plot, not with this module: code that only imports the
notebook's helpers (the grader's outside check) does not pay for it.
"""
from __future__ import annotations

import importlib
from typing import Mapping, Sequence

import numpy as np


class _LazyPyplot:
    """``matplotlib.pyplot``, imported when first used."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("matplotlib.pyplot"), name)


plt = _LazyPyplot()


def plot_lines(x: Sequence[float], series: Mapping[str, Sequence[float]], xlabel: str, ylabel: str,
               title: str | None = None, logx: bool = True, logy: bool = True):
    """One marked line per entry of ``series``, all against ``x``; log axes by default."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, ys in series.items():
        ax.plot(x, ys, marker="o", label=label)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig, ax


def plot_bars(labels: Sequence[str], values: Sequence[float], ylabel: str, title: str | None = None,
              reference: tuple[float, str] | None = None):
    """A bar per label; ``reference=(value, label)`` draws a dashed horizontal line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.bar(list(labels), list(values), color="tab:blue")
    if reference is not None:
        value, label = reference
        ax.axhline(value, color="tab:red", linestyle="--", label=label)
        ax.legend()
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig, ax


def plot_roofline(peak_gflops: float, bandwidth_gbs: float,
                  kernels: Mapping[str, tuple[float, float]], title: str | None = None):
    """Log-log roofline: min(peak, AI x bandwidth), and a point per kernel.

    ``kernels`` maps a name to ``(arithmetic intensity in FLOP/byte, achieved GFLOP/s)``. The two
    ceilings are measurements too: where a kernel beat one, the roof is drawn raised to the best
    rate measured (the solid line, labelled so) over the measured roof (dashed), so that no point
    sits above its roof unexplained.
    """
    intensities = [ai for ai, _ in kernels.values()]
    roof_peak = max([peak_gflops] + [rate for _, rate in kernels.values()])
    roof_bandwidth = max([bandwidth_gbs] + [rate / ai for ai, rate in kernels.values() if ai > 0])
    raised = roof_peak > peak_gflops or roof_bandwidth > bandwidth_gbs
    ridge = roof_peak / roof_bandwidth
    lo = min(intensities + [ridge, peak_gflops / bandwidth_gbs]) / 4
    hi = max(intensities + [ridge, peak_gflops / bandwidth_gbs]) * 4
    ai = np.logspace(np.log10(lo), np.log10(hi), 200)
    fig, ax = plt.subplots(figsize=(9.0, 4.4))
    ax.plot(ai, np.minimum(roof_peak, ai * roof_bandwidth), color="black",
            label=f"roof: {roof_bandwidth:.1f} GB/s, {roof_peak:.0f} GFLOP/s"
                  + (" (raised to the best rates measured)" if raised else ""))
    ax.axvline(ridge, color="gray", linestyle=":", label=f"ridge point {ridge:.1f} FLOP/byte")
    if raised:
        ax.plot(ai, np.minimum(peak_gflops, ai * bandwidth_gbs), color="black", linestyle="--", alpha=0.5,
                label=f"ceilings as measured: {bandwidth_gbs:.1f} GB/s, {peak_gflops:.0f} GFLOP/s")
    for name, (x, y) in kernels.items():
        ax.plot([x], [y], marker="o", linestyle="none", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("performance (GFLOP/s)")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: no point hidden
    fig.tight_layout()
    return fig, ax
