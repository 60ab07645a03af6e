"""Partner administration API (admin) and the partner's view of itself."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, request
from flask_login import current_user
from flask_smorest import Blueprint

from auth.access import roles_required
from auth.roles import ADMIN, FINANCE, PARTNER, SUPPORT, WAREHOUSE
from common.errors import ValidationFailed
from common.extensions import db
from common.pagination import paginate
from common.schemas import schema_values
from partners import repair_states, repairs, reports, service
from partners.models import Partner, Repair
from partners.schemas import (
    CoreReturnSchema,
    IssuedPartnerKeySchema,
    PartnerCreateSchema,
    PartnerKeyCreateSchema,
    PartnerKeySchema,
    PartnerSchema,
    PartnerUnitQuerySchema,
    PartnerUnitSchema,
    PartnerUnitUpdateSchema,
    PauseSchema,
    PayableLineSchema,
    PayableQuerySchema,
    RepairReportCreateSchema,
    RepairReportSchema,
    ReportDecisionSchema,
    ReportLineSchema,
    ReportQuerySchema,
    ScorecardSchema,
)
from rma.schemas import rma_number_parameter

api_bp = Blueprint("partners", __name__, url_prefix="/api/v1", description="Service partners")


@api_bp.route("/partners")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.response(200, PartnerSchema(many=True))
@api_bp.paginate()
def list_partners(pagination_parameters: Any) -> Any:
    """All service partners."""
    return paginate(db.select(Partner).order_by(Partner.code), pagination_parameters)


@api_bp.route("/partners", methods=["POST"])
@roles_required(ADMIN)
@api_bp.arguments(PartnerCreateSchema)
@api_bp.response(201, PartnerSchema)
def create_partner(data: dict[str, Any]) -> Any:
    """Register a service partner (admin)."""
    return service.create_partner(actor=current_user.actor, **data)


@api_bp.route("/partners/<string:code>")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.response(200, PartnerSchema)
def get_partner(code: str) -> Any:
    """One service partner."""
    return service.get_partner(code)


@api_bp.route("/partners/<string:code>/keys")
@roles_required(ADMIN)
@api_bp.response(200, PartnerKeySchema(many=True))
def list_partner_keys(code: str) -> Any:
    """A partner's API keys (never their secrets)."""
    return service.list_partner_keys(code)


@api_bp.route("/partners/<string:code>/keys", methods=["POST"])
@roles_required(ADMIN)
@api_bp.arguments(PartnerKeyCreateSchema, required=False)
@api_bp.response(201, IssuedPartnerKeySchema)
def issue_partner_key(data: dict[str, Any], code: str) -> Any:
    """Issue a new API key; the secret is in this response only."""
    issued = service.issue_partner_key(partner_code=code, actor=current_user.actor, **data)
    return {**schema_values(issued.key, PartnerKeySchema()), "key": issued.secret}


@api_bp.route("/partners/<string:code>/keys/<int(max=2147483647):key_id>", methods=["DELETE"])
@roles_required(ADMIN)
@api_bp.response(204)
def revoke_partner_key(code: str, key_id: int) -> None:
    """Revoke a partner API key; requests with it are refused from now on."""
    service.revoke_partner_key(partner_code=code, key_id=key_id, actor=current_user.actor)


@api_bp.route("/partner/profile")
@roles_required(PARTNER)
@api_bp.response(200, PartnerSchema)
def my_partner() -> Any:
    """The calling partner's own record (partner keys and partner users)."""
    return db.session.get(Partner, current_user.partner_id)


# --- the partner's own units -------------------------------------------------------------------

_ETAG = re.compile(r'(?:W/)?"?([0-9]{1,9})"?')
IF_MATCH = {"in": "header", "name": "If-Match", "required": True,
            "schema": {"type": "string", "pattern": r'^\s*(W/)?"?[0-9]{1,9}"?\s*$'},
            "description": 'The ETag from the last read, e.g. "3"'}
RMA_NUMBER = rma_number_parameter("404 unless the unit is at the calling partner.")


