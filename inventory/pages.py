"""The warehouse scan station and the stock pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, render_template, request
from flask_login import current_user

from auth.access import roles_required
from auth.roles import ADMIN, FINANCE, SUPPORT, WAREHOUSE
from common.errors import DomainError
from common.extensions import db
from inventory import service
from inventory.models import GRADES
from inventory.presenter import scan_view, unit_view

bp = Blueprint("warehouse_pages", __name__, url_prefix="/warehouse")


@bp.route("/scan", methods=["GET", "POST"])
@roles_required(ADMIN, WAREHOUSE)
def scan_station() -> Any:
    """One always-focused input for a keyboard-wedge scanner: scan, Enter, read the answer."""
    station = (request.values.get("station") or "").strip()[:40] or None
    result, status = None, 200
    if request.method == "POST":
        code = request.form.get("code", "")
        serial = request.form.get("serial_number") or None
        pending = request.form.get("pending_rma")
        if pending and not serial:
            # The station asked for the unit's serial: this scan is the serial.
            code, serial = pending, code
        grade = request.form.get("grade") or None
        try:
            result = scan_view(service.record_scan(
                code=code, serial_number=serial, grade=grade if grade in GRADES else None,
                station=station, actor=current_user.actor))
        except DomainError as error:
            result = {"outcome": "invalid", "severity": "error", "message": error.detail,
                      "next_action": "Scan again.", "rma_number": None}
            status = error.status
    pending_rma = None
    if result and result["outcome"] == "received" and not result.get("received_serial"):
        pending_rma = result["rma_number"]
    recent = service.recent_scans(station=station)
    return render_template("warehouse/scan.html", result=result, recent=recent,
                           station=station, grades=GRADES, pending_rma=pending_rma), status


@bp.route("/units")
@roles_required(ADMIN, WAREHOUSE, SUPPORT, FINANCE)
def units() -> Any:
    """Where every unit is; aging filter."""
    older = request.args.get("older_than_days", type=int)
    if older is not None and older >= 0:
        stmt = service.aging_query(older_than=timedelta(days=older))
    else:
        stmt = service.units_query(status=request.args.get("status") or None)
    views = [unit_view(u) for u in db.session.scalars(stmt.limit(500))]
    return render_template("warehouse/units.html", units=views, older=older)


@bp.route("/stock")
@roles_required(ADMIN, WAREHOUSE, SUPPORT, FINANCE)
def stock() -> Any:
    """Parts on hand per location."""
    levels = db.session.scalars(service.stock_query()).all()
    return render_template("warehouse/stock.html", levels=levels)
