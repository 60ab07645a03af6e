"""Background jobs behind one small interface, with a transactional outbox.

``enqueue_job("name", key=value)`` adds an ``outbox_jobs`` row to the current transaction.

Without ``REDIS_URL`` the row runs inline once the transaction commits, in a fresh app context
and session. With Redis the web request does nothing more: the relay (``flask --app app outbox
relay --loop``, any number of them) claims pending rows in batches and sends the rows of a batch
that dispatch alike (same queue, timeout and retries) to rq as one job, recorded in ``rq_job``.
An rq enqueue cost a claim filing more than all of its SQL together, and rq forks a work horse
per job, so a batch pays both once. If Redis is down the rows simply wait; rows dispatched long
ago whose rq job vanished are re-sent one by one. A job marks its row completed and skips rows
already completed, so rq's at-least-once delivery runs it once in effect. Job functions take
ids, reload what they need and must themselves be idempotent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    String,
    Text,
    bindparam,
    event,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from common.extensions import db
from common.fastsql import Returned, connection_of, insert_into
from common.models import UTCDateTime, utcnow

log = logging.getLogger(__name__)

_NEW_KEY = "aftercare.outbox.new"
_COMMITTED_KEY = "aftercare.outbox.committed"  # committed, waiting for the transaction end


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: Callable[..., Any]
    queue: str | None = None
    timeout: int = 300
    result_ttl: int = 3600
    failure_ttl: int = 7 * 24 * 3600
    retry_intervals: tuple[int, ...] = (10, 30, 60)
    options: dict[str, Any] = field(default_factory=dict)


_registry: dict[str, JobSpec] = {}


def _dispatch_key(spec: JobSpec) -> tuple:
    """Jobs with equal keys may share one rq job: rq applies these options per job."""
    return (spec.queue, spec.timeout, spec.result_ttl, spec.failure_ttl, spec.retry_intervals)


def job(
    name: str,
    *,
    queue: str | None = None,
    timeout: int = 300,
    retry_intervals: tuple[int, ...] = (10, 30, 60),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a background job under a stable ``name``."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        _registry[name] = JobSpec(
            name=name, func=func, queue=queue, timeout=timeout, retry_intervals=retry_intervals
        )
        return func

    return decorator


def registered_jobs() -> dict[str, JobSpec]:
    return dict(_registry)


def _spec(name: str) -> JobSpec:
    # A name this code does not know (a newer release wrote the row) still goes to rq on its
    # own, where ``execute`` refuses it and rq keeps it among the failed jobs.
    return _registry.get(name) or JobSpec(name=name, func=execute, retry_intervals=())


class OutboxJob(db.Model):
    """A job recorded in the same transaction as the change that needs it."""

    __tablename__ = "outbox_jobs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_name: Mapped[str] = mapped_column(String(100), nullable=False)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The rq job this row was sent in when the relay batched it with others (else outbox-<id>).
    rq_job: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (db.Index("ix_outbox_jobs_pending", "completed_at", "dispatched_at", "id"),)

    @property
    def rq_job_id(self) -> str:
        return _rq_job_id(self.id, self.rq_job)


def _rq_job_id(outbox_id: int, rq_job: str | None = None) -> str:
    """The rq job a row travels in: its batch's, else its own ``outbox-<id>``."""
    return rq_job or f"outbox-{outbox_id}"


@dataclass(frozen=True)
class QueuedJob:
    """The outbox row ``enqueue_job`` wrote in the caller's transaction."""

    returned: Returned = field(repr=False)
    job_name: str
    kwargs: dict[str, Any]

    @property
    def id(self) -> int:
        """The row's id; inside a ``fastsql.write_batch``, there once the batch has run."""
        return self.returned.value


# Outbox rows are appended in the caller's transaction and changed later only by the relay
# and the job: one statement on the cursor returning the id, instead of a unit-of-work flush.
# The id is read only when needed: the inline runner reads it after the commit, rq mode never.
_INSERT_OUTBOX = insert_into(OutboxJob.__table__, returning=("id",))


