"""Injected faults on PostgreSQL: a killed rq worker, Redis down, a dropped database
connection, a tampered audit row. ``FAULT_ROUNDS`` (default 1; ``make faults`` uses 3) repeats
each. Redis faults use a private ``redis-server`` on a free port, started and killed here, never
the shared one. The last test prints a line per fault.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, event, func, select, text

from audit.models import AuditEvent
from audit.service import verify_chain
from bench.cpu import all_stat_fields
from catalog.importing import run_import
from claims.models import Claim, TimelineEntry
from common import jobs
from common.extensions import db
from common.jobs import OutboxJob
from messaging.models import Message
from rma.models import Rma, RmaLabel
from tests.conftest import _empty_tables, requires_postgres
from tests.factories import (
    PURCHASE_HEADER,
    TEST_ACTOR,
    claim_body,
    csv_bytes,
    load_catalog,
    purchase_row,
)
from tests.reliability.report import Collector
from tests.test_claim_pages import form_data

pytestmark = [pytest.mark.postgres, requires_postgres]

ROOT = Path(__file__).resolve().parents[2]
FAULT_ROUNDS = int(os.environ.get("FAULT_ROUNDS", "1"))
REPORT = Collector("faults")


def count(model: Any, *where: Any) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def fresh_round(app: Flask, serials: list[str]) -> None:
    _empty_tables(app)
    from datetime import UTC, datetime, timedelta

    bought = datetime.now(UTC).date() - timedelta(days=100)
    with app.app_context():
        load_catalog()
        report = run_import("purchases", csv_bytes(
            PURCHASE_HEADER, *(purchase_row(s, bought=bought) for s in serials)),
            actor=TEST_ACTOR)
        assert report.rejected == 0, report.errors


# --- a private Redis ---------------------------------------------------------------------------


class PrivateRedis:
    """A throw-away ``redis-server`` this test may stop and start at will."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def worker_env(app: Flask, database_url: str, redis_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "RQ_DEFAULT_QUEUE": app.config["RQ_DEFAULT_QUEUE"], "SECRET_KEY": "x" * 40,
            "MAIL_BACKEND": "file", "MAIL_FILE_DIR": app.config["MAIL_FILE_DIR"]}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    """The real worker command, in a session of its own, logging to ``log``."""
    args = [sys.executable, "-m", "flask", "--app", "app", "worker"]
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, state) of every process, read from /proc."""
    return {pid: (int(fields[1]), int(fields[3]), fields[0])
            for pid, fields in all_stat_fields().items()}


def kill_session(session_id: int) -> None:
    """SIGKILL every live process of the session, as when its host dies, until none is left.

    rq's work horse runs in a process group of its own, so signalling the worker's group never
    reaches it; it stays in the worker's session (``start_worker``), even once re-parented,
    and a horse forked while the first ones are killed is found on the next pass.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [pid for pid, (_parent, session, state) in _process_table().items()
                 if session == session_id and state != "Z"]
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"processes of session {session_id} outlived SIGKILL")


def stop_worker(process: subprocess.Popen, sig: int, log: Path, database_url: str) -> None:
    """Stop a worker: SIGKILL takes its whole session down at once, as when its host dies;
    SIGTERM is a warm shutdown that must end within 30 s, or the failure says what its
    processes were doing."""
    if sig == signal.SIGKILL:
        kill_session(process.pid)
        process.wait(timeout=10)
        return
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        states = {pid: state for pid, (_parent, session, state) in _process_table().items()
                  if session == process.pid}
        kill_session(process.pid)
        process.wait(timeout=10)
        raise AssertionError(
            f"the worker ignored {signal.Signals(sig).name} for 30 s; processes {states}; "
            f"database sessions {database_sessions(database_url)}; its log ends:\n"
            f"{log.read_text()[-4000:]}") from None


