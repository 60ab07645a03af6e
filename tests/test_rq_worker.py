"""The rq worker's signal handling around the fork of a work horse (common/rq_worker.py)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import TEST_REDIS_URL, requires_redis

ROOT = Path(__file__).resolve().parents[1]

# A worker that runs one job, where a SIGTERM to the worker's process group lands in the
# child between fork() and rq moving it into a group of its own (the moment systemd or an
# operator may stop the service). Each warm-shutdown handler run records its process id.
SCRIPT = """
import os, signal, sys, time
from redis import Redis
from rq import Queue
from rq.worker.base import BaseWorker
from common.rq_worker import Worker
import rq

redis_url, queue_name, marks, which = sys.argv[1:5]
connection = Redis.from_url(redis_url)
queue = Queue(queue_name, connection=connection)
job = queue.enqueue(len, [1, 2])
handled = BaseWorker.handle_warm_shutdown_request

def marked(self):
    with open(marks, "a") as out:
        out.write(f"{os.getpid()}\\n")
    handled(self)

BaseWorker.handle_warm_shutdown_request = marked
setpgrp = os.setpgrp

def racing_setpgrp():  # only the freshly forked child calls it
    os.killpg(os.getpgrp(), signal.SIGTERM)
    time.sleep(0.2)  # a handler, if any, runs now
    setpgrp()

os.setpgrp = racing_setpgrp
worker_class = Worker if which == "aftercare" else rq.Worker
worker_class([queue], connection=connection).work(burst=True)
job.refresh()
print("RESULT", os.getpid(), job.get_status(), job.return_value(), flush=True)
"""


def run_racing_worker(redis_url: str, tmp_path: Path, which: str) -> tuple[int, str, list[int]]:
    marks = tmp_path / f"marks-{which}"
    marks.touch()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, redis_url, f"race-{uuid.uuid4().hex[:8]}", str(marks),
         which], cwd=ROOT, capture_output=True, text=True, timeout=60,
        start_new_session=True,  # the SIGTERM goes to this group, never to pytest's
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _label, pid, status, result = done.stdout.splitlines()[-1].split()
    handlers = [int(line) for line in marks.read_text().split()]
    return int(pid), f"{status} {result}", handlers


@requires_redis
def test_a_sigterm_during_the_fork_is_the_workers_warm_shutdown_not_the_horses(tmp_path):
    worker_pid, job, handlers = run_racing_worker(TEST_REDIS_URL, tmp_path, "aftercare")
    assert handlers == [worker_pid], "only the worker runs its warm shutdown"
    assert job == "JobStatus.FINISHED 2", "the horse ran its job to the end"


@requires_redis
def test_rqs_own_worker_lets_the_child_run_the_workers_shutdown(tmp_path):
    """What the subclass prevents: the child handles the signal with the worker's handler."""
    worker_pid, _job, handlers = run_racing_worker(TEST_REDIS_URL, tmp_path, "rq")
    assert worker_pid in handlers and any(pid != worker_pid for pid in handlers)

