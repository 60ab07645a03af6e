"""A synthetic world of partners and repair claims with known fraud: ground truth for scoring.

``generate_world`` is pure and seeded (numpy's ``default_rng`` only, no Flask): a catalog of a
dozen-odd products with bills of materials, partners of very different sizes and product mixes,
every claim's unit a registered purchase, and a truth table saying which partners are honest,
unusual but innocent, or fraudulent (with which pattern, from which month). ``load_world``
writes it into the database of the current app context, either the fast way (Core inserts of
rows completed by ``fraud.facts.derive``) or through the real CSV imports.

The world is built to keep an evaluation honest rather than easy:

* honest partners differ from one another (their own DOA, parts, premium-module and labor rates
  drawn around the population's), volumes are Poisson with seasonality, and about a third of
  partners are small;
* "unusual" partners are innocent but odd on purpose: a specialist in the fragile product, a
  shop that repairs only the most complex product, a small shop with an honest unlucky streak
  of DOAs, a shop whose volume triples, a shop that mostly sees units near the end of their
  warranty, a newcomer half-way through;
* a fraudster behaves honestly before its onset month, and with ``strength="subtle"`` mixes two
  patterns at modest intensity;
* the honest part of a world does not depend on ``strength``: each partner draws its honest
  claims from its own random stream and its fraud from another, so a world generated with
  ``"none"`` is the same world with the fraud left out;
* honest claims break no hard rule by construction, except a documented data-entry noise
  (``HONEST_TYPO_RATE``: a mistyped serial, so the claim names an unregistered serial), kept in
  ``World.noise`` so that the evaluation counts those hits as false positives.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import numpy as np

LABOR_RATE_PER_HOUR = Decimal("60.00")
STRENGTHS = ("blatant", "subtle", "none")
STATISTICAL_PATTERNS = ("doa_inflation", "parts_padding", "premium_swap", "labor_padding",
                        "repeat_churn")
RULE_PATTERNS = ("phantom_claims", "outside_bom")
PATTERNS = STATISTICAL_PATTERNS + RULE_PATTERNS
UNUSUAL_PROFILES = ("fragile_specialist", "complex_only", "unlucky_small", "growth",
                    "old_units", "newcomer")
# Hard rules a synthetic claim can be built to break (names as in fraud.verdicts).
UNREGISTERED_SERIAL = "unregistered_serial"
SERIAL_AT_OTHER_PARTNER = "serial_at_other_partner"
PART_OUTSIDE_BOM = "part_outside_bom"

SMALL_BELOW = 10.0  # mean claims per month
LARGE_FROM = 50.0
HONEST_REPEAT_RATE = 0.03
REPEAT_WINDOW_DAYS = 90
# One honest claim in this many names a mistyped (so unregistered) serial.
HONEST_TYPO_RATE = 1 / 5000
PREMIUM_SHARE_OF_TOP_PART = Decimal("0.5")  # as fraud.facts decides what a premium part is
LABOR_SIGMA = 0.3
PARTNER_SPREAD = 0.15  # log-normal sd of an honest partner's own rates around the population's
DOA_FAKE_ON_YOUNG_UNITS = 0.5  # the other fake DOAs keep the unit's real (mostly older) age

# Intensities. Blatant: one pattern each. Subtle: two patterns each, at these milder levels.
BLATANT = {"doa_inflation": 3.0, "parts_padding": 0.95, "premium_swap": 0.60,
           "labor_padding": 1.6, "repeat_churn": 0.15, "phantom_claims": 0.10,
           "outside_bom": 0.12}
SUBTLE_RANGES = {"doa_inflation": (1.5, 2.0), "parts_padding": (0.3, 0.5),
                 "premium_swap": (1.5, 2.0), "labor_padding": (1.3, 1.3),
                 "repeat_churn": (0.05, 0.08), "phantom_claims": (0.03, 0.03),
                 "outside_bom": (0.03, 0.03)}

_COUNTRIES = ("SE", "NO", "DK", "FI", "DE", "NL", "PL")
_SERIAL_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_SERIAL_BITS = 40
_SERIAL_MULT = 0x9E3779B97F  # odd: multiplication mod 2**40 is a bijection
_PHANTOM_NAMESPACE = 3 << 18

# role: description, cost range (EUR), max quantity per repair, fault it fixes
_ROLES: dict[str, tuple[str, float, float, int, str]] = {
    "board": ("Main board", 80, 250, 1, "no_power"),
    "display": ("Display assembly", 40, 150, 1, "display"),
    "battery": ("Battery", 15, 40, 1, "battery"),
    "psu": ("Power supply", 15, 40, 1, "no_power"),
    "port": ("Charging port", 4, 12, 1, "charging"),
    "camera": ("Camera module", 8, 15, 1, "camera"),
    "speaker": ("Speaker", 3, 10, 1, "audio"),
    "cover": ("Back cover", 5, 15, 1, "cosmetic"),
    "keyboard": ("Keyboard", 10, 15, 1, "keyboard"),
    "fan": ("Cooling fan", 6, 14, 1, "overheating"),
    "hinge": ("Hinge", 4, 12, 2, "mechanical"),
    "screws": ("Screw kit", 2, 4, 2, "mechanical"),
    "case": ("Case contacts", 3, 9, 1, "charging"),
    "tips": ("Ear tips", 2, 5, 2, "fit"),
    "cushions": ("Ear cushion", 4, 10, 2, "cosmetic"),
    "cable": ("Cable", 3, 8, 1, "connectivity"),
    "strap": ("Strap", 3, 10, 1, "cosmetic"),
    "button": ("Button set", 2, 6, 2, "buttons"),
    "driver": ("Speaker driver", 6, 15, 2, "audio"),
    "grille": ("Grille", 2, 6, 1, "cosmetic"),
    "lens": ("Lens assembly", 8, 15, 1, "camera"),
    "antenna": ("Antenna", 2, 8, 2, "connectivity"),
    "brush": ("Brush set", 5, 12, 2, "mechanical"),
    "wheel": ("Wheel module", 8, 15, 2, "mechanical"),
    "motor": ("Motor", 8, 15, 2, "mechanical"),
    "propellers": ("Propeller set", 2, 5, 2, "mechanical"),
}
FRAGILE_SKU = "NV-BUD-3"
COMPLEX_SKU = "NV-LAP-14"
# sku, name, category, the roles of its BOM parts. SKUs of their own ("NV-"), so a synthetic
# world never rewrites the products of the regular demo data set.
_PRODUCT_TEMPLATES: tuple[tuple[str, str, str, str], ...] = (
    ("NV-PHN-X1", "Nova X1 Phone", "phone", "board display battery port camera speaker cover"),
    ("NV-PHN-S2", "Nova S2 Phone", "phone", "board display battery port speaker"),
    ("NV-TAB-10", "Nova Tab 10", "tablet", "board display battery port speaker cover"),
    (COMPLEX_SKU, "Nova Book 14", "laptop",
     "board display battery keyboard fan hinge port screws"),
    (FRAGILE_SKU, "Nova Buds 3", "audio", "board battery case tips"),
    ("NV-HP-NC", "Nova NC Headphones", "audio", "board battery cushions hinge cable"),
    ("NV-WAT-2", "Nova Watch 2", "wearable", "board display battery strap button"),
    ("NV-SPK-1", "Nova Speaker 1", "audio", "board battery driver port grille"),
    ("NV-CAM-4", "Nova Action Cam 4", "camera", "board display battery lens button cover"),
    ("NV-RTR-6", "Nova Router 6", "network", "board psu antenna cover"),
    ("NV-EBK-7", "Nova Reader 7", "e-reader", "board display battery port button"),
    ("NV-VAC-R", "Nova Robot Vacuum", "home", "board battery brush wheel fan cover"),
    ("NV-CON-G", "Nova Console", "gaming", "board psu fan port button screws"),
    ("NV-MON-27", "Nova Monitor 27", "display", "board display psu button cable"),
    ("NV-DRN-1", "Nova Drone 1", "drone", "board battery motor propellers lens"),
)


@dataclass(frozen=True)
class PartnerTruth:
    """What a partner really is, for scoring the scoring."""

    kind: str  # "honest" | "unusual" | "fraud"
    patterns: tuple[str, ...]
    onset: int | None  # month index the fraud starts
    size: str  # "small" | "medium" | "large"
    mean_monthly_claims: float
    note: str
    profile: str = ""  # unusual partners: one of UNUSUAL_PROFILES


@dataclass
class World:
    """Catalog, partners, purchases and claims as import-ready rows, plus the ground truth."""

    seed: int
    strength: str
    months: list[str]  # 'YYYY-MM', index = month index used by truth and scoring
    products: list[dict]  # ``products`` import columns
    parts: list[dict]  # ``parts`` import columns
    bom: list[dict]  # ``bom`` import columns
    purchases: list[dict]  # ``purchases`` import columns, one per registered serial
    partners: list[dict]  # ``partners`` import columns
    claims: list[dict]  # historic repair columns (dates as date, claimed_amount as Decimal)
    truth: dict[str, PartnerTruth]
    # (partner_code, serial_number, received_date) -> the hard rule the claim was built to break
    rule_truth: dict[tuple[str, str, date], str]
    # Honest data-entry errors that break a hard rule anyway (false positives by design).
    noise: dict[tuple[str, str, date], str] = field(default_factory=dict)
    # Per SKU: base_doa_rate, premium_share, premium_parts, warranty_days, fragile, complex.
    product_truth: dict[str, dict] = field(default_factory=dict)
    # Per partner: its own honest rates relative to the population's (doa, parts, premium,
    # labor), what makes honest partners differ from one another.
    partner_rates: dict[str, dict[str, float]] = field(default_factory=dict)

    def month_index(self, day: date) -> int:
        start = date.fromisoformat(self.months[0] + "-01")
        return (day.year - start.year) * 12 + day.month - start.month

    def partners_of_kind(self, kind: str) -> list[str]:
        return [code for code, truth in self.truth.items() if truth.kind == kind]


# --------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------


@dataclass
class _Product:
    sku: str
    name: str
    category: str
    warranty_months: int
    warranty_days: int
    doa_days: int
    labor_minutes: int
    base_doa: float
    premium_share: float  # honest share of claims using a premium part
    parts: list[int]  # global part indices (its BOM)
    premium: list[int]
    cheap: list[int]
    cheap_cumulative: np.ndarray  # cheap parts fix most faults: weight ~ cost ** -0.7
    fragile: bool = False
    complex: bool = False


@dataclass
class _Catalog:
    products: list[_Product]
    part_numbers: list[str]
    part_descriptions: list[str]
    part_costs: list[Decimal]
    part_cents: list[int]
    part_max_qty: list[int]  # max qty in the (only) BOM the part belongs to
    part_fault: list[str]
    part_owner: list[int]  # product index of the BOM holding the part


def _catalog(rng: np.random.Generator) -> _Catalog:
    """12-15 products (always the fragile and the complex one), each with its own BOM."""
    optional = [i for i, t in enumerate(_PRODUCT_TEMPLATES) if t[0] not in (FRAGILE_SKU,
                                                                             COMPLEX_SKU)]
    count = int(rng.integers(12, 16))
    kept = set(rng.choice(optional, size=count - 2, replace=False).tolist())
    chosen = [t for i, t in enumerate(_PRODUCT_TEMPLATES)
              if i in kept or t[0] in (FRAGILE_SKU, COMPLEX_SKU)]
    products: list[_Product] = []
    numbers, descriptions, costs, max_qty, faults, owners = [], [], [], [], [], []
    for index, (sku, name, category, roles) in enumerate(chosen):
        fragile, complex_ = sku == FRAGILE_SKU, sku == COMPLEX_SKU
        part_indices = []
        for role in roles.split():
            description, low, high, qty, fault = _ROLES[role]
            if complex_ and role in ("board", "display"):
                low = high - (50 if role == "board" else 40)  # the expensive product
            cost = Decimal(f"{rng.uniform(low, high):.2f}")
            part_indices.append(len(numbers))
            numbers.append(f"{sku.removeprefix('NV-')}-{role.upper()}")
            descriptions.append(f"{description} for {name}")
            costs.append(cost)
            max_qty.append(qty)
            faults.append(fault)
            owners.append(index)
        top = max(costs[i] for i in part_indices)
        premium = [i for i in part_indices if costs[i] >= top * PREMIUM_SHARE_OF_TOP_PART]
        cheap = [i for i in part_indices if i not in premium]
        weights = np.array([float(costs[i]) ** -0.7 for i in cheap])
        warranty = 24 if complex_ else int(rng.choice([12, 24], p=[0.4, 0.6]))
        if fragile:
            base_doa = float(rng.uniform(0.075, 0.085))
        else:
            base_doa = float(math.exp(rng.uniform(math.log(0.005), math.log(0.05))))
        products.append(_Product(
            sku=sku, name=name, category=category, warranty_months=warranty,
            warranty_days=round(warranty * 30.4375), doa_days=int(rng.choice([14, 30])),
            labor_minutes=int(rng.integers(110, 121)) if complex_ else int(rng.integers(30, 91)),
            base_doa=base_doa, premium_share=float(rng.uniform(0.10, 0.20)),
            parts=part_indices, premium=premium, cheap=cheap,
            cheap_cumulative=np.cumsum(weights) / weights.sum(), fragile=fragile,
            complex=complex_,
        ))
    return _Catalog(products, numbers, descriptions, costs,
                    [int(c * 100) for c in costs], max_qty, faults, owners)


# --------------------------------------------------------------------------------------------
# Partners
# --------------------------------------------------------------------------------------------


@dataclass
class _PartnerSpec:
    """How one partner behaves: size, product mix, its own honest rates, and any fraud."""

    index: int
    code: str
    kind: str
    profile: str
    mean: float
    mix: np.ndarray
    sla_days: int
    country: str
    rel_doa: float
    rel_parts: float
    rel_premium: float
    rel_labor: float
    onset: int | None = None
    patterns: tuple[str, ...] = ()
    intensity: dict[str, float] = field(default_factory=dict)
    # profile details
    growth_from: int | None = None
    joins: int = 0
    streak_month: int | None = None


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _size(mean: float) -> str:
    return "small" if mean < SMALL_BELOW else "medium" if mean < LARGE_FROM else "large"


def _partners(rng: np.random.Generator, count: int, months: int,
              catalog: _Catalog) -> list[_PartnerSpec]:
    """Honest, unusual and fraud slots, each with its size, mix and (for fraud) onset."""
    n_products = len(catalog.products)
    popularity = rng.dirichlet(np.full(n_products, 2.0))
    fragile = next(i for i, p in enumerate(catalog.products) if p.fragile)
    complex_ = next(i for i, p in enumerate(catalog.products) if p.complex)
    unusual = list(UNUSUAL_PROFILES) if count >= 12 else []
    # 7 of 50 (one per pattern), plus one small fraudster: 16% of partners.
    n_fraud = max(1, round(count * 0.14)) if count >= 5 else 0
    small_fraud = 1 if count >= 20 else 0
    n_honest = count - len(unusual) - n_fraud - small_fraud
    if n_honest < 0:
        raise ValueError(f"{count} partners are too few for a world")
    roles = (["fraud"] * n_fraud + ["small_fraud"] * small_fraud + unusual
             + ["honest"] * n_honest)
    order = rng.permutation(count)  # partner codes say nothing about their role
    # Honest sizes stratified in log space: ~40% small (2-10 a month), the rest 10-400.
    n_small = round(0.4 * n_honest)
    strata = rng.permutation(n_honest)
    onset_low, onset_high = round(months * 0.25), round(months * 0.75)
    pattern_cycle = list(rng.permutation(len(PATTERNS)))
    specs: list[_PartnerSpec] = []
    honest_seen = fraud_seen = 0
    for slot, role in enumerate(roles):
        index = int(order[slot])
        concentration = _log_uniform(rng, 0.3, 30.0)
        mix = rng.dirichlet(np.maximum(concentration * popularity, 1e-3))
        mix = np.maximum(mix, 0.0)
        mix = mix / mix.sum()
        spec = _PartnerSpec(
            index=index, code=f"SP{index + 1:03d}", kind="honest", profile="", mean=0.0, mix=mix,
            sla_days=int(rng.integers(5, 15)), country=str(rng.choice(_COUNTRIES)),
            rel_doa=float(np.exp(rng.normal(0, PARTNER_SPREAD))),
            rel_parts=float(np.exp(rng.normal(0, PARTNER_SPREAD))),
            rel_premium=float(np.exp(rng.normal(0, PARTNER_SPREAD))),
            rel_labor=float(np.exp(rng.normal(0, PARTNER_SPREAD))),
        )
        # Drawn for every slot so the structure does not depend on what the slot turns out to be.
        onset = int(rng.integers(onset_low, onset_high + 1))
        second = str(rng.choice(list(STATISTICAL_PATTERNS)))
        subtle_draws = {name: float(rng.uniform(*SUBTLE_RANGES[name])) for name in PATTERNS}
        if role == "honest":
            stratum = int(strata[honest_seen])
            honest_seen += 1
            u = rng.uniform()
            if stratum < n_small:
                spec.mean = math.exp(math.log(2) + (stratum + u) / n_small * math.log(5))
            else:
                k = n_honest - n_small
                spec.mean = math.exp(math.log(10) + (stratum - n_small + u) / k * math.log(40))
        elif role in ("fraud", "small_fraud"):
            spec.kind = "fraud"
            if role == "fraud":
                spec.mean = _log_uniform(rng, 15, 400)
                primary = PATTERNS[pattern_cycle[fraud_seen % len(PATTERNS)]]
                fraud_seen += 1
            else:
                spec.mean = _log_uniform(rng, 3, 8)
                primary = str(rng.choice(list(STATISTICAL_PATTERNS)))
            if second == primary:
                second = STATISTICAL_PATTERNS[(STATISTICAL_PATTERNS.index(primary) + 1)
                                              % len(STATISTICAL_PATTERNS)]
            spec.onset = onset
            spec.patterns = (primary, second)  # blatant keeps the first only (see _strengthen)
            spec.intensity = subtle_draws
        else:
            spec.kind, spec.profile = "unusual", role
            if role == "fragile_specialist":
                spec.mean = _log_uniform(rng, 25, 120)
                spec.mix = 0.1 * mix
                spec.mix[fragile] += 0.9
            elif role == "complex_only":
                spec.mean = _log_uniform(rng, 15, 60)
                spec.mix = np.zeros(n_products)
                spec.mix[complex_] = 1.0
            elif role == "unlucky_small":
                spec.mean = float(rng.uniform(5, 8))
                spec.streak_month = int(rng.integers(months // 2, months))
            elif role == "growth":
                spec.mean = _log_uniform(rng, 15, 40)
                spec.growth_from = int(rng.integers(months // 3, months // 2 + 1))
            elif role == "old_units":
                spec.mean = _log_uniform(rng, 10, 80)
            else:  # newcomer
                spec.mean = _log_uniform(rng, 15, 60)
                spec.joins = int(rng.integers(round(months * 0.45), round(months * 0.6) + 1))
        specs.append(spec)
    return sorted(specs, key=lambda s: s.index)


def _strengthen(spec: _PartnerSpec, strength: str, catalog: _Catalog) -> None:
    """Turn a fraud slot's drawn parameters into the intensities of ``strength``."""
    if spec.kind != "fraud":
        return
    if strength == "none":
        spec.kind, spec.patterns, spec.onset, spec.intensity = "honest", (), None, {}
        return
    if strength == "blatant":
        spec.patterns = spec.patterns[:1]
        spec.intensity = {name: BLATANT[name] for name in spec.patterns}
    else:
        spec.intensity = {name: spec.intensity[name] for name in spec.patterns}
    if "premium_swap" in spec.intensity:
        honest = float(spec.mix @ np.array([p.premium_share for p in catalog.products]))
        honest *= spec.rel_premium
        target = spec.intensity["premium_swap"]
        spec.intensity["premium_swap"] = target if strength == "blatant" else honest * target


