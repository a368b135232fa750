"""The distributed stage: grade a class on many machines, Celery workers fed through a Redis
broker, results in a PostgreSQL gradebook (``docs/distributed.md``). ``connections.py`` (where
the servers are, their passwords), ``store.py`` (tasks, files and results in PostgreSQL),
``gradebook.py`` (nbgrader's tables there), ``broker.py`` (the Celery queue), ``autograde.py``
(the instructor's side: stage, enqueue, wait, report), ``worker.py`` (``make worker``),
``reports.py`` (grades, status, feedback, leaderboard from the database), ``local_stack.py``
(servers of this machine's own, for the tests and the benchmark), ``benchmark.py``."""
