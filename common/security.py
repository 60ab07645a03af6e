"""Request ids and security headers on every response."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, g, request, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from common.actors import current_request_id

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# Pages use no inline script; the Swagger UI page is the one exception (see below).
DEFAULT_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


# Endpoints whose bodies may exceed MAX_CONTENT_LENGTH, with the config key of their own limit.
BODY_LIMITS = {
    "claims_pages.new_claim": "CLAIM_FORM_MAX_BYTES",  # the claim form carries photos
    "catalog.import_csv": "IMPORT_MAX_BYTES",
}

# What browsers drop from the start of a URL (C0 controls and space).
_URL_LEADING_JUNK = "".join(chr(code) for code in range(0x21))


def _docs_csp(cdn: str) -> str:
    origin = re.match(r"^(https?://[^/]+)", cdn)
    source = origin.group(1) if origin else ""
    return (
        f"default-src 'self'; img-src 'self' data: {source}; style-src 'self' 'unsafe-inline' "
        f"{source}; script-src 'self' 'unsafe-inline' {source}; object-src 'none'; "
        "frame-ancestors 'none'"
    )


def leaves_site(location: str, host: str) -> bool:
    """Whether a browser would follow ``location`` to another site (or a script URL)."""
    # Read it as a browser does: leading controls dropped, tabs and newlines removed
    # (urlsplit does that too), a backslash taken for a slash: "/\t/evil" is "//evil".
    try:
        target = urlsplit(location.lstrip(_URL_LEADING_JUNK).replace("\\", "/"))
    except ValueError:  # e.g. an unclosed "[" IPv6 host: nothing to send a browser to
        return True
    return bool(target.scheme or target.netloc) and target.netloc != host


def register_request_hooks(app: Flask) -> None:
    """Assign a request id (honouring a sane ``X-Request-ID``) and set security headers."""
    app.session_interface = CookieSessionInterface()

    @app.url_value_preprocessor
    def apply_body_limit(endpoint: str | None, values: dict[str, Any] | None) -> None:
        # URL value preprocessors run before every before_request hook. The CSRF check is such
        # a hook and parses the form, so a limit set later, in the view, would come too late:
        # the app-wide MAX_CONTENT_LENGTH would already have refused a form with photos.
        key = BODY_LIMITS.get(endpoint or "")
        if key:
            request.max_content_length = current_app.config[key]

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
    static_headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    ]
    if app.config.get("HSTS_SECONDS"):
        # Browsers ignore HSTS received over plain HTTP, so sending it always is harmless.
        static_headers.append(("Strict-Transport-Security",
                               f"max-age={app.config['HSTS_SECONDS']}; includeSubDomains"))

    @app.after_request
    def set_security_headers(response: Response) -> Response:
        headers = response.headers
        request_id = g.get("request_id")
        if request_id:
            headers["X-Request-ID"] = request_id
        path = request.path
        present = {name.lower() for name, _value in headers.items()}
        # One pass over the response's headers, not one per default: every answer pays this.
        headers.extend([(name, value) for name, value in static_headers
                        if name.lower() not in present])
        if "content-security-policy" not in present:
            headers["Content-Security-Policy"] = docs_csp if path == "/api/docs" else DEFAULT_CSP
        if "cache-control" not in present and (path.startswith("/api/")
                                               or "set-cookie" in present):
            headers["Cache-Control"] = "no-store"
        # Redirects never leave the site, whatever a ``next`` parameter slipped through.
        location = headers.get("Location")
        if location and leaves_site(location, request.host):
            headers["Location"] = url_for("core.index")
        return response


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, without building the signer when there is no cookie.

    API clients send no session cookie; building the signing serializer for each of their
    requests only to find nothing to verify is a measurable part of a small request. Without a
    secret key the app still gets Flask's null session (and its clear error).
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

