"""`flask --app app fraud ...` commands."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from auth.cli import CLI_ACTOR

fraud_cli = AppGroup("fraud", help="Fraud scoring of partners' repair claims.")


@fraud_cli.command("score")
def score_command() -> None:
    """Score every partner and claim once (the same work as the scheduled job)."""
    from fraud.service import score_all

    summary = score_all(actor=CLI_ACTOR)
    click.echo(
        f"scored {summary.claims} claims of {summary.partners} partners "
        f"(window ending {summary.as_of or '-'}) in {summary.seconds:.2f} s: "
        f"{summary.flagged} partner(s) flagged, {summary.insufficient} with insufficient "
        f"evidence, {summary.rule_hits} claim(s) breaking a hard rule; flags created "
        f"{summary.created}, updated {summary.updated}, reopened {summary.reopened}")
