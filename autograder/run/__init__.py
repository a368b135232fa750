"""Stage 3, run: the sandbox (``sandbox.py``), nbgrader's kernel in it (``execute.py``), and the long-lived
grading worker (``worker.py``)."""
