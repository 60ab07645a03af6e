"""The synthetic fraud world: its guarantees, so the evaluation built on it means something."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from catalog.models import Purchase
from common.extensions import db
from fraud.synthetic import (
    HONEST_TYPO_RATE,
    PART_OUTSIDE_BOM,
    PATTERNS,
    SERIAL_AT_OTHER_PARTNER,
    STATISTICAL_PATTERNS,
    UNREGISTERED_SERIAL,
    UNUSUAL_PROFILES,
    World,
    generate_world,
    load_world,
)
from partners.models import HistoricRepair

SEED = 1
_SERIAL_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

Key = tuple[str, str, date]


@pytest.fixture(scope="module")
def blatant() -> World:
    return generate_world(SEED, strength="blatant")


@pytest.fixture(scope="module")
def twin() -> World:
    """The same world with every fraudster honest."""
    return generate_world(SEED, strength="none")


def broken_rules(world: World) -> dict[Key, set[str]]:
    """Every hard rule each claim breaks, checked from the world's own rows."""
    bought = {(p["sku"], p["serial_number"]): p["purchase_date"] for p in world.purchases}
    bom: dict[str, dict[str, int]] = defaultdict(dict)
    for line in world.bom:
        bom[line["sku"]][line["part_number"]] = line["max_qty"]
    broken: dict[Key, set[str]] = defaultdict(set)
    by_serial = defaultdict(list)
    for claim in world.claims:
        key = (claim["partner_code"], claim["serial_number"], claim["received_date"])
        by_serial[claim["serial_number"]].append(claim)
        purchase = bought.get((claim["sku"], claim["serial_number"]))
        if purchase is None:
            broken[key].add(UNREGISTERED_SERIAL)
        else:
            age = (claim["received_date"] - purchase).days
            if age > world.product_truth[claim["sku"]]["warranty_days"]:
                broken[key].add("outside_warranty")
            if age < 0:
                broken[key].add("bought_after_received")
        if any(item["quantity"] > bom[claim["sku"]].get(item["part_number"], 0)
               for item in claim["parts"]):
            broken[key].add(PART_OUTSIDE_BOM)
    for claims in by_serial.values():
        claims.sort(key=lambda c: c["received_date"])
        for earlier, later in zip(claims, claims[1:], strict=False):
            if (earlier["partner_code"] != later["partner_code"]
                    and earlier["completed_date"] >= later["received_date"]):
                broken[(later["partner_code"], later["serial_number"],
                        later["received_date"])].add(SERIAL_AT_OTHER_PARTNER)
    return broken


def claims_of(world: World, code: str, *, before: int | None = None,
              after: int | None = None) -> list[dict]:
    return [c for c in world.claims if c["partner_code"] == code
            and (before is None or world.month_index(c["received_date"]) < before)
            and (after is None or world.month_index(c["received_date"]) >= after)]


def part_count(claim: dict) -> int:
    return sum(item["quantity"] for item in claim["parts"])


def test_same_seed_gives_the_same_world_and_another_seed_another() -> None:
    first = generate_world(3, partners=12, months=6)
    again = generate_world(3, partners=12, months=6)
    other = generate_world(4, partners=12, months=6)
    assert first.claims == again.claims
    assert first.purchases == again.purchases
    assert first.truth == again.truth
    assert first.claims != other.claims


def test_rejects_an_unknown_strength() -> None:
    with pytest.raises(ValueError, match="strength"):
        generate_world(1, strength="extreme")


def test_catalog_matches_the_described_ranges(blatant: World) -> None:
    assert 12 <= len(blatant.products) <= 15
    cost = {p["part_number"]: p["unit_cost"] for p in blatant.parts}
    lines = defaultdict(list)
    for line in blatant.bom:
        lines[line["sku"]].append(line)
    for product in blatant.products:
        assert product["warranty_months"] in (12, 24)
        assert product["doa_days"] in (14, 30)
        assert 30 <= product["labor_minutes"] <= 120
        assert 4 <= len(lines[product["sku"]]) <= 8
        assert all(line["max_qty"] in (1, 2) for line in lines[product["sku"]])
        costs = sorted(cost[line["part_number"]] for line in lines[product["sku"]])
        assert Decimal(80) <= costs[-1] <= Decimal(250)  # the main board
        assert Decimal(2) <= costs[0] <= Decimal(15)  # small parts
        truth = blatant.product_truth[product["sku"]]
        assert truth["premium_parts"]
        assert 0.005 <= truth["base_doa_rate"] <= 0.085
    assert max(t["base_doa_rate"] for t in blatant.product_truth.values()) >= 0.075


