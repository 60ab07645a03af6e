"""Operator commands: users, tokens, partners and keys, demo data."""

from __future__ import annotations

from sqlalchemy import func, select

from auth.models import User
from catalog.models import Product, Purchase
from common.extensions import db
from partners.models import Partner
from tests.factories import bearer


def test_users_create_reads_the_password_from_stdin(app, runner):
    result = runner.invoke(args=["users", "create", "Ops@Example.test", "--role", "support",
                                 "--password-stdin"], input="a very long password\n")
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User))
    assert user.email == "ops@example.test" and user.role == "support"
    assert user.password_hash.startswith("$argon2id$")


def test_users_create_prompts_for_the_password(app, runner):
    result = runner.invoke(args=["users", "create", "ops@example.test", "--role", "admin"],
                           input="a very long password\na very long password\n")
    assert result.exit_code == 0, result.output


def test_users_create_refuses_bad_input_with_exit_1(app, runner):
    short = runner.invoke(args=["users", "create", "ops@example.test", "--role", "admin",
                                "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "password" in short.output
    runner.invoke(args=["users", "create", "ops@example.test", "--role", "admin",
                        "--password-stdin"], input="a very long password\n")
    again = runner.invoke(args=["users", "create", "ops@example.test", "--role", "admin",
                                "--password-stdin"], input="a very long password\n")
    assert again.exit_code == 1 and "already exists" in again.output


def test_tokens_create_prints_only_the_token(app, runner, client):
    runner.invoke(args=["users", "create", "ops@example.test", "--role", "finance",
                        "--password-stdin"], input="a very long password\n")
    result = runner.invoke(args=["tokens", "create", "ops@example.test"])
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert "\n" not in token and token.startswith("act_")
    assert client.get("/api/v1/me", headers=bearer(token)).json["role"] == "finance"
    assert runner.invoke(args=["tokens", "create", "nobody@example.test"]).exit_code == 1


def test_partners_create_and_key(app, runner, client):
    created = runner.invoke(args=["partners", "create", "fixit", "--name", "Fix It AB",
                                  "--country", "se"])
    assert created.exit_code == 0, created.output
    partner = db.session.scalar(select(Partner))
    assert (partner.code, partner.country) == ("FIXIT", "SE")
    key = runner.invoke(args=["partners", "key", "FIXIT"]).stdout.strip()
    assert key.startswith("acp_") and "\n" not in key
    assert client.get("/api/v1/partner/profile", headers=bearer(key)).json["code"] == "FIXIT"
    assert runner.invoke(args=["partners", "key", "NOPE"]).exit_code == 1
    assert runner.invoke(args=["partners", "create", "fixit", "--name", "Again"]).exit_code == 1
    revoked = runner.invoke(args=["partners", "revoke-key", "FIXIT", "1", "--reason", "leaked"])
    assert revoked.exit_code == 0
    assert client.get("/api/v1/partner/profile", headers=bearer(key)).status_code == 401


def test_demo_loads_once_and_prints_logins(app, runner):
    result = runner.invoke(args=["demo", "--purchases", "200"])
    assert result.exit_code == 0, result.output
    assert "admin@demo.aftercare.dev" in result.output and "password:" in result.output
    assert db.session.scalar(select(func.count(Purchase.id))) == 200
    assert db.session.scalar(select(func.count(Partner.id))) == 5
    assert db.session.scalar(select(func.count(User.id))) == 5
    from claims.models import Claim

    statuses = set(db.session.scalars(select(Claim.status)))
    assert {"approved", "needs_review", "rejected"} <= statuses
    again = runner.invoke(args=["demo", "--if-empty"])
    assert "nothing loaded" in again.output
    assert db.session.scalar(select(func.count(Product.id))) == 5


def test_fraud_demo_loads_a_scored_claim_history_once(app, runner):
    from fraud.models import FraudFlag
    from partners.models import HistoricRepair

    result = runner.invoke(args=["demo", "fraud", "--partners", "16", "--months", "12",
                                 "--seed", "3"])
    assert result.exit_code == 0, result.output
    claims = db.session.scalar(select(func.count(HistoricRepair.id)))
    assert f"demo fraud: {claims} claims of 16 partners" in result.output
    assert "scored in" in result.output and "/finance/flags" in result.output
    assert db.session.scalar(select(func.count(FraudFlag.id))) > 0
    again = runner.invoke(args=["demo", "fraud", "--if-empty"])
    assert "nothing loaded" in again.output
    assert db.session.scalar(select(func.count(HistoricRepair.id))) == claims


def test_demo_refuses_production(make_app):
    app = make_app(AFTERCARE_ENV="production")
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 2
