"""Application factory: ``create_app()`` reads as the table of contents of the service."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from common import pool_ping, sqlite_engine
from common.config import load_config
from common.extensions import api, csrf, db, limiter, login_manager, migrate


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Aftercare app; ``config`` overrides what the environment says."""
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(load_config(app.instance_path, config))
    # SQLite (the embedded default): WAL pragmas and writers queued on a file lock.
    sqlite_engine.install_pragmas()
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = sqlite_engine.engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"],
        pool_ping.engine_options(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {},
                                 app.config["DB_PING_AFTER_IDLE_SECONDS"]))
    register_extensions(app)
    with app.app_context():  # Flask-SQLAlchemy made the engine in init_app
        pool_ping.install(db.engine, app.config["DB_PING_AFTER_IDLE_SECONDS"],
                          pre_ping=app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_pre_ping"])
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    from flask_babel import get_locale

    from audit.service import install_session_hooks as install_audit_hooks
    from auth.access import init_login
    from common import fastsql, jobs
    from common.i18n import babel, select_locale
    from common.security import register_request_hooks

    _import_models()
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"))
    login_manager.init_app(app)
    init_login(app)
    csrf.init_app(app)
    limiter.init_app(app)
    api.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["get_locale"] = get_locale
    install_audit_hooks()
    jobs.install_session_hooks()
    fastsql.install_hooks()
    register_request_hooks(app)
    _import_jobs()


def _import_models() -> None:
    # Every model module, so metadata (and Alembic autogenerate) sees every table.
    import audit.models  # noqa: F401
    import auth.models  # noqa: F401
    import catalog.models  # noqa: F401
    import claims.models  # noqa: F401
    import common.jobs  # noqa: F401
    import fraud.models  # noqa: F401
    import inventory.models  # noqa: F401
    import messaging.models  # noqa: F401
    import partners.importing  # noqa: F401 - registers the partners and repairs import kinds
    import partners.models  # noqa: F401
    import rma.models  # noqa: F401
    import webhooks.models  # noqa: F401


def _import_jobs() -> None:
    import audit.jobs  # noqa: F401
    import claims.jobs  # noqa: F401
    import fraud.jobs  # noqa: F401
    import messaging.jobs  # noqa: F401
    import partners.jobs  # noqa: F401
    import rma.jobs  # noqa: F401
    import webhooks.jobs  # noqa: F401


def register_blueprints(app: Flask) -> None:
    from audit.views import api_bp as audit_api
    from auth.views import api_bp as identity_api
    from auth.views import bp as auth_pages
    from catalog.views import api_bp as catalog_api
    from claims.pages import bp as claims_pages
    from claims.views import api_bp as claims_api
    from common.views import bp as core_pages
    from fraud.pages import bp as fraud_desk
    from fraud.views import api_bp as fraud_api
    from inventory.pages import bp as warehouse_pages
    from inventory.views import api_bp as warehouse_api
    from partners.pages import bp as partner_portal
    from partners.views import api_bp as partners_api
    from rma.views import api_bp as rmas_api
    from webhooks.views import api_bp as webhooks_api

    app.register_blueprint(core_pages)
    app.register_blueprint(auth_pages)
    app.register_blueprint(claims_pages)
    app.register_blueprint(warehouse_pages)
    app.register_blueprint(partner_portal)
    app.register_blueprint(fraud_desk)
    api_blueprints = (identity_api, partners_api, catalog_api, audit_api, claims_api, rmas_api,
                      warehouse_api, webhooks_api, fraud_api)
    for blueprint in api_blueprints:
        api.register_blueprint(blueprint)
        # The API authenticates with bearer tokens only (cookies are ignored): no CSRF there.
        csrf.exempt(app.blueprints[blueprint.name])


def register_errorhandlers(app: Flask) -> None:
    from common.errors import register_errorhandlers as register

    register(app)


def register_commands(app: Flask) -> None:
    from audit.cli import audit_cli
    from auth.cli import tokens_cli, users_cli
    from catalog.cli import import_command
    from common.cli import outbox_cli, worker_command
    from demo.cli import demo_command
    from fraud.cli import fraud_cli
    from partners.cli import partners_cli, sla_cli

    for command in (
        audit_cli,
        users_cli,
        tokens_cli,
        partners_cli,
        import_command,
        outbox_cli,
        worker_command,
        demo_command,
        sla_cli,
        fraud_cli,
    ):
        app.cli.add_command(command)
