"""fraud.stats: known values from scipy / textbooks, and simulated robustness of the fits."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as sps

from fraud import stats

SEEDS = tuple(range(11, 20))  # medians over 9 fixed seeds: deterministic, not knife-edge


# ---------------------------------------------------------------- simulated peer populations


def _exposures(rng: np.random.Generator, partners: int) -> np.ndarray:
    """Claims per partner, log-uniform from 20 to 2000."""
    return np.exp(rng.uniform(math.log(20), math.log(2000), partners))


def _doa_partners(seed: int, *, concentration: float, fraud: int = 0, partners: int = 60):
    """DOA counts: honest rates ~ Beta(c pi, c (1 - pi)); the first ``fraud`` partners x3."""
    rng = np.random.default_rng(seed)
    n = np.round(_exposures(rng, partners)).astype(int)
    pi = rng.uniform(0.02, 0.10, partners)
    if math.isinf(concentration):
        rate = pi.copy()
    else:
        rate = rng.beta(concentration * pi, concentration * (1 - pi))
    rate[:fraud] = np.minimum(3 * rate[:fraud], 0.99)
    return rng.binomial(n, rate), n, n * pi


def _parts_partners(seed: int, *, shape: float, fraud: int = 0, partners: int = 60):
    """Spare parts: Poisson(theta e), theta ~ Gamma(shape, shape); the first ``fraud`` x3."""
    rng = np.random.default_rng(seed)
    expected = _exposures(rng, partners) * rng.uniform(1.0, 2.0, partners)
    theta = np.ones(partners) if math.isinf(shape) else rng.gamma(shape, 1 / shape, partners)
    theta[:fraud] *= 3
    return rng.poisson(theta * expected), expected


def _cost_partners(seed: int, *, tau: float, fraud: int = 0, partners: int = 60):
    """Cost totals: log-normal partner factor (sd tau) times a noisy sum of claim costs."""
    rng = np.random.default_rng(seed)
    claims = _exposures(rng, partners)
    expected = claims * 100.0
    within = claims * 80.0**2
    theta = np.exp(rng.normal(0.0, tau, partners))
    theta[:fraud] *= 3
    observed = theta * (expected + rng.normal(0.0, np.sqrt(within)))
    return observed, expected, within


def _median_fit(fit, make, **kwargs) -> float:
    return float(np.median([fit(*make(seed)) if not kwargs else fit(*make(seed), **kwargs)
                            for seed in SEEDS]))


# ---------------------------------------------------------------- indirect standardization


def test_expected_from_mix_is_counts_times_rates():
    counts = np.array([[10, 0, 5], [0, 4, 0]])
    rates = np.array([0.1, 0.5, 0.2])
    np.testing.assert_allclose(stats.expected_from_mix(counts, rates), [2.0, 2.0])


def test_expected_from_mix_ignores_unknown_rates_only_without_claims():
    counts = np.array([[10, 0], [3, 2]])
    rates = np.array([0.1, np.nan])
    expected = stats.expected_from_mix(counts, rates)
    assert expected[0] == pytest.approx(1.0)
    assert math.isnan(expected[1])


def test_expected_from_mix_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        stats.expected_from_mix(np.ones((2, 3)), np.ones(2))


def test_peer_rates_pools_weighted_partners():
    events = np.array([[2, 1], [6, 0], [50, 50]])
    counts = np.array([[10, 10], [20, 0], [50, 50]])
    weights = np.array([1.0, 0.5, 0.0])  # the third partner is excluded
    rates = stats.peer_rates(events, counts, weights)
    np.testing.assert_allclose(rates, [(2 + 3) / (10 + 10), 1 / 10])
    unweighted = stats.peer_rates(events, counts)
    np.testing.assert_allclose(unweighted, [58 / 80, 51 / 60])


def test_peer_rates_falls_back_to_overall_rate_for_products_only_excluded_partners_repair():
    events = np.array([[1, 0, 0], [3, 1, 0], [0, 0, 9]])
    counts = np.array([[10, 10, 0], [10, 10, 0], [0, 0, 10]])
    rates = stats.peer_rates(events, counts, np.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(rates, [4 / 20, 1 / 20, 5 / 40])


def test_peer_rates_without_any_included_claims_is_nan():
    rates = stats.peer_rates(np.ones((2, 2)), np.ones((2, 2)), np.zeros(2))
    assert np.isnan(rates).all()


@pytest.mark.parametrize("weights", [np.array([1.0, 1.5]), np.array([1.0, -0.1]), np.ones(3)])
def test_peer_rates_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        stats.peer_rates(np.ones((2, 2)), np.ones((2, 2)), weights)


# ---------------------------------------------------------------- tail tests


def test_betabinomial_tail_with_infinite_concentration_is_binomial():
    test = stats.betabinomial_tail(9, 100, 4.0, math.inf)
    assert test.p_value == pytest.approx(sps.binom.sf(8, 100, 0.04), rel=1e-12)
    by_hand = 1 - sum(math.comb(100, k) * 0.04**k * 0.96 ** (100 - k) for k in range(9))
    assert test.p_value == pytest.approx(by_hand, rel=1e-9)  # 0.01899
    assert test.min_attainable_p == pytest.approx(0.04**100)
    assert test.ratio == pytest.approx(2.25)
    assert (test.observed, test.expected) == (9.0, 4.0)


def test_betabinomial_tail_matches_scipy_betabinom():
    test = stats.betabinomial_tail(9, 100, 4.0, 50.0)
    expected = sps.betabinom.sf(8, 100, 50 * 0.04, 50 * 0.96)
    assert test.p_value == pytest.approx(expected, rel=1e-12)
    assert test.min_attainable_p == pytest.approx(sps.betabinom.pmf(100, 100, 2.0, 48.0))


def test_overdispersion_raises_betabinomial_p_value():
    binomial = stats.betabinomial_tail(20, 200, 8.0, math.inf).p_value
    loose = stats.betabinomial_tail(20, 200, 8.0, 50.0).p_value
    looser = stats.betabinomial_tail(20, 200, 8.0, 10.0).p_value
    assert binomial < 1e-3 < loose < looser


def test_betabinomial_small_volume_cannot_be_significant():
    test = stats.betabinomial_tail(2, 10, 0.3, math.inf)
    assert test.min_attainable_p == pytest.approx(0.03**10)
    assert test.p_value == pytest.approx(sps.binom.sf(1, 10, 0.03))
    assert test.p_value > 0.01  # 2 DOA of 10 claims is no evidence
    overdispersed = stats.betabinomial_tail(2, 10, 0.3, 100.0)
    assert overdispersed.min_attainable_p < 1e-10
    assert overdispersed.p_value > test.p_value


def test_betabinomial_edge_cases():
    empty = stats.betabinomial_tail(0, 0, 0.0, 100.0)
    assert (empty.p_value, empty.min_attainable_p) == (1.0, 1.0)
    assert math.isnan(empty.ratio)
    assert stats.betabinomial_tail(0, 50, 2.0, 100.0).p_value == 1.0
    # expected 0: pi clipped to 1e-9, so one event is already extreme
    assert stats.betabinomial_tail(1, 50, 0.0, math.inf).p_value == pytest.approx(5e-8, rel=1e-3)
    with pytest.raises(ValueError):
        stats.betabinomial_tail(11, 10, 1.0, 100.0)
    with pytest.raises(ValueError):
        stats.betabinomial_tail(1, 10, 1.0, 0.0)


def _partners_to_test(seed: int, size: int = 300):
    """Claims, expectations and counts of ``size`` partners, with the edge cases scoring
    meets: no claims, no expectation (or an unknown one), no events, all claims DOA."""
    rng = np.random.default_rng(seed)
    n = rng.integers(0, 3000, size)
    n[:10] = 0
    expected = n * rng.uniform(0.001, 0.3, size) * rng.uniform(0.5, 1.5, size)
    expected[10:20] = 0.0
    observed = np.minimum(n, rng.poisson(expected * rng.uniform(0.5, 3.0, size)))
    observed[20:30] = 0
    observed[30:35] = n[30:35]
    return n, expected, observed


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_betabinomial_tails_are_the_per_partner_tails_bit_for_bit(seed):
    n, expected, observed = _partners_to_test(seed)
    for tau2 in (0.01, 0.3):
        concentration = np.array([stats.concentration_for(e / k if k else 0.0, tau2)
                                  for k, e in zip(n.tolist(), expected, strict=True)])
        assert np.isinf(concentration).any() and np.isfinite(concentration).any()
        p_values, floors = stats.betabinomial_tails(observed, n, expected, concentration)
        one_by_one = [stats.betabinomial_tail(int(o), int(k), e, c) for o, k, e, c
                      in zip(observed, n, expected, concentration, strict=True)]
        assert p_values.tolist() == [t.p_value for t in one_by_one]
        assert floors.tolist() == [t.min_attainable_p for t in one_by_one]
    with pytest.raises(ValueError):
        stats.betabinomial_tails(np.array([11]), np.array([10]), np.array([1.0]),
                                 np.array([100.0]))


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_count_and_money_tails_are_the_per_partner_tails_bit_for_bit(seed):
    _, expected, observed = _partners_to_test(seed)
    expected[40:45] = np.nan  # a product no peer repaired
    rng = np.random.default_rng(seed)
    within = rng.gamma(2.0, 1000.0, expected.size)
    within[50:60] = 0.0
    for shape in (5.0, math.inf):
        assert stats.negbinomial_tails(observed, expected, shape).tolist() == [
            stats.negbinomial_tail(int(o), e, shape).p_value
            for o, e in zip(observed, expected, strict=True)]
    money, cost = observed * 37.5, expected * 37.5
    for tau2 in (0.04, 0.0):
        assert stats.lognormal_ratio_tails(money, cost, within, tau2).tolist() == [
            stats.lognormal_ratio_tail(o, e, w, tau2).p_value
            for o, e, w in zip(money, cost, within, strict=True)]


def test_tail_test_is_frozen():
    test = stats.betabinomial_tail(1, 10, 1.0, math.inf)
    with pytest.raises(dataclasses.FrozenInstanceError):
        test.p_value = 0.0  # type: ignore[misc]


def test_negbinomial_tail_with_infinite_shape_is_poisson():
    test = stats.negbinomial_tail(10, 4.0, math.inf)
    assert test.p_value == pytest.approx(sps.poisson.sf(9, 4.0), rel=1e-12)
    assert test.p_value == pytest.approx(0.008132, abs=1e-6)  # P(X >= 10), Poisson(4)
    assert test.min_attainable_p == 0.0
    assert test.ratio == pytest.approx(2.5)


def test_negbinomial_tail_matches_scipy_nbinom_and_tends_to_poisson():
    test = stats.negbinomial_tail(30, 12.0, 5.0)
    assert test.p_value == pytest.approx(sps.nbinom.sf(29, 5.0, 5.0 / 17.0), rel=1e-12)
    almost_poisson = stats.negbinomial_tail(30, 12.0, 1e7).p_value
    assert almost_poisson == pytest.approx(sps.poisson.sf(29, 12.0), rel=1e-4)


def test_overdispersion_raises_negbinomial_p_value():
    p = [stats.negbinomial_tail(150, 100.0, shape).p_value for shape in (math.inf, 50.0, 10.0)]
    assert p[0] < 1e-5 < p[1] < p[2]


def test_negbinomial_tail_without_expectation():
    assert stats.negbinomial_tail(0, 0.0, 10.0).p_value == 1.0
    lone = stats.negbinomial_tail(1, 0.0, 10.0)
    assert lone.p_value == pytest.approx(1e-9, rel=1e-6)
    assert math.isnan(lone.ratio)
    assert stats.negbinomial_tail(0, 3.0, 10.0).p_value == 1.0


def test_lognormal_ratio_tail_is_normal_on_log_ratio():
    test = stats.lognormal_ratio_tail(1300.0, 1000.0, 2500.0, 0.04)
    sd = math.sqrt(0.04 + 2500.0 / 1000.0**2)
    assert test.p_value == pytest.approx(sps.norm.sf(math.log(1.3) / sd), rel=1e-12)
    assert test.p_value == pytest.approx(0.5 * math.erfc(math.log(1.3) / sd / math.sqrt(2)))
    assert test.ratio == pytest.approx(1.3)
    assert test.min_attainable_p == 0.0
    assert stats.lognormal_ratio_tail(1300.0, 1000.0, 2500.0, 0.0).p_value < 1e-6


def test_lognormal_ratio_tail_edge_cases():
    assert stats.lognormal_ratio_tail(0.0, 1000.0, 10.0, 0.01).p_value == 1.0
    assert stats.lognormal_ratio_tail(5.0, 0.0, 10.0, 0.01).p_value == 1.0
    assert stats.lognormal_ratio_tail(900.0, 1000.0, 0.0, 0.0).p_value == 1.0
    assert stats.lognormal_ratio_tail(1100.0, 1000.0, 0.0, 0.0).p_value == 0.0
    assert stats.lognormal_ratio_tail(1000.0, 1000.0, 10.0, 0.01).p_value == pytest.approx(0.5)


# ---------------------------------------------------------------- robust fits


def test_betabinomial_concentration_recovers_truth_on_honest_partners():
    fit = _median_fit(stats.fit_betabinomial_concentration,
                      lambda s: _doa_partners(s, concentration=200.0))
    assert 100.0 <= fit <= 400.0


def test_betabinomial_concentration_resists_fraudsters_where_naive_fit_does_not():
    def make(seed):
        return _doa_partners(seed, concentration=200.0, fraud=10)

    robust = _median_fit(stats.fit_betabinomial_concentration, make)
    naive = _median_fit(stats.fit_betabinomial_concentration, make, trim=0.0)
    assert 100.0 <= robust <= 400.0
    assert naive < 80.0  # the fraudsters pass for honest heterogeneity
    assert robust > 3 * naive


def test_betabinomial_concentration_without_overdispersion_is_large():
    for seed in SEEDS[:3]:
        fit = stats.fit_betabinomial_concentration(*_doa_partners(seed, concentration=math.inf))
        assert fit >= 1e3


def test_betabinomial_concentration_needs_three_partners():
    fit = stats.fit_betabinomial_concentration(
        np.array([5, 50, 0]), np.array([100, 100, 0]), np.array([5.0, 5.0, 0.0]))
    assert fit == math.inf


def test_negbinomial_shape_recovers_truth_on_honest_partners():
    fit = _median_fit(stats.fit_negbinomial_shape, lambda s: _parts_partners(s, shape=20.0))
    assert 10.0 <= fit <= 40.0


def test_negbinomial_shape_resists_fraudsters_where_naive_fit_does_not():
    def make(seed):
        return _parts_partners(seed, shape=20.0, fraud=10)

    robust = _median_fit(stats.fit_negbinomial_shape, make)
    naive = _median_fit(stats.fit_negbinomial_shape, make, trim=0.0)
    assert 10.0 <= robust <= 40.0
    assert naive < 5.0
    assert robust > 3 * naive


def test_negbinomial_shape_without_overdispersion_is_large():
    for seed in SEEDS[:3]:
        assert stats.fit_negbinomial_shape(*_parts_partners(seed, shape=math.inf)) >= 1e3


def test_negbinomial_shape_needs_three_partners():
    assert stats.fit_negbinomial_shape(np.array([3, 90]), np.array([3.0, 30.0])) == math.inf
    assert stats.fit_negbinomial_shape(
        np.array([3, 90, 4]), np.array([3.0, 30.0, 0.0])) == math.inf


def test_lognormal_tau2_recovers_truth_on_honest_partners():
    fit = _median_fit(stats.fit_lognormal_tau2, lambda s: _cost_partners(s, tau=0.15))
    assert 0.5 * 0.15**2 <= fit <= 2 * 0.15**2


def test_lognormal_tau2_resists_fraudsters_where_naive_fit_does_not():
    def make(seed):
        return _cost_partners(seed, tau=0.15, fraud=10)

    robust = _median_fit(stats.fit_lognormal_tau2, make)
    naive = _median_fit(stats.fit_lognormal_tau2, make, trim=0.0)
    assert 0.5 * 0.15**2 <= robust <= 2 * 0.15**2
    assert naive > 0.1  # sd of log ratios ~0.3+ instead of 0.15
    assert naive > 4 * robust


def test_lognormal_tau2_without_overdispersion_is_near_zero():
    for seed in SEEDS[:3]:
        assert stats.fit_lognormal_tau2(*_cost_partners(seed, tau=0.0)) < 0.002


def test_lognormal_tau2_needs_three_partners():
    assert stats.fit_lognormal_tau2(np.array([1.0, 9.0]), np.array([2.0, 2.0]),
                                    np.array([0.1, 0.1])) == 0.0


def test_lognormal_tau2_naive_fit_matches_closed_form_with_equal_variances():
    # equal within-variances: the ML tau2 is mean(r^2) - v (when positive)
    r = np.array([-0.3, -0.1, 0.0, 0.2, 0.4])
    expected = np.full(5, 100.0)
    within = np.full(5, 0.01 * 100.0**2)  # v = 0.01
    fit = stats.fit_lognormal_tau2(expected * np.exp(r), expected, within, trim=0.0)
    assert fit == pytest.approx(np.mean(r**2) - 0.01, rel=1e-3)


@pytest.mark.parametrize("trim", [-0.1, 0.5])
def test_fits_reject_bad_trim(trim):
    with pytest.raises(ValueError):
        stats.fit_negbinomial_shape(np.ones(5), np.ones(5), trim=trim)


# ---------------------------------------------------------------- combining and multiplicity


@pytest.mark.parametrize("p", [[0.01, 0.2, 0.5], [0.04], [1.0, 1.0], [1e-8, 0.9, 0.3, 0.07]])
def test_fisher_combine_matches_scipy(p):
    expected = sps.combine_pvalues(p, method="fisher").pvalue
    assert stats.fisher_combine(p) == pytest.approx(expected, rel=1e-10)


def test_fisher_combine_edge_cases():
    assert stats.fisher_combine([]) == 1.0
    assert stats.fisher_combine([0.0, 0.5]) == pytest.approx(
        sps.chi2.sf(-2 * (math.log(1e-300) + math.log(0.5)), 4))
    assert stats.fisher_combine([0.0, 0.5]) > 0.0


def test_benjamini_hochberg_textbook_example():
    p = [0.01, 0.04, 0.03, 0.005]
    q = stats.benjamini_hochberg(p)
    np.testing.assert_allclose(q, [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(q, sps.false_discovery_control(p, method="bh"))


def test_benjamini_hochberg_matches_scipy_and_is_monotone():
    p = np.random.default_rng(7).uniform(size=40) ** 3
    q = stats.benjamini_hochberg(p.tolist())
    np.testing.assert_allclose(q, sps.false_discovery_control(p, method="bh"), rtol=1e-12)
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= 0)
    assert np.all((q >= p) & (q <= 1))


def test_benjamini_hochberg_edge_cases():
    assert stats.benjamini_hochberg([]).shape == (0,)
    np.testing.assert_allclose(stats.benjamini_hochberg([0.9, 0.8]), [0.9, 0.9])
    with pytest.raises(ValueError):
        stats.benjamini_hochberg([0.1, 1.2])


# ---------------------------------------------------------------- onset


def test_poisson_cusum_by_hand():
    observed = np.array([1, 0, 4, 5, 0])
    expected = np.full(5, 1.5)
    cusum = stats.poisson_cusum(observed, expected, shift=2.0, threshold=4.0)
    ln2 = math.log(2)
    s1 = max(0.0, 1 * ln2 - 1.5)  # 0
    s2 = max(0.0, s1 + 0 - 1.5)  # 0
    s3 = max(0.0, s2 + 4 * ln2 - 1.5)  # 1.2726
    s4 = max(0.0, s3 + 5 * ln2 - 1.5)  # 3.2383
    s5 = max(0.0, s4 - 1.5)  # 1.7383
    np.testing.assert_allclose(cusum.statistic, [s1, s2, s3, s4, s5])
    assert cusum.statistic[3] == pytest.approx(3.2383, abs=1e-4)
    assert cusum.alarm_index is None
    lower = stats.poisson_cusum(observed, expected, shift=2.0, threshold=3.0)
    assert lower.alarm_index == 3
    assert lower.threshold == 3.0


def test_poisson_cusum_statistic_is_read_only_and_shift_validated():
    cusum = stats.poisson_cusum(np.array([3, 3]), np.array([1.0, 1.0]), shift=3.0)
    assert cusum.statistic[0] == pytest.approx(3 * math.log(3) - 2)
    with pytest.raises(ValueError):
        cusum.statistic[0] = 0.0
    with pytest.raises(ValueError):
        stats.poisson_cusum(np.array([1]), np.array([1.0]), shift=1.0)
    with pytest.raises(ValueError):
        stats.poisson_cusum(np.array([1, 2]), np.array([1.0]))


def test_shrunk_ratio_is_gamma_poisson_posterior_mean():
    assert stats.shrunk_ratio(30.0, 10.0, 10.0) == pytest.approx(2.0)
    assert stats.shrunk_ratio(3.0, 1.0, 10.0) == pytest.approx(13 / 11)  # small: shrunk to 1
    assert stats.shrunk_ratio(0.0, 0.0, 10.0) == 1.0
    assert stats.shrunk_ratio(5.0, 2.0, math.inf) == 1.0
    with pytest.raises(ValueError):
        stats.shrunk_ratio(1.0, 1.0, 0.0)


# ---------------------------------------------------------------- funnel plot


def test_funnel_limits_narrow_with_volume_around_one():
    expected = np.array([5.0, 20.0, 100.0, 1000.0, 10000.0])
    lower, upper = stats.funnel_limits(expected, z=1.96)
    assert np.all(lower < 1) and np.all(upper > 1)
    assert np.all(np.diff(upper - lower) < 0)
    # roughly symmetric once E is large; close to the square-root approximation
    assert (upper[-1] - 1) == pytest.approx(1 - lower[-1], rel=0.02)
    sqrt_upper = (np.sqrt(expected) + 1.96 / 2) ** 2 / expected
    sqrt_lower = (np.sqrt(expected) - 1.96 / 2) ** 2 / expected
    np.testing.assert_allclose(upper[2:], sqrt_upper[2:], rtol=0.015)
    np.testing.assert_allclose(lower[2:], sqrt_lower[2:], rtol=0.015)
    np.testing.assert_allclose(upper[3:], 1 + 1.96 / np.sqrt(expected[3:]), rtol=0.005)


def test_funnel_limits_are_interpolated_exact_poisson_quantiles():
    expected = np.array([0.5, 3.0, 7.3, 40.0])
    lower, upper = stats.funnel_limits(expected, z=3.09)
    for e, lo, up in zip(expected, lower, upper, strict=True):
        r_up = sps.poisson.ppf(sps.norm.cdf(3.09), e)
        assert r_up - 1 <= up * e <= r_up
        r_lo = sps.poisson.ppf(sps.norm.cdf(-3.09), e)
        assert max(r_lo - 1, 0) <= lo * e <= r_lo
    assert lower[0] == 0.0  # no lower limit at small volume
    wide = stats.funnel_limits(expected, z=3.09)
    narrow = stats.funnel_limits(expected, z=1.96)
    assert np.all(wide[1] > narrow[1]) and np.all(wide[0] <= narrow[0])


def test_funnel_limits_undefined_without_expectation():
    lower, upper = stats.funnel_limits(np.array([0.0, 4.0]), z=1.96)
    assert math.isnan(lower[0]) and math.isnan(upper[0])
    assert upper[1] > 1


# --- fit_relative_variance: the estimator scoring uses ---------------------------------------


def _relative_world(rng: np.random.Generator, *, tau: float, fraud: int = 0,
                    factor: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    expected = np.exp(rng.uniform(np.log(20), np.log(2000), 60))
    theta = np.exp(rng.normal(0, tau, 60))
    theta[:fraud] *= factor
    return rng.poisson(expected * theta).astype(float), expected


def test_relative_variance_recovers_honest_spread_and_ignores_fraudsters():
    honest, contaminated, naive = [], [], []
    for seed in range(9):
        rng = np.random.default_rng(100 + seed)
        o, e = _relative_world(rng, tau=0.2)
        honest.append(stats.fit_relative_variance(o, e))
        o, e = _relative_world(rng, tau=0.2, fraud=10)
        contaminated.append(stats.fit_relative_variance(o, e))
        d = np.log((o + 0.5) / (e + 0.5))
        naive.append(max(0.0, float(d.var() - (1 / e).mean())))  # plain moments
    assert 0.5 * 0.04 <= np.median(honest) <= 2 * 0.04
    assert 0.5 * 0.04 <= np.median(contaminated) <= 2 * 0.04
    assert np.median(naive) > 2.5 * np.median(contaminated)  # what robustness buys


def test_relative_variance_is_zero_without_spread_and_needs_three_partners():
    rng = np.random.default_rng(7)
    expected = np.full(50, 400.0)
    assert stats.fit_relative_variance(rng.poisson(expected).astype(float), expected) < 5e-4
    assert stats.fit_relative_variance(np.array([10.0, 50.0]), np.array([10.0, 10.0])) == 0.0


def test_concentration_matches_the_relative_variance():
    kappa = stats.concentration_for(0.04, 0.0225)
    assert kappa == pytest.approx(0.96 / (0.04 * 0.0225) - 1)
    # Var(p) of Beta(kappa*pi, kappa*(1-pi)) is pi^2 tau2.
    a, b = kappa * 0.04, kappa * 0.96
    assert sps.beta(a, b).var() == pytest.approx(0.04 ** 2 * 0.0225, rel=1e-9)
    assert stats.concentration_for(0.04, 0.0) == math.inf


# --- correlated evidence: Brown's method and the DOA family ---------------------------------


def test_brown_combine_without_correlation_is_fisher():
    p = [0.01, 0.2, 0.04]
    assert stats.brown_combine(p, np.eye(3)) == pytest.approx(
        sps.combine_pvalues(p, method="fisher").pvalue, rel=1e-12)


def test_brown_combine_known_answer():
    # rho = 0.5: cov(-2 ln p1, -2 ln p2) = 3.263/2 + 0.710/4 + 0.027/8 = 1.812375 (Kost &
    # McDermott 2002), Var = 8 + 2 cov, c = Var / 8, f = 32 / Var (Brown 1975).
    cov = 3.263 * 0.5 + 0.710 * 0.25 + 0.027 * 0.125
    var = 8 + 2 * cov
    statistic = -2 * (math.log(0.01) + math.log(0.02))
    expected = sps.chi2.sf(statistic / (var / 8), 32 / var)
    rho = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert stats.brown_combine([0.01, 0.02], rho) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.0066, abs=1e-4)  # Fisher alone says 0.0019
    # The stronger the correlation, the less two small p-values prove together.
    weaker = [stats.brown_combine([0.01, 0.02], np.array([[1.0, r], [r, 1.0]]))
              for r in (0.0, 0.3, 0.6, 0.9)]
    assert weaker == sorted(weaker) and weaker[0] == pytest.approx(stats.fisher_combine(
        [0.01, 0.02]))


def test_brown_combine_validates():
    assert stats.brown_combine([], np.empty((0, 0))) == 1.0
    with pytest.raises(ValueError):
        stats.brown_combine([0.1, 0.2], np.eye(3))
    with pytest.raises(ValueError):
        stats.brown_combine([0.1, float("nan")], np.eye(2))
    with pytest.raises(ValueError):
        stats.brown_combine([0.1, 0.2], np.array([[1.0, 1.5], [1.5, 1.0]]))


def test_brown_combine_keeps_its_level_where_fisher_does_not():
    # Two one-sided tests whose normal statistics correlate 0.6, under the null.
    rng = np.random.default_rng(5)
    z = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.6], [0.6, 1.0]], size=200_000)
    p = sps.norm.sf(z)
    rho = np.array([[1.0, 0.6], [0.6, 1.0]])
    statistic = -2 * np.log(p).sum(axis=1)
    fisher = sps.chi2.sf(statistic, 4)
    cov = 3.263 * 0.6 + 0.710 * 0.36 + 0.027 * 0.216
    brown = sps.chi2.sf(statistic / ((8 + 2 * cov) / 8), 32 / (8 + 2 * cov))
    assert stats.brown_combine(p[0], rho) == pytest.approx(brown[0], rel=1e-12)
    for alpha in (0.01, 0.001):
        assert (fisher <= alpha).mean() > 1.4 * alpha  # naive Fisher over-rejects
        assert (brown <= alpha).mean() == pytest.approx(alpha, rel=0.25)


def test_poisson_gamma_correlation_known_answers_and_simulation():
    # Without heterogeneity a thinned Poisson count correlates sqrt(e_part / e_all).
    assert stats.poisson_gamma_correlation(20.0, 5.0, 0.0) == pytest.approx(0.5)
    by_hand = (5 + 0.04 * 20 * 5) / math.sqrt((20 + 0.04 * 400) * (5 + 0.04 * 25))
    assert stats.poisson_gamma_correlation(20.0, 5.0, 0.04) == pytest.approx(by_hand)
    assert stats.poisson_gamma_correlation(0.0, 0.0, 0.04) == 0.0
    assert stats.poisson_gamma_correlation(3.0, 0.0, 0.04) == 0.0
    with pytest.raises(ValueError):
        stats.poisson_gamma_correlation(1.0, 2.0, 0.01)
    rng = np.random.default_rng(3)
    theta = rng.gamma(1 / 0.04, 0.04, 400_000)
    part = rng.poisson(theta * 5.0)
    total = part + rng.poisson(theta * 15.0)
    assert np.corrcoef(total, part)[0, 1] == pytest.approx(by_hand, rel=0.02)


def test_doa_family_p_value_is_calibrated_for_honest_partners():
    # Honest partners: one DOA propensity theta (sd 15%) behind all their DOAs, a quarter of
    # which fall on units past the DOA window, so late DOAs are part of -- and correlate
    # with -- the DOAs. Each count gets its predictive beta-binomial tail (as scoring's peer
    # view does) and the two are combined as scoring's DOA family: Brown-corrected Fisher.
    rng = np.random.default_rng(11)
    tau2, partners, claims, doa_rate, late_share = 0.0225, 20_000, 400, 0.05, 0.25
    theta = rng.gamma(1 / tau2, tau2, partners)
    doa = rng.binomial(claims, np.minimum(doa_rate * theta, 1.0))
    late = rng.binomial(doa, late_share)

    def tails(observed: np.ndarray, expected: float) -> np.ndarray:
        c, pi = stats.concentration_for(expected / claims, tau2), expected / claims
        p = sps.betabinom.sf(observed - 1, claims, c * pi, c * (1 - pi))  # vectorized
        assert p[0] == pytest.approx(stats.betabinomial_tail(
            int(observed[0]), claims, expected, c).p_value, rel=1e-9)
        return p

    e_doa, e_late = claims * doa_rate, claims * doa_rate * late_share
    p_doa, p_late = tails(doa, e_doa), tails(late, e_late)
    rho = stats.poisson_gamma_correlation(e_doa, e_late, tau2)
    assert rho == pytest.approx(0.571, abs=1e-3)
    matrix = np.array([[1.0, rho], [rho, 1.0]])
    family = np.array([stats.brown_combine(pair, matrix)
                       for pair in zip(p_doa[:2000], p_late[:2000], strict=True)])
    statistic = -2 * (np.log(p_doa) + np.log(p_late))
    cov = 3.263 * rho + 0.710 * rho**2 + 0.027 * rho**3
    brown = sps.chi2.sf(statistic / ((8 + 2 * cov) / 8), 32 / (8 + 2 * cov))
    np.testing.assert_allclose(family, brown[:2000], rtol=1e-9)
    fisher = sps.chi2.sf(statistic, 4)
    for alpha in (0.05, 0.01, 0.001):
        assert (brown <= alpha).mean() <= 1.1 * alpha
    assert (fisher <= 0.001).mean() > 2 * 0.001  # without the correction: 3x the level
