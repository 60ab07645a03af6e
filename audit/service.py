"""Recording and verifying audit events.

``record_event`` queues an event on the session; a ``before_commit`` hook seals the queued
events into the chain as the transaction's last statements. Taking the chain lock last keeps it
held for as short a time as possible, and the event still commits or rolls back with the change
it records.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, Text, event, select
from sqlalchemy.orm import Session

from audit.chain import event_hash, hash_template, normalize_data
from audit.models import GENESIS_HASH, AuditChainHead, AuditCheck, AuditEvent
from common.actors import Actor, current_request_id
from common.extensions import db
from common.fastsql import FastStatement, connection_of, insert_into
from common.models import utcnow

_PENDING_KEY = "aftercare.audit.pending"
HEAD_ID = 1


def record_event(
    *,
    entity_type: str,
    entity_id: str | int,
    action: str,
    actor: Actor,
    reason: str | None = None,
    data: Mapping[str, Any] | None = None,
    session: Session | None = None,
) -> None:
    """Queue an audit event that commits atomically with the current transaction."""
    session = session or db.session()
    session.info.setdefault(_PENDING_KEY, []).append(
        {
            "actor_type": actor.type,
            "actor_id": str(actor.id),
            "actor_label": actor.label or str(actor.id),
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "action": action,
            "reason": reason,
            "data": normalize_data(data),
            "request_id": current_request_id.get(),
        }
    )


_HEAD = AuditChainHead.__table__
_EVENTS = AuditEvent.__table__
_EVENT_COLUMNS = tuple(column.name for column in _EVENTS.c if column.name != "id")
# The seal runs in every writing transaction: its statements run on the cursor
# (``common.fastsql``), as they touch no mapped objects.
_BUMP_HEAD = FastStatement(
    f"UPDATE {_HEAD.name} SET last_seq = last_seq + :count WHERE id = {HEAD_ID} "
    "RETURNING last_seq, last_hash", {"count": Integer()})
_INSERT_EVENTS = insert_into(_EVENTS, _EVENT_COLUMNS)
_SET_HEAD_HASH = FastStatement(
    f"UPDATE {_HEAD.name} SET last_hash = :new_hash WHERE id = {HEAD_ID}",
    {"new_hash": _HEAD.c.last_hash.type})
_MAX_EVENTS_IN_ONE_STATEMENT = 20  # bounded: one prepared statement per count


@functools.cache
def _link_and_append(count: int) -> FastStatement:
    """PostgreSQL: the whole seal of ``count`` events in one statement, nothing read back.

    It locks the head row, links each event to the one before (the first to the head) with
    SHA-256 over its ``hash_template`` computed in the database, writes the events and moves
    the head. Nothing comes back to Python, so in a ``fastsql.write_batch`` the seal is part
    of the transaction's one write statement and the head's lock is held only while that
    statement and its commit run. ``verify_chain`` recomputes the same hashes in Python.
    """
    ctes = [("audit_head", f"SELECT last_seq, last_hash FROM {_HEAD.name} WHERE id = {HEAD_ID} "
                           "FOR UPDATE")]
    rows = []
    for n in range(count):
        source = ("SELECT last_seq + 1 AS seq, last_hash AS prev_hash FROM audit_head" if n == 0
                  else f"SELECT seq + 1 AS seq, hash AS prev_hash FROM audit_link_{n - 1}")
        ctes.append((f"audit_link_{n}", (
            f"SELECT s.seq, s.prev_hash, encode(sha256(convert_to("
            f"CAST(:before_{n} AS text) || s.prev_hash || CAST(:between_{n} AS text) || "
            f"CAST(s.seq AS text) || '}}', 'UTF8')), 'hex') AS hash FROM ({source}) AS s")))
        rows.append("(" + ", ".join(
            f"(SELECT {name} FROM audit_link_{n})" if name in _LINKED else f":{name}_{n}"
            for name in _EVENT_COLUMNS) + ")")
    ctes.append(("audit_appended", f"INSERT INTO {_EVENTS.name} ({', '.join(_EVENT_COLUMNS)}) "
                                   f"VALUES {', '.join(rows)}"))
    types = {f"{name}_{n}": _EVENTS.c[name].type
             for n in range(count) for name in _EVENT_COLUMNS if name not in _LINKED}
    types.update({f"{part}_{n}": Text() for n in range(count) for part in ("before", "between")})
    return FastStatement(
        f"UPDATE {_HEAD.name} SET last_seq = last.seq, last_hash = last.hash "
        f"FROM audit_link_{count - 1} AS last WHERE {_HEAD.name}.id = {HEAD_ID}",
        types, ctes=ctes,
    )


_LINKED = ("seq", "prev_hash", "hash")  # what ``_link_and_append`` computes in the database


def _seal_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    if not pending:
        return
    # Everything else in the transaction is written first, so the head lock below is taken by
    # the transaction's last statements.
    session.flush()
    connection = connection_of(session)
    occurred_at = utcnow()
    if connection.dialect.name == "postgresql" and len(pending) <= _MAX_EVENTS_IN_ONE_STATEMENT:
        params = {}
        for n, fields in enumerate(pending):
            row = dict(fields, occurred_at=occurred_at)
            params.update({f"{name}_{n}": value for name, value in row.items()})
            params[f"before_{n}"], params[f"between_{n}"] = hash_template(row)
        _link_and_append(len(pending)).execute(connection, params)
        return
    # Bumping the head first takes its row lock (PostgreSQL) / the write lock (SQLite), so
    # concurrent transactions append one after the other and seq has no gaps.
    bumped = _BUMP_HEAD.returned(connection, {"count": len(pending)}).row
    if bumped is None:
        raise RuntimeError("audit chain head missing: run `flask --app app db upgrade`")
    last_seq, prev_hash = bumped
    seq = last_seq - len(pending)
    rows = []
    for fields in pending:
        seq += 1
        row = dict(fields, seq=seq, occurred_at=occurred_at, prev_hash=prev_hash)
        row["hash"] = event_hash(row)
        prev_hash = row["hash"]
        rows.append(row)
    _INSERT_EVENTS.execute_many(connection, rows)
    _SET_HEAD_HASH.execute(connection, {"new_hash": prev_hash})


def _discard_pending(session: Session, *args: Any) -> None:
    session.info.pop(_PENDING_KEY, None)


def install_session_hooks() -> None:
    """Attach the sealing hooks to every SQLAlchemy session (idempotent)."""
    if not event.contains(Session, "before_commit", _seal_pending):
        event.listen(Session, "before_commit", _seal_pending)
        event.listen(Session, "after_rollback", _discard_pending)


@dataclass(frozen=True)
class ChainVerification:
    ok: bool
    events_checked: int
    first_broken_seq: int | None = None
    problem: str | None = None


def _row_fields(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "occurred_at": row.occurred_at,
        "actor_type": row.actor_type,
        "actor_id": row.actor_id,
        "actor_label": row.actor_label,
        "entity_type": row.entity_type,
        "entity_id": row.entity_id,
        "action": row.action,
        "reason": row.reason,
        "data": row.data,
        "request_id": row.request_id,
        "prev_hash": row.prev_hash,
    }


def verify_chain(session: Session | None = None) -> ChainVerification:
    """Walk the whole chain in order; name the first row that was edited, removed or inserted."""
    session = session or db.session()
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    result = session.execute(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=2000)
    )
    try:
        for row in result.scalars():
            if row.seq != expected_seq:
                return ChainVerification(
                    False, checked, expected_seq, f"event seq {expected_seq} is missing"
                )
            if row.prev_hash != prev_hash:
                return ChainVerification(
                    False, checked, row.seq, f"event seq {row.seq} does not link to its predecessor"
                )
            if event_hash(_row_fields(row)) != row.hash:
                return ChainVerification(
                    False, checked, row.seq, f"event seq {row.seq} was altered after it was written"
                )
            prev_hash, expected_seq, checked = row.hash, expected_seq + 1, checked + 1
    finally:
        result.close()  # a server-side cursor on PostgreSQL when we stop early
    head = session.get(AuditChainHead, HEAD_ID)
    if head is not None and (head.last_seq != checked or head.last_hash != prev_hash):
        return ChainVerification(
            False,
            checked,
            checked + 1,
            f"chain ends at seq {checked} but the head records seq {head.last_seq}",
        )
    return ChainVerification(True, checked)


def record_chain_check(*, outbox_id: int | None = None) -> AuditCheck:
    """Verify the chain and store the result (once per outbox job id)."""
    if outbox_id is not None:
        existing = db.session.scalar(select(AuditCheck).where(AuditCheck.outbox_id == outbox_id))
        if existing is not None:
            return existing
    result = verify_chain()
    check = AuditCheck(
        outbox_id=outbox_id,
        ok=result.ok,
        events_checked=result.events_checked,
        first_broken_seq=result.first_broken_seq,
        problem=result.problem,
    )
    db.session.add(check)
    db.session.commit()
    return check


def entity_history_query(entity_type: str, entity_id: str | int) -> Select:
    """Every event recorded for one entity, oldest first."""
    return (
        select(AuditEvent)
        .where(AuditEvent.entity_type == entity_type, AuditEvent.entity_id == str(entity_id))
        .order_by(AuditEvent.seq)
    )
