"""Stage 1, build: ``modules/`` -> ``source/`` (``source.py``) -> ``release/`` (``release.py``)."""
