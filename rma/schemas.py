"""API schemas for RMAs."""

import marshmallow as ma

from rma.numbers import ALPHABET, PREFIX

_SYMBOL = f"[{ALPHABET}]"
# Canonical (R7K4M9QX2V) or as printed (R7K4M-9QX2V). The last symbol is a check character,
# which a pattern cannot express: the custom format `rma-number` says so.
RMA_NUMBER_PATTERN = f"^{PREFIX}{_SYMBOL}{{4}}-?{_SYMBOL}{{5}}$"


def rma_number_parameter(description: str) -> dict:
    """The OpenAPI path parameter ``rma_number``: its format, and what the operation answers."""
    return {"in": "path", "name": "rma_number", "required": True,
            "description": "An RMA number, e.g. R7K4M9QX2V or R7K4M-9QX2V; " + description,
            "schema": {"type": "string", "format": "rma-number",
                       "pattern": RMA_NUMBER_PATTERN}}


class RmaSchema(ma.Schema):
    rma_number = ma.fields.String()
    formatted = ma.fields.String()
    claim_number = ma.fields.String()
    serial_number = ma.fields.String()
    sku = ma.fields.String(allow_none=True)
    remedy = ma.fields.String()
    status = ma.fields.String()
    issued_at = ma.fields.DateTime()
    label_ready_at = ma.fields.DateTime(allow_none=True)


class LabelQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    page = ma.fields.String(load_default="4x6", validate=ma.validate.OneOf(["4x6", "a4", "letter"]))


class LabelBatchSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    rma_numbers = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(max=20)),
        required=True,
        validate=ma.validate.Length(min=1, max=1000),
    )
    page = ma.fields.String(load_default="4x6", validate=ma.validate.OneOf(["4x6", "a4", "letter"]))


class LabelBatchStatusSchema(ma.Schema):
    id = ma.fields.String()
    count = ma.fields.Integer()
    page = ma.fields.String()
    ready = ma.fields.Boolean()
    created_at = ma.fields.DateTime()
    completed_at = ma.fields.DateTime(allow_none=True)
    download_url = ma.fields.String(allow_none=True)
