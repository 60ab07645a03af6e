"""API fuzzing: schemathesis generates requests from ``/api/openapi.json`` and runs them in-process.

Every operation is called with the generated cases under each role the access matrix
(``test_access.ENDPOINTS``) allows on it, and always under partner A's key. Every schemathesis
check runs on every response: server errors, status codes, content types, response headers and
bodies against the document, negative data rejected, positive data accepted, authentication
enforced, ``Allow`` headers, missing required headers. Two checks of ours are added:
``partner_isolation`` (partner A's key never reads nor changes partner B's objects) and
``schema_valid_requests_pass_validation`` (see there).

``FUZZ_MAX_EXAMPLES`` sets the generated cases per operation (25 by default, as CI runs it;
``make fuzz`` runs 200); ``FUZZ_SEED`` the seed. Hypothesis is derandomized, so a run repeats.
The figures (cases, requests, failures, seconds) are printed when the run ends.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from sqlalchemy import select

from app import create_app
from auth import service as auth_service
from catalog.import_rules import KINDS
from common.extensions import db
from inventory import service as inventory
from partners import service as partner_service
from partners.models import Partner, PartnerApiKey, Repair, RepairEvent, RepairReport
from rma.numbers import ALPHABET, PREFIX, check_character
from tests.conftest import IsolatedClient, _empty_tables, base_config
from tests.factories import (
    TEST_ACTOR,
    bearer,
    claim_body,
    load_catalog,
    make_user,
    partner_key,
    staff_token,
)
from tests.test_access import ENDPOINTS, STAFF
from tests.test_partner_repairs import ship_units_to
from webhooks.models import WebhookSubscription

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("FUZZ_SEED", "20250101"))
PARTNER_A, PARTNER_B = "FUZZ-A", "FUZZ-B"
PARTNER = "partner"  # partner A's key; partner B's is never used while fuzzing
ANONYMOUS = "anonymous"
WEBARGS_PROBLEM = "https://aftercare.dev/problems/unprocessable-entity"


@dataclass
class World:
    """The seeded data, the credentials each role calls with, and the figures of the run."""

    app: Any
    secrets: dict[str, str]
    staff_emails: dict[str, str]
    b_strings: frozenset[str]
    b_subscription_ids: frozenset[int]
    known: dict[str, list]
    cases: int = 0
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    a_on_b: int = 0  # partner A's requests whose path named one of partner B's objects
    b_before: Any = None
    started: float = field(default_factory=time.perf_counter)


_WORLD: World | None = None


# --- seeding -----------------------------------------------------------------------------------


def _advance(client, headers: dict, number: str, *statuses: str) -> None:
    version = client.get(f"/api/v1/partner/units/{number}", headers=headers).json["version"]
    for status in statuses:
        moved = client.patch(f"/api/v1/partner/units/{number}", json={"status": status},
                             headers={**headers, "If-Match": f'"{version}"'})
        assert moved.status_code == 200, moved.json
        version += 1


def _seed_partner(client, code: str, serials: list[str]) -> dict[str, Any]:
    """A partner with a key, units in several repair states, a report and a webhook."""
    _, secret = partner_key(code)
    headers = bearer(secret)
    numbers = ship_units_to(client, code, serials)
    _advance(client, headers, numbers[0], "received_at_partner", "diagnosing", "repairing",
             "repaired")
    inventory.move_parts(part_number="MB-1", quantity=3, from_location="supplier",
                         to_location=f"partner:{code}", reason="issued_to_partner",
                         actor=TEST_ACTOR)
    report = client.post(f"/api/v1/partner/units/{numbers[0]}/report", headers=headers, json={
        "diagnosis_code": "LCD", "labor_minutes": 30, "parts": [
            {"part_number": "MB-1", "quantity": 1}]})
    assert report.status_code == 201, report.json
    _advance(client, headers, numbers[1], "received_at_partner")
    paused = client.post(f"/api/v1/partner/units/{numbers[1]}/pause", headers=headers,
                         json={"reason": "waiting for the customer"})
    assert paused.status_code == 200, paused.json
    hook = client.post("/api/v1/webhooks", headers=headers, json={
        "url": f"https://hooks.{code.lower()}.invalid/aftercare",
        "events": ["repair.status_changed"]})
    assert hook.status_code == 201, hook.json
    shipments = db.session.scalars(select(Repair.shipment_number).join(Partner).where(
        Partner.code == code)).all()
    prefixes = db.session.scalars(select(PartnerApiKey.prefix).join(Partner).where(
        Partner.code == code)).all()
    return {"secret": secret, "numbers": numbers, "serials": serials,
            "report_id": report.json["id"], "subscription_id": hook.json["id"],
            "hook_url": hook.json["url"], "hook_secret": hook.json["secret"],
            "shipments": set(shipments), "prefixes": set(prefixes)}


def _seed(app) -> World:
    client = app.test_client()
    load_catalog()
    staff = {role: make_user(role) for role in sorted(STAFF)}
    secrets = {role: auth_service.create_api_token(email=user.email, actor=TEST_ACTOR).secret
               for role, user in staff.items()}
    a = _seed_partner(client, PARTNER_A, ["FZA-1", "FZA-2", "FZA-3"])
    b = _seed_partner(client, PARTNER_B, ["FZB-1", "FZB-2", "FZB-3"])
    secrets[PARTNER] = a["secret"]
    claims = client.get("/api/v1/claims", headers=bearer(secrets["support"])).json
    batch = client.post("/api/v1/rmas/label-batches", headers=bearer(secrets["warehouse"]),
                        json={"rma_numbers": a["numbers"][:1]}).json
    db.session.commit()
    ids = sorted({1, 2, 3, a["subscription_id"], b["subscription_id"], a["report_id"],
                  b["report_id"]})
    return World(
        app=app, secrets=secrets, staff_emails={r: u.email for r, u in staff.items()},
        b_strings=frozenset({PARTNER_B, b["hook_url"], b["hook_secret"], *b["numbers"],
                             *b["serials"], *b["shipments"], *b["prefixes"]}),
        b_subscription_ids=frozenset({b["subscription_id"]}),
        # Real identifiers mixed into generated path parameters, so that cases reach existing
        # objects (partner A's and partner B's alike), not only 404s.
        known={
            "rma_number": [*a["numbers"], *b["numbers"]],
            "code": [PARTNER_A, PARTNER_B], "partner_code": [PARTNER_A, PARTNER_B],
            "claim_number": [c["claim_number"] for c in claims],
            "shipment_number": sorted(a["shipments"] | b["shipments"]),
            "sku": ["PH-1", "TB-1"], "kind": sorted(KINDS), "batch_id": [batch["id"]],
            "entity_type": ["partner", "rma", "claim", "webhook"],
            "entity_id": [PARTNER_A, PARTNER_B, a["numbers"][0], b["numbers"][0]],
            **{name: ids for name in ("subscription_id", "report_id", "key_id", "token_id",
                                      "flag_id")},
        },
    )


def _b_state(app) -> tuple:
    """Everything partner A's key must never change about partner B."""
    with app.app_context():
        partner = db.session.scalar(select(Partner).where(Partner.code == PARTNER_B))
        pid = partner.id
        state = (
            (partner.name, partner.active, partner.sla_days, partner.stage_limits,
             partner.contact_email, partner.country),
            db.session.execute(select(PartnerApiKey.id, PartnerApiKey.revoked_at).where(
                PartnerApiKey.partner_id == pid).order_by(PartnerApiKey.id)).all(),
            db.session.execute(select(Repair.id, Repair.status, Repair.version, Repair.paused_at,
                                      Repair.pause_reason).where(Repair.partner_id == pid)
                               .order_by(Repair.id)).all(),
            db.session.scalars(select(RepairEvent.id).join(Repair).where(
                Repair.partner_id == pid).order_by(RepairEvent.id)).all(),
            db.session.execute(select(RepairReport.id, RepairReport.status).where(
                RepairReport.partner_id == pid).order_by(RepairReport.id)).all(),
            db.session.execute(select(WebhookSubscription.id, WebhookSubscription.active,
                                      WebhookSubscription.url).where(
                WebhookSubscription.partner_id == pid).order_by(WebhookSubscription.id)).all(),
        )
        db.session.remove()
        return state


