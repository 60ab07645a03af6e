"""Statistics for flagging service partners whose warranty claims are out of line with peers.

Pure functions on numbers and numpy arrays (no Flask, no database). The scheme:

* **Indirect standardization** — a partner's expected count is what peer partners' per-product
  rates predict for its own mix of products (``peer_rates`` then ``expected_from_mix``).
* **Predictive tail tests** — the observed total is compared with that expectation under a
  model that allows honest partners to differ (beta-binomial for rates, gamma-Poisson /
  negative binomial for counts, log-normal ratio for costs and labor). Without the
  between-partner variance every large honest partner would look significant (Spiegelhalter
  2005, "overdispersion").
* **Robust peer fitting** — the between-partner variance is estimated so that up to ~20%
  fraudulent partners cannot inflate it (see ``_robust_mask`` and the ``fit_*`` functions).
* **Combining and multiplicity** — Fisher 1932 across signals (Brown 1975 for correlated ones),
  Benjamini & Hochberg 1995 across partners; a Poisson CUSUM (Lucas 1985) for onset; funnel
  limits (Spiegelhalter 2005).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

# Bounds of the fitted concentration / shape; at the upper cap the data show no detectable
# overdispersion and the fitters return math.inf (i.e. plain binomial / Poisson).
_DISPERSION_MIN = 1e-2
_DISPERSION_MAX = 1e6
_MIN_PARTNERS = 3
_PI_CLIP = 1e-9


# --------------------------------------------------------------------------------------------
# Indirect standardization
# --------------------------------------------------------------------------------------------


def expected_from_mix(counts: np.ndarray, peer_rates: np.ndarray) -> np.ndarray:
    """Expected events per partner for its own product mix: ``counts @ peer_rates``.

    Indirect standardization (e.g. Breslow & Day 1987): ``counts`` (P, S) are partner p's
    claims on product s, ``peer_rates`` (S,) the peers' events per claim. A NaN or infinite
    rate (a product no peer ever repaired) contributes 0 where the partner has no claims on
    that product; where it does, the partner's expectation is NaN, because it is unknown.
    """
    counts = np.asarray(counts, dtype=float)
    rates = np.asarray(peer_rates, dtype=float)
    if counts.ndim != 2 or rates.shape != (counts.shape[1],):
        raise ValueError(f"counts {counts.shape} and peer_rates {rates.shape} do not match")
    with np.errstate(invalid="ignore"):  # 0 * nan/inf is masked out just below
        contributions = np.where(counts != 0, counts * rates[None, :], 0.0)
    return contributions.sum(axis=1)


def peer_rates(
    events: np.ndarray, counts: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Pooled per-product rate of the peers: ``sum_p w*events / sum_p w*counts``, shape (S,).

    ``weights`` (P,) in [0, 1] down-weight partners; 0 leaves a partner out of the peers (e.g.
    one already found extreme). A product without weighted claims gets the overall pooled rate
    of the included partners, so a product only an excluded partner repairs still has a rate.
    If the included partners have no claims at all, every rate is NaN.
    """
    events = np.asarray(events, dtype=float)
    counts = np.asarray(counts, dtype=float)
    if events.shape != counts.shape or counts.ndim != 2:
        raise ValueError(f"events {events.shape} and counts {counts.shape} must both be (P, S)")
    if weights is None:
        w = np.ones(counts.shape[0])
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (counts.shape[0],):
            raise ValueError(f"weights {w.shape} must be ({counts.shape[0]},)")
        if not np.all((w >= 0) & (w <= 1)):
            raise ValueError("weights must lie in [0, 1]")
    numerator = w @ events
    denominator = w @ counts
    total = float(denominator.sum())
    overall = float(numerator.sum()) / total if total > 0 else math.nan
    safe = np.where(denominator > 0, denominator, 1.0)  # avoids 0/0 warnings
    return np.where(denominator > 0, numerator / safe, overall)


# --------------------------------------------------------------------------------------------
# Predictive tail tests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TailTest:
    """One-sided upper-tail test of one partner's total against its expectation."""

    p_value: float  # P(X >= observed) (or P(Z >= z)) under the peer model
    observed: float
    expected: float
    ratio: float  # observed / expected; NaN when expected is 0
    min_attainable_p: float  # smallest p-value this volume could ever produce


def _ratio(observed: float, expected: float) -> float:
    return observed / expected if expected > 0 else math.nan


def _as_count(value: float, name: str) -> int:
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _clip_p(p: float) -> float:
    return float(min(1.0, max(0.0, p)))


