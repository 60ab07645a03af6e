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
from inventory import service, shipments
from inventory.presenter import UNIT_COLUMNS, scan_view, unit_view
from inventory.schemas import (
    AdjustmentCreateSchema,
    AgingQuerySchema,
    DiscrepancySchema,
    PartAccountSchema,
    PartMovementCreateSchema,
    PartMovementSchema,
    RouteCreateSchema,
    RouteSuggestionSchema,
    ScanCreateSchema,
    ScanResultSchema,
    ShipmentAddSchema,
    ShipmentCreateSchema,
    ShipmentScanResultSchema,
    ShipmentScanSchema,
    ShipmentSchema,
    StockLevelSchema,
    StockQuerySchema,
    UnitMoveSchema,
    UnitQuerySchema,
    UnitSchema,
)
from rma.schemas import rma_number_parameter

api_bp = Blueprint("warehouse", __name__, url_prefix="/api/v1/warehouse",
                   description="Receiving, units and stock")

CSV_DOC = {"200": {"description": "JSON, or CSV with ?format=csv",
                   "content": {"text/csv": {"schema": {"type": "string"}}}}}
READERS = (ADMIN, WAREHOUSE, SUPPORT, FINANCE)
RMA_NUMBER = rma_number_parameter("404 when no unit has it.")


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
@api_bp.doc(parameters=[RMA_NUMBER])
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



# --- routing and shipments ---------------------------------------------------------------------


@api_bp.route("/units/<string:rma_number>/route")
@roles_required(ADMIN, WAREHOUSE)
@api_bp.doc(parameters=[RMA_NUMBER])
@api_bp.response(200, RouteSuggestionSchema)
def route_suggestion(rma_number: str) -> Any:
    """What the routing rules suggest for a received unit, and why."""
    return shipments.suggest_route(service.get_unit(rma_number))


@api_bp.route("/units/<string:rma_number>/route", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.doc(parameters=[RMA_NUMBER])
@api_bp.arguments(RouteCreateSchema)
@api_bp.response(200, UnitSchema)
@api_bp.alt_response(409, description="The unit cannot be routed in its current status")
def route(data: dict[str, Any], rma_number: str) -> Any:
    """Route a unit: the rules' default, or an override with a reason."""
    return unit_view(shipments.route_unit(rma_number=rma_number, actor=current_user.actor,
                                          **data))


def _shipment_view(shipment: Any) -> dict[str, Any]:
    return {
        "shipment_number": shipment.shipment_number, "direction": shipment.direction,
        "partner_code": shipment.partner_code, "status": shipment.status,
        "created_at": shipment.created_at, "sent_at": shipment.sent_at,
        "closed_at": shipment.closed_at,
        "items": [{"rma_number": i.unit.rma.rma_number, "state": i.state, "sku": i.unit.sku}
                  for i in shipment.items],
    }


@api_bp.route("/shipments", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.arguments(ShipmentCreateSchema)
@api_bp.response(201, ShipmentSchema)
@api_bp.alt_response(409, description="A unit cannot go on this shipment")
def create_shipment(data: dict[str, Any]) -> Any:
    """Open a shipment to a partner (or one expected back, listing its units)."""
    return _shipment_view(shipments.create_shipment(actor=current_user.actor, **data))


@api_bp.route("/shipments/<string:shipment_number>")
@roles_required(*READERS)
@api_bp.response(200, ShipmentSchema)
def get_shipment(shipment_number: str) -> Any:
    """One shipment with its units."""
    return _shipment_view(shipments.get_shipment(shipment_number))


@api_bp.route("/shipments/<string:shipment_number>/items", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.arguments(ShipmentAddSchema)
@api_bp.response(200, ShipmentSchema)
@api_bp.alt_response(409, description="The unit cannot go on this shipment")
def add_item(data: dict[str, Any], shipment_number: str) -> Any:
    """Pack a routed unit into an open shipment."""
    return _shipment_view(shipments.add_unit(shipment_number=shipment_number,
                                             rma_number=data["rma_number"],
                                             actor=current_user.actor))


@api_bp.route("/shipments/<string:shipment_number>/send", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.response(200, ShipmentSchema)
@api_bp.alt_response(409, description="Already sent")
def send(shipment_number: str) -> Any:
    """Hand the shipment to the carrier: its units move to transit."""
    return _shipment_view(shipments.send_shipment(shipment_number=shipment_number,
                                                  actor=current_user.actor))


@api_bp.route("/shipments/<string:shipment_number>/scans", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.arguments(ShipmentScanSchema)
@api_bp.response(200, ShipmentScanResultSchema)
@api_bp.alt_response(409, description="The shipment is not being received")
def scan_in(data: dict[str, Any], shipment_number: str) -> Any:
    """Scan a unit of a shipment coming back from a partner."""
    return shipments.scan_into_shipment(shipment_number=shipment_number, code=data["code"],
                                        actor=current_user.actor)


@api_bp.route("/shipments/<string:shipment_number>/close", methods=["POST"])
@roles_required(ADMIN, WAREHOUSE)
@api_bp.response(200, DiscrepancySchema)
@api_bp.alt_response(409, description="The shipment cannot be closed")
def close(shipment_number: str) -> Any:
    """Finish receiving a shipment: the discrepancy report (missing and unexpected units)."""
    return shipments.close_shipment(shipment_number=shipment_number, actor=current_user.actor)


@api_bp.route("/shipments/<string:shipment_number>/manifest.pdf")
@roles_required(*READERS)
@api_bp.doc(responses={"200": {"description": "Manifest with barcodes", "content": {
    "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
def manifest(shipment_number: str) -> Any:
    """The manifest PDF: the shipment's barcode and one per unit."""
    from rma.views import pdf_response

    shipment = shipments.get_shipment(shipment_number)
    return pdf_response(shipments.manifest_pdf(shipment), f"{shipment.shipment_number}.pdf")


@api_bp.route("/partners/<string:partner_code>/parts")
@roles_required(ADMIN, WAREHOUSE, FINANCE)
@api_bp.response(200, PartAccountSchema(many=True))
def partner_parts(partner_code: str) -> Any:
    """Spare parts issued to a partner and what became of them."""
    return service.partner_parts_account(partner_code)
