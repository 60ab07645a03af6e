"""Score every partner against what its own product mix predicts, and against its own past.

Two views of every signal. **Peers**: the peers' per-product rates (fitted robustly:
partners that look extreme are left out of the peer fit and it is refitted) give the
partner an expected value for its own mix (indirect standardization); an over-dispersed
predictive model (beta-binomial for rates, gamma-Poisson for counts, log-normal for money
and minutes) whose spread of honest partners is a robust, MAD-based estimate turns observed
vs expected into a tail probability. **Its own past**: the partner's recent months against
its own earlier months shrunk toward its peers, scanned over the possible onset (the CUSUM
maximised over the change point), which sees a change of behaviour that honest
heterogeneity would hide from the peer view. The two views are Bonferroni-combined per
signal; a partner's signals are combined by behaviour (DOA rate and late DOAs are one
behaviour, Brown-combined) with Fisher's method or the Bonferroni minimum, whichever is
stronger, the false discovery rate is controlled across partners
(Benjamini-Hochberg), and a partner whose volume cannot support a conclusion is called
insufficient evidence, not flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraud import stats
from fraud import verdicts as v
from fraud.cube import Cube

WINDOW_MONTHS = 6
# Flag when the FDR-adjusted combined p is at or below this and the volume supports it.
FLAG_Q = 0.05
# Worth a look but not a conclusion: shown to finance as insufficient evidence.
INSUFFICIENT_Q = 0.2
# Below this many claims in the window a partner can be "insufficient evidence", never flagged.
MIN_CLAIMS = 30
# A signal counts toward the combination only when this volume could make it significant.
TESTABLE_P = 1e-3
# Peer fit: partners this extreme on a signal are left out of its peer rates (then refit).
PEER_EXCLUSION_P = 0.01
# A product needs this many peer claims for its rate to leave extreme partners out.
MIN_PEER_CLAIMS = 30
# Honest partners are never assumed identical: at least this relative variance (10% sd).
TAU2_FLOOR = 0.01
HISTORY_MONTHS = 24
# Own-baseline view: a change of behaviour spanning up to TREND_MONTHS recent months, against
# at least TREND_BASE_MONTHS earlier ones.
TREND_MONTHS = 6
TREND_BASE_MONTHS = 6
TREND_PRIOR_CLAIMS = 20
TREND_MIN_CLAIMS = 20
TREND_DRIFT2 = 0.05 ** 2  # honest month-to-month drift of a partner's own rates


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
    # Against the partner's own baseline: its recent months vs its earlier ones.
    trend_ratio: np.ndarray | None = None
    trend_months: np.ndarray | None = None  # how many recent months the change spans
    by_trend: np.ndarray | None = None  # bool: the trend view gave the smaller p
    tau2: float = TAU2_FLOOR  # honest partners' relative variance on this signal


def score_cube(cube: Cube, *, as_of: int, window: int = WINDOW_MONTHS) -> list[v.PartnerVerdict]:
    """Verdicts for every partner over the ``window`` months ending at month index ``as_of``."""
    if not cube.partners or not cube.months:
        return []
    totals = cube.window(as_of, window)
    claims = totals["claims"]
    volume = claims.sum(axis=1)
    history = cube.window(as_of, HISTORY_MONTHS)
    tested = {signal.name: _test(signal, cube, as_of, totals, history) for signal in SIGNALS}
    names = list(tested)
    testable = np.array([tested[name].testable for name in names])
    combined = np.array([_combine(tested, names, i) for i in range(len(cube.partners))])
    has_test = testable.any(axis=0)
    q_values = np.ones(len(cube.partners))
    if has_test.any():
        q_values[has_test] = stats.benjamini_hochberg(combined[has_test].tolist())
    amounts = _amounts(totals)
    result = []
    for i, partner in enumerate(cube.partners):
        described = (_describe(name, tested[name], i, amounts) for name in names
                     if tested[name].testable[i] or tested[name].p_values[i] < PEER_EXCLUSION_P)
        signals = sorted((s for s in described if s is not None), key=lambda s: s.p_value)
        strong = bool(signals) and signals[0].p_value < PEER_EXCLUSION_P
        if q_values[i] <= FLAG_Q and volume[i] >= MIN_CLAIMS and strong:
            verdict = v.FLAG
        elif strong and (volume[i] < MIN_CLAIMS or q_values[i] <= INSUFFICIENT_Q):
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


def _combine(tested: dict[str, _Tested], names: list[str], i: int) -> float:
    """One p-value for partner ``i``'s testable signals: Fisher's method or the smallest
    behaviour's p-value, whichever is stronger, Bonferroni-corrected for having looked both
    ways.

    Fisher (1932) is the more powerful when a fraud moves two or three signals a little;
    the Bonferroni-adjusted minimum (Tippett 1931) when it moves one behaviour a lot and the
    other signals, honestly null, would dilute Fisher's sum. The minimum is taken over
    behaviours, not signals: DOA declarations are one behaviour seen twice (a late DOA is
    also a DOA), so ``doa_rate`` and ``late_doa`` count as one family whose p-value is their
    Fisher combination corrected for the correlation of the two counts (Brown 1975; see
    ``_doa_family``). Inflating DOAs moves both, and the minimum over eight signals would
    otherwise pay for two looks at one behaviour while using only one of them. Fisher's sum
    runs over the same behaviours, so it no longer counts the DOAs behind a late DOA twice
    as if they were independent evidence.
    """
    p_values = {name: float(tested[name].p_values[i]) for name in names
                if tested[name].testable[i]}
    if not p_values:
        return 1.0
    families = {name: p for name, p in p_values.items() if name not in _DOA_FAMILY}
    doa = {name: p for name, p in p_values.items() if name in _DOA_FAMILY}
    if len(doa) == len(_DOA_FAMILY):
        families["doa"] = _doa_family(tested, i)
    else:
        families.update(doa)
    fisher = stats.fisher_combine(list(families.values()))
    tippett = min(1.0, min(families.values()) * len(families))
    return min(1.0, 2 * min(fisher, tippett))


_DOA_FAMILY = (v.DOA_RATE, v.LATE_DOA)


def _doa_family(tested: dict[str, _Tested], i: int) -> float:
    """DOA evidence as one p-value: ``doa_rate`` and ``late_doa`` Fisher-combined (Brown 1975).

    Late DOAs are part of the DOAs, and both scale with the partner's own DOA propensity, so
    the two tests are positively correlated under the null; Brown's method discounts Fisher's
    statistic by the correlation of the two counts under the gamma-Poisson model with one
    propensity shared by both (the larger of the two signals' honest variances, so the
    correlation is not understated).
    """
    doa, late = tested[v.DOA_RATE], tested[v.LATE_DOA]
    e_doa = float(doa.expected[i])
    e_late = min(float(late.expected[i]), e_doa)
    rho = stats.poisson_gamma_correlation(e_doa, e_late, max(doa.tau2, late.tau2))
    return stats.brown_combine([float(doa.p_values[i]), float(late.p_values[i])],
                               np.array([[1.0, rho], [rho, 1.0]]))


def _test(signal: _Signal, cube: Cube, as_of: int, totals: dict[str, np.ndarray],
          history: dict[str, np.ndarray]) -> _Tested:
    weights = np.ones(totals["claims"].shape[0])
    for _ in range(2):  # fit, leave out the extreme partners, refit
        tested = _fit_and_test(signal, totals, history, weights)
        weights = (tested.p_values >= PEER_EXCLUSION_P).astype(float)
    peer = _fit_and_test(signal, totals, history, weights)
    trend_p, ratio, months = _trend(signal, cube, as_of, totals, weights)
    # Two views of one signal, Bonferroni-combined: the peers', and the partner's own past.
    by_trend = trend_p < peer.p_values
    p_values = np.minimum(1.0, 2 * np.minimum(peer.p_values, trend_p))
    testable = peer.testable | (trend_p < 1.0)
    return _Tested(peer.observed, peer.expected, p_values, testable, ratio, months, by_trend,
                   peer.tau2)


def _trend(signal: _Signal, cube: Cube, as_of: int, totals: dict[str, np.ndarray],
           weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The partner's last L months against its own shrunk baseline, for L = 1..TREND_MONTHS.

    Page's CUSUM maximised over the unknown change point (Page 1954; the scan form of
    Siegmund & Venkatraman 1995): for each possible onset, the log ratio of the recent
    months to what the partner's own earlier months (shrunk toward its peers by a prior
    worth TREND_PRIOR_CLAIMS claims) predict, z-tested, and the best onset Bonferroni-
    corrected over the onsets actually tested (with nine months of history only the last
    three months can start a change that has six months of baseline before it; Bonferroni
    counts the tests made, and which onsets can be tested depends on claim volumes only,
    not on the counts tested). Honest partners differ from their peers but stay like
    themselves, so this view sees a change of behaviour that the peer comparison cannot
    separate from honest heterogeneity. Returns (p, recent/baseline ratio, months spanned).
    """
    start = max(0, as_of - HISTORY_MONTHS + 1)
    claims = cube["claims"][:, :, start:as_of + 1]
    rates = _peer_rates(signal, totals, weights)
    observed = cube[signal.numerator][:, :, start:as_of + 1].sum(axis=1)
    expected = np.einsum("pst,s->pt", claims, rates)
    count = claims.sum(axis=1)
    money = signal.kind == "money"
    if money:
        second = _peer_rates(signal, totals, weights, signal.squares)
        within = np.einsum("pst,s->pt", claims, np.maximum(second - rates ** 2, 0.0))
    partners, months = observed.shape
    best_p = np.ones(partners)
    best_ratio = np.ones(partners)
    best_months = np.zeros(partners, dtype=int)
    onsets = np.zeros(partners)  # onsets tested per partner: the Bonferroni factor
    with np.errstate(divide="ignore", invalid="ignore"):
        for recent in range(1, TREND_MONTHS + 1):
            if months - recent < TREND_BASE_MONTHS:
                break
            o_r, e_r = observed[:, -recent:].sum(1), expected[:, -recent:].sum(1)
            o_h, e_h = observed[:, :-recent].sum(1), expected[:, :-recent].sum(1)
            n_r, n_h = count[:, -recent:].sum(1), count[:, :-recent].sum(1)
            pseudo = TREND_PRIOR_CLAIMS * np.where(n_h > 0, e_h / n_h, 0.0)
            baseline = np.where(e_h + pseudo > 0, (o_h + pseudo) / (e_h + pseudo), 1.0)
            predicted = baseline * e_r
            if money:
                variance = (within[:, -recent:].sum(1) / np.maximum(predicted, 1e-9) ** 2
                            + within[:, :-recent].sum(1) / np.maximum(e_h + pseudo, 1e-9) ** 2)
                usable = (n_r >= TREND_MIN_CLAIMS) & (n_h >= TREND_MIN_CLAIMS) & (predicted > 0)
                z = np.log(np.maximum(o_r, 1e-9) / np.maximum(predicted, 1e-9))
                p = np.where(usable, stats.normal_sf(z / np.sqrt(variance + TREND_DRIFT2)), 1.0)
            else:
                # Counts: the exact gamma-Poisson predictive. The partner's own rate has a
                # Gamma(pseudo + o_h, pseudo + e_h) posterior after its earlier months, so its
                # recent count is negative binomial (exact for the few DOAs a month of a
                # small shop, where a normal approximation would be far off).
                # Its precision is capped so honest drift (5%) is never ruled out.
                usable = (predicted > 0) & (n_h >= TREND_MIN_CLAIMS) & (e_r > 0)
                shape, rate = o_h + pseudo, e_h + pseudo
                cap = np.minimum(1.0, (1 / TREND_DRIFT2) / np.maximum(shape, 1e-12))
                shape, rate = shape * cap, rate * cap
                p = np.where(usable, stats.negbinomial_sf(o_r, shape, rate / np.maximum(
                    rate + e_r, 1e-12)), 1.0)
            onsets += usable
            better = p < best_p
            best_p = np.where(better, p, best_p)
            best_ratio = np.where(better, o_r / np.maximum(predicted, 1e-9), best_ratio)
            best_months = np.where(better, recent, best_months)
    return np.minimum(1.0, best_p * np.maximum(onsets, 1)), best_ratio, best_months


