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

    monkeypatch.setattr("rq.Worker", FakeWorker)
    app.config["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    result = app.test_cli_runner().invoke(args=["worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert calls == ["warm", "work"]
