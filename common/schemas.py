"""Schemas shared by several domains."""

import marshmallow as ma


class CredentialSchema(ma.Schema):
    """A bearer credential's public metadata (never its secret)."""

    id = ma.fields.Integer()
    prefix = ma.fields.String(metadata={"description": "First characters, to tell keys apart"})
    name = ma.fields.String()
    created_at = ma.fields.DateTime()
    last_used_at = ma.fields.DateTime(allow_none=True)
    revoked_at = ma.fields.DateTime(allow_none=True)
