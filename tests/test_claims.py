"""Filing claims through the API: decisions, RMAs, duplicates, idempotency, review, emails."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from audit.service import verify_chain
from claims.models import Claim, IdempotencyRecord, TimelineEntry
from common.extensions import db
from messaging.models import Message
from rma.models import Rma, RmaLabel
from rma.numbers import parse_rma_number
from tests.conftest import requires_postgres
from tests.factories import (
    bearer,
    claim_body,
    load_catalog,
    mistyped,
    register_purchase,
    staff_token,
)

TODAY = datetime.now(UTC).date()


@pytest.fixture
def catalog(app):
    load_catalog()
    register_purchase("SN1")
    register_purchase("SN2", email="bob@example.com")
    register_purchase("OLD1", bought=TODAY - timedelta(days=365 * 4))


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("changes", [
    {}, {"serial_number": "OLD1"}, {"remedy": "refund"}, {"email": "eve@example.com"},
], ids=["approved", "rejected", "needs_review", "unknown_to_this_email"])
def test_the_filing_answer_is_exactly_what_its_schema_documents(client, catalog, changes):
    """The view answers its presenter's dict as it is, without a schema dump: it must already
    be the schema's form, field for field, for every kind of decision and for a duplicate."""
    from claims.schemas import ClaimFiledSchema

    schema = ClaimFiledSchema()
    first = client.post("/api/v1/claims", json=claim_body(**changes))
    again = client.post("/api/v1/claims", json=claim_body(**changes))
    for response in (first, again):
        assert response.status_code in (200, 201)
        assert set(response.json) == set(schema.fields)
        assert schema.dump(response.json) == response.json


def test_valid_claim_is_approved_with_an_rma_and_tracking_link(client, catalog):
    response = client.post("/api/v1/claims", json=claim_body())
    assert response.status_code == 201
    body = response.json
    assert body["status"] == "approved" and body["duplicate"] is False
    assert parse_rma_number(body["rma_number"]).outcome == "ok"
    assert body["reasons"][0]["code"] == "within_warranty"
    assert body["tracking_url"].startswith("http://127.0.0.1:5000/track/")
    token = body["tracking_url"].rsplit("/", 1)[1]
    assert len(token) >= 22  # at least 128 random bits, URL-safe
    claim = db.session.scalar(select(Claim))
    assert claim.open_serial == "SN1" and claim.remedy == "repair"
    rma = db.session.scalar(select(Rma))
    assert rma.label_ready_at is not None, "the label job ran inline after the commit"
    assert db.session.get(RmaLabel, (rma.id, "4x6")).pdf.startswith(b"%PDF")
    kinds = [e.kind for e in db.session.scalars(select(TimelineEntry).order_by(TimelineEntry.id))]
    assert kinds == ["filed", "approved", "rma_issued", "label_ready"]


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"serial_number": "NOPE1"}, "rejected", "purchase_not_matched"),
        ({"serial_number": "SN2"}, "rejected", "purchase_not_matched"),
        ({"serial_number": "OLD1"}, "rejected", "out_of_warranty"),
        ({"fault_category": "water_damage"}, "rejected", "excluded_fault"),
        ({"remedy": "refund"}, "needs_review", "refund_requested"),
        ({"dead_on_arrival": True, "remedy": "repair"}, "needs_review", None),
    ],
    ids=["unknown serial", "someone else's serial", "out of warranty", "excluded fault",
         "refund", "doa outside window"],
)
def test_each_decision_is_recorded_with_its_reason(client, catalog, overrides, status, code):
    response = client.post("/api/v1/claims", json=claim_body(**overrides))
    if code is None:  # DOA 100 days after purchase: not Plan B, repair as asked
        assert response.json["status"] == "approved" and response.json["remedy"] == "repair"
        return
    assert response.status_code == 201
    assert response.json["status"] == status
    assert code in [r["code"] for r in response.json["reasons"]]
    assert all(r["message"] for r in response.json["reasons"])
    assert count(Claim) == 1, "every submission that passes the schema is recorded"


def test_unknown_serial_and_wrong_email_look_the_same_to_the_customer(client, catalog):
    unknown = client.post("/api/v1/claims", json=claim_body("NOPE1")).json
    wrong_email = client.post("/api/v1/claims", json=claim_body("SN2")).json
    assert unknown["reasons"] == wrong_email["reasons"]
    stored = {c.serial_number: c.reasons[0]["code"] for c in db.session.scalars(select(Claim))}
    assert stored == {"NOPE1": "serial_not_registered", "SN2": "email_mismatch"}


