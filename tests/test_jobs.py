"""Background jobs: outbox row in the change's transaction, inline and rq dispatch, relay."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from audit.models import AuditCheck
from common import jobs
from common.extensions import db
from common.jobs import OutboxJob, enqueue_job, execute, job
from common.models import utcnow
from tests.conftest import TEST_REDIS_URL, requires_redis

ROOT = Path(__file__).resolve().parent.parent
FLAKY_FAILURES: dict[int, int] = {}


@job("tests.flaky", retry_intervals=())
def flaky_job(*, outbox_id: int, fail_times: int) -> None:
    """Fails ``fail_times`` times, then records an audit check (a visible side effect)."""
    seen = FLAKY_FAILURES.get(outbox_id, 0)
    if seen < fail_times:
        FLAKY_FAILURES[outbox_id] = seen + 1
        raise RuntimeError(f"planned failure {seen + 1}")
    db.session.add(AuditCheck(outbox_id=outbox_id, ok=True, events_checked=0))
    db.session.commit()


def checks() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count(AuditCheck.id)))


def test_inline_job_runs_after_commit_in_its_own_session(app):
    row = enqueue_job("audit.verify_chain")
    assert checks() == 0  # rollback above discarded it: nothing runs before a commit
    row = enqueue_job("audit.verify_chain")
    db.session.commit()
    assert checks() == 1
    stored = db.session.get(OutboxJob, row.id)
    assert stored.completed_at is not None and stored.attempts == 1


def test_rolled_back_change_leaves_no_job(app):
    enqueue_job("audit.verify_chain")
    db.session.rollback()
    db.session.commit()
    assert db.session.scalar(select(func.count(OutboxJob.id))) == 0
    assert checks() == 0


def test_executing_a_completed_job_again_does_nothing(app):
    row = enqueue_job("audit.verify_chain")
    db.session.commit()
    assert execute(row.id) == "already-completed"
    assert checks() == 1


def test_unknown_job_names_are_refused_at_enqueue(app):
    with pytest.raises(KeyError):
        enqueue_job("no.such.job")


def test_failed_inline_job_stays_pending_and_the_relay_retries_it(app, runner):
    row = enqueue_job("tests.flaky", fail_times=1)
    db.session.commit()  # the change commits even though the job fails
    stored = db.session.get(OutboxJob, row.id)
    assert stored.completed_at is None and "planned failure" in stored.last_error
    result = runner.invoke(args=["outbox", "relay"])
    assert result.exit_code == 0, result.output
    db.session.rollback()
    stored = db.session.get(OutboxJob, row.id)
    assert stored.completed_at is not None and stored.attempts == 2
    assert checks() == 1


def test_outbox_status_and_enqueue_commands(app, runner):
    result = runner.invoke(args=["outbox", "enqueue", "audit.verify_chain"])
    assert result.exit_code == 0 and "recorded outbox job" in result.output
    assert checks() == 1
    assert "pending: 0" in runner.invoke(args=["outbox", "status"]).output
    assert runner.invoke(args=["outbox", "enqueue", "nope"]).exit_code == 2


# --- rq ----------------------------------------------------------------------------------------


@pytest.fixture
def rq_app(make_app):
    queue = f"test-{uuid.uuid4().hex[:8]}"
    app = make_app(REDIS_URL=TEST_REDIS_URL, RQ_DEFAULT_QUEUE=queue)
    with app.app_context():
        yield app
        jobs.queue_for(app).empty()


def command_env(app, database_url: str) -> dict[str, str]:
    """What the app's commands need to see ``app``'s database and queue."""
    return {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL,
            "RQ_DEFAULT_QUEUE": app.config["RQ_DEFAULT_QUEUE"], "SECRET_KEY": "x" * 40}


def run_worker(app, database_url: str) -> subprocess.CompletedProcess:
    """The real worker command, as operators run it, in burst mode."""
    env = command_env(app, database_url)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "worker", "--burst"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@requires_redis
def test_committed_job_waits_for_the_relay_then_runs_on_a_real_rq_worker(rq_app, database_url):
    from rq.job import Job

    row = enqueue_job("audit.verify_chain")
    db.session.commit()
    stored = db.session.get(OutboxJob, row.id)
    assert stored.dispatched_at is None and stored.completed_at is None
    assert jobs.queue_for(rq_app).count == 0, "the web request never talks to Redis"
    assert jobs.relay(rq_app) == 1
    db.session.rollback()
    assert db.session.get(OutboxJob, row.id).dispatched_at is not None
    rq_job = Job.fetch(f"outbox-{row.id}", connection=jobs.redis_connection(rq_app))
    assert rq_job.args == (row.id,)
    assert checks() == 0  # nothing ran in the web process
    result = run_worker(rq_app, database_url)
    assert result.returncode == 0, result.stderr
    assert checks() == 1
    db.session.rollback()
    assert db.session.get(OutboxJob, row.id).completed_at is not None


@requires_redis
def test_burst_worker_relays_pending_rows_first(rq_app, database_url):
    row = enqueue_job("audit.verify_chain")
    db.session.commit()
    result = run_worker(rq_app, database_url)
    assert result.returncode == 0, result.stderr
    assert checks() == 1
    db.session.rollback()
    assert db.session.get(OutboxJob, row.id).completed_at is not None


@requires_redis
def test_redis_outage_loses_no_job(make_app, database_url):
    queue = f"test-{uuid.uuid4().hex[:8]}"
    down = make_app(REDIS_URL="redis://127.0.0.1:1/0", RQ_DEFAULT_QUEUE=queue)
    with down.app_context():
        row = enqueue_job("audit.verify_chain")
        db.session.commit()  # the request never needs Redis
        with pytest.raises(Exception, match="(?i)connect"):
            jobs.relay(down)
        db.session.rollback()
        stored = db.session.get(OutboxJob, row.id)
        assert stored.dispatched_at is None and stored.rq_job is None, "unclaimed again"
        outbox_id = row.id
    up = make_app(REDIS_URL=TEST_REDIS_URL, RQ_DEFAULT_QUEUE=queue)
    with up.app_context():
        assert jobs.relay(up) == 1
        assert jobs.relay(up) == 0, "a second relay pass must not enqueue it again"
        assert run_worker(up, database_url).returncode == 0
        assert checks() == 1
        assert db.session.get(OutboxJob, outbox_id).completed_at is not None
        jobs.queue_for(up).empty()


@requires_redis
def test_relay_redispatches_a_job_whose_rq_entry_vanished(rq_app, database_url):
    from rq.job import Job

    row = enqueue_job("audit.verify_chain")
    db.session.commit()
    assert jobs.relay(rq_app) == 1
    connection = jobs.redis_connection(rq_app)
    Job.fetch(f"outbox-{row.id}", connection=connection).delete()
    db.session.execute(update(OutboxJob).where(OutboxJob.id == row.id)
                       .values(dispatched_at=utcnow() - timedelta(hours=1)))
    db.session.commit()
    assert jobs.relay(rq_app) == 1
    assert run_worker(rq_app, database_url).returncode == 0
    assert checks() == 1


@requires_redis
def test_relay_redispatches_a_job_a_killed_worker_took_off_the_queue(rq_app, database_url):
    from rq.job import Job, JobStatus

    row = enqueue_job("audit.verify_chain")
    db.session.commit()
    assert jobs.relay(rq_app) == 1
    connection = jobs.redis_connection(rq_app)
    queue = jobs.queue_for(rq_app)
    # What a SIGKILL between dequeue and start leaves: status queued, but in no queue.
    connection.lrem(queue.key, 0, f"outbox-{row.id}")
    assert Job.fetch(f"outbox-{row.id}", connection=connection).get_status() == JobStatus.QUEUED
    db.session.execute(update(OutboxJob).where(OutboxJob.id == row.id)
                       .values(dispatched_at=utcnow() - timedelta(hours=1)))
    db.session.commit()
    assert jobs.relay(rq_app) == 1
    assert run_worker(rq_app, database_url).returncode == 0
    assert checks() == 1


@requires_redis
def test_duplicate_delivery_runs_the_job_once_in_effect(rq_app, database_url):
    row = enqueue_job("audit.verify_chain")
    db.session.commit()
    # Simulate rq's at-least-once delivery: the same outbox row enqueued a second time.
    jobs.queue_for(rq_app).enqueue(jobs.run_outbox_job, row.id, job_id=f"dup-{row.id}")
    assert run_worker(rq_app, database_url).returncode == 0
    assert checks() == 1


# --- rows of one transaction sharing an rq job ---------------------------------------------------


def test_rows_sent_together_run_on_when_one_fails_and_the_job_fails(app):
    FLAKY_FAILURES.clear()  # outbox ids start again in every test
    first = enqueue_job("tests.flaky", fail_times=1)
    second = enqueue_job("audit.verify_chain")
    db.session.commit()  # inline: the flaky one failed, the other ran
    db.session.execute(update(OutboxJob).values(completed_at=None))  # as if never run
    db.session.commit()
    FLAKY_FAILURES.pop(first.id, None)
    jobs.set_worker_app(app)
    app._aftercare_pid = os.getpid()  # this process's pool, not a forked work horse's
    try:
        with pytest.raises(jobs.OutboxJobsFailed, match=str(first.id)):
            jobs.run_outbox_jobs([first.id, second.id])
        db.session.rollback()
        assert db.session.get(OutboxJob, second.id).completed_at is not None
        assert db.session.get(OutboxJob, first.id).completed_at is None
        # rq retries the whole job: the completed row is skipped, the failed one runs again.
        assert jobs.run_outbox_jobs([first.id, second.id]) == ["completed", "already-completed"]
    finally:
        jobs.set_worker_app(None)
    db.session.rollback()
    assert db.session.get(OutboxJob, first.id).attempts == 3  # inline, failed, retried


@requires_redis
def test_relay_sends_rows_that_dispatch_alike_in_batches(make_app, database_url):
    from rq.job import Job

    app = make_app(REDIS_URL=TEST_REDIS_URL, RQ_DEFAULT_QUEUE=f"test-{uuid.uuid4().hex[:8]}",
                   OUTBOX_RELAY_BATCH=2)
    with app.app_context():
        first = enqueue_job("audit.verify_chain")
        webhook = enqueue_job("webhooks.deliver", delivery_id=0)  # other retries: its own job
        second = enqueue_job("audit.verify_chain")
        third = enqueue_job("audit.verify_chain")  # the batch is full: a job of its own
        db.session.commit()
        assert jobs.relay(app) == 4
        rows = {row.id: row for row in db.session.scalars(select(OutboxJob))}
        pair = f"outbox-{first.id}-{second.id}"
        assert rows[first.id].rq_job == rows[second.id].rq_job == pair
        assert rows[first.id].rq_job_id == pair
        assert rows[third.id].rq_job is None and rows[webhook.id].rq_job is None
        connection = jobs.redis_connection(app)
        assert Job.fetch(pair, connection=connection).args == ([first.id, second.id],)
        assert Job.fetch(f"outbox-{third.id}", connection=connection).args == (third.id,)
        assert Job.fetch(f"outbox-{webhook.id}", connection=connection).args == (webhook.id,)
        jobs.queue_for(app).remove(f"outbox-{webhook.id}")
        assert run_worker(app, database_url).returncode == 0
        assert checks() == 3
        db.session.rollback()
        assert db.session.get(OutboxJob, second.id).completed_at is not None
        jobs.queue_for(app).empty()


@requires_redis
def test_relay_resends_a_row_of_a_vanished_shared_job_under_its_own_id(rq_app, database_url):
    from rq.job import Job

    first = enqueue_job("audit.verify_chain")
    second = enqueue_job("audit.verify_chain")
    db.session.commit()
    assert jobs.relay(rq_app) == 2
    connection = jobs.redis_connection(rq_app)
    Job.fetch(f"outbox-{first.id}-{second.id}", connection=connection).delete()
    db.session.execute(update(OutboxJob).values(dispatched_at=utcnow() - timedelta(hours=1)))
    db.session.commit()
    assert jobs.relay(rq_app) == 2
    assert Job.fetch(f"outbox-{second.id}", connection=connection).args == (second.id,)
    assert db.session.get(OutboxJob, second.id).rq_job is None
    assert run_worker(rq_app, database_url).returncode == 0
    assert checks() == 2


@requires_redis
def test_two_relays_at_once_send_every_row_exactly_once(rq_app):
    """Relays on two hosts: on PostgreSQL they skip each other's locked rows, on SQLite they
    queue for the write lock; either way no row is claimed twice and none is left behind."""
    import threading

    from rq.job import Job

    ids = [enqueue_job("audit.verify_chain").id for _ in range(120)]
    db.session.commit()
    start = threading.Barrier(2)
    sent: list[int] = []

    def relay_until_empty() -> None:
        start.wait()
        with rq_app.app_context():
            while (count := jobs.relay(rq_app, limit=15)) > 0:
                sent.append(count)

    threads = [threading.Thread(target=relay_until_empty) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(sent) == len(ids)
    connection = jobs.redis_connection(rq_app)
    carried: list[int] = []
    for job_id in jobs.queue_for(rq_app).get_job_ids():
        args = Job.fetch(job_id, connection=connection).args[0]
        carried.extend(args if isinstance(args, list) else [args])
    assert sorted(carried) == ids
    db.session.rollback()
    assert db.session.scalar(select(func.count(OutboxJob.id))
                             .where(OutboxJob.dispatched_at.is_(None))) == 0


@requires_redis
def test_relay_loop_sends_rows_as_they_commit_and_stops_on_sigterm(rq_app, database_url):
    import signal
    import time

    env = command_env(rq_app, database_url)
    relay = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "outbox", "relay", "--loop",
         "--interval", "0.05"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        row = enqueue_job("audit.verify_chain")
        db.session.commit()
        deadline = time.monotonic() + 30
        while jobs.queue_for(rq_app).count == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert jobs.queue_for(rq_app).get_job_ids() == [f"outbox-{row.id}"]
    finally:
        relay.send_signal(signal.SIGTERM)
        out, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    assert "relay stopped after 1 job(s)" in out


@requires_redis
def test_healthz_shows_jobs_waiting_for_the_relay(rq_app):
    enqueue_job("audit.verify_chain")
    db.session.commit()
    client = rq_app.test_client()
    outbox = client.get("/healthz").json["outbox"]
    assert outbox["pending"] == outbox["waiting_for_relay"] == 1
    assert outbox["oldest_waiting_seconds"] >= 0
    assert "waiting for the relay: 1" in rq_app.test_cli_runner().invoke(
        args=["outbox", "status"]).output
    assert jobs.relay(rq_app) == 1
    outbox = client.get("/healthz").json["outbox"]
    assert outbox["pending"] == 1 and outbox["waiting_for_relay"] == 0
    assert outbox["oldest_waiting_seconds"] is None
