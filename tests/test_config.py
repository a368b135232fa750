"""nbgrader_config.py sets only options something reads, so none is silently ignored; the sandbox's
limits are set once there and both the kernel and the outside check obey them."""
from __future__ import annotations

import re
import subprocess

import pytest
from nbgrader.apps import NbGraderApp
from traitlets.config import Config

from autograder.course import REPO, nbgrader_config, sandbox_limits
from autograder.run.execute import SandboxedExecute, SaveAutoGradesKeepingStderr
from autograder.run.sandbox import Limits


def test_every_configured_option_exists():
    known = {cls.__name__: cls for cls in NbGraderApp().all_configurable_classes()}
    known.update({cls.__name__: cls for cls in (SandboxedExecute, SaveAutoGradesKeepingStderr)})
    config = nbgrader_config()
    for section, values in config.items():
        if section == "Sandbox":
            assert set(values) <= set(Limits.__dataclass_fields__), f"unknown Sandbox settings {set(values)}"
            continue
        assert section in known, f"nbgrader has no configurable class {section!r}: it would be ignored"
        traits = known[section].class_traits(config=True)
        for name in values:
            assert name in traits, f"{section}.{name} is not an option of {section}: it would be ignored"


def test_the_sandbox_limits_are_set_once_and_read_by_kernel_and_check():
    limits = sandbox_limits()
    assert limits.cell_timeout_s == 60 and limits.scratch_bytes == 256 * 2**20
    assert "timeout" not in nbgrader_config().get("Execute", {}), "the cell timeout lives in c.Sandbox only"
    executor = SandboxedExecute(config=nbgrader_config())
    assert executor.limits == limits, "the grading kernel reads c.Sandbox"
    custom = Config({"Sandbox": {"cell_timeout_s": 7, "memory_bytes": 2**31}})
    assert SandboxedExecute(config=custom).limits.cell_timeout_s == 7
    with pytest.raises(ValueError, match="unknown Sandbox settings"):
        sandbox_limits(Config({"Sandbox": {"cell_timeout": 7}}))


def test_stub_and_preprocessors_are_set_where_nbgrader_reads_them():
    config = nbgrader_config()
    assert "raise NotImplementedError()" in config.ClearSolutions.code_stub["python"]
    assert "root" not in config.CourseDirectory, "the course root must default to where nbgrader runs"
    assert config.Autograde.autograde_preprocessors[0] == "autograder.run.execute.SandboxedExecute"


def test_make_help_is_the_default_target_and_lists_every_target():
    out = subprocess.run(["make", "--no-print-directory"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    for target in ("source", "release", "collect", "autograde", "feedback", "leaderboard", "html", "demo", "test",
                   "selftest", "bench", "bench-grading", "clean"):
        assert f"make {target} " in out, f"make help does not list {target}"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in ci


def test_ci_runs_the_browser_and_distributed_tests():
    """CI runs both slow suites as their own make targets, which run their test files."""
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "make test-browser" in ci and "make test-distributed" in ci
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test-browser:.*\n(\t.*\n)*\t.*pytest tests/browser", makefile, re.M)
    assert re.search(r"^test-distributed:.*\n(\t.*\n)*\t.*pytest tests/test_distributed.py", makefile, re.M)


def test_runtime_code_never_imports_from_tests():
    for path in (REPO / "autograder").rglob("*.py"):
        text = path.read_text()
        assert "from tests" not in text and "import tests" not in text and "tests/" not in text.replace(
            "tests/ ", ""), f"{path.relative_to(REPO)} reaches into tests/"
