"""Turning claims into what customers and staff see (in the claim's language)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import current_app, url_for
from flask_babel import force_locale

from claims import service
from claims.models import Claim
from claims.rules import public_code
from claims.texts import NEXT_STEPS, reason_text, timeline_text
from messaging.service import messages_for_claim
from rma.numbers import format_rma_number
from rma.service import rma_for_claim


def public_reasons(claim: Claim | None = None, *, reasons: list[dict[str, Any]] | None = None,
                   language: str | None = None) -> list[dict[str, str]]:
    """Reasons as a customer may see them: public codes, translated sentences, no dupes."""
    reasons = claim.reasons if reasons is None else reasons
    language = language or claim.language
    seen, out = set(), []
    for reason in reasons:
        code = public_code(reason["code"])
        if code in seen:
            continue
        seen.add(code)
        out.append({"code": code,
                    "message": reason_text(code, reason.get("params", {}), language)})
    return out


def filed_response(filed: service.FiledClaim) -> dict[str, Any]:
    if filed.created:
        rma_number = filed.rma_number
    else:
        rma = rma_for_claim(filed.claim.id)
        rma_number = rma.rma_number if rma else None
    if filed.tracking_token:
        tracking = service.tracking_url(_settings(), filed.tracking_token)
        label = tracking + "/label.pdf" if rma_number else None
    else:
        # The token is only known when the claim is created; the customer has it by email.
        tracking = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + url_for("claims_pages.track")
        label = None
    status = filed.value("status")
    return {
        "claim_number": filed.value("claim_number"),
        "status": status,
        "reasons": public_reasons(reasons=filed.value("reasons"),
                                  language=filed.value("language")),
        "rma_number": rma_number,
        "remedy": filed.value("remedy") if status == "approved" else None,
        "tracking_url": tracking,
        "label_url": label,
        "duplicate": not filed.created,
    }


def staff_view(claim: Claim, *, detail: bool = False) -> dict[str, Any]:
    rma = rma_for_claim(claim.id)
    data: dict[str, Any] = {
        column: getattr(claim, column)
        for column in ("claim_number", "status", "serial_number", "sku", "email",
                       "customer_name", "fault_category", "description", "dead_on_arrival",
                       "requested_remedy", "remedy", "language", "reasons", "source",
                       "filed_at", "decided_at", "decided_by", "warranty_ends_on")
    }
    data["rma_number"] = rma.rma_number if rma else None
    data["photos"] = len(claim.photos)
    if detail:
        data["timeline"] = timeline_view(claim)
        data["notes"] = service.notes_for(claim)
        data["messages"] = messages_for_claim(claim.id)
    return data


def timeline_view(claim: Claim) -> list[dict[str, Any]]:
    with force_locale(claim.language):
        return [
            {"kind": entry.kind, "text": timeline_text(entry.kind, _readable(entry.params)),
             "occurred_at": entry.occurred_at}
            for entry in service.timeline(claim)
        ]


def _readable(params: dict[str, Any]) -> dict[str, Any]:
    if "rma_number" in params:
        return {**params, "rma_number": format_rma_number(params["rma_number"])}
    return params


# How long each next step is expected to take, as (config key, working days?).
_NEXT_STEP_DUE = {
    "needs_review": ("REVIEW_DAYS", True),
    "approved": ("RMA_SEND_WITHIN_DAYS", False),
    "rma_issued": ("RMA_SEND_WITHIN_DAYS", False),
    "label_ready": ("RMA_SEND_WITHIN_DAYS", False),
    "received": ("INSPECTION_DAYS", True),
}


def next_step(claim: Claim, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What happens next, in plain words, and by when, from the latest step that has one."""
    config = current_app.config
    with force_locale(claim.language):
        for entry in reversed(entries):
            text = NEXT_STEPS.get(entry["kind"])
            if text is None:
                continue
            if entry["kind"] == "rejected" and claim.status != "rejected":
                continue
            text = str(text)
            if "%(" in text:
                text = text % {"days": config["REVIEW_DAYS"]}
            due = None
            if entry["kind"] in _NEXT_STEP_DUE:
                key, working = _NEXT_STEP_DUE[entry["kind"]]
                due = add_days(entry["occurred_at"].date(), config[key], working_days=working)
            return {"text": text, "due": due}
    return None


def add_days(start: date, days: int, *, working_days: bool) -> date:
    """``start`` plus calendar days, or plus working days (Monday to Friday)."""
    if not working_days:
        return start + timedelta(days=days)
    current, left = start, days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current


def _settings() -> service.ClaimSettings:
    from claims.settings import claim_settings

    return claim_settings(current_app.config)