def _unit_view(repair: Repair) -> dict[str, Any]:
    unit = repair.unit
    return {"rma_number": unit.rma.rma_number, "sku": unit.sku,
            "serial_number": unit.received_serial or unit.expected_serial,
            "status": repair.status, "version": repair.version,
            "allowed_next": list(repair_states.allowed_next(repair.status)),
            "shipment_number": repair.shipment_number, "updated_at": repair.updated_at}


def _with_etag(repair: Repair) -> tuple[dict[str, Any], int, dict[str, str]]:
    return _unit_view(repair), 200, {"ETag": f'"{repair.version}"'}


def _if_match_version() -> int | None:
    raw = request.headers.get("If-Match", "").strip()
    if not raw:
        return None
    match = _ETAG.fullmatch(raw)  # ASCII digits only: str.isdigit() also takes "²"
    if match is None:
        raise ValidationFailed("bad If-Match", errors={"If-Match": ['an ETag such as "3"']})
    return int(match.group(1))


@api_bp.route("/partner/units")
@roles_required(PARTNER)
@api_bp.arguments(PartnerUnitQuerySchema, location="query")
@api_bp.response(200, PartnerUnitSchema(many=True))
@api_bp.paginate()
def partner_units(query: dict[str, Any], pagination_parameters: Any) -> Any:
    """The calling partner's units (never another partner's), filterable by status."""
    stmt = repairs.repairs_query(partner_id=current_user.partner_id, status=query.get("status"))
    return [_unit_view(r) for r in paginate(stmt, pagination_parameters)]


@api_bp.route("/partner/units/<string:rma_number>")
@roles_required(PARTNER)
@api_bp.doc(parameters=[RMA_NUMBER])
@api_bp.response(200, PartnerUnitSchema)
def partner_unit(rma_number: str) -> Any:
    """One of the partner's units, with its ETag for a later update."""
    return _with_etag(repairs.get_repair(rma_number=rma_number,
                                         partner_id=current_user.partner_id))


@api_bp.route("/partner/units/<string:rma_number>", methods=["PATCH"])
@roles_required(PARTNER)
@api_bp.arguments(PartnerUnitUpdateSchema)
@api_bp.doc(parameters=[IF_MATCH, RMA_NUMBER])
@api_bp.response(200, PartnerUnitSchema)
@api_bp.alt_response(409, description="Illegal transition; the allowed next statuses listed")
@api_bp.alt_response(412, description="Stale version: read the unit again")
@api_bp.alt_response(428, description="If-Match missing")
def update_partner_unit(data: dict[str, Any], rma_number: str) -> Any:
    """Move the unit through repair (received, diagnosing, ... shipped back)."""
    repair = repairs.change_status(
        rma_number=rma_number, partner_id=current_user.partner_id, target=data["status"],
        expected_version=_if_match_version(), note=data["note"], actor=current_user.actor)
    return _with_etag(repair)


@api_bp.route("/partner/units/<string:rma_number>/report", methods=["POST"])
@roles_required(PARTNER)
@api_bp.doc(parameters=[RMA_NUMBER])
@api_bp.arguments(RepairReportCreateSchema)
@api_bp.response(201, RepairReportSchema)
@api_bp.alt_response(409, description="Already reported, not reportable yet, or not enough "
                                      "consignment stock")
def submit_report(data: dict[str, Any], rma_number: str) -> Any:
    """Report a repair and claim payment: parts from the BOM and your stock, labor minutes."""
    return reports.submit_report(rma_number=rma_number, partner_id=current_user.partner_id,
                                 actor=current_user.actor,
                                 core_return_days=current_app.config["CORE_RETURN_DAYS"],
                                 **data)


@api_bp.route("/finance/repair-reports")
@roles_required(ADMIN, FINANCE)
@api_bp.arguments(ReportQuerySchema, location="query")
@api_bp.response(200, RepairReportSchema(many=True))
@api_bp.paginate()
def list_reports(query: dict[str, Any], pagination_parameters: Any) -> Any:
    """Repair reports for finance, newest first."""
    partner_id = service.get_partner(query["partner_code"]).id \
        if query.get("partner_code") else None
    return paginate(reports.reports_query(status=query.get("status"), partner_id=partner_id),
                    pagination_parameters)


@api_bp.route("/finance/repair-reports/<int(max=2147483647):report_id>/decision",
              methods=["POST"])
