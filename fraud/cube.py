"""Repair claims counted per partner, product and month: what the fraud statistics read.

The database does the counting (one ``GROUP BY`` over the claim facts, see
``fraud.facts.load_cube``); everything after that works on these small arrays, so scoring a
million claims costs one aggregate query plus milliseconds of numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Every measure is an array of shape (partners, products, months).
MEASURES = (
    "claims",  # repair claims received in the month
    "doa",  # claims declaring the unit dead on arrival
    "late_doa",  # DOA claims on units sold longer ago than the product's DOA window
    "parts",  # spare parts claimed (quantity)
    "parts_cost",  # catalog cost of those parts
    "parts_cost_sq",  # sum over claims of the squared per-claim parts cost
    "premium",  # claims using a high-cost part (e.g. a main board)
    "labor",  # labor minutes
    "labor_sq",  # sum over claims of squared labor minutes
    "repeats",  # claims followed by another claim on the same serial within 90 days
    "unreturned",  # defective parts claimed but not returned
    "claimed",  # claimed amount
)


@dataclass
class Cube:
    partners: list[str]
    skus: list[str]
    months: list[str]  # consecutive 'YYYY-MM'
    data: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(cls, partners: list[str], skus: list[str], months: list[str]) -> Cube:
        shape = (len(partners), len(skus), len(months))
        return cls(partners, skus, months, {name: np.zeros(shape) for name in MEASURES})

    def __getitem__(self, measure: str) -> np.ndarray:
        return self.data[measure]

    def window(self, end: int, months: int) -> dict[str, np.ndarray]:
        """Each measure summed over the ``months`` months ending at index ``end``: (P, S)."""
        start = max(0, end - months + 1)
        return {name: values[:, :, start:end + 1].sum(axis=2) for name, values in
                self.data.items()}

    def month_index(self, month: str) -> int:
        return self.months.index(month)


def month_range(first: str, last: str) -> list[str]:
    """Every 'YYYY-MM' from first to last inclusive."""
    year, month = int(first[:4]), int(first[5:7])
    end = (int(last[:4]), int(last[5:7]))
    months = []
    while (year, month) <= end:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months
