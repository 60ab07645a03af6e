"""Configuration from environment variables, with safe development defaults.

Nothing secret gets a production default: with ``AFTERCARE_ENV=production`` the app refuses to
start until ``SECRET_KEY`` and ``DATABASE_URL`` are set.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any


class ConfigError(RuntimeError):
    """Raised at start-up when the configuration is incomplete or inconsistent."""


def _env_number(name: str, default: Any, convert: Any, kind: str) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return convert(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def _env_float(name: str, default: float) -> float:
    value = _env_number(name, default, float, "a number")
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {os.environ.get(name)!r}")
    return value


def _env_stage_limits(name: str, default: str) -> dict[str, float]:
    """``stage=days,stage=days`` (e.g. ``diagnosing=2,awaiting_parts=7``)."""
    raw = os.environ.get(name) or default
    limits: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        stage, _, days = item.partition("=")
        try:
            limits[stage.strip()] = float(days)
        except ValueError as exc:
            raise ConfigError(f"{name}: {item!r} is not stage=days") from exc
        if limits[stage.strip()] <= 0:
            raise ConfigError(f"{name}: {item!r} must give a positive number of days")
    return limits


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _development_secret(instance_path: str) -> str:
    """A random key kept in the instance folder, so dev sessions survive a restart."""
    path = os.path.join(instance_path, "secret_key")
    try:
        with open(path, encoding="ascii") as handle:
            key = handle.read().strip()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key)
    except OSError:
        pass  # read-only instance folder: a per-process key still works
    return key


def normalize_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgres://`` / ``postgresql://`` URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load_config(instance_path: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the configuration mapping from the environment, then apply ``overrides``."""
    env = os.environ.get("AFTERCARE_ENV", "development")
    production = env == "production"
    database_url = os.environ.get("DATABASE_URL") or (
        "sqlite:///" + os.path.join(instance_path, "aftercare.sqlite3")
    )
    redis_url = os.environ.get("REDIS_URL") or None
    config: dict[str, Any] = {
        "AFTERCARE_ENV": env,
        "SECRET_KEY": os.environ.get("SECRET_KEY")
        or (None if production else _development_secret(instance_path)),
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        # A pooled connection is pinged before use when it rested this long (0: at every
        # checkout, SQLAlchemy's pre-ping); see common/pool_ping.py.
        "DB_PING_AFTER_IDLE_SECONDS": _env_number(
            "DB_PING_AFTER_IDLE_SECONDS", 1.0, float, "a number of seconds"),
        "REDIS_URL": redis_url,
        "RQ_DEFAULT_QUEUE": os.environ.get("RQ_DEFAULT_QUEUE", "aftercare"),
        "OUTBOX_REDISPATCH_AFTER_SECONDS": _env_int("OUTBOX_REDISPATCH_AFTER_SECONDS", 600),
        # How often a worker runs rq's upkeep: retrying jobs a dead worker abandoned and taking
        # over the scheduler (which runs delayed retries) when its holder died. rq's own default
        # is 10 minutes, and an idle worker wakes only once per dequeue timeout (worker TTL less
        # 15 s), so both are shortened: a dead host's work resumes within about three minutes.
        "RQ_MAINTENANCE_SECONDS": max(1, _env_int("RQ_MAINTENANCE_SECONDS", 60)),
        "RQ_WORKER_TTL_SECONDS": max(16, _env_int("RQ_WORKER_TTL_SECONDS", 75)),
        # The relay sends up to this many outbox rows in one rq job (one work-horse fork).
        "OUTBOX_RELAY_BATCH": max(1, _env_int("OUTBOX_RELAY_BATCH", 20)),
        "OUTBOX_RELAY_INTERVAL_SECONDS": _env_float("OUTBOX_RELAY_INTERVAL_SECONDS", 0.2),
        # Request bodies above this are refused with 413 before any parsing.
        "MAX_CONTENT_LENGTH": _env_int("MAX_CONTENT_LENGTH", 1 * 1024 * 1024),
        "IMPORT_MAX_BYTES": _env_int("IMPORT_MAX_BYTES", 64 * 1024 * 1024),
        "SESSION_COOKIE_SECURE": _env_bool("SESSION_COOKIE_SECURE", production),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_IDLE_TIMEOUT": timedelta(minutes=_env_int("SESSION_IDLE_MINUTES", 30)),
        "SESSION_ABSOLUTE_TIMEOUT": timedelta(hours=_env_int("SESSION_ABSOLUTE_HOURS", 12)),
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=_env_int("SESSION_ABSOLUTE_HOURS", 12)),
        "HSTS_SECONDS": _env_int("HSTS_SECONDS", 31536000),
        "PASSWORD_HASH_PROFILE": os.environ.get("PASSWORD_HASH_PROFILE", "default"),
        "RATELIMIT_ENABLED": _env_bool("RATELIMIT_ENABLED", True),
        "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_PUBLIC": os.environ.get("RATELIMIT_PUBLIC", "30 per minute"),
        "RATELIMIT_LOGIN": os.environ.get("RATELIMIT_LOGIN", "10 per minute"),
        "WTF_CSRF_TIME_LIMIT": None,
        # Claims and customer communication
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000"),
        "UPLOAD_DIR": os.environ.get("UPLOAD_DIR") or os.path.join(instance_path, "uploads"),
        "CLAIM_FORM_MAX_BYTES": _env_int("CLAIM_FORM_MAX_BYTES", 30 * 1024 * 1024),
        "DOA_REPLACEMENT_DAYS": _env_int("DOA_REPLACEMENT_DAYS", 30),
        "REPEAT_CLAIMS_REVIEW_THRESHOLD": _env_int("REPEAT_CLAIMS_REVIEW_THRESHOLD", 2),
        "REVIEW_DAYS": _env_int("REVIEW_DAYS", 2),
        "RMA_SEND_WITHIN_DAYS": _env_int("RMA_SEND_WITHIN_DAYS", 30),
        "INSPECTION_DAYS": _env_int("INSPECTION_DAYS", 3),
        "SUPPORT_EMAIL": os.environ.get("SUPPORT_EMAIL", "support@aftercare.invalid"),
        "SLA_ESCALATE_AFTER_DAYS": _env_int("SLA_ESCALATE_AFTER_DAYS", 2),
        # How long a repair may stay in each stage (a partner's own limits override these).
        "SLA_STAGE_LIMITS": _env_stage_limits(
            "SLA_STAGE_LIMITS",
            "received_at_partner=1,diagnosing=2,awaiting_parts=7,repairing=3,repaired=1,"
            "unrepairable=1,replaced=1"),
        "CORE_RETURN_DAYS": _env_int("CORE_RETURN_DAYS", 30),
        # Plain-http webhook endpoints only outside production (https is required there).
        "WEBHOOK_ALLOW_HTTP": _env_bool("WEBHOOK_ALLOW_HTTP", not production),
        "RETURN_TO_ADDRESS": tuple(
            line.strip()
            for line in os.environ.get(
                "RETURN_TO_ADDRESS",
                "Aftercare Returns|Dock 4, Returvagen 12|412 63 Goteborg|Sweden",
            ).split("|")
            if line.strip()
        ),
        "MAIL_BACKEND": os.environ.get("MAIL_BACKEND", "file"),
        "MAIL_FILE_DIR": os.environ.get("MAIL_FILE_DIR") or os.path.join(instance_path, "mail"),
        "MAIL_FROM": os.environ.get("MAIL_FROM", "Aftercare <no-reply@aftercare.invalid>"),
        "MAIL_SMTP_HOST": os.environ.get("MAIL_SMTP_HOST", "localhost"),
        "MAIL_SMTP_PORT": _env_int("MAIL_SMTP_PORT", 587),
        "MAIL_SMTP_USER": os.environ.get("MAIL_SMTP_USER"),
        "MAIL_SMTP_PASSWORD": os.environ.get("MAIL_SMTP_PASSWORD"),
        "MAIL_SMTP_STARTTLS": _env_bool("MAIL_SMTP_STARTTLS", True),
        "BABEL_DEFAULT_LOCALE": "en",
        "BABEL_TRANSLATION_DIRECTORIES": os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "translations"
        ),  # the session's own timeouts bound the token's life
        # flask-smorest / OpenAPI
        "API_TITLE": "Aftercare API",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": os.environ.get(
            "OPENAPI_SWAGGER_UI_URL", "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"
        ),
        "API_SPEC_OPTIONS": {
            "components": {
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "Staff API token or partner API key",
                    }
                }
            }
        },
    }
    if overrides:
        config.update(overrides)
    database_chosen = bool(os.environ.get("DATABASE_URL")) or bool(
        overrides and "SQLALCHEMY_DATABASE_URI" in overrides
    )
    validate_config(config, database_chosen=database_chosen)
    return config


def validate_config(config: Mapping[str, Any], *, database_chosen: bool) -> None:
    """Fail at start-up when production configuration is incomplete."""
    if config.get("AFTERCARE_ENV") != "production":
        return
    missing = [key for key in ("SECRET_KEY",) if not config.get(key)]
    if not database_chosen:
        # The embedded SQLite file is a development default, never a silent production choice.
        missing.append("DATABASE_URL")
    if missing:
        raise ConfigError("production configuration incomplete, set: " + ", ".join(missing))
    if len(str(config["SECRET_KEY"])) < 32:
        raise ConfigError("SECRET_KEY must be at least 32 characters in production")