def _peer_rates(signal: _Signal, totals: dict[str, np.ndarray], weights: np.ndarray,
                measure: str | None = None) -> np.ndarray:
    """Peers' per-product rates of ``measure`` (default: the signal's).

    Counted events get half an event of prior per product: without it a product on which no
    peer ever declared, say, a late DOA would expect zero, and the partner with three could
    not be tested at all (Jeffreys-style smoothing). Where leaving extreme partners out
    leaves a product with fewer than MIN_PEER_CLAIMS claims, everyone's claims on it count:
    the only shop repairing a product is then compared with itself on it, never with other
    products' rates, so no flag can come from product mix alone.
    """
    measure = measure or signal.numerator
    everyone = np.ones_like(weights)
    values, claims = totals[measure], totals["claims"]
    peer_claims = (weights[:, None] * claims).sum(axis=0)
    if signal.kind == "money":
        fitted = stats.peer_rates(values, claims, weights)
        fallback = stats.peer_rates(values, claims, everyone)
    else:
        fitted, fallback = (_smoothed(values, claims, w) for w in (weights, everyone))
    return np.where(peer_claims >= MIN_PEER_CLAIMS, fitted, fallback)


def _smoothed(events: np.ndarray, claims: np.ndarray, weights: np.ndarray) -> np.ndarray:
    events = (weights[:, None] * events).sum(axis=0)
    claims = (weights[:, None] * claims).sum(axis=0)
    overall = (events.sum() + 0.5) / (claims.sum() + 1.0)
    return np.where(claims > 0, (events + 0.5) / (claims + 1.0), overall)


