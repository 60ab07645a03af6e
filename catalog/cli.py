"""`flask --app app import KIND FILE.csv`."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from auth.cli import CLI_ACTOR
from catalog.import_rules import KINDS
from catalog.importing import ImportFileError, run_import


@click.command("import")
@with_appcontext
@click.argument("kind", type=click.Choice(list(KINDS)))
@click.argument("path", type=click.Path(dir_okay=False))
def import_command(kind: str, path: str) -> None:
    """Import a CSV file. Exit 0: all rows accepted; 1: some rejected; 2: file unreadable."""
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        click.echo(f"error: cannot read {path}: {exc.strerror}", err=True)
        raise SystemExit(2) from None
    try:
        report = run_import(kind, stream, actor=CLI_ACTOR, filename=path)
    except ImportFileError as exc:
        click.echo(f"error: {path}: {exc}", err=True)
        raise SystemExit(2) from None
    finally:
        stream.close()
    for error in report.errors:
        click.echo(f"row {error.row}: {error.field}: {error.reason}", err=True)
    if report.errors_truncated:
        click.echo(f"... only the first {len(report.errors)} errors are shown", err=True)
    click.echo(report.summary() + f" (import {report.import_id})")
    raise SystemExit(report.exit_code)
