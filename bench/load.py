"""Mixed load on the production stack, then proof that every answer left exactly its rows.

``python -m bench.load [--seconds 60] [--users 16] [--workers 2] [--rq-workers 2] [--json FILE]``
(``make load``; ``LOAD_SECONDS`` and ``LOAD_USERS`` set the defaults of the first two).

The stack, all on 127.0.0.1 and started here: gunicorn (``--workers`` sync workers) serving
``app:create_app()`` with ``AFTERCARE_ENV=production``, ``--rq-workers`` real
``flask --app app worker`` processes, one ``flask --app app outbox relay --loop``, PostgreSQL
(``--database-url``, created if missing; with ``--schema reset`` its schema is dropped and
migrated again) and Redis (``--redis-url``; flushed before and after unless
``--no-flush-redis``). Public rate limits are raised far above the load, because every virtual
user comes from the same loopback address; the limiter still counts in Redis on every request.
A webhook receiver in this process is subscribed to every event, so deliveries run too.

Seeded before the servers start, through the app's own service functions: the demo catalog, a
fresh registered purchase per claim to come, three service partners with API keys, a warehouse
and a finance user (API tokens; the finance user also signs in to the desk with its password),
a small synthetic fraud history scored into flags, a few claims awaiting their unit and a few
units already at the partners.

``--users`` virtual users then run for ``--seconds``, each picking its next step at random by
the weights of ``MIX``: customers filing claims through the API (approved, rejected for a wrong
email, or sent to review for a refund; now and then the same claim again) and through the HTML
form, customers following their tracking link or looking a claim up by number and email,
warehouse scans of issued RMAs (first scans, then repeat scans of received units), routing
received units to a partner and shipping them, partners reading a unit and moving it on with
``If-Match`` (sometimes deliberately with the version they had before, or to a status that
cannot follow, to check the 412 and 409), and finance reading fraud flags through the API and
the desk pages. Anything else than the answer a step expects is an error: a 5xx, no answer, an
unexpected status or body. Expected refusals (409, 412, a duplicate claim's 200, a repeat
scan's ``already_received``) are counted apart, per operation.

When the time is up the web server stops, the rq workers and the relay drain the outbox
(bounded by ``--drain-seconds``), and the database is checked against every answer given:
claims, RMAs, receipts, shipments, repair events, audit events, messages, email files, labels,
outbox jobs, webhook deliveries and the audit hash chain. Exit status 0 only with no error, no
mismatch and a drained queue; 1 otherwise; 2 when the setup fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import secrets
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from bench.common import (
    ERROR,
    EXPECTED,
    OK,
    Client,
    Recorder,
    Reply,
    free_port,
    start_process,
    stop_process,
    tail,
    wait_for_http,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/aftercare_load"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
SEED_ACTOR_NAME = "load-seed"
FAULT = "battery"  # no demo product excludes it
DESCRIPTION = "The battery drains from full to empty within an hour of light use."
LANGUAGES = ("en", "sv", "es")
PARTNERS = 3

# Relative weights of what a virtual user does next (a step whose pool is empty falls back).
MIX = {
    "file_claim_api": 22,
    "refile_claim_api": 3,
    "file_claim_form": 5,
    "track_link": 12,
    "track_lookup": 4,
    "scan_first": 16,
    "scan_repeat": 6,
    "ship_to_partner": 3,
    "partner_update": 17,
    "finance_api": 7,
    "finance_pages": 5,
}
# What a filed claim asks for, and what the rules must answer.
CLAIM_KINDS = {"approve": 80, "reject": 10, "review": 10}
EXPECTED_STATUS = {"approve": "approved", "reject": "rejected", "review": "needs_review"}
# The happy path of a repair with its side roads (partners.repair_states).
NEXT_STATUS: dict[str, list[tuple[str, int]]] = {
    "in_transit": [("received_at_partner", 1)],
    "received_at_partner": [("diagnosing", 1)],
    "diagnosing": [("repairing", 70), ("awaiting_parts", 15), ("replaced", 10),
                   ("unrepairable", 5)],
    "awaiting_parts": [("repairing", 1)],
    "repairing": [("repaired", 1)],
    "repaired": [("shipped_back", 1)],
    "replaced": [("shipped_back", 1)],
    "unrepairable": [("shipped_back", 1)],
}
# The report's rows: customers, warehouse, partners, finance.
OPERATIONS = (
    "POST /api/v1/claims", "POST /api/v1/claims (again)", "GET /claim", "POST /claim",
    "GET /track/<token>", "GET /track", "POST /track", "GET /track/s/<signed>",
    "POST .../scans (first)", "POST .../scans (repeat)", "POST .../units/<rma>/route",
    "POST .../shipments", "POST .../shipments/<n>/send",
    "GET .../partner/units/<rma>", "PATCH .../partner/units/<rma>", "PATCH ... stale If-Match",
    "PATCH ... illegal status",
    "GET /api/v1/fraud/flags", "GET /api/v1/fraud/flags/<id>", "GET /login", "POST /login",
    "GET /finance/flags", "GET /finance/flags/<id>", "GET /finance/funnel",
    "GET /finance/partners/<code>",
)
STALE_REPLAY = 0.12  # after a successful PATCH, send it again with the old version: 412
ILLEGAL_FIRST = 0.08  # before a PATCH, ask for a status that cannot follow: 409
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
SUBMISSION_RE = re.compile(r'name="submission_id"[^>]*value="([^"]+)"')


# --- what the answers promised (checked against the database afterwards) ---------------------


@dataclass
class ClaimFact:
    claim_number: str
    serial: str
    status: str
    rma_number: str | None
    source: str  # api, web or seed


@dataclass
class UnitAtPartner:
    rma: str
    partner: str
    version: int = 1
    status: str = "in_transit"
    moves: list[str] = field(default_factory=list)  # targets of the 200 PATCHes, in order


@dataclass
class Ledger:
    """Everything the server answered (or failed to answer), kept by the virtual users."""

    claims: dict[str, ClaimFact] = field(default_factory=dict)  # claim number -> fact
    form_tokens: dict[str, str] = field(default_factory=dict)  # tracking token -> serial
    unanswered_serials: set[str] = field(default_factory=set)  # filing without a clear answer
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (original, answered)
    received: set[str] = field(default_factory=set)  # RMAs answered ``received``
    uncertain_units: set[str] = field(default_factory=set)  # a step on them had no clear answer
    scans_answered: int = 0  # scans answered 200 (every one writes a ``scans`` row)
    scans_uncertain: int = 0
    routed: dict[str, str] = field(default_factory=dict)  # RMA -> partner
    shipped: dict[str, str] = field(default_factory=dict)  # RMA -> shipment number
    units: dict[str, UnitAtPartner] = field(default_factory=dict)  # RMA -> repair walk


class State:
    """Pools the virtual users share, and the ledger; one lock for all of it."""

    def __init__(self, purchases: list[dict[str, str]], seed: Seed) -> None:
        self.lock = threading.Lock()
        self.ledger = Ledger()
        self._purchases = purchases
        self._next_purchase = 0
        self.tracking: list[tuple[str, str, str, str | None]] = []  # path, claim, email, rma
        self.refile: list[tuple[dict[str, Any], str, str | None]] = []  # body, claim, rma
        self.awaiting: list[tuple[str, str]] = []  # (RMA, serial): not scanned yet
        self.received: list[str] = []  # for repeat scans
        self.to_ship: list[str] = []
        self.at_partner: list[str] = []  # units no virtual user holds right now
        self.seed = seed

    def take_purchase(self) -> dict[str, str] | None:
        with self.lock:
            if self._next_purchase >= len(self._purchases):
                return None
            self._next_purchase += 1
            return self._purchases[self._next_purchase - 1]

    def take_random(self, pool: list, rng: random.Random) -> Any:
        """Remove and return a random element (swap with the last: O(1)); None when empty."""
        with self.lock:
            if not pool:
                return None
            index = rng.randrange(len(pool))
            pool[index], pool[-1] = pool[-1], pool[index]
            return pool.pop()

    def pick_random(self, pool: list, rng: random.Random) -> Any:
        with self.lock:
            return pool[rng.randrange(len(pool))] if pool else None

    def add(self, pool: list, *items: Any) -> None:
        with self.lock:
            pool.extend(items)


@dataclass
class Seed:
    """What the seeding made, for the virtual users."""

    warehouse_token: str
    finance_token: str
    finance_email: str
    finance_password: str
    partner_keys: dict[str, str]  # partner code -> API key
    flag_ids: list[int]
    flag_partners: list[str]


# --- virtual users -------------------------------------------------------------------------------


class VirtualUser(threading.Thread):
    """One simulated person after another, as fast as the server answers, until ``stop_at``."""

    def __init__(self, number: int, port: int, state: State, recorder: Recorder,
                 stop_at: float, seed: int) -> None:
        super().__init__(name=f"vu-{number}", daemon=True)
        self.number = number
        self.state = state
        self.recorder = recorder
        self.stop_at = stop_at
        self.rng = random.Random(seed * 1000 + number)
        # Separate cookie jars: a customer's browser, the finance desk's browser, API clients.
        self.api = Client(port)
        self.browser = Client(port)
        self.desk = Client(port)
        self.signed_in = False
        self.steps = {name: getattr(self, name) for name in MIX}
        self.crashed: BaseException | None = None

    def run(self) -> None:
        names, weights = list(MIX), list(MIX.values())
        try:
            while time.monotonic() < self.stop_at:
                step = self.rng.choices(names, weights)[0]
                if not self.steps[step]() and not self.file_claim_api():
                    self.track_link() or self.finance_api()
        except BaseException as exc:  # noqa: BLE001 - reported as a failed run, not swallowed
            self.crashed = exc
        finally:
            for client in (self.api, self.browser, self.desk):
                client.close()

    # -- one request, classified ---------------------------------------------------------------

    def call(self, op: str, method: str, path: str, *, expect: dict[int, tuple[str, str | None]],
             check: Callable[[Reply], str | None] | None = None, client: Client | None = None,
             **kwargs: Any) -> Reply:
        """Send one request and classify the answer: ``expect`` maps status -> (outcome, label)."""
        reply = (client or self.api).request(method, path, **kwargs)
        if reply.status is None:
            self.recorder.record(op, reply, ERROR, label=f"no answer ({reply.error})",
                                 sample=f"{method} {path}: {reply.error}")
            return reply
        if reply.status not in expect:
            self.recorder.record(op, reply, ERROR, label=str(reply.status),
                                 sample=f"{method} {path} -> {reply.status} {reply.text[:300]}")
            return reply
        problem = check(reply) if check else None
        if problem:
            self.recorder.record(op, reply, ERROR, label=problem,
                                 sample=f"{method} {path} -> {reply.status}: {problem}; "
                                        f"{reply.text[:300]}")
            return reply
        outcome, label = expect[reply.status]
        self.recorder.record(op, reply, outcome, label=label)
        reply.ok = True
        return reply

    def bearer(self, secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    # -- customers --------------------------------------------------------------------------------

    def claim_body(self, purchase: dict[str, str], kind: str) -> dict[str, Any]:
        email = purchase["email"] if kind != "reject" else "someone.else@load.example"
        return {
            "serial_number": purchase["serial"], "email": email, "fault_category": FAULT,
            "description": DESCRIPTION, "remedy": "refund" if kind == "review" else "repair",
            "language": self.rng.choice(LANGUAGES), "customer_name": purchase["name"],
            "return_address": {"name": purchase["name"], "line1": "Storgatan 1",
                               "postal_code": "11122", "city": "Stockholm",
                               "country": purchase["country"]},
        }

    def file_claim_api(self) -> bool:
        purchase = self.state.take_purchase()
        if purchase is None:
            return False
        kind = self.rng.choices(list(CLAIM_KINDS), list(CLAIM_KINDS.values()))[0]
        body = self.claim_body(purchase, kind)
        reply = self.call("POST /api/v1/claims", "POST", "/api/v1/claims", json_body=body,
                          expect={201: (OK, None)}, check=_filed_check(EXPECTED_STATUS[kind]))
        self._note_filed(reply, purchase, body, source="api")
        return True

    def _note_filed(self, reply: Reply, purchase: dict[str, str], body: dict[str, Any],
                    *, source: str) -> None:
        ledger, serial = self.state.ledger, purchase["serial"]
        answer = _json_or_none(reply) if reply.status == 201 else None
        if not answer or "claim_number" not in answer:
            with self.state.lock:
                ledger.unanswered_serials.add(serial)
            return
        number, rma = answer["claim_number"], answer.get("rma_number")
        with self.state.lock:
            ledger.claims[number] = ClaimFact(number, serial, answer.get("status"), rma, source)
        path = urlsplit(answer.get("tracking_url") or "").path
        if path.startswith("/track/"):
            self.state.add(self.state.tracking, (path, number, body["email"], rma))
        if reply.ok and rma:
            self.state.add(self.state.awaiting, (rma, serial))
            self.state.add(self.state.refile, (body, number, rma))

    def refile_claim_api(self) -> bool:
        picked = self.state.pick_random(self.state.refile, self.rng)
        if picked is None:
            return False
        body, number, rma = picked

        def same_claim(reply: Reply) -> str | None:
            answer = _json_or_none(reply) or {}
            if answer.get("duplicate") is not True:
                return "duplicate is not true"
            if (answer.get("claim_number"), answer.get("rma_number")) != (number, rma):
                return "another claim or RMA than the open one"
            return None

        reply = self.call("POST /api/v1/claims (again)", "POST", "/api/v1/claims",
                          json_body=body, expect={200: (EXPECTED, "200 duplicate: the open claim")},
                          check=same_claim)
        if reply.status is not None:
            answered = (_json_or_none(reply) or {}).get("claim_number")
            with self.state.lock:
                self.state.ledger.duplicates.append((number, str(answered)))
        else:
            with self.state.lock:
                self.state.ledger.unanswered_serials.add(body["serial_number"])
        return True

    def file_claim_form(self) -> bool:
        purchase = self.state.take_purchase()
        if purchase is None:
            return False
        self.browser.forget_cookies()  # a new customer, a new browser
        lang = self.rng.choice(LANGUAGES)
        page = self.call("GET /claim", "GET", f"/claim?lang={lang}", client=self.browser,
                         expect={200: (OK, None)}, check=_has(CSRF_RE, SUBMISSION_RE))
        if not page.ok:
            with self.state.lock:
                self.state.ledger.unanswered_serials.add(purchase["serial"])  # never filed
            return True
        form = {
            "csrf_token": CSRF_RE.search(page.text).group(1),
            "submission_id": SUBMISSION_RE.search(page.text).group(1),
            "serial_number": purchase["serial"], "email": purchase["email"],
            "fault_category": FAULT, "description": DESCRIPTION, "remedy": "repair",
            "customer_name": purchase["name"], "address_line1": "Storgatan 1",
            "postal_code": "11122", "city": "Stockholm", "country": purchase["country"],
            "language": lang,
        }
        reply = self.call("POST /claim", "POST", "/claim", form=form, client=self.browser,
                          expect={302: (OK, None)}, check=_redirects_to("/track/"))
        path = urlsplit(reply.headers.get("location", "")).path
        token = path.removeprefix("/track/")
        if not reply.ok or "/" in token:
            with self.state.lock:
                self.state.ledger.unanswered_serials.add(purchase["serial"])
            return True
        with self.state.lock:
            self.state.ledger.form_tokens[token] = purchase["serial"]
        # The browser follows the redirect to the tracking page; the RMA number is on it.
        landing = self.call("GET /track/<token>", "GET", path, client=self.browser,
                            expect={200: (OK, None)}, check=_contains("R"))
        found = re.search(r"\bR[0-9A-Z]{4}-[0-9A-Z]{5}\b", landing.text) if landing.ok else None
        if found:
            rma = found.group(0).replace("-", "")
            self.state.add(self.state.awaiting, (rma, purchase["serial"]))
            self.state.add(self.state.tracking, (path, "", purchase["email"], rma))
        return True

    def track_link(self) -> bool:
        picked = self.state.pick_random(self.state.tracking, self.rng)
        if picked is None:
            return False
        path, number, _email, _rma = picked
        self.browser.forget_cookies()
        self.call("GET /track/<token>", "GET", path, client=self.browser,
                  expect={200: (OK, None)}, check=_contains(number) if number else None)
        return True

    def track_lookup(self) -> bool:
        picked = self.state.pick_random(self.state.tracking, self.rng)
        if picked is None or not picked[1]:
            return False
        _path, number, email, rma = picked
        self.browser.forget_cookies()
        page = self.call("GET /track", "GET", "/track", client=self.browser,
                         expect={200: (OK, None)}, check=_has(CSRF_RE))
        if not page.ok:
            return True
        # Customers type the claim number or the RMA number as printed (with its dash).
        typed = _display_rma(rma) if rma and self.rng.random() < 0.5 else number
        found = self.call("POST /track", "POST", "/track", client=self.browser,
                          form={"csrf_token": CSRF_RE.search(page.text).group(1),
                                "number": typed, "email": email},
                          expect={302: (OK, None)}, check=_redirects_to("/track/s/"))
        if found.ok:
            self.call("GET /track/s/<signed>", "GET",
                      urlsplit(found.headers["location"]).path, client=self.browser,
                      expect={200: (OK, None)}, check=_contains(number))
        return True

    # -- warehouse --------------------------------------------------------------------------------

    def scan_first(self) -> bool:
        picked = self.state.take_random(self.state.awaiting, self.rng)
        if picked is None:
            return False
        rma, serial = picked
        body: dict[str, Any] = {"code": _display_rma(rma) if self.rng.random() < 0.3 else rma,
                                "station": f"dock-{self.number}"}
        if self.rng.random() < 0.5:
            body["serial_number"] = serial

        def received(reply: Reply) -> str | None:
            answer = _json_or_none(reply) or {}
            if (answer.get("outcome"), answer.get("rma_number")) != ("received", rma):
                return f"outcome {answer.get('outcome')} for {answer.get('rma_number')}"
            return None

        reply = self.call("POST .../scans (first)", "POST", "/api/v1/warehouse/scans",
                          json_body=body, headers=self.bearer(self.state.seed.warehouse_token),
                          expect={200: (OK, None)}, check=received)
        with self.state.lock:
            ledger = self.state.ledger
            if reply.status == 200:
                ledger.scans_answered += 1
            else:
                ledger.scans_uncertain += 1
            if reply.ok:
                ledger.received.add(rma)
                self.state.received.append(rma)
                self.state.to_ship.append(rma)
            else:
                ledger.uncertain_units.add(rma)
        return True

    def scan_repeat(self) -> bool:
        rma = self.state.pick_random(self.state.received, self.rng)
        if rma is None:
            return False

        def already(reply: Reply) -> str | None:
            outcome = (_json_or_none(reply) or {}).get("outcome")
            return None if outcome == "already_received" else f"outcome {outcome}"

        reply = self.call("POST .../scans (repeat)", "POST", "/api/v1/warehouse/scans",
                          json_body={"code": rma, "station": f"dock-{self.number}"},
                          headers=self.bearer(self.state.seed.warehouse_token),
                          expect={200: (EXPECTED, "200 already_received")}, check=already)
        with self.state.lock:
            if reply.status == 200:
                self.state.ledger.scans_answered += 1
            else:
                self.state.ledger.scans_uncertain += 1
        return True

    def ship_to_partner(self) -> bool:
        units = [rma for rma in (self.state.take_random(self.state.to_ship, self.rng)
                                 for _ in range(4)) if rma is not None]
        if not units:
            return False
        partner = self.rng.choice(sorted(self.state.seed.partner_keys))
        headers = self.bearer(self.state.seed.warehouse_token)
        routed = []
        for rma in units:
            reply = self.call(
                "POST .../units/<rma>/route", "POST", f"/api/v1/warehouse/units/{rma}/route",
                json_body={"disposition": "repair_at_partner", "partner_code": partner,
                           "reason": "load test: repair at the partner"},
                headers=headers, expect={200: (OK, None)},
                check=_fields(status="routed", rma_number=rma))
            with self.state.lock:
                if reply.ok:
                    self.state.ledger.routed[rma] = partner
                    routed.append(rma)
                else:
                    self.state.ledger.uncertain_units.add(rma)
        if not routed:
            return True
        created = self.call("POST .../shipments", "POST", "/api/v1/warehouse/shipments",
                            json_body={"partner_code": partner, "rma_numbers": routed},
                            headers=headers, expect={201: (OK, None)},
                            check=_fields(status="open"))
        number = (_json_or_none(created) or {}).get("shipment_number") if created.ok else None
        sent = None
        if number:
            sent = self.call("POST .../shipments/<n>/send", "POST",
                             f"/api/v1/warehouse/shipments/{number}/send", headers=headers,
                             expect={200: (OK, None)}, check=_fields(status="sent"))
        with self.state.lock:
            for rma in routed:
                if sent is not None and sent.ok:
                    self.state.ledger.shipped[rma] = number
                    self.state.ledger.units[rma] = UnitAtPartner(rma, partner)
                    self.state.at_partner.append(rma)
                else:
                    self.state.ledger.uncertain_units.add(rma)
        return True

    # -- partners ---------------------------------------------------------------------------------

    def partner_update(self) -> bool:
        rma = self.state.take_random(self.state.at_partner, self.rng)
        if rma is None:
            return False
        with self.state.lock:
            unit = self.state.ledger.units[rma]
        done = self._move_unit(unit)
        with self.state.lock:
            if not done:
                self.state.ledger.uncertain_units.add(rma)
            elif unit.status != "shipped_back":
                self.state.at_partner.append(rma)
        return True

    def _move_unit(self, unit: UnitAtPartner) -> bool:
        """Read the unit, maybe try a refused move, move it one step; False when unsure."""
        key = self.bearer(self.state.seed.partner_keys[unit.partner])
        path = f"/api/v1/partner/units/{unit.rma}"
        read = self.call("GET .../partner/units/<rma>", "GET", path, headers=key,
                         expect={200: (OK, None)},
                         check=_etag_and_status(unit.version, unit.status))
        if not read.ok:
            return False
        if self.rng.random() < ILLEGAL_FIRST:
            allowed = {target for target, _ in NEXT_STATUS[unit.status]}
            illegal = self.rng.choice(sorted({"in_transit", "diagnosing", "repaired",
                                              "shipped_back"} - allowed - {unit.status}))
            refused = self.call("PATCH ... illegal status", "PATCH", path,
                                json_body={"status": illegal, "note": "load: out of order"},
                                headers={**key, "If-Match": f'"{unit.version}"'},
                                expect={409: (EXPECTED, "409 illegal transition")},
                                check=_fields(current_status=unit.status))
            if not refused.ok:
                return False
        options = NEXT_STATUS[unit.status]
        target = self.rng.choices([t for t, _ in options], [w for _, w in options])[0]
        moved = self.call("PATCH .../partner/units/<rma>", "PATCH", path,
                          json_body={"status": target, "note": f"load: {target}"},
                          headers={**key, "If-Match": f'"{unit.version}"'},
                          expect={200: (OK, None)},
                          check=_etag_and_status(unit.version + 1, target))
        if not moved.ok:
            return False
        unit.version += 1
        unit.status = target
        unit.moves.append(target)
        if self.rng.random() < STALE_REPLAY:
            # Someone who read the unit before this move tries it again: refused, no write.
            stale = self.call("PATCH ... stale If-Match", "PATCH", path,
                              json_body={"status": target, "note": "load: stale retry"},
                              headers={**key, "If-Match": f'"{unit.version - 1}"'},
                              expect={412: (EXPECTED, "412 stale If-Match")},
                              check=_fields(version=unit.version))
            if not stale.ok:
                return False
        return True

    # -- finance ----------------------------------------------------------------------------------

    def finance_api(self) -> bool:
        headers = self.bearer(self.state.seed.finance_token)
        listed = self.call("GET /api/v1/fraud/flags", "GET", "/api/v1/fraud/flags?page_size=25",
                           headers=headers, expect={200: (OK, None)}, check=_is_list)
        flags = self.state.seed.flag_ids
        if listed.ok and flags and self.rng.random() < 0.4:
            self.call("GET /api/v1/fraud/flags/<id>", "GET",
                      f"/api/v1/fraud/flags/{self.rng.choice(flags)}", headers=headers,
                      expect={200: (OK, None)}, check=_fields())
        return True

    def finance_pages(self) -> bool:
        seed = self.state.seed
        if not self.signed_in:
            page = self.call("GET /login", "GET", "/login", client=self.desk,
                             expect={200: (OK, None)}, check=_has(CSRF_RE))
            if not page.ok:
                return True
            login = self.call("POST /login", "POST", "/login", client=self.desk,
                              form={"csrf_token": CSRF_RE.search(page.text).group(1),
                                    "email": seed.finance_email,
                                    "password": seed.finance_password},
                              expect={302: (OK, None)})
            self.signed_in = login.ok
            if not login.ok:
                return True
        choices = [("GET /finance/flags", "/finance/flags"),
                   ("GET /finance/funnel", "/finance/funnel")]
        if seed.flag_ids:
            choices.append(("GET /finance/flags/<id>",
                            f"/finance/flags/{self.rng.choice(seed.flag_ids)}"))
        if seed.flag_partners:
            choices.append(("GET /finance/partners/<code>",
                            f"/finance/partners/{self.rng.choice(seed.flag_partners)}"))
        op, path = self.rng.choice(choices)
        self.call(op, "GET", path, client=self.desk, expect={200: (OK, None)},
                  check=_contains("</html>"))
        return True


# --- answer checks -------------------------------------------------------------------------------


def _json_or_none(reply: Reply) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None


def _display_rma(number: str) -> str:
    return f"{number[:5]}-{number[5:]}"


def _filed_check(status: str) -> Callable[[Reply], str | None]:
    def check(reply: Reply) -> str | None:
        from rma.numbers import parse_rma_number

        answer = _json_or_none(reply) or {}
        if answer.get("status") != status:
            return f"claim {answer.get('status')}, expected {status}"
        if answer.get("duplicate") is not False:
            return "a new claim answered as a duplicate"
        rma = answer.get("rma_number")
        if (status == "approved") != (rma is not None):
            return f"RMA {rma} for a claim {status}"
        if rma is not None and parse_rma_number(rma).outcome != "ok":
            return f"RMA number {rma} does not check out"
        return None

    return check


def _has(*patterns: re.Pattern) -> Callable[[Reply], str | None]:
    def check(reply: Reply) -> str | None:
        missing = [p.pattern for p in patterns if not p.search(reply.text)]
        return f"page without {missing}" if missing else None

    return check


def _contains(text: str) -> Callable[[Reply], str | None]:
    return lambda reply: None if text in reply.text else f"page without {text!r}"


def _redirects_to(prefix: str) -> Callable[[Reply], str | None]:
    def check(reply: Reply) -> str | None:
        target = urlsplit(reply.headers.get("location", "")).path
        return None if target.startswith(prefix) else f"redirect to {target!r}"

    return check


def _fields(**expected: Any) -> Callable[[Reply], str | None]:
    def check(reply: Reply) -> str | None:
        answer = _json_or_none(reply)
        if not isinstance(answer, dict):
            return "not a JSON object"
        wrong = {k: answer.get(k) for k, v in expected.items() if answer.get(k) != v}
        return f"unexpected {wrong}" if wrong else None

    return check


def _is_list(reply: Reply) -> str | None:
    return None if isinstance(_json_or_none(reply), list) else "not a JSON list"


def _etag_and_status(version: int, status: str) -> Callable[[Reply], str | None]:
    def check(reply: Reply) -> str | None:
        answer = _json_or_none(reply) or {}
        if reply.headers.get("etag") != f'"{version}"':
            return f"ETag {reply.headers.get('etag')}, expected \"{version}\""
        if answer.get("status") != status:
            return f"status {answer.get('status')}, expected {status}"
        return None

    return check


# --- webhook receiver ----------------------------------------------------------------------------


class WebhookReceiver:
    """A loopback endpoint for the webhook subscription: checks signatures, counts deliveries."""

    def __init__(self) -> None:
        self.secret = ""
        self.deliveries: Counter = Counter()  # X-Aftercare-Delivery -> times received
        self.events: Counter = Counter()  # event type -> deliveries
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                from webhooks.signing import verify

                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                signed = verify(receiver.secret, self.headers.get("X-Aftercare-Timestamp", ""),
                                body, self.headers.get("X-Aftercare-Signature", ""))
                with receiver.lock:
                    receiver.deliveries[self.headers.get("X-Aftercare-Delivery", "")] += 1
                    receiver.events[self.headers.get("X-Aftercare-Event", "")] += 1
                    receiver.bad_signatures += not signed
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhooks",
                                       daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- setup ---------------------------------------------------------------------------------------


class SetupFailed(RuntimeError):
    """The stack did not come up: exit status 2, not a load result."""


@dataclass
class Setup:
    database_url: str  # as given (postgresql://...)
    redis_url: str
    queue: str
    port: int
    workdir: Path
    secret_key: str

    @property
    def mail_dir(self) -> Path:
        return self.workdir / "mail"


def plain_postgres_url(url: str) -> str:
    """``postgresql://`` for psycopg and the CLI, whatever driver suffix the URL carries."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise SystemExit(f"--database-url must be a PostgreSQL URL, got {url!r}")
    return "postgresql://" + rest


