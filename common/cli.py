"""Operations commands: the rq worker and the outbox relay."""

from __future__ import annotations

import signal
import threading

import click
from flask import Flask, current_app
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
    from common.rq_worker import Worker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.config.get("REDIS_URL"):
        click.echo("error: REDIS_URL is not set; jobs run inline without a worker", err=True)
        raise SystemExit(2)
    jobs.set_worker_app(app)
    warm_up(app)
    db.engine.dispose()  # no pooled connection may cross the fork into a work horse
    names = list(queues) or [app.config["RQ_DEFAULT_QUEUE"]]

    def work() -> None:
        worker = Worker([jobs.queue_for(app, name) for name in names],
                        connection=jobs.redis_connection(app),
                        maintenance_interval=app.config["RQ_MAINTENANCE_SECONDS"],
                        worker_ttl=app.config["RQ_WORKER_TTL_SECONDS"])
        worker.work(burst=burst, with_scheduler=True)

    if not burst:
        work()
        return
    # A burst worker drains what is pending: the outbox rows no relay has sent yet too, and
    # the rows its own jobs add (an announcement queues an email), until a relay finds none.
    worked = False
    while True:
        sent = jobs.relay(app)
        db.engine.dispose()
        if not sent and worked:
            break
        work()
        worked = True


def warm_up(app: Flask) -> None:
    """Pay one-off costs in the worker, before rq forks a work horse per job.

    Every work horse is a fresh fork of this process, so anything loaded lazily inside a job
    is paid again by every job: measured under load, a label job took 800 ms forked from a
    cold worker and 87 ms in a warm process (fonts, barcode tables, reportlab's first page)
    and an email job 218 ms against 52 ms (templates, catalogs).
    """
    from datetime import date

    from flask_babel import force_locale, gettext

    from common.i18n import LANGUAGES
    from rma.labels import LabelData, render_label
    from rma.numbers import new_rma_number

    render_label(LabelData(
        rma_number=new_rma_number(), claim_number="WARM-UP", sku="WARM-UP",
        product_name="warm-up", serial_number="WARM-UP", fault_category="other",
        remedy="repair", issued_on=date.today(), sender_name="warm-up",
        sender_address=("warm-up",), return_to=("warm-up",),
    ))
    with app.test_request_context():
        for name in app.jinja_env.list_templates(filter_func=lambda n: n.startswith("emails/")):
            app.jinja_env.get_template(name)
        for language in LANGUAGES:
            with force_locale(language):
                gettext("Claim")


@outbox_cli.command("relay")
@click.option("--loop", is_flag=True, help="Keep relaying until interrupted (SIGTERM/SIGINT).")
@click.option("--interval", type=float, default=None,
              help="Seconds between passes when idle [OUTBOX_RELAY_INTERVAL_SECONDS].")
def relay_command(loop: bool, interval: float | None) -> None:
    """Send committed outbox jobs to rq (with Redis) or run them inline (without)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.config.get("REDIS_URL"):
        click.echo(f"ran {jobs.run_pending_inline(app)} job(s) inline")
        return
    if not loop:
        click.echo(f"relayed {jobs.relay(app)} job(s)")
        return
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    wait = interval or app.config["OUTBOX_RELAY_INTERVAL_SECONDS"]
    click.echo(f"relaying outbox jobs to rq every {wait:g} s when idle")
    relayed = jobs.relay_forever(app, interval=wait, stop=stopping)
    click.echo(f"relay stopped after {relayed} job(s)")


@outbox_cli.command("status")
def status_command() -> None:
    """Show how many jobs are pending, and how many wait for the relay, with their ages."""
    summary = jobs.pending_summary()
    click.echo(f"pending: {summary['pending']}, oldest: {summary['oldest_pending_seconds']} s; "
               f"waiting for the relay: {summary['waiting_for_relay']}, oldest: "
               f"{summary['oldest_waiting_seconds']} s")


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