def betabinomial_tail(observed: int, n: int, expected: float, concentration: float) -> TailTest:
    """Predictive beta-binomial upper tail for a rate (e.g. DOA claims out of ``n`` claims).

    The partner's rate is Beta(c*pi, c*(1-pi)) with pi = expected/n (clipped into
    [1e-9, 1-1e-9]) and c = ``concentration`` (the beta-binomial of Skellam 1948 / Williams
    1975); ``math.inf`` gives the plain binomial. p = P(X >= observed). ``min_attainable_p`` is
    P(X = n): with few claims even "all DOA" may not be significant, and such partners should
    not count as tested (a discrete test's attainable level, Tarone 1990).
    """
    obs = _as_count(observed, "observed")
    k = _as_count(n, "n")
    if obs > k:
        raise ValueError(f"observed {obs} exceeds n {k}")
    if not concentration > 0:
        raise ValueError("concentration must be positive")
    expected = float(expected)
    if k == 0:
        return TailTest(1.0, float(obs), expected, _ratio(obs, expected), 1.0)
    pi = min(max(expected / k, _PI_CLIP), 1.0 - _PI_CLIP)
    # The distributions' own methods, not frozen objects: freezing re-renders scipy's
    # docstrings on every call, seconds per scoring run.
    if math.isinf(concentration):
        p, floor = sps.binom.sf(obs - 1, k, pi), sps.binom.pmf(k, k, pi)
    else:
        a, b = concentration * pi, concentration * (1.0 - pi)
        p, floor = sps.betabinom.sf(obs - 1, k, a, b), sps.betabinom.pmf(k, k, a, b)
    return TailTest(_clip_p(p), float(obs), expected, _ratio(obs, expected), _clip_p(floor))


