"""The audit trail: atomic with the change, hash-chained, tamper-evident, readable per entity."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, select, text, update

from audit.chain import event_hash
from audit.models import AuditChainHead, AuditEvent
from audit.service import record_event, verify_chain
from common.actors import Actor
from common.extensions import db
from tests.conftest import requires_postgres
from tests.factories import bearer, make_partner, staff_token

ACTOR = Actor("user", "7", "ann@example.test")


def _record(n: int, entity_id: str = "E1") -> None:
    for i in range(n):
        record_event(entity_type="thing", entity_id=entity_id, action="thing.changed",
                     actor=ACTOR, reason=f"step {i}", data={"i": i, "note": "ünïcode ✓"})
    db.session.commit()


def test_events_are_chained_in_sequence(app):
    _record(3)
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == "0" * 64
    assert events[1].prev_hash == events[0].hash and events[2].prev_hash == events[1].hash
    head = db.session.get(AuditChainHead, 1)
    assert (head.last_seq, head.last_hash) == (3, events[2].hash)
    assert verify_chain().ok


def test_event_is_discarded_when_the_change_rolls_back(app):
    record_event(entity_type="thing", entity_id="E1", action="thing.changed", actor=ACTOR)
    db.session.rollback()
    _record(1)
    assert db.session.scalar(select(AuditEvent.seq)) == 1
    assert verify_chain().ok


def test_events_carry_who_when_why_and_request_id(client):
    token = staff_token("admin")
    client.post("/api/v1/partners", json={"code": "SHOP", "name": "Shop"},
                headers={**bearer(token), "X-Request-ID": "req-12345678"})
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "partner.created"))
    assert event.actor_type == "user" and event.actor_label.startswith("admin")
    assert event.request_id == "req-12345678"
    assert event.occurred_at.tzinfo is not None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda: update(AuditEvent).where(AuditEvent.seq == 2).values(reason="edited"),
        lambda: update(AuditEvent).where(AuditEvent.seq == 2).values(data={"i": 99}),
        lambda: update(AuditEvent).where(AuditEvent.seq == 2).values(actor_id="8"),
        lambda: delete(AuditEvent).where(AuditEvent.seq == 2),
    ],
    ids=["reason edited", "data edited", "actor edited", "row deleted"],
)
def test_verify_names_the_first_tampered_row(app, tamper):
    _record(4)
    db.session.execute(tamper())
    db.session.commit()
    result = verify_chain()
    assert not result.ok and result.first_broken_seq == 2


def test_verify_detects_a_rewritten_row_with_a_recomputed_hash(app):
    _record(3)
    row = db.session.scalar(select(AuditEvent).where(AuditEvent.seq == 2))
    fields = {name: getattr(row, name) for name in (
        "seq", "occurred_at", "actor_type", "actor_id", "actor_label", "entity_type",
        "entity_id", "action", "reason", "data", "request_id", "prev_hash")}
    fields["reason"] = "forged"
    db.session.execute(update(AuditEvent).where(AuditEvent.seq == 2)
                       .values(reason="forged", hash=event_hash(fields)))
    db.session.commit()
    result = verify_chain()
    assert not result.ok and result.first_broken_seq == 3  # seq 3 no longer links to seq 2


def test_verify_detects_a_truncated_tail(app):
    _record(3)
    db.session.execute(delete(AuditEvent).where(AuditEvent.seq == 3))
    db.session.commit()
    result = verify_chain()
    assert not result.ok and result.first_broken_seq == 3


def test_cli_verify_exits_nonzero_naming_the_row(app, runner):
    _record(3)
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0 and "3 events verified" in ok.output
    db.session.execute(text("UPDATE audit_events SET action = 'x' WHERE seq = 2"))
    db.session.commit()
    broken = runner.invoke(args=["audit", "verify"])
    assert broken.exit_code == 1 and "seq 2" in broken.output


def test_history_api_lists_an_entitys_events_in_order(client):
    token = staff_token("support")
    make_partner("SHOP")
    _record(2, entity_id="SHOP")
    response = client.get("/api/v1/audit/partner/SHOP", headers=bearer(token))
    assert response.status_code == 200
    assert [e["action"] for e in response.json] == ["partner.created"]
    assert client.get("/api/v1/audit/thing/SHOP", headers=bearer(token)).json[1]["data"]["i"] == 1


def test_verification_api_reports_a_broken_chain(client):
    token = staff_token("admin")
    _record(2)
    db.session.execute(text("UPDATE audit_events SET reason = 'x' WHERE seq = 2"))
    db.session.commit()
    body = client.get("/api/v1/audit/verification", headers=bearer(token)).json
    assert body["ok"] is False and body["first_broken_seq"] == 2


@requires_postgres
def test_concurrent_writers_build_one_unbroken_chain(make_app):
    app = make_app()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with app.app_context():
                for i in range(10):
                    record_event(entity_type="thing", entity_id=f"T{n}", action="thing.changed",
                                 actor=ACTOR, data={"i": i})
                    db.session.commit()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with app.app_context():
        result = verify_chain()
        assert result.ok and result.events_checked == 80


# --- the chain linked by the database (PostgreSQL's one-statement seal) -----------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=8,
)


@given(data=st.dictionaries(st.text(max_size=12), _JSON, max_size=4),
       reason=st.none() | st.text(), request_id=st.none() | st.text(max_size=20),
       seq=st.integers(min_value=1, max_value=2**62), prev=st.text("0123456789abcdef", min_size=64,
                                                                     max_size=64))
def test_the_hash_template_rebuilds_the_events_hash(data, reason, request_id, seq, prev):
    import hashlib
    from datetime import UTC, datetime

    from audit.chain import hash_template, normalize_data

    fields = {"occurred_at": datetime(2026, 12, 6, 23, 59, 1, 5, tzinfo=UTC),
              "actor_type": "user", "actor_id": "7", "actor_label": 'Ann "prev_hash":"',
              "entity_type": "claim", "entity_id": "C1", "action": "claim.filed",
              "reason": reason, "data": normalize_data(data), "request_id": request_id}
    before, between = hash_template(fields)
    rebuilt = hashlib.sha256(f"{before}{prev}{between}{seq}}}".encode()).hexdigest()
    assert rebuilt == event_hash(dict(fields, seq=seq, prev_hash=prev))


HOSTILE_DATA = [
    {"prev_hash": "\ue000prev", "seq": "\ue000seq", "nested": {"prev_hash": "x"}},
    {"text": '","prev_hash":"0000","seq":1}', "emoji": "✓ 🧾", "nul": "a\u0000b"},
    {"quote": "O'Neil \\ \"x\"", "list": [None, 1.5, True, "é"]},
]


@pytest.mark.parametrize("data", HOSTILE_DATA)
def test_events_with_hostile_data_are_linked_as_python_links_them(app, data):
    record_event(entity_type="thing", entity_id="H1", action="thing.changed", actor=ACTOR,
                 reason='"prev_hash":"ffff"', data=data)
    record_event(entity_type="thing", entity_id="H1", action="thing.changed", actor=ACTOR,
                 data={"after": True})
    db.session.commit()
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [e.seq for e in events] == [1, 2]
    for event in events:
        fields = {name: getattr(event, name) for name in (
            "seq", "occurred_at", "actor_type", "actor_id", "actor_label", "entity_type",
            "entity_id", "action", "reason", "data", "request_id", "prev_hash")}
        assert event.hash == event_hash(fields)
    assert events[1].prev_hash == events[0].hash
    assert verify_chain().ok


def test_more_events_than_one_statement_takes_are_chained_too(app):
    from audit.service import _MAX_EVENTS_IN_ONE_STATEMENT

    _record(_MAX_EVENTS_IN_ONE_STATEMENT + 3)
    _record(2, entity_id="E2")
    head = db.session.get(AuditChainHead, 1)
    assert head.last_seq == _MAX_EVENTS_IN_ONE_STATEMENT + 5
    assert verify_chain().ok
