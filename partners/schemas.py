"""API schemas for partners and their keys."""

import marshmallow as ma

from common.schemas import CredentialSchema, Pattern, StrictBoolean, StrictFloat
from partners import repair_states

STAGES = [s for s in repair_states.STATUSES
          if s not in (repair_states.IN_TRANSIT, repair_states.SHIPPED_BACK)]


StageLimitsSchema = ma.Schema.from_dict(
    {stage: StrictFloat(validate=ma.validate.Range(min=0.01, max=365)) for stage in STAGES},
    name="StageLimitsSchema",
)


class PartnerCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    code = ma.fields.String(
        required=True, validate=Pattern(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")
    )
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    country = ma.fields.String(load_default=None, validate=Pattern(r"^[A-Za-z]{2}$"))
    contact_email = ma.fields.Email(load_default=None, validate=ma.validate.Length(max=254))
    contact_phone = ma.fields.String(load_default=None, validate=ma.validate.Length(max=40))
    sla_days = ma.fields.Integer(strict=True, load_default=10,
                                 validate=ma.validate.Range(min=1, max=365))
    # A schema rather than a Dict: OpenAPI 3.0 can name the allowed keys only as properties.
    stage_limits = ma.fields.Nested(StageLimitsSchema, load_default=None,
                                    metadata={"description": "days allowed per repair stage"})


class PartnerSchema(ma.Schema):
    code = ma.fields.String()
    name = ma.fields.String()
    country = ma.fields.String(allow_none=True)
    contact_email = ma.fields.String(allow_none=True)
    contact_phone = ma.fields.String(allow_none=True)
    sla_days = ma.fields.Integer()
    stage_limits = ma.fields.Dict(allow_none=True)
    active = ma.fields.Boolean()


class PartnerKeyCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    name = ma.fields.String(load_default="", validate=ma.validate.Length(max=100))


class PartnerKeySchema(CredentialSchema):
    pass


class IssuedPartnerKeySchema(PartnerKeySchema):
    key = ma.fields.String(metadata={"description": "The secret; shown only this once"})


class PartnerUnitSchema(ma.Schema):
    rma_number = ma.fields.String()
    sku = ma.fields.String(allow_none=True)
    serial_number = ma.fields.String()
    status = ma.fields.String()
    version = ma.fields.Integer()
    allowed_next = ma.fields.List(ma.fields.String())
    shipment_number = ma.fields.String(allow_none=True)
    updated_at = ma.fields.DateTime()


class PartnerUnitQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    status = ma.fields.String(validate=ma.validate.Length(max=24))


class PartnerUnitUpdateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    status = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=24))
    note = ma.fields.String(load_default=None, validate=ma.validate.Length(max=2000))


class UsedPartSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    part_number = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    quantity = ma.fields.Integer(strict=True, required=True,
                                 validate=ma.validate.Range(min=1, max=100))


class RepairReportCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    diagnosis_code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=40))
    doa = StrictBoolean(load_default=False)
    doa_evidence = ma.fields.String(load_default=None, validate=ma.validate.Length(max=5000))
    parts = ma.fields.List(ma.fields.Nested(UsedPartSchema), load_default=list,
                           validate=ma.validate.Length(max=50))
    labor_minutes = ma.fields.Integer(strict=True, required=True,
                                      validate=ma.validate.Range(min=0, max=10000))
    replacement_serial = ma.fields.String(
        load_default=None, validate=ma.validate.Length(max=64),
        metadata={"description": "serial of the replacement unit, when the unit was replaced"})
    insist_outside_bom = StrictBoolean(
        load_default=False,
        metadata={"description": "keep parts outside the BOM or above its maximum (flagged)"})


class ReportLineSchema(ma.Schema):
    id = ma.fields.Integer()
    part_number = ma.fields.String()
    quantity = ma.fields.Integer()
    due_back_on = ma.fields.Date(allow_none=True)
    returned_quantity = ma.fields.Integer()
    unit_cost = ma.fields.Decimal(as_string=True)
    amount = ma.fields.Decimal(as_string=True)
    in_bom = ma.fields.Boolean()


class RepairReportSchema(ma.Schema):
    id = ma.fields.Integer()
    rma_number = ma.fields.Function(lambda r: r.repair.unit.rma.rma_number)
    partner_code = ma.fields.Function(lambda r: r.repair.partner.code)
    diagnosis_code = ma.fields.String()
    doa = ma.fields.Boolean()
    doa_evidence = ma.fields.String(allow_none=True)
    labor_minutes = ma.fields.Integer()
    parts_amount = ma.fields.Decimal(as_string=True)
    labor_amount = ma.fields.Decimal(as_string=True)
    claimed_amount = ma.fields.Decimal(as_string=True)
    flags = ma.fields.List(ma.fields.String())
    replacement_serial = ma.fields.String(allow_none=True)
    status = ma.fields.String()
    submitted_at = ma.fields.DateTime()
    decided_at = ma.fields.DateTime(allow_none=True)
    decision_note = ma.fields.String(allow_none=True)
    lines = ma.fields.List(ma.fields.Nested(ReportLineSchema))


class ReportQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    status = ma.fields.String(validate=ma.validate.OneOf(
        ["submitted", "approved", "rejected", "withheld"]))
    partner_code = ma.fields.String(validate=ma.validate.Length(max=32))


class ReportDecisionSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    decision = ma.fields.String(required=True,
                                validate=ma.validate.OneOf(["approve", "reject", "withhold"]))
    note = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))


class PayableQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    partner_code = ma.fields.String(validate=ma.validate.Length(max=32))
    period = ma.fields.String(validate=Pattern(r"^[0-9]{4}-[0-9]{2}$"))
    format = ma.fields.String(validate=ma.validate.OneOf(["json", "csv"]))


class PayableLineSchema(ma.Schema):
    kind = ma.fields.String(metadata={"enum": ["repair", "chargeback"]})
    report_id = ma.fields.Integer()
    partner_code = ma.fields.String()
    rma_number = ma.fields.String()
    period = ma.fields.String()
    amount = ma.fields.Decimal(as_string=True)


class PauseSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))


class ScorecardSchema(ma.Schema):
    partner_code = ma.fields.String()
    completed_repairs = ma.fields.Integer()
    open_repairs = ma.fields.Integer()
    turnaround_median_days = ma.fields.Float(allow_none=True)
    turnaround_p90_days = ma.fields.Float(allow_none=True)
    sla_compliance = ma.fields.Float(allow_none=True)
    first_time_fix_rate = ma.fields.Float(allow_none=True)
    doa_rate = ma.fields.Float(allow_none=True)
    parts_per_repair = ma.fields.Float(allow_none=True)


class CoreReturnSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    rma_number = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=20))
    part_number = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    quantity = ma.fields.Integer(strict=True, load_default=1,
                                 validate=ma.validate.Range(min=1, max=100))
