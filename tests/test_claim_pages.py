"""The customer's claim form and tracking pages, and the support desk pages."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from sqlalchemy import func, select

from claims.models import Claim, ClaimPhoto
from common.extensions import db
from tests.conftest import csrf_token_from
from tests.factories import PASSWORD, claim_body, load_catalog, make_user, register_purchase


@pytest.fixture
def catalog(app):
    load_catalog()
    register_purchase("SN1")


def form_data(page_html: str, **overrides):
    data = {
        "csrf_token": csrf_token_from(page_html),
        "submission_id": re.search(r'name="submission_id"[^>]*value="([^"]+)"', page_html)
        .group(1),
        "serial_number": "SN1", "email": "ann@example.com", "fault_category": "display",
        "description": "Screen stays black after a week.", "remedy": "repair",
        "customer_name": "Ann Example", "address_line1": "Storgatan 1", "postal_code": "11122",
        "city": "Stockholm", "country": "se", "language": "en",
    }
    data.update(overrides)
    return data


def photo_bytes(fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(out, fmt)
    return out.getvalue()


def test_customer_files_a_claim_and_lands_on_the_tracking_page(client, catalog):
    page = client.get("/claim").get_data(as_text=True)
    response = client.post("/claim", data=form_data(page), follow_redirects=False)
    assert response.status_code == 302 and "/track/" in response.headers["Location"]
    tracking = client.get(response.headers["Location"])
    html = tracking.get_data(as_text=True)
    assert tracking.status_code == 200
    assert "Approved" in html and "Claim received" in html and "RMA" in html
    assert "label.pdf" in html and tracking.headers["Cache-Control"] == "no-store"
    label = client.get(response.headers["Location"] + "/label.pdf")
    assert label.status_code == 200 and label.data.startswith(b"%PDF")
    assert db.session.scalar(select(Claim.source)) == "web"


def test_double_submitted_form_files_once(client, catalog):
    page = client.get("/claim").get_data(as_text=True)
    data = form_data(page)
    first = client.post("/claim", data=data)
    second = client.post("/claim", data=data)
    assert first.status_code == second.status_code == 302
    assert db.session.scalar(select(func.count(Claim.id))) == 1
    assert "/track/s/" in second.headers["Location"]
    assert client.get(second.headers["Location"]).status_code == 200


def test_form_errors_are_shown_next_to_the_fields(client, catalog):
    page = client.get("/claim").get_data(as_text=True)
    response = client.post("/claim", data=form_data(page, email="nope", description=""))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert html.count('class="error"') >= 2
    assert db.session.scalar(select(func.count(Claim.id))) == 0


def test_form_without_csrf_token_is_refused(client, catalog):
    page = client.get("/claim").get_data(as_text=True)
    data = form_data(page)
    data.pop("csrf_token")
    assert client.post("/claim", data=data).status_code == 400


def test_photos_are_stored_outside_the_web_root_and_fake_ones_refused(client, app, catalog):
    page = client.get("/claim").get_data(as_text=True)
    data = form_data(page)
    data["photos"] = [(io.BytesIO(photo_bytes()), "crack.jpg"),
                      (io.BytesIO(photo_bytes("PNG")), "../../etc/passwd.png")]
    response = client.post("/claim", data=data, content_type="multipart/form-data")
    assert response.status_code == 302
    photos = db.session.scalars(select(ClaimPhoto)).all()
    assert len(photos) == 2 and all(".." not in p.stored_name for p in photos)
    assert app.config["UPLOAD_DIR"].startswith(app.instance_path) or "uploads" in \
        app.config["UPLOAD_DIR"]
    page = client.get("/claim").get_data(as_text=True)
    fake = form_data(page, serial_number="SN1")
    fake["photos"] = [(io.BytesIO(b"<?php system($_GET['c']); ?>"), "shell.jpg")]
    refused = client.post("/claim", data=fake, content_type="multipart/form-data")
    assert refused.status_code == 422
    assert "only JPEG, PNG and WebP" in refused.get_data(as_text=True)


def test_track_by_number_and_email(client, catalog):
    body = client.post("/api/v1/claims", json=claim_body()).json
    for number in (body["claim_number"], body["rma_number"], body["rma_number"].lower()):
        page = client.get("/track").get_data(as_text=True)
        found = client.post("/track", data={"csrf_token": csrf_token_from(page),
                                            "number": number, "email": "ANN@example.com"})
        assert found.status_code == 302, number
        assert body["claim_number"] in client.get(found.headers["Location"]).get_data(
            as_text=True)


def test_track_with_the_wrong_email_reveals_nothing(client, catalog):
    body = client.post("/api/v1/claims", json=claim_body()).json
    page = client.get("/track").get_data(as_text=True)
    wrong = client.post("/track", data={"csrf_token": csrf_token_from(page),
                                        "number": body["claim_number"],
                                        "email": "eve@example.com"})
    unknown = client.post("/track", data={"csrf_token": csrf_token_from(page),
                                          "number": "C999999999", "email": "eve@example.com"})
    assert wrong.status_code == unknown.status_code == 404
    html = wrong.get_data(as_text=True)
    assert "SN1" not in html and body["rma_number"] not in html and "Approved" not in html


def test_tampered_or_unknown_tracking_links_are_404(client, catalog):
    body = client.post("/api/v1/claims", json=claim_body()).json
    token = body["tracking_url"].rsplit("/", 1)[1]
    assert client.get(f"/track/{token}x").status_code == 404
    assert client.get("/track/s/forged.signature.value").status_code == 404
    assert client.get(f"/track/{token}x/label.pdf").status_code == 404


def test_tracking_page_is_in_the_claims_language(client, catalog):
    body = client.post("/api/v1/claims", json=claim_body(language="sv")).json
    html = client.get(body["tracking_url"].replace("http://127.0.0.1:5000", "")).get_data(
        as_text=True)
    assert '<html lang="sv">' in html


def test_html_in_the_description_is_escaped_on_every_page(client, catalog):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    body = client.post("/api/v1/claims", json=claim_body(description=evil,
                                                         customer_name=evil)).json
    staff = make_user("support")
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": staff.email, "password": PASSWORD,
                                "csrf_token": csrf_token_from(page)})
    html = client.get(f"/staff/claims/{body['claim_number']}").get_data(as_text=True)
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_support_desk_review_queue_and_decision(client, catalog):
    number = client.post("/api/v1/claims", json=claim_body(remedy="refund")).json["claim_number"]
    staff = make_user("support")
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": staff.email, "password": PASSWORD,
                                "csrf_token": csrf_token_from(page)})
    queue = client.get("/staff/claims").get_data(as_text=True)
    assert number in queue
    detail = client.get(f"/staff/claims/{number}").get_data(as_text=True)
    decided = client.post(f"/staff/claims/{number}/review", data={
        "csrf_token": csrf_token_from(detail), "decision": "approve", "note": "Receipt OK"})
    assert decided.status_code == 302
    assert db.session.scalar(select(Claim.status)) == "approved"
    detail = client.get(f"/staff/claims/{number}").get_data(as_text=True)
    assert "claim.approved" in detail and "Receipt OK" in detail


def test_desk_is_for_support_and_admin_only(client, catalog):
    for role, expected in (("warehouse", 403), ("finance", 403)):
        user = make_user(role)
        page = client.get("/login").get_data(as_text=True)
        client.post("/login", data={"email": user.email, "password": PASSWORD,
                                    "csrf_token": csrf_token_from(page)})
        assert client.get("/staff/claims").status_code == expected
    anonymous = client.application.test_client()
    assert anonymous.get("/staff/claims").status_code == 302


def test_tracking_page_shows_the_next_step_with_its_date(client, app, catalog):
    from datetime import UTC, datetime, timedelta

    body = client.post("/api/v1/claims", json=claim_body()).json
    html = client.get(body["tracking_url"].replace("http://127.0.0.1:5000", "")).get_data(
        as_text=True)
    due = datetime.now(UTC).date() + timedelta(days=app.config["RMA_SEND_WITHIN_DAYS"])
    assert "Print the return label" in html
    assert f"Expected by {due.strftime('%B')} {due.day}, {due.year}" in html


def test_working_days_skip_weekends():
    from datetime import date

    from claims.presenter import add_days

    friday = date(2026, 11, 27)
    assert add_days(friday, 2, working_days=True) == date(2026, 12, 1)
    assert add_days(friday, 2, working_days=False) == date(2026, 11, 29)


def test_a_filing_that_fails_after_its_photos_were_written_leaves_no_file(app, catalog,
                                                                          monkeypatch):
    """The photo files are listed for removal before they are written (on PostgreSQL a
    pipelined INSERT's error surfaces later than the file is written)."""
    from pathlib import Path

    from sqlalchemy.exc import IntegrityError

    import claims.service
    from claims.settings import claim_settings
    from common.actors import Actor

    def collides(**kwargs):  # noqa: ANN003, ANN202
        raise IntegrityError("INSERT INTO rmas", {}, Exception("duplicate key"))

    monkeypatch.setattr(claims.service, "issue_rma", collides)
    data = claims.service.ClaimInput(
        serial_number="SN1", email="ann@example.com", fault_category="display",
        description="Black screen.", photos=[photo_bytes(), photo_bytes("PNG")])
    with pytest.raises(RuntimeError, match="3 attempts"):
        claims.service.file_claim(data, actor=Actor.system("tests"),
                                  settings=claim_settings(app.config))
    uploads = Path(app.config["UPLOAD_DIR"])
    assert not [p for p in uploads.rglob("*") if p.is_file()]
    assert db.session.scalar(select(func.count()).select_from(ClaimPhoto)) == 0