# --------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------


class _Claim:
    __slots__ = ("serial", "prod", "received", "completed", "doa", "parts", "labor", "diagnosis",
                 "month", "first", "origin", "rule")

    def __init__(self, serial: int, prod: int, received: int, completed: int, doa: bool,
                 parts: list[list[int]], labor: int, diagnosis: str, month: int, first: bool,
                 origin: str) -> None:
        self.serial = serial
        self.prod = prod
        self.received = received  # date ordinal
        self.completed = completed
        self.doa = doa
        self.parts = parts  # [[part index, quantity], ...]
        self.labor = labor
        self.diagnosis = diagnosis
        self.month = month
        self.first = first  # the serial's first claim (its purchase date follows from it)
        self.origin = origin  # honest | repeat | typo | fake_repeat | phantom | phantom_other
        self.rule: str | None = None


@dataclass
class _Calendar:
    months: list[str]
    starts: np.ndarray  # ordinal of each month's first day
    days: np.ndarray  # days in each month
    end: int  # ordinal of the last day

    @classmethod
    def build(cls, start: date, months: int) -> _Calendar:
        first = date(start.year, start.month, 1)
        labels, starts, days = [], [], []
        year, month = first.year, first.month
        for _ in range(months):
            day = date(year, month, 1)
            following = date(year + month // 12, month % 12 + 1, 1)
            labels.append(f"{year:04d}-{month:02d}")
            starts.append(day.toordinal())
            days.append((following - day).days)
            year, month = following.year, following.month
        return cls(labels, np.array(starts), np.array(days), starts[-1] + days[-1] - 1)

    def month_of(self, ordinal: int) -> int:
        return int(np.searchsorted(self.starts, ordinal, side="right") - 1)


class _Work:
    """Draws what a repair consists of (parts, diagnosis, labor), vectorized per batch."""

    def __init__(self, catalog: _Catalog) -> None:
        self.catalog = catalog
        # P(at least one part) for the honest parts distribution at rel_parts = 1.
        self.p_any = 1 - (1 - 0.8) * math.exp(-0.34)

    def draw(self, rng: np.random.Generator, prods: np.ndarray,
             spec: _PartnerSpec) -> tuple[list[list[list[int]]], list[str], np.ndarray]:
        """Parts (0-3, mean about 1.1; cheap parts fix most faults), diagnosis and labor."""
        catalog = self.catalog
        n = len(prods)
        with_part = rng.random(n) < min(0.95, 0.8 * spec.rel_parts)
        k = np.minimum(3, with_part.astype(int) + rng.poisson(0.34 * spec.rel_parts, n))
        share = np.array([p.premium_share for p in catalog.products])[prods] * spec.rel_premium
        premium_first = rng.random(n) < np.minimum(0.95, share / self.p_any)
        u_premium = rng.random(n)
        u_cheap = rng.random((n, 3))
        u_qty = rng.random(n)
        u_nff = rng.random(n)
        standard = np.array([p.labor_minutes for p in catalog.products])[prods]
        labor = np.maximum(5, np.rint(standard * spec.rel_labor
                                      * np.exp(rng.normal(0, LABOR_SIGMA, n)))).astype(int)
        cheap = np.zeros((n, 3), dtype=int)
        for s, product in enumerate(catalog.products):
            rows = prods == s
            if rows.any():
                picks = np.searchsorted(product.cheap_cumulative, u_cheap[rows], side="right")
                picks = np.minimum(picks, len(product.cheap) - 1)
                cheap[rows] = np.array(product.cheap)[picks]
        parts_lists: list[list[list[int]]] = []
        diagnoses: list[str] = []
        max_qty, faults = catalog.part_max_qty, catalog.part_fault
        products = catalog.products
        for j in range(n):
            count = int(k[j])
            if count == 0:
                parts_lists.append([])
                diagnoses.append("no_fault_found" if u_nff[j] < 0.5 else "software")
                continue
            product = products[prods[j]]
            if premium_first[j]:
                first = product.premium[int(u_premium[j] * len(product.premium))]
            else:
                first = int(cheap[j, 0])
            chosen = [first]
            for e in range(1, count):
                candidate = int(cheap[j, e])
                if candidate not in chosen:
                    chosen.append(candidate)
            # A second unit of a small part (two hinges), keeping the repair within 3 parts.
            doubled = len(chosen) < 3 and max_qty[chosen[-1]] == 2 and u_qty[j] < 0.2
            parts_lists.append([[p, 1] for p in chosen[:-1]]
                               + [[chosen[-1], 2 if doubled else 1]])
            diagnoses.append(faults[first])
        return parts_lists, diagnoses, labor


def _categorical(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    cumulative = np.cumsum(p)
    return np.minimum(np.searchsorted(cumulative / cumulative[-1], rng.random(n), side="right"),
                      len(p) - 1)


class _PartnerClaims:
    """One partner's claims and purchases, honest first, then its fraud if it has any."""

    def __init__(self, spec: _PartnerSpec, catalog: _Catalog, calendar: _Calendar,
                 work: _Work) -> None:
        self.spec = spec
        self.catalog = catalog
        self.calendar = calendar
        self.work = work
        self.claims: list[_Claim] = []
        self.purchase: dict[int, int] = {}  # serial id -> purchase date ordinal
        self.serial_product: dict[int, int] = {}
        self._next_serial = 0
        self._next_phantom = 0
        self.pending_other = 0  # phantom claims to place on serials other partners hold

    def _serial(self) -> int:
        self._next_serial += 1
        return (self.spec.index << 20) | self._next_serial

    # honest --------------------------------------------------------------------------------

    def honest(self, rng: np.random.Generator) -> None:
        spec, catalog, calendar = self.spec, self.catalog, self.calendar
        months = len(calendar.months)
        t = np.arange(months)
        calendar_month = np.array([int(m[5:7]) for m in calendar.months])
        # Seasonality: a peak after the holidays, a dip in summer.
        season = 1 + 0.15 * np.cos(2 * np.pi * (calendar_month - 1.5) / 12)
        growth = np.ones(months)
        if spec.growth_from is not None:
            growth = 1 + 2 * np.clip((t - spec.growth_from) / 3, 0, 1)
        active = (t >= spec.joins).astype(float)
        counts = rng.poisson(spec.mean * season * growth * active)
        if spec.streak_month is not None:
            counts[spec.streak_month] = max(counts[spec.streak_month], 10)
        n = int(counts.sum())
        month = np.repeat(t, counts)
        received = calendar.starts[month] + (rng.random(n) * calendar.days[month]).astype(int)
        prods = _categorical(rng, spec.mix, n)
        base_doa = np.array([p.base_doa for p in catalog.products])[prods] * spec.rel_doa
        if spec.profile == "old_units":
            base_doa = base_doa * 0.5  # few young units come its way
        doa = rng.random(n) < base_doa
        warranty = np.array([p.warranty_days for p in catalog.products])[prods]
        doa_days = np.array([p.doa_days for p in catalog.products])[prods]
        if spec.profile == "old_units":
            old = rng.random(n) < 0.85
            shape = np.where(old, rng.beta(6.0, 1.3, n), rng.beta(1.3, 2.0, n))
        else:
            shape = rng.beta(1.3, 2.0, n)
        age = 10 + (shape * (warranty - 12)).astype(int)
        young = 1 + (rng.random(n) * doa_days).astype(int)
        age = np.where(doa, young, age)
        turnaround = np.rint(rng.gamma(2.0, spec.sla_days * 0.35, n)).astype(int)
        repeat = rng.random(n) < HONEST_REPEAT_RATE
        repeat_gap = rng.integers(3, 61, n)
        typo = rng.random(n) < HONEST_TYPO_RATE
        parts, diagnoses, labor = self.work.draw(rng, prods, spec)
        if spec.streak_month is not None:
            in_streak = np.flatnonzero(month == spec.streak_month)
            missing = max(0, 2 - int(doa[in_streak].sum()))
            for j in in_streak[~doa[in_streak]][:missing]:
                doa[j], age[j] = True, young[j]
        base: list[_Claim] = []
        for j in range(n):
            serial = self._serial()
            claim = _Claim(serial, int(prods[j]), int(received[j]),
                           int(received[j] + turnaround[j]), bool(doa[j]), parts[j],
                           int(labor[j]), diagnoses[j], int(month[j]), True, "honest")
            self.purchase[serial] = int(received[j] - age[j])
            self.serial_product[serial] = int(prods[j])
            if typo[j]:
                # The unit is real and registered; the shop mistyped one character of its
                # serial on the claim (see _mistyped).
                claim.origin, claim.first = "typo", False
            base.append(claim)
        self.claims.extend(base)
        # Genuine repeat repairs: the fix did not hold, the unit comes back within 90 days.
        repeats = [(c, int(g)) for c, g, r in zip(base, repeat_gap, repeat, strict=True)
                   if r and c.origin == "honest"]
        if repeats:
            prods_r = np.array([c.prod for c, _ in repeats])
            parts_r, diag_r, labor_r = self.work.draw(rng, prods_r, spec)
            turn_r = np.rint(rng.gamma(2.0, spec.sla_days * 0.35, len(repeats))).astype(int)
            for i, (claim, gap) in enumerate(repeats):
                when = claim.completed + gap
                if when - claim.received > REPEAT_WINDOW_DAYS or when > calendar.end:
                    continue
                if when - self.purchase[claim.serial] >= catalog.products[claim.prod].warranty_days:
                    continue
                self.claims.append(_Claim(claim.serial, claim.prod, when, when + int(turn_r[i]),
                                          False, parts_r[i], int(labor_r[i]), diag_r[i],
                                          calendar.month_of(when), False, "repeat"))

    # fraud ---------------------------------------------------------------------------------

    def fraud(self, rng: np.random.Generator) -> None:
        spec = self.spec
        if spec.kind != "fraud" or spec.onset is None:
            return
        catalog, calendar = self.catalog, self.calendar
        onset = spec.onset
        # Every draw below happens whatever the patterns, so streams stay aligned.
        n = len(self.claims)
        u_doa, u_young, young_days = rng.random(n), rng.random(n), rng.random(n)
        u_pad, u_pad_part = rng.random(n), rng.random(n)
        u_swap, u_swap_part = rng.random(n), rng.random(n)
        u_outside, u_outside_part = rng.random(n), rng.random(n)
        intensity = spec.intensity
        premium_any = spec.rel_premium * float(
            spec.mix @ np.array([p.premium_share for p in catalog.products]))
        swap_probability = 0.0
        if "premium_swap" in intensity:
            p_any = self.work.p_any
            swap_probability = float(np.clip((intensity["premium_swap"] - premium_any)
                                             / max(p_any - premium_any, 1e-6), 0, 1))
        for j, claim in enumerate(self.claims):
            if claim.month < onset:
                continue
            product = catalog.products[claim.prod]
            if "doa_inflation" in intensity and not claim.doa:
                p = min(0.99, product.base_doa * spec.rel_doa)
                extra = (intensity["doa_inflation"] - 1) * p / (1 - p)
                if u_doa[j] < extra:
                    claim.doa = True
                    if claim.first and claim.origin == "honest" and u_young[j] < \
                            DOA_FAKE_ON_YOUNG_UNITS:
                        self.purchase[claim.serial] = claim.received - 1 - int(
                            young_days[j] * product.doa_days)
            if "premium_swap" in intensity and claim.parts:
                used = {p for p, _ in claim.parts}
                if not used & set(product.premium) and u_swap[j] < swap_probability:
                    part = product.premium[int(u_swap_part[j] * len(product.premium))]
                    claim.parts[0] = [part, 1]  # the module where the cheap part was the fix
            if "parts_padding" in intensity and u_pad[j] < intensity["parts_padding"]:
                used = {p for p, _ in claim.parts}
                free = [p for p in product.cheap if p not in used]
                if free:
                    claim.parts.append([free[int(u_pad_part[j] * len(free))], 1])
            if "labor_padding" in intensity:
                claim.labor = round(claim.labor * intensity["labor_padding"])
            if "outside_bom" in intensity and u_outside[j] < intensity["outside_bom"]:
                foreign = [i for i, owner in enumerate(catalog.part_owner) if owner != claim.prod]
                claim.parts.append([foreign[int(u_outside_part[j] * len(foreign))], 1])
                claim.rule = PART_OUTSIDE_BOM
        counts = np.bincount([c.month for c in self.claims if c.origin != "typo"],
                             minlength=len(calendar.months))
        months = np.arange(len(calendar.months))
        after = months >= onset
        churn = rng.poisson(intensity.get("repeat_churn", 0.0) * counts * after)
        phantoms = rng.poisson(intensity.get("phantom_claims", 0.0) * counts * after)
        self._fake_repeats(rng, churn)
        self._phantoms(rng, phantoms)

    def _fake_repeats(self, rng: np.random.Generator, per_month: np.ndarray) -> None:
        """Second repairs billed on serials the partner already repaired, within 90 days."""
        total = int(per_month.sum())
        if not total:
            return
        calendar, catalog, spec = self.calendar, self.catalog, self.spec
        bases = sorted((c for c in self.claims if c.origin in ("honest", "repeat")),
                       key=lambda c: c.received)
        received = np.array([c.received for c in bases])
        month = np.repeat(np.arange(len(per_month)), per_month)
        when = calendar.starts[month] + (rng.random(total) * calendar.days[month]).astype(int)
        prods = np.zeros(total, dtype=int)
        chosen: list[_Claim | None] = []
        taken = {(c.serial, c.received) for c in self.claims}
        for i in range(total):
            low = np.searchsorted(received, when[i] - REPEAT_WINDOW_DAYS + 1, side="left")
            high = np.searchsorted(received, when[i] - 3, side="right")
            base = None
            for _ in range(20 if high > low else 0):  # a few tries: most recent claims qualify
                candidate = bases[low + int(rng.random() * (high - low))]
                if (candidate.completed < when[i] and (candidate.serial, int(when[i])) not in taken
                        and when[i] - self.purchase[candidate.serial]
                        < catalog.products[candidate.prod].warranty_days):
                    base = candidate
                    break
            if base is None:
                chosen.append(None)
                continue
            taken.add((base.serial, int(when[i])))
            chosen.append(base)
            prods[i] = base.prod
        parts, diagnoses, labor = self.work.draw(rng, prods, spec)
        turnaround = np.rint(rng.gamma(2.0, spec.sla_days * 0.35, total)).astype(int)
        for i, base in enumerate(chosen):
            if base is None:
                continue
            day = int(when[i])
            self.claims.append(_Claim(base.serial, base.prod, day, day + int(turnaround[i]),
                                      False, parts[i], int(labor[i]), diagnoses[i],
                                      int(month[i]), False, "fake_repeat"))

    def _phantoms(self, rng: np.random.Generator, per_month: np.ndarray) -> None:
        """Claims for units never sold (unregistered), or held by another partner (later)."""
        total = int(per_month.sum())
        if not total:
            return
        calendar, spec = self.calendar, self.spec
        month = np.repeat(np.arange(len(per_month)), per_month)
        when = calendar.starts[month] + (rng.random(total) * calendar.days[month]).astype(int)
        at_other = rng.random(total) < 0.5
        prods = _categorical(rng, spec.mix, total)
        parts, diagnoses, labor = self.work.draw(rng, prods, spec)
        turnaround = np.rint(rng.gamma(2.0, spec.sla_days * 0.35, total)).astype(int)
        for i in range(total):
            if at_other[i]:
                self.pending_other += 1
                continue
            self._next_phantom += 1
            serial = (spec.index << 20) | _PHANTOM_NAMESPACE | self._next_phantom
            day = int(when[i])
            claim = _Claim(serial, int(prods[i]), day, day + int(turnaround[i]), False, parts[i],
                           int(labor[i]), diagnoses[i], int(month[i]), False, "phantom")
            claim.rule = UNREGISTERED_SERIAL
            self.claims.append(claim)


def _place_phantoms_at_other(rng: np.random.Generator, fraudster: _PartnerClaims,
                             everyone: list[_PartnerClaims], work: _Work,
                             used_serials: set[int]) -> None:
    """Claims on serials another partner had in repair at the time: impossible, so a rule hit.

    Only serials with a single claim in the world are used, so the honest partner's claim is
    the earlier one and stays clean.
    """
    count = fraudster.pending_other
    if not count:
        return
    spec, calendar = fraudster.spec, fraudster.calendar
    onset = spec.onset or 0
    serial_count: dict[int, int] = {}
    for holder in everyone:
        for claim in holder.claims:
            serial_count[claim.serial] = serial_count.get(claim.serial, 0) + 1
    candidates = [(holder, claim) for holder in everyone if holder is not fraudster
                  for claim in holder.claims
                  if claim.origin == "honest" and claim.month >= onset
                  and claim.completed - claim.received >= 2
                  and claim.completed <= calendar.end
                  and serial_count[claim.serial] == 1 and claim.serial not in used_serials]
    picks = rng.random(count)
    offsets = rng.random(count)
    prods = np.zeros(count, dtype=int)
    chosen = []
    for i in range(count):
        if not candidates:
            break
        holder, base = candidates.pop(int(picks[i] * len(candidates)))
        product = fraudster.catalog.products[base.prod]
        day = base.received + 1 + int(offsets[i] * (base.completed - base.received))
        if day - holder.purchase[base.serial] >= product.warranty_days:
            continue
        used_serials.add(base.serial)
        chosen.append((holder, base, day))
        prods[len(chosen) - 1] = base.prod
    parts, diagnoses, labor = work.draw(rng, prods[:len(chosen)], spec)
    turnaround = np.rint(rng.gamma(2.0, spec.sla_days * 0.35, len(chosen))).astype(int)
    for i, (holder, base, day) in enumerate(chosen):
        claim = _Claim(base.serial, base.prod, day, day + int(turnaround[i]), False, parts[i],
                       int(labor[i]), diagnoses[i], calendar.month_of(day), False,
                       "phantom_other")
        claim.rule = SERIAL_AT_OTHER_PARTNER
        fraudster.claims.append(claim)
        fraudster.purchase.setdefault(base.serial, holder.purchase[base.serial])


# --------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------


def _serial_texts(serial_ids: list[int], salt: int) -> dict[int, str]:
    """Unique, random-looking serials: a bijection of each 40-bit id, in 8 base-34 digits."""
    ids = np.array(sorted(set(serial_ids)), dtype=np.uint64)
    # uint64 products wrap modulo 2**64, whose low 40 bits are the product modulo 2**40.
    mask = np.uint64((1 << _SERIAL_BITS) - 1)
    values = ((ids ^ np.uint64(salt)) * np.uint64(_SERIAL_MULT)) & mask
    base = np.uint64(len(_SERIAL_ALPHABET))
    digits = np.empty((len(ids), 8), dtype=np.int64)
    for position in range(7, -1, -1):
        digits[:, position] = (values % base).astype(np.int64)
        values //= base
    alphabet = np.frombuffer(_SERIAL_ALPHABET.encode(), dtype="S1")
    texts = alphabet[digits].view("S8").ravel()
    return {int(i): "SN" + t.decode() for i, t in zip(ids, texts, strict=True)}


def _mistyped(serial: str, serial_id: int, known: set[str]) -> str:
    """The serial with one character wrong, as keyed in by hand; never another real serial."""
    width = len(_SERIAL_ALPHABET)
    for attempt in range(8):
        position = 2 + (serial_id + attempt) % 8  # after the "SN" prefix
        shift = 1 + (serial_id // 8 + attempt) % (width - 1)
        char = _SERIAL_ALPHABET[(_SERIAL_ALPHABET.index(serial[position]) + shift) % width]
        candidate = serial[:position] + char + serial[position + 1:]
        if candidate not in known:
            known.add(candidate)
            return candidate
    raise RuntimeError(f"no free mistyping of {serial}")


def generate_world(seed: int, *, strength: str = "blatant", partners: int = 50, months: int = 24,
                   start: date = date(2024, 1, 1)) -> World:
    """A seeded synthetic world of partners and claims with the truth about each partner."""
    if strength not in STRENGTHS:
        raise ValueError(f"strength must be one of {', '.join(STRENGTHS)}, got {strength!r}")
    if months < 4:
        raise ValueError("a world needs at least 4 months")
    root = np.random.default_rng(seed)
    streams = root.spawn(3 + 2 * partners)
    catalog = _catalog(streams[0])
    calendar = _Calendar.build(start, months)
    specs = _partners(streams[1], partners, months, catalog)
    for spec in specs:
        _strengthen(spec, strength, catalog)
    work = _Work(catalog)
    books = []
    for spec in specs:
        book = _PartnerClaims(spec, catalog, calendar, work)
        book.honest(streams[3 + 2 * spec.index])
        books.append(book)
    fraud_streams = {spec.index: streams[4 + 2 * spec.index] for spec in specs}
    for book in books:
        book.fraud(fraud_streams[book.spec.index])
    used: set[int] = set()
    for book in books:
        _place_phantoms_at_other(fraud_streams[book.spec.index], book, books, work, used)
    salt = int(streams[2].integers(0, 1 << _SERIAL_BITS))
    return _assemble(seed, strength, catalog, calendar, specs, books, salt)


def _assemble(seed: int, strength: str, catalog: _Catalog, calendar: _Calendar,
              specs: list[_PartnerSpec], books: list[_PartnerClaims], salt: int) -> World:
    products = [{"sku": p.sku, "name": p.name, "category": p.category,
                 "warranty_months": p.warranty_months, "labor_minutes": p.labor_minutes,
                 "doa_days": p.doa_days} for p in catalog.products]
    parts = [{"part_number": number, "description": description, "unit_cost": cost}
             for number, description, cost in zip(catalog.part_numbers,
                                                   catalog.part_descriptions,
                                                   catalog.part_costs, strict=True)]
    bom = [{"sku": p.sku, "part_number": catalog.part_numbers[i],
            "max_qty": catalog.part_max_qty[i]} for p in catalog.products for i in p.parts]
    partner_rows = [{"code": s.code, "name": f"Service Partner {s.index + 1}",
                     "country": s.country, "sla_days": s.sla_days} for s in specs]
    dates: dict[int, date] = {}

    def day(ordinal: int) -> date:
        found = dates.get(ordinal)
        if found is None:
            found = dates[ordinal] = date.fromordinal(ordinal)
        return found

    serial_texts = _serial_texts(
        [c.serial for book in books for c in book.claims]
        + [serial_id for book in books for serial_id in book.purchase], salt)
    claims: list[dict] = []
    rule_truth: dict[tuple[str, str, date], str] = {}
    noise: dict[tuple[str, str, date], str] = {}
    purchases: list[dict] = []
    numbers, cents = catalog.part_numbers, catalog.part_cents
    labor_cents_per_minute = int(LABOR_RATE_PER_HOUR * 100) / 60
    skus = [p.sku for p in catalog.products]
    known = set(serial_texts.values())
    for book in books:
        code, country = book.spec.code, book.spec.country
        for claim in book.claims:
            text = serial_texts[claim.serial]
            if claim.origin == "typo":
                text = _mistyped(text, claim.serial, known)
            received = day(claim.received)
            amount = sum(cents[p] * q for p, q in claim.parts) + round(
                claim.labor * labor_cents_per_minute)
            claims.append({
                "partner_code": code, "serial_number": text, "sku": skus[claim.prod],
                "received_date": received, "completed_date": day(claim.completed),
                "doa": claim.doa, "diagnosis_code": claim.diagnosis,
                "parts": [{"part_number": numbers[p], "quantity": q} for p, q in claim.parts],
                "labor_minutes": claim.labor, "claimed_amount": Decimal(amount).scaleb(-2),
                "rma_number": None,
            })
            key = (code, text, received)
            if claim.rule:
                rule_truth[key] = claim.rule
            elif claim.origin == "typo":
                noise[key] = UNREGISTERED_SERIAL
        for serial_id, bought in book.purchase.items():
            if book.serial_product.get(serial_id) is None:
                continue  # another partner's unit, registered by that partner's book
            text = serial_texts[serial_id]
            purchases.append({
                "serial_number": text, "sku": skus[book.serial_product[serial_id]],
                "purchase_date": day(bought), "customer_email": f"{text.lower()}@example.com",
                "customer_name": f"Customer {text}", "country": country,
            })
    claims.sort(key=lambda c: (c["received_date"], c["partner_code"], c["serial_number"]))
    truth = {s.code: _truth(s, catalog, calendar) for s in specs}
    product_truth = {p.sku: {"base_doa_rate": p.base_doa, "premium_share": p.premium_share,
                             "premium_parts": [numbers[i] for i in p.premium],
                             "warranty_days": p.warranty_days, "fragile": p.fragile,
                             "complex": p.complex} for p in catalog.products}
    return World(seed=seed, strength=strength, months=list(calendar.months), products=products,
                 parts=parts, bom=bom, purchases=purchases, partners=partner_rows, claims=claims,
                 truth=truth, rule_truth=rule_truth, noise=noise, product_truth=product_truth,
                 partner_rates={s.code: {"doa": s.rel_doa, "parts": s.rel_parts,
                                         "premium": s.rel_premium, "labor": s.rel_labor}
                                for s in specs})


def _truth(spec: _PartnerSpec, catalog: _Catalog, calendar: _Calendar) -> PartnerTruth:
    size = _size(spec.mean)
    if spec.kind == "fraud":
        what = ", ".join(f"{name} {_intensity_text(name, spec.intensity[name])}"
                         for name in spec.patterns)
        note = f"fraud from {calendar.months[spec.onset]} (month {spec.onset}): {what}"
        if size == "small":
            note += "; small: too few claims to prove, the documented limit"
    elif spec.kind == "unusual":
        note = {
            "fragile_specialist": f"90% of its claims on the fragile {FRAGILE_SKU}",
            "complex_only": f"repairs only {COMPLEX_SKU}, the most complex product",
            "unlucky_small": (f"small, with at least 2 honest DOAs in "
                              f"{calendar.months[spec.streak_month or 0]}"),
            "growth": (f"volume triples from {calendar.months[spec.growth_from or 0]} "
                       f"over 3 months"),
            "old_units": "85% of its units near the end of their warranty",
            "newcomer": f"starts in {calendar.months[spec.joins]}",
        }[spec.profile]
    else:
        note = "honest"
    return PartnerTruth(kind=spec.kind, patterns=spec.patterns, onset=spec.onset, size=size,
                        mean_monthly_claims=round(spec.mean, 2), note=note,
                        profile=spec.profile)


def _intensity_text(name: str, value: float) -> str:
    if name in ("doa_inflation", "labor_padding"):
        return f"x{value:.2f}"
    if name == "parts_padding":
        return f"+{value:.2f} part per repair"
    if name == "premium_swap":
        return f"premium share {value:.0%}"
    return f"+{value:.0%} of claims"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

CLAIM_CHUNK = 5000
PRODUCT_COLUMNS = ("sku", "name", "category", "warranty_months", "labor_minutes", "doa_days")
PART_COLUMNS = ("part_number", "description", "unit_cost")
BOM_COLUMNS = ("sku", "part_number", "max_qty")
PARTNER_COLUMNS = ("code", "name", "country", "sla_days")
PURCHASE_COLUMNS = ("serial_number", "sku", "purchase_date", "customer_email", "customer_name",
                    "country")
REPAIR_COLUMNS = ("partner_code", "serial_number", "sku", "received_date", "completed_date",
                  "doa", "parts", "labor_minutes", "claimed_amount", "diagnosis_code")


def _csv(columns: tuple[str, ...], rows: Iterable[dict]) -> io.BytesIO:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row[name]) for name in columns])
    return io.BytesIO(out.getvalue().encode("utf-8"))


