"""Claim use cases: filing (validated against the purchase registry), review, tracking.

``file_claim`` owns its transaction: the claim, its decision, the RMA, photos, timeline,
messages, audit events and the idempotency record commit together or not at all.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import bindparam, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from audit.service import record_event
from catalog.models import Product, Purchase
from claims import rules
from claims.errors import ClaimNotFound, ClaimNotReviewable, IdempotencyKeyReused
from claims.models import Claim, ClaimNote, ClaimPhoto, IdempotencyRecord, TimelineEntry
from claims.photos import MAX_PHOTOS, PhotoRejected, clean_photo
from common.actors import Actor, current_request_id
from common.errors import ValidationFailed
from common.extensions import db
from common.fastsql import FastQuery, Returned, connection_of, insert_into, write_batch
from common.jobs import complete_with_transaction, enqueue_job
from common.models import utcnow
from common.tokens import secret_hash
from inventory.service import expect_unit
from messaging.service import queue_message
from rma.models import Rma
from rma.numbers import random_symbols
from rma.service import IssuedRma, issue_rma
from webhooks.service import publish_many


@dataclass(frozen=True)
class ClaimSettings:
    """Policy and deployment settings the use cases need (from app config)."""

    upload_dir: str
    public_base_url: str
    doa_days: int = 30
    review_after_claims: int = 2
    review_days: int = 2


@dataclass(frozen=True)
class ClaimInput:
    serial_number: str
    email: str
    fault_category: str
    description: str
    requested_remedy: str | None = None
    dead_on_arrival: bool = False
    language: str = "en"
    customer_name: str | None = None
    return_address: Mapping[str, Any] = field(default_factory=dict)
    photos: Sequence[bytes] = ()


@dataclass(frozen=True)
class IdempotencyRequest:
    scope: str
    key: str
    fingerprint: str


@dataclass
class FiledClaim:
    """What filing did. A claim created just now is only loaded when ``claim`` is read."""

    # The claim's id, or the RETURNING of its INSERT, there once the filing's writes ran.
    id_or_returned: int | Returned
    created: bool
    tracking_token: str | None = None
    replayed: IdempotencyRecord | None = None
    rma_number: str | None = None
    # Plain values captured before the commit, so answering needs no reload of the claim.
    snapshot: dict[str, Any] = field(default_factory=dict)
    loaded: Claim | None = field(default=None, repr=False)

    @property
    def claim_id(self) -> int:
        if isinstance(self.id_or_returned, Returned):
            return self.id_or_returned.value
        return self.id_or_returned

    @property
    def claim(self) -> Claim:
        if self.loaded is None:
            self.loaded = db.session.get(Claim, self.claim_id)
        return self.loaded

    def value(self, name: str) -> Any:
        return self.snapshot[name] if name in self.snapshot else getattr(self.claim, name)


@dataclass(frozen=True)
class _NewClaim:
    """The columns of a claim being filed that the rest of filing reads (no ORM object)."""

    claim_number: str
    serial_number: str
    sku: str | None
    email: str
    language: str
    remedy: str | None
    reasons: list[dict[str, Any]]


def new_claim_number() -> str:
    return "C" + random_symbols(9)


def tracking_url(settings: ClaimSettings, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/track/{token}"


# --- filing ------------------------------------------------------------------------------------


def file_claim(
    data: ClaimInput,
    *,
    actor: Actor,
    settings: ClaimSettings,
    source: str = "api",
    idempotency: IdempotencyRequest | None = None,
    today: date | None = None,
) -> FiledClaim:
    """Validate and record a claim; an open claim for the same serial is returned instead."""
    if idempotency is not None:
        replay = _replay(idempotency)
        if replay is not None:
            return replay
    photos = _clean_photos(data.photos)
    serial = data.serial_number.strip().upper()
    email = data.email.strip().lower()
    filed_on = today or datetime.now(UTC).date()
    for _attempt in range(3):
        written: list[str] = []
        try:
            # On PostgreSQL a filing is two statements: the purchase facts, then every write
            # and the audit seal as one statement that commits itself (``write_batch``).
            with write_batch(connection_of()):
                filed = _record_claim(data, serial, email, filed_on, photos, written,
                                      actor=actor, settings=settings, source=source,
                                      idempotency=idempotency)
                db.session.commit()
            return filed
        except IntegrityError:
            db.session.rollback()
            for path in written:
                _remove_quietly(path)
            if idempotency is not None:
                replay = _replay(idempotency)
                if replay is not None:
                    return replay
            existing = open_claim_for_serial(serial)
            if existing is not None:
                if existing.email == email:
                    return FiledClaim(existing.id, created=False, loaded=existing)
                # Someone else's open claim: answer as if the serial were unknown to them.
                continue
            # Otherwise a random number collided: try again with fresh ones.
    raise RuntimeError("could not record the claim after 3 attempts")


def _record_claim(
    data: ClaimInput,
    serial: str,
    email: str,
    filed_on: date,
    photos: list,
    written: list[str],
    *,
    actor: Actor,
    settings: ClaimSettings,
    source: str,
    idempotency: IdempotencyRequest | None,
) -> FiledClaim:
    rows = _FILING_FACTS.all(connection_of(), {"serial": serial})
    # The serial's purchase by this email (else any, for the mismatch rule), or None.
    purchase = next((row for row in rows if row.customer_email == email),
                    rows[0] if rows else None)
    decision = rules.decide(
        rules.ClaimFacts(serial, email, data.fault_category, filed_on, data.dead_on_arrival,
                         data.requested_remedy),
        _purchase_facts(purchase),
        _product_terms(purchase, settings),
        previous_claims=purchase.previous_claims if purchase else 0,
    )
    hold_serial = decision.status != rules.REJECTED
    if hold_serial and purchase.open_claim_id is not None:
        if purchase.open_claim_email == email:
            return FiledClaim(purchase.open_claim_id, created=False)
        # The same serial under another SKU and customer: rare and odd, so a person decides.
        hold_serial = False
        decision = rules.Decision(
            rules.NEEDS_REVIEW, (rules.Reason(rules.SERIAL_IN_OPEN_CLAIM), *decision.reasons),
            remedy=decision.remedy, warranty_ends_on=decision.warranty_ends_on,
        )
    token = secrets.token_urlsafe(24)  # 192 bits
    values = {
        "claim_number": new_claim_number(),
        "purchase_id": purchase.id if purchase else None,
        "serial_number": serial,
        "sku": purchase.sku if purchase else None,
        "email": email,
        "customer_name": data.customer_name or (purchase.customer_name if purchase else None),
        "fault_category": data.fault_category,
        "description": data.description,
        "dead_on_arrival": data.dead_on_arrival,
        "requested_remedy": data.requested_remedy,
        "remedy": decision.remedy,
        "return_address": dict(data.return_address),
        "language": data.language,
        "status": decision.status,
        "reasons": [reason.as_dict() for reason in decision.reasons],
        "open_serial": serial if hold_serial else None,
        "source": source,
        "tracking_token_hash": secret_hash(token),
        "warranty_ends_on": decision.warranty_ends_on,
        "decided_at": utcnow(),
        "decided_by": "rules",
    }
    approved = decision.status == rules.APPROVED
    # Only the answer reads the id back, after the commit: the rows filing adds name the claim
    # by number, so that they go to the database together (``fastsql.write_batch``).
    claim_id = _INSERT_CLAIM.returned(connection_of(), values)
    claim = _NewClaim(values["claim_number"], serial, values["sku"], email, data.language,
                      values["remedy"], values["reasons"])
    for photo in photos:
        _store_photo(claim, photo, settings, written)
    record_event(
        entity_type="claim", entity_id=claim.claim_number, action="claim.filed", actor=actor,
        data={"serial_number": serial, "sku": claim.sku, "fault_category": data.fault_category,
              "status": decision.status, "reasons": list(decision.codes), "remedy": claim.remedy,
              "photos": len(photos), "source": source},
    )
    link = tracking_url(settings, token)
    rma_number = None
    if approved:
        rma_number = _approve(claim, actor=actor, filing=True).rma_number
        _announce(claim, "claim_approved", actor, {"tracking_url": link, "rma_number": rma_number},
                  events=_approval_events(claim, rma_number=rma_number))
    else:
        step = "needs_review" if decision.status == rules.NEEDS_REVIEW else "rejected"
        add_timeline_entries(claim, [("filed", None), (step, None)])
        _announce(claim, "claim_in_review" if step == "needs_review" else "claim_rejected", actor,
                  {"tracking_url": link},
                  events=[_rejection_event(claim)] if step == "rejected" else ())
    if idempotency is not None:
        _INSERT_IDEMPOTENCY.execute(connection_of(), {
            "scope": idempotency.scope, "key": idempotency.key,
            "fingerprint": idempotency.fingerprint, "claim_number": claim.claim_number,
        })
    snapshot = {name: values[name]
                for name in ("claim_number", "status", "reasons", "remedy", "language")}
    return FiledClaim(claim_id, created=True, tracking_token=token, rma_number=rma_number,
                      snapshot=snapshot)


def _approve(claim: Claim | _NewClaim, *, actor: Actor, filing: bool = False) -> IssuedRma:
    """Issue the RMA and expect the unit back (caller's transaction); the caller announces it.

    ``filing``: the claim is being filed right now, so its "filed" step leads the timeline.
    """
    rma = issue_rma(claim_number=claim.claim_number, remedy=claim.remedy or "repair",
                    actor=actor)
    expect_unit(rma_number=rma.rma_number, serial_number=claim.serial_number, sku=claim.sku,
                actor=actor)
    steps: list[tuple[str, Mapping[str, Any] | None]] = [("filed", None)] if filing else []
    steps += [("approved", None), ("rma_issued", {"rma_number": rma.rma_number})]
    add_timeline_entries(claim, steps)
    enqueue_job("rma.prepare_label", rma_number=rma.rma_number)
    return rma


def _approval_events(claim: Claim | _NewClaim, *, rma_number: str) -> list[tuple[str, dict]]:
    event = {"claim_number": claim.claim_number, "rma_number": rma_number, "sku": claim.sku,
             "serial_number": claim.serial_number, "remedy": claim.remedy or "repair"}
    return [("claim.approved", event), ("rma.issued", event)]


def _rejection_event(claim: Claim | _NewClaim) -> tuple[str, dict]:
    return ("claim.rejected", {"claim_number": claim.claim_number, "sku": claim.sku,
                               "serial_number": claim.serial_number,
                               "reasons": [r["code"] for r in claim.reasons]})


def _announce(claim: Claim | _NewClaim, kind: str, actor: Actor, params: Mapping[str, Any], *,
              events: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> None:
    """Tell the customer and the webhook subscribers about a decision, after it commits.

    One outbox row in the decision's transaction (so nothing is lost); its job (``announce``)
    records the email and the webhook deliveries in a transaction of its own. Filing is the
    public hot path: left out of it in the claims benchmark, the message, its send job, its
    audit event and the subscription lookup were worth 9 % (SQLite) to 19 % (PostgreSQL) of
    its throughput.
    """
    enqueue_job("claims.announce", claim_number=claim.claim_number, kind=kind,
                params=dict(params),
                events=[[name, dict(data)] for name, data in events], actor=actor.as_dict(),
                request_id=current_request_id.get())


def announce(*, outbox_id: int, claim_number: str, kind: str, params: Mapping[str, Any],
             events: Sequence[Sequence[Any]], actor: Actor) -> bool:
    """Queue the email and publish the events ``_announce`` recorded; False if already done.

    Marking the outbox row completed in the same transaction makes it happen exactly once,
    however often rq delivers the job.
    """
    if not complete_with_transaction(outbox_id):
        db.session.rollback()
        return False
    claim = db.session.scalar(select(Claim).where(Claim.claim_number == claim_number))
    if claim is None:
        raise ClaimNotFound(f"no claim {claim_number}")
    _notify(claim, kind, actor, **dict(params))
    if events:
        publish_many([(name, data) for name, data in events])
    db.session.commit()
    return True


def _notify(claim: Claim, kind: str, actor: Actor, **params: Any) -> None:
    queue_message(
        recipient=claim.email, kind=kind, language=claim.language, actor=actor,
        claim_id=claim.id,
        params={"claim_number": claim.claim_number, "tracking_url": None, **params},
    )


def _clean_photos(photos: Sequence[bytes]) -> list:
    if len(photos) > MAX_PHOTOS:
        raise ValidationFailed("too many photos",
                               errors={"photos": [f"at most {MAX_PHOTOS} photos"]})
    cleaned, problems = [], []
    for index, data in enumerate(photos, start=1):
        try:
            cleaned.append(clean_photo(data))
        except PhotoRejected as exc:
            problems.append(f"photo {index}: {exc}")
    if problems:
        raise ValidationFailed("a photo was refused", errors={"photos": problems})
    return cleaned


def _store_photo(claim: _NewClaim, photo: Any, settings: ClaimSettings,
                 written: list[str]) -> None:
    """Write the photo outside the web root and its row; ``written`` lists the file at once,
    so a filing that fails later removes it."""
    stored_name = f"{uuid.uuid4().hex}.{photo.extension}"
    directory = os.path.join(settings.upload_dir, "claims", claim.claim_number)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, stored_name)
    written.append(path)
    with open(path, "wb") as handle:
        handle.write(photo.data)
    _INSERT_PHOTO.execute(connection_of(), {
        "claim_number": claim.claim_number, "stored_name": stored_name,
        "content_type": photo.content_type, "size_bytes": len(photo.data),
        "width": photo.width, "height": photo.height, "sha256": photo.sha256})


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# Filing reads plain columns and writes rows through statements run on the cursor
# (``common.fastsql``): nothing here needs mapped objects.
_OpenClaim = aliased(Claim, name="open_claims")
_FILING_FACTS = FastQuery(
    # One row per purchase of the serial: its columns, its product's terms (``_product_terms``
    # reads them), how many of the serial's claims were approved or closed, and the serial's
    # open claim if any (``open_serial`` is unique, so the join adds no rows).
    select(Purchase.id, Purchase.serial_number, Purchase.sku, Purchase.purchase_date,
           Purchase.customer_email, Purchase.customer_name, Product.warranty_months,
           Product.extended_warranty_months, Product.exclusions, Product.released_on,
           Product.doa_days, Product.review_after_claims,
           select(func.count(Claim.id))
           .where(Claim.serial_number == bindparam("serial"),
                  Claim.status.in_([literal("approved"), literal("closed")]))
           .scalar_subquery().label("previous_claims"),
           _OpenClaim.id.label("open_claim_id"), _OpenClaim.email.label("open_claim_email"))
    .join_from(Purchase, Product, Product.sku == Purchase.sku)
    .outerjoin(_OpenClaim, _OpenClaim.open_serial == Purchase.serial_number)
    .where(Purchase.serial_number == bindparam("serial")),
    parameters=("serial",),
)
_INSERT_CLAIM = insert_into(Claim.__table__, returning=("id",))
# Rows filing adds beside the claim name it by number (see ``_record_claim``).
_BY_CLAIM_NUMBER = {"claim_id": Claim.__table__.c.claim_number}
_INSERT_IDEMPOTENCY = insert_into(IdempotencyRecord.__table__, references=_BY_CLAIM_NUMBER)
_INSERT_PHOTO = insert_into(ClaimPhoto.__table__, references=_BY_CLAIM_NUMBER)


def _purchase_facts(purchase: Any) -> rules.PurchaseFacts | None:
    if purchase is None:
        return None
    return rules.PurchaseFacts(purchase.serial_number, purchase.sku, purchase.purchase_date,
                               purchase.customer_email)


def _product_terms(product: Any, settings: ClaimSettings) -> rules.ProductTerms | None:
    if product is None:
        return None
    return rules.ProductTerms(
        sku=product.sku,
        warranty_months=product.warranty_months,
        extended_warranty_months=product.extended_warranty_months,
        exclusions=frozenset(product.exclusions or ()),
        released_on=product.released_on,
        doa_days=product.doa_days if product.doa_days is not None else settings.doa_days,
        review_after_claims=product.review_after_claims
        if product.review_after_claims is not None else settings.review_after_claims,
    )


def _replay(idempotency: IdempotencyRequest) -> FiledClaim | None:
    record = db.session.scalar(select(IdempotencyRecord).where(
        IdempotencyRecord.scope == idempotency.scope, IdempotencyRecord.key == idempotency.key))
    if record is None:
        return None
    if record.fingerprint != idempotency.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request body",
            errors={"Idempotency-Key": ["already used for a different request"]},
        )
    return FiledClaim(record.claim_id, created=False, replayed=record)


def remember_response(record_scope: str, key: str, status: int, body: Mapping[str, Any]) -> None:
    """Keep the first answer to an idempotent request, so a retry gets exactly the same."""
    db.session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.scope == record_scope, IdempotencyRecord.key == key,
               IdempotencyRecord.response_body.is_(None))
        .values(response_status=status, response_body=dict(body))
    )
    db.session.commit()


def fingerprint(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


# --- timeline ----------------------------------------------------------------------------------


_INSERT_TIMELINE = insert_into(TimelineEntry.__table__, references=_BY_CLAIM_NUMBER)


def add_timeline_entry(claim: Claim | _NewClaim, kind: str,
                       params: Mapping[str, Any] | None = None) -> None:
    """Add a customer-visible step to the claim's timeline (in the caller's transaction)."""
    add_timeline_entries(claim, [(kind, params)])


def add_timeline_entries(
    claim: Claim | _NewClaim, steps: Sequence[tuple[str, Mapping[str, Any] | None]]
) -> None:
    """Add steps in order to a claim's timeline (in the caller's transaction)."""
    # Append-only rows nothing reads back in the same transaction: one statement on the cursor
    # instead of a unit-of-work flush.
    occurred_at = utcnow()
    _INSERT_TIMELINE.execute_many(connection_of(), [
        {"claim_number": claim.claim_number, "kind": kind, "params": dict(params or {}),
         "occurred_at": occurred_at}
        for kind, params in steps
    ])


def record_customer_step(*, claim_id: int, kind: str, actor: Actor,
                         params: Mapping[str, Any] | None = None, notify: bool = True) -> None:
    """For other domains: a step the customer should see, with an email about it."""
    claim = db.session.get(Claim, claim_id)
    if claim is None:
        raise ClaimNotFound(f"no claim {claim_id}")
    add_timeline_entry(claim, kind, params)
    if notify:
        _notify(claim, "status_update", actor, step=kind, **dict(params or {}))


def timeline(claim: Claim) -> list[TimelineEntry]:
    return list(db.session.scalars(
        select(TimelineEntry).where(TimelineEntry.claim_id == claim.id)
        .order_by(TimelineEntry.occurred_at, TimelineEntry.id)
    ))


# --- lookups -----------------------------------------------------------------------------------


def open_claim_for_serial(serial: str) -> Claim | None:
    return db.session.scalar(select(Claim).where(Claim.open_serial == serial))


def get_claim(claim_number: str) -> Claim:
    claim = db.session.scalar(
        select(Claim).where(Claim.claim_number == claim_number.strip().upper()))
    if claim is None:
        raise ClaimNotFound(f"no claim {claim_number}")
    return claim


def claim_by_tracking_token(token: str) -> Claim | None:
    if not token or len(token) > 100:
        return None
    return db.session.scalar(select(Claim).where(Claim.tracking_token_hash == secret_hash(token)))


def find_claim_for_customer(number: str, email: str) -> Claim | None:
    """A claim by claim or RMA number, only when the email is the claim's own."""
    from rma.numbers import parse_rma_number

    number = "".join(number.split()).upper().replace("-", "")
    email = email.strip().lower()
    claim = db.session.scalar(select(Claim).where(Claim.claim_number == number))
    if claim is None:
        parsed = parse_rma_number(number)
        if parsed.outcome == "ok":
            claim = db.session.scalar(
                select(Claim).join(Rma, Rma.claim_id == Claim.id)
                .where(Rma.rma_number == parsed.number))
    if claim is None or not secrets.compare_digest(claim.email, email):
        return None
    return claim