def test_partners_differ_in_size_and_kind(blatant: World) -> None:
    truth = blatant.truth
    assert len(truth) == len(blatant.partners) == 50
    means = [t.mean_monthly_claims for t in truth.values()]
    assert min(means) >= 2 and max(means) <= 400
    assert max(means) / min(means) > 30
    assert 0.25 <= sum(t.size == "small" for t in truth.values()) / len(truth) <= 0.45
    unusual = [t for t in truth.values() if t.kind == "unusual"]
    assert {t.profile for t in unusual} == set(UNUSUAL_PROFILES)
    fraud = [t for t in truth.values() if t.kind == "fraud"]
    assert 6 <= len(fraud) <= 8
    assert sum(t.size == "small" for t in fraud) == 1
    assert {p for t in fraud if t.size != "small" for p in t.patterns} == set(PATTERNS)
    assert all(6 <= t.onset <= 18 for t in fraud)
    assert all(t.mean_monthly_claims >= 15 for t in fraud if t.size != "small")


def test_honest_partners_have_rates_of_their_own(blatant: World) -> None:
    spread = statistics.pstdev(rates["doa"] for rates in blatant.partner_rates.values())
    assert 0.08 <= spread <= 0.25


def test_honest_claims_break_no_hard_rule_except_the_documented_noise(blatant: World) -> None:
    broken = broken_rules(blatant)
    for key, rules in broken.items():
        if key in blatant.rule_truth:
            continue
        assert key in blatant.noise, (key, rules)
        assert rules == {UNREGISTERED_SERIAL}
    expected = len(blatant.claims) * HONEST_TYPO_RATE
    assert 1 <= len(blatant.noise) <= 2 * expected + 5
    registered = {p["serial_number"] for p in blatant.purchases}
    for _, serial, _ in blatant.noise:  # a real serial with one character mistyped
        variants = {serial[:i] + char + serial[i + 1:]
                    for i in range(len(serial)) for char in _SERIAL_CHARS}
        assert serial not in registered and variants & registered


def test_rule_truth_claims_break_the_rule_they_were_built_for(blatant: World) -> None:
    broken = broken_rules(blatant)
    registered = {p["serial_number"] for p in blatant.purchases}
    assert set(blatant.rule_truth.values()) == {UNREGISTERED_SERIAL, SERIAL_AT_OTHER_PARTNER,
                                                PART_OUTSIDE_BOM}
    for key, rule in blatant.rule_truth.items():
        assert broken[key] == {rule}, key
        assert blatant.truth[key[0]].kind == "fraud"
        if rule == UNREGISTERED_SERIAL:
            assert key[1] not in registered


def test_honest_work_matches_the_described_shares(blatant: World) -> None:
    honest = [c for c in blatant.claims if blatant.truth[c["partner_code"]].kind == "honest"]
    parts = [part_count(c) for c in honest]
    assert 0.95 <= statistics.fmean(parts) <= 1.25
    assert max(parts) == 3
    premium = {sku: set(t["premium_parts"]) for sku, t in blatant.product_truth.items()}
    share = statistics.fmean(any(i["part_number"] in premium[c["sku"]] for i in c["parts"])
                             for c in honest)
    assert 0.10 <= share <= 0.20
    standard = {p["sku"]: p["labor_minutes"] for p in blatant.products}
    assert 0.9 <= statistics.median(c["labor_minutes"] / standard[c["sku"]] for c in honest) <= 1.15
    bought = {p["serial_number"]: p["purchase_date"] for p in blatant.purchases}
    doa_days = {p["sku"]: p["doa_days"] for p in blatant.products}
    ages = [(c["received_date"] - bought[c["serial_number"]]).days for c in honest
            if c["serial_number"] in bought]
    assert statistics.median(ages) > 60
    assert all((c["received_date"] - bought[c["serial_number"]]).days <= doa_days[c["sku"]]
               for c in honest if c["doa"] and c["serial_number"] in bought)
    serials = defaultdict(list)
    for claim in honest:
        serials[claim["serial_number"]].append(claim["received_date"])
    repeats = sum(len(days) - 1 for days in serials.values())
    assert 0.02 <= repeats / len(honest) <= 0.04
    assert all((max(days) - min(days)).days <= 90 for days in serials.values())


def test_claimed_amount_is_catalog_parts_plus_labor_at_60_an_hour(blatant: World) -> None:
    cost = {p["part_number"]: p["unit_cost"] for p in blatant.parts}
    for claim in blatant.claims:
        parts = sum((cost[i["part_number"]] * i["quantity"] for i in claim["parts"]),
                    Decimal(0))
        assert claim["claimed_amount"] == parts + Decimal(claim["labor_minutes"]), claim
        assert claim["rma_number"] is None


def test_fraudsters_are_their_honest_twin_before_onset(blatant: World, twin: World) -> None:
    def by_partner(world: World) -> dict[str, list[dict]]:
        claims = defaultdict(list)
        for claim in world.claims:
            claims[claim["partner_code"]].append(claim)
        return claims

    fraud = blatant.partners_of_kind("fraud")
    assert fraud and not twin.partners_of_kind("fraud")
    ours, theirs = by_partner(blatant), by_partner(twin)
    for code, truth in blatant.truth.items():
        if truth.kind != "fraud":
            assert ours[code] == theirs[code]
            continue
        split = date.fromisoformat(blatant.months[truth.onset] + "-01")
        assert ([c for c in ours[code] if c["received_date"] < split]
                == [c for c in theirs[code] if c["received_date"] < split])
        assert ([c for c in ours[code] if c["received_date"] >= split]
                != [c for c in theirs[code] if c["received_date"] >= split])