def _refresh_revoked_credentials(world: World) -> None:
    """Fuzzed DELETEs may revoke the very credentials the run calls with: issue new ones."""
    with world.app.app_context():
        for role, secret in list(world.secrets.items()):
            if auth_service.authenticate_bearer(secret) is not None:
                continue
            if role == PARTNER:
                world.secrets[role] = partner_service.issue_partner_key(
                    partner_code=PARTNER_A, actor=TEST_ACTOR).secret
            else:
                world.secrets[role] = auth_service.create_api_token(
                    email=world.staff_emails[role], actor=TEST_ACTOR).secret
        db.session.remove()


# --- our checks --------------------------------------------------------------------------------


@schemathesis.check
def partner_isolation(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                      case: schemathesis.Case) -> bool | None:
    """Partner A's key never reads nor changes partner B's objects."""
    world = _WORLD
    if world is None or response.request.headers.get("Authorization") != (
            f"Bearer {world.secrets[PARTNER]}"):
        return None
    path = case.formatted_path
    hook = re.search(r"/webhooks/(\d+)", path)
    names_b = any(s in path for s in world.b_strings) or bool(
        hook and int(hook.group(1)) in world.b_subscription_ids)
    world.a_on_b += names_b
    sent = response.request.url + str(response.request.body or "")
    # What the request itself named may be echoed (a problem's `instance`, a 404's detail).
    leaked = sorted(s for s in world.b_strings if s in (response.text or "") and s not in sent)
    if leaked:
        raise AssertionError(f"partner A's key was shown partner B's {leaked}")
    if response.status_code < 300 and names_b:
        raise AssertionError(f"partner A's key was answered {response.status_code} on partner "
                             f"B's {path}")
    if world.b_before is not None and _b_state(world.app) != world.b_before:
        raise AssertionError("partner A's key changed partner B's objects")
    return None