def _heterogeneity(signal: _Signal, totals: dict[str, np.ndarray],
                   weights: np.ndarray) -> float:
    """How much honest partners' rates differ: robust relative variance tau2 (log scale)."""
    claims = totals["claims"]
    n = claims.sum(axis=1)
    observed = totals[signal.numerator].sum(axis=1)
    rates = _peer_rates(signal, totals, weights)
    expected = stats.expected_from_mix(claims, rates)
    peers = weights > 0
    if signal.kind == "rate":
        with np.errstate(divide="ignore", invalid="ignore"):
            pi = np.where(n > 0, expected / np.maximum(n, 1), 0.0)
        return stats.fit_relative_variance(observed[peers], expected[peers],
                                           (expected * (1 - pi))[peers])
    if signal.kind == "count":
        return stats.fit_relative_variance(observed[peers], expected[peers])
    # Money: usable by claim count, within variance from the peers' per-claim spread.
    second = _peer_rates(signal, totals, weights, signal.squares)
    within = claims @ np.maximum(second - rates ** 2, 0.0)
    scale = np.maximum(np.where(n > 0, expected / np.maximum(n, 1), 0.0), 1e-9)
    return stats.fit_relative_variance(observed[peers] / scale[peers], n[peers],
                                       within[peers] / scale[peers] ** 2)


