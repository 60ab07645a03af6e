"""Background jobs behind one small interface, with a transactional outbox.

``enqueue_job("name", key=value)`` adds an ``outbox_jobs`` row to the current transaction. When
that transaction commits, the row is dispatched: run inline in a fresh app context and session
(no ``REDIS_URL``), or enqueued on rq with the deterministic job id ``outbox-<id>``. Rows of one
transaction that dispatch alike (same queue, timeout and retries) share one rq job, named after
the first of them and recorded in ``rq_job``: filing a claim queues a label and an email, and
each rq job costs the request more than the rest of its writes together. If Redis is
down or the process dies between commit and enqueue, the row stays pending and
``flask --app app outbox relay`` enqueues it later, so nothing is lost. A job marks its row
completed and skips rows already completed, so rq's at-least-once delivery runs it once in effect.
Job functions take ids, reload what they need and must themselves be idempotent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import JSON, BigInteger, Integer, String, Text, event, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from common.extensions import db
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
    # The rq job this row was sent in when it shares one with an earlier row of its transaction.
    rq_job: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (db.Index("ix_outbox_jobs_pending", "completed_at", "dispatched_at", "id"),)

    @property
    def rq_job_id(self) -> str:
        return self.rq_job or f"outbox-{self.id}"


@dataclass(frozen=True)
class QueuedJob:
    """The outbox row ``enqueue_job`` wrote in the caller's transaction."""

    id: int
    job_name: str
    kwargs: dict[str, Any]
    rq_job: str | None = None

    @property
    def rq_job_id(self) -> str:
        return self.rq_job or f"outbox-{self.id}"


# Outbox rows are appended in the caller's transaction and changed later only by the dispatch
# and the job: one Core statement returning the id, instead of a unit-of-work flush.
_INSERT_OUTBOX = OutboxJob.__table__.insert().returning(OutboxJob.__table__.c.id)


def enqueue_job(job_name: str, **kwargs: Any) -> QueuedJob:
    """Record a job in the current transaction; it is dispatched after the commit."""
    spec = _registry.get(job_name)
    if spec is None:
        raise KeyError(f"unknown job {job_name!r}")
    values: dict[str, Any] = {"job_name": job_name, "kwargs": kwargs}
    session = db.session()
    earlier: list[QueuedJob] = session.info.setdefault(_NEW_KEY, [])
    if _dispatches_to_rq():
        # Marked as dispatched in the same transaction, so the commit is the only write: the
        # enqueue after it needs no second round trip. If the enqueue then fails, the row is
        # unmarked again; if the process dies first, the relay re-sends stale rows.
        values["dispatched_at"] = utcnow()
        key = _dispatch_key(spec)
        leader = next((q for q in earlier if q.rq_job is None
                       and _dispatch_key(_registry[q.job_name]) == key), None)
        if leader is not None:
            values["rq_job"] = leader.rq_job_id
    outbox_id = session.connection().execute(_INSERT_OUTBOX, values).scalar_one()
    queued = QueuedJob(outbox_id, job_name, kwargs, values.get("rq_job"))
    earlier.append(queued)
    return queued


def _dispatches_to_rq() -> bool:
    try:
        return bool(current_app.config.get("REDIS_URL"))
    except RuntimeError:
        return False


# --- dispatch after commit -------------------------------------------------------------------


def install_session_hooks() -> None:
    """Attach the outbox hooks to every SQLAlchemy session (idempotent)."""
    if not event.contains(Session, "after_commit", _note_committed):
        event.listen(Session, "after_commit", _note_committed)
        event.listen(Session, "after_transaction_end", _dispatch_after_commit)
        event.listen(Session, "after_rollback", _forget)


def _note_committed(session: Session) -> None:
    queued = session.info.pop(_NEW_KEY, None)
    if queued:
        session.info[_COMMITTED_KEY] = [(q.id, q.job_name, q.rq_job_id) for q in queued]


def _dispatch_after_commit(session: Session, transaction: Any) -> None:
    # Dispatch once the committed transaction has ended and given its connection back to the
    # pool: an inline job opens its own session, and doing that inside ``after_commit`` (while
    # the request still holds its connection) deadlocks N concurrent requests on a pool of N.
    if transaction.parent is not None:
        return
    committed = session.info.pop(_COMMITTED_KEY, None)
    if not committed:
        return
    try:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:
        return  # outside an app: the relay will pick the rows up
    if app.config.get("REDIS_URL"):
        try:
            enqueue_rows(app, committed)
        except Exception as exc:  # noqa: BLE001 - Redis down: the relay retries later
            log.warning("outbox: enqueue deferred for %s: %s", [c[0] for c in committed], exc)
            _unmark(app, [c[0] for c in committed])
    else:
        for outbox_id, _name, _kwargs in committed:
            _run_inline(app, outbox_id)


