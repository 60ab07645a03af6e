"""API schemas for the warehouse."""

import marshmallow as ma

from inventory.models import GRADES


class ScanCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=512))
    serial_number = ma.fields.String(load_default=None, validate=ma.validate.Length(max=64))
    grade = ma.fields.String(load_default=None, validate=ma.validate.OneOf(GRADES))
    station = ma.fields.String(load_default=None, validate=ma.validate.Length(max=40))
    notes = ma.fields.String(load_default=None, validate=ma.validate.Length(max=2000))


class ScanResultSchema(ma.Schema):
    outcome = ma.fields.String(metadata={"enum": [
        "received", "already_received", "serial_recorded", "serial_mismatch", "graded",
        "unknown", "not_expected", "bad_check_character", "not_an_rma", "malformed"]})
    severity = ma.fields.String(metadata={"enum": ["success", "warning", "error"]})
    rma_number = ma.fields.String(allow_none=True)
    message = ma.fields.String()
    next_action = ma.fields.String()
    sku = ma.fields.String(allow_none=True)
    expected_serial = ma.fields.String(allow_none=True)
    received_serial = ma.fields.String(allow_none=True)
    grade = ma.fields.String(allow_none=True)
    location = ma.fields.String(allow_none=True)


class UnitSchema(ma.Schema):
    rma_number = ma.fields.String()
    sku = ma.fields.String(allow_none=True)
    expected_serial = ma.fields.String()
    received_serial = ma.fields.String(allow_none=True)
    serial_mismatch = ma.fields.Boolean()
    status = ma.fields.String()
    location = ma.fields.String()
    grade = ma.fields.String(allow_none=True)
    received_at = ma.fields.DateTime(allow_none=True)
    status_changed_at = ma.fields.DateTime()
    days_in_status = ma.fields.Integer()


class UnitQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    status = ma.fields.String(validate=ma.validate.Length(max=24))
    location = ma.fields.String(validate=ma.validate.Length(max=80))
    format = ma.fields.String(validate=ma.validate.OneOf(["json", "csv"]))


class AgingQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    older_than_days = ma.fields.Integer(load_default=7, validate=ma.validate.Range(min=0,
                                                                                     max=3650))
    format = ma.fields.String(validate=ma.validate.OneOf(["json", "csv"]))


class StockLevelSchema(ma.Schema):
    location = ma.fields.String()
    part_number = ma.fields.String()
    quantity = ma.fields.Integer()


class StockQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    location = ma.fields.String(validate=ma.validate.Length(max=80))
    part_number = ma.fields.String(validate=ma.validate.Length(max=64))
    format = ma.fields.String(validate=ma.validate.OneOf(["json", "csv"]))


class PartMovementCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    part_number = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    quantity = ma.fields.Integer(strict=True, required=True,
                                 validate=ma.validate.Range(min=1, max=100000))
    from_location = ma.fields.String(load_default=None, validate=ma.validate.Length(max=80))
    to_location = ma.fields.String(load_default=None, validate=ma.validate.Length(max=80))
    reason = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["received", "moved", "issued_to_partner", "returned", "core_returned", "consumed",
         "scrapped"]))
    reference = ma.fields.String(load_default=None, validate=ma.validate.Length(max=80))
    note = ma.fields.String(load_default=None, validate=ma.validate.Length(max=2000))


class PartMovementSchema(ma.Schema):
    id = ma.fields.Integer()
    part_number = ma.fields.String()
    quantity = ma.fields.Integer()
    from_location = ma.fields.String(allow_none=True)
    to_location = ma.fields.String(allow_none=True)
    reason = ma.fields.String()
    reference = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()


class AdjustmentCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    part_number = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    location = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=80))
    counted = ma.fields.Integer(strict=True, required=True,
                                validate=ma.validate.Range(min=0, max=1000000))
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))


class UnitMoveSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    to_location = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=80))
    note = ma.fields.String(load_default=None, validate=ma.validate.Length(max=2000))


class RouteCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    disposition = ma.fields.String(load_default=None, validate=ma.validate.OneOf([
        "repair_at_partner", "replace_from_stock", "refurbish_to_stock", "scrap",
        "return_to_vendor", "hold_for_inspection"]))
    partner_code = ma.fields.String(load_default=None, validate=ma.validate.Length(max=32))
    reason = ma.fields.String(load_default=None, validate=ma.validate.Length(max=2000))


class RouteSuggestionSchema(ma.Schema):
    disposition = ma.fields.String()
    partner_code = ma.fields.String(allow_none=True)
    why = ma.fields.String()


class ShipmentCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    partner_code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=32))
    direction = ma.fields.String(load_default="to_partner",
                                 validate=ma.validate.OneOf(["to_partner", "from_partner"]))
    rma_numbers = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=20)),
                                 load_default=list, validate=ma.validate.Length(max=500))


class ShipmentItemSchema(ma.Schema):
    rma_number = ma.fields.String()
    state = ma.fields.String()
    sku = ma.fields.String(allow_none=True)


class ShipmentSchema(ma.Schema):
    shipment_number = ma.fields.String()
    direction = ma.fields.String()
    partner_code = ma.fields.String()
    status = ma.fields.String()
    created_at = ma.fields.DateTime()
    sent_at = ma.fields.DateTime(allow_none=True)
    closed_at = ma.fields.DateTime(allow_none=True)
    items = ma.fields.List(ma.fields.Nested(ShipmentItemSchema))


class ShipmentAddSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    rma_number = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=20))


class ShipmentScanSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))


class ShipmentScanResultSchema(ma.Schema):
    outcome = ma.fields.String()
    rma_number = ma.fields.String(allow_none=True)
    message = ma.fields.String()


class DiscrepancySchema(ma.Schema):
    shipment_number = ma.fields.String()
    received = ma.fields.List(ma.fields.String())
    missing = ma.fields.List(ma.fields.String())
    unexpected = ma.fields.List(ma.fields.String())


class PartAccountSchema(ma.Schema):
    part_number = ma.fields.String()
    issued = ma.fields.Integer()
    consumed = ma.fields.Integer()
    returned = ma.fields.Integer()
    other_out = ma.fields.Integer(metadata={"description": "scrapped or adjusted away"})
    on_hand = ma.fields.Integer()