def ensure_database(url: str) -> None:
    """Create the database of ``url`` when the server does not have it yet."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = parts._replace(path="/postgres").geturl()
    with psycopg.connect(server, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"  created database {name}", flush=True)


def reset_schema(url: str) -> None:
    """Drop every table (the whole ``public`` schema) and migrate from scratch."""
    from flask_migrate import upgrade
    from sqlalchemy import create_engine, text

    from app import create_app
    from common.config import normalize_database_url

    engine = create_engine(normalize_database_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    app = create_app({"SQLALCHEMY_DATABASE_URI": normalize_database_url(url),
                      "SECRET_KEY": secrets.token_hex(32), "RATELIMIT_STORAGE_URI": "memory://"})
    with app.app_context():
        upgrade()
        from common.extensions import db

        db.engine.dispose()


def server_env(setup: Setup) -> dict[str, str]:
    """What gunicorn, the rq workers and the relay run with: production mode, loopback only."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("FLASK_APP", "FLASK_DEBUG", "DATABASE_URL", "REDIS_URL")}
    env.update(
        AFTERCARE_ENV="production",
        SECRET_KEY=setup.secret_key,
        DATABASE_URL=setup.database_url,
        REDIS_URL=setup.redis_url,
        RQ_DEFAULT_QUEUE=setup.queue,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{setup.port}",
        MAIL_BACKEND="file",
        MAIL_FILE_DIR=str(setup.mail_dir),
        UPLOAD_DIR=str(setup.workdir / "uploads"),
        # Every virtual user is 127.0.0.1: limits far above the load, still counted in Redis.
        RATELIMIT_PUBLIC="1000000 per minute",
        RATELIMIT_LOGIN="1000000 per minute",
        WEBHOOK_ALLOW_HTTP="true",  # the receiver is plain http on loopback
        PYTHONUNBUFFERED="1",
    )
    return env


