"""Configuration defaults, the production guard and the embedded SQLite settings."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app import create_app
from common.config import ConfigError, load_config, normalize_database_url
from common.extensions import db


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "AFTERCARE_ENV",
                 "SESSION_COOKIE_SECURE", "MAX_CONTENT_LENGTH"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_give_an_embedded_sqlite_database_and_inline_jobs(clean_env, tmp_path):
    config = load_config(str(tmp_path))
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/aftercare.sqlite3"
    assert config["REDIS_URL"] is None
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert len(config["SECRET_KEY"]) >= 32
    assert config["SESSION_COOKIE_HTTPONLY"] and config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_environment_selects_postgresql_and_redis(clean_env, tmp_path):
    clean_env.setenv("DATABASE_URL", "postgres://u@db/aftercare")
    clean_env.setenv("REDIS_URL", "redis://cache:6379/0")
    config = load_config(str(tmp_path))
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db/aftercare"
    assert config["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/0"


def test_production_refuses_to_start_without_secrets(clean_env, tmp_path):
    clean_env.setenv("AFTERCARE_ENV", "production")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config(str(tmp_path))
    clean_env.setenv("SECRET_KEY", "s" * 40)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_config(str(tmp_path))
    clean_env.setenv("DATABASE_URL", "postgresql://u@db/aftercare")
    config = load_config(str(tmp_path))
    assert config["SESSION_COOKIE_SECURE"] is True


def test_production_refuses_a_short_secret(clean_env, tmp_path):
    clean_env.setenv("AFTERCARE_ENV", "production")
    clean_env.setenv("SECRET_KEY", "short")
    clean_env.setenv("DATABASE_URL", "postgresql://u@db/aftercare")
    with pytest.raises(ConfigError, match="at least 32"):
        load_config(str(tmp_path))


def test_bad_integer_settings_fail_at_start(clean_env, tmp_path):
    clean_env.setenv("MAX_CONTENT_LENGTH", "lots")
    with pytest.raises(ConfigError, match="MAX_CONTENT_LENGTH"):
        load_config(str(tmp_path))


def test_normalize_database_url_keeps_other_urls():
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"
    assert normalize_database_url("postgresql+psycopg://h/d") == "postgresql+psycopg://h/d"


def test_sqlite_runs_in_wal_mode_with_foreign_keys(clean_env, tmp_path):
    from common.sqlite_engine import WAL_AUTOCHECKPOINT_PAGES

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.sqlite3"})
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert db.session.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert (db.session.execute(text("PRAGMA wal_autocheckpoint")).scalar()
                == WAL_AUTOCHECKPOINT_PAGES > 1000)
        db.session.remove()
        db.engine.dispose()


def test_development_secret_key_is_kept_in_the_instance_folder(clean_env, tmp_path):
    first = load_config(str(tmp_path))["SECRET_KEY"]
    assert (tmp_path / "secret_key").read_text() == first
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert load_config(str(tmp_path))["SECRET_KEY"] == first
