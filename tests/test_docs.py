"""The docs are tested: every command in their code blocks runs in CI or is covered by a named test.

Commands come from the shell code blocks (fenced as ``sh``, ``bash``, ``shell``, ``console`` or
without a language) of the files in ``DOCS``. Each must start with a prefix in ``COVERED_BY``,
whose test must exist. Beyond that, ``make`` commands must name real targets and dry-run
(``make -n``) from the repo root, ``python -m autograder.*`` and ``python selfcheck.py`` commands
must parse with the real argument parser, and ``LMS_FORMAT`` regexes must find the ids the guide
says they find. Every image and relative link in the docs must resolve.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from autograder.build.source import module_notebooks
from autograder.course import REPO

README = REPO / "README.md"
INSTRUCTORS = REPO / "docs" / "instructors.md"
STUDENTS = REPO / "docs" / "students.md"
DOCS = [README, INSTRUCTORS, STUDENTS, REPO / "docs" / "authoring.md", REPO / "docs" / "distributed.md"]
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console"}
FENCE = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
MAKE_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# Command prefix (tokens, space-separated) -> the test that covers it: "tests/<file>.py" or
# "tests/<file>.py::<test function>". The longest matching prefix wins.
COVERED_BY = {
    "make venv": "tests/test_config.py::test_ci_runs_the_readme_test_command",  # CI's make test builds it
    "make test": "tests/test_config.py::test_ci_runs_the_readme_test_command",
    "make demo": "tests/test_pipeline.py::test_demo_prints_a_table_of_three_scores",
    "make source": "tests/test_build.py::test_valid_module_builds_with_helpers_and_metadata",
    "make release": "tests/test_build.py::test_release_has_no_solutions_or_model_answers_and_leaks_are_found",
    "make selftest": "tests/test_selftest.py::test_variant_scores_as_it_must",
    "make collect": "tests/test_collect.py",
    "make autograde": "tests/test_hostile.py::test_each_submission_ends_with_the_row_it_deserves",
    "make feedback": "tests/test_pipeline.py::test_feedback_for_every_notebook_shows_no_check_and_explains_failures",
    "make leaderboard": "tests/test_leaderboard.py",
    "make html": "tests/browser/test_release_in_browser.py::test_site_index_links_every_page_and_student_pages_hold_no_solution",
    "make bench": "tests/test_budgets.py",
    ".venv/bin/python -m autograder.selftest": "tests/test_selftest.py::test_variant_scores_as_it_must",
    ".venv/bin/python -m autograder.grade":  # grade_all with chosen students and resume=False
        "tests/test_hostile.py::test_a_submission_over_its_time_limit_is_stopped_and_the_next_one_graded",
    "python -m pip install": "tests/test_docs.py::test_student_install_provides_every_import_and_jupyter_lab",
    "jupyter lab": "tests/test_docs.py::test_student_install_provides_every_import_and_jupyter_lab",
    "cd acceleration": "tests/test_selfcheck.py::test_selfcheck_ships_as_a_helper_and_is_not_a_notebook_source",
    "python selfcheck.py": "tests/test_selfcheck.py::test_reference_solutions_are_ready_to_submit",
    "python start_lab.py": "tests/browser/test_release_in_browser.py::test_instructor_tools_are_hidden_and_validate_is_there",
    "cd demo": "tests/browser/test_release_in_browser.py::test_formgrader_started_in_the_course_folder_lists_its_submissions",
    "../.venv/bin/jupyter lab":
        "tests/browser/test_release_in_browser.py::test_formgrader_started_in_the_course_folder_lists_its_submissions",
    "make test-browser": "tests/test_config.py::test_ci_runs_the_browser_and_distributed_tests",
    "make test-distributed": "tests/test_config.py::test_ci_runs_the_browser_and_distributed_tests",
    "make worker": "tests/test_distributed.py::test_demo_graded_on_two_machines_equals_the_embedded_grades",
    "make grades": "tests/test_distributed.py::test_demo_graded_on_two_machines_equals_the_embedded_grades",
    "make grading-status": "tests/test_distributed.py::test_demo_graded_on_two_machines_equals_the_embedded_grades",
    "pg_dump": "tests/test_distributed.py::test_the_documented_backup_restores_the_gradebook",
    "pg_restore": "tests/test_distributed.py::test_the_documented_backup_restores_the_gradebook",
}


@dataclass(frozen=True)
class Command:
    doc: Path
    line: str
    env: dict[str, str]
    tokens: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}: {self.line}"


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(match.group(1).lower(), match.group(2)) for match in FENCE.finditer(text)]


def commands_in(doc: Path) -> list[Command]:
    """Every command line of the shell code blocks of ``doc``, comments and env assignments split off."""
    found = []
    for language, body in code_blocks(doc.read_text(encoding="utf-8")):
        if language not in SHELL_LANGUAGES:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if not line or line.startswith("#"):
                continue
            tokens = shlex.split(line, comments=True)
            env = {}
            while tokens and ENV_ASSIGNMENT.match(tokens[0]):
                name, _, value = tokens.pop(0).partition("=")
                env[name] = value
            if tokens:
                found.append(Command(doc, line.split(" #")[0].strip(), env, tuple(tokens)))
    return found


COMMANDS = [command for doc in DOCS for command in commands_in(doc)]
MAKE_COMMANDS = [c for c in COMMANDS if c.tokens[0] == "make"]
PYTHON_MODULE_COMMANDS = [c for c in COMMANDS if len(c.tokens) > 2 and c.tokens[0].endswith("python")
                          and c.tokens[1] == "-m" and c.tokens[2].startswith("autograder.")]
SELFCHECK_COMMANDS = [c for c in COMMANDS if c.tokens[:2] == ("python", "selfcheck.py")]


def covering_prefix(tokens: tuple[str, ...]) -> str | None:
    matches = [prefix for prefix in COVERED_BY if tuple(prefix.split()) == tokens[:len(prefix.split())]]
    return max(matches, key=lambda prefix: len(prefix.split()), default=None)


def ids(commands: list[Command]) -> list[str]:
    return [str(c) for c in commands]


# -- every command is covered -----------------------------------------------------------------
def test_the_docs_contain_the_commands_they_are_known_for():
    lines = {(c.doc, c.line) for c in COMMANDS}
    assert (README, "make demo") in lines and (README, "make test") in lines
    assert (STUDENTS, "python selfcheck.py") in lines
    assert any(c.tokens[:2] == ("make", "collect") for c in COMMANDS if c.doc == INSTRUCTORS)


@pytest.mark.parametrize("command", COMMANDS, ids=ids(COMMANDS))
def test_every_command_is_covered_by_a_test_that_exists(command):
    prefix = covering_prefix(command.tokens)
    assert prefix is not None, (f"{command}: no test covers this command; add its prefix to COVERED_BY in "
                                f"tests/test_docs.py with the test that runs it, or remove it from the docs")
    target = COVERED_BY[prefix]
    path, _, name = target.partition("::")
    assert (REPO / path).is_file(), f"{command}: COVERED_BY names {path}, which does not exist"
    if name:
        tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert name in defined, f"{command}: COVERED_BY names {target}, but {path} has no test {name}"


@pytest.mark.parametrize("prefix", sorted(COVERED_BY))
def test_every_covered_by_entry_names_a_test_that_exists(prefix):
    path, _, name = COVERED_BY[prefix].partition("::")
    assert (REPO / path).is_file(), f"COVERED_BY[{prefix!r}] names {path}, which does not exist"
    if name:
        tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
        assert name in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, \
            f"COVERED_BY[{prefix!r}] names {COVERED_BY[prefix]}, but {path} has no test {name}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.env], ids=ids([c for c in COMMANDS if c.env]))
def test_environment_variables_in_commands_are_read_by_the_code(command):
    code = "\n".join(p.read_text(encoding="utf-8") for folder in ("autograder", "modules")
                     for p in sorted((REPO / folder).rglob("*.py")))
    for name in command.env:
        assert name in code, f"{command}: no code reads {name}"


# -- make ---------------------------------------------------------------------------------------
def makefile_targets() -> dict[str, bool]:
    """Target name -> whether it has a ``## help`` comment (so that ``make`` lists it)."""
    targets = {}
    for line in (REPO / "Makefile").read_text().splitlines():
        match = re.match(r"^([a-z][a-z-]*):(?!=)(.*)$", line)
        if match:
            targets[match.group(1)] = "## " in match.group(2)
    return targets