def local_app(setup: Setup) -> Flask:
    """The real app in this process, configured like the servers: seeding and checking."""
    from app import create_app
    from common.config import normalize_database_url

    return create_app({
        "AFTERCARE_ENV": "production",
        "SECRET_KEY": setup.secret_key,
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(setup.database_url),
        "REDIS_URL": setup.redis_url,
        "RQ_DEFAULT_QUEUE": setup.queue,
        "RATELIMIT_STORAGE_URI": "memory://",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{setup.port}",
        "MAIL_FILE_DIR": str(setup.mail_dir),
        "UPLOAD_DIR": str(setup.workdir / "uploads"),
        "WEBHOOK_ALLOW_HTTP": True,
    })


def seed(app: Flask, purchase_count: int, *, users: int, tag: str, hook: WebhookReceiver,
         fraud_partners: int, fraud_months: int) -> State:
    """Catalog, purchases, partners, users, flags and a few claims, through the services."""
    from sqlalchemy import func, select

    from auth import service as auth_service
    from catalog.importing import run_import
    from common.actors import Actor
    from common.extensions import db
    from demo import data
    from fraud import models as fraud_models
    from partners import service as partner_service
    from partners.models import HistoricRepair, Partner
    from webhooks.models import EVENT_TYPES
    from webhooks.service import subscribe

    actor = Actor.system(SEED_ACTOR_NAME)
    started = time.perf_counter()
    with app.app_context():
        # First, so every event from here on is delivered: the checks count them all.
        hook.secret = subscribe(url=hook.url, events=list(EVENT_TYPES), actor=actor,
                                partner_id=None, allow_http=True).secret
        for kind, payload in (("products", data.products_csv()), ("parts", data.parts_csv()),
                              ("bom", data.bom_csv())):
            report = run_import(kind, io.BytesIO(payload), actor=actor, filename=f"load-{kind}")
            if report.rejected:
                raise RuntimeError(f"{kind} import rejected rows: {report.errors[:3]}")
        purchases = _register_purchases(app, purchase_count, tag, actor)
        partner_keys = {}
        for index in range(PARTNERS):
            code = f"LD{tag}{index + 1}"
            partner_service.create_partner(code=code, name=f"Load Repair {index + 1}",
                                           country=("SE", "ES", "DE")[index % 3], sla_days=7,
                                           actor=actor)
            partner_keys[code] = partner_service.issue_partner_key(
                partner_code=code, actor=actor, name="load").secret
        warehouse_email = f"warehouse.{tag.lower()}@load.example"
        finance_email = f"finance.{tag.lower()}@load.example"
        finance_password = secrets.token_urlsafe(18)
        profile = app.config["PASSWORD_HASH_PROFILE"]  # the servers verify with the same one
        auth_service.create_user(email=warehouse_email, role="warehouse",
                                 password=secrets.token_urlsafe(18), actor=actor,
                                 hash_profile=profile)
        auth_service.create_user(email=finance_email, role="finance", password=finance_password,
                                 actor=actor, hash_profile=profile)
        warehouse_token = auth_service.create_api_token(email=warehouse_email, actor=actor,
                                                        name="load").secret
        finance_token = auth_service.create_api_token(email=finance_email, actor=actor,
                                                      name="load").secret
        if fraud_partners and not db.session.scalar(select(func.count(HistoricRepair.id))):
            from demo.fraud import load_fraud_demo
            from fraud.service import score_all

            load_fraud_demo(7, partners=fraud_partners, months=fraud_months)
            score_all(actor=actor)
        flags = db.session.execute(
            select(fraud_models.FraudFlag.id, fraud_models.FraudFlag.partner_id)
            .order_by(fraud_models.FraudFlag.id)).all()
        codes = dict(db.session.execute(select(Partner.id, Partner.code)).all())
        flag_partners = sorted({codes[partner_id] for _, partner_id in flags})
        db.session.remove()
    seeded = Seed(warehouse_token, finance_token, finance_email, finance_password, partner_keys,
                  [flag_id for flag_id, _ in flags], flag_partners)
    state = State(purchases, seeded)
    _file_seed_claims(app, state, awaiting=4 * users, at_partner=3 * users)
    print(f"  seeded in {time.perf_counter() - started:.1f} s: {len(purchases)} purchases, "
          f"{PARTNERS} partners, {len(seeded.flag_ids)} fraud flags, "
          f"{len(state.awaiting)} RMAs awaiting their unit, {len(state.at_partner)} units at "
          "partners", flush=True)
    return state


