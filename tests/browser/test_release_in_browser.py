"""The release as a student meets it, in a real browser, and the rendered pages as people open them.

JupyterLab starts the way docs/students.md says (``python start_lab.py`` in a copy of the release,
one task filled in from the reference solution), and each notebook gets Kernel > Restart Kernel
and Run All Cells... from the menu. Then every code cell must have run, only cells tagged
``raises-exception`` may have raised, every written question must be on screen above its answer
cell, and the filled-in task's visible tests must pass. The site (``make html``), a feedback page
and the leaderboard (``make demo``) are opened from disk: plots load, nothing is wider than a
1280-px window, and no page fetches anything from the network.

``make test-browser`` runs it (``make test`` skips it); it needs Debian's ``chromium`` and
``chromium-driver``, which that target installs when missing. Selenium is pointed at them and never
downloads a browser. JupyterLab, its kernels and Chromium are stopped at the end, also on failure.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from autograder.course import REPO, nbgrader_meta, tool_environment

pytestmark = pytest.mark.browser

ASSIGNMENT = "acceleration"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDTH, HEIGHT = 1280, 1000
NOTEBOOKS = sorted(p.name for p in (REPO / "release" / ASSIGNMENT).glob("*.ipynb"))
FILLED_NOTEBOOK, FILLED_TASK = "03_quantization.ipynb", "quantize_int8"
RAISES = "raises-exception"
NBGRADER_COMMANDS = ["nbgrader:open-formgrader", "nbgrader:open-formgrader-local", "nbgrader:open-create-assignment",
                     "nbgrader:open-assignment-list", "nbgrader:open-course-list"]
START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 600  # one notebook at full benchmark size, on a busy 2-core machine
BUILD_TIMEOUT_S = 1200


# -- processes we start, and how they are stopped ------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_under(folder: Path) -> list[int]:
    """Ids of processes whose working directory or command line is inside ``folder`` (ours alone:
    it is a fresh temporary folder), this one excluded."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(folder)) or str(folder) in cmdline:
            found.append(int(proc.name))
    return found


def stop_group(process: subprocess.Popen, folder: Path) -> None:
    """Stop ``process`` (started in a session of its own), its process group, and anything left
    running in ``folder`` (kernels start sessions of their own): SIGTERM, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        pids = processes_under(folder)
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and (process.poll() is None or processes_under(folder)):
            time.sleep(0.2)
        if process.poll() is not None and not processes_under(folder):
            return


# -- the student's folder and JupyterLab -------------------------------------------------------
@pytest.fixture(scope="module")
def student_folder(tmp_path_factory) -> Path:
    """A copy of the release, with FILLED_TASK typed in from the reference solution."""
    release = REPO / "release" / ASSIGNMENT
    if not NOTEBOOKS:
        pytest.fail(f"no notebooks in {release}: run 'make release' first")
    folder = tmp_path_factory.mktemp("student") / ASSIGNMENT
    shutil.copytree(release, folder)
    nb = nbformat.read(folder / FILLED_NOTEBOOK, as_version=4)
    reference = nbformat.read(REPO / "source" / ASSIGNMENT / FILLED_NOTEBOOK, as_version=4)
    solution = next(c.source for c in reference.cells if nbgrader_meta(c).get("grade_id") == FILLED_TASK)
    task = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == FILLED_TASK)
    task.source = solution
    nbformat.write(nb, folder / FILLED_NOTEBOOK)
    return folder


@contextlib.contextmanager
def jupyter_lab(command: list[str], folder: Path, home: Path):
    """JupyterLab from ``command`` (options are appended) in ``folder`` on a loopback port, with its
    settings under ``home``: yields (base URL, token); stopped afterwards, also on failure."""
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no news prompt over the screenshots
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUPYTER_CONFIG_PATH")}
    env.update(JUPYTER_PREFER_ENV_PATH="1", PATH=os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.pop("NBGRADER_EXECUTION", None)
    command = [*command, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = (home / "jupyterlab.log").open("w")
    lab = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if lab.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start in {START_TIMEOUT_S} s:\n"
                                + (home / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token
    finally:
        stop_group(lab, folder)
        log.close()


@pytest.fixture(scope="module")
def jupyterlab(student_folder, tmp_path_factory):
    """``python start_lab.py`` in the student's folder, as docs/students.md says: (base URL, token)."""
    with jupyter_lab([sys.executable, "start_lab.py"], student_folder, tmp_path_factory.mktemp("jupyter-home")) as lab:
        yield lab


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium from Debian, driven by Debian's chromedriver, in a fresh profile."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            pytest.fail(f"{path} is missing: 'make test-browser' installs chromium and chromium-driver")
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile.parent / "chromedriver.log"),
                      popen_kw={"start_new_session": True})
    driver = None
    try:
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_window_size(WIDTH, HEIGHT)
        driver.set_script_timeout(180)
        yield driver
    finally:
        try:
            if driver is not None:
                driver.quit()
        finally:
            if service.process is not None:
                stop_group(service.process, profile)


