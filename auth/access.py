"""Flask glue for identities: session and bearer loaders, and role checks for views."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, current_app, redirect, request, url_for
from flask_login import current_user
from flask_smorest import Blueprint
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from auth import service
from auth.roles import PARTNER
from common.extensions import login_manager

BEARER_SECURITY = [{"bearer": []}]


def _problem_ref(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _is_api_request() -> bool:
    return request.path.startswith("/api/")


def init_login(app: Flask) -> None:
    """Wire Flask-Login: cookies carry a revocable session token; the API uses bearer tokens."""
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user_from_session(token: str):  # noqa: ANN202
        if _is_api_request():
            return None  # the API ignores cookies, so it needs no CSRF protection
        return service.load_login_session(
            token,
            idle_timeout=current_app.config["SESSION_IDLE_TIMEOUT"],
            absolute_timeout=current_app.config["SESSION_ABSOLUTE_TIMEOUT"],
        )

    @login_manager.request_loader
    def load_user_from_bearer(req):  # noqa: ANN001, ANN202
        if not req.path.startswith("/api/"):
            return None
        header = req.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        return service.authenticate_bearer(secret.strip())

    @login_manager.unauthorized_handler
    def unauthorized():  # noqa: ANN202
        if _is_api_request():
            raise Unauthorized(
                "Send a valid staff API token or partner API key as 'Authorization: Bearer ...'.",
                www_authenticate=WWWAuthenticate("bearer", {"realm": "aftercare"}),
            )
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def roles_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Page or API view guard: 401/login redirect when anonymous, 403 for other roles.

    On API views it also documents the bearer security and the 401/403 answers in OpenAPI.
    """

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                result = login_manager.unauthorized()
                return result
            if roles and current_user.role not in roles:
                raise Forbidden("Your role does not allow this.")
            return func(*args, **kwargs)

        return Blueprint.doc(
            security=BEARER_SECURITY,
            responses={
                "401": _problem_ref("Missing, invalid or revoked credentials"),
                "403": _problem_ref("Authenticated, but the role does not allow this"),
            },
        )(wrapper)

    return decorator


def current_partner_id() -> int | None:
    """The partner the caller acts for (partner users and partner keys), else None."""
    if current_user.is_authenticated and current_user.role == PARTNER:
        return current_user.partner_id
    return None