def _register_purchases(app: Flask, count: int, tag: str, actor: Any) -> list[dict[str, str]]:
    """``count`` purchases bought 90 days ago, each one the rules approve a battery claim for."""
    from catalog.importing import run_import
    from catalog.models import Product
    from claims import rules
    from claims.service import _product_terms  # the app's own reading of product terms
    from claims.settings import claim_settings
    from common.extensions import db
    from demo import data

    today = datetime.now(UTC).date()
    bought = today - timedelta(days=90)
    skus = [row[0] for row in data.PRODUCTS]
    rows, purchases = [], []
    for index in range(count):
        purchase = {"serial": f"L{tag}{index:07d}", "sku": skus[index % len(skus)],
                    "email": f"customer{index}.{tag.lower()}@load.example",
                    "name": f"Load Customer {index}", "country": ("SE", "ES", "DE")[index % 3]}
        purchases.append(purchase)
        rows.append(",".join((purchase["serial"], purchase["sku"], bought.isoformat(),
                              purchase["email"], purchase["name"], purchase["country"])))
    header = "serial_number,sku,purchase_date,customer_email,customer_name,country"
    report = run_import("purchases", io.BytesIO("\n".join([header, *rows]).encode()),
                        actor=actor, filename="load-purchases")
    if report.rejected:
        raise RuntimeError(f"purchase import rejected rows: {report.errors[:3]}")
    settings = claim_settings(app.config)
    terms = {p.sku: _product_terms(p, settings) for p in db.session.scalars(db.select(Product))}
    for purchase in purchases:  # the workload's expectations rest on this
        decision = rules.decide(
            rules.ClaimFacts(purchase["serial"], purchase["email"], FAULT, today),
            rules.PurchaseFacts(purchase["serial"], purchase["sku"], bought, purchase["email"]),
            terms[purchase["sku"]])
        if decision.status != rules.APPROVED:
            raise RuntimeError(f"seeded purchase {purchase} would not be approved: {decision}")
    return purchases


