# Acceleration Lab: build, release, grade and render the course. `make` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
ASSIGNMENT ?= acceleration
COURSE ?= .
LMS_FORMAT ?= canvas
COURSE_ARGS = --root "$(COURSE)" --assignment $(ASSIGNMENT)
# Grading on many machines (docs/distributed.md): GRADEBOOK=postgresql://user@host:port/database
# BROKER=redis://host:port/0. Exported, so they reach the tools through the environment and never
# their command lines; passwords are never in them (the secrets file holds those).
GRADEBOOK ?=
BROKER ?=
WAIT ?= 1
export GRADEBOOK BROKER
DISTRIBUTED = $(PY) -m autograder.distributed
# nbgrader and nbclient must start the kernel from this venv, not one found elsewhere.
export JUPYTER_PREFER_ENV_PATH := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONPATH := $(CURDIR)

.DEFAULT_GOAL := help
.PHONY: help venv source release collect autograde worker grades grading-status feedback leaderboard html demo test test-browser test-distributed selftest bench bench-grading clean

help:  ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (Acceleration Lab)" >/dev/null
	touch $@

venv: $(STAMP)  ## create .venv with the pinned requirements (every target does this when needed)

source: $(STAMP)  ## modules/*.py -> source/<assignment>/*.ipynb, refusing broken nbgrader metadata
	$(PY) -m autograder.build source

release: source  ## source/ -> release/ with nbgrader generate_assignment, checked for leaks
	$(PY) -m autograder.build release --assignment $(ASSIGNMENT)

collect: $(STAMP)  ## LMS=<download folder or zip> [LMS_FORMAT=canvas|moodle|folders|regex] [COURSE=.] -> submitted/
	@test -n "$(LMS)" || { echo "usage: make collect LMS=path/to/download [LMS_FORMAT=canvas] [COURSE=.]"; exit 2; }
	$(PY) -m autograder.collect "$(LMS)" --format '$(LMS_FORMAT)' $(COURSE_ARGS)

autograde: $(STAMP)  ## [COURSE=.] [WORKERS=n] grade submitted/<student>/<assignment>/ and write grades.csv; with GRADEBOOK= BROKER= [WAIT=0]: on the Celery workers
ifneq ($(GRADEBOOK)$(BROKER),)
	$(DISTRIBUTED) autograde $(COURSE_ARGS) $(if $(filter 0,$(WAIT)),--no-wait)
else
	$(PY) -m autograder.grade $(COURSE_ARGS) $(if $(WORKERS),--workers $(WORKERS))
endif

worker: $(STAMP)  ## GRADEBOOK=... BROKER=... [WORKERS=n] [COURSE=.] a Celery grading worker in the foreground, WORKERS processes (default: cores)
	$(DISTRIBUTED) worker $(COURSE_ARGS) $(if $(WORKERS),--workers $(WORKERS))

grades: $(STAMP)  ## GRADEBOOK=... [COURSE=.] write grades.csv from the PostgreSQL gradebook, at any time
	$(DISTRIBUTED) grades $(COURSE_ARGS)

grading-status: $(STAMP)  ## GRADEBOOK=... submissions done, running, queued and failed, per worker
	$(DISTRIBUTED) status $(COURSE_ARGS)

feedback: $(STAMP)  ## [COURSE=.] [GRADEBOOK=...] per-student feedback HTML under feedback/
ifneq ($(GRADEBOOK),)
	$(DISTRIBUTED) feedback $(COURSE_ARGS)
else
	$(PY) -m autograder.report.feedback $(COURSE_ARGS)
endif

leaderboard: $(STAMP)  ## [COURSE=.] [GRADEBOOK=...] time graded students' kernels against this machine's BLAS and copy -> reports/leaderboard.html
ifneq ($(GRADEBOOK),)
	$(DISTRIBUTED) leaderboard $(COURSE_ARGS)
else
	$(PY) -m autograder.report.leaderboard $(COURSE_ARGS)
endif

html: release  ## reference notebooks executed and student notebooks rendered under site/
	$(PY) -m autograder.report.site --assignment $(ASSIGNMENT)

demo: release  ## the main job: grade three sample submissions under demo/ and print their scores
	$(PY) -m autograder.demo --assignment $(ASSIGNMENT)

test: $(STAMP)  ## the test suite (what CI runs)
	$(PY) -m pytest tests -n 2 --dist loadgroup -m "not slow" --ignore=tests/test_distributed.py

test-distributed: $(STAMP)  ## (root) the distributed stage against real PostgreSQL and Redis it starts, a worker in a network namespace
	$(PY) -m pytest tests/test_distributed.py

test-browser: release  ## [SCREENSHOTS=dir] the release in JupyterLab and the rendered pages in headless Chromium (installs Debian's chromium if missing)
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { test "$$(id -u)" = 0 \
	  || { echo "make test-browser needs Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver"; exit 2; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; }
	$(PY) -m pytest tests/browser -m browser --confcutdir=tests/browser -v

selftest: $(STAMP)  ## [NOTEBOOK=01 [VARIANT=name]] the authoring check: checks and mutants complete, reference full marks, release zero, every mutant caught under 5 seeds
	$(PY) -m autograder.selftest $(NOTEBOOK) $(if $(VARIANT),--variant $(VARIANT))

bench: $(STAMP)  ## slow checks: each solved notebook within 40 s full size and 15 s under grading
	$(PY) -m pytest tests -m slow -s -q

bench-grading: $(STAMP)  ## seconds per submission, side by side: plain nbgrader vs this grader with 1 and 2 workers; then through Celery (as root)
	$(PY) -m autograder.benchmark --students 8
	$(PY) -m autograder.distributed.benchmark --students 4

clean:  ## remove what make built (never submitted/, autograded/, feedback/, gradebook.db, grades.csv)
	rm -rf source release site demo .pytest_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
