"""Role checks on every API endpoint, partner isolation, token and API-key lifecycles."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from auth.models import ApiToken
from common.extensions import db
from partners.models import PartnerApiKey
from tests.factories import bearer, load_catalog, make_partner, partner_key, staff_token

STAFF = frozenset({"admin", "support", "warehouse", "finance"})

# (method, path, roles allowed). Every API route must appear here: see the coverage test below.
ENDPOINTS = [
    ("GET", "/api/v1/me", STAFF | {"partner"}),
    ("GET", "/api/v1/me/tokens", STAFF),
    ("POST", "/api/v1/me/tokens", STAFF),
    ("DELETE", "/api/v1/me/tokens/999", STAFF),
    ("GET", "/api/v1/users", {"admin"}),
    ("POST", "/api/v1/users", {"admin"}),
    ("GET", "/api/v1/partners", STAFF),
    ("POST", "/api/v1/partners", {"admin"}),
    ("GET", "/api/v1/partners/OTHER", STAFF),
    ("GET", "/api/v1/partners/OTHER/keys", {"admin"}),
    ("POST", "/api/v1/partners/OTHER/keys", {"admin"}),
    ("DELETE", "/api/v1/partners/OTHER/keys/999", {"admin"}),
    ("GET", "/api/v1/partner/profile", {"partner"}),
    ("GET", "/api/v1/partner/units", {"partner"}),
    ("GET", "/api/v1/partner/units/R23456789A", {"partner"}),
    ("PATCH", "/api/v1/partner/units/R23456789A", {"partner"}),
    ("POST", "/api/v1/partner/units/R23456789A/report", {"partner"}),
    ("POST", "/api/v1/partner/units/R23456789A/pause", {"partner"}),
    ("POST", "/api/v1/partner/units/R23456789A/resume", {"partner"}),
    ("GET", "/api/v1/partner/scorecard", {"partner"}),
    ("GET", "/api/v1/partners/OTHER/scorecard", STAFF),
    ("GET", "/api/v1/finance/repair-reports", {"admin", "finance"}),
    ("POST", "/api/v1/finance/repair-reports/999/decision", {"admin", "finance"}),
    ("GET", "/api/v1/finance/payables", {"admin", "finance"}),
    ("GET", "/api/v1/fraud/flags", {"admin", "finance"}),
    ("GET", "/api/v1/fraud/flags/999", {"admin", "finance"}),
    ("POST", "/api/v1/fraud/flags/999/decision", {"admin", "finance"}),
    ("POST", "/api/v1/fraud/flags/999/hold", {"admin", "finance"}),
    ("POST", "/api/v1/fraud/scoring-runs", {"admin", "finance"}),
    ("POST", "/api/v1/warehouse/core-returns", {"admin", "warehouse"}),
    ("POST", "/api/v1/webhooks", {"admin", "partner"}),
    ("GET", "/api/v1/webhooks", {"admin", "partner"}),
    ("DELETE", "/api/v1/webhooks/999", {"admin", "partner"}),
    ("GET", "/api/v1/webhooks/999/deliveries", {"admin", "partner"}),
    ("GET", "/api/v1/products", STAFF),
    ("GET", "/api/v1/products/PH-1", STAFF),
    ("GET", "/api/v1/parts", STAFF),
    ("GET", "/api/v1/purchases", {"admin", "support"}),
    ("POST", "/api/v1/imports/parts", {"admin"}),
    ("GET", "/api/v1/audit/partner/OTHER", {"admin", "support", "finance"}),
    ("GET", "/api/v1/audit/verification", {"admin"}),
    ("POST", "/api/v1/claims", STAFF | {"partner", "anonymous"}),
    ("GET", "/api/v1/claims", STAFF),
    ("GET", "/api/v1/claims/C23456789", STAFF),
    ("POST", "/api/v1/claims/C23456789/review", {"admin", "support"}),
    ("POST", "/api/v1/claims/C23456789/notes", {"admin", "support"}),
    ("GET", "/api/v1/rmas/R23456789A", STAFF),
    ("GET", "/api/v1/rmas/R23456789A/label.pdf", {"admin", "support", "warehouse"}),
    ("POST", "/api/v1/rmas/label-batches", {"admin", "support", "warehouse"}),
    ("POST", "/api/v1/warehouse/scans", {"admin", "warehouse"}),
    ("GET", "/api/v1/warehouse/units", STAFF),
    ("POST", "/api/v1/warehouse/units/R23456789A/move", {"admin", "warehouse"}),
    ("GET", "/api/v1/warehouse/aging", STAFF),
    ("GET", "/api/v1/warehouse/stock", STAFF),
    ("POST", "/api/v1/warehouse/stock/movements", {"admin", "warehouse"}),
    ("POST", "/api/v1/warehouse/stock/adjustments", {"admin", "warehouse"}),
    ("GET", "/api/v1/warehouse/units/R23456789A/route", {"admin", "warehouse"}),
    ("POST", "/api/v1/warehouse/units/R23456789A/route", {"admin", "warehouse"}),
    ("POST", "/api/v1/warehouse/shipments", {"admin", "warehouse"}),
    ("GET", "/api/v1/warehouse/shipments/S2345678", STAFF),
    ("POST", "/api/v1/warehouse/shipments/S2345678/items", {"admin", "warehouse"}),
    ("POST", "/api/v1/warehouse/shipments/S2345678/send", {"admin", "warehouse"}),
    ("POST", "/api/v1/warehouse/shipments/S2345678/scans", {"admin", "warehouse"}),
    ("POST", "/api/v1/warehouse/shipments/S2345678/close", {"admin", "warehouse"}),
    ("GET", "/api/v1/warehouse/shipments/S2345678/manifest.pdf", STAFF),
    ("GET", "/api/v1/warehouse/partners/OTHER/parts", {"admin", "warehouse", "finance"}),
    ("GET", "/api/v1/rmas/label-batches/nope", {"admin", "support", "warehouse"}),
    ("GET", "/api/v1/rmas/label-batches/nope/labels.pdf", {"admin", "support", "warehouse"}),
]


@pytest.fixture
def credentials(app):
    load_catalog()
    make_partner("OTHER")
    creds = {role: staff_token(role) for role in sorted(STAFF)}
    creds["partner"] = partner_key("MINE")[1]
    return creds


def _call(client, method: str, path: str, headers: dict | None = None):
    kwargs: dict = {"headers": headers or {}}
    if method == "POST" and "/imports/" in path:
        kwargs["data"] = b"part_number,description,unit_cost\n"
        kwargs["content_type"] = "text/csv"
    elif method in ("POST", "PATCH"):
        kwargs["json"] = {}
    return client.open(path, method=method, **kwargs)


@pytest.mark.parametrize(("method", "path", "allowed"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_each_role_is_allowed_or_forbidden(client, credentials, method, path, allowed):
    anonymous = _call(client, method, path)
    if "anonymous" in allowed:
        assert anonymous.status_code not in (401, 403)
    else:
        assert anonymous.status_code == 401
        assert anonymous.headers["Content-Type"] == "application/problem+json"
    for role, secret in credentials.items():
        response = _call(client, method, path, bearer(secret))
        if role in allowed:
            assert response.status_code not in (401, 403), (role, response.json)
        else:
            assert response.status_code == 403, (role, response.status_code)
            assert response.json["status"] == 403


def test_every_api_route_has_an_access_rule(app):
    documented = {(m, p) for m, p, _ in ENDPOINTS}
    public = {"/api/openapi.json", "/api/docs"}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule in public:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert any(
                m == method and _matches(rule.rule, p) for m, p in documented
            ), f"{method} {rule.rule} has no access test"


def _matches(pattern: str, path: str) -> bool:
    import re

    regex = re.sub(r"<(?:[^:>]+:)?[^>]+>", "[^/]+", pattern)
    return re.fullmatch(regex, path) is not None


def test_invalid_and_malformed_bearers_get_401(client, credentials):
    for header in ("Bearer nonsense", "Bearer acp_" + "x" * 43, "Bearer act_" + "y" * 43,
                   "Basic dXNlcjpwYXNz", "Bearer ", credentials["admin"]):
        response = client.get("/api/v1/me", headers={"Authorization": header})
        assert response.status_code == 401, header


def test_api_ignores_session_cookies_and_keys_in_urls(client, credentials):
    key = credentials["partner"]
    assert client.get(f"/api/v1/partner/profile?api_key={key}").status_code == 401
    assert client.get(f"/api/v1/partner/profile?access_token={key}").status_code == 401


def test_partner_key_sees_only_its_own_partner(client, credentials):
    other_partner, other_key = partner_key("THIRD")
    mine = client.get("/api/v1/partner/profile", headers=bearer(credentials["partner"]))
    theirs = client.get("/api/v1/partner/profile", headers=bearer(other_key))
    assert mine.json["code"] == "MINE" and theirs.json["code"] == "THIRD"
    assert client.get("/api/v1/partners/THIRD", headers=bearer(credentials["partner"])
                      ).status_code == 403
    assert client.get("/api/v1/audit/partner/THIRD", headers=bearer(credentials["partner"])
                      ).status_code == 403


def test_partner_api_key_lifecycle(client, credentials):
    admin = bearer(credentials["admin"])
    issued = client.post("/api/v1/partners/OTHER/keys", json={"name": "erp"}, headers=admin)
    assert issued.status_code == 201
    secret = issued.json["key"]
    assert len(secret) >= 40 and secret.startswith("acp_")  # 256 random bits, URL-safe
    stored = db.session.scalar(select(PartnerApiKey).where(PartnerApiKey.id == issued.json["id"]))
    assert secret not in (stored.key_hash, stored.prefix)
    second = client.post("/api/v1/partners/OTHER/keys", json={}, headers=admin).json["key"]
    assert client.get("/api/v1/partner/profile", headers=bearer(secret)).json["code"] == "OTHER"
    listed = client.get("/api/v1/partners/OTHER/keys", headers=admin).json
    assert len(listed) == 2 and all("key" not in item for item in listed)
    revoked = client.delete(f"/api/v1/partners/OTHER/keys/{issued.json['id']}", headers=admin)
    assert revoked.status_code == 204
    assert client.get("/api/v1/partner/profile", headers=bearer(secret)).status_code == 401
    assert client.get("/api/v1/partner/profile", headers=bearer(second)).status_code == 200
    history = client.get("/api/v1/audit/partner/OTHER", headers=admin).json
    assert [e["action"] for e in history][-3:] == [
        "partner.key_issued", "partner.key_issued", "partner.key_revoked"]


def test_revoking_another_partners_key_is_not_found(client, credentials):
    admin = bearer(credentials["admin"])
    mine_key = db.session.scalar(select(PartnerApiKey.id))
    response = client.delete(f"/api/v1/partners/OTHER/keys/{mine_key}", headers=admin)
    assert response.status_code == 404


def test_personal_token_lifecycle(client, credentials):
    support = bearer(credentials["support"])
    created = client.post("/api/v1/me/tokens", json={"name": "script"}, headers=support)
    assert created.status_code == 201 and created.json["token"].startswith("act_")
    new = bearer(created.json["token"])
    assert client.get("/api/v1/me", headers=new).json["role"] == "support"
    assert all("token" not in t for t in client.get("/api/v1/me/tokens", headers=new).json)
    assert client.delete(f"/api/v1/me/tokens/{created.json['id']}", headers=support
                         ).status_code == 204
    assert client.get("/api/v1/me", headers=new).status_code == 401


def test_a_user_cannot_revoke_someone_elses_token(client, credentials):
    from auth.models import User

    admin_token_id = db.session.scalar(
        select(ApiToken.id).join(User).where(User.role == "admin")
    )
    response = client.delete(f"/api/v1/me/tokens/{admin_token_id}",
                             headers=bearer(credentials["finance"]))
    assert response.status_code == 404
    assert client.get("/api/v1/me", headers=bearer(credentials["admin"])).status_code == 200


def test_admin_creates_users_and_duplicates_conflict(client, credentials):
    admin = bearer(credentials["admin"])
    body = {"email": "New@Example.test", "role": "warehouse", "password": "long enough secret"}
    created = client.post("/api/v1/users", json=body, headers=admin)
    assert created.status_code == 201 and created.json["email"] == "new@example.test"
    assert "password" not in created.json
    assert client.post("/api/v1/users", json=body, headers=admin).status_code == 409
    bad = client.post("/api/v1/users", json={**body, "role": "root"}, headers=admin)
    assert bad.status_code == 422 and "role" in bad.json["errors"]
