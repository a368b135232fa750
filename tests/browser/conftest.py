"""The browser test runs only when asked for (``make test-browser``: ``pytest -m browser``)."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

# Screenshots go here (SCREENSHOTS=dir overrides); the run's summary names the folder.
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS") or Path(tempfile.gettempdir()) / "acceleration-lab-browser"
                   / time.strftime("%Y%m%d-%H%M%S"))
STARTED = time.perf_counter()


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab and Chromium (make test-browser)")


def pytest_collection_modifyitems(config, items):
    if "browser" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a browser test: run it with make test-browser")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if not SCREENSHOTS.is_dir():
        return
    times = SCREENSHOTS / "run-times.txt"
    for line in times.read_text().splitlines() if times.is_file() else []:
        terminalreporter.write_line(line)
    seconds = time.perf_counter() - STARTED
    terminalreporter.write_line(f"browser test: screenshots in {SCREENSHOTS}; {seconds:.0f} s in all")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
