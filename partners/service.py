"""Partner use cases: registration and API key lifecycle."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from audit.service import record_event
from common.actors import Actor
from common.errors import ValidationFailed
from common.extensions import db
from common.models import utcnow
from common.tokens import display_prefix, new_secret, secret_hash
from partners import repair_states
from partners.errors import PartnerExists, PartnerNotFound
from partners.models import Partner, PartnerApiKey

PARTNER_KEY_KIND = "acp"
_CODE_RE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")


def normalize_code(code: str) -> str:
    return code.strip().upper()


def create_partner(
    *,
    code: str,
    name: str,
    actor: Actor,
    country: str | None = None,
    contact_email: str | None = None,
    contact_phone: str | None = None,
    sla_days: int = 10,
    stage_limits: dict[str, float] | None = None,
) -> Partner:
    """Register a service partner (``stage_limits``: days allowed per repair stage)."""
    code = normalize_code(code)
    errors: dict[str, list[str]] = {}
    if not _CODE_RE.match(code):
        errors["code"] = ["2-32 letters, digits, '-' or '_'"]
    if not name.strip():
        errors["name"] = ["must not be empty"]
    if country is not None and not re.fullmatch(r"[A-Za-z]{2}", country):
        errors["country"] = ["ISO 3166-1 alpha-2 code expected, e.g. SE"]
    if sla_days <= 0:
        errors["sla_days"] = ["must be positive"]
    for stage, days in (stage_limits or {}).items():
        if stage not in repair_states.STATUSES or stage in (repair_states.IN_TRANSIT,
                                                            repair_states.SHIPPED_BACK):
            errors.setdefault("stage_limits", []).append(f"{stage} is not a repair stage")
        elif not 0 < days <= 365:
            errors.setdefault("stage_limits", []).append(f"{stage}: days must be 0-365")
    if errors:
        raise ValidationFailed("invalid partner", errors=errors)
    partner = Partner(
        code=code,
        name=name.strip(),
        country=country.upper() if country else None,
        contact_email=contact_email,
        contact_phone=contact_phone,
        sla_days=sla_days,
        stage_limits=dict(stage_limits) if stage_limits else None,
    )
    db.session.add(partner)
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        raise PartnerExists(f"partner {code} already exists") from exc
    record_event(
        entity_type="partner",
        entity_id=partner.code,
        action="partner.created",
        actor=actor,
        data={"name": partner.name, "country": partner.country, "sla_days": partner.sla_days,
              "stage_limits": partner.stage_limits},
    )
    db.session.commit()
    return partner


def find_partner(code: str) -> Partner | None:
    return db.session.scalar(select(Partner).where(Partner.code == normalize_code(code)))


def get_partner(code: str) -> Partner:
    partner = find_partner(code)
    if partner is None:
        raise PartnerNotFound(f"no partner {code}")
    return partner


@dataclass(frozen=True)
class IssuedKey:
    key: PartnerApiKey
    secret: str  # shown once, never stored


def issue_partner_key(*, partner_code: str, actor: Actor, name: str = "") -> IssuedKey:
    """Create a new API key for a partner; the secret is returned once and only hashed."""
    partner = get_partner(partner_code)
    secret = new_secret(PARTNER_KEY_KIND)
    key = PartnerApiKey(
        partner_id=partner.id,
        key_hash=secret_hash(secret),
        prefix=display_prefix(secret),
        name=name,
    )
    db.session.add(key)
    db.session.flush()
    record_event(
        entity_type="partner",
        entity_id=partner.code,
        action="partner.key_issued",
        actor=actor,
        data={"key_id": key.id, "prefix": key.prefix, "name": name},
    )
    db.session.commit()
    return IssuedKey(key=key, secret=secret)


def revoke_partner_key(*, partner_code: str, key_id: int, actor: Actor, reason: str = "") -> None:
    """Revoke one key of a partner; later requests with it get 401."""
    partner = get_partner(partner_code)
    key = db.session.scalar(
        select(PartnerApiKey).where(
            PartnerApiKey.id == key_id, PartnerApiKey.partner_id == partner.id
        )
    )
    if key is None:
        raise PartnerNotFound(f"partner {partner.code} has no key {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        record_event(
            entity_type="partner",
            entity_id=partner.code,
            action="partner.key_revoked",
            actor=actor,
            reason=reason or None,
            data={"key_id": key.id, "prefix": key.prefix},
        )
        db.session.commit()


def authenticate_partner_key(secret: str) -> PartnerApiKey | None:
    """The live key matching ``secret`` (and touch its last use), or None."""
    key = db.session.scalar(
        select(PartnerApiKey).where(PartnerApiKey.key_hash == secret_hash(secret))
    )
    if key is None or key.revoked_at is not None or not key.partner.active:
        return None
    now = utcnow()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        # Throttled so a busy integration doesn't write on every request.
        db.session.execute(
            update(PartnerApiKey).where(PartnerApiKey.id == key.id).values(last_used_at=now)
        )
        db.session.commit()
    return key


def list_partner_keys(partner_code: str) -> list[PartnerApiKey]:
    partner = get_partner(partner_code)
    return list(
        db.session.scalars(
            select(PartnerApiKey)
            .where(PartnerApiKey.partner_id == partner.id)
            .order_by(PartnerApiKey.id)
        )
    )


def active_partners() -> list[Partner]:
    """Partners that can take work, by code."""
    return list(db.session.scalars(select(Partner).where(Partner.active.is_(True))
                                   .order_by(Partner.code)))