@schemathesis.check
def schema_valid_requests_pass_validation(ctx: schemathesis.CheckContext,
                                          response: schemathesis.Response,
                                          case: schemathesis.Case) -> bool | None:
    """A schema-valid request is never refused by the request schema itself.

    It may break a business rule no schema states (a part not in the catalog, a partner code
    for a staff role): that is a 422 with the domain's problem type, which the configuration
    below lets ``positive_data_acceptance`` accept. A 422 from request parsing (webargs) means
    the document and the code disagree, and fails here.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code == 422 and _problem_type(response) == WEBARGS_PROBLEM:
        raise AssertionError("a request valid by the document failed request validation: "
                             f"{response.text}")
    return None


def _problem_type(response: schemathesis.Response) -> str | None:
    try:
        body = json.loads(response.text or "")
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None


# --- the schema, with the generation it needs --------------------------------------------------


class AppUnderTest:
    """The WSGI app schemathesis calls: the spec-only app at import, the seeded app in the run."""

    def __init__(self) -> None:
        self.spec_app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://",
                                    "SECRET_KEY": "fuzz-spec-only-" * 3, "REDIS_URL": None})
        self.app = self.spec_app

    def __call__(self, environ: dict, start_response: Any) -> Any:
        return self.app(environ, start_response)


def _rma_numbers() -> st.SearchStrategy[str]:
    """Valid RMA numbers (check character included), canonical or with the printed hyphen."""
    payloads = st.text(ALPHABET, min_size=8, max_size=8).map(lambda body: PREFIX + body)
    numbers = payloads.map(lambda payload: payload + check_character(payload))
    return st.one_of(numbers, numbers.map(lambda n: f"{n[:5]}-{n[5:]}"))


APP_UNDER_TEST = AppUnderTest()
schemathesis.openapi.format("rma-number", _rma_numbers())
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", APP_UNDER_TEST, config=(
    schemathesis.Config.from_dict({
        "seed": SEED,
        # Credentials are ours to send (each role in turn); ignored_auth probes without them.
        "generation": {"deterministic": True, "database": "none",
                       "with-security-parameters": False},
        "checks": {
            # 422 is also a business rule's refusal of well-formed input: accepted here, and
            # schema_valid_requests_pass_validation fails the 422s that come from the schema.
            "positive_data_acceptance": {"expected-statuses": [
                "2xx", "3xx", "401", "403", "404", "409", "422", "429"]},
            # A missing If-Match is 428 Precondition Required (RFC 6585), as documented.
            "missing_required_header": {"expected-statuses": [
                "400", "401", "403", "406", "415", "422", "428"]},
        },
    })))


@schema.hook
def flatmap_path_parameters(ctx: schemathesis.HookContext,
                            path_parameters: dict | None) -> st.SearchStrategy:
    """Half the time, path parameters name objects that exist (A's, B's and staff ones)."""
    world = _WORLD
    names = [name for name in path_parameters or {} if world and name in world.known]
    if not names:
        return st.just(path_parameters)
    known = st.fixed_dictionaries({name: st.sampled_from(world.known[name]) for name in names})
    return st.one_of(st.just(path_parameters),
                     known.map(lambda values: {**path_parameters, **values}))


@pytest.fixture(scope="module")
def fuzz_world(database_url: str, tmp_path_factory: pytest.TempPathFactory,
               pytestconfig: pytest.Config) -> Iterator[World]:
    """One app and one set of data for the whole run; the tables are emptied afterwards."""
    global _WORLD

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled while fuzzing")

    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app({**base_config(database_url, tmp), "MAIL_FILE_DIR": str(tmp / "mail"),
                      "UPLOAD_DIR": str(tmp / "uploads")})
    app.test_client_class = IsolatedClient
    with pytest.MonkeyPatch.context() as monkeypatch:
        # Fuzzed webhook subscriptions point anywhere: deliveries must never leave the machine.
        monkeypatch.setattr("webhooks.service.urllib.request.urlopen", no_network)
        with app.app_context():
            world = _seed(app)
            db.session.remove()
        _WORLD, APP_UNDER_TEST.app = world, app
        try:
            yield world
        finally:
            _WORLD, APP_UNDER_TEST.app = None, APP_UNDER_TEST.spec_app
            _report(world, pytestconfig)
            _empty_tables(app)
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def _roles_for(method: str, path: str) -> list[str]:
    """Every role the access matrix allows on the operation, and partner A's key always."""
    regex = re.sub(r"\{[^}]+\}", "[^/]+", path)
    allowed = [roles for m, p, roles in ENDPOINTS if m == method and re.fullmatch(regex, p)]
    assert allowed, f"{method} {path} is not in the access matrix"
    return sorted(set(allowed[0]) | {PARTNER})