def enqueue_job(job_name: str, **kwargs: Any) -> QueuedJob:
    """Record a job in the current transaction; it runs (or is relayed to rq) after the commit."""
    if job_name not in _registry:
        raise KeyError(f"unknown job {job_name!r}")
    session = db.session()
    returned = _INSERT_OUTBOX.returned(
        connection_of(session), {"job_name": job_name, "kwargs": kwargs})
    queued = QueuedJob(returned, job_name, kwargs)
    if not _dispatches_to_rq():
        session.info.setdefault(_NEW_KEY, []).append(queued)
    return queued


def _dispatches_to_rq() -> bool:
    try:
        return bool(current_app.config.get("REDIS_URL"))
    except RuntimeError:
        return False


def complete_with_transaction(outbox_id: int) -> bool:
    """Mark the row completed in the caller's transaction; False if a run already completed it.

    For a job whose whole effect is database writes: called first, committed with those writes,
    it makes a retried or twice-delivered rq job a no-op (on PostgreSQL the row lock makes a
    concurrent duplicate wait for this one's commit, then find the row completed).
    """
    return db.session.execute(
        update(OutboxJob)
        .where(OutboxJob.id == outbox_id, OutboxJob.completed_at.is_(None))
        .values(completed_at=utcnow(), last_error=None)
        .execution_options(synchronize_session=False)
    ).rowcount == 1


# --- inline dispatch after commit (no Redis) ----------------------------------------------


def install_session_hooks() -> None:
    """Attach the outbox hooks to every SQLAlchemy session (idempotent)."""
    if not event.contains(Session, "after_commit", _note_committed):
        event.listen(Session, "after_commit", _note_committed)
        event.listen(Session, "after_transaction_end", _run_after_commit)
        event.listen(Session, "after_rollback", _forget)


def _note_committed(session: Session) -> None:
    queued = session.info.pop(_NEW_KEY, None)
    if queued:
        session.info[_COMMITTED_KEY] = [q.id for q in queued]


def _run_after_commit(session: Session, transaction: Any) -> None:
    # Run once the committed transaction has ended and given its connection back to the pool:
    # an inline job opens its own session, and doing that inside ``after_commit`` (while the
    # request still holds its connection) deadlocks N concurrent requests on a pool of N.
    if transaction.parent is not None:
        return
    committed = session.info.pop(_COMMITTED_KEY, None)
    if not committed:
        return
    try:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:
        return  # outside an app: ``flask outbox relay`` runs them later
    for outbox_id in committed:
        _run_inline(app, outbox_id)


def _forget(session: Session, *args: Any) -> None:
    session.info.pop(_NEW_KEY, None)
    session.info.pop(_COMMITTED_KEY, None)


def enqueue_rows(app: Flask, rows: list[tuple[int, str, str]]) -> None:
    """Put committed outbox rows ``(id, job name, rq job id)`` on rq in one round trip to Redis.

    Rows naming the same rq job go in it together (``run_outbox_jobs``).
    """
    from rq import Queue, Retry

    together: dict[str, list[tuple[int, JobSpec]]] = {}
    for outbox_id, name, rq_job_id in rows:
        together.setdefault(rq_job_id, []).append((outbox_id, _spec(name)))
    by_queue: dict[str | None, list] = {}
    for rq_job_id, members in together.items():
        ids = [outbox_id for outbox_id, _member in members]
        spec = members[0][1]
        names = ", ".join(f"{member.name} (outbox {outbox_id})" for outbox_id, member in members)
        by_queue.setdefault(spec.queue, []).append(Queue.prepare_data(
            run_outbox_job if len(ids) == 1 else run_outbox_jobs,
            args=(ids[0],) if len(ids) == 1 else (ids,),
            job_id=rq_job_id,
            timeout=spec.timeout * len(ids),
            result_ttl=spec.result_ttl,
            failure_ttl=spec.failure_ttl,
            description=names,
            retry=Retry(max=len(spec.retry_intervals), interval=list(spec.retry_intervals))
            if spec.retry_intervals else None,
        ))
    # One MULTI/EXEC round trip for all of the pass's jobs, whatever their queues.
    with redis_connection(app).pipeline() as pipeline:
        for queue_name, datas in by_queue.items():
            queue_for(app, queue_name).enqueue_many(datas, pipeline=pipeline)
        pipeline.execute()


