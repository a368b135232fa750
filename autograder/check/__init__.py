"""Stage 4, check: the outside check that decides which test cells keep their points. ``runner.py``
runs a notebook's visible tests and checks in a sandboxed process (``process.py``, with ``observe.py``
and ``protocol.py``), ``evidence.py`` records what it read, ``judge.py`` compares with the answer
key (``answer_key.py``), and ``submission.py`` writes the scores that count."""