def make_environment() -> dict[str, str]:
    """The environment the Makefile exports for its recipes."""
    env = dict(os.environ, JUPYTER_PREFER_ENV_PATH="1", PYTHONPATH=str(REPO))
    env["PATH"] = os.pathsep.join([str(REPO / ".venv" / "bin"), env.get("PATH", "")])
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    return env


def test_a_dry_run_builds_nothing():
    """``make -n`` runs no recipe line unless it starts with ``+`` or uses ``$(MAKE)``: none does."""
    for number, line in enumerate((REPO / "Makefile").read_text().splitlines(), 1):
        assert not line.startswith("\t+") and "$(MAKE)" not in line and "${MAKE}" not in line, \
            f"Makefile line {number} would run during 'make -n': {line.strip()}"


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=ids(MAKE_COMMANDS))
def test_make_command_names_real_targets_and_dry_runs(command):
    args = command.tokens[1:]
    targets = [a for a in args if not MAKE_VARIABLE.match(a)]
    variables = [a for a in args if MAKE_VARIABLE.match(a)]
    known = makefile_targets()
    assert targets, f"{command}: no target (plain 'make' only lists them)"
    for target in targets:
        assert target in known, f"{command}: the Makefile has no target {target!r}"
        assert known[target], f"{command}: target {target!r} has no '## help' comment, so 'make' does not list it"
    result = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=REPO, env=make_environment(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{command}: 'make -n' failed:\n{result.stdout}{result.stderr}"
    exported = {name for line in re.findall(r"^export ([A-Z_ ]+)$", (REPO / "Makefile").read_text(), re.M)
                for name in line.split()}
    database = None  # make's variables as it took them (make -p), read once if an exported one is given
    for variable in variables:
        name, _, value = variable.partition("=")
        if name in exported:  # handed to the tools through the environment, never on a command line
            if database is None:
                database = subprocess.run(["make", "-n", "--no-print-directory", "-p", *args], cwd=REPO,
                                          env=make_environment(), capture_output=True, text=True, timeout=30).stdout
            assert f"{name} = {value}" in database, f"{command}: make does not take {variable}"
            continue
        assert value in result.stdout, f"{command}: {variable} does not reach the recipe:\n{result.stdout}"


def inline_make_mentions(text: str) -> set[str]:
    return set(re.findall(r"`make ([a-z][a-z-]*)", text))


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_every_make_target_the_docs_mention_exists(doc):
    missing = inline_make_mentions(doc.read_text(encoding="utf-8")) - set(makefile_targets())
    assert not missing, f"{doc.relative_to(REPO)} mentions make targets the Makefile lacks: {sorted(missing)}"


def test_the_readme_table_lists_every_listed_target():
    readme = README.read_text(encoding="utf-8")
    listed = [target for target, helped in makefile_targets().items() if helped and target != "help"]
    missing = [target for target in listed if f"| `make {target}` |" not in readme]
    assert not missing, f"README.md's targets table lacks: {missing}"


# -- python commands parse with the real argument parser --------------------------------------
class Parsed(Exception):
    """Raised in place of running a command once its arguments parsed."""


def parses(main, argv: list[str], monkeypatch) -> argparse.Namespace:
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    try:
        main(argv)
    except Parsed as parsed:
        return parsed.args[0]
    except SystemExit as exc:
        pytest.fail(f"arguments {argv} rejected (exit {exc.code})")
    pytest.fail(f"main({argv}) returned without parsing its arguments")


@pytest.mark.parametrize("command", PYTHON_MODULE_COMMANDS, ids=ids(PYTHON_MODULE_COMMANDS))
def test_python_module_command_parses(command, monkeypatch):
    interpreter = command.tokens[0]
    if "/" in interpreter:
        assert (REPO / interpreter).exists(), f"{command}: {interpreter} does not exist"
    module = importlib.import_module(command.tokens[2])
    args = parses(module.main, list(command.tokens[3:]), monkeypatch)
    known = {p.stem for p in module_notebooks(REPO / "modules" / "acceleration")}
    for notebook in getattr(args, "notebooks", None) or []:
        assert notebook in known, f"{command}: there is no notebook {notebook!r}"


@pytest.mark.parametrize("command", SELFCHECK_COMMANDS, ids=ids(SELFCHECK_COMMANDS))
def test_selfcheck_command_parses_and_names_released_notebooks(command, monkeypatch):
    path = REPO / "modules" / "acceleration" / "selfcheck.py"
    spec = importlib.util.spec_from_file_location("selfcheck_for_docs", path)
    selfcheck = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, selfcheck)  # its dataclasses look their module up
    spec.loader.exec_module(selfcheck)
    args = parses(selfcheck.main, list(command.tokens[2:]), monkeypatch)
    released = {f"{p.stem}.ipynb" for p in module_notebooks(REPO / "modules" / "acceleration")}
    for notebook in args.notebooks:
        assert str(notebook) in released, f"{command}: {notebook} is not a released notebook"


