"""nbgrader_config.py sets only options nbgrader knows, so none is silently ignored."""
from __future__ import annotations

import subprocess

from nbgrader.apps import NbGraderApp
from traitlets.config.loader import PyFileConfigLoader

from autograder.build import REPO
from autograder.execute import SandboxedExecute, SaveAutoGradesKeepingStderr


def load_config():
    return PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()


def test_every_configured_option_exists_in_nbgrader():
    known = {cls.__name__: cls for cls in NbGraderApp().all_configurable_classes()}
    known.update({cls.__name__: cls for cls in (SandboxedExecute, SaveAutoGradesKeepingStderr)})
    config = load_config()
    for section, values in config.items():
        assert section in known, f"nbgrader has no configurable class {section!r}: it would be ignored"
        traits = known[section].class_traits(config=True)
        for name in values:
            assert name in traits, f"{section}.{name} is not an option of {section}: it would be ignored"


def test_per_cell_timeout_and_stub_are_set_where_nbgrader_reads_them():
    config = load_config()
    assert config.Execute.timeout == 60
    assert "raise NotImplementedError()" in config.ClearSolutions.code_stub["python"]
    assert "root" not in config.CourseDirectory, "the course root must default to where nbgrader runs"
    assert config.Autograde.autograde_preprocessors[0] == "autograder.execute.SandboxedExecute"


def test_make_help_is_the_default_target_and_lists_every_target():
    out = subprocess.run(["make", "--no-print-directory"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    for target in ("source", "release", "autograde", "feedback", "html", "demo", "test", "clean"):
        assert f"make {target} " in out, f"make help does not list {target}"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in ci
