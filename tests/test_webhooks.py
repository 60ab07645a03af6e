"""Webhooks: signed deliveries to a real local endpoint, scoping, retries and the log."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from common.extensions import db
from common.jobs import OutboxJob
from tests.factories import bearer, load_catalog, partner_key, staff_token
from tests.test_partner_repairs import patch, ship_units_to
from webhooks.models import WebhookDelivery
from webhooks.signing import signature, verify


class Receiver:
    """A loopback HTTP endpoint that records what it receives and answers ``status``."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def test_signature_round_trip():
    header = signature("whsec_x", "1700000000", b'{"a":1}')
    assert header.startswith("sha256=") and verify("whsec_x", "1700000000", b'{"a":1}', header)
    assert not verify("whsec_y", "1700000000", b'{"a":1}', header)
    assert not verify("whsec_x", "1700000001", b'{"a":1}', header)


def test_partner_gets_signed_events_about_its_own_units_only(client, receiver):
    load_catalog()
    _, key = partner_key("MINE")
    partner_key("OTHER")
    created = client.post("/api/v1/webhooks", headers=bearer(key), json={
        "url": receiver.url, "events": ["unit.shipped_to_partner", "repair.status_changed"]})
    assert created.status_code == 201
    secret = created.json["secret"]
    ship_units_to(client, "OTHER", ["W-OTHER"])
    assert receiver.received == []
    number = ship_units_to(client, "MINE", ["W-MINE"])[0]
    patch(client, bearer(key), number, "received_at_partner", 1)
    events = [json.loads(r["body"]) for r in receiver.received]
    assert [e["type"] for e in events] == ["unit.shipped_to_partner", "repair.status_changed"]
    assert events[0]["data"]["rma_number"] == number
    first = receiver.received[0]
    assert verify(secret, first["headers"]["X-Aftercare-Timestamp"], first["body"],
                  first["headers"]["X-Aftercare-Signature"])
    log = client.get(f"/api/v1/webhooks/{created.json['id']}/deliveries",
                     headers=bearer(key)).json
    assert {d["status"] for d in log} == {"delivered"} and len(log) == 2


def test_failed_delivery_is_retried_until_it_succeeds(app, client, receiver, runner):
    load_catalog()
    _, key = partner_key("MINE")
    client.post("/api/v1/webhooks", headers=bearer(key),
                json={"url": receiver.url, "events": ["unit.shipped_to_partner"]})
    receiver.status = 503
    ship_units_to(client, "MINE", ["W-1"])
    delivery = db.session.scalar(select(WebhookDelivery))
    assert delivery.status == "failed" and delivery.last_status_code == 503
    job = db.session.scalar(select(OutboxJob).where(OutboxJob.job_name == "webhooks.deliver"))
    assert job.completed_at is None  # the failure stays pending for a retry
    receiver.status = 200
    assert runner.invoke(args=["outbox", "relay"]).exit_code == 0
    db.session.rollback()
    delivery = db.session.scalar(select(WebhookDelivery))
    assert delivery.status == "delivered" and delivery.attempts == 2
    assert len(receiver.received) == 2


def test_subscriptions_are_scoped_and_validated(client, receiver):
    _, mine = partner_key("MINE")
    _, other = partner_key("OTHER")
    created = client.post("/api/v1/webhooks", headers=bearer(mine),
                          json={"url": receiver.url, "events": ["sla.breached"]}).json
    assert client.get(f"/api/v1/webhooks/{created['id']}/deliveries",
                      headers=bearer(other)).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{created['id']}",
                         headers=bearer(other)).status_code == 404
    assert client.get("/api/v1/webhooks", headers=bearer(other)).json == []
    bad = client.post("/api/v1/webhooks", headers=bearer(mine),
                      json={"url": "ftp://example.test/x", "events": ["sla.breached"]})
    assert bad.status_code == 422 and "url" in bad.json["errors"]
    admin = bearer(staff_token("admin"))
    assert len(client.get("/api/v1/webhooks", headers=admin).json) == 1
    assert client.delete(f"/api/v1/webhooks/{created['id']}", headers=bearer(mine)
                         ).status_code == 204


def test_production_requires_https_endpoints(make_app):
    from common.actors import Actor
    from common.errors import ValidationFailed
    from webhooks.service import subscribe

    app = make_app(WEBHOOK_ALLOW_HTTP=False)
    with app.app_context(), pytest.raises(ValidationFailed):
        subscribe(url="http://example.test/x", events=["sla.breached"],
                  actor=Actor.system("t"), partner_id=None, allow_http=False)


def test_integrators_hear_about_claims_and_rmas(client, receiver):
    from tests.factories import claim_body, register_purchase

    load_catalog()
    admin = bearer(staff_token("admin"))
    client.post("/api/v1/webhooks", headers=admin, json={
        "url": receiver.url, "events": ["claim.approved", "rma.issued", "claim.rejected"]})
    register_purchase("HOOK-1")
    approved = client.post("/api/v1/claims", json=claim_body("HOOK-1")).json
    client.post("/api/v1/claims", json=claim_body("NOPE-1"))
    events = [json.loads(r["body"]) for r in receiver.received]
    assert [e["type"] for e in events] == ["claim.approved", "rma.issued", "claim.rejected"]
    assert events[1]["data"]["rma_number"] == approved["rma_number"]
    assert events[2]["data"]["reasons"] == ["serial_not_registered"]