def _run_inline(app: Flask, outbox_id: int) -> None:
    # A fresh app context gives the job its own session, exactly as in a worker.
    with app.app_context():
        try:
            execute(outbox_id)
        except Exception:  # noqa: BLE001 - the change is committed; leave the row for a retry
            log.exception("outbox: inline job %s failed; it stays pending", outbox_id)


# --- the job body ------------------------------------------------------------------------------

_worker_app: Flask | None = None


def set_worker_app(app: Flask) -> None:
    """Called by the worker command before forking, so every work horse inherits the app."""
    global _worker_app
    _worker_app = app


def _app_for_job() -> Flask:
    global _worker_app
    if _worker_app is None:
        from app import create_app  # a plain `rq worker`: build the app once per process

        _worker_app = create_app()
    return _worker_app


class OutboxJobsFailed(RuntimeError):
    """Some rows of a shared rq job failed; rq retries it and the completed rows are skipped."""


def run_outbox_job(outbox_id: int) -> str:
    """rq entry point: run one outbox row in its own app context and session."""
    app = _app_for_job()
    with app.app_context():
        _fresh_connections_after_fork(app)
        return execute(outbox_id)


def run_outbox_jobs(outbox_ids: list[int]) -> list[str]:
    """rq entry point for rows sent together: each in its own app context and session.

    One row failing does not keep the others from running; the rq job fails afterwards.
    """
    app = _app_for_job()
    results, failed = [], []
    for outbox_id in outbox_ids:
        with app.app_context():
            _fresh_connections_after_fork(app)
            try:
                results.append(execute(outbox_id))
            except Exception as exc:  # noqa: BLE001 - recorded on the row; raised below
                log.warning("outbox: job %s failed: %r", outbox_id, exc)
                failed.append(outbox_id)
    if failed:
        raise OutboxJobsFailed(f"outbox rows {failed} failed (see their last_error)")
    return results


def _fresh_connections_after_fork(app: Flask) -> None:
    if getattr(app, "_aftercare_pid", None) != os.getpid():
        # Forked work horse: never reuse the parent's pooled connections.
        db.engine.dispose(close=False)
        app._aftercare_pid = os.getpid()  # type: ignore[attr-defined]


def execute(outbox_id: int) -> str:
    """Run one outbox row unless it already completed; mark it completed afterwards."""
    row = db.session.get(OutboxJob, outbox_id)
    if row is None:
        return "missing"
    if row.completed_at is not None:
        return "already-completed"
    spec = _registry.get(row.job_name)
    if spec is None:
        raise KeyError(f"unknown job {row.job_name!r} in outbox row {outbox_id}")
    kwargs = dict(row.kwargs)
    db.session.execute(
        update(OutboxJob).where(OutboxJob.id == outbox_id).values(attempts=OutboxJob.attempts + 1)
    )
    db.session.commit()
    try:
        spec.func(outbox_id=outbox_id, **kwargs)
    except Exception as exc:
        db.session.rollback()
        db.session.execute(
            update(OutboxJob).where(OutboxJob.id == outbox_id).values(last_error=repr(exc)[:2000])
        )
        db.session.commit()
        raise
    complete_with_transaction(outbox_id)  # a no-op for a job that completed its row itself
    db.session.commit()
    return "completed"


# --- rq plumbing -------------------------------------------------------------------------------


def redis_connection(app: Flask):  # noqa: ANN201 - redis.Redis
    from redis import Redis

    conn = app.extensions.get("aftercare_redis")
    if conn is None:
        conn = Redis.from_url(app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2)
        app.extensions["aftercare_redis"] = conn
    return conn