def _forget(session: Session, *args: Any) -> None:
    session.info.pop(_NEW_KEY, None)
    session.info.pop(_COMMITTED_KEY, None)


def _unmark(app: Flask, ids: list[int]) -> None:
    try:
        with db.engines[None].begin() as connection:
            connection.execute(update(OutboxJob).where(OutboxJob.id.in_(ids))
                               .values(dispatched_at=None))
    except Exception:  # noqa: BLE001 - the stale-row pass of the relay covers this too
        log.exception("outbox: could not unmark %s", ids)


def enqueue_rows(app: Flask, rows: list[tuple[int, str, str]]) -> None:
    """Put committed outbox rows ``(id, job name, rq job id)`` on rq in one round trip to Redis.

    Rows naming the same rq job go in it together (``run_outbox_jobs``).
    """
    from rq import Queue, Retry

    together: dict[str, list[tuple[int, JobSpec]]] = {}
    for outbox_id, name, rq_job_id in rows:
        together.setdefault(rq_job_id, []).append((outbox_id, _registry[name]))
    by_queue: dict[str | None, list] = {}
    for rq_job_id, members in together.items():
        ids = [outbox_id for outbox_id, _spec in members]
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
    # One MULTI/EXEC round trip for all of the commit's jobs, whatever their queues.
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
    db.session.execute(
        update(OutboxJob)
        .where(OutboxJob.id == outbox_id, OutboxJob.completed_at.is_(None))
        .values(completed_at=utcnow(), last_error=None)
    )
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


def relay(app: Flask, *, ids: list[int] | None = None, limit: int = 500) -> int:
    """Enqueue pending outbox rows on rq (claiming each so two relays never both send it).

    With ``ids`` only those rows are considered; otherwise the oldest pending rows and rows
    dispatched long ago whose rq job has vanished. Returns how many were enqueued.
    """
    from rq.job import JobStatus

    with app.app_context():
        now = utcnow()
        stale_before = now - timedelta(seconds=app.config["OUTBOX_REDISPATCH_AFTER_SECONDS"])
        query = select(OutboxJob).where(OutboxJob.completed_at.is_(None))
        if ids is not None:
            query = query.where(OutboxJob.id.in_(ids), OutboxJob.dispatched_at.is_(None))
        else:
            query = query.where(
                (OutboxJob.dispatched_at.is_(None)) | (OutboxJob.dispatched_at < stale_before)
            )
        rows = db.session.scalars(query.order_by(OutboxJob.id).limit(limit)).all()
        enqueued = 0
        conn = redis_connection(app)
        # Every status is read before anything is re-sent: a row re-sent alone under its own
        # id may reuse the id of the vanished job another row still names.
        statuses = {job_id: _rq_status(job_id, conn)
                    for job_id in {row.rq_job_id for row in rows if row.dispatched_at}}
        # Alive jobs are left alone; failed ones wait in rq's failed registry for an
        # operator (requeue there) rather than being retried here for ever.
        settled = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED,
                   JobStatus.DEFERRED, JobStatus.FAILED)
        for row in rows:
            if row.dispatched_at is not None and statuses[row.rq_job_id] in settled:
                continue
            unchanged = (
                OutboxJob.dispatched_at.is_(None)
                if row.dispatched_at is None
                else OutboxJob.dispatched_at == row.dispatched_at
            )
            # Re-sent alone, under its own job id: the others it once shared a job with are
            # settled or re-sent on their own.
            claimed = db.session.execute(
                update(OutboxJob).where(OutboxJob.id == row.id, unchanged)
                .values(dispatched_at=now, rq_job=None)
            ).rowcount
            db.session.commit()
            if claimed != 1:
                continue  # another relay got it
            try:
                enqueue_rows(app, [(row.id, row.job_name, f"outbox-{row.id}")])
            except Exception:
                # Unclaim so the next relay pass retries it; then let the caller know.
                db.session.execute(
                    update(OutboxJob).where(OutboxJob.id == row.id).values(dispatched_at=None)
                )
                db.session.commit()
                raise
            enqueued += 1
        return enqueued


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
    """Counts for /healthz: jobs not yet completed and the age of the oldest."""
    from sqlalchemy import func

    count, oldest = db.session.execute(
        select(func.count(OutboxJob.id), func.min(OutboxJob.created_at)).where(
            OutboxJob.completed_at.is_(None)
        )
    ).one()
    age = None
    if oldest is not None:
        if oldest.tzinfo is None:
            from datetime import UTC

            oldest = oldest.replace(tzinfo=UTC)
        age = round((utcnow() - oldest).total_seconds(), 1)
    return {"pending": int(count), "oldest_pending_seconds": age}