@roles_required(ADMIN, FINANCE)
@api_bp.arguments(ReportDecisionSchema)
@api_bp.response(200, RepairReportSchema)
@api_bp.alt_response(409, description="Already decided")
def decide_report(data: dict[str, Any], report_id: int) -> Any:
    """Approve into this month's payables, reject, or withhold (under investigation)."""
    return reports.decide_report(report_id=report_id, actor=current_user.actor, **data)


@api_bp.route("/finance/payables")
@roles_required(ADMIN, FINANCE)
@api_bp.arguments(PayableQuerySchema, location="query")
@api_bp.response(200, PayableLineSchema(many=True))
@api_bp.doc(responses={"200": {"description": "JSON, or CSV with ?format=csv",
                               "content": {"text/csv": {"schema": {"type": "string"}}}}})
def payables(query: dict[str, Any]) -> Any:
    """Approved amounts owed per partner and period (CSV for accounting)."""
    from common.csv_export import csv_response
    from partners.models import RepairReport, RepairReportLine

    partner_id = service.get_partner(query["partner_code"]).id \
        if query.get("partner_code") else None
    rows = []
    for line in reports.payables(partner_id=partner_id, period=query.get("period")):
        report = db.session.get(RepairReport, line.report_id)
        rows.append({"kind": "repair", "report_id": line.report_id,
                     "partner_code": report.repair.partner.code,
                     "rma_number": report.repair.unit.rma.rma_number, "period": line.period,
                     "amount": line.amount})
    for charge in reports.chargebacks(partner_id=partner_id, period=query.get("period")):
        report = db.session.get(RepairReportLine, charge.report_line_id).report
        rows.append({"kind": "chargeback", "report_id": report.id,
                     "partner_code": report.repair.partner.code,
                     "rma_number": report.repair.unit.rma.rma_number, "period": charge.period,
                     "amount": -charge.amount})
    if query.get("format") == "csv":
        columns = ("kind", "report_id", "partner_code", "rma_number", "period", "amount")
        return csv_response(columns, ([r[c] for c in columns] for r in rows), "payables.csv")
    return rows


@api_bp.route("/partner/units/<string:rma_number>/pause", methods=["POST"])
@roles_required(PARTNER)
@api_bp.doc(parameters=[RMA_NUMBER])
@api_bp.arguments(PauseSchema)
@api_bp.response(200, PartnerUnitSchema)
@api_bp.alt_response(409, description="The clock is not running")
def pause(data: dict[str, Any], rma_number: str) -> Any:
    """Pause the SLA clock while waiting for the customer, with the reason."""
    return _with_etag(repairs.pause_clock(rma_number=rma_number, reason=data["reason"],
                                          partner_id=current_user.partner_id,
                                          actor=current_user.actor))


@api_bp.route("/partner/units/<string:rma_number>/resume", methods=["POST"])
@roles_required(PARTNER)
@api_bp.doc(parameters=[RMA_NUMBER])
@api_bp.response(200, PartnerUnitSchema)
@api_bp.alt_response(409, description="The clock is not paused")
def resume(rma_number: str) -> Any:
    """Restart the SLA clock."""
    return _with_etag(repairs.resume_clock(rma_number=rma_number,
                                           partner_id=current_user.partner_id,
                                           actor=current_user.actor))


@api_bp.route("/partners/<string:code>/scorecard")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.response(200, ScorecardSchema)
def partner_scorecard(code: str) -> Any:
    """Turnaround, SLA compliance, first-time fix, DOA rate and parts per repair."""
    from partners.sla_service import scorecard

    return scorecard(service.get_partner(code))


@api_bp.route("/partner/scorecard")
@roles_required(PARTNER)
@api_bp.response(200, ScorecardSchema)
def my_scorecard() -> Any:
    """The calling partner's own scorecard."""
    from partners.sla_service import scorecard

    return scorecard(db.session.get(Partner, current_user.partner_id))


@api_bp.route("/warehouse/core-returns", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.arguments(CoreReturnSchema)
@api_bp.response(200, ReportLineSchema)
@api_bp.alt_response(409, description="More than is still due back")
def receive_core(data: dict[str, Any]) -> Any:
    """Scan a defective part back in against the repair report line that claimed it."""
    return reports.receive_core(actor=current_user.actor, **data)