def test_email_is_compared_case_insensitively(client, catalog):
    response = client.post("/api/v1/claims", json=claim_body(email="  ANN@Example.COM "))
    assert response.json["status"] == "approved"


def test_doa_within_the_window_is_replaced(client, app, catalog):
    register_purchase("NEW1", bought=TODAY - timedelta(days=5))
    response = client.post("/api/v1/claims", json=claim_body("NEW1", dead_on_arrival=True))
    assert response.json["remedy"] == "replace"
    assert "doa_replacement" in [r["code"] for r in response.json["reasons"]]


def test_second_claim_for_an_open_serial_returns_the_first(client, catalog):
    first = client.post("/api/v1/claims", json=claim_body()).json
    second = client.post("/api/v1/claims", json=claim_body(description="Another try here"))
    assert second.status_code == 200
    assert second.json["claim_number"] == first["claim_number"] and second.json["duplicate"]
    assert count(Claim) == 1 and count(Rma) == 1


def test_someone_else_cannot_see_the_open_claim_on_a_serial(client, catalog):
    client.post("/api/v1/claims", json=claim_body("SN2", email="bob@example.com"))
    intruder = client.post("/api/v1/claims", json=claim_body("SN2", email="eve@example.com"))
    assert intruder.status_code == 201 and intruder.json["status"] == "rejected"
    assert intruder.json["rma_number"] is None
    assert [r["code"] for r in intruder.json["reasons"]] == ["purchase_not_matched"]


def test_idempotency_key_replays_the_same_answer_once(client, catalog):
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/api/v1/claims", json=claim_body(), headers=headers)
    again = client.post("/api/v1/claims", json=claim_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json == again.json
    assert count(Claim) == 1 and count(Message) == 1 and count(IdempotencyRecord) == 1


def test_idempotency_key_with_another_body_is_422(client, catalog):
    headers = {"Idempotency-Key": "order-42"}
    client.post("/api/v1/claims", json=claim_body(), headers=headers)
    other = client.post("/api/v1/claims", json=claim_body("SN2"), headers=headers)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json["errors"]
    assert count(Claim) == 1


def test_rejected_claims_can_be_replayed_by_key_too(client, catalog):
    headers = {"Idempotency-Key": "k-unknown"}
    first = client.post("/api/v1/claims", json=claim_body("NOPE1"), headers=headers)
    again = client.post("/api/v1/claims", json=claim_body("NOPE1"), headers=headers)
    assert first.json == again.json and count(Claim) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fault_category": "dropped_it"}, "fault_category"),
        ({"email": "not-an-email"}, "email"),
        ({"description": "x"}, "description"),
        ({"serial_number": "'; DROP TABLE claims;--"}, "serial_number"),
        ({"remedy": "cash"}, "remedy"),
        ({"language": "de"}, "language"),
        ({"extra": 1}, "extra"),
        ({"return_address": {"country": "Sweden"}}, "return_address.country"),
    ],
)
def test_schema_errors_name_the_field_and_record_nothing(client, catalog, body, field):
    response = client.post("/api/v1/claims", json=claim_body(**body))
    assert response.status_code == 422
    assert field in response.json["errors"]
    assert count(Claim) == 0


def test_fault_categories_are_an_enum_in_the_openapi_document(client):
    spec = client.get("/api/openapi.json").json
    schema = spec["components"]["schemas"]["ClaimCreate"]
    assert "water_damage" in schema["properties"]["fault_category"]["enum"]


def test_every_claim_step_is_in_the_audit_trail(client, catalog):
    number = client.post("/api/v1/claims", json=claim_body()).json["claim_number"]
    actions = [e.action for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.entity_id.in_([number])).order_by(AuditEvent.seq))]
    assert actions[:2] == ["claim.filed", "message.queued"]
    assert "message.sent" in actions
    assert verify_chain().ok


@pytest.fixture
def queued_app(make_app):
    """An app whose jobs wait in the outbox (a Redis URL nothing listens on; no relay runs)."""
    app = make_app(REDIS_URL="redis://127.0.0.1:9/0")
    with app.app_context():
        load_catalog()
        register_purchase("SN1")
        yield app
        db.session.remove()


