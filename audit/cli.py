"""`flask --app app audit ...` commands."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from audit.service import verify_chain

audit_cli = AppGroup("audit", help="Audit trail tools.")


@audit_cli.command("verify")
def verify_command() -> None:
    """Check the hash chain; exit 1 naming the first broken event."""
    result = verify_chain()
    if result.ok:
        click.echo(f"audit chain OK: {result.events_checked} events verified")
        return
    click.echo(
        f"audit chain BROKEN at seq {result.first_broken_seq}: {result.problem} "
        f"({result.events_checked} events verified before it)",
        err=True,
    )
    raise SystemExit(1)
