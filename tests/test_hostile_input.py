"""Hostile input, in one place (issue #7 item 5): every door a user can push text, files or
bodies through, driven through the real entry points and checked where the input comes out.

1. MARKUP_CASES x PAYLOADS: each user-supplied text that reaches an HTML page, a PDF or an
   email, entered where users enter it and checked on every page, PDF and email it reaches:
   escaped in HTML, verbatim text in PDFs (no reportlab markup interpreted), verbatim in
   plain-text emails. REFLECTED_CASES x PAYLOADS: request values a page shows back (search
   boxes, forms shown again with their errors, error pages, flash messages).
2. CSV_EXPORTS x FORMULAS: every CSV download, with cells that start like a formula.
3. Path names: photo file names, path-like URL parameters, download headers, redirects.
4. BODY_LIMIT_CASES: every body-taking endpoint family answers 413 and writes nothing.
5. Photos through the HTML form: polyglots, decompression bombs, oversized and too many.

The meta tests at the end keep the tables complete: a new CSV export, PDF renderer or page
template, or a ``|safe`` filter, fails them until this module covers it.

Fields that no page, PDF or email shows are not in the tables: scan notes, unit move notes,
stock movement notes, payment-hold notes, webhook URLs, purchase order references, retailers
and phone numbers. They only come back as JSON, which escapes by construction. Serial numbers
typed by customers, SKUs, part numbers, emails, country and partner codes only take the
characters of their patterns (claims/schemas.py, catalog/import_rules.py, partners/schemas.py),
so markup cannot get into them; scanned serials can, and are in the tables.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import itertools
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from PIL import Image
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from claims.models import Claim, ClaimPhoto
from claims.photos import MAX_PHOTO_BYTES, MAX_PHOTOS
from common.actors import Actor
from common.extensions import db
from fraud import verdicts
from fraud.models import FraudFlag
from messaging.models import Message
from partners import service as partner_service
from partners.models import Partner
from rma.models import Rma
from tests.conftest import csrf_token_from
from tests.factories import (
    PASSWORD,
    TEST_ACTOR,
    bearer,
    claim_body,
    load_catalog,
    make_partner,
    make_user,
    register_purchase,
    staff_token,
)
from tests.test_claim_pages import form_data
from tests.test_labels import needs_tools, rasterise, scan, tools, write_pdf  # noqa: F401
from tests.test_photos import one_bit_png, zip_archive

ROOT = Path(__file__).resolve().parent.parent

# No payload contains another (test_payloads_are_told_apart), so one page can hold several.
PAYLOADS = {
    "element": "<script>alert(1)</script>",
    # Closes a double- or a single-quoted attribute and opens an element.
    "attribute": "\"'><img src=x onerror=alert(1)>",
    "template": "{{7*7}}{{config}}",
    "script-url": "javascript:alert(1)",
    # reportlab Paragraph markup: a font change, a javascript: link, an unclosed tag, an entity.
    "reportlab": '<font color="red"><a href="javascript:void(0)">x</a><b>&amp;',
    "short": "<b>\"'&x",  # fits the shortest fields
}
# An HTML attribute whose value is a javascript: URL.
SCRIPT_URL = re.compile(r"""\b(?:href|src|action|formaction)\s*=\s*["']?\s*javascript:""", re.I)
# The only shape a download's header may have: a fixed disposition, a server-chosen name.
DISPOSITION = re.compile(r'^(inline|attachment); filename="[A-Za-z0-9][A-Za-z0-9._-]*"$')
ELLIPSIS = "\u2026"


@pytest.fixture
def app(make_app, tmp_path: Path):
    """The app with uploads and mail files in this test's own directory, so a test sees every
    file a request wrote (and that nothing landed beside the upload directory)."""
    app = make_app(UPLOAD_DIR=str(tmp_path / "root" / "uploads"),
                   MAIL_FILE_DIR=str(tmp_path / "mail"))
    with app.app_context():
        yield app


# --- the world the tests act in ---------------------------------------------------------------


class World:
    """Clients per role, signed in through the real login form, and the common journeys."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.anonymous = app.test_client()
        self._clients: dict[str, FlaskClient] = {}
        self._tokens: dict[str, dict[str, str]] = {}
        self._numbers = itertools.count(1)

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self._numbers)}"

    def signed_in(self, role: str, **fields: Any) -> FlaskClient:
        key = role + repr(sorted(fields.items()))
        if key not in self._clients:
            client = self.app.test_client()
            user = make_user(role, **fields)
            page = html_of(client.get("/login"))
            done = client.post("/login", data={"email": user.email, "password": PASSWORD,
                                               "csrf_token": csrf_token_from(page)})
            assert done.status_code == 302, html_of(done)
            self._clients[key] = client
        return self._clients[key]

    def token(self, role: str) -> dict[str, str]:
        if role not in self._tokens:
            self._tokens[role] = bearer(staff_token(role))
        return self._tokens[role]

    def partner(self, code: str) -> Partner:
        found = db.session.scalar(select(Partner).where(Partner.code == code))
        return found or make_partner(code, contact_email="shop@example.com", country="SE")

    def partner_key(self, code: str) -> dict[str, str]:
        """An API key of the partner (created if need be)."""
        self.partner(code)
        return bearer(partner_service.issue_partner_key(partner_code=code,
                                                        actor=TEST_ACTOR).secret)

    def file_claim_by_form(self, serial: str, photos: tuple = (), **fields: str) -> Any:
        """The customer's claim form, posted as a browser posts it (multipart)."""
        page = html_of(self.anonymous.get("/claim"))
        return post_multipart(self.anonymous, "/claim",
                              form_data(page, serial_number=serial, **fields), photos)

    def approved_claim_by_form(self, **fields: str) -> tuple[Claim, str]:
        """A claim approved at once: the claim and the customer's tracking path."""
        serial = self.unique("SN")
        register_purchase(serial)
        response = self.file_claim_by_form(serial, **fields)
        assert response.status_code == 302, html_of(response)
        return claim_for(serial), response.headers["Location"]

    def approved_claim_by_api(self, serial: str | None = None, **body: Any) -> tuple[Claim, str]:
        if serial is None:
            serial = self.unique("SN")
            register_purchase(serial)
        response = self.anonymous.post("/api/v1/claims", json=claim_body(serial, **body))
        assert response.status_code == 201 and response.json["status"] == "approved", \
            response.json
        return claim_for(serial), urlsplit(response.json["tracking_url"]).path

    def received_unit(self, serial: str | None = None) -> str:
        """An approved claim's unit, arrived at the warehouse (its serial scanned if given)."""
        rma = rma_of(self.approved_claim_by_api()[0])
        body = {"code": rma, **({"serial_number": serial} if serial is not None else {})}
        scanned = self.anonymous.post("/api/v1/warehouse/scans", json=body,
                                      headers=self.token("warehouse"))
        assert scanned.status_code == 200, scanned.json
        return rma

    def ship_to_partner(self, rma_number: str, partner_code: str) -> str:
        """Route the received unit to the partner and send it; returns the shipment number."""
        warehouse = self.token("warehouse")
        routed = self.anonymous.post(f"/api/v1/warehouse/units/{rma_number}/route",
                                     headers=warehouse, json={
                                         "disposition": "repair_at_partner",
                                         "partner_code": partner_code, "reason": "test"})
        assert routed.status_code == 200, routed.json
        shipment = self.anonymous.post("/api/v1/warehouse/shipments", headers=warehouse, json={
            "partner_code": partner_code, "rma_numbers": [rma_number]})
        assert shipment.status_code == 201, shipment.json
        number = shipment.json["shipment_number"]
        sent = self.anonymous.post(f"/api/v1/warehouse/shipments/{number}/send",
                                   headers=warehouse)
        assert sent.status_code == 200, sent.json
        return number

    def unit_at_partner(self, *steps: str, code: str = "SHOP") -> tuple[str, dict[str, str]]:
        """A unit shipped to the partner and moved through ``steps`` with its API key."""
        key = self.partner_key(code)
        rma = self.received_unit()
        self.ship_to_partner(rma, code)
        for version, status in enumerate(steps, start=1):
            moved = self.anonymous.patch(f"/api/v1/partner/units/{rma}", json={"status": status},
                                         headers={**key, "If-Match": f'"{version}"'})
            assert moved.status_code == 200, moved.json
        return rma, key

    def partner_unit_page(self, rma_number: str, code: str = "SHOP") -> Page:
        return Page("partner unit page", self.signed_in("partner", partner_code=code),
                    f"/partner/units/{rma_number}")

    def manifest(self, shipment_number: str) -> Doc:
        return Doc("shipment manifest", self.anonymous,
                   f"/api/v1/warehouse/shipments/{shipment_number}/manifest.pdf",
                   self.token("warehouse"))

    def label_documents(self, claim: Claim, tracking_path: str) -> list[Doc]:
        """Every way a label is printed: the customer's link, the staff download, a batch; in
        each page size (4x6 inch with the slip on a second page, Letter, A4)."""
        rma = rma_of(claim)
        support = self.token("support")
        batch = self.anonymous.post("/api/v1/rmas/label-batches", headers=support,
                                    json={"rma_numbers": [rma], "page": "a4"})
        assert batch.status_code == 202, batch.json
        status = self.anonymous.get(f"/api/v1/rmas/label-batches/{batch.json['id']}",
                                    headers=support).json
        assert status["ready"], status  # no Redis in tests: the job ran inline
        return [
            Doc("customer label 4x6", self.anonymous, f"{tracking_path}/label.pdf"),
            Doc("staff label Letter", self.anonymous, f"/api/v1/rmas/{rma}/label.pdf?page=letter",
                support),
            Doc("batch labels A4", self.anonymous, status["download_url"], support),
        ]

    def flag_on(self, partner_code: str) -> FraudFlag:
        """A rule flag on the partner, as scoring raises them (its own text is not user input)."""
        flag = FraudFlag(fingerprint=self.unique(f"{partner_code}:test:"),
                         partner_id=self.partner(partner_code).id, kind="rule",
                         signal=verdicts.UNREGISTERED_SERIAL, status="open", score=100.0,
                         reason="Serial is not a registered purchase",
                         amount_at_stake=Decimal("80.00"))
        db.session.add(flag)
        db.session.commit()
        return flag

    def decide_on_desk(self, flag: FraudFlag, **form: str) -> Any:
        finance = self.signed_in("finance")
        url = f"/finance/flags/{flag.id}"
        return finance.post(url + "/decision", data={
            "csrf_token": csrf_token_from(html_of(finance.get(url))), **form})


