"""Staff and partner-portal users, their login sessions and personal API tokens."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from auth.roles import ALL_ROLES, PARTNER
from common.actors import Actor
from common.extensions import db
from common.models import UTCDateTime, utcnow

_ROLE_LIST = ", ".join(f"'{role}'" for role in ALL_ROLES)


class User(UserMixin, db.Model):
    """A person who logs in: staff with one role, or a partner's user bound to its partner."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    active: Mapped[bool] = mapped_column(nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    partner = relationship("Partner", lazy="joined")

    __table_args__ = (
        CheckConstraint(f"role IN ({_ROLE_LIST})", name="role_known"),
        CheckConstraint(
            "(role = 'partner' AND partner_id IS NOT NULL) "
            "OR (role <> 'partner' AND partner_id IS NULL)",
            name="partner_users_have_partner",
        ),
    )

    # Set by the session loader: Flask-Login stores this token, not the user id, in the cookie,
    # so a session can be revoked server-side.
    session_token = None  # str | None; not a column

    def get_id(self) -> str | None:
        return self.session_token

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active

    @property
    def actor(self) -> Actor:
        if self.role == PARTNER and self.partner is not None:
            return Actor("partner", self.partner.code, f"{self.partner.code}/{self.email}")
        return Actor("user", str(self.id), self.email)

    @property
    def partner_code(self) -> str | None:
        return self.partner.code if self.partner is not None else None


class LoginSession(db.Model):
    """A server-side record of one browser login; revoking it logs the cookie out for good."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user = relationship(User, lazy="joined")


class ApiToken(db.Model):
    """A staff user's personal API token for scripts; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user = relationship(User, lazy="joined")