def betabinomial_tails(observed: np.ndarray, n: np.ndarray, expected: np.ndarray,
                       concentration: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``betabinomial_tail`` of many partners at once: (p-values, min_attainable_p) arrays.

    The same numbers, bit for bit: the beta-binomial upper tail is ``1 - sum(pmf(0..o-1))``
    as scipy computes it (``rv_discrete._cdf_single``: the pmf terms from 0 summed by
    ``np.sum``), but every partner's terms come from one evaluation of the log-pmf over a
    (partners, max observed) grid and each partner's row prefix is summed on its own, so the
    summation order is scipy's. Scipy's own ``betabinom.sf`` checks its arguments and sums
    partner by partner, some 20 ms a signal; this is a few.
    """
    obs = np.asarray(observed, dtype=np.int64)
    k = np.asarray(n, dtype=np.int64)
    e = np.asarray(expected, dtype=float)
    c = np.asarray(concentration, dtype=float)
    if not obs.shape == k.shape == e.shape == c.shape or obs.ndim != 1:
        raise ValueError("observed, n, expected and concentration must be 1-D of one length")
    if np.any(obs < 0) or np.any(obs > k):
        raise ValueError("observed must lie in [0, n]")
    if not np.all(c > 0):
        raise ValueError("concentration must be positive")
    p_values, floors = np.ones(obs.size), np.ones(obs.size)
    some = k > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = np.clip(e / np.where(some, k, 1), _PI_CLIP, 1.0 - _PI_CLIP)
    binomial = some & np.isinf(c)
    if binomial.any():
        p_values[binomial] = sps.binom.sf(obs[binomial] - 1, k[binomial], pi[binomial])
        floors[binomial] = sps.binom.pmf(k[binomial], k[binomial], pi[binomial])
    beta = some & ~np.isinf(c)
    if beta.any():
        a, b = c[beta] * pi[beta], c[beta] * (1.0 - pi[beta])
        p_values[beta] = _betabinom_upper(obs[beta], k[beta], a, b)
        floors[beta] = np.clip(_betabinom_pmf(k[beta].astype(float), k[beta], a, b), 0, 1)
    return np.clip(p_values, 0.0, 1.0), np.clip(floors, 0.0, 1.0)


def _betabinom_pmf(x: np.ndarray, n: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """scipy's ``betabinom._pmf``, term for term."""
    combiln = -np.log(n + 1) - special.betaln(n - x + 1, x + 1)
    return np.exp(combiln + special.betaln(x + a, n - x + b) - special.betaln(a, b))


def _betabinom_upper(obs: np.ndarray, n: np.ndarray, a: np.ndarray,
                     b: np.ndarray) -> np.ndarray:
    """P(X >= obs) for X ~ BetaBinom(n, a, b), as ``betabinom.sf(obs - 1, n, a, b)``."""
    upper = np.ones(obs.size)
    tested = obs > 0  # P(X >= 0) = 1
    if not tested.any():
        return upper
    o, nn, aa, bb = obs[tested], n[tested], a[tested], b[tested]
    terms = np.arange(int(o.max()), dtype=float)[None, :]
    pmf = _betabinom_pmf(terms, nn[:, None], aa[:, None], bb[:, None])
    upper[tested] = np.clip([1.0 - np.sum(row[:count]) for row, count in
                             zip(pmf, o, strict=True)], 0, 1)
    return upper


def negbinomial_tail(observed: int, expected: float, shape: float) -> TailTest:
    """Predictive gamma-Poisson (negative binomial) upper tail for a count (e.g. spare parts).

    X ~ Poisson(theta * expected), theta ~ Gamma(shape, rate=shape) (mean 1, variance
    1/shape), so X ~ NegBin(r=shape, p=shape/(shape+expected)) (Greenwood & Yule 1920);
    ``shape=math.inf`` is Poisson. p = P(X >= observed). Counts are unbounded, so
    ``min_attainable_p`` is 0.0. With ``expected <= 0`` any event is (nearly) impossible: p is
    1 for 0 events, else the Poisson tail at expectation 1e-9.
    """
    obs = _as_count(observed, "observed")
    if not shape > 0:
        raise ValueError("shape must be positive")
    expected = float(expected)
    if obs == 0:
        p = 1.0
    elif not expected > 0:
        p = sps.poisson.sf(obs - 1, 1e-9)
    elif math.isinf(shape):
        p = sps.poisson.sf(obs - 1, expected)
    else:
        p = sps.nbinom.sf(obs - 1, shape, shape / (shape + expected))
    return TailTest(_clip_p(p), float(obs), expected, _ratio(obs, expected), 0.0)


def negbinomial_tails(observed: np.ndarray, expected: np.ndarray, shape: float) -> np.ndarray:
    """``negbinomial_tail``'s p-values of many partners at once, bit for bit (scipy's
    negative binomial and Poisson tails are element-wise functions; one call on arrays saves
    their argument handling per partner)."""
    obs = np.asarray(observed, dtype=np.int64)
    e = np.asarray(expected, dtype=float)
    if obs.shape != e.shape or obs.ndim != 1:
        raise ValueError("observed and expected must be 1-D of one length")
    if np.any(obs < 0):
        raise ValueError("observed must be a non-negative integer")
    if not shape > 0:
        raise ValueError("shape must be positive")
    p = np.ones(obs.size)
    events = obs > 0
    unexpected = events & ~(e > 0)
    if unexpected.any():
        p[unexpected] = sps.poisson.sf(obs[unexpected] - 1, 1e-9)
    modelled = events & (e > 0)
    if modelled.any():
        o, mean = obs[modelled] - 1, e[modelled]
        p[modelled] = (sps.poisson.sf(o, mean) if math.isinf(shape)
                       else sps.nbinom.sf(o, shape, shape / (shape + mean)))
    return np.clip(p, 0.0, 1.0)


def lognormal_ratio_tails(observed: np.ndarray, expected: np.ndarray,
                          within_variance: np.ndarray, tau2: float) -> np.ndarray:
    """``lognormal_ratio_tail``'s p-values of many partners at once, bit for bit: each z as
    there (``math.log``, ``math.sqrt``), then one element-wise normal tail for all."""
    if tau2 < 0 or np.any(np.asarray(within_variance) < 0):
        raise ValueError("variances must be non-negative")
    p = np.ones(len(observed))
    z, at = [], []
    for i, (o, e, w) in enumerate(zip(observed, expected, within_variance, strict=True)):
        o, e = float(o), float(e)
        if not (o > 0 and e > 0):
            continue
        log_ratio = math.log(o / e)
        variance = tau2 + float(w) / e / e
        if variance > 0:
            z.append(log_ratio / math.sqrt(variance))
            at.append(i)
        else:  # degenerate model: X is exactly 0
            p[i] = 1.0 if log_ratio <= 0 else 0.0
    if at:
        p[at] = sps.norm.sf(np.array(z))
    return np.clip(p, 0.0, 1.0)


def lognormal_ratio_tail(
    observed: float, expected: float, within_variance: float, tau2: float
) -> TailTest:
    """Upper tail of a partner's total cost or labor against what its mix predicts.

    Under the peer model log(observed/expected) ~ Normal(0, tau2 + within_variance/expected^2):
    ``within_variance`` is the sampling variance of the observed total (sum over its claims of
    the per-product claim variance; delta method), ``tau2`` the between-partner variance of
    honest log ratios (a random-effects model, DerSimonian & Laird 1986). p = P(Z >= z).
    Non-positive observed or expected give p = 1; ``min_attainable_p`` is 0.0.
    """
    observed, expected = float(observed), float(expected)
    if within_variance < 0 or tau2 < 0:
        raise ValueError("variances must be non-negative")
    ratio = _ratio(observed, expected)
    if not (observed > 0 and expected > 0):
        return TailTest(1.0, observed, expected, ratio, 0.0)
    log_ratio = math.log(observed / expected)
    variance = tau2 + within_variance / expected / expected  # no underflow of expected**2
    if variance > 0:
        p = float(sps.norm.sf(log_ratio / math.sqrt(variance)))
    else:  # degenerate model: X is exactly 0
        p = 1.0 if log_ratio <= 0 else 0.0
    return TailTest(_clip_p(p), observed, expected, ratio, 0.0)


# --------------------------------------------------------------------------------------------
# Robust fitting of the between-partner variance
# --------------------------------------------------------------------------------------------
#
# Fitted naively on all peers, the overdispersion absorbs the fraudsters and then hides them.
# Fraud only inflates, so two one-sided devices make the fits robust (``trim > 0``):
#
# 1. Trimming: the ``trim`` fraction of partners with the largest positive standardized
#    residuals (under the current fit; two passes) is dropped.
# 2. Censoring at the expectation: every other partner above its expectation enters the
#    likelihood only as "above expectation", P(X > expected). Trimming alone would bias the
#    dispersion down (it cuts honest partners' upper tail); but for a (near) symmetric model
#    P(X > mean) hardly depends on the dispersion, so the above-mean half carries almost no
#    information on it and dropping any of it costs (almost) no bias. The dispersion is then
#    learnt from the partners *below* expectation, which fraud cannot reach -- the one-sided
#    analogue of a semi-variance. Fraudsters missed by the trim have bounded influence.
#
# ``trim = 0`` is the plain maximum-likelihood fit on all partners (no trimming, no
# censoring). Partners without exposure never enter. Estimates are maximum likelihood over a
# log-spaced grid refined by bounded Brent search (scipy.optimize.minimize_scalar).


def _robust_mask(z: np.ndarray, trim: float) -> np.ndarray:
    """Keep-mask dropping the ``trim`` fraction of largest *positive* residuals."""
    keep = np.ones(z.size, dtype=bool)
    drop = min(int(math.floor(trim * z.size)), z.size - _MIN_PARTNERS)
    if drop <= 0:
        return keep
    order = np.argsort(-z, kind="stable")[:drop]
    keep[order[z[order] > 0]] = False
    return keep


def _check_trim(trim: float) -> None:
    if not 0 <= trim < 0.5:
        raise ValueError("trim must lie in [0, 0.5)")


def _argmax_on_grid(loglik: Callable[[float], float], grid: np.ndarray) -> tuple[float, int]:
    """Maximize ``loglik`` over sorted ``grid`` then refine between the neighbours."""
    values = np.array([loglik(float(x)) for x in grid])
    values = np.where(np.isfinite(values), values, -np.inf)
    best = int(np.argmax(values))
    if best in (0, grid.size - 1):
        return float(grid[best]), best
    result = optimize.minimize_scalar(
        lambda x: -loglik(x), bounds=(float(grid[best - 1]), float(grid[best + 1])),
        method="bounded", options={"xatol": 1e-4},
    )
    if np.isfinite(result.fun) and -result.fun >= values[best]:
        return float(result.x), best
    return float(grid[best]), best


def _fit_log_dispersion(loglik: Callable[[float], float]) -> float:
    """ML concentration/shape on the log scale; math.inf at the upper cap."""
    grid = np.linspace(math.log(_DISPERSION_MIN), math.log(_DISPERSION_MAX), 57)
    log_value, index = _argmax_on_grid(loglik, grid)
    if index == grid.size - 1:
        return math.inf
    return float(math.exp(log_value))


def _betabinom_logpmf(k: np.ndarray, n: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (
        special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
        + special.betaln(k + a, n - k + b) - special.betaln(a, b)
    )


def _betabinom_loglik(
    y: np.ndarray, n: np.ndarray, pi: np.ndarray, concentration: float, censored: np.ndarray,
    cut: np.ndarray,
) -> float:
    a, b = concentration * pi, concentration * (1.0 - pi)
    exact = ~censored
    total = float(_betabinom_logpmf(y[exact], n[exact], a[exact], b[exact]).sum())
    if censored.any():
        # log P(X > cut) = log(1 - sum_{k<=cut} pmf(k)); scipy's betabinom.sf sums one point
        # at a time, so sum the masked pmf matrix here.
        c_cut, c_n, c_a, c_b = cut[censored], n[censored], a[censored], b[censored]
        ks = np.arange(int(c_cut.max()) + 1)[None, :]
        inside = ks <= c_cut[:, None]
        ks = np.minimum(ks, c_cut[:, None])
        pmf = np.exp(_betabinom_logpmf(ks, c_n[:, None], c_a[:, None], c_b[:, None]))
        cdf = np.minimum((pmf * inside).sum(axis=1), 1.0 - 1e-15)
        total += float(np.log1p(-cdf).sum())
    return total


def fit_betabinomial_concentration(
    observed: np.ndarray, n: np.ndarray, expected: np.ndarray, *, trim: float = 0.2
) -> float:
    """Robust ML concentration c of the beta-binomial across partners (shape (P,) arrays).

    Partner p's rate ~ Beta(c*pi_p, c*(1-pi_p)), pi_p = expected_p/n_p; the variance of its
    count is n pi (1-pi) (1 + (n-1)/(c+1)) (Williams 1975). Robust to up to ``trim`` fraction of
    inflated partners by one-sided trimming plus censoring at the expectation (see the note
    above ``_robust_mask``); ``trim=0`` is plain ML. Returns math.inf when no overdispersion
    is detectable (estimate at the 1e6 cap) or fewer than 3 partners have 0 < expected < n.
    """
    _check_trim(trim)
    y = np.asarray(observed, dtype=float)
    k = np.asarray(n, dtype=float)
    e = np.asarray(expected, dtype=float)
    if not y.shape == k.shape == e.shape:
        raise ValueError("observed, n and expected must have the same shape")
    if np.any(y < 0) or np.any(y > k):
        raise ValueError("observed must lie in [0, n]")
    usable = np.isfinite(y) & np.isfinite(e) & (k > 0) & (e > 0) & (e < k)
    if usable.sum() < _MIN_PARTNERS:
        return math.inf
    y, k, e = np.round(y[usable]), np.round(k[usable]), e[usable]
    pi = np.clip(e / k, _PI_CLIP, 1.0 - _PI_CLIP)
    cut = np.floor(e)
    concentration = math.inf
    keep = np.ones(y.size, dtype=bool)
    for _ in range(2 if trim > 0 else 1):
        if trim > 0:
            inflation = 1.0 + (k - 1.0) / (concentration + 1.0)
            z = (y - e) / np.sqrt(k * pi * (1.0 - pi) * inflation)
            keep = _robust_mask(z, trim)
        censored = (y > cut) if trim > 0 else np.zeros(y.size, dtype=bool)
        yk, kk, pk, ck, cutk = y[keep], k[keep], pi[keep], censored[keep], cut[keep]
        concentration = _fit_log_dispersion(
            lambda log_c, yk=yk, kk=kk, pk=pk, ck=ck, cutk=cutk: _betabinom_loglik(
                yk, kk, pk, math.exp(log_c), ck, cutk
            )
        )
    return concentration


def _negbinom_loglik(
    y: np.ndarray, e: np.ndarray, shape: float, censored: np.ndarray, cut: np.ndarray
) -> float:
    p = shape / (shape + e)
    exact = ~censored
    total = float(sps.nbinom.logpmf(y[exact], shape, p[exact]).sum())
    if censored.any():
        total += float(sps.nbinom.logsf(cut[censored], shape, p[censored]).sum())
    return total


def fit_negbinomial_shape(
    observed: np.ndarray, expected: np.ndarray, *, trim: float = 0.2
) -> float:
    """Robust ML shape r of the gamma-Poisson (negative binomial) across partners.

    Partner p's count ~ Poisson(theta_p * expected_p), theta_p ~ Gamma(r, rate=r), so its
    variance is e + e^2/r (Greenwood & Yule 1920; the empirical-Bayes prior of Efron 2010).
    Robust as ``fit_betabinomial_concentration``; ``trim=0`` is plain ML. Returns math.inf
    for no detectable overdispersion (1e6 cap) or fewer than 3 partners with expected > 0.
    """
    _check_trim(trim)
    y = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    if y.shape != e.shape:
        raise ValueError("observed and expected must have the same shape")
    if np.any(y < 0):
        raise ValueError("observed must be non-negative")
    usable = np.isfinite(y) & np.isfinite(e) & (e > 0)
    if usable.sum() < _MIN_PARTNERS:
        return math.inf
    y, e = np.round(y[usable]), e[usable]
    cut = np.floor(e)
    shape = math.inf
    keep = np.ones(y.size, dtype=bool)
    for _ in range(2 if trim > 0 else 1):
        if trim > 0:
            z = (y - e) / np.sqrt(e + e**2 / shape)
            keep = _robust_mask(z, trim)
        censored = (y > cut) if trim > 0 else np.zeros(y.size, dtype=bool)
        yk, ek, ck, cutk = y[keep], e[keep], censored[keep], cut[keep]
        shape = _fit_log_dispersion(
            lambda log_r, yk=yk, ek=ek, ck=ck, cutk=cutk: _negbinom_loglik(
                yk, ek, math.exp(log_r), ck, cutk
            )
        )
    return shape


def fit_lognormal_tau2(
    observed: np.ndarray, expected: np.ndarray, within_variance: np.ndarray, *,
    trim: float = 0.2,
) -> float:
    """Robust ML between-partner variance tau2 of log(observed/expected).

    Random-effects model log(o/e) ~ Normal(0, tau2 + w/e^2) (DerSimonian & Laird 1986, fitted
    by ML as in Hardy & Thompson 1996). Robust as ``fit_betabinomial_concentration``: with the
    normal model, censoring at 0 leaves the half-normal likelihood of the partners below their
    expectation, which fraud cannot move. ``trim=0`` is plain ML. Returns 0.0 when the
    maximum is at 0 or fewer than 3 partners have positive observed and expected.
    """
    _check_trim(trim)
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    w = np.asarray(within_variance, dtype=float)
    if not o.shape == e.shape == w.shape:
        raise ValueError("observed, expected and within_variance must have the same shape")
    if np.any(w < 0):
        raise ValueError("within_variance must be non-negative")
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # masked below
        r = np.log(o / e)
        v0 = w / e / e
    usable = np.isfinite(r) & np.isfinite(v0) & (o > 0) & (e > 0)
    if usable.sum() < _MIN_PARTNERS:
        return 0.0
    r, v0 = r[usable], v0[usable]
    # With the normal model the censored half contributes the constant log(1/2): the robust
    # fit is the ML fit on the partners at or below expectation (trimming positive residuals
    # is then implied).
    keep = r <= 0 if trim > 0 else np.ones(r.size, dtype=bool)
    if keep.sum() == 0:
        return 0.0
    rk, vk = r[keep], v0[keep]

    def loglik(tau: float) -> float:
        variance = np.maximum(vk + tau * tau, 1e-300)
        return float(-0.5 * (np.log(variance) + rk**2 / variance).sum())

    # tau (not tau2) on the grid: the profile is flatter in tau near 0.
    tau_max = max(2.0, 2.0 * float(np.abs(rk).max()))
    grid = np.concatenate(([0.0], np.geomspace(1e-4, tau_max, 80)))
    tau, index = _argmax_on_grid(loglik, grid)
    tau2 = 0.0 if index == 0 else tau * tau
    return tau2


def fit_relative_variance(
    observed: np.ndarray, expected: np.ndarray, within_variance: np.ndarray | None = None, *,
    min_expected: float = 5.0,
) -> float:
    """Robust between-partner variance tau2 of log(observed/expected), for any signal.

    Model: ``d_i = log((o_i + 0.5) / (e_i + 0.5)) ~ Normal(m, tau2 + v_i)`` with ``v_i`` the
    sampling variance of the log ratio (``within_variance / e**2``; Poisson ``1/e`` when not
    given). tau2 solves ``median_i |d_i - median(d)| / sqrt(tau2 + v_i) = 0.6745``: the median
    absolute deviation (Hampel 1974), standardized per partner so partners of every size
    count. It has a 50% breakdown point: fraudsters, however extreme, move the median and
    the MAD only by their rank, not their size, where a likelihood fit lets them widen the
    prior until they hide in it. Partners with ``e < min_expected`` carry too little
    information about tau2 and are left out. Returns 0.0 with fewer than 3 usable partners
    or no spread beyond sampling noise.
    """
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    w = e.copy() if within_variance is None else np.asarray(within_variance, dtype=float)
    if not o.shape == e.shape == w.shape:
        raise ValueError("observed, expected and within_variance must have the same shape")
    usable = np.isfinite(o) & np.isfinite(e) & np.isfinite(w) & (e >= min_expected) & (o >= 0)
    if usable.sum() < _MIN_PARTNERS:
        return 0.0
    o, e, w = o[usable], e[usable], np.maximum(w[usable], 0.0)
    d = np.log((o + 0.5) / (e + 0.5))
    v = w / (e * e)
    spread = np.abs(d - np.median(d))
    target = sps.norm.ppf(0.75)

    def standardized_mad(tau2: float) -> float:
        return float(np.median(spread / np.sqrt(tau2 + v + 1e-300)))

    if standardized_mad(0.0) <= target:
        return 0.0
    high = max(1e-6, float(spread.max()) ** 2)
    while standardized_mad(high) > target:  # pragma: no cover - spread.max()**2 suffices
        high *= 4
    return float(optimize.brentq(lambda t: standardized_mad(t) - target, 0.0, high,
                                 xtol=1e-10))


def negbinomial_sf(observed: np.ndarray, shape: np.ndarray, p: np.ndarray) -> np.ndarray:
    """P(X >= observed) for X ~ NegBin(shape, p), element-wise (scipy's parametrisation)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = np.maximum(shape, 1e-12)
        p = np.clip(p, 1e-12, 1.0)
        return np.where(observed <= 0, 1.0, sps.nbinom.sf(np.asarray(observed) - 1, shape, p))


def normal_sf(z: np.ndarray) -> np.ndarray:
    """Upper-tail probability of the standard normal, element-wise."""
    return sps.norm.sf(z)


def concentration_for(rate: float, tau2: float) -> float:
    """Beta-binomial concentration giving partner rates a relative variance of ``tau2``.

    Var(p) = pi(1 - pi) / (kappa + 1) = pi^2 tau2  =>  kappa = (1 - pi) / (pi tau2) - 1.
    """
    if tau2 <= 0 or rate <= 0:
        return math.inf
    return max(_DISPERSION_MIN, (1 - min(rate, 1 - _PI_CLIP)) / (rate * tau2) - 1)


# --------------------------------------------------------------------------------------------
# Combining and multiplicity
# --------------------------------------------------------------------------------------------


def fisher_combine(p_values: Sequence[float]) -> float:
    """Fisher's (1925/1932) combined p: -2 sum ln p ~ chi2(2k) for k independent tests.

    p-values are clipped into [1e-300, 1] so a 0 does not make the sum infinite; empty -> 1.0.
    """
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return 1.0
    if np.isnan(p).any():
        raise ValueError("p-values must not be NaN")
    statistic = -2.0 * float(np.log(np.clip(p, 1e-300, 1.0)).sum())
    return _clip_p(sps.chi2.sf(statistic, 2 * p.size))


def brown_combine(p_values: Sequence[float], correlation: np.ndarray) -> float:
    """Fisher's combination of one-sided p-values of positively correlated tests (Brown 1975).

    Under dependence X = -2 sum ln p is no longer chi2(2k); Brown (1975) matches its first two
    moments with c * chi2(f): E[X] = 2k, Var[X] = 4k + 2 sum_{i<j} cov_ij, c = Var / (2 E),
    f = 2 E^2 / Var. The covariance of -2 ln p_i and -2 ln p_j for one-sided tests whose
    statistics are normal with correlation rho is 3.263 rho + 0.710 rho^2 + 0.027 rho^3
    (Kost & McDermott 2002). With ``correlation`` the identity it is Fisher's method; the
    stronger the correlation, the less two small p-values count as independent evidence.
    p-values are clipped into [1e-300, 1] as in ``fisher_combine``; empty -> 1.0.
    """
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return 1.0
    if np.isnan(p).any():
        raise ValueError("p-values must not be NaN")
    rho = np.asarray(correlation, dtype=float)
    if rho.shape != (p.size, p.size):
        raise ValueError(f"correlation {rho.shape} must be ({p.size}, {p.size})")
    if np.any((rho < -1) | (rho > 1)):
        raise ValueError("correlations must lie in [-1, 1]")
    statistic = -2.0 * float(np.log(np.clip(p, 1e-300, 1.0)).sum())
    upper = rho[np.triu_indices(p.size, k=1)]
    covariance = float((3.263 * upper + 0.710 * upper**2 + 0.027 * upper**3).sum())
    mean, variance = 2.0 * p.size, 4.0 * p.size + 2.0 * covariance
    scale, dof = variance / (2.0 * mean), 2.0 * mean**2 / variance
    return _clip_p(sps.chi2.sf(statistic / scale, dof))


def poisson_gamma_correlation(expected_all: float, expected_part: float, tau2: float) -> float:
    """Correlation of a count and the part of it that is of one kind (e.g. DOAs, late DOAs).

    D = L + Y with L ~ Poisson(theta e_L), Y ~ Poisson(theta e_Y) independent given the
    partner's rate theta ~ Gamma(1/tau2, 1/tau2) (mean 1, variance tau2; Greenwood & Yule
    1920), shared by both kinds: Cov(D, L) = e_L + tau2 e_D e_L, Var(D) = e_D + tau2 e_D^2,
    Var(L) = e_L + tau2 e_L^2, with e_D = e_L + e_Y the expected total. 0 without expected
    events.
    """
    e_d, e_l = float(expected_all), float(expected_part)
    if e_d < 0 or e_l < 0 or tau2 < 0:
        raise ValueError("expectations and tau2 must be non-negative")
    if e_l > e_d:
        raise ValueError("the part cannot be expected to exceed the whole")
    if e_d == 0 or e_l == 0:
        return 0.0
    covariance = e_l + tau2 * e_d * e_l
    return float(min(1.0, covariance / math.sqrt((e_d + tau2 * e_d**2)
                                                 * (e_l + tau2 * e_l**2))))


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini & Hochberg (1995) adjusted p-values (q-values), in the input order.

    q_(i) = min_{j >= i} m p_(j) / j, capped at 1; a partner is a discovery at FDR level alpha
    when q <= alpha.
    """
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return np.empty(0)
    if p.ndim != 1 or np.isnan(p).any() or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be a flat sequence of numbers in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(monotone, 1.0)
    return q


# --------------------------------------------------------------------------------------------
# Onset: CUSUM and empirical-Bayes baseline
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Cusum:
    """Poisson CUSUM path (read-only array) and its first alarm."""

    statistic: np.ndarray  # S_t per month
    alarm_index: int | None  # first t with S_t >= threshold, else None
    threshold: float


def poisson_cusum(
    observed: np.ndarray, expected: np.ndarray, *, shift: float = 2.0, threshold: float = 4.0
) -> Cusum:
    """Poisson CUSUM (Lucas 1985) for a rise of the monthly rate by the factor ``shift``.

    S_t = max(0, S_{t-1} + x_t ln k - (k-1) e_t), S_0 = 0, k = ``shift``: the increment is the
    log-likelihood ratio of Poisson(k e_t) against Poisson(e_t) (Page 1954). ``expected`` are
    in-control expectations (already scaled by the partner's own baseline).
    """
    x = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    if x.ndim != 1 or x.shape != e.shape:
        raise ValueError("observed and expected must be 1-D of the same length")
    if not shift > 1:
        raise ValueError("shift must exceed 1")
    if not threshold > 0:
        raise ValueError("threshold must be positive")
    increments = x * math.log(shift) - (shift - 1.0) * e
    statistic = np.empty(x.size)
    s = 0.0
    alarm: int | None = None
    for t, step in enumerate(increments):
        s = max(0.0, s + float(step))
        statistic[t] = s
        if alarm is None and s >= threshold:
            alarm = t
    statistic.flags.writeable = False
    return Cusum(statistic=statistic, alarm_index=alarm, threshold=float(threshold))


def shrunk_ratio(observed: float, expected: float, prior_shape: float) -> float:
    """Posterior mean of a partner's relative rate theta (empirical Bayes, Efron 2010).

    Poisson(theta * expected) likelihood with a Gamma(a, rate=a) prior (mean 1) gives
    E[theta | observed] = (a + observed) / (a + expected) (Clayton & Kaldor 1987): a small
    partner is pulled towards the peers' rate 1. ``prior_shape=math.inf`` returns 1.0.
    """
    if not prior_shape > 0:
        raise ValueError("prior_shape must be positive")
    if observed < 0 or expected < 0:
        raise ValueError("observed and expected must be non-negative")
    if math.isinf(prior_shape):
        return 1.0
    return (prior_shape + float(observed)) / (prior_shape + float(expected))


# --------------------------------------------------------------------------------------------
# Funnel plot
# --------------------------------------------------------------------------------------------


def funnel_limits(expected: np.ndarray, *, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper funnel limits of O/E at each expected count E (Spiegelhalter 2005).

    Exact Poisson limits with Spiegelhalter's (2005, appendix) interpolation, so they are
    smooth in E: with r the Poisson(E) quantile at level P = Phi(-z) or Phi(z) and
    alpha = (F(r) - P) / (F(r) - F(r-1)), the limit is (r - alpha) / E, floored at 0.
    z = 1.96 gives 95% limits, 3.09 99.8%. For large E they approach (sqrt(E) +- z/2)^2 / E.
    Non-positive E gives NaN limits; a limit below 0 (even O = 0 or 1 is beyond it at tiny
    E) is shown as 0.
    """
    e = np.asarray(expected, dtype=float)
    if not z > 0:
        raise ValueError("z must be positive")
    lower = np.full(e.shape, np.nan)
    upper = np.full(e.shape, np.nan)
    ok = np.isfinite(e) & (e > 0)
    if ok.any():
        mean = e[ok]
        for level, out in ((float(sps.norm.cdf(-z)), lower), (float(sps.norm.cdf(z)), upper)):
            r = sps.poisson.ppf(level, mean)
            at_r = sps.poisson.cdf(r, mean)
            below = sps.poisson.cdf(r - 1, mean)
            alpha = (at_r - level) / (at_r - below)
            out[ok] = np.maximum(r - alpha, 0.0) / mean
    return lower, upper
