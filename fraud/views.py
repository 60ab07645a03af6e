"""Fraud flags API for finance: list (JSON or CSV), read, decide, hold payments, rescore."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_login import current_user
from flask_smorest import Blueprint

from auth.access import roles_required
from auth.roles import ADMIN, FINANCE
from common.extensions import db
from common.pagination import paginate
from common.schemas import schema_values
from fraud import service
from fraud.schemas import (
    FlagDecisionSchema,
    FlagDetailSchema,
    FlagQuerySchema,
    FlagSchema,
    HeldReportsSchema,
    HoldSchema,
    ScoringQueuedSchema,
)

api_bp = Blueprint("fraud", __name__, url_prefix="/api/v1/fraud", description="Fraud flags")

CSV_COLUMNS = ("id", "partner_code", "kind", "signal", "claim", "status", "score", "p_value",
               "q_value", "amount_at_stake", "recovery_amount", "window_start", "window_end",
               "reason", "decided_by", "decided_at", "decision_note")


def wants_csv(query: dict[str, Any]) -> bool:
    if query.get("format"):
        return query["format"] == "csv"
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return best == "text/csv"


@api_bp.route("/flags")
@roles_required(ADMIN, FINANCE)
@api_bp.arguments(FlagQuerySchema, location="query")
@api_bp.response(200, FlagSchema(many=True))
@api_bp.paginate()
@api_bp.doc(responses={"200": {
    "description": "JSON, or CSV for accounting with `Accept: text/csv` or `?format=csv`",
    "content": {"text/csv": {"schema": {"type": "string"}}}}})
def list_flags(query: dict[str, Any], pagination_parameters: Any) -> Any:
    """Flags, most money at stake and strongest first; filter by partner, signal, status."""
    select = service.flags_query(partner_code=query.get("partner_code"),
                                 signal=query.get("signal"), status=query.get("status"),
                                 kind=query.get("kind"))
    if wants_csv(query):
        from common.csv_export import csv_response

        rows = FlagSchema(many=True).dump(db.session.scalars(select))
        pagination_parameters.item_count = len(rows)  # the export is never paged
        return csv_response(CSV_COLUMNS, ([row[c] for c in CSV_COLUMNS] for row in rows),
                            "fraud-flags.csv")
    return paginate(select, pagination_parameters)


@api_bp.route("/flags/<int(max=2147483647):flag_id>")
@roles_required(ADMIN, FINANCE)
@api_bp.response(200, FlagDetailSchema)
def get_flag(flag_id: int) -> Any:
    """One flag with its evidence and the claims behind it."""
    flag = service.get_flag(flag_id)
    return {**schema_values(flag, FlagSchema()), "evidence": flag.evidence,
            "claims": service.claims_behind(flag)}


@api_bp.route("/flags/<int(max=2147483647):flag_id>/decision", methods=["POST"])
@roles_required(ADMIN, FINANCE)
@api_bp.arguments(FlagDecisionSchema)
@api_bp.response(200, FlagSchema)
@api_bp.alt_response(409, description="Already decided")
def decide(data: dict[str, Any], flag_id: int) -> Any:
    """Confirm with a recovery amount, dismiss with a reason, or ask the partner for evidence."""
    return service.decide(flag_id=flag_id, actor=current_user.actor, **data)


@api_bp.route("/flags/<int(max=2147483647):flag_id>/hold", methods=["POST"])
@roles_required(ADMIN, FINANCE)
@api_bp.arguments(HoldSchema)
@api_bp.response(200, HeldReportsSchema)
@api_bp.alt_response(409, description="The flag is not under review")
def hold(data: dict[str, Any], flag_id: int) -> Any:
    """Withhold payment of the unpaid repair reports behind a flag under review."""
    return {"held_report_ids": service.hold_payments(flag_id=flag_id, note=data["note"],
                                                     actor=current_user.actor)}


@api_bp.route("/scoring-runs", methods=["POST"])
@roles_required(ADMIN, FINANCE)
@api_bp.response(202, ScoringQueuedSchema)
def rescore() -> Any:
    """Queue a scoring run now (it also runs on its schedule)."""
    return {"job_id": service.queue_scoring(actor=current_user.actor)}
