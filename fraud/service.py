"""Fraud use cases: score and keep flags current, finance's decisions, payment holds."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from flask import Flask, current_app
from sqlalchemy import Select, func, select, text, update

from audit.service import record_event
from common.actors import Actor
from common.errors import Conflict, NotFound, ValidationFailed
from common.extensions import db
from common.models import utcnow
from fraud import models as m
from fraud import verdicts as v
from fraud.cube import Cube
from fraud.facts import CatalogFacts, derive, load_cube
from fraud.rules import find_rule_hits
from fraud.scoring import WINDOW_MONTHS, score_cube
from partners.models import HistoricRepair, Partner, RepairReport

RULE_SCORE = 100.0  # hard evidence stands on its own
# A dismissed flag reopens only when the money at stake has grown by this factor.
MATERIAL_GROWTH = Decimal("1.5")
_CENT = Decimal("0.01")
_T = TypeVar("_T")


@dataclass
class ScoringSummary:
    run_id: int
    as_of: str | None
    claims: int
    partners: int
    flagged: int
    insufficient: int
    rule_hits: int
    created: int
    updated: int
    reopened: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def score_all(*, actor: Actor) -> ScoringSummary:
    """Score every partner and claim, then bring the flags in line with the result."""
    started = time.perf_counter()
    concurrently = reads_alike_elsewhere()  # asked before this run writes anything
    _one_scoring_at_a_time()
    run = m.ScoreRun(actor=str(actor))
    db.session.add(run)
    db.session.flush()
    cube, verdicts, hits = _score_and_check(concurrently=concurrently)
    as_of = _last_month_with_claims(cube)
    partner_ids = dict(db.session.execute(select(Partner.code, Partner.id)).all())
    counts = {"created": 0, "updated": 0, "reopened": 0}
    window = _window(cube, as_of)
    scored = [_from_verdict(verdict, partner_ids[verdict.partner], window)
              for verdict in verdicts if verdict.verdict != v.CLEAR]
    scored += [_from_hit(hit, partner_ids[hit.partner]) for hit in hits]
    seen = _upsert_all(scored, actor, counts)
    db.session.execute(
        update(m.FraudFlag).where(m.FraudFlag.current.is_(True),
                                  m.FraudFlag.fingerprint.not_in(seen))
        .values(current=False).execution_options(synchronize_session=False))
    summary = ScoringSummary(
        run_id=run.id, as_of=cube.months[as_of] if as_of is not None else None,
        claims=int(cube["claims"].sum()) if cube.months else 0, partners=len(cube.partners),
        flagged=sum(1 for x in verdicts if x.verdict == v.FLAG),
        insufficient=sum(1 for x in verdicts if x.verdict == v.INSUFFICIENT),
        rule_hits=len(hits), seconds=0.0, **counts)
    summary.seconds = round(time.perf_counter() - started, 3)
    run.finished_at, run.as_of_month = utcnow(), summary.as_of
    run.claims, run.partners, run.summary = summary.claims, summary.partners, summary.as_dict()
    record_event(entity_type="fraud_score_run", entity_id=run.id, action="fraud.scored",
                 actor=actor, data=summary.as_dict())
    db.session.commit()
    return summary


def reads_alike_elsewhere() -> bool:
    """Whether another connection would read the same claims as this session: PostgreSQL,
    and this transaction has written nothing yet (no transaction id assigned, nothing
    waiting to be flushed), so nothing it could see is hidden from the others."""
    if db.session.get_bind().dialect.name != "postgresql":
        return False
    if db.session.new or db.session.dirty or db.session.deleted:
        return False
    return db.session.scalar(text("SELECT pg_current_xact_id_if_assigned() IS NULL"))


def _score_and_check(*, concurrently: bool) -> tuple[Cube, list[v.PartnerVerdict],
                                                      list[v.RuleHit]]:
    """The cube, the partners' verdicts and the rule hits.

    ``concurrently`` (see ``reads_alike_elsewhere``): the hard rules run on a connection of
    their own while this one loads the cube (which runs its repeats query on a third) and
    numpy scores it. None needs another's result and the database can run each on a core of
    its own, so the wall time nears the longest of them instead of their sum. Each query reads
    the committed claims, as it would in this session's READ COMMITTED transaction.
    """
    partners = list(db.session.scalars(select(Partner.code)))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = (pool.submit(in_own_session, current_app._get_current_object(),
                               find_rule_hits) if concurrently else None)
        cube = load_cube(partners=partners, concurrently=concurrently)
        as_of = _last_month_with_claims(cube)
        verdicts = score_cube(cube, as_of=as_of) if as_of is not None else []
        hits = pending.result() if pending is not None else find_rule_hits()
    return cube, verdicts, hits


def in_own_session(app: Flask, function: Callable[[], _T]) -> _T:
    """``function()`` in an app context (so a database session) of its own: for a thread."""
    with app.app_context():
        try:
            return function()
        finally:
            db.session.remove()


def _one_scoring_at_a_time() -> None:
    # Two runs would race on the same fingerprints; on PostgreSQL the second waits here.
    # SQLite serializes writers already.
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(hashtext('aftercare.fraud'))"))


def _last_month_with_claims(cube: Cube) -> int | None:
    monthly = cube["claims"].sum(axis=(0, 1)) if cube.months else []
    nonzero = [i for i, count in enumerate(monthly) if count > 0]
    return nonzero[-1] if nonzero else None


def _window(cube: Cube, as_of: int | None) -> tuple[str | None, str | None]:
    if as_of is None:
        return None, None
    return cube.months[max(0, as_of - WINDOW_MONTHS + 1)], cube.months[as_of]


def _from_verdict(verdict: v.PartnerVerdict, partner_id: int,
                  window: tuple[str | None, str | None]) -> dict[str, Any]:
    top = verdict.signals[0]
    after_fdr = ("after FDR" if verdict.verdict == v.FLAG
                 else "not enough claims to conclude" if verdict.claims < 30
                 else "not significant after FDR")
    q_text = "q < 0.001" if verdict.q_value < 0.001 else f"q = {verdict.q_value:.3f}"
    return {
        "fingerprint": f"{verdict.partner}:partner",
        "partner_id": partner_id, "kind": m.STATISTICAL, "signal": top.signal,
        "claim_ref": None,
        "status": m.OPEN if verdict.verdict == v.FLAG else m.INSUFFICIENT_EVIDENCE,
        "score": round(min(300.0, -math.log10(max(verdict.q_value, 1e-300))), 2),
        "p_value": verdict.combined_p, "q_value": verdict.q_value,
        "reason": f"{top.reason}; {q_text} {after_fdr}",
        "evidence": {
            "claims": verdict.claims,
            "signals": [{"signal": s.signal, "p_value": s.p_value, "observed": s.observed,
                         "expected": s.expected, "excess_amount": s.excess_amount,
                         "reason": s.reason} for s in verdict.signals],
        },
        "amount_at_stake": Decimal(str(verdict.amount_at_stake)).quantize(_CENT),
        "window_start": window[0], "window_end": window[1],
    }


def _from_hit(hit: v.RuleHit, partner_id: int) -> dict[str, Any]:
    return {
        "fingerprint": f"{hit.partner}:{hit.rule}:{hit.claim_ref}",
        "partner_id": partner_id, "kind": m.RULE, "signal": hit.rule,
        "claim_ref": hit.claim_ref, "status": m.OPEN, "score": RULE_SCORE,
        "p_value": None, "q_value": None, "reason": hit.reason,
        "evidence": {}, "amount_at_stake": hit.amount.quantize(_CENT),
        "window_start": None, "window_end": None,
    }


_TRACKED = ("signal", "reason", "amount_at_stake", "score")


def _upsert_all(scored: list[dict[str, Any]], actor: Actor, counts: dict[str, int]) -> set[str]:
    """Create or update the flag of each scored result; return their fingerprints.

    A thousand rule hits are a thousand flags: the existing ones are read in one query and
    the changes written in one flush, not a query and a flush per flag. The audit events
    follow in the order of ``scored``, once the new flags have their ids.
    """
    flags = _flags_by_fingerprint({values["fingerprint"] for values in scored})
    events: list[tuple[m.FraudFlag, dict[str, Any]]] = []
    for values in scored:
        _upsert(values, flags, counts, events)
    db.session.flush()
    for flag, event in events:
        record_event(entity_type="fraud_flag", entity_id=flag.id, actor=actor, **event)
    return {values["fingerprint"] for values in scored}


_FINGERPRINTS_PER_QUERY = 5000


def _flags_by_fingerprint(fingerprints: set[str]) -> dict[str, m.FraudFlag]:
    wanted = sorted(fingerprints)
    flags: dict[str, m.FraudFlag] = {}
    for start in range(0, len(wanted), _FINGERPRINTS_PER_QUERY):
        flags.update((flag.fingerprint, flag) for flag in db.session.scalars(
            select(m.FraudFlag).where(
                m.FraudFlag.fingerprint.in_(wanted[start:start + _FINGERPRINTS_PER_QUERY]))))
    return flags


def _upsert(values: dict[str, Any], flags: dict[str, m.FraudFlag], counts: dict[str, int],
            events: list[tuple[m.FraudFlag, dict[str, Any]]]) -> None:
    fingerprint = values["fingerprint"]
    flag = flags.get(fingerprint)
    now = utcnow()
    if flag is None:
        flag = flags[fingerprint] = m.FraudFlag(**values, current=True, created_at=now,
                                                updated_at=now, last_scored_at=now)
        db.session.add(flag)
        counts["created"] += 1
        events.append((flag, {
            "action": "fraud_flag.raised", "reason": flag.reason,
            "data": {"partner_id": flag.partner_id, "signal": flag.signal,
                     "status": flag.status, "claim_ref": flag.claim_ref,
                     "amount_at_stake": str(flag.amount_at_stake)}}))
        return
    changes = {name: (getattr(flag, name), values[name]) for name in _TRACKED
               if getattr(flag, name) != values[name]}
    status = _next_status(flag, values)
    if status != flag.status:
        changes["status"] = (flag.status, status)
    for name in ("p_value", "q_value", "evidence", "window_start", "window_end", *_TRACKED):
        setattr(flag, name, values[name])
    flag.status, flag.current, flag.last_scored_at = status, True, now
    if changes:
        flag.updated_at = now
        reopened = changes.get("status", (None, None))[0] == m.DISMISSED
        counts["reopened" if reopened else "updated"] += 1
        events.append((flag, {
            "action": "fraud_flag.reopened" if reopened else "fraud_flag.rescored",
            "reason": ("the evidence grew materially since it was dismissed" if reopened
                       else None),
            "data": {name: {"before": str(old), "after": str(new)}
                     for name, (old, new) in changes.items()}}))


def _next_status(flag: m.FraudFlag, values: dict[str, Any]) -> str:
    """Rescoring moves a flag between open and insufficient evidence; decisions stick."""
    if flag.status == m.DISMISSED:
        grown = (flag.dismissed_amount is not None
                 and values["amount_at_stake"] >= flag.dismissed_amount * MATERIAL_GROWTH
                 and values["amount_at_stake"] > flag.dismissed_amount)
        return m.OPEN if grown and values["status"] == m.OPEN else m.DISMISSED
    if flag.status in (m.OPEN, m.INSUFFICIENT_EVIDENCE):
        return values["status"]
    return flag.status  # confirmed / awaiting evidence: finance owns it now


# --- queries -------------------------------------------------------------------------------


def flags_query(*, partner_code: str | None = None, signal: str | None = None,
                status: str | None = None, kind: str | None = None,
                current_only: bool = False) -> Select:
    """Flags, most money at stake and strongest first."""
    query = select(m.FraudFlag).order_by(m.FraudFlag.amount_at_stake.desc(),
                                         m.FraudFlag.score.desc(), m.FraudFlag.id)
    if partner_code:
        query = query.join(Partner, Partner.id == m.FraudFlag.partner_id).where(
            Partner.code == partner_code.strip().upper())
    if signal:
        query = query.where(m.FraudFlag.signal == signal)
    if status:
        query = query.where(m.FraudFlag.status == status)
    if kind:
        query = query.where(m.FraudFlag.kind == kind)
    if current_only:
        query = query.where(m.FraudFlag.current.is_(True))
    return query


def get_flag(flag_id: int) -> m.FraudFlag:
    flag = db.session.get(m.FraudFlag, flag_id)
    if flag is None:
        raise NotFound(f"no fraud flag {flag_id}")
    return flag


def claims_behind(flag: m.FraudFlag, *, limit: int = 200) -> list[HistoricRepair]:
    """The claims a flag rests on: its own claim, or the partner's claims in the window."""
    h = HistoricRepair
    query = select(h).order_by(h.received_date.desc(), h.id.desc()).limit(limit)
    if flag.claim_ref:
        kind, _, ident = flag.claim_ref.partition(":")
        column = {"history": h.id, "report": h.report_id}.get(kind)
        if column is None or not ident.isdigit():
            return []
        return list(db.session.scalars(query.where(column == int(ident))))
    query = query.where(h.partner_code == flag.partner.code)
    if flag.window_start and flag.window_end:
        query = query.where(h.received_month.between(flag.window_start, flag.window_end))
    focus = {v.DOA_RATE: h.doa.is_(True),
             v.LATE_DOA: h.late_doa.is_(True), v.PREMIUM_PARTS: h.premium_parts > 0,
             v.UNRETURNED_PARTS: h.parts_not_returned > 0}.get(flag.signal)
    if focus is not None:
        query = query.where(focus)
    return list(db.session.scalars(query))


