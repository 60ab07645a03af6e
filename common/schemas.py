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


def schema_values(obj: object, schema: ma.Schema) -> dict:
    """``obj``'s attributes named by ``schema``'s fields, still unserialised.

    For a response that adds fields to a model (a secret shown once, a BOM): the response
    schema serialises the whole dict once, so nothing is dumped twice.
    """
    return {name: getattr(obj, name) for name in schema.fields}