def shoot(driver, folder: Path, name: str) -> None:
    driver.save_screenshot(str(folder / f"{name}.png"))


# -- JupyterLab, driven as a student drives it ---------------------------------------------------
APP_READY = """
const done = arguments[arguments.length - 1];
const app = window.jupyterapp;
if (!app) { done(false); return; }
app.started.then(() => app.restored).then(() => done(true));
"""

OPEN_NOTEBOOK = """
const [path, done] = arguments;
const app = window.jupyterapp;
app.commands.execute('docmanager:open', {path: path, factory: 'Notebook'}).then(async panel => {
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  // a kernel still connecting when it is restarted can lose its connection: wait until it is idle
  for (let i = 0; i < 600; i++) {
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    if (kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle') { done(panel.id); return; }
    await new Promise(resolve => setTimeout(resolve, 200));
  }
  done('error: the kernel did not become idle in 120 s');
}).catch(e => done('error: ' + e));
"""

RUN_STATE = """
const panel = window.jupyterapp.shell.currentWidget;
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
const code = panel.content.widgets.filter(c => c.model.type === 'code');
return {
  kernel: kernel ? kernel.status : 'none',
  running: code.filter(c => c.model.executionState === 'running'
                        || (c.promptNode && c.promptNode.textContent.includes('*'))).length,
  counted: code.filter(c => c.model.executionCount !== null).length,
};
"""

CELLS = """
const panel = window.jupyterapp.shell.currentWidget;
return panel.content.widgets.map((cell, index) => {
  const model = cell.model;
  const outputs = model.type === 'code' ? model.outputs.toJSON() : [];
  const error = outputs.find(o => o.output_type === 'error');
  return {
    index: index, type: model.type, source: model.sharedModel.getSource(),
    tags: model.getMetadata('tags') || [], nbgrader: model.getMetadata('nbgrader') || {},
    count: model.type === 'code' ? model.executionCount : null,
    error: error ? error.ename + ': ' + String(error.evalue).slice(0, 200) : null,
  };
});
"""

SHOW_CELL = """
const [index, done] = arguments;
const notebook = window.jupyterapp.shell.currentWidget.content;
notebook.scrollToItem(index, 'start').then(() => setTimeout(() => {
  const cell = notebook.widgets[index];
  const box = cell.node.getBoundingClientRect();
  const markdown = cell.model.type === 'markdown';
  const shown = markdown && cell.rendered ? cell.node.querySelector('.jp-RenderedMarkdown') : cell.node;
  const text = shown ? shown.innerText : '';
  done({rendered: !markdown || cell.rendered, height: box.height,
        on_screen: box.bottom > 0 && box.top < window.innerHeight, text: text});
}, 300));
"""


def open_notebook(driver, base: str, token: str, name: str) -> None:
    if not driver.current_url.startswith(base):
        driver.get(f"{base}/lab?token={token}")
    WebDriverWait(driver, START_TIMEOUT_S).until(lambda d: d.execute_async_script(APP_READY))
    result = driver.execute_async_script(OPEN_NOTEBOOK, name)
    assert not str(result).startswith("error"), f"{name} did not open: {result}"