def _file_seed_claims(app: Flask, state: State, *, awaiting: int, at_partner: int) -> None:
    """Approved claims filed in-process: some wait for their unit, some are at a partner."""
    from claims.service import ClaimInput, file_claim
    from claims.settings import claim_settings
    from common.actors import Actor
    from common.extensions import db
    from inventory.service import record_scan
    from inventory.shipments import create_shipment, route_unit, send_shipment

    actor = Actor.system(SEED_ACTOR_NAME)
    ledger = state.ledger
    partners = sorted(state.seed.partner_keys)
    routed: dict[str, list[str]] = defaultdict(list)
    with app.app_context():
        settings = claim_settings(app.config)
        for index in range(awaiting + at_partner):
            purchase = state.take_purchase()
            if purchase is None:
                raise RuntimeError("not enough purchases to seed (raise --purchases)")
            filed = file_claim(
                ClaimInput(serial_number=purchase["serial"], email=purchase["email"],
                           fault_category=FAULT, description=DESCRIPTION,
                           customer_name=purchase["name"],
                           return_address={"country": purchase["country"]}),
                actor=Actor.customer(purchase["email"]), settings=settings, source="api")
            number, rma = filed.value("claim_number"), filed.rma_number
            if not filed.created or rma is None:
                raise RuntimeError(f"seed claim for {purchase['serial']} was not approved")
            ledger.claims[number] = ClaimFact(number, purchase["serial"], "approved", rma, "seed")
            state.tracking.append((f"/track/{filed.tracking_token}", number, purchase["email"],
                                   rma))
            db.session.expunge_all()
            if index < awaiting:
                state.awaiting.append((rma, purchase["serial"]))
                continue
            scan = record_scan(code=rma, actor=actor, station="seed")
            if scan.outcome != "received":
                raise RuntimeError(f"seed scan of {rma}: {scan.outcome}")
            ledger.received.add(rma)
            ledger.scans_answered += 1
            state.received.append(rma)
            partner = partners[index % len(partners)]
            route_unit(rma_number=rma, actor=actor, disposition="repair_at_partner",
                       partner_code=partner, reason="load seed")
            ledger.routed[rma] = partner
            routed[partner].append(rma)
            db.session.expunge_all()
        for partner, numbers in routed.items():
            shipment = create_shipment(partner_code=partner, direction="to_partner",
                                       rma_numbers=numbers, actor=actor)
            send_shipment(shipment_number=shipment.shipment_number, actor=actor)
            for rma in numbers:
                ledger.shipped[rma] = shipment.shipment_number
                ledger.units[rma] = UnitAtPartner(rma, partner)
                state.at_partner.append(rma)
            db.session.expunge_all()
        db.session.remove()


# --- the stack -----------------------------------------------------------------------------------


@contextmanager
def stack(setup: Setup, *, workers: int, rq_workers: int) -> Iterator[dict[str, Any]]:
    """gunicorn, ``rq_workers`` rq workers and the relay; all stopped on the way out."""
    env = server_env(setup)
    logs = setup.workdir / "logs"
    logs.mkdir(exist_ok=True)
    python = sys.executable
    procs: dict[str, Any] = {}
    try:
        for n in range(rq_workers):
            procs[f"rq worker {n + 1}"] = start_process(
                [python, "-m", "flask", "--app", "app", "worker"], cwd=ROOT, env=env,
                log_path=logs / f"worker-{n + 1}.log")
        procs["relay"] = start_process(
            [python, "-m", "flask", "--app", "app", "outbox", "relay", "--loop"], cwd=ROOT,
            env=env, log_path=logs / "relay.log")
        procs["gunicorn"] = start_process(
            [python, "-m", "gunicorn", "-w", str(workers), "-k", "sync",
             "-b", f"127.0.0.1:{setup.port}", "--timeout", "60", "--graceful-timeout", "10",
             "--log-level", "warning", "app:create_app()"],
            cwd=ROOT, env=env, log_path=logs / "gunicorn.log")
        try:
            wait_for_http(setup.port, procs["gunicorn"], successes=2 * workers)
        except RuntimeError as exc:
            raise SetupFailed(f"{exc}:\n{tail(logs / 'gunicorn.log')}") from None
        yield procs
    finally:
        for proc in reversed(procs.values()):
            stop_process(proc)


def stop_web(procs: dict[str, Any]) -> None:
    stop_process(procs["gunicorn"])