@requires_postgres
def test_filing_a_claim_costs_two_round_trips_after_the_ping(queued_app, tmp_path):
    """The purchase facts; every write and the audit seal as one self-committing statement."""
    from sqlalchemy import event

    from tests.round_trips import RoundTrips

    counted: list[int] = []
    statements: list[str] = []
    parsed: list[str] = []
    tracing: list[RoundTrips] = []

    def checkout(dbapi_connection, record, proxy) -> None:  # noqa: ANN001
        tracing.append(RoundTrips(dbapi_connection, tmp_path / f"trace{len(counted)}"))

    def checkin(dbapi_connection, record) -> None:  # noqa: ANN001
        if tracing:
            trace = tracing.pop()
            counted.append(trace.stop())
            statements.extend(trace.statements())
            parsed.extend(trace.parsed())

    db.session.remove()
    event.listen(db.engine, "checkout", checkout)
    event.listen(db.engine, "checkin", checkin)
    try:
        response = queued_app.test_client().post("/api/v1/claims", json=claim_body())
    finally:
        event.remove(db.engine, "checkout", checkout)
        event.remove(db.engine, "checkin", checkin)
    assert response.status_code == 201 and response.json["status"] == "approved"
    assert counted == [2]
    assert len(statements) == 2, statements  # no BEGIN, no COMMIT
    assert "audit_head" in parsed[-1] and "INSERT INTO rmas" in parsed[-1]
    assert count(Rma) == 1 and verify_chain().ok


def outbox_rows(name: str | None = None) -> list:
    from common.jobs import OutboxJob

    db.session.rollback()
    query = select(OutboxJob).order_by(OutboxJob.id)
    return list(db.session.scalars(query if name is None else query.where(
        OutboxJob.job_name == name)))


def test_filing_leaves_email_and_webhooks_to_one_announce_job_that_runs_once(queued_app):
    from claims.service import announce
    from common.actors import Actor
    from common.jobs import execute
    from webhooks.models import WebhookDelivery
    from webhooks.service import subscribe

    app = queued_app
    subscribe(url="http://127.0.0.1:9/hook", events=["claim.approved", "rma.issued"],
              actor=Actor.system("tests"), partner_id=None, allow_http=True)
    response = app.test_client().post("/api/v1/claims", json=claim_body(),
                                      headers={"X-Request-ID": "filing-req-1"})
    assert response.status_code == 201 and response.json["status"] == "approved"
    # The filing's own transaction: the decision, the RMA and two outbox rows, no email yet.
    assert [row.job_name for row in outbox_rows()] == ["rma.prepare_label",
                                                      "claims.announce"]
    assert count(Message) == 0 and count(WebhookDelivery) == 0
    (row,) = outbox_rows("claims.announce")
    assert row.kwargs["kind"] == "claim_approved"
    assert row.kwargs["params"]["tracking_url"] == response.json["tracking_url"]

    assert execute(row.id) == "completed"
    assert execute(row.id) == "already-completed"
    again = dict(row.kwargs, actor=Actor.from_dict(row.kwargs["actor"]))
    again.pop("request_id")
    assert announce(outbox_id=row.id, **again) is False  # a duplicate rq delivery
    message = db.session.scalar(select(Message))
    assert count(Message) == 1 and message.kind == "claim_approved"
    assert message.params["rma_number"] == response.json["rma_number"]
    assert {d.event_type for d in db.session.scalars(select(WebhookDelivery))} == {
        "claim.approved", "rma.issued"}
    queued = db.session.scalar(select(AuditEvent).where(
        AuditEvent.action == "message.queued"))
    assert queued.entity_id == response.json["claim_number"]
    assert (queued.actor_type, queued.request_id) == ("customer", "filing-req-1")
    assert [r.job_name for r in outbox_rows()][2:] == [
        "messaging.send", "webhooks.deliver", "webhooks.deliver"]
    assert verify_chain().ok


