"""The Celery application: one Redis queue of grading tasks, each message a task key.

A message is acknowledged only after its task has run (``acks_late``); a worker process killed
mid-task puts it back (``reject_on_worker_lost``), and one whose whole worker died comes back
after ``VISIBILITY_TIMEOUT_S`` (or sooner: ``make autograde`` sends again what no worker holds).
Redis keeps the queue on disk when its append-only file is on, which ``make autograde`` checks.
Results live in PostgreSQL, not in Celery: the broker carries keys only, never files or grades.
"""
from __future__ import annotations

import redis
from celery import Celery

QUEUE = "acceleration-lab-grading"
TASK = "autograder.distributed.grade_submission"
VISIBILITY_TIMEOUT_S = 2 * 3600  # longer than any one grading (900 s by default)


def make_app(url: str) -> Celery:
    """The grading queue's Celery application on the broker at ``url``."""
    app = Celery("acceleration-lab", broker=url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE, task_ignore_result=True, task_serializer="json", accept_content=["json"],
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True, worker_enable_remote_control=False,
        worker_log_format="%(asctime)s %(message)s", worker_task_log_format="%(asctime)s %(message)s")
    return app


def send(app: Celery, keys: list[str]) -> None:
    """One message per task key; a broker that cannot be reached raises after a few retries."""
    with app.producer_or_acquire() as producer:
        for key in keys:
            app.send_task(TASK, args=[key], producer=producer, retry=True,
                          retry_policy={"max_retries": 5, "interval_start": 1, "interval_step": 2})


def persistence_problem(url: str) -> str | None:
    """Why a broker restart could lose queued tasks, or None (Redis's append-only file is on)."""
    client = redis.Redis.from_url(url)
    try:
        if not client.info("persistence").get("aof_enabled"):
            return "the broker keeps its queue in memory only (Redis appendonly is off): a restart loses queued tasks"
    finally:
        client.close()
    return None
