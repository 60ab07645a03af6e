"""The periodic SLA check, as an rq job (scheduled by cron through the outbox)."""

from __future__ import annotations

from flask import current_app

from common.jobs import job
from partners.sla_service import SlaSettings, check_slas


def sla_settings() -> SlaSettings:
    return SlaSettings(support_email=current_app.config["SUPPORT_EMAIL"],
                       escalate_after_days=current_app.config["SLA_ESCALATE_AFTER_DAYS"],
                       stage_limits=current_app.config["SLA_STAGE_LIMITS"])


@job("partners.check_slas", timeout=1800)
def check_partner_slas(*, outbox_id: int) -> None:
    """Flag repairs at risk or in breach and notify once per level (safe to re-run)."""
    check_slas(settings=sla_settings())


@job("partners.charge_overdue_cores", timeout=1800)
def charge_overdue_cores_job(*, outbox_id: int) -> None:
    """Charge back defective parts not returned by their due date (once per line)."""
    from common.actors import Actor
    from partners.reports import charge_overdue_cores

    charge_overdue_cores(actor=Actor.system("core-returns"))
