"""One error format for the whole service.

The API answers with RFC 9457 problem details (``application/problem+json``) carrying an
``errors`` map of field -> messages; HTML pages get a friendly error page. Domain packages raise
subclasses of :class:`DomainError` and never build responses themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import marshmallow as ma
from flask import Flask, Response, g, json, render_template, request
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://aftercare.dev/problems/"


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every API error is sent."""

    class Meta:
        # RFC 9457 extension members: e.g. `allowed` on an illegal transition, `outcome` on a
        # bad RMA number, `on_hand` when stock runs short.
        unknown = ma.INCLUDE

    type = ma.fields.String(metadata={"description": "URI identifying the problem type"})
    title = ma.fields.String(metadata={"description": "Short summary of the problem type"})
    status = ma.fields.Integer(metadata={"description": "HTTP status code"})
    detail = ma.fields.String(metadata={"description": "Explanation of this occurrence"})
    instance = ma.fields.String(metadata={"description": "Request path"})
    request_id = ma.fields.String()
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "Field name -> list of messages"},
    )


class DomainError(Exception):
    """A business rule refused the operation; carries its HTTP status and problem type."""

    status: int = 400
    type: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Mapping[str, Sequence[str]] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = {key: list(value) for key, value in (errors or {}).items()}
        self.extra = dict(extra or {})


class ValidationFailed(DomainError):
    status = 422
    type = "validation-error"
    title = "Invalid input"


class NotFound(DomainError):
    status = 404
    type = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    type = "conflict"
    title = "Conflict"


class Forbidden(DomainError):
    status = 403
    type = "forbidden"
    title = "Forbidden"


def wants_json() -> bool:
    """API paths and clients that prefer JSON get problem details; pages get HTML."""
    if request.path.startswith("/api/") or request.path == "/healthz":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def problem_response(
    status: int,
    *,
    title: str,
    detail: str | None = None,
    type_: str | None = None,
    errors: Mapping[str, Sequence[str]] | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + type_ if type_ else "about:blank",
        "title": title,
        "status": status,
        "instance": request.path,
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = {key: list(value) for key, value in errors.items()}
    request_id = getattr(g, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _html_error(status: int, title: str, detail: str | None) -> tuple[str, int]:
    return render_template("errors/error.html", status=status, title=title, detail=detail), status


def flatten_webargs_messages(messages: Any) -> dict[str, list[str]]:
    """Turn webargs' ``{"json": {"field": [...]}}`` into ``{"field": [...]}`` (dotted paths)."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            flat.setdefault(prefix or "_body", []).extend(value)
        else:
            flat.setdefault(prefix or "_body", []).append(str(value))

    if isinstance(messages, Mapping):
        for location, inner in messages.items():
            # Drop the location level ("json", "query", ...) unless the payload is not a mapping.
            if isinstance(inner, Mapping):
                walk("", inner)
            else:
                walk(str(location) if location != "json" else "_body", inner)
    else:
        walk("", messages)
    return flat


def handle_http_exception(error: HTTPException) -> Any:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = None
    if "errors" in data:
        errors = data["errors"]
    elif "messages" in data:
        errors = flatten_webargs_messages(data["messages"])
    title = error.name
    detail = data.get("message") or error.description
    if status == 422 and errors:
        detail = "The request has invalid fields: " + ", ".join(sorted(errors))
    headers = dict(data.get("headers") or {})
    if not wants_json():
        return _html_error(status, title, detail)
    response = problem_response(
        status,
        title=title,
        detail=detail,
        type_=None if status >= 500 else title.lower().replace(" ", "-"),
        errors=errors,
        headers=headers,
    )
    # Keep headers Werkzeug attached, e.g. Allow on 405 and Retry-After on 429.
    for key, value in error.get_headers():
        if key.lower() != "content-type":
            response.headers.setdefault(key, value)
    return response


def handle_domain_error(error: DomainError) -> Any:
    if not wants_json():
        return _html_error(error.status, error.title, error.detail)
    return problem_response(
        error.status,
        title=error.title,
        detail=error.detail,
        type_=error.type,
        errors=error.errors or None,
        extra=error.extra or None,
    )


def handle_database_unavailable(error: DBAPIError) -> Any:
    """A lost database connection is a 503 the client may retry, not a 500."""
    from common.extensions import db

    log.warning("database unavailable: %s", error.__class__.__name__)
    db.session.rollback()
    if not wants_json():
        return _html_error(503, "Service unavailable", "Please try again in a moment.")
    return problem_response(
        503,
        title="Service unavailable",
        detail="The database is temporarily unavailable; please retry.",
        type_="unavailable",
        headers={"Retry-After": "5"},
    )


def handle_overflow(error: OverflowError | DataError) -> Any:
    """A number too large for the database is bad input, not a server fault."""
    from common.extensions import db

    db.session.rollback()
    if not wants_json():
        return _html_error(422, "Invalid input", "A number in the request is out of range.")
    return problem_response(422, title="Invalid input", type_="validation-error",
                            detail="A number in the request is out of range.")


NUMERIC_VALUE_OUT_OF_RANGE = "22003"  # SQLSTATE


def handle_data_error(error: DataError) -> Any:
    """PostgreSQL's "integer out of range" is the OverflowError of SQLite: bad input, a 422;
    so is text with a NUL character, which PostgreSQL cannot store.

    Any other data error is ours, and stays a server error.
    """
    if "cannot contain NUL" in str(error.orig):
        # psycopg refuses NUL characters in text before they reach PostgreSQL.
        from common.extensions import db

        db.session.rollback()
        message = "Text in the request contains a NUL character."
        if not wants_json():
            return _html_error(422, "Invalid input", message)
        return problem_response(422, title="Invalid input", type_="validation-error",
                                detail=message)
    if getattr(error.orig, "sqlstate", None) != NUMERIC_VALUE_OUT_OF_RANGE:
        raise error
    return handle_overflow(error)


def handle_unexpected(error: Exception) -> Any:
    log.exception("unhandled error", exc_info=error)
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    return handle_http_exception(InternalServerError())


def register_errorhandlers(app: Flask) -> None:
    """Register the problem-details / friendly-page handlers for the whole app."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(OperationalError, handle_database_unavailable)
    app.register_error_handler(OverflowError, handle_overflow)
    app.register_error_handler(DataError, handle_data_error)
    if not app.testing:
        app.register_error_handler(Exception, handle_unexpected)
