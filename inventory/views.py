"""Warehouse API: scans, units, aging, stock levels and part movements (CSV on request)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask_login import current_user
from flask_smorest import Blueprint

from auth.access import roles_required
from auth.roles import ADMIN, FINANCE, SUPPORT, WAREHOUSE
from common.csv_export import csv_response
from common.extensions import db
from common.pagination import paginate
from inventory import service
from inventory.presenter import UNIT_COLUMNS, scan_view, unit_view
from inventory.schemas import (
    AdjustmentCreateSchema,
    AgingQuerySchema,
    PartMovementCreateSchema,
    PartMovementSchema,
    ScanCreateSchema,
    ScanResultSchema,
    StockLevelSchema,
    StockQuerySchema,
    UnitMoveSchema,
    UnitQuerySchema,
    UnitSchema,
)

api_bp = Blueprint("warehouse", __name__, url_prefix="/api/v1/warehouse",
                   description="Receiving, units and stock")

CSV_DOC = {"200": {"description": "JSON, or CSV with ?format=csv",
                   "content": {"text/csv": {"schema": {"type": "string"}}}}}
READERS = (ADMIN, WAREHOUSE, SUPPORT, FINANCE)


@api_bp.route("/scans", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.arguments(ScanCreateSchema)
@api_bp.response(200, ScanResultSchema)
def scan(data: dict[str, Any]) -> Any:
    """One scanner read: receives the unit (once), records its serial, or says what is wrong."""
    result = service.record_scan(actor=current_user.actor, **data)
    return scan_view(result)


@api_bp.route("/units")
@roles_required(*READERS)
@api_bp.arguments(UnitQuerySchema, location="query")
@api_bp.response(200, UnitSchema(many=True))
@api_bp.doc(responses=CSV_DOC)
@api_bp.paginate()
def units(query: dict[str, Any], pagination_parameters: Any) -> Any:
    """Where every unit is now: location, status and days in that status."""
    stmt = service.units_query(status=query.get("status"), location=query.get("location"))
    if query.get("format") == "csv":
        rows = [unit_view(u) for u in db.session.scalars(stmt)]
        pagination_parameters.item_count = len(rows)  # the export is never paged
        return csv_response(UNIT_COLUMNS, ([r[c] for c in UNIT_COLUMNS] for r in rows),
                            "units.csv")
    return [unit_view(u) for u in paginate(stmt, pagination_parameters)]


@api_bp.route("/units/<string:rma_number>/move", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.arguments(UnitMoveSchema)
@api_bp.response(200, UnitSchema)
def move_unit(data: dict[str, Any], rma_number: str) -> Any:
    """Move a received unit to another bin."""
    unit = service.move_unit(rma_number=rma_number, to_location=data["to_location"],
                             reason="moved", note=data["note"], actor=current_user.actor)
    return unit_view(unit)


@api_bp.route("/aging")
@roles_required(*READERS)
@api_bp.arguments(AgingQuerySchema, location="query")
@api_bp.response(200, UnitSchema(many=True))
@api_bp.doc(responses=CSV_DOC)
def aging(query: dict[str, Any]) -> Any:
    """Units waiting longer than ``older_than_days`` in their current step, oldest first."""
    stmt = service.aging_query(older_than=timedelta(days=query["older_than_days"]))
    views = [unit_view(u) for u in db.session.scalars(stmt.limit(5000))]
    if query.get("format") == "csv":
        return csv_response(UNIT_COLUMNS, ([v[c] for c in UNIT_COLUMNS] for v in views),
                            "aging.csv")
    return views


@api_bp.route("/stock")
@roles_required(*READERS)
@api_bp.arguments(StockQuerySchema, location="query")
@api_bp.response(200, StockLevelSchema(many=True))
@api_bp.doc(responses=CSV_DOC)
def stock(query: dict[str, Any]) -> Any:
    """Parts on hand per location."""
    levels = db.session.scalars(service.stock_query(
        location=query.get("location"), part_number=query.get("part_number"))).all()
    if query.get("format") == "csv":
        return csv_response(("location", "part_number", "quantity"),
                            ((lv.location, lv.part_number, lv.quantity) for lv in levels),
                            "stock.csv")
    return levels


@api_bp.route("/stock/movements", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.arguments(PartMovementCreateSchema)
@api_bp.response(201, PartMovementSchema)
@api_bp.alt_response(409, description="Not enough on hand at the source")
def move_parts(data: dict[str, Any]) -> Any:
    """Record a movement of spare parts (receipt, issue to a partner, return, scrap...)."""
    return service.move_parts(actor=current_user.actor, **data)


@api_bp.route("/stock/adjustments", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.arguments(AdjustmentCreateSchema)
@api_bp.response(201, PartMovementSchema)
@api_bp.alt_response(204, description="The count matched: nothing to adjust")
def adjust(data: dict[str, Any]) -> Any:
    """Correct a location's count after a stock take (reason required, audited)."""
    movement = service.adjust_stock(actor=current_user.actor, **data)
    if movement is None:
        return "", 204
    return movement