def queue_for(app: Flask, name: str | None = None):  # noqa: ANN201 - rq.Queue
    from rq import Queue

    # One Queue object per name and app: building one resolves its serializer every time.
    name = name or app.config["RQ_DEFAULT_QUEUE"]
    queues = app.extensions.setdefault("aftercare_rq_queues", {})
    queue = queues.get(name)
    if queue is None:
        queue = queues[name] = Queue(name, connection=redis_connection(app))
    return queue


def relay(app: Flask, *, limit: int = 500) -> int:
    """One relay pass: send pending outbox rows to rq; returns how many rows were sent.

    New rows are claimed in one statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so relays
    on several hosts share the work) and sent in batches of up to ``OUTBOX_RELAY_BATCH`` rows per
    rq job. Then rows dispatched more than ``OUTBOX_REDISPATCH_AFTER_SECONDS`` ago whose rq job
    vanished are re-sent, each alone under its own id.
    """
    with app.app_context():
        return _relay_new(app, limit) + _relay_stale(app, limit)


def relay_forever(app: Flask, *, interval: float, stop: threading.Event,
                  limit: int = 500) -> int:
    """Relay passes until ``stop`` is set; back to back while a pass finds ``limit`` rows."""
    relayed = 0
    while not stop.is_set():
        try:
            sent = relay(app, limit=limit)
        except Exception:  # noqa: BLE001 - Redis or the database down: try again later
            log.exception("outbox: relay pass failed")
            sent = 0
        relayed += sent
        if sent < limit:
            stop.wait(interval)
    return relayed


def _claim_statement(dialect: str, limit: int):  # noqa: ANN202 - an UPDATE statement
    table = OutboxJob.__table__
    pending = (select(table.c.id)
               .where(table.c.completed_at.is_(None), table.c.dispatched_at.is_(None))
               .order_by(table.c.id).limit(limit))
    if dialect == "postgresql":
        pending = pending.with_for_update(skip_locked=True)
    return (update(table).where(table.c.id.in_(pending.scalar_subquery()))
            .values(dispatched_at=bindparam("now"))
            .returning(table.c.id, table.c.job_name))


_NAME_RQ_JOB = (update(OutboxJob.__table__)
                .where(OutboxJob.__table__.c.id == bindparam("row_id"))
                .values(rq_job=bindparam("rq_job")))


def _relay_new(app: Flask, limit: int) -> int:
    session = db.session
    claimed = sorted(session.execute(
        _claim_statement(session.get_bind().dialect.name, limit), {"now": utcnow()}).all())
    if not claimed:
        session.rollback()
        return 0
    size = max(1, app.config["OUTBOX_RELAY_BATCH"])
    groups: dict[tuple, list[tuple[int, str]]] = {}
    for outbox_id, name in claimed:
        key = _dispatch_key(_spec(name)) if name in _registry else ("unknown", name)
        groups.setdefault(key, []).append((outbox_id, name))
    rows: list[tuple[int, str, str]] = []
    batched: list[dict[str, Any]] = []
    for members in groups.values():
        for start in range(0, len(members), size):
            batch = members[start:start + size]
            ids = [outbox_id for outbox_id, _name in batch]
            if len(batch) == 1:
                rows.append((ids[0], batch[0][1], _rq_job_id(ids[0])))
                continue
            rq_job = f"outbox-{ids[0]}-{ids[-1]}"
            rows.extend((outbox_id, name, rq_job) for outbox_id, name in batch)
            batched.extend({"row_id": outbox_id, "rq_job": rq_job} for outbox_id in ids)
    if batched:
        # One Core executemany for every batch of the pass (the ORM's bulk UPDATE per batch
        # was a fifth of the relay's time under load).
        session.execute(_NAME_RQ_JOB, batched)
    session.commit()
    try:
        enqueue_rows(app, rows)
    except Exception:
        _unclaim([outbox_id for outbox_id, _name, _job in rows])
        raise
    return len(rows)


