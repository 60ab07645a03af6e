"""Request ids and security headers on every response."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from common.actors import current_request_id

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# Pages use no inline script; the Swagger UI page is the one exception (see below).
DEFAULT_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def _docs_csp(cdn: str) -> str:
    origin = re.match(r"^(https?://[^/]+)", cdn)
    source = origin.group(1) if origin else ""
    return (
        f"default-src 'self'; img-src 'self' data: {source}; style-src 'self' 'unsafe-inline' "
        f"{source}; script-src 'self' 'unsafe-inline' {source}; object-src 'none'; "
        "frame-ancestors 'none'"
    )


def register_request_hooks(app: Flask) -> None:
    """Assign a request id (honouring a sane ``X-Request-ID``) and set security headers."""

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        g.request_id_token = current_request_id.set(g.request_id)

    @app.teardown_request
    def clear_request_id(exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            current_request_id.reset(token)

    docs_csp = _docs_csp(app.config.get("OPENAPI_SWAGGER_UI_URL") or "")

    @app.after_request
    def set_security_headers(response: Response) -> Response:
        headers = response.headers
        if getattr(g, "request_id", None):
            headers["X-Request-ID"] = g.request_id
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        is_docs = request.path == "/api/docs"
        headers.setdefault("Content-Security-Policy", docs_csp if is_docs else DEFAULT_CSP)
        if app.config.get("HSTS_SECONDS"):
            # Browsers ignore HSTS received over plain HTTP, so sending it always is harmless.
            hsts = f"max-age={app.config['HSTS_SECONDS']}; includeSubDomains"
            headers.setdefault("Strict-Transport-Security", hsts)
        if request.path.startswith("/api/") or "Set-Cookie" in headers:
            headers.setdefault("Cache-Control", "no-store")
        return response
