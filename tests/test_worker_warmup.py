"""The rq worker pays its one-off costs before forking, so work horses start warm."""

from __future__ import annotations

from reportlab.pdfbase import pdfmetrics

from common.cli import warm_up
from rma.labels import BOLD, REGULAR


def test_warm_up_registers_the_label_fonts_and_compiles_the_email_templates(app):
    cache = app.jinja_env.cache
    cache.clear()
    warm_up(app)
    assert {REGULAR, BOLD} <= set(pdfmetrics.getRegisteredFontNames())
    compiled = {key[1] for key in cache.keys()}
    assert {"emails/claim_approved.txt", "emails/status_update.txt",
            "emails/sla_breached.txt"} <= compiled


def test_worker_command_warms_up_before_serving(app, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr("common.cli.warm_up", lambda _app: calls.append("warm"))

    class FakeWorker:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def work(self, **kwargs) -> None:
            calls.append("work")

    monkeypatch.setattr("common.rq_worker.Worker", FakeWorker)
    app.config["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    result = app.test_cli_runner().invoke(args=["worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert calls == ["warm", "work"]


def test_worker_runs_rq_upkeep_often_enough_to_take_over_from_a_dead_worker(app, monkeypatch):
    """rq retries abandoned jobs and hands the scheduler over only in its upkeep, every 10
    minutes by default; an idle worker wakes only once per dequeue timeout (its TTL less 15 s)."""
    created: list[dict] = []

    class FakeWorker:
        def __init__(self, *args, **kwargs) -> None:
            created.append(kwargs)

        def work(self, **kwargs) -> None:
            pass

    monkeypatch.setattr("common.cli.warm_up", lambda _app: None)
    monkeypatch.setattr("common.rq_worker.Worker", FakeWorker)
    app.config.update(REDIS_URL="redis://127.0.0.1:6379/15", RQ_MAINTENANCE_SECONDS=45,
                      RQ_WORKER_TTL_SECONDS=70)
    result = app.test_cli_runner().invoke(args=["worker"])
    assert result.exit_code == 0, result.output
    assert created[0]["maintenance_interval"] == 45 and created[0]["worker_ttl"] == 70


def test_rq_upkeep_defaults_resume_a_dead_hosts_work_within_two_minutes(monkeypatch, tmp_path):
    from common.config import load_config

    monkeypatch.delenv("RQ_MAINTENANCE_SECONDS", raising=False)
    monkeypatch.delenv("RQ_WORKER_TTL_SECONDS", raising=False)
    from redis import Redis
    from rq import Worker

    config = load_config(str(tmp_path))
    worker = Worker(["aftercare"], connection=Redis(),  # no command is sent: nothing connects
                    maintenance_interval=config["RQ_MAINTENANCE_SECONDS"],
                    worker_ttl=config["RQ_WORKER_TTL_SECONDS"])
    assert worker.maintenance_interval <= 60
    assert worker.dequeue_timeout <= 60  # how long an idle worker waits before its upkeep
