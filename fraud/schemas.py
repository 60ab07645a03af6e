"""API schemas for fraud flags and finance's decisions on them."""

import marshmallow as ma

from fraud import models as m
from fraud import verdicts as v

SIGNALS = list(v.STATISTICAL_SIGNALS + v.RULE_SIGNALS)


class FlagQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    partner_code = ma.fields.String(validate=ma.validate.Length(max=32))
    signal = ma.fields.String(validate=ma.validate.OneOf(SIGNALS))
    status = ma.fields.String(validate=ma.validate.OneOf(m.STATUSES))
    kind = ma.fields.String(validate=ma.validate.OneOf([m.STATISTICAL, m.RULE]))
    format = ma.fields.String(validate=ma.validate.OneOf(["json", "csv"]))


class FlagSchema(ma.Schema):
    id = ma.fields.Integer()
    partner_code = ma.fields.String()
    kind = ma.fields.String(metadata={"enum": [m.STATISTICAL, m.RULE]})
    signal = ma.fields.String(metadata={"enum": SIGNALS})
    claim = ma.fields.String(allow_none=True, metadata={
        "description": "report:<id> (live repair report), history:<id> (imported claim) or "
                       "claim:<id> (customer claim); null for partner-level flags"})
    score = ma.fields.Float(metadata={
        "description": "-log10 of the FDR-adjusted p-value; 100 for hard evidence"})
    p_value = ma.fields.Float(allow_none=True)
    q_value = ma.fields.Float(allow_none=True)
    status = ma.fields.String(metadata={"enum": list(m.STATUSES)})
    reason = ma.fields.String()
    amount_at_stake = ma.fields.Decimal(as_string=True, metadata={"type": "string"})
    window_start = ma.fields.String(allow_none=True)
    window_end = ma.fields.String(allow_none=True)
    current = ma.fields.Boolean()
    recovery_amount = ma.fields.Decimal(as_string=True, allow_none=True,
                                        metadata={"type": "string"})
    decided_by = ma.fields.String(allow_none=True)
    decided_at = ma.fields.DateTime(allow_none=True)
    decision_note = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class ClaimFactSchema(ma.Schema):
    id = ma.fields.Integer()
    report_id = ma.fields.Integer(allow_none=True)
    rma_number = ma.fields.String(allow_none=True)
    serial_number = ma.fields.String()
    sku = ma.fields.String()
    received_date = ma.fields.Date()
    doa = ma.fields.Boolean()
    parts = ma.fields.List(ma.fields.Dict())
    labor_minutes = ma.fields.Integer()
    claimed_amount = ma.fields.Decimal(as_string=True, metadata={"type": "string"})


class FlagDetailSchema(FlagSchema):
    evidence = ma.fields.Dict()
    claims = ma.fields.List(ma.fields.Nested(ClaimFactSchema))


class FlagDecisionSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    decision = ma.fields.String(required=True, validate=ma.validate.OneOf(
        ["confirm", "dismiss", "request_evidence"]))
    note = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))
    recovery_amount = ma.fields.Decimal(load_default=None, places=2, allow_nan=False,
                                        validate=ma.validate.Range(min=0, max=10**9))


class HoldSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    note = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))


class HeldReportsSchema(ma.Schema):
    held_report_ids = ma.fields.List(ma.fields.Integer())


class ScoringQueuedSchema(ma.Schema):
    job_id = ma.fields.Integer()