def _csv_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return ";".join(f"{item['part_number']}:{item['quantity']}" for item in value)
    return "" if value is None else str(value)


def load_world(world: World, *, through_import: bool = False) -> None:
    """Write the world into the current app context's database (the caller owns the context).

    Catalog and partners always go through ``run_import``; purchases and claims either by Core
    inserts (claims completed by ``fraud.facts.derive``) or, with ``through_import``, through
    the ``purchases`` and ``repairs`` CSV imports.
    """
    from sqlalchemy import insert

    from catalog.importing import run_import
    from catalog.models import Purchase
    from common.actors import Actor
    from common.extensions import db
    from fraud.facts import CatalogFacts, derive
    from partners.models import HistoricRepair

    actor = Actor.system("demo")

    def imported(kind: str, stream: io.BytesIO) -> None:
        report = run_import(kind, stream, actor=actor, filename=f"synthetic-{kind}.csv")
        if report.rejected:
            raise ValueError(f"synthetic {report.summary()}: {report.errors[:3]}")

    imported("products", _csv(PRODUCT_COLUMNS, world.products))
    imported("parts", _csv(PART_COLUMNS, world.parts))
    imported("bom", _csv(BOM_COLUMNS, world.bom))
    imported("partners", _csv(PARTNER_COLUMNS, world.partners))
    if through_import:
        imported("purchases", _csv(PURCHASE_COLUMNS, world.purchases))
        imported("repairs", _csv(REPAIR_COLUMNS, world.claims))
        return
    for begin in range(0, len(world.purchases), CLAIM_CHUNK):
        rows = [{**row, "import_id": None}
                for row in world.purchases[begin:begin + CLAIM_CHUNK]]
        db.session.execute(insert(Purchase), rows)
    catalog = CatalogFacts(default_doa_days=30)
    table = HistoricRepair.__table__
    for begin in range(0, len(world.claims), CLAIM_CHUNK):
        rows = [{**row, "import_id": None} for row in world.claims[begin:begin + CLAIM_CHUNK]]
        derive(rows, catalog)
        db.session.execute(table.insert(), rows)
    db.session.commit()
