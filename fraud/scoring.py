"""Score every partner against what its own product mix predicts from its peers.

For each signal the peers' per-product rates (fitted robustly: partners that look extreme
are left out of the peer fit, so fraudsters cannot hide in the spread they create) give the
partner an expected value by indirect standardization; an over-dispersed predictive model
(beta-binomial for rates, gamma-Poisson for counts, log-normal for money and minutes) turns
observed vs expected into a tail probability. A partner's signals are combined with Fisher's
method, the false discovery rate is controlled across partners (Benjamini-Hochberg), and a
partner whose volume cannot support a conclusion is called insufficient evidence, not
flagged. A Poisson CUSUM on monthly counts against the partner's own shrunk baseline catches
an onset before the rolling window fills up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fraud import stats
from fraud import verdicts as v
from fraud.cube import Cube

WINDOW_MONTHS = 6
# Flag when the FDR-adjusted combined p is at or below this and the volume supports it.
FLAG_Q = 0.01
# Below this many claims in the window a partner can be "insufficient evidence", never flagged.
MIN_CLAIMS = 30
# A signal counts toward the combination only when this volume could make it significant.
TESTABLE_P = 1e-3
# Peer fit: partners this extreme on a signal are left out of its peer rates (then refit).
PEER_EXCLUSION_P = 0.01
CUSUM_MONTHS = 12
CUSUM_SHIFT = 2.0
CUSUM_THRESHOLD = 4.0


@dataclass(frozen=True)
class _Signal:
    name: str
    kind: str  # "rate" | "count" | "money"
    numerator: str  # cube measure
    squares: str | None = None  # sum of squares, for the log-normal within variance


SIGNALS = (
    _Signal(v.DOA_RATE, "rate", "doa"),
    _Signal(v.LATE_DOA, "rate", "late_doa"),
    _Signal(v.PREMIUM_PARTS, "rate", "premium"),
    _Signal(v.REPEAT_REPAIRS, "rate", "repeats"),
    _Signal(v.PARTS_PER_REPAIR, "count", "parts"),
    _Signal(v.UNRETURNED_PARTS, "count", "unreturned"),
    _Signal(v.PART_COST, "money", "parts_cost", "parts_cost_sq"),
    _Signal(v.LABOR, "money", "labor", "labor_sq"),
)


@dataclass
class _Tested:
    """One signal tested for every partner: arrays of shape (P,)."""

    observed: np.ndarray
    expected: np.ndarray
    p_values: np.ndarray
    testable: np.ndarray  # bool


def score_cube(cube: Cube, *, as_of: int, window: int = WINDOW_MONTHS) -> list[v.PartnerVerdict]:
    """Verdicts for every partner over the ``window`` months ending at month index ``as_of``."""
    if not cube.partners or not cube.months:
        return []
    totals = cube.window(as_of, window)
    claims = totals["claims"]
    volume = claims.sum(axis=1)
    tested = {signal.name: _test(signal, totals) for signal in SIGNALS}
    tested[v.ONSET] = _onset(cube, as_of, window)
    names = list(tested)
    p_matrix = np.array([tested[name].p_values for name in names])  # (signals, P)
    testable = np.array([tested[name].testable for name in names])
    combined = np.array([
        stats.fisher_combine(p_matrix[testable[:, i], i].tolist()) if testable[:, i].any() else 1.0
        for i in range(len(cube.partners))
    ])
    has_test = testable.any(axis=0)
    q_values = np.ones(len(cube.partners))
    if has_test.any():
        q_values[has_test] = stats.benjamini_hochberg(combined[has_test].tolist())
    amounts = _amounts(totals)
    result = []
    for i, partner in enumerate(cube.partners):
        signals = sorted(
            (_describe(name, tested[name], i, amounts) for name in names
             if tested[name].testable[i] or tested[name].p_values[i] < PEER_EXCLUSION_P),
            key=lambda s: s.p_value)
        signals = [s for s in signals if s.observed > s.expected]
        strong = bool(signals) and signals[0].p_value < PEER_EXCLUSION_P
        if q_values[i] <= FLAG_Q and volume[i] >= MIN_CLAIMS and strong:
            verdict = v.FLAG
        elif strong and (volume[i] < MIN_CLAIMS or q_values[i] <= 10 * FLAG_Q):
            verdict = v.INSUFFICIENT
        else:
            verdict = v.CLEAR
        # A fake DOA claim costs a whole claim, so the claimed total alone can miss it.
        at_stake = max(amounts.claimed[i] - amounts.expected_claimed[i],
                       signals[0].excess_amount if signals else 0.0, 0.0)
        result.append(v.PartnerVerdict(
            partner=partner, verdict=verdict, claims=int(volume[i]),
            combined_p=float(combined[i]), q_value=float(q_values[i]),
            signals=signals if verdict != v.CLEAR else [],
            amount_at_stake=round(float(at_stake), 2),
        ))
    return result


def _test(signal: _Signal, totals: dict[str, np.ndarray]) -> _Tested:
    claims = totals["claims"]
    events = totals[signal.numerator]
    weights = np.ones(claims.shape[0])
    for _ in range(2):  # fit, leave out the extreme partners, refit
        tested = _fit_and_test(signal, totals, claims, events, weights)
        weights = (tested.p_values >= PEER_EXCLUSION_P).astype(float)
    return _fit_and_test(signal, totals, claims, events, weights)


def _fit_and_test(signal: _Signal, totals: dict[str, np.ndarray], claims: np.ndarray,
                  events: np.ndarray, weights: np.ndarray) -> _Tested:
    n = claims.sum(axis=1)
    observed = events.sum(axis=1)
    rates = stats.peer_rates(events, claims, weights)
    expected = stats.expected_from_mix(claims, rates)
    peers = weights > 0
    if signal.kind == "rate":
        concentration = stats.fit_betabinomial_concentration(observed[peers], n[peers],
                                                             expected[peers])
        tails = [stats.betabinomial_tail(int(o), int(k), e, concentration)
                 for o, k, e in zip(observed, n, expected, strict=True)]
    elif signal.kind == "count":
        shape = stats.fit_negbinomial_shape(observed[peers], expected[peers])
        tails = [stats.negbinomial_tail(int(o), e, shape)
                 for o, e in zip(observed, expected, strict=True)]
    else:
        squares = totals[signal.squares]
        # Per-claim variance of the measure for each product, from the peers.
        second = stats.peer_rates(squares, claims, weights)
        per_claim_variance = np.maximum(second - rates ** 2, 0.0)
        within = claims @ per_claim_variance
        tau2 = stats.fit_lognormal_tau2(observed[peers], expected[peers], within[peers])
        tails = [stats.lognormal_ratio_tail(o, e, w, tau2)
                 for o, e, w in zip(observed, expected, within, strict=True)]
    p_values = np.array([t.p_value for t in tails])
    testable = np.array([t.min_attainable_p < TESTABLE_P and e > 0
                         for t, e in zip(tails, expected, strict=True)])
    return _Tested(observed, expected, p_values, testable)


def _onset(cube: Cube, as_of: int, window: int) -> _Tested:
    """Poisson CUSUM (Lucas 1985) on monthly DOA counts against the partner's own baseline.

    Expected monthly counts come from peer rates for the partner's mix, scaled by the
    partner's shrunk relative rate over the months before the window (its own normal).
    The p-value is the tail of the count since the CUSUM last stood at zero, Bonferroni-
    corrected for the segments it could have chosen.
    """
    months = cube.months
    start = max(0, as_of - CUSUM_MONTHS + 1)
    doa = cube["doa"][:, :, start:as_of + 1]
    claims = cube["claims"][:, :, start:as_of + 1]
    history_end = as_of - window
    history = cube.window(history_end, 24) if history_end >= 0 else None
    totals = cube.window(as_of, window)
    rates = stats.peer_rates(totals["doa"], totals["claims"])
    partners = len(cube.partners)
    observed_seg = np.zeros(partners)
    expected_seg = np.zeros(partners)
    p_values = np.ones(partners)
    testable = np.zeros(partners, dtype=bool)
    for i in range(partners):
        monthly_expected = np.einsum("sm,s->m", claims[i], rates)
        baseline = 1.0
        if history is not None:
            past_expected = float(history["claims"][i] @ rates)
            baseline = stats.shrunk_ratio(float(history["doa"][i].sum()), past_expected,
                                          prior_shape=10.0)
        expected = monthly_expected * baseline
        observed = doa[i].sum(axis=0)
        if expected.sum() <= 0:
            continue
        cusum = stats.poisson_cusum(observed, expected, shift=CUSUM_SHIFT,
                                    threshold=CUSUM_THRESHOLD)
        if cusum.statistic[-1] <= 0:
            continue
        zeros = np.flatnonzero(cusum.statistic <= 0)
        segment_start = int(zeros[-1]) + 1 if zeros.size else 0
        o, e = float(observed[segment_start:].sum()), float(expected[segment_start:].sum())
        tail = stats.negbinomial_tail(int(o), e, math.inf)
        observed_seg[i], expected_seg[i] = o, e
        p_values[i] = min(1.0, tail.p_value * len(months[start:as_of + 1]))
        testable[i] = cusum.alarm_index is not None
    return _Tested(observed_seg, expected_seg, p_values, testable)


@dataclass(frozen=True)
class _Amounts:
    claimed: np.ndarray
    expected_claimed: np.ndarray
    per_claim: np.ndarray
    per_part: np.ndarray
    per_labor_minute: np.ndarray


def _amounts(totals: dict[str, np.ndarray]) -> _Amounts:
    claims = totals["claims"]
    n = claims.sum(axis=1)
    claimed = totals["claimed"].sum(axis=1)
    parts = totals["parts"].sum(axis=1)
    parts_cost = totals["parts_cost"].sum(axis=1)
    labor = totals["labor"].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_claim = np.where(n > 0, claimed / n, 0.0)
        per_part = np.where(parts > 0, parts_cost / parts, 0.0)
        per_minute = np.where(labor > 0, (claimed - parts_cost) / labor, 0.0)
    expected_claimed = stats.expected_from_mix(claims, stats.peer_rates(totals["claimed"], claims))
    return _Amounts(claimed, expected_claimed, per_claim, per_part, per_minute)


_WORDS = {
    v.DOA_RATE: "DOA",
    v.LATE_DOA: "DOA on units past their DOA window",
    v.PREMIUM_PARTS: "repairs using a high-cost module",
    v.REPEAT_REPAIRS: "repairs repeated on the same serial within 90 days",
    v.ONSET: "DOA since the recent rise",
}


def _describe(name: str, tested: _Tested, i: int, amounts: _Amounts) -> v.SignalResult:
    observed, expected = float(tested.observed[i]), float(tested.expected[i])
    excess = max(0.0, observed - expected)
    p_text = _p_text(float(tested.p_values[i]))
    claims = amounts.claimed[i] / amounts.per_claim[i] if amounts.per_claim[i] else 0.0
    if name in (v.DOA_RATE, v.LATE_DOA, v.PREMIUM_PARTS, v.REPEAT_REPAIRS):
        share = observed / claims if claims else 0.0
        expected_share = expected / claims if claims else 0.0
        money = excess * amounts.per_claim[i]
        reason = (f"{_WORDS[name]} {share:.1%} vs {expected_share:.1%} expected for its "
                  f"product mix ({observed:.0f} of {claims:.0f} claims, {expected:.1f} "
                  f"expected); {p_text}")
    elif name == v.ONSET:
        money = excess * amounts.per_claim[i]
        reason = (f"{_WORDS[name]}: {observed:.0f} DOA claims vs {expected:.1f} expected from "
                  f"its own baseline; {p_text}")
    elif name == v.PARTS_PER_REPAIR:
        money = excess * amounts.per_part[i]
        reason = (f"{observed / claims if claims else 0:.2f} parts per repair vs "
                  f"{expected / claims if claims else 0:.2f} expected for its product mix "
                  f"({observed:.0f} parts, {expected:.0f} expected); {p_text}")
    elif name == v.UNRETURNED_PARTS:
        money = excess * amounts.per_part[i]
        reason = (f"{observed:.0f} defective parts not returned vs {expected:.1f} expected; "
                  f"{p_text}")
    elif name == v.PART_COST:
        money = excess
        reason = (f"parts cost {observed / claims if claims else 0:.2f} per repair vs "
                  f"{expected / claims if claims else 0:.2f} expected for its product mix; "
                  f"{p_text}")
    else:
        money = excess * amounts.per_labor_minute[i]
        reason = (f"labor {observed / claims if claims else 0:.0f} minutes per repair vs "
                  f"{expected / claims if claims else 0:.0f} expected for its product mix; "
                  f"{p_text}")
    return v.SignalResult(signal=name, p_value=float(tested.p_values[i]), observed=observed,
                          expected=expected, excess_amount=round(float(money), 2), reason=reason)


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