def drain(app: Flask, setup: Setup, timeout: float) -> dict[str, Any]:
    """Wait until every outbox row completed and rq holds nothing for the queue."""
    from rq import Queue
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
    from sqlalchemy import func, select

    from common import jobs
    from common.extensions import db
    from common.jobs import OutboxJob

    started = time.monotonic()
    backlog: int | None = None
    with app.app_context():
        conn = jobs.redis_connection(app)
        queue = Queue(setup.queue, connection=conn)
        while True:
            db.session.rollback()
            pending = db.session.scalar(
                select(func.count(OutboxJob.id)).where(OutboxJob.completed_at.is_(None)))
            status = {
                "pending_outbox": pending, "queued": queue.count,
                "started": StartedJobRegistry(queue=queue).count,
                "scheduled": ScheduledJobRegistry(queue=queue).count,
                "failed": FailedJobRegistry(queue=queue).count,
            }
            waited = time.monotonic() - started
            backlog = pending if backlog is None else backlog
            busy = status["pending_outbox"] or status["queued"] or status["started"] \
                or status["scheduled"]
            if not busy or waited > timeout:
                status["drained"] = not busy and not status["failed"]
                status["seconds"] = round(waited, 1)
                status["backlog_at_stop"] = backlog
                db.session.remove()
                return status
            time.sleep(0.5)


# --- verification --------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    rows: int = 0
    mismatches: int = 0
    examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # figures worth knowing that are no fault

    def expect(self, ok: bool, example: str) -> None:
        if not ok:
            self.mismatches += 1
            if len(self.examples) < 5:
                self.examples.append(example)