# --- finance's decisions -------------------------------------------------------------------


def decide(*, flag_id: int, decision: str, note: str, actor: Actor,
           recovery_amount: Decimal | None = None) -> m.FraudFlag:
    """Confirm (with what to recover), dismiss (with why) or ask the partner for evidence."""
    note = (note or "").strip()
    if not note:
        raise ValidationFailed("a note is required", errors={"note": ["explain the decision"]})
    target = {"confirm": m.CONFIRMED, "dismiss": m.DISMISSED,
              "request_evidence": m.AWAITING_EVIDENCE}.get(decision)
    if target is None:
        raise ValidationFailed("unknown decision", errors={
            "decision": ["must be confirm, dismiss or request_evidence"]})
    if decision == "confirm":
        if recovery_amount is None or recovery_amount < 0:
            raise ValidationFailed("a recovery amount is required", errors={
                "recovery_amount": ["give the amount to recover (0 or more)"]})
        recovery_amount = recovery_amount.quantize(_CENT)
    flag = get_flag(flag_id)
    allowed = {m.CONFIRMED: (m.OPEN, m.AWAITING_EVIDENCE, m.INSUFFICIENT_EVIDENCE),
               m.DISMISSED: (m.OPEN, m.AWAITING_EVIDENCE, m.INSUFFICIENT_EVIDENCE),
               m.AWAITING_EVIDENCE: (m.OPEN, m.INSUFFICIENT_EVIDENCE)}[target]
    before = flag.status
    now = utcnow()
    changed = db.session.execute(
        update(m.FraudFlag)
        .where(m.FraudFlag.id == flag.id, m.FraudFlag.status.in_(allowed))
        .values(status=target, decided_by=str(actor), decided_at=now, decision_note=note,
                updated_at=now,
                recovery_amount=recovery_amount if decision == "confirm"
                else m.FraudFlag.recovery_amount,
                dismissed_amount=m.FraudFlag.amount_at_stake if decision == "dismiss"
                else m.FraudFlag.dismissed_amount)
        .execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        db.session.rollback()
        raise Conflict(f"flag {flag_id} is {get_flag(flag_id).status}; it cannot be "
                       f"{target} from there")
    record_event(entity_type="fraud_flag", entity_id=flag.id, action=f"fraud_flag.{target}",
                 actor=actor, reason=note,
                 data={"from": before, "to": target,
                       "recovery_amount": str(recovery_amount) if recovery_amount is not None
                       else None})
    if target == m.DISMISSED:
        _release_holds(flag.id, actor=actor, reason=f"flag {flag.id} dismissed: {note}")
    if target == m.AWAITING_EVIDENCE:
        _ask_partner(flag, note, actor)
    db.session.commit()
    db.session.refresh(flag)
    return flag


def hold_payments(*, flag_id: int, note: str, actor: Actor) -> list[int]:
    """Withhold payment of the partner's unpaid reports behind a flag under review."""
    note = (note or "").strip()
    if not note:
        raise ValidationFailed("a note is required", errors={"note": ["say why"]})
    flag = get_flag(flag_id)
    if flag.status not in m.UNDER_REVIEW:
        raise Conflict(f"flag {flag_id} is {flag.status}; only a flag under review holds "
                       "payments")
    report_ids = _unpaid_reports_behind(flag)
    already = set(db.session.scalars(select(m.PaymentHold.report_id).where(
        m.PaymentHold.flag_id == flag.id, m.PaymentHold.released_at.is_(None))))
    held = []
    for report_id in report_ids:
        if report_id in already:
            continue
        withheld = db.session.execute(
            update(RepairReport).where(RepairReport.id == report_id,
                                       RepairReport.status.in_(("submitted", "withheld")))
            .values(status="withheld").execution_options(synchronize_session=False)).rowcount
        if not withheld:
            continue  # decided meanwhile
        db.session.add(m.PaymentHold(flag_id=flag.id, report_id=report_id,
                                     created_by=str(actor)))
        record_event(entity_type="repair_report", entity_id=report_id,
                     action="repair_report.payment_held", actor=actor, reason=note,
                     data={"flag_id": flag.id})
        held.append(report_id)
    db.session.commit()
    return held


def _unpaid_reports_behind(flag: m.FraudFlag) -> list[int]:
    query = select(RepairReport.id).where(
        RepairReport.partner_id == flag.partner_id,
        RepairReport.status.in_(("submitted", "withheld")))
    if flag.claim_ref:
        kind, _, ident = flag.claim_ref.partition(":")
        if kind != "report" or not ident.isdigit():
            return []
        query = query.where(RepairReport.id == int(ident))
    return list(db.session.scalars(query.order_by(RepairReport.id)))


def _release_holds(flag_id: int, *, actor: Actor, reason: str) -> None:
    holds = db.session.scalars(select(m.PaymentHold).where(
        m.PaymentHold.flag_id == flag_id, m.PaymentHold.released_at.is_(None))).all()
    now = utcnow()
    for hold in holds:
        hold.released_at, hold.released_by = now, str(actor)
        still_held = db.session.scalar(select(func.count()).select_from(m.PaymentHold).where(
            m.PaymentHold.report_id == hold.report_id, m.PaymentHold.released_at.is_(None),
            m.PaymentHold.id != hold.id))
        if not still_held:
            db.session.execute(
                update(RepairReport).where(RepairReport.id == hold.report_id,
                                           RepairReport.status == "withheld")
                .values(status="submitted").execution_options(synchronize_session=False))
        record_event(entity_type="repair_report", entity_id=hold.report_id,
                     action="repair_report.payment_released", actor=actor, reason=reason,
                     data={"flag_id": flag_id})


def active_hold(report_id: int) -> int | None:
    """The flag withholding this report's payment, if any (approval must wait for it)."""
    return db.session.scalar(select(m.PaymentHold.flag_id).where(
        m.PaymentHold.report_id == report_id, m.PaymentHold.released_at.is_(None)).limit(1))


def _ask_partner(flag: m.FraudFlag, note: str, actor: Actor) -> None:
    from messaging.service import queue_message

    partner = flag.partner
    if not partner.contact_email:
        return
    queue_message(recipient=partner.contact_email, kind="fraud_evidence_request",
                  language="en", actor=actor,
                  params={"partner": partner.name, "flag_id": flag.id, "note": note,
                          "reason": flag.reason})


# --- live reports feed the same history ----------------------------------------------------


def mirror_report(report: RepairReport, *, sku: str, serial_number: str,
                  rma_number: str | None) -> None:
    """Write a submitted repair report into the claim history scoring reads."""
    row = {
        "partner_code": report.repair.partner.code, "serial_number": serial_number, "sku": sku,
        "rma_number": rma_number, "received_date": (report.repair.received_at
                                                    or report.submitted_at).date(),
        "completed_date": report.submitted_at.date(), "doa": report.doa,
        "diagnosis_code": report.diagnosis_code,
        "parts": [{"part_number": line.part_number, "quantity": line.quantity}
                  for line in report.lines],
        "labor_minutes": report.labor_minutes, "claimed_amount": report.claimed_amount,
        "report_id": report.id,
    }
    derive([row], CatalogFacts(current_app.config["DOA_REPLACEMENT_DAYS"]))
    if row["completed_date"] < row["received_date"]:
        row["completed_date"] = row["received_date"]
    db.session.execute(HistoricRepair.__table__.insert(), [row])


def note_unreturned(report_id: int, quantity: int) -> None:
    """A charged-back core counts against the partner's returned-parts signal."""
    db.session.execute(
        update(HistoricRepair).where(HistoricRepair.report_id == report_id)
        .values(parts_not_returned=HistoricRepair.parts_not_returned + quantity)
        .execution_options(synchronize_session=False))


def partner_codes(ids: Iterable[int]) -> dict[int, str]:
    return dict(db.session.execute(
        select(Partner.id, Partner.code).where(Partner.id.in_(list(ids)))).all())


def queue_scoring(*, actor: Actor) -> int:
    """Record a scoring job (runs after commit, inline or on a worker); returns its id."""
    from common.jobs import enqueue_job

    queued = enqueue_job("fraud.score")
    record_event(entity_type="fraud_score_run", entity_id=queued.id, action="fraud.queued",
                 actor=actor)
    db.session.commit()
    return queued.id
