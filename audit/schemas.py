"""API schemas for the audit trail."""

import marshmallow as ma


class AuditEventSchema(ma.Schema):
    seq = ma.fields.Integer()
    occurred_at = ma.fields.DateTime()
    actor_type = ma.fields.String()
    actor_id = ma.fields.String()
    actor_label = ma.fields.String()
    entity_type = ma.fields.String()
    entity_id = ma.fields.String()
    action = ma.fields.String()
    reason = ma.fields.String(allow_none=True)
    data = ma.fields.Dict()
    request_id = ma.fields.String(allow_none=True)
    hash = ma.fields.String()


class ChainVerificationSchema(ma.Schema):
    ok = ma.fields.Boolean()
    events_checked = ma.fields.Integer()
    first_broken_seq = ma.fields.Integer(allow_none=True)
    problem = ma.fields.String(allow_none=True)