@hypothesis.settings(
    max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
    # Generation cost and size are not what this test is about.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@schema.parametrize()
def test_api_keeps_every_promise_of_its_openapi_document(case, fuzz_world):
    world = fuzz_world
    world.cases += 1
    method, path = case.operation.method.upper(), case.operation.path
    for role in _roles_for(method, path):
        headers = bearer(world.secrets[role]) if role != ANONYMOUS else None
        world.b_before = _b_state(world.app) if role == PARTNER else None
        world.requests += 1
        try:
            response = case.call_and_validate(headers=headers)
        except (Exception, BaseExceptionGroup) as exc:
            world.failures[f"{method} {path} as {role}: {exc}".splitlines()[0]] += 1
            raise
        finally:
            world.b_before = None
        world.statuses[response.status_code] += 1
        if method == "DELETE" and response.status_code < 300:
            _refresh_revoked_credentials(world)


def test_partner_a_did_try_partner_b_objects(fuzz_world):
    """The isolation check was put to the test, not only passed: A named B's objects."""
    if fuzz_world.cases:  # after the run above (not when this test is selected alone)
        assert fuzz_world.a_on_b > 0


# --- what the fuzzing found, pinned down ----------------------------------------------------------


def test_if_match_with_other_digits_than_ascii_is_a_422_not_a_500(client):
    _, key = partner_key("DIGITS")
    response = client.patch("/api/v1/partner/units/R22222222A", json={"status": "diagnosing"},
                            headers={**bearer(key), "If-Match": '"\u00b2"'})
    assert response.status_code == 422 and "If-Match" in response.json["errors"]


def test_a_webhook_url_urlparse_cannot_read_is_a_422_not_a_500(client):
    response = client.post("/api/v1/webhooks", headers=bearer(staff_token("admin")),
                           json={"url": "https://[oops", "events": ["rma.issued"]})
    assert response.status_code == 422 and "url" in response.json["errors"]


def test_booleans_in_json_bodies_are_json_booleans(client):
    response = client.post("/api/v1/claims", json=claim_body("B1", dead_on_arrival=0))
    assert response.status_code == 422 and "dead_on_arrival" in response.json["errors"]


def test_an_id_beyond_the_integer_column_is_not_a_500(client):
    # PostgreSQL refuses 2**31 for an INTEGER column ("integer out of range"); SQLite finds none.
    response = client.post("/api/v1/fraud/flags/2147483648/hold", json={"note": "x"},
                           headers=bearer(staff_token("finance")))
    assert response.status_code in (404, 422), response.json


def test_the_batch_collection_is_not_read_as_an_rma_number(client):
    response = client.get("/api/v1/rmas/label-batches", headers=bearer(staff_token("admin")))
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_the_document_lists_every_import_kind():
    spec = APP_UNDER_TEST.spec_app.test_client().get("/api/openapi.json").json
    kind = next(p for p in spec["paths"]["/api/v1/imports/{kind}"]["post"]["parameters"]
                if p["name"] == "kind")
    assert kind["schema"]["enum"] == sorted(KINDS)


def _report(world: World, config: pytest.Config) -> None:
    """Print the figures of the run, whatever its outcome: cases, requests, failures, time."""
    figures = {
        "max_examples": MAX_EXAMPLES, "seed": SEED, "cases": world.cases,
        "requests": world.requests, "failures": sum(world.failures.values()),
        "partner_a_on_partner_b": world.a_on_b,
        "seconds": round(time.perf_counter() - world.started, 1),
        "statuses": dict(sorted(world.statuses.items())),
    }
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("\nfuzz: " + json.dumps(figures))
        for failure, count in world.failures.most_common():
            reporter.write_line(f"fuzz failure x{count}: {failure}")


def test_text_with_a_nul_character_is_never_a_500(client):
    # PostgreSQL cannot store NUL in text (psycopg refuses it); SQLite stores it.
    response = client.post("/api/v1/claims", headers=bearer(staff_token("admin")),
                           json=claim_body("NUL1", description="broken\u0000screen"))
    assert response.status_code in (201, 422), response.json