# -- LMS formats find the ids the guide says they find ----------------------------------------
LMS_SAMPLES = {  # a name from each kind of download -> the ids the docs promise for it
    "smithjane_12345_67890_01_loops_and_blocking.ipynb": {"smithjane", "12345"},
    "smithjane_LATE_12345_67890_01_loops_and_blocking.ipynb": {"smithjane", "12345"},
    "Jane Smith_77_assignsubmission_file_/01_loops_and_blocking.ipynb": {"Jane_Smith", "77"},
    "s123--01_loops_and_blocking.ipynb": {"s123"},
}


def lms_formats() -> list[tuple[Command, str]]:
    return [(c, token.partition("=")[2]) for c in MAKE_COMMANDS for token in c.tokens
            if token.startswith("LMS_FORMAT=")]


def test_every_documented_lms_format_finds_a_documented_id():
    from autograder.collect.lms import PATTERNS, student_id
    assert lms_formats(), "no make collect command with LMS_FORMAT in the docs"
    for command, fmt in lms_formats():
        regex = re.compile(PATTERNS.get(fmt, fmt))
        assert {"student", "file"} <= set(regex.groupindex), f"{command}: needs groups 'student' and 'file'"
        if fmt in PATTERNS:
            continue  # the named formats are tested in tests/test_collect.py
        found = {name: student_id(match["student"]) for name in LMS_SAMPLES if (match := regex.match(name))}
        assert found, f"{command}: the regex matches none of {sorted(LMS_SAMPLES)}"
        for name, student in found.items():
            assert student in LMS_SAMPLES[name], f"{command}: {name!r} gives the id {student!r}"
            assert f"`{student}`" in command.doc.read_text(encoding="utf-8"), \
                f"{command}: the id {student!r} it finds in {name!r} is not in the guide's table"


