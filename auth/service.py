"""User, login-session and API-token use cases (no Flask here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from flask_login import UserMixin
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from audit.service import record_event
from auth.errors import UserExists, UserNotFound
from auth.models import ApiToken, LoginSession, User
from auth.passwords import hash_password, needs_rehash, password_problems, verify_password
from auth.roles import ALL_ROLES, PARTNER
from common.actors import Actor
from common.errors import ValidationFailed
from common.extensions import db
from common.models import utcnow
from common.tokens import display_prefix, new_secret, secret_hash
from partners.models import PartnerApiKey
from partners.service import PARTNER_KEY_KIND, authenticate_partner_key, get_partner

STAFF_TOKEN_KIND = "act"
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A valid hash of a random password: verifying against it when the email is unknown makes a
# failed login take as long as a wrong password, so timing doesn't reveal who has an account.
_DUMMY_HASHES: dict[str, str] = {}


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_user(
    *,
    email: str,
    role: str,
    password: str,
    actor: Actor,
    partner_code: str | None = None,
    hash_profile: str = "default",
) -> User:
    """Create a staff user or, with ``partner_code``, a partner-portal user."""
    email = normalize_email(email)
    errors: dict[str, list[str]] = {}
    if not _EMAIL_RE.match(email) or len(email) > 254:
        errors["email"] = ["not a valid email address"]
    if role not in ALL_ROLES:
        errors["role"] = [f"must be one of: {', '.join(ALL_ROLES)}"]
    if (role == PARTNER) != (partner_code is not None):
        errors["partner_code"] = ["required for role partner, and only for it"]
    if problems := password_problems(password):
        errors["password"] = problems
    if errors:
        raise ValidationFailed("invalid user", errors=errors)
    partner_id = get_partner(partner_code).id if partner_code else None
    user = User(
        email=email,
        role=role,
        partner_id=partner_id,
        password_hash=hash_password(password, hash_profile),
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        raise UserExists(f"a user with email {email} already exists") from exc
    record_event(
        entity_type="user",
        entity_id=user.id,
        action="user.created",
        actor=actor,
        data={"email": email, "role": role, "partner_code": partner_code},
    )
    db.session.commit()
    return user


def find_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def get_user_by_email(email: str) -> User:
    user = find_user(email)
    if user is None:
        raise UserNotFound(f"no user {email}")
    return user


def check_credentials(email: str, password: str, hash_profile: str = "default") -> User | None:
    """The active user with these credentials, or None (same cost either way)."""
    user = db.session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        dummy = _DUMMY_HASHES.setdefault(hash_profile, hash_password("x" * 16, hash_profile))
        verify_password(dummy, password, hash_profile)
        return None
    if not verify_password(user.password_hash, password, hash_profile) or not user.active:
        return None
    if needs_rehash(user.password_hash, hash_profile):
        user.password_hash = hash_password(password, hash_profile)
    return user


def start_login_session(*, user: User, ip_address: str | None, user_agent: str | None) -> str:
    """Open a server-side session for ``user``; returns the token to keep in the cookie."""
    token = new_secret("acs")
    now = utcnow()
    db.session.add(
        LoginSession(
            token_hash=secret_hash(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            ip_address=(ip_address or "")[:64] or None,
            user_agent=(user_agent or "")[:255] or None,
        )
    )
    user.last_login_at = now
    record_event(
        entity_type="user",
        entity_id=user.id,
        action="user.logged_in",
        actor=user.actor,
        data={"ip": ip_address},
    )
    db.session.commit()
    user.session_token = token
    return token


def load_login_session(
    token: str, *, idle_timeout: timedelta, absolute_timeout: timedelta
) -> User | None:
    """The user of a live session token, refreshing its idle clock; None when expired/revoked."""
    login = db.session.scalar(
        select(LoginSession).where(LoginSession.token_hash == secret_hash(token))
    )
    if login is None or login.revoked_at is not None:
        return None
    now = utcnow()
    if now - login.last_seen_at > idle_timeout or now - login.created_at > absolute_timeout:
        login.revoked_at = now
        db.session.commit()
        return None
    if not login.user.active:
        return None
    if (now - login.last_seen_at).total_seconds() > 30:
        # Throttled: a page full of requests doesn't write a row each.
        db.session.execute(
            update(LoginSession).where(LoginSession.id == login.id).values(last_seen_at=now)
        )
        db.session.commit()
    user = login.user
    user.session_token = token
    return user


def end_login_session(token: str) -> None:
    """Revoke a session so that its cookie is refused even if replayed."""
    login = db.session.scalar(
        select(LoginSession).where(LoginSession.token_hash == secret_hash(token))
    )
    if login is None or login.revoked_at is not None:
        return
    login.revoked_at = utcnow()
    record_event(
        entity_type="user",
        entity_id=login.user_id,
        action="user.logged_out",
        actor=login.user.actor,
    )
    db.session.commit()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str


def create_api_token(*, email: str, actor: Actor, name: str = "") -> IssuedToken:
    """Issue a personal API token to a staff user; the secret is returned once."""
    user = get_user_by_email(email)
    if user.role == PARTNER:
        raise ValidationFailed(
            "partner users use partner API keys", errors={"email": ["user is a partner user"]}
        )
    secret = new_secret(STAFF_TOKEN_KIND)
    token = ApiToken(
        token_hash=secret_hash(secret), prefix=display_prefix(secret), name=name, user_id=user.id
    )
    db.session.add(token)
    db.session.flush()
    record_event(
        entity_type="user",
        entity_id=user.id,
        action="user.token_created",
        actor=actor,
        data={"token_id": token.id, "prefix": token.prefix, "name": name},
    )
    db.session.commit()
    return IssuedToken(token=token, secret=secret)


def revoke_api_token(*, token_id: int, user_id: int, actor: Actor) -> None:
    """Revoke one of a user's tokens (scoped to that user)."""
    token = db.session.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id)
    )
    if token is None:
        raise UserNotFound(f"no token {token_id} for this user")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record_event(
            entity_type="user",
            entity_id=user_id,
            action="user.token_revoked",
            actor=actor,
            data={"token_id": token.id, "prefix": token.prefix},
        )
        db.session.commit()


class PartnerKeyPrincipal(UserMixin):
    """The identity behind a partner API key: role ``partner`` bound to one partner."""

    role = PARTNER

    def __init__(self, key: PartnerApiKey) -> None:
        self.key_id = key.id
        self.partner_id = key.partner_id
        self.partner_code = key.partner.code
        self.email = None

    def get_id(self) -> str:
        return f"partner-key:{self.key_id}"

    @property
    def actor(self) -> Actor:
        return Actor("partner", self.partner_code, f"{self.partner_code} (API key {self.key_id})")


def authenticate_bearer(secret: str) -> User | PartnerKeyPrincipal | None:
    """Resolve ``Authorization: Bearer`` to a staff user (token) or a partner (key)."""
    kind = secret.split("_", 1)[0]
    if kind == PARTNER_KEY_KIND:
        key = authenticate_partner_key(secret)
        return PartnerKeyPrincipal(key) if key else None
    if kind != STAFF_TOKEN_KIND:
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == secret_hash(secret)))
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        db.session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
        db.session.commit()
    return token.user
