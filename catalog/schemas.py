"""API schemas for the catalog and purchase registry."""

import marshmallow as ma


class PartSchema(ma.Schema):
    part_number = ma.fields.String()
    description = ma.fields.String()
    unit_cost = ma.fields.Decimal(as_string=True)


class BomLineSchema(ma.Schema):
    part_number = ma.fields.String()
    description = ma.fields.String()
    unit_cost = ma.fields.Decimal(as_string=True)
    max_qty = ma.fields.Integer()


class ProductSchema(ma.Schema):
    sku = ma.fields.String()
    name = ma.fields.String()
    category = ma.fields.String()
    warranty_months = ma.fields.Integer()
    extended_warranty_months = ma.fields.Integer()
    exclusions = ma.fields.List(ma.fields.String())
    labor_minutes = ma.fields.Integer(allow_none=True)
    released_on = ma.fields.Date(allow_none=True)


class ProductDetailSchema(ProductSchema):
    bom = ma.fields.List(ma.fields.Nested(BomLineSchema))


class PurchaseSchema(ma.Schema):
    serial_number = ma.fields.String()
    sku = ma.fields.String()
    purchase_date = ma.fields.Date()
    customer_email = ma.fields.String()
    customer_name = ma.fields.String()
    customer_phone = ma.fields.String(allow_none=True)
    country = ma.fields.String()
    order_ref = ma.fields.String(allow_none=True)
    retailer = ma.fields.String(allow_none=True)


class PurchaseQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    serial_number = ma.fields.String(validate=ma.validate.Length(max=64))
    email = ma.fields.String(validate=ma.validate.Length(max=254))
    sku = ma.fields.String(validate=ma.validate.Length(max=64))


class RowErrorSchema(ma.Schema):
    row = ma.fields.Integer()
    field = ma.fields.String()
    reason = ma.fields.String()


class ImportReportSchema(ma.Schema):
    import_id = ma.fields.String()
    kind = ma.fields.String()
    rows = ma.fields.Integer()
    inserted = ma.fields.Integer()
    updated = ma.fields.Integer()
    unchanged = ma.fields.Integer()
    rejected = ma.fields.Integer()
    sha256 = ma.fields.String(allow_none=True)
    errors = ma.fields.List(ma.fields.Nested(RowErrorSchema))
    errors_truncated = ma.fields.Boolean()