def database_sessions(database_url: str) -> list[tuple]:
    """What every other session of the test database is doing, waiting for and since when."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(
                "SELECT pid, state, wait_event_type, wait_event, now() - xact_start,"
                " left(query, 120) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"))]
    finally:
        engine.dispose()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stuck_jobs(app: Flask) -> list[tuple[int, str, str | None]]:
    """Outbox rows not completed, with their rq status: what a failure message needs."""
    from rq.job import Job

    out = []
    for row in db.session.scalars(select(OutboxJob).where(OutboxJob.completed_at.is_(None))):
        try:
            status = Job.fetch(row.rq_job_id, connection=jobs.redis_connection(app)).get_status()
        except Exception as exc:  # noqa: BLE001 - vanished from Redis is the finding
            status = type(exc).__name__
        out.append((row.id, row.job_name, str(status), row.attempts))
    return out


def assert_every_job_done_once(app: Flask, claims: int) -> int:
    """Labels and emails of ``claims`` approved claims, each exactly once; returns rows checked."""
    with app.app_context():
        pending = count(OutboxJob, OutboxJob.completed_at.is_(None))
        assert pending == 0, f"{pending} outbox jobs never completed: {stuck_jobs(app)}"
        rmas = count(Rma)
        assert rmas == claims == count(Claim)
        assert count(Rma, Rma.label_ready_at.is_(None)) == 0, "a label was lost"
        assert count(RmaLabel) == rmas, "one stored label per RMA"
        assert count(AuditEvent, AuditEvent.action == "rma.label_ready") == rmas
        assert count(TimelineEntry, TimelineEntry.kind == "label_ready") == rmas
        messages = count(Message)
        assert messages == claims and count(Message, Message.status != "sent") == 0
        sent_events = db.session.execute(
            select(AuditEvent.data["message_id"].as_integer(), func.count())
            .where(AuditEvent.action == "message.sent").group_by(text("1"))).all()
        assert len(sent_events) == messages and {n for _, n in sent_events} == {1}, \
            "every message recorded as sent exactly once"
        files = sorted(Path(app.config["MAIL_FILE_DIR"]).glob("*.eml"))
        assert len(files) == messages, "one email file per message"
        assert not list(Path(app.config["MAIL_FILE_DIR"]).glob("*.tmp"))
        result = verify_chain()
        assert result.ok, result.problem
        return 3 * rmas + 3 * messages + len(files) + result.events_checked


# --- 1. the rq worker is SIGKILLed in the middle of a batch -----------------------------------

BATCH = 30  # claims: 30 label jobs, 30 announce jobs and the 30 email jobs those queue


@contextmanager
def relay_running(app: Flask) -> Iterator[None]:
    """The production relay loop, in a thread: it sends the rows jobs add (the emails) to rq."""
    stop = threading.Event()
    thread = threading.Thread(target=jobs.relay_forever, args=(app,),
                              kwargs={"interval": 0.05, "stop": stop}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_killed_worker_loses_no_label_and_sends_no_email_twice(make_app, private_redis,
                                                               database_url, tmp_path):
    started = time.perf_counter()
    serials = [f"KILL{i:03d}" for i in range(BATCH)]
    for round_ in range(FAULT_ROUNDS):
        app = make_app(REDIS_URL=private_redis.url, RQ_DEFAULT_QUEUE=f"kill-{uuid.uuid4().hex[:8]}",
                       MAIL_FILE_DIR=str(tmp_path / f"mail-{round_}"))
        fresh_round(app, serials)
        client = app.test_client()
        for serial in serials:
            assert client.post("/api/v1/claims", json=claim_body(serial)).status_code == 201
        with app.app_context():
            assert count(OutboxJob) == 2 * BATCH
            # The relay sends labels and announcements in rq jobs of OUTBOX_RELAY_BATCH rows each.
            assert jobs.relay(app) == 2 * BATCH
            batch = app.config["OUTBOX_RELAY_BATCH"]
            assert jobs.queue_for(app).count == -(-2 * BATCH // batch)
        env = worker_env(app, database_url, private_redis.url)
        worker = start_worker(env, tmp_path / f"worker-{round_}.log")
        try:
            with relay_running(app), app.app_context():
                # Kill once some emails went out but most jobs are still waiting.
                wait_for(lambda: count(OutboxJob, OutboxJob.completed_at.is_not(None))
                         >= BATCH // 3, 60, "the first worker to make progress")
                stop_worker(worker, signal.SIGKILL, tmp_path / f"worker-{round_}.log",
                            database_url)
                done_at_kill = count(OutboxJob, OutboxJob.completed_at.is_not(None))
        finally:  # also when the wait failed: nothing of the worker may outlive the test
            kill_session(worker.pid)
            worker.wait(timeout=10)
        assert done_at_kill < 3 * BATCH, "the worker finished before it was killed"
        # What rq does by itself about 90 s after a work horse died (its heartbeat expired):
        # the abandoned job is retried (in 10 s, by a scheduler). And what Redis does about 60 s
        # after the dead worker's scheduler last refreshed its lock: the lock expires, so the
        # next worker's upkeep (RQ_MAINTENANCE_SECONDS) takes the scheduler over. Fast-forward
        # both clocks instead of sleeping.
        from rq.registry import StartedJobRegistry
        from rq.scheduler import RQScheduler

        with app.app_context():
            queue = jobs.queue_for(app)
            registry = StartedJobRegistry(queue=queue)
            abandoned = len(registry.get_job_ids())
            registry.cleanup(timestamp=time.time() + 3600)
            queue.connection.delete(RQScheduler.get_locking_key(queue.name))
        # The relay's stale-row pass (every few minutes in production, fast-forwarded here)
        # resends what the kill orphaned: a job taken off the queue but never started.
        app.config["OUTBOX_REDISPATCH_AFTER_SECONDS"] = 0
        jobs.relay(app)
        replacement = start_worker(env, tmp_path / f"replacement-{round_}.log")
        try:
            with relay_running(app), app.app_context():
                try:
                    wait_for(lambda: count(OutboxJob, OutboxJob.completed_at.is_(None)) == 0, 90,
                             "the replacement worker to finish the batch")
                except AssertionError as timeout:
                    raise AssertionError(f"{timeout}; stuck: {stuck_jobs(app)}") from None
        finally:
            stop_worker(replacement, signal.SIGTERM, tmp_path / f"replacement-{round_}.log",
                        database_url)
        rows = assert_every_job_done_once(app, BATCH)
        with app.app_context():
            retried = count(Message, Message.attempts > 1)
        REPORT.add("worker SIGKILL mid-batch", rounds=1, requests=BATCH, faults=1,
                   rows_verified=rows, winners=abandoned + retried)
    REPORT.add("worker SIGKILL mid-batch", seconds=time.perf_counter() - started)


# --- 2. Redis stops while claims are filed -----------------------------------------------------

OUTAGE_CLAIMS = 10


def test_claims_filed_while_redis_is_down_are_saved_and_sent_later(make_app, private_redis,
                                                                   database_url, tmp_path):
    started = time.perf_counter()
    serials = [f"DOWN{i:03d}" for i in range(OUTAGE_CLAIMS * 2)]
    for round_ in range(FAULT_ROUNDS):
        app = make_app(REDIS_URL=private_redis.url, RQ_DEFAULT_QUEUE=f"down-{uuid.uuid4().hex[:8]}",
                       MAIL_FILE_DIR=str(tmp_path / f"mail-{round_}"))
        fresh_round(app, serials)
        private_redis.stop()
        statuses = []
        for i, serial in enumerate(serials):
            client = app.test_client()
            if i % 2:  # the public form, as a customer uses it
                page = client.get("/claim")
                statuses.append(page.status_code)
                response = client.post("/claim", data=form_data(
                    page.get_data(as_text=True), serial_number=serial))
                assert response.status_code == 302, response.status_code
            else:
                response = client.post("/api/v1/claims", json=claim_body(serial))
                assert response.status_code == 201, response.status_code
            statuses.append(response.status_code)
        assert all(s < 500 for s in statuses)
        with app.app_context():
            assert count(Claim) == len(serials) == count(Rma)
            undispatched = count(OutboxJob, OutboxJob.dispatched_at.is_(None),
                                 OutboxJob.completed_at.is_(None))
            assert undispatched == 2 * len(serials), "every job waits in the outbox"
        private_redis.start()
        relay = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "outbox", "relay"], cwd=ROOT,
            env=worker_env(app, database_url, private_redis.url), capture_output=True,
            text=True, timeout=120, check=False)
        assert relay.returncode == 0, relay.stderr
        worker = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "worker", "--burst"], cwd=ROOT,
            env=worker_env(app, database_url, private_redis.url), capture_output=True,
            text=True, timeout=180, check=False)
        assert worker.returncode == 0, worker.stderr
        rows = assert_every_job_done_once(app, len(serials))
        REPORT.add("Redis down while filing", rounds=1, requests=len(statuses), faults=1,
                   rows_verified=rows, winners=len(serials),
                   errors=sum(s >= 500 for s in statuses))
    REPORT.add("Redis down while filing", seconds=time.perf_counter() - started)


# --- 3. the database connection drops in the middle of a request -------------------------------

# A filing's two statements on PostgreSQL: the purchase facts, then every write with the audit
# seal as one (``fastsql.write_batch``).
KILL_POINTS = ["SELECT purchases.id", "WITH w0 AS (INSERT INTO claims"]


def test_dropped_database_connection_is_a_503_without_partial_writes(make_app, database_url):
    started = time.perf_counter()
    app = make_app()
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    armed: dict[str, Any] = {"at": None, "killed": 0}

    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "before_cursor_execute")
    def drop_connection(conn, cursor, statement, *args):  # noqa: ANN001, ANN202
        point = armed["at"]
        if point and statement.lstrip().upper().startswith(point.upper()):
            armed["at"] = None
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            armed["killed"] += 1

    try:
        for round_ in range(FAULT_ROUNDS):
            for i, point in enumerate(KILL_POINTS):
                serial = f"DROP{round_}{i}"
                fresh_round(app, [serial])
                with app.app_context():
                    before = {m: count(m) for m in (Claim, Rma, Message, OutboxJob, AuditEvent)}
                armed["at"] = point
                killed = armed["killed"]
                response = app.test_client().post("/api/v1/claims", json=claim_body(serial))
                assert armed["killed"] == killed + 1, f"never reached {point}"
                assert response.status_code == 503, (point, response.status_code)
                assert response.mimetype == "application/problem+json"
                assert response.headers["Retry-After"] and response.json["status"] == 503
                with app.app_context():
                    after = {m: count(m) for m in before}
                    assert after == before, f"partial write after a drop at {point}"
                # The same app, no restart: the pool replaces the dead connection.
                retry = app.test_client().post("/api/v1/claims", json=claim_body(serial))
                assert retry.status_code == 201, retry.json
                with app.app_context():
                    assert count(Claim) == 1 and count(Rma) == 1
                    assert count(OutboxJob, OutboxJob.completed_at.is_(None)) == 0
                    result = verify_chain()
                    assert result.ok, result.problem
                REPORT.add("DB connection dropped mid-request", rounds=1, requests=2, faults=1,
                           winners=1, rows_verified=2 * len(before) + result.events_checked)
    finally:
        event.remove(engine, "before_cursor_execute", drop_connection)
        admin.dispose()
    REPORT.add("DB connection dropped mid-request", seconds=time.perf_counter() - started)


# --- 4. an audit row is edited behind the application's back ---------------------------------

TAMPERS = {
    "data": "UPDATE audit_events SET data = '{\"forged\": true}' WHERE seq = :seq",
    "actor": "UPDATE audit_events SET actor_label = 'someone else' WHERE seq = :seq",
    "action": "UPDATE audit_events SET action = 'claim.rejected' WHERE seq = :seq",
    "removed": "DELETE FROM audit_events WHERE seq = :seq",
}


def test_verify_names_the_tampered_audit_event(make_app, database_url):
    started = time.perf_counter()
    app = make_app()
    serials = [f"AUD{i:02d}" for i in range(5)]
    for _round in range(FAULT_ROUNDS):
        for kind, statement in TAMPERS.items():
            fresh_round(app, serials)
            client = app.test_client()
            for serial in serials:
                assert client.post("/api/v1/claims", json=claim_body(serial)).status_code == 201
            with app.app_context():
                total = verify_chain()
                assert total.ok
                seq = total.events_checked // 2 + 1
                db.session.execute(text(statement), {"seq": seq})
                db.session.commit()
            verify = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "app", "audit", "verify"], cwd=ROOT,
                env={**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "x" * 40},
                capture_output=True, text=True, timeout=60, check=False)
            assert verify.returncode == 1, verify.stdout + verify.stderr
            assert f"BROKEN at seq {seq}:" in verify.stderr, (kind, verify.stderr)
            with app.app_context():
                result = verify_chain()
                assert not result.ok and result.first_broken_seq == seq
            REPORT.add("audit row tampered", rounds=1, faults=1, winners=1,
                       rows_verified=total.events_checked)
    REPORT.add("audit row tampered", seconds=time.perf_counter() - started)


def test_zz_print_fault_figures(capsys):
    """Last in the module: one line per fault, printed past pytest's capture."""
    with capsys.disabled():
        print()
        for line in REPORT.lines():
            print(line)
    REPORT.write()
    assert all(f.errors == 0 for f in REPORT.cases.values())
