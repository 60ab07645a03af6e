"""The partner portal: a partner's users see and move their own units, nothing else.

They also file each unit's repair report (parts from the product's BOM, labor, diagnosis)
through the same schema and service as ``POST /api/v1/partner/units/{rma}/report``, so the
portal and the API can never disagree on what a valid report is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import marshmallow as ma
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from auth.access import roles_required
from auth.roles import PARTNER
from catalog.service import bom_for
from common.errors import Conflict, DomainError, ValidationFailed, flatten_webargs_messages
from common.extensions import db
from fraud.service import active_hold
from inventory.errors import InsufficientStock
from inventory.service import level
from partners import repair_states, repairs, reports
from partners.models import Repair, RepairReport
from partners.schemas import RepairReportCreateSchema

bp = Blueprint("partner_portal", __name__, url_prefix="/partner")

REPORT_WORDS = {"submitted": "Pending finance review", "approved": "Approved",
                "rejected": "Rejected", "withheld": "Payment on hold"}
FIELD_WORDS = {"diagnosis_code": "Diagnosis code", "labor_minutes": "Labor minutes",
               "doa_evidence": "DOA evidence", "replacement_serial": "Replacement serial",
               "parts": "Parts", "doa": "Dead on arrival"}
# ASCII digits only (str.isdigit() also takes "²"), and bounded so int() stays cheap; the
# schema's ranges then refuse 0, negatives and absurd values with their own message.
_WHOLE = re.compile(r"[+-]?[0-9]{1,30}")
_MISSING = "Missing data for required field."


@dataclass
class ReportForm:
    """The report form read into the API schema's input; ``data`` is None when invalid."""

    data: dict[str, Any] | None
    errors: dict[str, list[str]] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)  # form row of each entry in data["parts"]


@dataclass(frozen=True)
class BomChoice:
    part_number: str
    description: str
    max_qty: int
    on_hand: int


@bp.context_processor
def _words() -> dict[str, Any]:
    return {"report_words": REPORT_WORDS, "field_words": _field_words}


def _field_words(key: str) -> str:
    index = key.split(".")[1] if key.startswith("parts.") else ""
    if index.isdecimal():
        return f"Part {int(index) + 1}"
    return FIELD_WORDS.get(key, key.replace("_", " ").capitalize())


@bp.route("/units")
@roles_required(PARTNER)
def units() -> Any:
    """The partner's units with the next steps each may take."""
    status = request.args.get("status") or None
    if status not in (None, *repair_states.STATUSES):
        status = None
    items = db.session.scalars(repairs.repairs_query(partner_id=current_user.partner_id,
                                                     status=status).limit(500)).all()
    filed = {report.repair_id: report for report in db.session.scalars(
        reports.reports_query(partner_id=current_user.partner_id)
        .where(RepairReport.repair_id.in_([repair.id for repair in items])))}
    return render_template("partner/units.html", repairs=items, status=status,
                           statuses=repair_states.STATUSES, reports=filed,
                           reportable=reports.REPORTABLE,
                           allowed=repair_states.allowed_next)


@bp.get("/units/<rma_number>")
@roles_required(PARTNER)
def unit(rma_number: str) -> Any:
    """One unit: its next steps, its history and its repair report (the form, or as filed)."""
    return _unit_page(_my_repair(rma_number))


@bp.route("/units/<rma_number>", methods=["POST"])
@roles_required(PARTNER)
def update(rma_number: str) -> Any:
    """Move one unit to its next status (the form carries the version it was shown)."""
    version = request.form.get("version", "")
    back = url_for("partner_portal.unit", rma_number=rma_number) \
        if request.form.get("back") == "unit" else url_for("partner_portal.units")
    try:
        repairs.change_status(
            rma_number=rma_number, partner_id=current_user.partner_id,
            target=request.form.get("status", ""),
            expected_version=int(version) if version.isdigit() and len(version) < 10 else None,
            note=(request.form.get("note") or "").strip()[:2000] or None,
            actor=current_user.actor)
        flash(f"{rma_number}: updated.", "info")
    except DomainError as error:
        if error.status == 412:
            flash(f"{rma_number} was changed by someone else meanwhile; check it and try "
                  "again.", "error")
        else:
            flash(f"{rma_number}: {error.detail}", "error")
        if error.status == 404:
            back = url_for("partner_portal.units")
    return redirect(back)


@bp.route("/units/<rma_number>/report", methods=["POST"])
@roles_required(PARTNER)
def submit_report(rma_number: str) -> Any:
    """File the unit's repair report and payment claim; a repeated identical submit is a no-op."""
    repair = _my_repair(rma_number)  # 404 for another partner's unit, before reading anything
    number = repair.unit.rma.rma_number
    form = _read_report_form(request.form)
    if _report_of(repair) is not None:
        return _already_reported(repair, form)
    if request.form.get("version", "") != str(repair.version):
        # Like the status form: what the technician saw is no longer what is there.
        return _unit_page(repair, request.form, problem=(
            f"{number} was changed by someone else meanwhile (it is now "
            f"{repair.status.replace('_', ' ')}); check it and submit the report again."),
            status=409)
    if form.data is None:
        return _unit_page(repair, request.form, errors=form.errors, status=422,
                          problem="The report was not submitted: please correct the fields "
                                  "marked below.")
    try:
        reports.submit_report(rma_number=number, partner_id=current_user.partner_id,
                              actor=current_user.actor,
                              core_return_days=current_app.config["CORE_RETURN_DAYS"],
                              **form.data)
    except ValidationFailed as error:
        db.session.rollback()
        return _unit_page(repair, request.form, errors=_form_errors(error.errors, form.rows),
                          problem=f"The report was not submitted: {error.detail}.", status=422)
    except Conflict as error:
        db.session.rollback()
        repair = _my_repair(number)
        if _report_of(repair) is not None:  # a concurrent submit won the race
            return _already_reported(repair, form)
        problem = f"The report was not submitted: {error.detail}."
        if isinstance(error, InsufficientStock):
            problem = (f"The report was not submitted: your consignment stock is short "
                       f"({error.detail}). Ask the warehouse for the parts, then submit again.")
        return _unit_page(repair, request.form, status=409, problem=problem)
    flash(f"{number}: repair report submitted.", "info")
    return redirect(url_for("partner_portal.unit", rma_number=number))