@dataclass
class Page:
    """A page where the value must show, escaped (``shows``), or at least never raw."""

    label: str
    client: FlaskClient
    url: str
    shows: bool = True


@dataclass
class Doc:
    """A PDF the value must be printed in."""

    label: str
    client: FlaskClient
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Shown:
    """Where one entered value comes out, and as what text (after the entry's normalising)."""

    value: str
    pages: list[Page] = field(default_factory=list)
    docs: list[Doc] = field(default_factory=list)
    emails: int = 0  # plain-text messages that must carry the value verbatim


@pytest.fixture
def world(app: Flask) -> World:
    load_catalog()
    return World(app)


def post_multipart(client: FlaskClient, url: str, fields: dict[str, str],
                   photos: tuple = ()) -> Any:
    """A multipart body built in memory (the test client would spool big files to temporary
    files it never closes), with photos as (bytes, file name) pairs."""
    data = MultiDict(fields)
    for content, filename in photos:
        data.add("photos", FileStorage(io.BytesIO(content), filename=filename,
                                       content_type="image/jpeg"))
    boundary, body = encode_multipart(data)
    return client.post(url, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def claim_for(serial: str) -> Claim:
    db.session.expire_all()
    return db.session.scalar(select(Claim).where(Claim.serial_number == serial.upper()))


def rma_of(claim: Claim) -> str:
    return db.session.scalar(select(Rma.rma_number).where(Rma.claim_id == claim.id))


def csv_body(*rows: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def import_csv(world: World, kind: str, *rows: list[str]) -> None:
    done = world.anonymous.post(f"/api/v1/imports/{kind}", data=csv_body(*rows),
                                content_type="text/csv", headers=world.token("admin"))
    assert done.status_code == 200 and done.json["rejected"] == 0, done.json


def row_counts() -> dict[str, int]:
    """Rows in every table: "nothing written" means none of these moved."""
    db.session.rollback()
    return {table.name: db.session.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables}


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def html_of(response: Any) -> str:
    return response.get_data(as_text=True)


def assert_escaped(html: str, value: str, where: str) -> None:
    """The value shows as text: escaped, never as live markup."""
    assert str(escape(value)) in html, f"{where}: {value!r} is not shown"
    assert_not_raw(html, value, where)


def assert_not_raw(html: str, value: str, where: str) -> None:
    if str(escape(value)) != value:
        assert value not in html, f"{where}: {value!r} reached the page unescaped"
    assert not SCRIPT_URL.search(html), f"{where}: an attribute holds a javascript: URL"


def pdf_text(pdf: bytes, where: str) -> str:
    """The PDF's text as pdftotext reads it, after checking the document is whole and inert."""
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF"), where
    # Markup taken for reportlab markup would have made a link annotation (or worse). Looked
    # for outside the (compressed, binary) streams, where such objects live.
    objects = re.sub(rb"stream\r?\n.*?endstream", b"", pdf, flags=re.S)
    for name in (b"/Annots", b"/URI", b"/JavaScript", b"/JS", b"/OpenAction", b"/Launch"):
        assert not re.search(re.escape(name) + rb"\b", objects), f"{where}: {name!r} in the PDF"
    done = subprocess.run(["pdftotext", "-enc", "UTF-8", "-", "-"], input=pdf,
                          capture_output=True, check=True, timeout=60)
    assert not done.stderr, f"{where}: {done.stderr!r}"
    return " ".join(done.stdout.decode("utf-8").split())


def printed(text: str, value: str) -> bool:
    """``value`` printed verbatim (single-spaced, as labels print it), or cut to fit its line
    with an ellipsis after at least its first 24 characters, verbatim."""
    value = " ".join(value.split())
    if value in text:
        return True
    return any(value[:end].rstrip() + ELLIPSIS in text for end in range(24, len(value)))


def assert_download_header(response: Any) -> None:
    disposition = response.headers.get("Content-Disposition", "")
    assert DISPOSITION.match(disposition), disposition


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def csv_rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert_download_header(response)
    return list(csv.DictReader(io.StringIO(html_of(response), newline="")))


def assert_no_formula_cells(rows: list[dict[str, str]], where: str) -> None:
    """No cell a spreadsheet would evaluate: each starts harmlessly, or is a plain number."""
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(FORMULA_START) or PLAIN_NUMBER.fullmatch(cell), \
                (where, column, cell)


# --- 1. markup in every text field that is shown ----------------------------------------------


@dataclass(frozen=True)
class MarkupCase:
    """One user-supplied text: where users enter it and how long it may be."""

    name: str
    max_len: int
    enter: Callable[[World, str], Shown]


def _claim_pages(world: World, claim: Claim, tracking_path: str, *, shows: bool) -> list[Page]:
    """The staff claim page (where claim fields show) and the pages that must not show them."""
    support = world.signed_in("support")
    return [
        Page("staff claim page", support, f"/staff/claims/{claim.claim_number}", shows=shows),
        Page("review queue", support, "/staff/claims?status=", shows=False),
        Page("claim search", support, f"/staff/claims?q={claim.serial_number}", shows=False),
        Page("customer tracking page", world.anonymous, tracking_path, shows=False),
    ]


def _form_claim_field(name: str, *, on_staff_page: bool, on_label: bool
                      ) -> Callable[[World, str], Shown]:
    def enter(world: World, payload: str) -> Shown:
        claim, tracking = world.approved_claim_by_form(**{name: payload})
        docs = world.label_documents(claim, tracking) if on_label else []
        return Shown(payload, _claim_pages(world, claim, tracking, shows=on_staff_page), docs)
    return enter


def _description_by_api(world: World, payload: str) -> Shown:
    claim, tracking = world.approved_claim_by_api(description=payload)
    return Shown(payload, _claim_pages(world, claim, tracking, shows=True))


def _customer_name_by_api(world: World, payload: str) -> Shown:
    claim, tracking = world.approved_claim_by_api(customer_name=payload, return_address={
        "line1": "Storgatan 1", "postal_code": "11122", "city": "Stockholm", "country": "SE"})
    return Shown(payload, _claim_pages(world, claim, tracking, shows=True),
                 world.label_documents(claim, tracking))


def _purchase_customer_name(world: World, payload: str) -> Shown:
    """The registry's name (admin import) names a customer who files by API without one."""
    serial = world.unique("SN-IMPORTED-")
    import_csv(world, "purchases",
               ["serial_number", "sku", "purchase_date", "customer_email", "customer_name",
                "country"],
               [serial, "PH-1", "2025-06-01", "ann@example.com", payload, "SE"])
    claim, tracking = world.approved_claim_by_api(serial)
    return Shown(payload, _claim_pages(world, claim, tracking, shows=True),
                 world.label_documents(claim, tracking))


def _product_name(world: World, payload: str) -> Shown:
    """A product's name (admin import) is printed on the packing slip of its labels."""
    sku, serial = world.unique("HX-"), world.unique("SN-HX-")
    import_csv(world, "products", ["sku", "name", "category", "warranty_months"],
               [sku, payload, "phone", "24"])
    register_purchase(serial, sku=sku)
    claim, tracking = world.approved_claim_by_api(serial)
    return Shown(payload, _claim_pages(world, claim, tracking, shows=False),
                 world.label_documents(claim, tracking))


def _staff_note(world: World, payload: str) -> Shown:
    claim, tracking = world.approved_claim_by_form()
    support = world.signed_in("support")
    url = f"/staff/claims/{claim.claim_number}"
    added = support.post(url + "/notes", data={
        "csrf_token": csrf_token_from(html_of(support.get(url))), "body": payload})
    assert added.status_code == 302
    return Shown(payload, _claim_pages(world, claim, tracking, shows=True))


def _review_note(world: World, payload: str) -> Shown:
    serial = world.unique("SN")
    register_purchase(serial)
    response = world.file_claim_by_form(serial, remedy="refund")  # refunds wait for support
    claim = claim_for(serial)
    assert response.status_code == 302 and claim.status == "needs_review"
    support = world.signed_in("support")
    url = f"/staff/claims/{claim.claim_number}"
    decided = support.post(url + "/review", data={
        "csrf_token": csrf_token_from(html_of(support.get(url))), "decision": "approve",
        "note": payload})
    assert decided.status_code == 302
    return Shown(payload, _claim_pages(world, claim, response.headers["Location"], shows=True))


def _scan_at_station(world: World, data: dict[str, str]) -> Any:
    station = world.signed_in("warehouse")
    page = html_of(station.get("/warehouse/scan"))
    response = station.post("/warehouse/scan", data={"csrf_token": csrf_token_from(page), **data})
    assert response.status_code == 200, html_of(response)
    return response


def _scanned_code(world: World, payload: str) -> Shown:
    """Whatever the scanner reads (a carrier barcode, a crafted label) is kept and listed."""
    answer = _scan_at_station(world, {"code": payload})
    assert_not_raw(html_of(answer), payload, "scan station answer")
    return Shown(payload, [Page("scan station", world.signed_in("warehouse"), "/warehouse/scan")])


def _scanned_serial(world: World, payload: str) -> Shown:
    """The serial scanned off a returned unit: station, unit lists, partner portal, manifest."""
    rma = rma_of(world.approved_claim_by_form()[0])
    _scan_at_station(world, {"code": rma})
    answer = _scan_at_station(world, {"code": payload, "pending_rma": rma})
    value = payload.strip().upper()
    assert_escaped(html_of(answer), value, "scan station answer")
    world.partner("SHOP")
    shipment = world.ship_to_partner(rma, "SHOP")
    warehouse = world.signed_in("warehouse")
    return Shown(value, [
        Page("scan station", warehouse, "/warehouse/scan"),
        Page("units", warehouse, "/warehouse/units"),
        Page("partner portal", world.signed_in("partner", partner_code="SHOP"), "/partner/units"),
    ], [world.manifest(shipment)])


def _unit_location(world: World, payload: str) -> Shown:
    rma = world.received_unit()
    location = "warehouse:" + payload
    moved = world.anonymous.post(f"/api/v1/warehouse/units/{rma}/move",
                                 headers=world.token("warehouse"),
                                 json={"to_location": location, "note": "shelved"})
    assert moved.status_code == 200, moved.json
    return Shown(location, [Page("units", world.signed_in("warehouse"), "/warehouse/units")])


def _receive_stock_at(world: World, text: str, quantity: int) -> str:
    """Boards received from the supplier into a warehouse location named by ``text``."""
    location = "warehouse:" + text
    moved = world.anonymous.post("/api/v1/warehouse/stock/movements",
                                 headers=world.token("warehouse"), json={
                                     "part_number": "MB-1", "quantity": quantity,
                                     "from_location": "supplier", "to_location": location,
                                     "reason": "received"})
    assert moved.status_code == 201, moved.json
    return location


def _stock_location(world: World, payload: str) -> Shown:
    location = _receive_stock_at(world, payload, 3)
    return Shown(location, [Page("stock", world.signed_in("warehouse"), "/warehouse/stock")])


def _partner_name(world: World, payload: str) -> Shown:
    """A partner's name (admin API): the finance desk, the manifest, the evidence email."""
    code = world.unique("EVIL")
    created = world.anonymous.post("/api/v1/partners", headers=world.token("admin"), json={
        "code": code, "name": payload, "country": "SE", "contact_email": "shop@example.com"})
    assert created.status_code == 201, created.json
    # A repair in its history puts the partner on the funnel plot.
    import_csv(world, "repairs",
               ["partner_code", "serial_number", "sku", "received_date", "completed_date", "doa",
                "parts", "labor_minutes", "claimed_amount"],
               [code, world.unique("OLD"), "PH-1", "2025-05-02", "2025-05-09", "true", "MB-1:1",
                "45", "165.00"])
    flag = world.flag_on(code)
    shipment = world.ship_to_partner(world.received_unit(), code)
    asked = world.decide_on_desk(flag, decision="request_evidence", note="Send the boards")
    assert asked.status_code == 302
    finance = world.signed_in("finance")
    return Shown(payload, [
        Page("flag page", finance, f"/finance/flags/{flag.id}"),
        Page("partner drill-down", finance, f"/finance/partners/{code}"),
        Page("funnel plot", finance, "/finance/funnel"),
        Page("flag queue", finance, "/finance/flags?status=all", shows=False),
    ], [world.manifest(shipment)], emails=1)


def _fraud_decision_note(world: World, payload: str) -> Shown:
    """Finance's note asking a partner for evidence: flag page, audit history, the email."""
    flag = world.flag_on("SHOP")
    asked = world.decide_on_desk(flag, decision="request_evidence", note=payload)
    assert asked.status_code == 302
    finance = world.signed_in("finance")
    return Shown(payload, [
        Page("flag page", finance, f"/finance/flags/{flag.id}"),
        Page("flag queue", finance, "/finance/flags?status=all", shows=False),
    ], emails=1)


def _repair_status_note(world: World, payload: str) -> Shown:
    """The note a partner gives with a status change is in the unit's history."""
    rma, key = world.unit_at_partner()
    moved = world.anonymous.patch(f"/api/v1/partner/units/{rma}", headers={
        **key, "If-Match": '"1"'}, json={"status": "received_at_partner", "note": payload})
    assert moved.status_code == 200, moved.json
    return Shown(payload, [world.partner_unit_page(rma),
                           Page("partner portal", world.partner_unit_page(rma).client,
                                "/partner/units", shows=False)])


def _pause_reason(world: World, payload: str) -> Shown:
    rma, key = world.unit_at_partner("received_at_partner")
    paused = world.anonymous.post(f"/api/v1/partner/units/{rma}/pause", headers=key,
                                  json={"reason": payload})
    assert paused.status_code == 200, paused.json
    return Shown(payload, [world.partner_unit_page(rma)])


def _filed_report(world: World, **fields: Any) -> tuple[str, int]:
    rma, key = world.unit_at_partner("received_at_partner", "diagnosing", "repairing")
    filed = world.anonymous.post(f"/api/v1/partner/units/{rma}/report", headers=key, json={
        "diagnosis_code": "BOARD_FAIL", "labor_minutes": 30, "parts": [], **fields})
    assert filed.status_code == 201, filed.json
    return rma, filed.json["id"]


def _diagnosis_code(world: World, payload: str) -> Shown:
    rma, _ = _filed_report(world, diagnosis_code=payload)
    return Shown(payload, [world.partner_unit_page(rma)])


def _doa_evidence(world: World, payload: str) -> Shown:
    rma, _ = _filed_report(world, doa=True, doa_evidence=payload)
    return Shown(payload, [world.partner_unit_page(rma)])


def _replacement_serial(world: World, payload: str) -> Shown:
    rma, _ = _filed_report(world, replacement_serial=payload)
    return Shown(payload.strip().upper(), [world.partner_unit_page(rma)])


def _report_decision_note(world: World, payload: str) -> Shown:
    """Finance's note on a rejected repair report, shown to the partner."""
    rma, report_id = _filed_report(world)
    decided = world.anonymous.post(f"/api/v1/finance/repair-reports/{report_id}/decision",
                                   headers=world.token("finance"),
                                   json={"decision": "reject", "note": payload})
    assert decided.status_code == 200, decided.json
    return Shown(payload, [world.partner_unit_page(rma)])


def _part_description(world: World, payload: str) -> Shown:
    """A spare part's description (admin import) is offered on the partner's report form."""
    part = world.unique("PX-")
    import_csv(world, "parts", ["part_number", "description", "unit_cost"],
               [part, payload, "12.50"])
    import_csv(world, "bom", ["sku", "part_number", "max_qty"], ["PH-1", part, "1"])
    rma, _ = world.unit_at_partner("received_at_partner", "diagnosing", "repairing")
    return Shown(payload, [world.partner_unit_page(rma)])


MARKUP_CASES = [
    MarkupCase("claim description (form)", 5000,
               _form_claim_field("description", on_staff_page=True, on_label=False)),
    MarkupCase("claim description (API)", 5000, _description_by_api),
    MarkupCase("customer name (form)", 200,
               _form_claim_field("customer_name", on_staff_page=True, on_label=True)),
    MarkupCase("customer name (API)", 200, _customer_name_by_api),
    MarkupCase("return address line 1", 200,
               _form_claim_field("address_line1", on_staff_page=False, on_label=True)),
    MarkupCase("return address line 2", 200,
               _form_claim_field("address_line2", on_staff_page=False, on_label=True)),
    MarkupCase("return address city", 100,
               _form_claim_field("city", on_staff_page=False, on_label=True)),
    MarkupCase("return address postal code", 20,
               _form_claim_field("postal_code", on_staff_page=False, on_label=True)),
    MarkupCase("purchase import customer name", 200, _purchase_customer_name),
    MarkupCase("product import name", 200, _product_name),
    MarkupCase("staff note", 5000, _staff_note),
    MarkupCase("review decision note", 5000, _review_note),
    MarkupCase("scanned code", 128, _scanned_code),
    MarkupCase("scanned serial", 64, _scanned_serial),
    MarkupCase("unit location", 80 - len("warehouse:"), _unit_location),
    MarkupCase("stock location", 80 - len("warehouse:"), _stock_location),
    MarkupCase("partner name", 200, _partner_name),
    MarkupCase("fraud decision note", 2000, _fraud_decision_note),
    MarkupCase("repair status note", 2000, _repair_status_note),
    MarkupCase("SLA pause reason", 2000, _pause_reason),
    MarkupCase("repair report diagnosis code", 40, _diagnosis_code),
    MarkupCase("repair report DOA evidence", 5000, _doa_evidence),
    MarkupCase("repair report replacement serial", 64, _replacement_serial),
    MarkupCase("repair report decision note", 2000, _report_decision_note),
    MarkupCase("part import description", 255, _part_description),
]


def payloads_for(max_len: int, *, in_path: bool = False) -> dict[str, str]:
    # A URL path segment cannot hold a "/": such payloads never reach a path parameter.
    return {kind: payload for kind, payload in PAYLOADS.items()
            if len(payload) <= max_len and not (in_path and "/" in payload)}


@needs_tools
@pytest.mark.parametrize("case", MARKUP_CASES, ids=lambda case: case.name)
def test_markup_in_a_text_field_is_only_ever_text(world, case):
    payloads = payloads_for(case.max_len)
    assert len(payloads) >= 3
    for kind, payload in payloads.items():
        where = f"{case.name} / {kind}"
        shown = case.enter(world, payload)
        assert shown.pages or shown.docs, "a field in this table must come out somewhere"
        for page in shown.pages:
            response = page.client.get(page.url)
            assert response.status_code == 200 and response.mimetype == "text/html", \
                (where, page.label, response.status_code)
            if page.shows:
                assert_escaped(html_of(response), shown.value, f"{where} on {page.label}")
            else:
                assert_not_raw(html_of(response), shown.value, f"{where} on {page.label}")
        for doc in shown.docs:
            response = doc.client.get(doc.url, headers=doc.headers)
            assert response.status_code == 200 and response.mimetype == "application/pdf", \
                (where, doc.label)
            assert_download_header(response)
            text = pdf_text(response.data, f"{where} in {doc.label}")
            assert printed(text, shown.value), (where, doc.label, shown.value, text)
        assert_emails_carry(world, shown, where)


@needs_tools
def test_manifest_prints_any_partner_name_and_serial_as_text_beside_readable_barcodes(
        world, tmp_path):
    """Beyond Latin-1, control and bidi characters, lengths that would run into the barcodes."""
    name = "Łódź Serwis\u202e\r\nÅsa " + "W" * 180
    created = world.anonymous.post("/api/v1/partners", headers=world.token("admin"),
                                   json={"code": "WIDE", "name": name})
    assert created.status_code == 201, created.json
    serial = "SN-" + "W" * 61
    rma = world.received_unit(serial=serial)
    shipment = world.ship_to_partner(rma, "WIDE")
    doc = world.manifest(shipment)
    response = doc.client.get(doc.url, headers=doc.headers)

    assert response.status_code == 200
    text = pdf_text(response.data, doc.label)
    assert "Łódź Serwis Åsa WWWW" in text and ELLIPSIS in text
    assert "\u202e" not in text and "\u25a0" not in text  # no bidi override, no missing glyph
    assert f"serial {serial[:20]}" in text
    assert sorted(scan(rasterise(write_pdf(tmp_path, response.data, "manifest")))) == \
        sorted([shipment, rma])


def assert_emails_carry(world: World, shown: Shown, where: str) -> None:
    """Emails are plain text: the value verbatim (escaping would show &lt; to the reader)."""
    sent = db.session.scalars(select(Message).where(Message.status == "sent")).all()
    carrying = [message for message in sent if shown.value in (message.body or "")]
    assert len(carrying) == shown.emails, (where, [message.kind for message in sent])
    for message in carrying:
        eml = Path(world.app.config["MAIL_FILE_DIR"]) / f"message-{message.id}.eml"
        parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert parsed.get_content_type() == "text/plain", where
        assert shown.value in parsed.get_content(), where
        assert not set("\r\n") & set(message.subject), where


# --- values a page shows back from the request --------------------------------------------------


@dataclass(frozen=True)
class ReflectedCase:
    """A request value a page shows back: ``send`` returns the response and the value shown."""

    name: str
    max_len: int
    send: Callable[[World, str], tuple[Any, str]]
    status: int
    in_path: bool = False


def _staff_search(world: World, payload: str) -> tuple[Any, str]:
    support = world.signed_in("support")
    return support.get("/staff/claims?q=" + quote(payload, safe="")), payload


def _flag_queue_filter(world: World, payload: str) -> tuple[Any, str]:
    finance = world.signed_in("finance")
    return finance.get("/finance/flags?partner=" + quote(payload, safe="")), payload.upper()


def _station_name(world: World, payload: str) -> tuple[Any, str]:
    station = world.signed_in("warehouse")
    return station.get("/warehouse/scan?station=" + quote(payload, safe="")), payload


def _track_lookup(world: World, payload: str) -> tuple[Any, str]:
    page = html_of(world.anonymous.get("/track"))
    return world.anonymous.post("/track", data={"csrf_token": csrf_token_from(page),
                                                "number": payload,
                                                "email": "ann@example.com"}), payload


def _claim_form_shown_again(world: World, payload: str) -> tuple[Any, str]:
    """A form refused for a bad email comes back with everything the customer typed."""
    return world.file_claim_by_form("SN1", email="not-an-email", description=payload,
                                    customer_name=payload, address_line1=payload), payload


def _fraud_note_shown_again(world: World, payload: str) -> tuple[Any, str]:
    """A decision refused for a missing amount comes back with the note as typed."""
    flag = world.flag_on("SHOP")
    return world.decide_on_desk(flag, decision="confirm", recovery_amount="",
                                note=payload), payload


def _login_shown_again(world: World, payload: str) -> tuple[Any, str]:
    client = world.app.test_client()
    page = html_of(client.get("/login"))
    return client.post("/login", data={"csrf_token": csrf_token_from(page), "email": payload,
                                       "password": "x"}), payload


def _unknown_claim_page(world: World, payload: str) -> tuple[Any, str]:
    support = world.signed_in("support")
    return support.get("/staff/claims/" + quote(payload, safe="")), payload


def _partner_portal_flash(world: World, payload: str) -> tuple[Any, str]:
    world.partner("SHOP")
    portal = world.signed_in("partner", partner_code="SHOP")
    page = html_of(portal.get("/partner/units"))
    return portal.post("/partner/units/" + quote(payload, safe=""), data={
        "csrf_token": csrf_token_from(page), "status": "received_at_partner", "version": "1"},
        follow_redirects=True), payload


def _report_form_shown_again(world: World, payload: str) -> tuple[Any, str]:
    """A report refused for its labor minutes comes back with what the technician typed."""
    rma, _ = world.unit_at_partner("received_at_partner", "diagnosing", "repairing")
    page = world.partner_unit_page(rma)
    html = html_of(page.client.get(page.url))
    version = re.search(r'name="version" value="(\d+)"', html).group(1)
    return page.client.post(page.url + "/report", data={
        "csrf_token": csrf_token_from(html), "version": version, "diagnosis_code": payload,
        "doa": "yes", "doa_evidence": payload, "labor_minutes": "lots"}), payload


REFLECTED_CASES = [
    ReflectedCase("staff claim search", 254, _staff_search, 200),
    ReflectedCase("fraud queue partner filter", 32, _flag_queue_filter, 200),
    ReflectedCase("scan station name", 40, _station_name, 200),
    ReflectedCase("tracking lookup number", 32, _track_lookup, 404),
    ReflectedCase("claim form shown again", 200, _claim_form_shown_again, 400),
    ReflectedCase("fraud decision shown again", 2000, _fraud_note_shown_again, 422),
    ReflectedCase("login form shown again", 254, _login_shown_again, 401),
    ReflectedCase("unknown claim page", 64, _unknown_claim_page, 404, in_path=True),
    ReflectedCase("partner portal message", 64, _partner_portal_flash, 200, in_path=True),
    ReflectedCase("partner report form shown again", 40, _report_form_shown_again, 422),
]


@pytest.mark.parametrize("case", REFLECTED_CASES, ids=lambda case: case.name)
def test_request_values_shown_back_are_escaped(world, case):
    payloads = payloads_for(case.max_len, in_path=case.in_path)
    assert len(payloads) >= 3
    for kind, payload in payloads.items():
        response, value = case.send(world, payload)
        where = f"{case.name} / {kind}"
        assert (response.status_code, response.mimetype) == (case.status, "text/html"), where
        assert_escaped(html_of(response), value, where)


# --- 2. CSV injection in every export ---------------------------------------------------------

FORMULAS = {
    "hyperlink": '=HYPERLINK("http://x.example","y")',
    "dde": "+cmd|' /C calc'!A0",
    "arithmetic": "-2+3",
    "at-function": "@SUM(1)",
    "tab": "\t=1+2",
    "carriage-return": "\r=1+3",
    "row-break": 'ok\r\n=2+2,"x"',
}


@dataclass(frozen=True)
class CsvExport:
    """One CSV download: how a user's text gets into ``column``, and how it is downloaded.
    ``enter`` returns the text as the app keeps it (entry points strip and upper-case)."""

    name: str
    filename: str  # the meta test matches these to the csv_response calls in the code
    column: str
    enter: Callable[[World, str], str]
    download: Callable[[World], Any]


def _scanned_serial_for_export(world: World, text: str) -> str:
    world.received_unit(serial=text)
    return text.strip().upper()


def _stock_location_for_export(world: World, text: str) -> str:
    return _receive_stock_at(world, text, 2)


def _decision_note_by_api(world: World, text: str) -> str:
    flag = world.flag_on("SHOP")
    decided = world.anonymous.post(f"/api/v1/fraud/flags/{flag.id}/decision",
                                   headers=world.token("finance"),
                                   json={"decision": "dismiss", "note": text})
    assert decided.status_code == 200, decided.json
    return text.strip()


def _decision_note_on_desk(world: World, text: str) -> str:
    decided = world.decide_on_desk(world.flag_on("SHOP"), decision="dismiss", note=text)
    assert decided.status_code == 302
    return text.strip()


CSV_EXPORTS = [
    CsvExport("units", "units.csv", "received_serial", _scanned_serial_for_export,
              lambda w: w.anonymous.get("/api/v1/warehouse/units?format=csv",
                                        headers=w.token("warehouse"))),
    CsvExport("aging report", "aging.csv", "received_serial", _scanned_serial_for_export,
              lambda w: w.anonymous.get("/api/v1/warehouse/aging?older_than_days=0&format=csv",
                                        headers=w.token("support"))),
    CsvExport("stock levels", "stock.csv", "location", _stock_location_for_export,
              lambda w: w.anonymous.get("/api/v1/warehouse/stock?format=csv",
                                        headers=w.token("finance"))),
    CsvExport("fraud flags API (?format=csv)", "fraud-flags.csv", "decision_note",
              _decision_note_by_api,
              lambda w: w.anonymous.get("/api/v1/fraud/flags?status=dismissed&format=csv",
                                        headers=w.token("finance"))),
    CsvExport("fraud flags API (Accept: text/csv)", "fraud-flags.csv", "decision_note",
              _decision_note_by_api,
              lambda w: w.anonymous.get("/api/v1/fraud/flags?status=dismissed",
                                        headers={**w.token("admin"), "Accept": "text/csv"})),
    CsvExport("finance desk download", "fraud-flags.csv", "decision_note",
              _decision_note_on_desk,
              lambda w: w.signed_in("finance").get("/finance/flags.csv?status=all")),
]


def neutralised(text: str) -> str:
    """What the export must hold for ``text``: a formula start quoted, anything else as is."""
    return "'" + text if text.startswith(FORMULA_START) else text


@pytest.mark.parametrize("export", CSV_EXPORTS, ids=lambda export: export.name)
def test_formulas_in_csv_exports_are_neutralised(world, export):
    kept = {kind: export.enter(world, text) for kind, text in FORMULAS.items()}

    response = export.download(world)
    rows = csv_rows(response)
    assert f'filename="{export.filename}"' in response.headers["Content-Disposition"]
    cells = [row[export.column] for row in rows]
    for kind, text in kept.items():
        assert neutralised(text) in cells, (export.name, kind, neutralised(text), cells)
    assert_no_formula_cells(rows, export.name)
    # One row per thing exported: a cell with a line break stayed one cell, no row was added.
    assert len(rows) == len(FORMULAS)


def test_negative_amounts_in_payables_stay_numbers(client):
    """A chargeback is a negative amount: accounting must read it as a number, not text."""
    from datetime import timedelta

    from common.models import utcnow
    from partners.reports import charge_overdue_cores
    from tests.test_repair_reports import report, start_repairing

    number, headers = start_repairing(client)
    filed = report(client, headers, number)
    assert filed.status_code == 201, filed.json
    finance = bearer(staff_token("finance"))
    approved = client.post(f"/api/v1/finance/repair-reports/{filed.json['id']}/decision",
                           headers=finance, json={"decision": "approve", "note": "ok"})
    assert approved.status_code == 200
    assert charge_overdue_cores(actor=Actor.system("tests"),
                                today=utcnow().date() + timedelta(days=31)) == 1

    rows = csv_rows(client.get("/api/v1/finance/payables?format=csv", headers=finance))

    amounts = {row["kind"]: row["amount"] for row in rows}
    assert amounts == {"repair": "165.00", "chargeback": "-120.00"}
    assert_no_formula_cells(rows, "payables")


def test_numbers_typed_by_the_app_stay_numbers_and_text_never_does():
    from common.csv_export import safe_cell

    assert [safe_cell(v) for v in (-3, Decimal("-20.50"), -1.5, 0)] == ["-3", "-20.50", "-1.5",
                                                                         "0"]
    # Text that looks like a number is still text a user typed: quoted.
    assert [safe_cell(v) for v in ("-3", "-2+3", "+1")] == ["'-3", "'-2+3", "'+1"]
    # Not amounts: infinities are quoted like text, booleans print as words.
    assert [safe_cell(v) for v in (float("-inf"), Decimal("-Infinity"), True)] == [
        "'-inf", "'-Infinity", "True"]


# --- 3. path names: uploaded file names, path-like parameters, headers, redirects --------------

# Name -> whether the part still arrives as a photo. Browsers escape " CR LF in file names
# (as %22 %0D %0A); a hand-made body that does not cuts the name short or turns the part into
# a plain field. Either way the part has no file name, as for "no file chosen": not a photo.
HOSTILE_FILENAMES = {
    "unix-traversal": ("../../../../etc/passwd.jpg", True),
    "windows-traversal": ("..\\..\\..\\windows\\win.ini.jpg", True),
    "absolute": ("/etc/cron.d/evil.jpg", True),
    "windows-absolute": ("C:\\Windows\\System32\\evil.jpg", True),
    "nul-byte": ("photo.php\x00.jpg", True),
    "very-long": ("a" * 4000 + ".jpg", True),
    "rtl-override": ("photo\u202egpj.exe", True),
    "markup-as-browsers-send-it": ("%22><img src=x onerror=alert(1)>.jpg", True),
    "header-break-as-browsers-send-it": ("photo.jpg%0D%0AContent-Type: text/html", True),
    "raw-quote": ('"><img src=x onerror=alert(1)>.jpg', False),
    "raw-header-break": ("photo.jpg\r\nContent-Type: text/html", False),
}
SERVER_NAME = re.compile(r"^[0-9a-f]{32}\.(jpg|png|webp)$")


def small_photo(fmt: str = "JPEG", colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, fmt)
    return out.getvalue()


def test_photo_file_names_never_choose_where_files_land(world, app, tmp_path):
    names = list(HOSTILE_FILENAMES.items())
    batches = [names[i:i + MAX_PHOTOS] for i in range(0, len(names), MAX_PHOTOS)]
    root, uploads = tmp_path / "root", Path(app.config["UPLOAD_DIR"])
    for index, batch in enumerate(batches, start=1):
        serial = f"SN-FILES-{index}"
        register_purchase(serial)
        photos = tuple((small_photo(colour=(index, n, 7)), name)
                       for n, (_, (name, _)) in enumerate(batch))
        response = world.file_claim_by_form(serial, photos=photos)
        assert response.status_code == 302, [kind for kind, _ in batch]
        claim = claim_for(serial)
        stored = db.session.scalars(select(ClaimPhoto.stored_name).where(
            ClaimPhoto.claim_id == claim.id)).all()
        assert len(stored) == sum(1 for _, (_, arrives) in batch if arrives), batch
        assert all(SERVER_NAME.match(name) for name in stored), stored
        folder = uploads / "claims" / claim.claim_number
        assert [p.name for p in files_under(folder)] == sorted(stored)
        shown = html_of(world.signed_in("support").get(f"/staff/claims/{claim.claim_number}"))
        shown += html_of(world.anonymous.get(response.headers["Location"]))
        for kind, (name, _) in batch:
            assert name not in shown and str(escape(name)) not in shown, kind
        assert "passwd" not in shown and "win.ini" not in shown and "gpj" not in shown
    # Every file written is a stored photo: none beside the upload folder or outside it.
    written = files_under(root)
    assert all(p.parent.parent == uploads / "claims" for p in written), written
    assert len(written) == sum(1 for _, (_, arrives) in names if arrives)


@dataclass(frozen=True)
class PathCase:
    """A path-like request value. ``who``: an API token's role, "finance-desk" for a signed-in
    finance user, None for nobody; ``status``: what it must answer."""

    name: str
    url: str
    status: int
    who: str | None = "admin"
    method: str = "GET"


# Percent-encoded as they arrive on the wire. None may reach a file, a header or a 5xx.
PATH_CASES = [
    PathCase("label by traversal", "/api/v1/rmas/..%2F..%2F..%2Fetc%2Fpasswd/label.pdf", 404),
    PathCase("label by windows traversal", "/api/v1/rmas/..%5C..%5Cwin.ini/label.pdf", 422),
    PathCase("label with a header break", "/api/v1/rmas/R%0D%0ASet-Cookie:%20x=1/label.pdf",
             422),
    PathCase("label page name", "/api/v1/rmas/R2222-22222/label.pdf?page=..%2F..%2Fetc", 422),
    PathCase("label with a NUL", "/api/v1/rmas/R%00x/label.pdf", 422),
    PathCase("batch by traversal",
             "/api/v1/rmas/label-batches/..%2F..%2F..%2Fetc%2Fpasswd/labels.pdf", 404),
    PathCase("batch with a header break",
             "/api/v1/rmas/label-batches/x%0D%0ASet-Cookie:%20x=1/labels.pdf", 404),
    PathCase("manifest by traversal",
             "/api/v1/warehouse/shipments/..%2F..%2Fetc%2Fpasswd/manifest.pdf", 404),
    PathCase("manifest with a header break",
             "/api/v1/warehouse/shipments/S%0D%0AX-Injected:%201/manifest.pdf", 404),
    PathCase("tracking label by traversal", "/track/..%2F..%2Fetc%2Fpasswd/label.pdf", 404,
             None),
    PathCase("tracking label with a header break", "/track/x%0D%0ASet-Cookie:%20x=1/label.pdf",
             404, None),
    PathCase("signed label by traversal", "/track/s/..%2F..%2Fapp.py/label.pdf", 404, None),
    PathCase("customer label page name", "/track/x/label.pdf?page=%0D%0Ax", 404, None),
    PathCase("static file by traversal", "/static/..%2F..%2Fapp.py", 404, None),
    PathCase("static file by windows traversal", "/static/..%5C..%5Capp.py", 404, None),
    PathCase("export format by traversal",
             "/api/v1/warehouse/units?format=..%2F..%2Fetc%2Fpasswd", 422),
    PathCase("desk export filter with a header break",
             "/finance/flags.csv?partner=%0D%0AX-A:%201", 200, "finance-desk"),
    PathCase("audit entity by traversal", "/api/v1/audit/claim/..%2F..%2Fetc%2Fpasswd", 404),
    PathCase("import kind by traversal", "/api/v1/imports/..%2F..%2Fetc%2Fpasswd", 404,
             method="POST"),
    PathCase("import kind unknown", "/api/v1/imports/..%5C..%5Cwin.ini", 422, method="POST"),
]


@pytest.mark.parametrize("case", PATH_CASES, ids=lambda case: case.name)
def test_path_like_parameters_neither_traverse_nor_inject_headers(world, case):
    headers = world.token(case.who) if case.who not in (None, "finance-desk") else {}
    client = world.signed_in("finance") if case.who == "finance-desk" else world.anonymous

    response = client.open(case.url, method=case.method, headers=headers,
                           data=b"serial_number\nX\n", content_type="text/csv")

    assert response.status_code == case.status, (case.name, response.status_code)
    for name, value in response.headers.items():
        assert not set("\r\n") & set(name + value), (name, value)
        assert name.lower() not in ("x-injected", "x-a"), name
    assert "x=1" not in response.headers.get("Set-Cookie", "")
    assert response.mimetype != "application/pdf"
    if "Content-Disposition" in response.headers:
        assert_download_header(response)
    body = response.get_data()
    assert b"root:x:0:0" not in body and b"create_app" not in body


# "next" after signing in: each must send the user somewhere on this site.
NEXT_TARGETS = {
    "own page": "/staff/claims",
    "protocol-relative": "//evil.example/",
    "encoded slash": "/%2Fevil.example/",
    "tab in the slashes": "/%09/evil.example/",
    "backslash": "/%5Cevil.example/",
    "scheme": "https://evil.example/",
    "javascript": "javascript:alert(1)",
    "leading space": "%20//evil.example/",
}


def browser_destination(location: str) -> tuple[str, str]:
    """Where a browser goes for a Location header: (scheme, host), both empty for this site.
    Browsers drop leading controls and spaces, remove tabs and newlines anywhere and read a
    backslash as a slash."""
    cleaned = re.sub(r"[\t\n\r]", "", location.lstrip("".join(map(chr, range(0x21)))))
    parts = urlsplit(cleaned.replace("\\", "/"))
    return parts.scheme, parts.netloc


@pytest.mark.parametrize("target", NEXT_TARGETS.values(), ids=NEXT_TARGETS.keys())
def test_sign_in_redirects_stay_on_this_site(app, target):
    user = make_user("support")
    client = app.test_client()
    page = html_of(client.get("/login"))
    response = client.post("/login?next=" + target, data={
        "email": user.email, "password": PASSWORD, "csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    assert browser_destination(response.headers["Location"]) in (("", ""), ("http", "localhost"))


def test_sign_in_with_a_line_break_in_next_redirects_home(app):
    user = make_user("support")
    client = app.test_client()
    page = html_of(client.get("/login"))
    response = client.post("/login?next=/%0D%0ASet-Cookie:%20x=1", data={
        "email": user.email, "password": PASSWORD, "csrf_token": csrf_token_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/"


# --- 4. oversized bodies ----------------------------------------------------------------------

SMALL_LIMITS = {"MAX_CONTENT_LENGTH": 4096, "CLAIM_FORM_MAX_BYTES": 16384,
                "IMPORT_MAX_BYTES": 8192}
BIG = "x" * 20_000  # over every limit above


@dataclass(frozen=True)
class BodyCase:
    """One body-taking endpoint family. ``prepare`` signs in and finds what the request needs
    (before the database is counted); ``send`` posts a body over its limit."""

    name: str
    prepare: Callable[[World], dict[str, Any]]
    send: Callable[[World, dict[str, Any]], Any]
    html: bool


def _nothing(world: World) -> dict[str, Any]:
    return {}


def _tokens(*roles: str) -> Callable[[World], dict[str, Any]]:
    return lambda world: {role: world.token(role) for role in roles}


def _with_claim(world: World) -> dict[str, Any]:
    claim, tracking = world.approved_claim_by_api()
    return {"claim": claim.claim_number, "support": world.token("support")}


def _with_partner_unit(world: World) -> dict[str, Any]:
    rma = world.received_unit()
    world.ship_to_partner(rma, "SHOP")
    return {"rma": rma, "key": world.partner_key("SHOP")}


def _with_flag(world: World) -> dict[str, Any]:
    return {"flag": world.flag_on("SHOP").id, "finance": world.token("finance")}


def _page_form(role: str | None, url: str, **fields: Any) -> Callable[[World], dict[str, Any]]:
    """Sign in and read the page's CSRF token, as a browser has it before posting."""
    def prepare(world: World) -> dict[str, Any]:
        client = world.signed_in(role, **fields) if role else world.app.test_client()
        return {"client": client, "csrf": csrf_token_from(html_of(client.get(url)))}
    return prepare


def _staff_claim_form(world: World) -> dict[str, Any]:
    serial = world.unique("SN")
    register_purchase(serial)
    assert world.file_claim_by_form(serial, remedy="refund").status_code == 302
    number = claim_for(serial).claim_number
    support = world.signed_in("support")
    return {"client": support, "claim": number,
            "csrf": csrf_token_from(html_of(support.get(f"/staff/claims/{number}")))}


def _desk_form(world: World) -> dict[str, Any]:
    flag = world.flag_on("SHOP")
    finance = world.signed_in("finance")
    return {"client": finance, "flag": flag.id,
            "csrf": csrf_token_from(html_of(finance.get(f"/finance/flags/{flag.id}")))}


def _partner_report_form(world: World) -> dict[str, Any]:
    rma, _ = world.unit_at_partner("received_at_partner", "diagnosing", "repairing")
    page = world.partner_unit_page(rma)
    return {"client": page.client, "url": page.url + "/report",
            "csrf": csrf_token_from(html_of(page.client.get(page.url)))}


def _claim_form(world: World) -> dict[str, Any]:
    register_purchase("SN-BIG")
    page = html_of(world.anonymous.get("/claim"))
    return {"form": form_data(page, serial_number="SN-BIG")}


BODY_LIMIT_CASES = [
    BodyCase("claim API", _nothing, lambda w, c: w.anonymous.post(
        "/api/v1/claims", json=claim_body("SN1", description=BIG)), html=False),
    BodyCase("partner API", _tokens("admin"), lambda w, c: w.anonymous.post(
        "/api/v1/partners", headers=c["admin"], json={"code": "BIG", "name": BIG}), html=False),
    BodyCase("webhook API", _tokens("admin"), lambda w, c: w.anonymous.post(
        "/api/v1/webhooks", headers=c["admin"],
        json={"url": "https://hooks.example/" + BIG, "events": ["rma.issued"]}), html=False),
    BodyCase("claim note API", _with_claim, lambda w, c: w.anonymous.post(
        f"/api/v1/claims/{c['claim']}/notes", headers=c["support"], json={"body": BIG}),
        html=False),
    BodyCase("warehouse scan API", _tokens("warehouse"), lambda w, c: w.anonymous.post(
        "/api/v1/warehouse/scans", headers=c["warehouse"], json={"code": "R1", "notes": BIG}),
        html=False),
    BodyCase("partner repair report API", _with_partner_unit, lambda w, c: w.anonymous.post(
        f"/api/v1/partner/units/{c['rma']}/report", headers=c["key"],
        json={"diagnosis_code": "X", "doa": True, "doa_evidence": BIG, "labor_minutes": 1,
              "parts": []}), html=False),
    BodyCase("partner status API", _with_partner_unit, lambda w, c: w.anonymous.patch(
        f"/api/v1/partner/units/{c['rma']}", headers={**c["key"], "If-Match": '"1"'},
        json={"status": "received_at_partner", "note": BIG}), html=False),
    BodyCase("fraud decision API", _with_flag, lambda w, c: w.anonymous.post(
        f"/api/v1/fraud/flags/{c['flag']}/decision", headers=c["finance"],
        json={"decision": "dismiss", "note": BIG}), html=False),
    BodyCase("CSV import API", _tokens("admin"), lambda w, c: w.anonymous.post(
        "/api/v1/imports/purchases", headers=c["admin"], content_type="text/csv",
        data=csv_body(["serial_number", "sku", "purchase_date", "customer_email",
                       "customer_name", "country"],
                      *[[f"BIG{n}", "PH-1", "2025-01-01", "a@example.com", "A", "SE"]
                        for n in range(400)])), html=False),
    BodyCase("claim form with photos", _claim_form, lambda w, c: post_multipart(
        w.anonymous, "/claim", c["form"], ((small_photo() + b"\0" * 20_000, "big.jpg"),)),
        html=True),
    BodyCase("tracking lookup form", _page_form(None, "/track"), lambda w, c: c["client"].post(
        "/track", data={"csrf_token": c["csrf"], "number": BIG, "email": "a@example.com"}),
        html=True),
    BodyCase("sign-in form", _page_form(None, "/login"), lambda w, c: c["client"].post(
        "/login", data={"csrf_token": c["csrf"], "email": BIG, "password": BIG}), html=True),
    BodyCase("staff note form", _staff_claim_form, lambda w, c: c["client"].post(
        f"/staff/claims/{c['claim']}/notes", data={"csrf_token": c["csrf"], "body": BIG}),
        html=True),
    BodyCase("staff review form", _staff_claim_form, lambda w, c: c["client"].post(
        f"/staff/claims/{c['claim']}/review",
        data={"csrf_token": c["csrf"], "decision": "approve", "note": BIG}), html=True),
    BodyCase("scan station form", _page_form("warehouse", "/warehouse/scan"),
             lambda w, c: c["client"].post("/warehouse/scan",
                                           data={"csrf_token": c["csrf"], "code": BIG}),
             html=True),
    BodyCase("fraud decision form", _desk_form, lambda w, c: c["client"].post(
        f"/finance/flags/{c['flag']}/decision",
        data={"csrf_token": c["csrf"], "decision": "dismiss", "note": BIG}), html=True),
    BodyCase("fraud hold form", _desk_form, lambda w, c: c["client"].post(
        f"/finance/flags/{c['flag']}/hold", data={"csrf_token": c["csrf"], "note": BIG}),
        html=True),
    BodyCase("partner report form", _partner_report_form, lambda w, c: c["client"].post(
        c["url"], data={"csrf_token": c["csrf"], "diagnosis_code": "X", "labor_minutes": "5",
                        "doa": "yes", "doa_evidence": BIG}), html=True),
    BodyCase("partner portal form", _page_form("partner", "/partner/units", partner_code="SHOP"),
             lambda w, c: c["client"].post(
                 "/partner/units/R2222-22222",
                 data={"csrf_token": c["csrf"], "status": "received_at_partner", "note": BIG}),
             html=True),
]


@pytest.mark.parametrize("case", BODY_LIMIT_CASES, ids=lambda case: case.name)
def test_oversized_bodies_are_refused_with_413_and_write_nothing(world, app, tmp_path, case):
    world.partner("SHOP")
    context = case.prepare(world)
    app.config.update(SMALL_LIMITS)
    before, files = row_counts(), files_under(tmp_path / "root")

    response = case.send(world, context)

    assert response.status_code == 413, (case.name, response.status_code)
    if case.html:
        assert response.mimetype == "text/html"
        html = html_of(response)
        assert "Request Entity Too Large" in html and "Back to the start page" in html
    else:
        assert response.mimetype == "application/problem+json"
        assert response.json["status"] == 413
        assert response.json["title"] == "Request Entity Too Large"
    assert row_counts() == before
    assert files_under(tmp_path / "root") == files


def test_endpoints_with_their_own_limit_take_bodies_over_the_app_wide_one(world, app):
    """The claim form (photos) and CSV imports have their own, larger limits: the app-wide
    one must not refuse them first (the CSRF check reads the form before the view runs)."""
    app.config.update(SMALL_LIMITS)
    purchases = csv_body(["serial_number", "sku", "purchase_date", "customer_email",
                          "customer_name", "country"],
                         *[[f"OK{n}", "PH-1", "2025-01-01", "a@example.com", "A", "SE"]
                           for n in range(120)])
    assert 4096 < len(purchases) <= 8192
    imported = world.anonymous.post("/api/v1/imports/purchases", headers=world.token("admin"),
                                    content_type="text/csv", data=purchases)
    assert imported.status_code == 200 and imported.json["inserted"] == 120, imported.json
    page = html_of(world.anonymous.get("/claim"))
    register_purchase("SN-PHOTO")
    photo = small_photo() + b"\0" * 10_000  # trailing bytes: re-encoding drops them
    filed = post_multipart(world.anonymous, "/claim", form_data(page, serial_number="SN-PHOTO"),
                           ((photo, "crack.jpg"),))
    assert filed.status_code == 302, html_of(filed)
    assert db.session.scalar(select(func.count(ClaimPhoto.id))) == 1


def test_a_scanned_serial_longer_than_its_column_is_a_scan_error(world):
    """The station takes whatever a scanner reads (up to 512 characters of a 2D code).
    SQLite would keep a longer serial; PostgreSQL refuses it, which was a 500."""
    from inventory.models import Unit

    rma = rma_of(world.approved_claim_by_form()[0])
    _scan_at_station(world, {"code": rma})
    station = world.signed_in("warehouse")
    page = html_of(station.get("/warehouse/scan"))

    response = station.post("/warehouse/scan", data={
        "csrf_token": csrf_token_from(page), "code": "S" * 300, "pending_rma": rma})

    assert response.status_code == 422 and "at most 64 characters" in html_of(response)
    db.session.expire_all()
    assert db.session.scalar(select(Unit.received_serial)) is None


# --- 5. photos through the real upload form ---------------------------------------------------


def test_polyglot_photos_are_kept_without_what_was_appended(world, app):
    html_payload = b"<html><body><script>alert(1)</script></body></html>"
    register_purchase("SN-POLY")
    response = world.file_claim_by_form("SN-POLY", photos=(
        (small_photo() + zip_archive(), "holiday.jpg"),
        (small_photo("PNG") + html_payload, "holiday.png")))

    assert response.status_code == 302, html_of(response)
    stored = files_under(Path(app.config["UPLOAD_DIR"]))
    assert len(stored) == 2
    for path in stored:
        data = path.read_bytes()
        assert b"PK\x03\x04" not in data and b"<script" not in data and b"evil.html" not in data
        with Image.open(path) as image:
            image.verify()
    digests = db.session.scalars(select(ClaimPhoto.sha256)).all()
    import hashlib

    assert sorted(digests) == sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in stored)


REFUSED_PHOTOS = {
    "decompression bomb": ((lambda: one_bit_png(10_000, 10_000)), "too many pixels"),
    "a good photo, then a bomb": ((lambda: small_photo(), lambda: one_bit_png(10_000, 10_000)),
                                  "photo 2: the image has too many pixels"),
    "script named .jpg": ((lambda: b"<?php system($_GET['c']); ?>",),
                          "only JPEG, PNG and WebP"),
    "svg named .jpg": ((lambda: b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',),
                       "only JPEG, PNG and WebP"),
    "damaged jpeg": ((lambda: small_photo()[:200],), "damaged or not a real photo"),
    "over 5 MB": ((lambda: small_photo() + b"\0" * MAX_PHOTO_BYTES,), "larger than 5 MB"),
    "six photos": (tuple(lambda n=n: small_photo(colour=(n, 0, 0)) for n in range(6)),
                   "at most 5 photos"),
}


@pytest.mark.parametrize(("makers", "reason"), REFUSED_PHOTOS.values(), ids=REFUSED_PHOTOS.keys())
def test_refused_photos_are_a_form_error_and_nothing_is_written(world, tmp_path, makers, reason):
    if callable(makers):
        makers = (makers,)
    register_purchase("SN-PHOTO")
    page = html_of(world.anonymous.get("/claim"))
    before = row_counts()

    response = post_multipart(world.anonymous, "/claim",
                              form_data(page, serial_number="SN-PHOTO", description=BIG[:300]),
                              tuple((make(), f"photo{n}.jpg") for n, make in enumerate(makers)))

    assert response.status_code == 422 and response.mimetype == "text/html"
    html = html_of(response)
    assert "Photos must be JPEG, PNG or WebP, at most 5 MB each and at most 5 in all." in html
    assert reason in html
    assert "SN-PHOTO" in html and BIG[:300] in html  # what the customer typed is kept
    # No claim without its photos, no photo without its claim, no email, no job.
    assert row_counts() == before
    assert files_under(tmp_path / "root") == []


# --- the tables are complete ------------------------------------------------------------------

APP_PACKAGES = ("app.py", "audit", "auth", "catalog", "claims", "common", "fraud", "inventory",
                "messaging", "partners", "rma", "webhooks")
# Modules that write CSV files for import (demo data, benchmarks): never an HTTP download.
CSV_FILE_WRITERS = {"fraud/synthetic.py", "demo/data.py"}


def app_sources() -> dict[str, str]:
    sources = {}
    for package in APP_PACKAGES:
        paths = [ROOT / package] if package.endswith(".py") else (ROOT / package).rglob("*.py")
        for path in paths:
            sources[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    return sources


def test_payloads_are_told_apart():
    """Tests put several payloads on one page: none may contain another."""
    values = [*PAYLOADS.values(), *(v.upper() for v in PAYLOADS.values())]
    for a, b in itertools.permutations(set(values), 2):
        assert a not in b, (a, b)
    assert len(set(FORMULAS.values())) == len(FORMULAS)


def call_arguments(source: str, function: str) -> list[str]:
    """The argument text of every call of ``function`` in ``source`` (parentheses balanced)."""
    found = []
    for match in re.finditer(re.escape(function) + r"\(", source):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        found.append(source[match.end():end - 1])
    return found


def test_every_csv_export_is_in_the_table():
    calls, writers, mimetypes = [], [], []
    for path, source in app_sources().items():
        if path == "common/csv_export.py":
            continue
        for arguments in call_arguments(source, "csv_response"):
            # Every export names its file in a literal: the file name is never user input.
            name = re.search(r'"([a-z-]+\.csv)"\s*$', arguments)
            assert name, (path, arguments)
            calls.append((path, name.group(1)))
        writers += [path for _ in re.findall(r"csv\.(?:writer|DictWriter)\(", source)]
        mimetypes += [path for _ in re.findall(r"text/csv\"\)|mimetype=\"text/csv", source)]
    assert sorted(name for _, name in calls) == sorted(
        ["units.csv", "aging.csv", "stock.csv", "fraud-flags.csv", "fraud-flags.csv",
         "payables.csv"]), calls
    tested = {export.filename for export in CSV_EXPORTS} | {"payables.csv"}
    assert {name for _, name in calls} == tested
    assert set(writers) <= CSV_FILE_WRITERS and not mimetypes, (writers, mimetypes)


def test_every_pdf_renderer_is_in_the_table():
    canvases = sorted(path for path, source in app_sources().items() if "Canvas(" in source)
    assert canvases == ["inventory/manifest.py", "rma/labels.py"]  # labels, slips, manifests
    for path, source in app_sources().items():
        # Paragraph and friends read <b>, <font>, <a href> in the text as markup.
        assert "platypus" not in source and "Paragraph" not in source, path
        assert ".drawString(" not in source or path in canvases, path


TEMPLATES_RENDERED_HERE = {
    "base.html": "every page",
    "claims/form.html": "claim form shown again",
    "claims/track.html": "customer tracking page",
    "claims/track_lookup.html": "tracking lookup number",
    "auth/login.html": "login form shown again",
    "core/index.html": "sign-in redirects",
    "errors/error.html": "unknown claim page, 413 pages",
    "staff/claim.html": "staff claim page",
    "staff/claims.html": "review queue, claim search",
    "staff/fraud_flag.html": "flag page",
    "staff/fraud_flags.html": "flag queue",
    "staff/fraud_partner.html": "partner drill-down",
    "staff/fraud_funnel.html": "funnel plot",
    "staff/fraud_funnel_table.html": "partner drill-down, funnel plot",
    "warehouse/scan.html": "scan station",
    "warehouse/stock.html": "stock",
    "warehouse/units.html": "units",
    "partner/units.html": "partner portal",
    "partner/unit.html": "partner unit page, partner report form shown again",
    "claims/_field.html": "claim form shown again",
}


def test_every_page_template_is_rendered_here_and_escapes(app):
    folder = ROOT / "templates"
    pages = {str(p.relative_to(folder)) for p in folder.rglob("*.html")}
    assert pages == set(TEMPLATES_RENDERED_HERE)
    for name in pages:
        source = (folder / name).read_text(encoding="utf-8")
        assert not re.search(r"\|\s*safe\b|autoescape\s+false|Markup\(", source), name
        assert app.select_jinja_autoescape(name), name
    # Emails are plain text (not escaped, so a reader never sees &lt;) and sent as text/plain.
    emails = {p.suffix for p in (folder / "emails").iterdir()}
    assert emails == {".txt"} and not app.select_jinja_autoescape("emails/x.txt")
    for path, source in app_sources().items():
        assert "render_template_string" not in source, path
        # Markup() trusts its argument: only the SVG charts build it, escaping every text.
        assert "Markup(" not in source or path == "fraud/charts.py", path
