"""Start JupyterLab in this folder, without nbgrader's tools for instructors.

    python start_lab.py                 # then work in the browser tab it opens
    python start_lab.py --port 8890     # any option of ``jupyter lab`` works here too

This is ``jupyter lab`` with ``jupyter_config/`` (beside this file) first on Jupyter's config
path. It turns off nbgrader's Formgrader, Create Assignment, Assignment List and Course List and
the Nbgrader menu, which are for instructors or for a course exchange this course does not use,
and keeps the Validate button. Jupyter reads no settings from the folder it starts in, hence this
script. Stop JupyterLab with Ctrl+C, as usual.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "jupyter_config"


def main(argv: list[str] | None = None) -> int:
    if importlib.util.find_spec("jupyterlab") is None:
        print(f"start_lab: error: JupyterLab is not installed for this Python ({sys.executable}); "
              f"install it with: python -m pip install jupyterlab nbgrader", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(filter(None, [str(CONFIG), env.get("JUPYTER_CONFIG_PATH")]))
    command = [sys.executable, "-m", "jupyterlab", *(sys.argv[1:] if argv is None else argv)]
    with subprocess.Popen(command, cwd=HERE, env=env) as lab:
        while True:
            try:
                return lab.wait()
            except KeyboardInterrupt:  # JupyterLab got Ctrl+C too and asks whether to stop
                continue


if __name__ == "__main__":
    sys.exit(main())
