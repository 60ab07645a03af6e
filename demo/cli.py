"""`flask --app app demo`: load the demo data set and print the demo logins."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from auth import service as auth_service
from auth.roles import PARTNER, STAFF_ROLES
from catalog.importing import run_import
from catalog.models import Product, Purchase
from common.actors import Actor
from common.extensions import db
from demo import data
from partners import service as partner_service

DEMO_ACTOR = Actor.system("demo")


def demo_password(role: str) -> str:
    """Demo-only passwords, printed at load time; never use the demo data in production."""
    return f"{role}-demo-pass"


@click.command("demo")
@with_appcontext
@click.argument("what", type=click.Choice(["base", "fraud"]), default="base")
@click.option("--if-empty", is_flag=True, help="Do nothing when that data set is already there.")
@click.option("--purchases", default=3000, show_default=True, help="Purchases to generate.")
@click.option("--seed", default=7, show_default=True)
@click.option("--strength", type=click.Choice(["blatant", "subtle", "none"]), default="blatant",
              show_default=True, help="How hard the fraud demo's fraudsters push.")
@click.option("--partners", default=50, show_default=True, help="Partners in the fraud demo.")
@click.option("--months", default=24, show_default=True, help="Months of fraud demo history.")
def demo_command(what: str, if_empty: bool, purchases: int, seed: int, strength: str,
                 partners: int, months: int) -> None:
    """Load demo data: ``base`` (products, purchases, partners, one user per role, claims) or
    ``fraud`` (a synthetic two-year claim history with known fraud, then scored)."""
    if current_app.config["AFTERCARE_ENV"] == "production":
        click.echo("error: refusing to load demo data in production", err=True)
        raise SystemExit(2)
    if what == "fraud":
        _fraud_demo(if_empty=if_empty, seed=seed, strength=strength, partners=partners,
                    months=months)
        return
    if if_empty and db.session.scalar(select(func.count(Product.id))):
        click.echo("demo: database already has data, nothing loaded")
        return
    today = datetime.now(UTC).date()
    for kind, payload in (
        ("products", data.products_csv()),
        ("parts", data.parts_csv()),
        ("bom", data.bom_csv()),
        ("purchases", data.purchases_csv(purchases, seed=seed, today=today)),
    ):
        report = run_import(kind, io.BytesIO(payload), actor=DEMO_ACTOR, filename=f"demo-{kind}")
        click.echo("demo: " + report.summary())
    profile = current_app.config["PASSWORD_HASH_PROFILE"]
    for code, name, country, sla in data.PARTNERS:
        if partner_service.find_partner(code) is None:
            partner_service.create_partner(
                code=code, name=name, country=country, sla_days=sla, actor=DEMO_ACTOR
            )
    logins = [(f"{role}@demo.aftercare.dev", role, None) for role in STAFF_ROLES]
    logins.append(("partner@nordfix.demo.aftercare.dev", PARTNER, "NORDFIX"))
    click.echo("\nDemo logins (http://127.0.0.1:5000/login):")
    for email, role, partner_code in logins:
        if auth_service.find_user(email) is None:
            auth_service.create_user(
                email=email,
                role=role,
                password=demo_password(role),
                partner_code=partner_code,
                actor=DEMO_ACTOR,
                hash_profile=profile,
            )
        click.echo(f"  {role:<10} {email:<38} password: {demo_password(role)}")
    _demo_claims(claims_to_file=12)


def _fraud_demo(*, if_empty: bool, seed: int, strength: str, partners: int,
                months: int) -> None:
    from demo.fraud import load_fraud_demo
    from fraud.service import score_all
    from partners.models import HistoricRepair

    if if_empty and db.session.scalar(select(func.count(HistoricRepair.id))):
        click.echo("demo fraud: a claim history is already loaded, nothing loaded")
        return
    loaded = load_fraud_demo(seed, strength=strength, partners=partners, months=months)
    click.echo(f"demo fraud: {loaded['claims']} claims of {loaded['partners']} partners "
               f"({loaded['months']}), {loaded['fraud_partners']} of them fraudulent")
    summary = score_all(actor=DEMO_ACTOR)
    click.echo(f"demo fraud: scored in {summary.seconds:.1f} s: {summary.flagged} partner(s) "
               f"flagged, {summary.rule_hits} claim(s) breaking a hard rule; see /finance/flags")


def _demo_claims(*, claims_to_file: int) -> None:
    """A few claims in every state, filed through the real use case."""
    from claims.models import Claim
    from claims.service import ClaimInput, file_claim
    from claims.settings import claim_settings
    from common.i18n import LANGUAGES

    if db.session.scalar(select(func.count(Claim.id))):
        return
    purchases = db.session.scalars(
        select(Purchase).order_by(Purchase.purchase_date.desc()).limit(claims_to_file)).all()
    settings = claim_settings(current_app.config)
    faults = ["display", "battery", "no_power", "audio", "water_damage", "charging"]
    for index, purchase in enumerate(purchases):
        file_claim(
            ClaimInput(
                serial_number=purchase.serial_number, email=purchase.customer_email,
                fault_category=faults[index % len(faults)],
                description="Demo claim: the unit stopped working after a software update.",
                requested_remedy="refund" if index % 4 == 3 else "repair",
                language=LANGUAGES[index % len(LANGUAGES)],
                customer_name=purchase.customer_name,
                return_address={"name": purchase.customer_name, "line1": "Demo street 1",
                                "postal_code": "11122", "city": "Stockholm",
                                "country": purchase.country},
            ),
            actor=Actor.customer(purchase.customer_email), settings=settings, source="web",
        )
    click.echo(f"demo: {len(purchases)} claims filed (see /staff/claims as support)")