def test_blatant_doa_inflation_triples_the_partners_own_doa_rate(blatant: World) -> None:
    code = next(c for c, t in blatant.truth.items()
                if t.patterns == ("doa_inflation",) and t.size != "small")
    onset, rel = blatant.truth[code].onset, blatant.partner_rates[code]["doa"]

    def ratio(claims: list[dict]) -> float:
        expected = sum(blatant.product_truth[c["sku"]]["base_doa_rate"] * rel for c in claims)
        return sum(c["doa"] for c in claims) / expected

    assert 0.5 <= ratio(claims_of(blatant, code, before=onset)) <= 1.6
    assert 2.2 <= ratio(claims_of(blatant, code, after=onset)) <= 3.8
    bought = {p["serial_number"]: p["purchase_date"] for p in blatant.purchases}
    doa_days = {p["sku"]: p["doa_days"] for p in blatant.products}
    late = [c for c in claims_of(blatant, code, after=onset) if c["doa"]
            and (c["received_date"] - bought[c["serial_number"]]).days > doa_days[c["sku"]]]
    assert late  # some fake DOAs are on units past their DOA window


def test_blatant_patterns_move_their_own_measure(blatant: World, twin: World) -> None:
    premium = {sku: set(t["premium_parts"]) for sku, t in blatant.product_truth.items()}
    for code, truth in blatant.truth.items():
        if truth.kind != "fraud" or truth.size == "small":
            continue
        after, before = claims_of(blatant, code, after=truth.onset), claims_of(
            twin, code, after=truth.onset)
        pattern = truth.patterns[0]
        if pattern == "parts_padding":
            extra = statistics.fmean(map(part_count, after)) - statistics.fmean(
                map(part_count, before))
            assert 0.85 <= extra <= 1.0
        elif pattern == "labor_padding":
            labor = sum(c["labor_minutes"] for c in after) / sum(c["labor_minutes"]
                                                                 for c in before)
            assert 1.55 <= labor <= 1.65
        elif pattern == "premium_swap":
            share = statistics.fmean(any(i["part_number"] in premium[c["sku"]]
                                         for i in c["parts"]) for c in after)
            assert 0.45 <= share <= 0.7
        elif pattern == "repeat_churn":
            assert 1.10 <= len(after) / len(before) <= 1.20


def test_subtle_fraudsters_mix_two_milder_patterns() -> None:
    world = generate_world(SEED, strength="subtle", partners=20, months=12)
    fraud = [world.truth[code] for code in world.partners_of_kind("fraud")]
    assert fraud
    for truth in fraud:
        first, second = truth.patterns
        assert first != second and second in STATISTICAL_PATTERNS
        assert 3 <= truth.onset <= 9


def test_load_world_writes_every_claim_with_its_facts(app) -> None:
    world = generate_world(5, partners=12, months=6)
    load_world(world)
    rows = db.session.execute(select(HistoricRepair)).scalars().all()
    assert len(rows) == len(world.claims)
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == len(world.purchases)
    assert all(r.parts_cost > 0 for r in rows if r.parts)
    assert all(r.received_month == r.received_date.strftime("%Y-%m") for r in rows)
    unregistered = {k for k, rule in {**world.rule_truth, **world.noise}.items()
                    if rule == UNREGISTERED_SERIAL}
    assert {(r.partner_code, r.serial_number, r.received_date) for r in rows
            if not r.serial_registered} == unregistered
    outside = {k for k, rule in world.rule_truth.items() if rule == PART_OUTSIDE_BOM}
    assert {(r.partner_code, r.serial_number, r.received_date) for r in rows
            if r.outside_bom_parts} == outside
    assert not any(r.outside_warranty for r in rows)
    assert all(r.unit_age_days is not None for r in rows if r.serial_registered)
    assert any(r.premium_parts for r in rows)


def test_loading_through_the_imports_gives_the_same_rows(app) -> None:
    world = generate_world(5, partners=12, months=6)
    load_world(world, through_import=True)
    rows = db.session.execute(select(
        HistoricRepair.partner_code, HistoricRepair.serial_number, HistoricRepair.received_date,
        HistoricRepair.claimed_amount, HistoricRepair.doa, HistoricRepair.labor_minutes)).all()
    assert len(rows) == len(world.claims)
    assert set(rows) == {(c["partner_code"], c["serial_number"], c["received_date"],
                          c["claimed_amount"], c["doa"], c["labor_minutes"])
                         for c in world.claims}
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == len(world.purchases)
