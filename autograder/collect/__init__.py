"""Stage 2, collect and stage: LMS downloads -> ``submitted/`` (``lms.py``) -> ``.grading/submitted/``
(``stage.py``, ``repair.py``), as nbgrader must see each submission."""
