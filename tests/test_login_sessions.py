"""HTML login: CSRF, session rotation, real logout, timeouts, rate limits, headers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from auth.models import LoginSession
from auth.passwords import hash_password, verify_password
from common.extensions import db
from common.models import utcnow
from tests.conftest import TEST_REDIS_URL, csrf_token_from, requires_redis
from tests.factories import PASSWORD, make_partner, make_user


def login(client, email: str, password: str = PASSWORD, next_url: str | None = None):
    page = client.get("/login")
    token = csrf_token_from(page.get_data(as_text=True))
    url = "/login" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": token})


def session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def test_login_with_valid_credentials_redirects_and_shows_the_user(client):
    user = make_user("support", email="sam@example.test")
    response = login(client, user.email)
    assert response.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "sam@example.test" in page and "support" in page


def test_login_with_wrong_password_is_refused_without_saying_which_part_was_wrong(client):
    make_user("support", email="sam@example.test")
    wrong_password = login(client, "sam@example.test", "not the password")
    unknown_user = login(client, "nobody@example.test", "not the password")
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert b"Wrong email or password" in wrong_password.data
    assert b"Wrong email or password" in unknown_user.data


def test_login_without_csrf_token_is_rejected(client):
    make_user("support", email="sam@example.test")
    response = client.post("/login", data={"email": "sam@example.test", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get_cookie("session") is None or b"sam@example.test" not in client.get("/").data


def test_inactive_user_cannot_log_in(client):
    user = make_user("support")
    user.active = False
    db.session.commit()
    assert login(client, user.email).status_code == 401


def test_login_rotates_the_session_token(client):
    user = make_user("admin")
    login(client, user.email)
    first = db.session.scalars(select(LoginSession.token_hash)).all()
    login(client, user.email)
    rows = db.session.scalars(select(LoginSession).order_by(LoginSession.id)).all()
    assert len(rows) == 2 and rows[0].token_hash == first[0]
    assert rows[0].revoked_at is not None, "the old session must be revoked at re-login"
    assert rows[1].revoked_at is None


def test_replayed_cookie_after_logout_is_refused(app, client):
    user = make_user("finance")
    login(client, user.email)
    stolen = session_cookie(client)
    page = client.get("/").get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    attacker = app.test_client()
    attacker.set_cookie("session", stolen, domain="localhost")
    assert user.email.encode() not in attacker.get("/").data
    assert db.session.scalar(select(LoginSession.revoked_at)) is not None


def test_logout_requires_post_with_csrf(client):
    user = make_user("finance")
    login(client, user.email)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert user.email.encode() in client.get("/").data


@pytest.mark.parametrize(
    ("field", "age"),
    [("last_seen_at", timedelta(minutes=31)), ("created_at", timedelta(hours=13))],
    ids=["idle", "absolute"],
)
def test_session_expires_after_timeout(client, field, age):
    user = make_user("warehouse")
    login(client, user.email)
    assert user.email.encode() in client.get("/").data
    past = utcnow() - age
    db.session.execute(update(LoginSession).values({field: past, "created_at": past}))
    db.session.commit()
    assert user.email.encode() not in client.get("/").data
    assert db.session.scalar(select(LoginSession.revoked_at)) is not None


def test_open_redirects_are_not_followed(client):
    user = make_user("admin")
    response = login(client, user.email, next_url="//evil.example/")
    assert response.headers["Location"] in ("/", "http://localhost/")
    response = login(client, user.email, next_url="/api/docs")
    assert response.headers["Location"].endswith("/api/docs")


def test_session_cookie_flags_and_security_headers(make_app):
    app = make_app(SESSION_COOKIE_SECURE=True)
    client = app.test_client()
    with app.app_context():
        user = make_user("admin")
        response = login(client, user.email)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    page = client.get("/login")
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")


def test_login_is_rate_limited(make_app):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_LOGIN="3 per minute")
    client = app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    statuses = [
        client.post("/login", data={"email": "x@example.test", "password": "nope-nope-nope",
                                    "csrf_token": token}).status_code
        for _ in range(5)
    ]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429]


def test_passwords_are_hashed_with_argon2id_at_rfc9106_cost():
    digest = hash_password("a long enough password")
    assert digest.startswith("$argon2id$")
    assert "m=65536,t=3,p=4" in digest
    assert verify_password(digest, "a long enough password")
    assert not verify_password(digest, "another password")


def test_partner_user_must_belong_to_a_partner(app):
    from common.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as excinfo:
        make_user("partner")
    assert "partner_code" in excinfo.value.errors
    partner = make_partner("SHOP1")
    user = make_user("partner", partner_code=partner.code)
    assert user.partner_id == partner.id and user.actor.type == "partner"


def test_short_passwords_are_refused(app):
    from common.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as excinfo:
        make_user("admin", password="short")
    assert "password" in excinfo.value.errors


@requires_redis
def test_login_limit_is_shared_by_every_web_host_through_redis(make_app):
    import uuid

    settings = {"REDIS_URL": TEST_REDIS_URL, "RATELIMIT_STORAGE_URI": TEST_REDIS_URL,
                "RATELIMIT_ENABLED": True, "RATELIMIT_LOGIN": "4 per minute"}
    hosts = [make_app(**settings), make_app(**settings)]
    address = f"203.0.113.{uuid.uuid4().int % 250}"  # a fresh client address per run
    statuses = []
    for attempt in range(6):
        client = hosts[attempt % 2].test_client()
        client.environ_base["REMOTE_ADDR"] = address
        token = csrf_token_from(client.get("/login").get_data(as_text=True))
        statuses.append(client.post("/login", data={
            "email": "x@example.test", "password": "nope-nope-nope", "csrf_token": token,
        }).status_code)
    assert statuses[:4] == [401] * 4 and statuses[4:] == [429, 429]


def test_requests_without_a_session_cookie_get_an_empty_session_and_no_cookie(client):
    api = client.post("/api/v1/claims", json={})
    assert api.status_code == 422 and "Set-Cookie" not in api.headers
    assert api.headers["Cache-Control"] == "no-store"
    assert api.headers["X-Frame-Options"] == "DENY"
    assert api.headers.getlist("X-Content-Type-Options") == ["nosniff"]


def test_a_forged_session_cookie_is_ignored(client):
    client.set_cookie("session", "not-a-signed-value")
    page = client.get("/login")
    assert page.status_code == 200
    assert "Set-Cookie" in page.headers  # a fresh session (the login form's CSRF token)