def verify(app: Flask, setup: Setup, ledger: Ledger, hook: WebhookReceiver,
           baseline_claim_id: int, drained: dict[str, Any]) -> list[Check]:
    """Read back every table the run wrote and compare it with what was answered."""
    from sqlalchemy import func, select

    from audit.models import AuditEvent
    from audit.service import verify_chain
    from claims.models import Claim, TimelineEntry
    from common.extensions import db
    from common.jobs import OutboxJob
    from common.tokens import secret_hash
    from inventory.models import Scan, StockMovement, Unit
    from messaging.models import Message
    from partners.models import Partner, Repair, RepairEvent
    from partners.repair_states import CUSTOMER_STEPS
    from rma.models import Rma, RmaLabel
    from rma.numbers import parse_rma_number
    from webhooks.models import WebhookDelivery

    checks: list[Check] = []
    with app.app_context():
        s = db.session
        claims = s.execute(select(Claim.id, Claim.claim_number, Claim.serial_number, Claim.status,
                                  Claim.source, Claim.tracking_token_hash)).all()
        by_number = defaultdict(list)
        for row in claims:
            by_number[row.claim_number].append(row)
        by_hash = {row.tracking_token_hash: row for row in claims}
        rmas = s.execute(select(Rma.id, Rma.claim_id, Rma.rma_number, Rma.label_ready_at)).all()
        rmas_by_claim = defaultdict(list)
        for row in rmas:
            rmas_by_claim[row.claim_id].append(row)
        claim_of_rma = {row.rma_number: row.claim_id for row in rmas}

        def audit_counts(action: str) -> Counter:
            return Counter(dict(s.execute(
                select(AuditEvent.entity_id, func.count(AuditEvent.id))
                .where(AuditEvent.action == action).group_by(AuditEvent.entity_id)).all()))

        # 1. Every 201 is one claim row with that number, status and serial.
        check = Check("claims answered 201 (API, seed)")
        for fact in ledger.claims.values():
            rows = by_number.get(fact.claim_number, [])
            check.rows += 1
            check.expect(len(rows) == 1 and (rows[0].serial_number, rows[0].status)
                         == (fact.serial, fact.status),
                         f"{fact.claim_number}: {len(rows)} rows {rows[:1]} for {fact}")
        checks.append(check)

        # 2. Every 302 from the form is one web claim, found by its tracking token.
        check = Check("claims filed by form 302")
        form_numbers = set()
        for token, serial in ledger.form_tokens.items():
            row = by_hash.get(secret_hash(token))
            check.rows += 1
            check.expect(row is not None and row.serial_number == serial and row.source == "web"
                         and row.status == "approved", f"token for {serial}: {row}")
            if row is not None:
                form_numbers.add(row.claim_number)
        checks.append(check)

        # 3. No claim nobody was told about (beyond requests that got no clear answer).
        check = Check("no claim without an answer")
        answered = set(ledger.claims) | form_numbers
        in_flight = 0
        for row in claims:
            if row.id <= baseline_claim_id:
                continue
            check.rows += 1
            if row.claim_number in answered:
                continue
            if row.serial_number in ledger.unanswered_serials:
                in_flight += 1  # its request already counts as an error
            else:
                check.expect(False, f"{row.claim_number} ({row.serial_number}, {row.status}) "
                                    "never answered")
        if in_flight:
            check.notes.append(f"{in_flight} claims from requests without a clear answer "
                               "(counted as errors)")
        checks.append(check)

        # 4. Filing again returned the open claim and wrote nothing.
        check = Check("duplicate filings: one claim per serial")
        for original, answered_number in ledger.duplicates:
            check.rows += 1
            check.expect(original == answered_number, f"{original} answered {answered_number}")
        per_serial = Counter(row.serial_number for row in claims if row.id > baseline_claim_id)
        for serial, n in per_serial.items():
            check.rows += 1
            check.expect(n == 1, f"{serial}: {n} claims")
        checks.append(check)

        # 5. One RMA per approved claim, the number answered, all distinct and valid.
        check = Check("RMAs: one per approved claim")
        numbers = Counter(row.rma_number for row in rmas)
        for row in claims:
            issued = rmas_by_claim.get(row.id, [])
            check.rows += 1
            check.expect(len(issued) == (1 if row.status == "approved" else 0),
                         f"{row.claim_number} ({row.status}): {len(issued)} RMAs")
        for fact in ledger.claims.values():
            if fact.rma_number:
                owners = [row.id for row in by_number.get(fact.claim_number, [])]
                check.expect(owners == [claim_of_rma.get(fact.rma_number)],
                             f"answered RMA {fact.rma_number} is not {fact.claim_number}'s")
        for number, n in numbers.items():
            check.rows += 1
            check.expect(n == 1 and parse_rma_number(number).outcome == "ok",
                         f"RMA {number}: {n} rows / {parse_rma_number(number).outcome}")
        checks.append(check)

        # 6. Audit: one claim.filed per claim, one rma.issued per RMA.
        check = Check("audit claim.filed / rma.issued")
        filed, issued = audit_counts("claim.filed"), audit_counts("rma.issued")
        for row in claims:
            check.rows += 1
            check.expect(filed[row.claim_number] == 1,
                         f"{row.claim_number}: {filed[row.claim_number]} claim.filed")
        for row in rmas:
            check.rows += 1
            check.expect(issued[row.rma_number] == 1,
                         f"{row.rma_number}: {issued[row.rma_number]} rma.issued")
        checks.append(check)

        # 7. Receipts: one per received RMA (movement + unit.received), none for the others.
        check = Check("receipts: one per received RMA")
        units = s.execute(select(Unit.id, Unit.rma_id, Unit.status, Unit.received_at,
                                 Unit.partner_code)).all()
        rma_number_of = {row.id: row.rma_number for row in rmas}
        movements = Counter(s.execute(select(StockMovement.unit_id, StockMovement.reason)).all())
        received_events = audit_counts("unit.received")
        for unit in units:
            number = rma_number_of[unit.rma_id]
            receipts = (movements[(unit.id, "received")], received_events[number])
            check.rows += 1
            if number in ledger.received:
                check.expect(unit.status != "awaiting_return" and unit.received_at is not None
                             and receipts == (1, 1), f"{number}: {unit.status}, {receipts}")
            elif number not in ledger.uncertain_units:
                check.expect(unit.status == "awaiting_return" and receipts == (0, 0),
                             f"{number} received without a 'received' answer: {unit.status}")
        scans = s.scalar(select(func.count(Scan.id)))
        check.rows += 1
        check.expect(ledger.scans_answered <= scans
                     <= ledger.scans_answered + ledger.scans_uncertain,
                     f"{scans} scan rows for {ledger.scans_answered} answered scans "
                     f"(+{ledger.scans_uncertain} unclear)")
        checks.append(check)

        # 8. Routing and shipping: one route event, one shipment movement, one repair each.
        check = Check("routes and shipments")
        units_by_number = {rma_number_of[u.rma_id]: u for u in units}
        repairs = s.execute(select(Repair.id, Repair.unit_id, Repair.status, Repair.version,
                                   Partner.code).join(Partner, Partner.id == Repair.partner_id)
                            ).all()
        repairs_by_unit = defaultdict(list)
        for repair in repairs:
            repairs_by_unit[repair.unit_id].append(repair)
        routed_events = audit_counts("unit.routed")
        for number, partner in ledger.routed.items():
            unit = units_by_number[number]
            check.rows += 1
            check.expect(unit.partner_code == partner and routed_events[number] == 1,
                         f"{number}: partner {unit.partner_code}, "
                         f"{routed_events[number]} unit.routed")
        for number in ledger.shipped:
            unit = units_by_number[number]
            found = repairs_by_unit[unit.id]
            check.rows += 1
            check.expect(len(found) == 1 and found[0].code == ledger.routed[number]
                         and movements[(unit.id, "shipped_to_partner")] == 1,
                         f"{number}: {len(found)} repairs, "
                         f"{movements[(unit.id, 'shipped_to_partner')]} shipment movements")
        rma_of_unit = {u.id: rma_number_of[u.rma_id] for u in units}
        for repair in repairs:  # no repair opened for a unit nobody was told was shipped
            number = rma_of_unit[repair.unit_id]
            check.rows += 1
            check.expect(number in ledger.shipped or number in ledger.uncertain_units,
                         f"repair {repair.id} of {number}, which was never answered as shipped")
        checks.append(check)

        # 9. Partner updates: exactly the 200s, in order, each one event and one audit event.
        check = Check("repair events: one per 200 PATCH")
        events = defaultdict(list)
        for repair_id, to_status in s.execute(
                select(RepairEvent.repair_id, RepairEvent.to_status)
                .where(RepairEvent.from_status.is_not(None)).order_by(RepairEvent.id)).all():
            events[repair_id].append(to_status)
        changed = audit_counts("repair.status_changed")
        for number, unit in ledger.units.items():
            found = repairs_by_unit[units_by_number[number].id]
            if number in ledger.uncertain_units or len(found) != 1:
                continue
            repair = found[0]
            check.rows += 1 + len(unit.moves)
            check.expect(events[repair.id] == unit.moves
                         and repair.version == 1 + len(unit.moves)
                         and repair.status == (unit.moves or ["in_transit"])[-1]
                         and changed[number] == len(unit.moves),
                         f"{number}: events {events[repair.id]} version {repair.version} "
                         f"audit {changed[number]}, answered {unit.moves}")
        checks.append(check)

        # 10. Messages: one per customer step, each sent once, and one file each.
        check = Check("messages: one per step, sent once")
        messages = s.execute(select(Message.id, Message.claim_id, Message.status)).all()
        per_claim = Counter(m.claim_id for m in messages)
        steps = Counter()
        unit_claim = {u.id: claim_of_rma[rma_number_of[u.rma_id]] for u in units}
        for unit in units:
            if unit.received_at is not None:
                steps[unit_claim[unit.id]] += 1
        for repair in repairs:
            steps[unit_claim[repair.unit_id]] += sum(
                1 for status in events[repair.id] if status in CUSTOMER_STEPS)
        for row in claims:
            check.rows += 1
            check.expect(per_claim[row.id] == 1 + steps[row.id],
                         f"{row.claim_number}: {per_claim[row.id]} messages for "
                         f"{1 + steps[row.id]} steps")
        sent_events = Counter(s.scalars(
            select(AuditEvent.data["message_id"].as_integer())
            .where(AuditEvent.action == "message.sent")).all())
        files = {p.stem for p in setup.mail_dir.glob("*.eml")}
        for message in messages:
            check.rows += 1
            check.expect(message.status == "sent" and sent_events[message.id] == 1
                         and f"message-{message.id}" in files,
                         f"message {message.id}: {message.status}, {sent_events[message.id]} "
                         f"message.sent, file {f'message-{message.id}' in files}")
        check.rows += 1
        check.expect(per_claim[None] == 0 and len(files) == len(messages)
                     and not list(setup.mail_dir.glob("*.tmp")),
                     f"{per_claim[None]} messages without a claim, {len(files)} files for "
                     f"{len(messages)} messages")
        checks.append(check)

        # 11. Labels: every RMA's label rendered once.
        check = Check("labels: one per RMA")
        labels = set(s.scalars(select(RmaLabel.rma_id)).all())
        label_events = audit_counts("rma.label_ready")
        label_steps = Counter(s.scalars(
            select(TimelineEntry.claim_id).where(TimelineEntry.kind == "label_ready")).all())
        for row in rmas:
            check.rows += 1
            check.expect(row.label_ready_at is not None and row.id in labels
                         and label_events[row.rma_number] == 1
                         and label_steps[row.claim_id] == 1,
                         f"{row.rma_number}: ready {row.label_ready_at}, stored "
                         f"{row.id in labels}, {label_events[row.rma_number]} events, "
                         f"{label_steps[row.claim_id]} timeline entries")
        checks.append(check)

        # 12. Outbox: every job completed, none recorded twice.
        check = Check("outbox jobs: all done, once each")
        outbox = s.execute(select(OutboxJob.id, OutboxJob.job_name, OutboxJob.kwargs,
                                  OutboxJob.completed_at, OutboxJob.attempts)).all()
        seen = Counter((row.job_name, json.dumps(row.kwargs, sort_keys=True)) for row in outbox)
        for row in outbox:
            check.rows += 1
            check.expect(row.completed_at is not None, f"outbox {row.id} {row.job_name} pending")
        for (name, kwargs), n in seen.items():
            check.expect(n == 1, f"{name} {kwargs} recorded {n} times")
        jobs_by_name = Counter(row.job_name for row in outbox)
        check.expect(jobs_by_name["rma.prepare_label"] == len(rmas)
                     and jobs_by_name["messaging.send"] == len(messages),
                     f"{jobs_by_name['rma.prepare_label']} label jobs for {len(rmas)} RMAs, "
                     f"{jobs_by_name['messaging.send']} email jobs for {len(messages)} messages")
        check.expect(drained["failed"] == 0, f"{drained['failed']} jobs in rq's failed registry")
        retried = sum(1 for row in outbox if row.attempts > 1)
        check.notes.append(f"{len(outbox)} jobs: " + ", ".join(
            f"{name} {n}" for name, n in sorted(jobs_by_name.items()))
            + f"; {retried} needed more than one attempt")
        checks.append(check)

        # 13. Webhooks: one delivery per event, each received exactly once, correctly signed.
        check = Check("webhook deliveries: once each")
        deliveries = s.execute(select(WebhookDelivery.event_id, WebhookDelivery.event_type,
                                      WebhookDelivery.status)).all()
        statuses = Counter(row.status for row in claims)
        expected = (2 * statuses["approved"] + statuses["rejected"] + len(repairs)
                    + sum(len(v) for v in events.values()))
        check.rows += 1
        check.expect(len(deliveries) == expected,
                     f"{len(deliveries)} deliveries for {expected} events")
        for row in deliveries:
            check.rows += 1
            check.expect(row.status == "delivered" and hook.deliveries[row.event_id] == 1,
                         f"{row.event_type} {row.event_id}: {row.status}, received "
                         f"{hook.deliveries[row.event_id]} times")
        check.expect(hook.bad_signatures == 0 and sum(hook.deliveries.values())
                     == len(deliveries), f"{hook.bad_signatures} bad signatures, "
                     f"{sum(hook.deliveries.values())} received for {len(deliveries)}")
        checks.append(check)

        # 14. The audit hash chain, whole.
        check = Check("audit chain verify_chain()")
        result = verify_chain()
        check.rows = result.events_checked
        check.expect(result.ok, f"broken at seq {result.first_broken_seq}: {result.problem}")
        checks.append(check)
        db.session.remove()
    return checks


# --- report --------------------------------------------------------------------------------------


