"""Extensions created unbound here and bound to the app in ``create_app``."""

from __future__ import annotations

import http
from decimal import Decimal
from typing import Any

import marshmallow as ma
from apispec import BasePlugin
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_smorest.pagination import PaginationMetadataSchema
from flask_smorest.utils import deepupdate, prepare_response
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints so that Alembic migrations can alter them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class MergeResponseDocs(BasePlugin):
    """Merge what ``@doc(responses={"200": ...})`` says into the decorated 200 response.

    flask-smorest keys decorated responses by ``int`` and ``@doc`` keys them by ``str``;
    apispec then keeps one of the two, so a CSV alternative would replace the JSON one.
    """

    def operation_helper(self, path: str | None = None, operations: dict | None = None,
                         **kwargs: Any) -> None:
        for operation in (operations or {}).values():
            responses = operation.get("responses") if isinstance(operation, dict) else None
            for code in [c for c in responses or {} if isinstance(c, int)]:
                if str(code) in responses:
                    responses[str(code)] = deepupdate(responses.pop(code), responses[str(code)])


def decimal_properties(self: Any, field: ma.fields.Field, ret: dict, **kwargs: Any) -> dict:
    """Decimals sent as text are documented as strings; decimal bounds as JSON numbers."""
    if not isinstance(field, ma.fields.Decimal):
        return {}
    if field.as_string:
        ret.pop("minimum", None)
        ret.pop("maximum", None)
        return {"type": "string", "format": "decimal"}
    return {key: int(value) if value == value.to_integral_value() else float(value)
            for key, value in ret.items()
            if key in ("minimum", "maximum") and isinstance(value, Decimal)}


def nullable_reference(self: Any, field: ma.fields.Field, ret: dict, **kwargs: Any) -> dict:
    """A nullable nested schema is the schema or null, not the schema or any object.

    apispec writes ``anyOf: [{"type": "object", "nullable": true}, {"$ref": ...}]`` for
    OpenAPI 3.0, whose first branch admits every object; ``enum: [null]`` keeps it to null.
    """
    for branch in ret.get("anyOf") or ():
        if branch == {"type": "object", "nullable": True}:
            branch["enum"] = [None]
    return {}


class ProblemApi(Api):
    """flask-smorest Api whose errors are handled centrally as RFC 9457 problems."""

    PROBLEM_CONTENT_TYPE = "application/problem+json"

    def _init_spec(self, *, extra_plugins: Any = None, **kwargs: Any) -> None:
        super()._init_spec(extra_plugins=[*(extra_plugins or ()), MergeResponseDocs()],
                           **kwargs)
        self.ma_plugin.converter.add_attribute_function(decimal_properties)
        self.ma_plugin.converter.add_attribute_function(nullable_reference)

    def _register_pagination_header(self) -> None:
        # The header carries JSON text, which OpenAPI describes with `content`, not `schema`
        # (an object `schema` would mean the "simple" style: total,3,page,1,...).
        self.spec.components.header("PAGINATION", {
            "description": "Pagination metadata as JSON",
            "content": {"application/json": {"schema": PaginationMetadataSchema}},
        }, lazy=True)

    def _register_error_handlers(self) -> None:
        # common.errors registers one handler for the whole app instead.
        return None

    def _register_responses(self) -> None:
        # Same as flask-smorest's, but documented with the problem+json media type we send.
        from common.errors import ProblemSchema

        self.spec.components.schema("Problem", schema=ProblemSchema)
        for status in http.HTTPStatus:
            response: dict = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = ProblemSchema
            prepare_response(response, self.spec, self.PROBLEM_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": ProblemSchema}
        prepare_response(response, self.spec, self.PROBLEM_CONTENT_TYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True, compare_type=True)
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)
api = ProblemApi()
