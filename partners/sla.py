"""SLA arithmetic: how long a repair has run and which level it has reached. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

LEVELS = ("ok", "at_risk", "breached", "escalated")


@dataclass(frozen=True)
class SlaPolicy:
    target_days: float
    at_risk_share: float = 0.8
    escalate_after_days: float = 2.0


@dataclass(frozen=True)
class SlaState:
    elapsed_days: float
    level: str
    paused: bool


def elapsed_days(*, received_at: datetime, now: datetime, paused_seconds: int,
                 paused_at: datetime | None) -> float:
    """Clock time since receipt, not counting pauses (including one still running)."""
    running_pause = (now - paused_at).total_seconds() if paused_at else 0.0
    seconds = (now - received_at).total_seconds() - paused_seconds - running_pause
    return max(seconds, 0.0) / 86400


def evaluate(*, received_at: datetime, now: datetime, paused_seconds: int,
             paused_at: datetime | None, policy: SlaPolicy) -> SlaState:
    days = elapsed_days(received_at=received_at, now=now, paused_seconds=paused_seconds,
                        paused_at=paused_at)
    if days > policy.target_days + policy.escalate_after_days:
        level = "escalated"
    elif days > policy.target_days:
        level = "breached"
    elif days > policy.target_days * policy.at_risk_share:
        level = "at_risk"
    else:
        level = "ok"
    return SlaState(round(days, 2), level, paused_at is not None)


def stage_days(*, entered_at: datetime, now: datetime, paused_seconds: int,
               paused_seconds_at_entry: int, paused_at: datetime | None) -> float:
    """Time in the current stage, not counting the pauses taken since it began."""
    running = (now - max(paused_at, entered_at)).total_seconds() if paused_at else 0.0
    paused_in_stage = max(0, paused_seconds - paused_seconds_at_entry) + running
    return max((now - entered_at).total_seconds() - paused_in_stage, 0.0) / 86400


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1) of a list; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-share * len(ordered) // 1)))  # ceil without floats drifting
    return ordered[min(rank, len(ordered)) - 1]