def test_an_announce_job_that_fails_midway_leaves_nothing_and_its_retry_runs_once(
        queued_app, monkeypatch):
    import claims.service
    from common.jobs import OutboxJob, execute

    queued_app.test_client().post("/api/v1/claims", json=claim_body())
    (row,) = outbox_rows("claims.announce")

    def broken(*args, **kwargs):
        raise ConnectionError("database went away")

    monkeypatch.setattr(claims.service, "publish_many", broken)
    with pytest.raises(ConnectionError):
        execute(row.id)
    failed = db.session.get(OutboxJob, row.id)
    assert failed.completed_at is None and "went away" in failed.last_error
    assert count(Message) == 0, "the email was rolled back with the failed run"
    monkeypatch.undo()
    assert execute(row.id) == "completed"
    assert count(Message) == 1
    assert db.session.get(OutboxJob, row.id).attempts == 2


def label_trail(rma_number: str) -> tuple[bool, int, int]:
    """(label marked ready, rma.label_ready audit events, label_ready timeline steps)."""
    db.session.rollback()
    rma = db.session.scalar(select(Rma).where(Rma.rma_number == rma_number))
    events = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "rma.label_ready", AuditEvent.entity_id == rma_number))
    steps = db.session.scalar(select(func.count()).select_from(TimelineEntry).where(
        TimelineEntry.claim_id == rma.claim_id, TimelineEntry.kind == "label_ready"))
    return rma.label_ready_at is not None, events, steps


def test_a_label_job_killed_before_its_timeline_step_leaves_nothing_for_the_retry_to_miss(
        queued_app, monkeypatch):
    """Readiness, audit event and the customer's timeline step commit together: a run that
    dies after marking the label must not leave a retry that finds it ready and skips the step."""
    import claims.service
    from common.jobs import execute

    rma_number = queued_app.test_client().post("/api/v1/claims", json=claim_body()).json[
        "rma_number"]
    (row,) = outbox_rows("rma.prepare_label")

    def killed(*args, **kwargs):
        raise ConnectionError("worker lost its database connection")

    monkeypatch.setattr(claims.service, "add_timeline_entries", killed)
    with pytest.raises(ConnectionError):
        execute(row.id)
    assert label_trail(rma_number) == (False, 0, 0)
    monkeypatch.undo()
    assert execute(row.id) == "completed"
    assert label_trail(rma_number) == (True, 1, 1)


@requires_postgres
def test_two_label_runs_at_once_mark_the_label_ready_once(queued_app):
    """A retried job and the abandoned run it replaces may overlap: one marks, one finds it."""
    from claims.service import add_timeline_entry
    from rma.jobs import LABELLER
    from rma.presenter import label_data_for
    from rma.service import prepare_label

    rma_number = queued_app.test_client().post("/api/v1/claims", json=claim_body()).json[
        "rma_number"]
    db.session.remove()
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def run() -> None:
        with queued_app.app_context():
            barrier.wait()
            results.append(prepare_label(
                rma_number=rma_number, data_for=label_data_for, actor=LABELLER,
                on_ready=lambda rma: add_timeline_entry(rma.claim, "label_ready")))
            db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False, True]
    assert label_trail(rma_number) == (True, 1, 1)


def test_jobs_queued_by_id_before_the_upgrade_still_run(queued_app):
    """Rows written by the release that named the claim and RMA by id, not by number."""
    from common.jobs import OutboxJob, enqueue_job, execute

    response = queued_app.test_client().post("/api/v1/claims", json=claim_body())
    (announce_row,) = outbox_rows("claims.announce")
    (label_row,) = outbox_rows("rma.prepare_label")
    assert announce_row.kwargs["claim_number"] == response.json["claim_number"]
    assert label_row.kwargs == {"rma_number": response.json["rma_number"]}
    claim = db.session.scalar(select(Claim))
    rma = db.session.scalar(select(Rma))
    legacy_announce = dict(announce_row.kwargs, claim_id=claim.id)
    legacy_announce.pop("claim_number")
    db.session.delete(db.session.get(OutboxJob, announce_row.id))
    db.session.delete(db.session.get(OutboxJob, label_row.id))
    old_announce = enqueue_job("claims.announce", **legacy_announce).id
    old_label = enqueue_job("rma.prepare_label", rma_id=rma.id).id
    db.session.commit()

    assert execute(old_announce) == "completed" and execute(old_label) == "completed"
    assert db.session.scalar(select(Message)).params["rma_number"] == rma.rma_number
    db.session.refresh(rma)
    assert rma.label_ready_at is not None
    kinds = db.session.scalars(select(TimelineEntry.kind).order_by(TimelineEntry.id)).all()
    assert kinds[-1] == "label_ready"


