"""`flask --app app partners ...` commands."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from auth.cli import CLI_ACTOR, fail
from common.errors import DomainError
from partners import service

partners_cli = AppGroup("partners", help="Manage service partners and their API keys.")


@partners_cli.command("create")
@click.argument("code")
@click.option("--name", required=True)
@click.option("--country", default=None, help="ISO 3166-1 alpha-2 code.")
@click.option("--email", "contact_email", default=None)
@click.option("--sla-days", default=10, type=click.IntRange(1, 365), show_default=True)
def create_partner_command(
    code: str, name: str, country: str | None, contact_email: str | None, sla_days: int
) -> None:
    """Register a service partner."""
    try:
        partner = service.create_partner(
            code=code,
            name=name,
            country=country,
            contact_email=contact_email,
            sla_days=sla_days,
            actor=CLI_ACTOR,
        )
    except DomainError as error:
        fail(error)
    click.echo(f"created partner {partner.code}", err=True)


@partners_cli.command("key")
@click.argument("code")
@click.option("--name", default="", help="A label to recognise the key by.")
def issue_key_command(code: str, name: str) -> None:
    """Print a new API key for partner CODE, alone on stdout."""
    try:
        issued = service.issue_partner_key(partner_code=code, name=name, actor=CLI_ACTOR)
    except DomainError as error:
        fail(error)
    click.echo(issued.secret)


@partners_cli.command("revoke-key")
@click.argument("code")
@click.argument("key_id", type=int)
@click.option("--reason", default="")
def revoke_key_command(code: str, key_id: int, reason: str) -> None:
    """Revoke API key KEY_ID of partner CODE."""
    try:
        service.revoke_partner_key(partner_code=code, key_id=key_id, reason=reason, actor=CLI_ACTOR)
    except DomainError as error:
        fail(error)
    click.echo(f"revoked key {key_id} of {code}", err=True)


sla_cli = AppGroup("sla", help="Partner SLA clocks.")


@sla_cli.command("check")
def sla_check_command() -> None:
    """Run the SLA check once (the same work as the scheduled job)."""
    from partners.jobs import sla_settings
    from partners.sla_service import check_slas

    counts = check_slas(settings=sla_settings())
    click.echo(", ".join(f"{level}: {count}" for level, count in counts.items()))


@partners_cli.command("charge-overdue-cores")
def charge_overdue_cores_command() -> None:
    """Create chargebacks for defective parts past their return date (once per line)."""
    from partners.reports import charge_overdue_cores

    created = charge_overdue_cores(actor=CLI_ACTOR)
    click.echo(f"{created} chargeback(s) created")
