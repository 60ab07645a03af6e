"""Catalog, purchase registry and CSV import API."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_login import current_user
from flask_smorest import Blueprint

from auth.access import roles_required
from auth.roles import ADMIN, FINANCE, SUPPORT, WAREHOUSE
from catalog import service
from catalog.import_rules import KINDS
from catalog.schemas import (
    ImportReportSchema,
    PartSchema,
    ProductDetailSchema,
    ProductSchema,
    PurchaseQuerySchema,
    PurchaseSchema,
)
from common.pagination import paginate
from common.schemas import schema_values

api_bp = Blueprint(
    "catalog", __name__, url_prefix="/api/v1", description="Products, parts and purchases"
)

# create_app imports every module that registers an import kind before the blueprints.
IMPORT_KIND = {"in": "path", "name": "kind", "required": True,
               "schema": {"type": "string", "enum": sorted(KINDS)}}
CSV_BODY = {
    "required": True,
    "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
}


@api_bp.route("/products")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.response(200, ProductSchema(many=True))
@api_bp.paginate()
def list_products(pagination_parameters: Any) -> Any:
    """Products with their warranty terms."""
    return paginate(service.products_query(), pagination_parameters)


@api_bp.route("/products/<string:sku>")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.response(200, ProductDetailSchema)
def get_product(sku: str) -> Any:
    """One product with its bill of materials."""
    product = service.get_product(sku)
    bom = [
        {
            "part_number": line.part_number,
            "description": part.description,
            "unit_cost": part.unit_cost,
            "max_qty": line.max_qty,
        }
        for line, part in service.bom_for(product.sku)
    ]
    return {**schema_values(product, ProductSchema()), "bom": bom}


@api_bp.route("/parts")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.response(200, PartSchema(many=True))
@api_bp.paginate()
def list_parts(pagination_parameters: Any) -> Any:
    """Spare parts catalog."""
    return paginate(service.parts_query(), pagination_parameters)


@api_bp.route("/purchases")
@roles_required(ADMIN, SUPPORT)
@api_bp.arguments(PurchaseQuerySchema, location="query")
@api_bp.response(200, PurchaseSchema(many=True))
@api_bp.paginate()
def list_purchases(filters: dict[str, Any], pagination_parameters: Any) -> Any:
    """Registered purchases, filtered by serial number, customer email or SKU."""
    return paginate(service.purchases_query(**filters), pagination_parameters)


@api_bp.route("/imports/<string:kind>", methods=["POST"])
@roles_required(ADMIN)
@api_bp.doc(requestBody=CSV_BODY, parameters=[IMPORT_KIND])
@api_bp.response(200, ImportReportSchema)
def import_csv(kind: str) -> Any:
    """Import a CSV file (request body, UTF-8); returns the row-level report."""
    return service.import_csv(
        kind, request.stream, actor=current_user.actor, filename=request.headers.get("X-Filename")
    )