def print_report(recorder: Recorder, seconds: float, drained: dict[str, Any],
                 checks: list[Check], ledger: Ledger) -> None:
    print()
    for line in recorder.table(seconds):
        print(line)
    classified = recorder.total().classified
    if classified:
        print("expected answers: " + ", ".join(f"{label} x{n}"
                                               for label, n in sorted(classified.items())))
    for name, figures in recorder.ran().items():
        if figures.errors:
            print(f"ERRORS {name}: {dict(figures.error_kinds)}")
            for sample in figures.samples:
                print(f"    {sample}")
    print(f"\noutbox: {drained['backlog_at_stop']} jobs waiting when the load stopped; "
          + (f"drained in {drained['seconds']} s" if drained["drained"]
             else f"NOT drained after {drained['seconds']} s: {drained}"))
    print()
    width = max(len(c.name) for c in checks) + 2
    print(f"{'verification':<{width}}{'rows verified':>14}{'mismatches':>12}")
    print("-" * (width + 26))
    for c in checks:
        print(f"{c.name:<{width}}{c.rows:>14,}{c.mismatches:>12}")
        for example in c.examples:
            print(f"    MISMATCH {example}")
        for note in c.notes:
            print(f"    ({note})")
    print("-" * (width + 26))
    print(f"{'TOTAL':<{width}}{sum(c.rows for c in checks):>14,}"
          f"{sum(c.mismatches for c in checks):>12}")
    moves = sum(len(unit.moves) for unit in ledger.units.values())
    print(f"\nclaims answered {len(ledger.claims) + len(ledger.form_tokens)} (form "
          f"{len(ledger.form_tokens)}), receipts {len(ledger.received)}, units shipped "
          f"{len(ledger.shipped)}, partner moves {moves}")


def write_json(path: str, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def cleanup_redis(setup: Setup, flush: bool, outbox_ids: list[int]) -> None:
    """Flush the run's Redis database, or (shared database) remove only this run's keys."""
    from redis import Redis

    conn = Redis.from_url(setup.redis_url, socket_timeout=5, socket_connect_timeout=2)
    try:
        if flush:
            conn.flushdb()
            return
        conn.srem("rq:queues", f"rq:queue:{setup.queue}")
        keys = list(conn.scan_iter(match=f"rq:*{setup.queue}*"))
        keys += [f"rq:{kind}:outbox-{i}" for i in outbox_ids for kind in ("job", "results")]
        for start in range(0, len(keys), 500):
            conn.delete(*keys[start:start + 500])
    finally:
        conn.close()


# --- main ----------------------------------------------------------------------------------------


@dataclass
class Result:
    recorder: Recorder
    elapsed: float
    drained: dict[str, Any]
    checks: list[Check]
    errors: int
    load_average: tuple[float, float]  # 1-minute load average when the load started and ended

    @property
    def mismatches(self) -> int:
        return sum(c.mismatches for c in self.checks)

    @property
    def verdict(self) -> str:
        return "PASS" if not self.errors and not self.mismatches and self.drained["drained"] \
            else "FAIL"


def run(args: argparse.Namespace, setup: Setup, app: Flask, state: State, hook: WebhookReceiver,
        baseline_claim_id: int) -> Result:
    """Start the stack, run the virtual users, drain the outbox, check the rows."""
    recorder = Recorder(OPERATIONS)
    crashed: list[str] = []
    with stack(setup, workers=args.workers, rq_workers=args.rq_workers) as procs:
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        vus = [VirtualUser(n, setup.port, state, recorder, started + args.seconds, args.seed)
               for n in range(args.users)]
        for vu in vus:
            vu.start()
        for vu in vus:
            vu.join()
            if vu.crashed is not None:
                crashed.append(f"{vu.name}: {vu.crashed!r}")
        elapsed = time.monotonic() - started
        load_after = os.getloadavg()[0]
        stop_web(procs)
        print(f"  load done in {elapsed:.1f} s (1-minute load average {load_before:.1f} at the "
              f"start, {load_after:.1f} at the end, {os.cpu_count()} CPUs); draining the outbox",
              flush=True)
        drained = drain(app, setup, args.drain_seconds)
    checks = verify(app, setup, state.ledger, hook, baseline_claim_id, drained)
    result = Result(recorder, elapsed, drained, checks, recorder.total().errors + len(crashed),
                    (load_before, load_after))
    print_report(recorder, elapsed, drained, checks, state.ledger)
    for line in crashed:
        print(f"ERROR virtual user crashed: {line}")
    if result.verdict != "PASS":
        for log in sorted((setup.workdir / "logs").glob("*.log")):
            print(f"\n--- {log.name} (last lines) ---\n{tail(log, 20)}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("LOAD_SECONDS") or 60),
                        help="how long the virtual users run (LOAD_SECONDS)")
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOAD_USERS") or 16),
                        help="concurrent virtual users (LOAD_USERS)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--rq-workers", type=int, default=2, help="rq worker processes")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help="PostgreSQL database (created if missing)")
    parser.add_argument("--schema", choices=("reset", "keep"), default="reset",
                        help="reset: drop the schema and migrate; keep: a migrated database "
                             "with no claims yet (the checks read every row)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis database")
    parser.add_argument("--flush-redis", action=argparse.BooleanOptionalAction, default=True,
                        help="flush the Redis database before and after (off: delete only "
                             "this run's keys)")
    parser.add_argument("--queue", default=None, help="rq queue name (default: load-<random>)")
    parser.add_argument("--purchases", type=int, default=0,
                        help="registered purchases to seed (default: enough for the run)")
    parser.add_argument("--fraud-partners", type=int, default=12,
                        help="partners of the synthetic fraud history (0: none)")
    parser.add_argument("--fraud-months", type=int, default=12)
    parser.add_argument("--drain-seconds", type=float, default=600.0,
                        help="how long to wait for the workers to finish the outbox")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the virtual users")
    parser.add_argument("--json", metavar="FILE", help="append the figures as one JSON line")
    args = parser.parse_args(argv)

    url = plain_postgres_url(args.database_url)
    tag = secrets.token_hex(2).upper()
    purchases = args.purchases or int(60 * args.seconds) + 8 * args.users + 500
    print(f"load: {args.users} virtual users for {args.seconds:g} s against gunicorn "
          f"-w {args.workers} (sync) + {args.rq_workers} rq workers + relay; PostgreSQL "
          f"{urlsplit(url).path.lstrip('/')}, Redis {args.redis_url}", flush=True)
    with tempfile.TemporaryDirectory(prefix="aftercare-load-") as tmp, \
            WebhookReceiver() as hook:
        setup = Setup(url, args.redis_url, args.queue or f"load-{tag.lower()}", free_port(),
                      Path(tmp), secrets.token_hex(32))
        app: Flask | None = None
        try:
            try:
                ensure_database(url)
                if args.schema == "reset":
                    reset_schema(url)
                if args.flush_redis:
                    cleanup_redis(setup, True, [])
                app = local_app(setup)
                baseline = _max_claim_id(app)
                state = seed(app, purchases, users=args.users, tag=tag, hook=hook,
                             fraud_partners=args.fraud_partners, fraud_months=args.fraud_months)
            except Exception:  # noqa: BLE001 - whatever stops the seeding: exit status 2
                traceback.print_exc()
                print("setup failed: no load was run", file=sys.stderr)
                return 2
            try:
                result = run(args, setup, app, state, hook, baseline)
            except SetupFailed as exc:
                print(f"setup failed: {exc}", file=sys.stderr)
                return 2
        finally:
            _release(app, setup, flush=args.flush_redis)
    checks = result.checks
    print(f"\n{result.verdict}: {result.recorder.total().requests} requests, {result.errors} "
          f"errors; {sum(c.rows for c in checks):,} rows verified, {result.mismatches} "
          "mismatches")
    if args.json:
        write_json(args.json, {
            "suite": "load", "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "users": args.users, "workers": args.workers, "rq_workers": args.rq_workers,
            "seconds": round(result.elapsed, 1), "load_average": result.load_average,
            **result.recorder.as_dict(result.elapsed), "drain": result.drained,
            "verification": {c.name: {"rows": c.rows, "mismatches": c.mismatches}
                             for c in checks},
            "rows_verified": sum(c.rows for c in checks), "errors": result.errors,
            "mismatches": result.mismatches, "verdict": result.verdict,
        })
    return 0 if result.verdict == "PASS" else 1


def _release(app: Flask | None, setup: Setup, *, flush: bool) -> None:
    """Close the database pool and leave Redis as it was (flushed, or without our keys)."""
    outbox_ids: list[int] = []
    if app is not None:
        outbox_ids = _outbox_ids(app)
        with app.app_context():
            from common.extensions import db

            db.engine.dispose()
    cleanup_redis(setup, flush, outbox_ids)


def _max_claim_id(app: Flask) -> int:
    from sqlalchemy import func, select

    from claims.models import Claim
    from common.extensions import db

    with app.app_context():
        value = db.session.scalar(select(func.max(Claim.id))) or 0
        db.session.remove()
    return value


def _outbox_ids(app: Flask) -> list[int]:
    from sqlalchemy import select

    from common.extensions import db
    from common.jobs import OutboxJob

    with app.app_context():
        ids = list(db.session.scalars(select(OutboxJob.id)))
        db.session.remove()
    return ids


if __name__ == "__main__":
    raise SystemExit(main())
