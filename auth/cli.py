"""`flask --app app users ...` and `tokens ...` commands."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from auth import service
from auth.roles import ALL_ROLES
from common.actors import Actor
from common.errors import DomainError

users_cli = AppGroup("users", help="Manage staff and partner-portal users.")
tokens_cli = AppGroup("tokens", help="Manage personal API tokens.")

CLI_ACTOR = Actor.system("cli")


def fail(error: DomainError) -> None:
    details = "; ".join(f"{k}: {', '.join(v)}" for k, v in error.errors.items())
    click.echo(f"error: {error.detail}" + (f" ({details})" if details else ""), err=True)
    raise SystemExit(1)


@users_cli.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(ALL_ROLES))
@click.option("--partner", "partner_code", help="Partner code (role partner only).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user_command(
    email: str, role: str, partner_code: str | None, password_stdin: bool
) -> None:
    """Create a user; the password is prompted for unless --password-stdin."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = service.create_user(
            email=email,
            role=role,
            password=password,
            partner_code=partner_code,
            actor=CLI_ACTOR,
            hash_profile=current_app.config["PASSWORD_HASH_PROFILE"],
        )
    except DomainError as error:
        fail(error)
    click.echo(f"created {user.role} user {user.email}", err=True)


@tokens_cli.command("create")
@click.argument("email")
@click.option("--name", default="", help="A label to recognise the token by.")
def create_token_command(email: str, name: str) -> None:
    """Print a new personal API token for EMAIL, alone on stdout."""
    try:
        issued = service.create_api_token(email=email, name=name, actor=CLI_ACTOR)
    except DomainError as error:
        fail(error)
    click.echo(issued.secret)