def search_claims(query: str | None = None, status: str | None = None):  # noqa: ANN201
    """Staff search by serial, email, claim or RMA number; newest first."""
    stmt = select(Claim).order_by(Claim.filed_at.desc(), Claim.id.desc())
    if status:
        stmt = stmt.where(Claim.status == status)
    if query:
        text = query.strip()
        compact = "".join(text.split()).upper().replace("-", "")
        stmt = stmt.outerjoin(Rma, Rma.claim_id == Claim.id).where(or_(
            Claim.serial_number == text.upper(),
            Claim.email == text.lower(),
            Claim.claim_number == compact,
            Rma.rma_number == compact,
        ))
    return stmt


# --- review ------------------------------------------------------------------------------------


def review_claim(*, claim_number: str, approve: bool, note: str, actor: Actor,
                 settings: ClaimSettings, remedy: str | None = None) -> Claim:
    """Support's decision on a claim waiting for review (first decision wins)."""
    claim = get_claim(claim_number)
    if not note.strip():
        raise ValidationFailed("a note is required", errors={"note": ["explain the decision"]})
    new_status = "approved" if approve else "rejected"
    changed = db.session.execute(
        update(Claim)
        .where(Claim.id == claim.id, Claim.status == "needs_review")
        .values(status=new_status, decided_at=utcnow(), decided_by=str(actor),
                remedy=(remedy or claim.remedy or "repair") if approve else claim.remedy,
                open_serial=claim.serial_number if approve else None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        db.session.rollback()
        raise ClaimNotReviewable(f"claim {claim.claim_number} is not waiting for review")
    db.session.refresh(claim)
    code = "approved_by_support" if approve else "rejected_by_support"
    claim.reasons = [*claim.reasons, {"code": code, "params": {}}]
    db.session.add(ClaimNote(claim_id=claim.id, author=str(actor), body=note.strip()))
    record_event(entity_type="claim", entity_id=claim.claim_number,
                 action="claim.approved" if approve else "claim.rejected", actor=actor,
                 reason=note.strip(),
                 data={"before": {"status": "needs_review"},
                       "after": {"status": new_status, "remedy": claim.remedy}})
    if approve:
        rma = _approve(claim, actor=actor)
        _announce(claim, "claim_approved", actor, {"rma_number": rma.rma_number},
                  events=_approval_events(claim, rma_number=rma.rma_number))
    else:
        add_timeline_entry(claim, "rejected")
        _announce(claim, "claim_rejected", actor, {}, events=[_rejection_event(claim)])
    db.session.commit()
    return claim


def add_note(*, claim_number: str, body: str, actor: Actor) -> ClaimNote:
    """An internal note by support staff."""
    claim = get_claim(claim_number)
    if not body.strip():
        raise ValidationFailed("empty note", errors={"body": ["must not be empty"]})
    note = ClaimNote(claim_id=claim.id, author=str(actor), body=body.strip()[:5000])
    db.session.add(note)
    record_event(entity_type="claim", entity_id=claim.claim_number, action="claim.note_added",
                 actor=actor, data={"body": note.body})
    db.session.commit()
    return note


def notes_for(claim: Claim) -> list[ClaimNote]:
    return list(db.session.scalars(
        select(ClaimNote).where(ClaimNote.claim_id == claim.id).order_by(ClaimNote.id)))