def _fit_and_test(signal: _Signal, totals: dict[str, np.ndarray],
                  history: dict[str, np.ndarray], weights: np.ndarray) -> _Tested:
    claims = totals["claims"]
    n = claims.sum(axis=1)
    observed = totals[signal.numerator].sum(axis=1)
    rates = _peer_rates(signal, totals, weights)
    expected = stats.expected_from_mix(claims, rates)
    # Honest heterogeneity is a stable trait of the trade: estimated on the window and on the
    # longer history (more partners with enough volume), never assumed below the floor.
    tau2 = max(_heterogeneity(signal, totals, weights),
               _heterogeneity(signal, history, weights), TAU2_FLOOR)
    # The tails of every partner at once (``stats.*_tails``: the per-partner tests' numbers).
    if signal.kind == "rate":
        concentration = [stats.concentration_for(e / k if k else 0.0, tau2)
                         for k, e in zip(n.astype(int).tolist(), expected, strict=True)]
        p_values, floors = stats.betabinomial_tails(observed.astype(int), n.astype(int),
                                                    expected, np.array(concentration))
        testable = (floors < TESTABLE_P) & (expected > 0)
        return _Tested(observed, expected, p_values, testable, tau2=tau2)
    if signal.kind == "count":
        p_values = stats.negbinomial_tails(observed.astype(int), expected, 1 / tau2)
    else:
        second = _peer_rates(signal, totals, weights, signal.squares)
        within = claims @ np.maximum(second - rates ** 2, 0.0)
        p_values = stats.lognormal_ratio_tails(observed, expected, within, tau2)
    # Counts and money are unbounded: any p is attainable (min_attainable_p 0).
    return _Tested(observed, expected, p_values, expected > 0, tau2=tau2)


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


