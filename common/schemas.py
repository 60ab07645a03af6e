"""Schemas shared by several domains."""

import re

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


class StrictBoolean(ma.fields.Boolean):
    """A JSON ``true`` or ``false`` and nothing else (Boolean also takes 1, "yes", "on" ...).

    For JSON bodies, where the document says ``boolean``; query strings keep ``Boolean``.
    """

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictFloat(ma.fields.Float):
    """A JSON number and nothing else (Float also takes "1.5"), for JSON bodies."""

    def _validated(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class Pattern(ma.validate.Regexp):
    """A regex read as OpenAPI documents read it (ECMA): it must match the whole text.

    marshmallow's Regexp uses ``re.match``, where ``$`` also matches before a final newline
    and ``\\d`` takes any Unicode digit; the code would then accept text the document refuses.
    apispec publishes ``regex.pattern`` unchanged, so keep patterns free of ``\\s``, whose
    meaning differs between Python and ECMA.
    """

    def __init__(self, regex: str, **kwargs: object) -> None:
        super().__init__(regex, flags=re.ASCII, **kwargs)

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value
