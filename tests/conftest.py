"""Shared fixtures: a small throwaway course for fast pipeline tests, and the built real one."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from autograder.build.source import build_source
from autograder.course import REPO
from toy_courses import TOY_CHECKS, toy_module, write_course


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: full-size benchmarks and budgets (make bench)")


# The longest groups of tests (one fixture each that grades a whole course) are handed to the
# xdist workers first, so that no worker is left with a long one at the end while the other idles.
LONGEST_FIRST = ("test_selftest.py", "test_hostile.py", "test_pipeline.py", "test_selfcheck.py", "test_integrity.py")


def pytest_collection_modifyitems(config, items):
    def order(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=order)  # stable: each file keeps its own order


MUTANT_CASES = re.compile(r"test_variant_scores_as_it_must\[(\d\d_[a-z0-9_]+)-(.+)\]$")


def pytest_terminal_summary(terminalreporter):
    """The mutation score per notebook, from the selftest cases that ran (as ``make selftest`` prints it)."""
    caught: dict[str, list[bool]] = {}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            match = MUTANT_CASES.search(getattr(report, "nodeid", ""))
            if match and report.when == "call" and match.group(2) not in ("reference", "release"):
                caught.setdefault(match.group(1), []).append(outcome == "passed")
    for notebook, results in sorted(caught.items()):
        terminalreporter.write_line(f"{notebook}: mutants caught {sum(results)}/{len(results)} "
                                    f"(mutation score {sum(results) / len(results):.0%})")


@pytest.fixture
def toy_course(tmp_path: Path) -> Path:
    """A course root with modules/acceleration/01_toy.py, the real helper files, and its checks."""
    write_course(tmp_path, toy_module(), TOY_CHECKS)
    return tmp_path


@pytest.fixture(scope="session")
def built_source(tmp_path_factory) -> Path:
    """``source/`` built from this repo's modules into a temporary folder."""
    target = tmp_path_factory.mktemp("built") / "source"
    build_source(REPO / "modules", target)
    return target