def _unclaim(ids: list[int]) -> None:
    """Hand claimed rows back (Redis refused them), so the next pass sends them."""
    db.session.execute(update(OutboxJob).where(OutboxJob.id.in_(ids))
                       .values(dispatched_at=None, rq_job=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()


def _relay_stale(app: Flask, limit: int) -> int:
    from rq.job import JobStatus

    stale_before = utcnow() - timedelta(seconds=app.config["OUTBOX_REDISPATCH_AFTER_SECONDS"])
    rows = db.session.execute(
        select(OutboxJob.id, OutboxJob.job_name, OutboxJob.dispatched_at, OutboxJob.rq_job)
        .where(OutboxJob.completed_at.is_(None), OutboxJob.dispatched_at < stale_before)
        .order_by(OutboxJob.id).limit(limit)).all()
    db.session.rollback()
    if not rows:
        return 0
    conn = redis_connection(app)
    # Every status is read before anything is re-sent: a row re-sent alone under its own id
    # may reuse the id of the vanished job another row still names.
    statuses = {job_id: _rq_status(job_id, conn)
                for job_id in {_rq_job_id(row.id, row.rq_job) for row in rows}}
    # Alive jobs are left alone; failed ones wait in rq's failed registry for an operator
    # (requeue there) rather than being retried here for ever.
    settled = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED,
               JobStatus.FAILED)
    sent = 0
    for row in rows:
        if statuses[_rq_job_id(row.id, row.rq_job)] in settled:
            continue
        claimed = db.session.execute(
            update(OutboxJob)
            .where(OutboxJob.id == row.id, OutboxJob.dispatched_at == row.dispatched_at)
            .values(dispatched_at=utcnow(), rq_job=None)
        ).rowcount
        db.session.commit()
        if claimed != 1:
            continue  # another relay got it
        try:
            enqueue_rows(app, [(row.id, row.job_name, _rq_job_id(row.id))])
        except Exception:
            _unclaim([row.id])
            raise
        sent += 1
    return sent


def _rq_status(job_id: str, conn: Any) -> Any:
    """The rq job's status; None when it vanished or was lost between dequeue and start."""
    from rq.job import Job, JobStatus

    try:
        job = Job.fetch(job_id, connection=conn)
        status = job.get_status()
    except Exception:  # noqa: BLE001 - job expired from Redis or never arrived
        return None
    if status == JobStatus.QUEUED and _orphaned(job, conn):
        return None  # a worker took it off the queue and died before starting
    return status


def _orphaned(job: Any, conn: Any) -> bool:
    """A job marked queued that is in no queue: lost between dequeue and start (SIGKILL)."""
    from rq import Queue

    try:
        return Queue(job.origin, connection=conn).get_job_position(job.id) is None
    except Exception:  # noqa: BLE001 - cannot tell: leave it alone
        return False


def run_pending_inline(app: Flask, *, limit: int = 500) -> int:
    """Without Redis: run committed rows that never completed (e.g. a crash mid-request)."""
    with app.app_context():
        ids = list(
            db.session.scalars(
                select(OutboxJob.id)
                .where(OutboxJob.completed_at.is_(None))
                .order_by(OutboxJob.id)
                .limit(limit)
            )
        )
    for outbox_id in ids:
        _run_inline(app, outbox_id)
    return len(ids)


def pending_summary() -> dict[str, Any]:
    """Counts for /healthz: jobs not yet completed, and those no relay has sent yet.

    With Redis, rows waiting for the relay that keep getting older mean no relay is running.
    """
    from sqlalchemy import func

    waiting = OutboxJob.dispatched_at.is_(None)
    count, oldest, unsent, oldest_unsent = db.session.execute(
        select(func.count(OutboxJob.id), func.min(OutboxJob.created_at),
               func.count(OutboxJob.id).filter(waiting),
               func.min(OutboxJob.created_at).filter(waiting))
        .where(OutboxJob.completed_at.is_(None))
    ).one()
    return {"pending": int(count), "oldest_pending_seconds": _age(oldest),
            "waiting_for_relay": int(unsent), "oldest_waiting_seconds": _age(oldest_unsent)}


def _age(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive UTC from an aggregate
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return round((utcnow() - moment).total_seconds(), 1)