def test_approval_email_is_sent_and_kept_in_the_claims_log(client, app, catalog):
    body = client.post("/api/v1/claims", json=claim_body(language="es")).json
    message = db.session.scalar(select(Message))
    assert message.status == "sent" and message.language == "es"
    assert body["rma_number"] in message.subject and body["tracking_url"] in message.body
    sent = Path(app.config["MAIL_FILE_DIR"]) / f"message-{message.id}.eml"
    assert sent.exists() and "To: ann@example.com" in sent.read_text()


def test_staff_see_the_claim_with_timeline_and_messages(client, catalog):
    number = client.post("/api/v1/claims", json=claim_body()).json["claim_number"]
    token = staff_token("support")
    detail = client.get(f"/api/v1/claims/{number}", headers=bearer(token)).json
    assert detail["status"] == "approved" and detail["rma_number"]
    assert [t["kind"] for t in detail["timeline"]][:2] == ["filed", "approved"]
    assert detail["messages"][0]["status"] == "sent"
    found = client.get("/api/v1/claims?q=SN1", headers=bearer(token)).json
    assert [c["claim_number"] for c in found] == [number]
    by_rma = client.get(f"/api/v1/claims?q={detail['rma_number']}", headers=bearer(token)).json
    assert [c["claim_number"] for c in by_rma] == [number]


def test_support_approves_a_claim_in_review_and_an_rma_is_issued(client, catalog):
    number = client.post("/api/v1/claims", json=claim_body(remedy="refund")).json["claim_number"]
    token = bearer(staff_token("support"))
    reviewed = client.post(f"/api/v1/claims/{number}/review", headers=token,
                           json={"decision": "approve", "note": "Receipt checked"})
    assert reviewed.status_code == 200
    assert reviewed.json["status"] == "approved" and reviewed.json["rma_number"]
    assert reviewed.json["remedy"] == "refund"
    assert reviewed.json["notes"][0]["body"] == "Receipt checked"
    again = client.post(f"/api/v1/claims/{number}/review", headers=token,
                        json={"decision": "reject", "note": "too late"})
    assert again.status_code == 409


def test_support_rejection_frees_the_serial(client, catalog):
    number = client.post("/api/v1/claims", json=claim_body(remedy="refund")).json["claim_number"]
    client.post(f"/api/v1/claims/{number}/review", headers=bearer(staff_token("admin")),
                json={"decision": "reject", "note": "No receipt"})
    claim = db.session.scalar(select(Claim))
    assert claim.status == "rejected" and claim.open_serial is None
    assert client.post("/api/v1/claims", json=claim_body()).status_code == 201


def test_repeat_claims_go_to_review(client, catalog):
    for _ in range(2):
        client.post("/api/v1/claims", json=claim_body())
        db.session.execute(Claim.__table__.update().values(status="closed", open_serial=None))
        db.session.commit()
    third = client.post("/api/v1/claims", json=claim_body()).json
    assert third["status"] == "needs_review"
    assert "repeat_claims" in [r["code"] for r in third["reasons"]]


def test_public_claim_filing_is_rate_limited(make_app):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_PUBLIC="2 per minute")
    client = app.test_client()
    statuses = [client.post("/api/v1/claims", json=claim_body("X1")).status_code
                for _ in range(3)]
    assert statuses == [201, 201, 429]


def test_label_pdf_for_staff_and_bad_check_character(client, catalog):
    rma_number = client.post("/api/v1/claims", json=claim_body()).json["rma_number"]
    token = bearer(staff_token("warehouse"))
    pdf = client.get(f"/api/v1/rmas/{rma_number}/label.pdf", headers=token)
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Type"] == "application/pdf"
    a4 = client.get(f"/api/v1/rmas/{rma_number}/label.pdf?page=a4", headers=token)
    assert a4.status_code == 200 and a4.data != pdf.data
    wrong = mistyped(rma_number)
    bad = client.get(f"/api/v1/rmas/{wrong}", headers=token)
    assert bad.status_code == 422 and bad.json["outcome"] == "bad_check_character"
    assert client.get("/api/v1/rmas/R22222222A", headers=token).status_code in (404, 422)