_RATE_WORDS = {
    v.DOA_RATE: "DOA",
    v.LATE_DOA: "DOA on units past their DOA window",
    v.PREMIUM_PARTS: "repairs using a high-cost module",
    v.REPEAT_REPAIRS: "repairs repeated on the same serial within 90 days",
}


def _describe(name: str, tested: _Tested, i: int, amounts: _Amounts) -> v.SignalResult | None:
    """The signal in plain words with its numbers, or None when it shows no excess."""
    observed, expected = float(tested.observed[i]), float(tested.expected[i])
    by_trend = bool(tested.by_trend[i]) if tested.by_trend is not None else False
    trend_ratio = float(tested.trend_ratio[i]) if tested.trend_ratio is not None else 1.0
    if not (observed > expected or (by_trend and trend_ratio > 1)):
        return None
    claims = amounts.claimed[i] / amounts.per_claim[i] if amounts.per_claim[i] else 0.0
    per = (lambda x: x / claims) if claims else (lambda x: 0.0)
    if name in _RATE_WORDS:
        unit_money = amounts.per_claim[i]
        text = (f"{_RATE_WORDS[name]} {per(observed):.1%} vs {per(expected):.1%} expected for "
                f"its product mix ({observed:.0f} of {claims:.0f} claims, {expected:.1f} "
                f"expected)")
    elif name == v.PARTS_PER_REPAIR:
        unit_money = amounts.per_part[i]
        text = (f"{per(observed):.2f} parts per repair vs {per(expected):.2f} expected for its "
                f"product mix ({observed:.0f} parts, {expected:.0f} expected)")
    elif name == v.UNRETURNED_PARTS:
        unit_money = amounts.per_part[i]
        text = f"{observed:.0f} defective parts not returned vs {expected:.1f} expected"
    elif name == v.PART_COST:
        unit_money = 1.0
        text = (f"parts cost {per(observed):.2f} per repair vs {per(expected):.2f} expected "
                f"for its product mix")
    else:
        unit_money = amounts.per_labor_minute[i]
        text = (f"labor {per(observed):.0f} minutes per repair vs {per(expected):.0f} expected "
                f"for its product mix")
    excess = max(0.0, observed - expected)
    if by_trend:
        months = int(tested.trend_months[i])
        level = "over 10x" if trend_ratio >= 10 else f"{trend_ratio:.2f}x"
        text += (f"; {level} its own earlier level over the last "
                 f"{months} month{'s' if months > 1 else ''}")
        excess = max(excess, observed * (1 - 1 / trend_ratio) if trend_ratio > 1 else 0.0)
    return v.SignalResult(
        signal=name, p_value=float(tested.p_values[i]), observed=observed, expected=expected,
        excess_amount=round(float(excess * unit_money), 2),
        reason=f"{text}; {_p_text(float(tested.p_values[i]))}")


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
