"""Operations commands: the rq worker and the outbox relay."""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from common import jobs
from common.extensions import db

outbox_cli = AppGroup("outbox", help="Transactional outbox of background jobs.")


@click.command("worker")
@with_appcontext
@click.option("--queue", "queues", multiple=True, help="Queue(s) to serve (default: the app's).")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
def worker_command(queues: tuple[str, ...], burst: bool) -> None:
    """Run an rq worker with the application preloaded (work horses fork from it)."""
    from rq import Worker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.config.get("REDIS_URL"):
        click.echo("error: REDIS_URL is not set; jobs run inline without a worker", err=True)
        raise SystemExit(2)
    jobs.set_worker_app(app)
    db.engine.dispose()  # no pooled connection may cross the fork into a work horse
    names = list(queues) or [app.config["RQ_DEFAULT_QUEUE"]]
    worker = Worker(
        [jobs.queue_for(app, name) for name in names], connection=jobs.redis_connection(app)
    )
    worker.work(burst=burst, with_scheduler=True)


@outbox_cli.command("relay")
@click.option("--loop", is_flag=True, help="Keep relaying until interrupted.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between passes.")
def relay_command(loop: bool, interval: float) -> None:
    """Enqueue outbox jobs that were committed but never reached Redis (or run them inline)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    while True:
        try:
            if app.config.get("REDIS_URL"):
                count = jobs.relay(app)
            else:
                count = jobs.run_pending_inline(app)
            if count or not loop:
                click.echo(f"relayed {count} job(s)")
        except Exception as exc:  # noqa: BLE001 - Redis/DB down: report and try again
            if not loop:
                raise
            click.echo(f"relay pass failed: {exc}", err=True)
        if not loop:
            return
        time.sleep(interval)


@outbox_cli.command("status")
def status_command() -> None:
    """Show how many jobs are pending and the age of the oldest."""
    summary = jobs.pending_summary()
    click.echo(f"pending: {summary['pending']}, oldest: {summary['oldest_pending_seconds']} s")


@outbox_cli.command("enqueue")
@click.argument("job_name")
def enqueue_command(job_name: str) -> None:
    """Record a parameterless job (e.g. audit.verify_chain, for cron) in the outbox."""
    if job_name not in jobs.registered_jobs():
        click.echo(
            f"error: unknown job {job_name}; known: {', '.join(jobs.registered_jobs())}", err=True
        )
        raise SystemExit(2)
    row = jobs.enqueue_job(job_name)
    db.session.commit()
    click.echo(f"recorded outbox job {row.id}")
