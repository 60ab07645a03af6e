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
@click.option("--if-empty", is_flag=True, help="Do nothing when products already exist.")
@click.option("--purchases", default=3000, show_default=True, help="Purchases to generate.")
@click.option("--seed", default=7, show_default=True)
def demo_command(if_empty: bool, purchases: int, seed: int) -> None:
    """Load products with BOMs, parts, purchases, five partners and one user per role."""
    if current_app.config["AFTERCARE_ENV"] == "production":
        click.echo("error: refusing to load demo data in production", err=True)
        raise SystemExit(2)
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
