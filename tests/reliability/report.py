"""Figures for the reliability suites: a per-suite collector printed at the end of a run.

Each race or fault adds what it did (rounds, requests, winners, rows verified, errors); the last
test of a module prints one line per case and, with ``RELIABILITY_REPORT=<path>``, appends the
figures as JSON lines so docs/reliability.md can quote a real run.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime


@dataclass
class Figures:
    rounds: int = 0
    requests: int = 0
    winners: int = 0
    faults: int = 0
    rows_verified: int = 0
    errors: int = 0
    seconds: float = 0.0


class Collector:
    """Case name -> figures, in the order cases first reported."""

    def __init__(self, suite: str) -> None:
        self.suite = suite
        self.cases: dict[str, Figures] = defaultdict(Figures)

    def add(self, case: str, **amounts: float) -> None:
        figures = self.cases[case]
        for key, value in amounts.items():
            setattr(figures, key, getattr(figures, key) + value)

    def lines(self) -> list[str]:
        out = []
        for case, f in self.cases.items():
            out.append(
                f"{self.suite} {case}: rounds={f.rounds} requests={f.requests} "
                f"winners={f.winners} faults={f.faults} rows_verified={f.rows_verified} "
                f"errors={f.errors} seconds={f.seconds:.1f}"
            )
        total = Figures()
        for f in self.cases.values():
            for key, value in asdict(f).items():
                setattr(total, key, getattr(total, key) + value)
        out.append(
            f"{self.suite} TOTAL: cases={len(self.cases)} rounds={total.rounds} "
            f"requests={total.requests} faults={total.faults} "
            f"rows_verified={total.rows_verified} errors={total.errors}"
        )
        return out

    def write(self) -> None:
        path = os.environ.get("RELIABILITY_REPORT")
        if not path:
            return
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with open(path, "a", encoding="utf-8") as handle:
            for case, f in self.cases.items():
                handle.write(json.dumps({"suite": self.suite, "case": case, "at": stamp,
                                         **asdict(f)}) + "\n")