# -- the students' install and facts ----------------------------------------------------------
def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(names: list[str]) -> set[str]:
    """The installed distributions ``names`` pull in, themselves included (extras left out)."""
    seen, todo = set(), [canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requirements:
            if "extra ==" in requirement:
                continue
            todo.append(canonical(re.match(r"[A-Za-z0-9_.\-]+", requirement).group()))
    return seen


def third_party_imports(folder: Path) -> set[str]:
    local = {p.stem for p in folder.glob("*.py")}
    names = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in local and n != "__future__"}


def test_student_install_provides_every_import_and_jupyter_lab():
    installs = [c for c in commands_in(STUDENTS) if c.tokens[:4] == ("python", "-m", "pip", "install")]
    assert len(installs) == 1, "docs/students.md should have one 'python -m pip install' command"
    packages = [t for t in installs[0].tokens[4:] if not t.startswith("-")]
    closure = requirement_closure(packages)
    providers = metadata.packages_distributions()
    for name in sorted(third_party_imports(REPO / "modules" / "acceleration")):
        assert {canonical(d) for d in providers.get(name, [])} & closure, \
            f"the release imports {name}, which 'pip install {' '.join(packages)}' does not provide"
    assert "jupyterlab" in closure, "'jupyter lab' needs the jupyterlab package"
    assert (Path(sys.executable).parent / "jupyter-lab").exists(), "jupyterlab installs no jupyter-lab command here"


