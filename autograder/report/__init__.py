"""Stage 5, report: ``grades.csv`` (``grades.py``), the batch summary and integrity reports
(``summary.py``), feedback (``feedback.py``), the kernel leaderboard (``leaderboard.py``) and the
rendered site (``site.py``)."""