# --- helpers -------------------------------------------------------------------------------------


def _my_repair(rma_number: str) -> Repair:
    """The signed-in partner's repair of the unit (NotFound, hence 404, for anyone else's)."""
    return repairs.get_repair(rma_number=rma_number, partner_id=current_user.partner_id)


def _report_of(repair: Repair) -> RepairReport | None:
    return db.session.scalar(reports.reports_query(partner_id=repair.partner_id)
                             .where(RepairReport.repair_id == repair.id))


def _unit_page(repair: Repair, form: Mapping[str, Any] | None = None, *,
               errors: dict[str, list[str]] | None = None, problem: str | None = None,
               status: int = 200) -> Any:
    report = _report_of(repair)
    choices: list[BomChoice] = []
    if report is None and repair.unit.sku:
        stock = f"partner:{repair.partner.code}"
        choices = [BomChoice(line.part_number, part.description, line.max_qty,
                             level(stock, line.part_number))
                   for line, part in bom_for(repair.unit.sku)]
    return render_template(
        "partner/unit.html", repair=repair, unit=repair.unit, report=report,
        held=report is not None and active_hold(report.id) is not None,
        history=repairs.history(repair), nexts=repair_states.allowed_next(repair.status),
        reportable=repair.status in reports.REPORTABLE, choices=choices,
        form=form if form is not None else MultiDict(), errors=errors or {},
        problem=problem), status


def _already_reported(repair: Repair, form: ReportForm) -> Any:
    """A second submit: the same report again (a double click, a reload) reads as success."""
    number = repair.unit.rma.rma_number
    report = _report_of(repair)
    if form.data is not None and report is not None and _same_report(report, form.data):
        flash(f"{number}: repair report submitted.", "info")
    else:
        flash(f"A repair report for {number} was already submitted; it is shown below. "
              "Nothing was changed.", "error")
    return redirect(url_for("partner_portal.unit", rma_number=number))


def _same_report(report: RepairReport, data: Mapping[str, Any]) -> bool:
    parts = sorted((str(p["part_number"]).strip().upper(), p["quantity"]) for p in data["parts"])
    return (report.diagnosis_code == data["diagnosis_code"].strip()
            and report.labor_minutes == data["labor_minutes"] and report.doa == data["doa"]
            and sorted((line.part_number, line.quantity) for line in report.lines) == parts)


def _whole(raw: str) -> int | None:
    raw = raw.strip()
    return int(raw) if _WHOLE.fullmatch(raw) else None


def _read_report_form(form: MultiDict) -> ReportForm:
    """Turn the form into the API schema's input and load it with that schema.

    Only what HTML cannot express is checked here (text to numbers, half-filled part rows);
    ranges, lengths and required fields are the schema's, BOM and stock rules the service's.
    """
    errors: dict[str, list[str]] = {}
    parts: list[dict[str, Any]] = []
    rows: list[int] = []
    numbers, quantities = form.getlist("part_number"), form.getlist("quantity")
    for row in range(max(len(numbers), len(quantities))):
        number = numbers[row].strip() if row < len(numbers) else ""
        raw = quantities[row].strip() if row < len(quantities) else ""
        if not number and not raw:
            continue  # an unused row
        quantity = _whole(raw)
        if not number:
            errors[f"parts.{row}"] = ["choose the part (or clear its quantity)"]
        elif not raw:
            errors[f"parts.{row}"] = [f"enter how many {number} were used"]
        elif quantity is None:
            errors[f"parts.{row}"] = ["the quantity must be a whole number"]
        else:
            parts.append({"part_number": number, "quantity": quantity})
            rows.append(row)
    payload: dict[str, Any] = {"doa": form.get("doa") == "yes", "parts": parts}
    for name in ("diagnosis_code", "doa_evidence", "replacement_serial"):
        if value := (form.get(name) or "").strip():
            payload[name] = value  # blank means absent: "required", not "too short"
    minutes = (form.get("labor_minutes") or "").strip()
    if minutes and _whole(minutes) is None:
        errors["labor_minutes"] = ["enter whole minutes, e.g. 45"]
    elif minutes:
        payload["labor_minutes"] = _whole(minutes)
    try:
        data = RepairReportCreateSchema().load(payload)
    except ma.ValidationError as error:
        flat = flatten_webargs_messages({"json": error.messages})
        for key, messages in _form_errors(flat, rows).items():
            errors.setdefault(key, [m if m != _MISSING else "required" for m in messages])
        data = None
    return ReportForm(None if errors else data, errors, rows)


def _form_errors(errors: Mapping[str, list[str]], rows: list[int]) -> dict[str, list[str]]:
    """Errors keyed by the schema or service (``parts.<i>[.field]``) keyed by form row."""
    mapped: dict[str, list[str]] = {}
    for key, messages in errors.items():
        head, _, rest = key.partition(".")
        index = rest.partition(".")[0]
        if head == "parts" and index.isdecimal() and int(index) < len(rows):
            key = f"parts.{rows[int(index)]}"
        mapped.setdefault(key, []).extend(messages)
    return mapped