def restart_and_run_all(driver) -> str:
    """Kernel > Restart Kernel and Run All Cells..., then the dialog's accept button; its label."""
    kernel_menu = next(item for item in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                       if item.text.strip() == "Kernel")
    kernel_menu.click()
    item = WebDriverWait(driver, 10).until(lambda d: next(
        (i for i in d.find_elements(By.CSS_SELECTOR, ".lm-Menu-item")
         if i.text.startswith("Restart Kernel and Run All Cells")), None))
    item.click()
    accept = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"))
    label = accept.text.strip()
    accept.click()
    return label


def wait_until_run(driver, name: str) -> float:
    """Seconds until the kernel is idle, no cell is queued and the first cell has run, stably."""
    start = time.monotonic()
    stable = 0
    while stable < 4:
        if time.monotonic() - start > RUN_TIMEOUT_S:
            pytest.fail(f"{name}: still running after {RUN_TIMEOUT_S} s: {driver.execute_script(RUN_STATE)}")
        time.sleep(0.5)
        state = driver.execute_script(RUN_STATE)
        done = state["kernel"] == "idle" and state["running"] == 0 and state["counted"] > 0
        stable = stable + 1 if done else 0
    return time.monotonic() - start


def is_answer(cell: dict) -> bool:
    return cell["type"] == "markdown" and bool(cell["nbgrader"].get("solution"))


@pytest.fixture(scope="module")
def lab_home(browser, jupyterlab, screenshots):
    """JupyterLab's page, loaded: the browser, and what its menus and commands offer."""
    base, token = jupyterlab
    browser.get(f"{base}/lab?token={token}")
    WebDriverWait(browser, START_TIMEOUT_S).until(lambda d: d.execute_async_script(APP_READY))
    time.sleep(1)
    shoot(browser, screenshots, "jupyterlab-launcher")
    return browser


@pytest.fixture(scope="module", params=NOTEBOOKS)
def ran(request, lab_home, jupyterlab, screenshots) -> dict:
    """One notebook after Restart Kernel and Run All Cells: its cells, and its questions as shown."""
    name, driver = request.param, lab_home
    open_notebook(driver, *jupyterlab, name)
    button = restart_and_run_all(driver)
    seconds = wait_until_run(driver, name)
    cells = driver.execute_script(CELLS)
    shown = {}
    for cell in cells:
        if is_answer(cell) and cell["index"] > 0:
            shown[cell["index"] - 1] = driver.execute_async_script(SHOW_CELL, cell["index"] - 1)
    first_problem = next((c["index"] for c in cells if c["error"] and RAISES not in c["tags"]), None)
    driver.execute_async_script(SHOW_CELL, first_problem if first_problem is not None else 0)
    shoot(driver, screenshots, f"notebook-{Path(name).stem}")
    with (screenshots / "run-times.txt").open("a") as times:
        times.write(f"{name}: Kernel > Restart Kernel and Run All Cells... > {button}: {seconds:.0f} s\n")
    return {"name": name, "cells": cells, "shown": shown, "seconds": seconds}


def describe(cell: dict) -> str:
    grade_id = cell["nbgrader"].get("grade_id")
    first_line = cell["source"].strip().splitlines()[0][:60] if cell["source"].strip() else ""
    return f"cell {cell['index'] + 1}" + (f" ({grade_id})" if grade_id else f" ({first_line!r})")


# -- the tests -----------------------------------------------------------------------------------
def test_instructor_tools_are_hidden_and_validate_is_there(lab_home, jupyterlab, screenshots):
    driver = lab_home
    menus = [item.text.strip() for item in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")]
    assert "Nbgrader" not in menus, f"the Nbgrader menu (instructor tools) is shown: {menus}"
    offered = driver.execute_script("return arguments[0].filter(c => window.jupyterapp.commands.hasCommand(c));",
                                    NBGRADER_COMMANDS)
    assert offered == [], f"instructor commands are available: {offered}"
    tabs = [tab.get_attribute("title") or tab.text for tab in driver.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tab")]
    assert not any("Create Assignment" in tab for tab in tabs), f"the Create Assignment panel is shown: {tabs}"
    open_notebook(driver, *jupyterlab, NOTEBOOKS[0])
    button = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, ".validate-button"))
    assert button.text.strip() == "Validate", button.text
    shoot(driver, screenshots, "jupyterlab-validate-button")