def test_versions_the_students_guide_names_are_the_pinned_ones():
    pinned = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    numpy = ".".join(pinned["numpy"].split(".")[:2])
    text = STUDENTS.read_text(encoding="utf-8")
    assert f"NumPy {numpy}" in text, f"docs/students.md should name NumPy {numpy} (requirements.txt)"
    wanted = re.search(r"Python (3\.\d+) or newer", text)
    required = metadata.metadata("numpy")["Requires-Python"]
    assert wanted and required == f">={wanted.group(1)}", f"numpy {pinned['numpy']} requires Python {required}"


def test_the_guides_name_every_released_notebook():
    names = [f"{p.stem}.ipynb" for p in module_notebooks(REPO / "modules" / "acceleration")]
    for doc in (STUDENTS, INSTRUCTORS):
        missing = [n for n in names if f"`{n}`" not in doc.read_text(encoding="utf-8")]
        assert not missing, f"{doc.relative_to(REPO)} does not name {missing}"


def test_the_nickname_rule_is_the_codes():
    from autograder.report.leaderboard import NICKNAME, NICKNAME_FILE
    longest = re.search(r"\{1,(\d+)\}", NICKNAME.pattern).group(1)
    for doc in (STUDENTS, INSTRUCTORS):
        text = " ".join(doc.read_text(encoding="utf-8").split())
        assert f"`{NICKNAME_FILE}`" in text and f"1 to {longest} letters, digits, spaces, `_`, `.` or `-`" in text, \
            f"{doc.relative_to(REPO)} does not state the nickname rule of autograder/leaderboard.py"


def test_every_grades_csv_column_is_documented():
    from autograder.report.grades import csv_columns
    text = INSTRUCTORS.read_text(encoding="utf-8")
    missing = [c for c in csv_columns([]) if f"`{c}`" not in text]
    assert not missing, f"docs/instructors.md does not describe the grades.csv columns {missing}"


# -- images and links ---------------------------------------------------------------------------
LINK = re.compile(r"(!?)\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
IMG_TAG = re.compile(r"<img\s[^>]*src=[\"']([^\"']+)[\"']", re.I)


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (links in code are not links)."""
    return FENCE.sub("", text)


def anchors(doc: Path) -> set[str]:
    """GitHub's anchors for the headings of ``doc``."""
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", prose(doc.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def references(doc: Path) -> list[tuple[bool, str]]:
    """(is an image, target) for every link and image in ``doc``."""
    text = prose(doc.read_text(encoding="utf-8"))
    return [(bang == "!", target) for bang, target in LINK.findall(text)] + \
           [(True, target) for target in IMG_TAG.findall(text)]


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target) is not None


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_every_image_exists_and_every_relative_link_resolves(doc):
    for is_image, target in references(doc):
        if is_external(target):
            assert not is_image, f"{doc.relative_to(REPO)}: image {target} is not in the repository"
            continue
        path_part, _, fragment = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        what = "image" if is_image else "link"
        assert path.exists(), f"{doc.relative_to(REPO)}: {what} {target} points to nothing"
        if is_image:
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{doc.relative_to(REPO)}: {target} is not a PNG"
        if fragment and path.suffix == ".md":
            assert fragment in anchors(path), f"{doc.relative_to(REPO)}: {target}: no heading makes #{fragment}"


def test_the_readme_shows_the_roofline_picture():
    assert (True, "docs/images/roofline.png") in references(README)