def test_batch_labels_are_rendered_by_a_job_into_one_pdf(client, catalog):
    numbers = [client.post("/api/v1/claims", json=claim_body()).json["rma_number"]]
    register_purchase("SN3")
    numbers.append(client.post("/api/v1/claims", json=claim_body("SN3")).json["rma_number"])
    token = bearer(staff_token("support"))
    requested = client.post("/api/v1/rmas/label-batches", headers=token,
                            json={"rma_numbers": numbers, "page": "a4"})
    assert requested.status_code == 202
    status = client.get(f"/api/v1/rmas/label-batches/{requested.json['id']}", headers=token).json
    assert status["ready"] and status["count"] == 2  # inline job ran after the commit
    pdf = client.get(status["download_url"], headers=token)
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    bad = client.post("/api/v1/rmas/label-batches", headers=token,
                      json={"rma_numbers": [numbers[0], mistyped(numbers[1])]})
    assert bad.status_code == 422


@requires_postgres
def test_fifty_concurrent_claims_for_one_serial_make_one_open_claim(make_app):
    app = make_app()
    with app.app_context():
        load_catalog()
        register_purchase("RACE1")
    barrier = threading.Barrier(50)
    results: list = []

    def submit() -> None:
        client = app.test_client()
        barrier.wait()
        results.append(client.post("/api/v1/claims", json=claim_body("RACE1")))

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    numbers = {r.json["claim_number"] for r in results}
    assert len(numbers) == 1, numbers
    assert sorted(r.status_code for r in results).count(201) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count(Claim.id))) == 1
        assert db.session.scalar(select(func.count(Rma.id))) == 1
        assert verify_chain().ok


@requires_postgres
def test_concurrent_requests_with_one_idempotency_key_file_once(make_app):
    app = make_app()
    with app.app_context():
        load_catalog()
        register_purchase("RACE2")
        register_purchase("RACE3")
    barrier = threading.Barrier(10)
    results: list = []

    def submit(i: int) -> None:
        client = app.test_client()
        barrier.wait()
        results.append(client.post("/api/v1/claims", headers={"Idempotency-Key": "same"},
                                   json=claim_body("RACE2")))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.status_code in (200, 201) for r in results)
    assert len({r.json["claim_number"] for r in results}) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count(Claim.id))) == 1
        assert db.session.scalar(select(func.count(Message.id))) == 1


def test_an_rma_number_collision_is_retried_with_a_fresh_number(client, catalog, monkeypatch):
    import rma.service

    register_purchase("SN3")
    numbers = iter(["R2345678" + "9", "R2345678" + "9", "R3456789" + "2"])
    from rma.numbers import check_character

    def fake_number() -> str:
        body = next(numbers)[:9]
        return body + check_character(body)

    monkeypatch.setattr(rma.service, "new_rma_number", fake_number)
    first = client.post("/api/v1/claims", json=claim_body()).json["rma_number"]
    second = client.post("/api/v1/claims", json=claim_body("SN3")).json["rma_number"]
    assert first != second and count(Rma) == 2 and count(Claim) == 2


@requires_postgres
def test_two_hundred_concurrent_rma_issues_are_all_distinct(make_app):
    from claims.models import Claim as ClaimModel
    from common.actors import Actor
    from rma.service import issue_rma

    app = make_app()
    with app.app_context():
        load_catalog()
        serials = [f"CONC{i:03d}" for i in range(200)]
        for serial in serials:
            db.session.add(ClaimModel(
                claim_number=f"C{serial}",
                serial_number=serial, email="x@example.com", fault_category="display",
                description="d", status="approved", tracking_token_hash=serial.ljust(64, "0")))
        db.session.commit()
        claim_numbers = [c.claim_number for c in db.session.scalars(select(ClaimModel))]
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def issue(numbers: list[str]) -> None:
        barrier.wait()
        try:
            with app.app_context():
                for claim_number in numbers:
                    issue_rma(claim_number=claim_number, remedy="repair",
                              actor=Actor.system("test"))
                    db.session.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=issue, args=(claim_numbers[i::20],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with app.app_context():
        numbers = db.session.scalars(select(Rma.rma_number)).all()
        assert len(numbers) == 200 == len(set(numbers))
        assert all(parse_rma_number(n).outcome == "ok" for n in numbers)
        assert verify_chain().ok