def test_validate_button_runs_the_notebook_and_names_a_failing_test(lab_home, jupyterlab, screenshots):
    """nbgrader's Validate works where start_lab.py switched the instructor tools off."""
    driver = lab_home
    open_notebook(driver, *jupyterlab, FILLED_NOTEBOOK)
    panel = driver.execute_script("return window.jupyterapp.shell.currentWidget.id")
    driver.find_element(By.CSS_SELECTOR, f"#{panel} .validate-button").click()
    WebDriverWait(driver, RUN_TIMEOUT_S).until(lambda d: "Validation Results" in "".join(
        dialog.text for dialog in d.find_elements(By.CSS_SELECTOR, ".jp-Dialog")))
    text = driver.find_element(By.CSS_SELECTOR, ".jp-Dialog").text
    shoot(driver, screenshots, "jupyterlab-validate-results")
    driver.find_element(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept").click()
    assert "failed" in text and "NotImplementedError" in text, \
        f"Validate should name a test of an unfinished task: {text[:300]}"


def test_every_code_cell_ran(ran):
    never = [describe(c) for c in ran["cells"] if c["type"] == "code" and c["source"].strip() and c["count"] is None]
    first_stop = next((describe(c) for c in ran["cells"] if c["error"] and RAISES not in c["tags"]), None)
    assert not never, (f"{ran['name']}: {len(never)} code cells never ran after Restart Kernel and Run All "
                       f"Cells: {', '.join(never[:8])}" + (f"; the run stopped at {first_stop}" if first_stop else ""))


def test_only_cells_tagged_raises_exception_raise(ran):
    untagged = [f"{describe(c)} raised {c['error']}" for c in ran["cells"] if c["error"] and RAISES not in c["tags"]]
    assert not untagged, (f"{ran['name']}: cells raised without the {RAISES!r} tag (so Run All stops there):\n  "
                          + "\n  ".join(untagged))


def test_every_written_question_is_shown_above_its_answer_cell(ran):
    problems = []
    for cell in ran["cells"]:
        if not is_answer(cell):
            continue
        above = ran["cells"][cell["index"] - 1] if cell["index"] > 0 else None
        shown = ran["shown"].get(cell["index"] - 1, {})
        grade_id = cell["nbgrader"].get("grade_id")
        if above is None or above["type"] != "markdown" or is_answer(above):
            problems.append(f"{grade_id}: no question cell right above it")
        elif not (shown.get("rendered") and shown.get("height", 0) > 0 and shown.get("on_screen")):
            problems.append(f"{grade_id}: the question above it is not on screen ({shown})")
        elif not re.search(r"\?|\bQ\d", shown.get("text", "")):
            problems.append(f"{grade_id}: the cell above it asks no question: {shown.get('text', '')[:120]!r}")
    assert not problems, f"{ran['name']}:\n  " + "\n  ".join(problems)


def test_filled_in_task_passes_its_visible_tests(ran):
    if ran["name"] != FILLED_NOTEBOOK:
        pytest.skip(f"the filled-in task is in {FILLED_NOTEBOOK}")
    cells = ran["cells"]
    start = next(c["index"] for c in cells if c["nbgrader"].get("grade_id") == FILLED_TASK)
    tests = []
    for cell in cells[start + 1:]:
        if cell["nbgrader"].get("solution"):
            break
        if cell["nbgrader"].get("grade") and cell["type"] == "code":
            tests.append(cell)
    assert tests, f"no visible test follows task {FILLED_TASK}"
    failing = [f"{describe(c)}: {c['error'] or 'never ran'}" for c in tests if c["error"] or c["count"] is None]
    assert not failing, f"{FILLED_TASK} is the reference solution, yet its visible tests fail: {failing}"


# -- rendered pages, opened from disk -----------------------------------------------------------
def built(kind: str, tmp_path_factory) -> Path | str:
    """A site (as ``make html`` makes it, at graded sizes) or a demo course (``make demo``) built
    here from this code, never an older one left in the repo; a string says why it failed."""
    root = tmp_path_factory.mktemp(f"built-{kind}")
    if kind == "site":
        for folder in ("source", "release"):
            shutil.copytree(REPO / folder / ASSIGNMENT, root / folder / ASSIGNMENT)
        command = [sys.executable, "-m", "autograder.report.site", f"--root={root}", "--graded-sizes"]
        target = root / "site"
    else:
        command = [sys.executable, "-m", "autograder.demo", f"--dir={root / 'demo'}"]
        target = root / "demo"
    done = subprocess.run(command, cwd=REPO, env=tool_environment(), capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    if done.returncode != 0 or not target.is_dir():
        lines = (done.stdout + done.stderr).strip().splitlines()
        return (f"no {kind}/ here and building one failed ({' '.join(command[2:4])}, exit {done.returncode}): "
                + " | ".join(lines[-3:]))
    return target


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path | str]:
    """Page name -> its file, or why it is not there."""
    site, demo = built("site", tmp_path_factory), built("demo", tmp_path_factory)
    found: dict[str, Path | str] = {}
    for name in PAGE_NAMES:
        if name.startswith("site/"):
            found[name] = site / name.removeprefix("site/") if isinstance(site, Path) else site
        elif isinstance(demo, str):
            found[name] = demo
        elif name == "feedback":
            feedback = sorted((demo / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
            found[name] = feedback[0] if feedback else f"make demo wrote no feedback under {demo / 'feedback'}"
        else:
            found[name] = demo / "reports" / "leaderboard.html"
    return found


STEMS = [Path(n).stem for n in NOTEBOOKS]
WITH_MATH = {stem for stem in STEMS  # notebooks whose prose has a formula
             if any(c.cell_type == "markdown" and "$" in c.source
                    for c in nbformat.read(REPO / "release" / ASSIGNMENT / f"{stem}.ipynb", as_version=4).cells)}
PAGE_NAMES = (["site/index.html"] + [f"site/reference/{s}.html" for s in STEMS]
              + [f"site/student/{s}.html" for s in STEMS] + ["feedback", "leaderboard"])

PAGE_STATE = """
const width = arguments[0];
const images = Array.from(document.images).map(img => ({
  src: img.currentSrc.slice(0, 60), ok: img.complete && img.naturalWidth > 0}));
const wider = [];
for (const el of document.body.querySelectorAll('*')) {
  const box = el.getBoundingClientRect();
  if (box.right > width + 0.5 && el.parentElement &&
      el.parentElement.getBoundingClientRect().right <= width + 0.5) {
    wider.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${String(el.className).split(' ').join('.')}`
               + ` right edge ${Math.round(box.right)} px: ${(el.innerText || '').slice(0, 60)}`);
  }
}
const external = performance.getEntriesByType('resource').map(e => e.name)
  .filter(url => !url.startsWith('file:') && !url.startsWith('data:') && !url.startsWith('blob:'));
const markdown = Array.from(document.querySelectorAll('.jp-RenderedMarkdown')).map(el => {
  const copy = el.cloneNode(true);
  copy.querySelectorAll('code, pre').forEach(c => c.remove());
  return copy.textContent;
}).join('\\n');
return {images: images, scroll_width: document.documentElement.scrollWidth, inner_width: window.innerWidth,
        wider: wider.slice(0, 8), external: external, math: document.getElementsByTagName('math').length,
        raw_tex: (markdown.match(/\\$\\$|\\\\(frac|sqrt|max|approx|times|mathrm|text)\\b/g) || []).slice(0, 5)};
"""


@pytest.fixture(scope="module")
def page_states(pages, browser, screenshots) -> dict[str, dict | str]:
    """What each page shows once loaded and scrolled through, at WIDTH px."""
    states: dict[str, dict | str] = {}
    for name, path in pages.items():
        if isinstance(path, str):
            states[name] = path
            continue
        if not path.is_file():
            states[name] = f"{path} does not exist"
            continue
        browser.get(path.as_uri())
        WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
        height = browser.execute_script("return document.documentElement.scrollHeight")
        for y in range(0, height, HEIGHT):  # scroll through, as a reader would, so every image is asked for
            browser.execute_script(f"window.scrollTo(0, {y})")
        browser.execute_script("window.scrollTo(0, 0)")
        try:
            WebDriverWait(browser, 30).until(lambda d: d.execute_script(
                "return Array.from(document.images).every(img => img.complete)"))
        except TimeoutException:
            pass  # reported below as images that did not load
        states[name] = browser.execute_script(PAGE_STATE, WIDTH)
        label = re.sub(r"[^a-z0-9]+", "-", name.lower().removesuffix(".html")).strip("-")
        shoot(browser, screenshots, f"page-{label}")
        for what, first in (("plot", "document.images[0]"), ("math", "document.querySelector('math[display=block]')")):
            shown = f"const el = {first}; if (el) el.scrollIntoView({{block: 'center'}}); return !!el;"
            if browser.execute_script(shown):
                shoot(browser, screenshots, f"page-{label}-{what}")
    return states


def page_state(page_states, name: str) -> dict:
    state = page_states[name]
    if isinstance(state, str):
        pytest.skip(f"{name}: {state}")
    return state


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_page_plots_load_and_nothing_is_wider_than_the_window(page_states, name):
    state = page_state(page_states, name)
    broken = [img["src"] for img in state["images"] if not img["ok"]]
    assert not broken, f"{name}: {len(broken)} of {len(state['images'])} images did not load: {broken[:5]}"
    if name.startswith("site/reference/") or name == "leaderboard":
        assert state["images"], f"{name}: no plot at all"
    assert state["scroll_width"] <= WIDTH, (
        f"{name}: {state['scroll_width']} px wide in a {WIDTH}-px window; wider elements:\n  "
        + "\n  ".join(state["wider"]))


def test_site_index_links_every_page_and_student_pages_hold_no_solution(pages):
    """``make html`` renders every notebook twice: executed reference, and the student version."""
    index = pages["site/index.html"]
    if isinstance(index, str):
        pytest.fail(index)
    text = index.read_text()
    for stem in STEMS:
        for kind in ("reference", "student"):
            assert f'href="{kind}/{stem}.html"' in text, f"site/index.html does not link {kind}/{stem}.html"
        student = (index.parent / "student" / f"{stem}.html").read_text()
        assert "NotImplementedError" in student and "BEGIN SOLUTION" not in student, stem


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_page_needs_no_network_and_shows_math_rendered(page_states, name):
    state = page_state(page_states, name)
    assert not state["external"], f"{name}: fetches from the network: {state['external'][:5]}"
    assert not state["raw_tex"], f"{name}: LaTeX shown unrendered: {state['raw_tex']}"
    if name.startswith(("site/reference/", "site/student/")) and Path(name).stem in WITH_MATH:
        assert state["math"] > 0, f"{name}: no rendered formula (MathML) on the page"



# -- the instructor's formgrader ------------------------------------------------------------------
def test_formgrader_started_in_the_course_folder_lists_its_submissions(browser, pages, screenshots,
                                                                      tmp_path_factory):
    """docs/instructors.md: ``cd demo`` then ``../.venv/bin/jupyter lab`` (here: this venv's
    ``jupyter lab``) shows the course's submissions in the formgrader, ready for manual grading."""
    leaderboard = pages["leaderboard"]
    if isinstance(leaderboard, str):
        pytest.fail(leaderboard)
    course = leaderboard.parents[1]
    students = sorted(p.name for p in (course / "submitted").iterdir() if p.is_dir())
    jupyter = [str(Path(sys.executable).parent / "jupyter"), "lab"]
    with jupyter_lab(jupyter, course, tmp_path_factory.mktemp("formgrader-home")) as (base, token):
        with urllib.request.urlopen(f"{base}/formgrader/api/submissions/{ASSIGNMENT}?token={token}",
                                    timeout=60) as answer:
            listed = json.load(answer)
        browser.get(f"{base}/lab?token={token}")  # as the instructor opens it: the login cookie is set here
        WebDriverWait(browser, START_TIMEOUT_S).until(lambda d: d.execute_async_script(APP_READY))
        browser.get(f"{base}/formgrader/manage_submissions/{ASSIGNMENT}")
        try:
            WebDriverWait(browser, 60).until(
                lambda d: all(s in d.find_element(By.TAG_NAME, "body").text for s in students))
        finally:
            shoot(browser, screenshots, "formgrader-submissions")
    assert sorted(s["student"] for s in listed) == students, listed
    assert all(s["autograded"] for s in listed), "the formgrader lists submissions not autograded"
    needing_hands = [s["student"] for s in listed if s["needs_manual_grade"]]
    assert needing_hands, "written answers should be waiting for manual grading in the formgrader"
