"""Tests of kwslib.evaluation.stats: paired cluster bootstrap, verdicts, power, Poisson CI, McNemar."""
import itertools
import json
import math
import time

import numpy as np
import pytest
from scipy import stats as sps

from kwslib.evaluation import stats as ks
from kwslib.evaluation.stats import (
    equivalence_power_margin,
    equivalence_verdict,
    grouped_bootstrap_diff,
    mcnemar,
    minimum_detectable_difference,
    poisson_ci,
    replicate_agreement,
)


# ----------------------------------------------------------------------------- helpers


def _compositions(m):
    """All count vectors of m draws over m clusters, with their multinomial probabilities."""
    for combo in itertools.combinations_with_replacement(range(m), m):
        counts = np.bincount(combo, minlength=m)
        prob = math.factorial(m) / np.prod([math.factorial(c) for c in counts]) / m ** m
        yield counts, prob


def _exact_distribution(strata_clusters):
    """Exact bootstrap distribution of sum(d)/sum(e) for within-stratum cluster resampling.

    strata_clusters: list (one per stratum) of lists of (cluster d sum, cluster e sum).
    Returns (values, probabilities) sorted by value.
    """
    per_stratum = []
    for clusters in strata_clusters:
        d = np.array([c[0] for c in clusters], float)
        e = np.array([c[1] for c in clusters], float)
        per_stratum.append([(cnt @ d, cnt @ e, p) for cnt, p in _compositions(len(clusters))])
    vals, probs = [], []
    for combo in itertools.product(*per_stratum):
        vals.append(sum(c[0] for c in combo) / sum(c[1] for c in combo))
        probs.append(math.prod(c[2] for c in combo))
    vals, probs = np.array(vals), np.array(probs)
    order = np.argsort(vals, kind="stable")
    return vals[order], probs[order]


def _exact_cdf(vals, probs, x, strict=False):
    return float(probs[vals < x].sum() if strict else probs[vals <= x].sum())


def _small_data():
    # Stratum r0: speakers A (2 clips), B (1 clip); stratum r1: A (3 clips), C (1), D (2).
    # Speaker "A" occurs in both strata and is two clusters.
    groups = ["A", "A", "B", "A", "A", "A", "C", "D", "D"]
    strata = [0, 0, 0, 1, 1, 1, 1, 1, 1]
    a = [0, 1, 0, 0, 0, 1, 1, 0, 0]
    b = [1, 1, 0, 1, 0, 1, 0, 1, 1]
    e = [1.0, 2.0, 0.5, 1.0, 1.5, 1.0, 2.0, 0.5, 1.0]
    return groups, strata, np.array(a, float), np.array(b, float), np.array(e)


def _small_exact():
    groups, strata, a, b, e = _small_data()
    clusters = {}
    for g, s, ai, bi, ei in zip(groups, strata, a, b, e):
        d_sum, e_sum = clusters.get((s, g), (0.0, 0.0))
        clusters[(s, g)] = (d_sum + bi - ai, e_sum + ei)
    by_stratum = [[v for (s, _), v in clusters.items() if s == st] for st in (0, 1)]
    return _exact_distribution(by_stratum)


def _simulate_paired_misses(rng, n_spk, clips, p_redraw, extra_miss=0.0, beta=(2.0, 18.0)):
    """Paired miss flags: speaker-level miss rate; B redraws A's outcome with prob p_redraw.

    With extra_miss > 0, B additionally misses clips that A detects so that B's
    expected FRR is extra_miss higher.
    """
    p_spk = rng.beta(*beta, size=n_spk)  # speaker miss rate; mean FRR 0.1 by default
    groups = np.repeat([f"spk{i}" for i in range(n_spk)], clips)
    p = np.repeat(p_spk, clips)
    a = (rng.random(p.size) < p).astype(float)
    redraw = rng.random(p.size) < p_redraw
    b = np.where(redraw, (rng.random(p.size) < p).astype(float), a)
    if extra_miss:
        mean_frr = beta[0] / (beta[0] + beta[1])
        b = np.where((b == 0) & (rng.random(p.size) < extra_miss / (1 - mean_frr)), 1.0, b)
    return groups, a, b


# ----------------------------------------------------------------------------- grouped bootstrap


def test_grouped_bootstrap_matches_exact_enumeration():
    groups, strata, a, b, e = _small_data()
    vals, probs = _small_exact()
    assert probs.sum() == pytest.approx(1.0)
    exact_mean = float(vals @ probs)
    exact_sd = float(np.sqrt(((vals - exact_mean) ** 2) @ probs))
    n_boot = 40000
    res = grouped_bootstrap_diff(groups, a, b, exposure=e, strata=strata, n_boot=n_boot, seed=3)

    # point estimate: direct computation
    assert res["diff"] == pytest.approx((b.sum() - a.sum()) / e.sum(), abs=1e-12)
    assert res["a"] == pytest.approx(a.sum() / e.sum())
    assert res["b"] == pytest.approx(b.sum() / e.sum())
    assert res["n_units"] == 9 and res["n_clusters"] == 5 and res["n_strata"] == 2

    # bootstrap sd vs exact sd (sampling sd of a sample sd ~ sd/sqrt(2n) ~ 0.4%)
    assert res["se"] == pytest.approx(exact_sd, rel=0.03)

    # percentile bounds are the exact distribution's quantiles, within sampling error
    tol = 4 * math.sqrt(0.025 * 0.975 / n_boot)
    lo, hi = res["ci"]
    assert _exact_cdf(vals, probs, lo) >= 0.025 - tol
    assert _exact_cdf(vals, probs, lo, strict=True) <= 0.025 + tol
    assert _exact_cdf(vals, probs, hi) >= 0.975 - tol
    assert _exact_cdf(vals, probs, hi, strict=True) <= 0.975 + tol

    # the draws themselves: mean and the whole distribution function
    cl = ks._cluster_table(groups, a, b, e, strata)
    draws = ks._bootstrap_draws(cl[3], cl[4], cl[5], n_boot, 3)
    assert abs(draws.mean() - exact_mean) < 4 * exact_sd / math.sqrt(n_boot)
    # (values rounded so that equal ratios summed in another order count as ties)
    v, d = np.round(vals, 9), np.sort(np.round(draws, 9))
    support = np.unique(v)
    assert np.isin(np.unique(d), support).all()  # every draw is a possible resample
    emp = np.searchsorted(d, support, side="right") / n_boot
    exact = np.array([probs[v <= x].sum() for x in support])
    assert np.max(np.abs(emp - exact)) < 0.012  # KS distance; ~1.6/sqrt(n) is p~0.01


def test_clustering_widens_interval_by_sqrt_cluster_size():
    rng = np.random.default_rng(7)
    n_spk, clips = 200, 9
    spk_b = (rng.random(n_spk) < 0.3).astype(float)  # a speaker's clips are all missed or none
    b = np.repeat(spk_b, clips)
    a = np.zeros_like(b)
    speakers = np.repeat(np.arange(n_spk), clips)
    clip_ids = np.arange(b.size)
    clustered = grouped_bootstrap_diff(speakers, a, b, seed=1)
    independent = grouped_bootstrap_diff(clip_ids, a, b, seed=1)
    assert clustered["diff"] == independent["diff"]
    assert clustered["n_clusters"] == n_spk and independent["n_clusters"] == n_spk * clips
    p = spk_b.mean()
    assert clustered["se"] == pytest.approx(math.sqrt(p * (1 - p) / n_spk), rel=0.08)
    ratio = clustered["se"] / independent["se"]
    assert 2.7 < ratio < 3.3  # sqrt(9) = 3
    width = lambda r: r["ci"][1] - r["ci"][0]  # noqa: E731
    assert 2.6 < width(clustered) / width(independent) < 3.4


def test_strata_keep_clusters_in_place():
    # Stratum 0: every speaker's B misses both clips A detects (+2 per cluster);
    # stratum 1: the reverse (-2).  Within-stratum resampling keeps 5 clusters of
    # each, so every bootstrap D is exactly 0; moving clusters across strata would not.
    groups = [f"s{i}" for i in range(5) for _ in range(2)] + [f"t{i}" for i in range(5) for _ in range(2)]
    strata = [0] * 10 + [1] * 10
    a = [0.0] * 10 + [1.0] * 10
    b = [1.0] * 10 + [0.0] * 10
    res = grouped_bootstrap_diff(groups, a, b, strata=strata, n_boot=500)
    assert res["diff"] == 0.0
    assert res["ci"] == [0.0, 0.0] and res["se"] == 0.0
    pooled = grouped_bootstrap_diff(groups, a, b, n_boot=500)  # same clusters, one stratum
    assert pooled["se"] > 0.1 and pooled["ci"][0] < -0.1 < 0.1 < pooled["ci"][1]


def test_same_group_in_two_strata_is_two_clusters():
    groups = ["s1", "s1", "s2", "s2", "s1", "s2"]
    strata = ["r0", "r1", "r0", "r1", "r0", "r1"]
    a = [0, 1, 0, 0, 1, 0]
    b = [1, 1, 0, 1, 1, 0]
    assert grouped_bootstrap_diff(groups, a, b, strata=strata, n_boot=50)["n_clusters"] == 4
    assert grouped_bootstrap_diff(groups, a, b, n_boot=50)["n_clusters"] == 2


def test_exposure_rate_difference_and_seed():
    a = [1, 0, 2]  # false detections of A in three stretches of audio
    b = [3, 1, 2]
    hours = [0.5, 1.0, 1.5]
    groups = ["x", "y", "z"]
    res = grouped_bootstrap_diff(groups, a, b, exposure=hours, n_boot=400, seed=5)
    assert res["a"] == pytest.approx(3 / 3.0)
    assert res["b"] == pytest.approx(6 / 3.0)
    assert res["diff"] == pytest.approx(1.0)  # ratio of sums, not the mean per-unit rate (1.667)
    assert json.loads(json.dumps(res)) == res
    assert grouped_bootstrap_diff(groups, a, b, exposure=hours, n_boot=400, seed=5) == res
    other = grouped_bootstrap_diff(groups, a, b, exposure=hours, n_boot=400, seed=6)
    assert other["diff"] == res["diff"]
    assert other["se"] != res["se"]


def test_bootstrap_is_vectorised():
    rng = np.random.default_rng(0)
    n = 20000
    groups = rng.integers(0, 5000, n)
    a = (rng.random(n) < 0.1).astype(float)
    b = (rng.random(n) < 0.1).astype(float)
    t0 = time.perf_counter()
    res = grouped_bootstrap_diff(groups, a, b, n_boot=2000)
    elapsed = time.perf_counter() - t0
    assert res["n_clusters"] == np.unique(groups).size
    assert elapsed < 5.0  # ~0.25 s idle; a Python loop over clusters x draws takes far longer


# ----------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    "ci, verdict",
    [
        ([-0.004, 0.005], "equivalent"),  # narrow around 0
        ([-0.02, 0.02], "equivalent"),  # touching the margin
        ([0.005, 0.015], "equivalent"),  # significant but within the margin
        ([0.05, 0.15], "worse"),
        ([0.01, 0.03], "worse"),  # significantly worse, not shown within margin
        ([-0.15, -0.05], "better"),
        ([-0.03, -0.01], "better"),
        ([-0.10, 0.10], "inconclusive"),  # too little data
        ([-0.01, 0.03], "inconclusive"),  # not significant, not within margin
        ([-0.03, 0.0], "inconclusive"),
    ],
)
def test_equivalence_verdict_cases(ci, verdict):
    assert equivalence_verdict(ci, 0.02) == verdict


def test_verdict_end_to_end_identical_models():
    rng = np.random.default_rng(11)
    groups, a, b = _simulate_paired_misses(rng, n_spk=400, clips=10, p_redraw=0.05)
    assert (a != b).sum() > 20  # the models do disagree on some clips
    res = grouped_bootstrap_diff(groups, a, b, seed=0)
    assert equivalence_verdict(res["ci"], 0.02) == "equivalent"


def test_verdict_end_to_end_b_misses_ten_points_more():
    rng = np.random.default_rng(12)
    groups, a, b = _simulate_paired_misses(rng, n_spk=400, clips=10, p_redraw=0.05, extra_miss=0.10)
    res = grouped_bootstrap_diff(groups, a, b, seed=0)
    assert res["diff"] == pytest.approx(0.10, abs=0.02)
    assert equivalence_verdict(res["ci"], 0.02) == "worse"


def test_verdict_end_to_end_twenty_clips_inconclusive():
    # Two equally good models (FRR ~0.3, they disagree on some clips), 20 clips from
    # 10 speakers, evaluated 200 times: "too little data to tell" nearly always.
    verdicts = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        groups, a, b = _simulate_paired_misses(rng, n_spk=10, clips=2, p_redraw=0.5, beta=(3.0, 7.0))
        assert a.size == 20
        res = grouped_bootstrap_diff(groups, a, b, n_boot=500, seed=seed)
        verdicts.append(equivalence_verdict(res["ci"], 0.02))
    share = {v: verdicts.count(v) / len(verdicts) for v in ks.VERDICTS}
    assert share["inconclusive"] >= 0.85  # ~0.92
    assert share["equivalent"] <= 0.05


def test_degenerate_interval_without_discordant_units():
    # Documented limitation: when A and B agree on every unit, every resample has
    # D = 0 and the percentile interval is [0, 0] whatever the number of clips.
    res = grouped_bootstrap_diff(["s1", "s1", "s2", "s3"], [1, 0, 0, 1], [1, 0, 0, 1], n_boot=100)
    assert res["ci"] == [0.0, 0.0] and res["se"] == 0.0


# ----------------------------------------------------------------------------- power


def test_minimum_detectable_difference_closed_form():
    assert minimum_detectable_difference(1.0) == pytest.approx(2.8016, abs=1e-4)
    assert minimum_detectable_difference(0.01) == pytest.approx(0.028016, rel=1e-4)
    expected = sps.norm.ppf(0.995) + sps.norm.ppf(0.9)
    assert minimum_detectable_difference(0.5, alpha=0.01, power=0.9) == pytest.approx(0.5 * expected)
    assert minimum_detectable_difference(0.0) == 0.0


def test_minimum_detectable_difference_has_the_stated_power():
    rng = np.random.default_rng(0)
    se = 0.013
    delta = minimum_detectable_difference(se)
    est = rng.normal(delta, se, size=40000)  # the estimate's sampling distribution
    detected = np.mean(np.abs(est) / se > sps.norm.ppf(0.975))
    assert detected == pytest.approx(0.80, abs=0.01)


def test_equivalence_power_margin():
    assert equivalence_power_margin(1.0) == pytest.approx(1.959964 + 1.281552, abs=1e-5)
    rng = np.random.default_rng(1)
    se = 0.004
    margin = equivalence_power_margin(se)
    z = sps.norm.ppf(0.975)
    est = rng.normal(0.0, se, size=5000)  # truly zero difference
    share = np.mean([equivalence_verdict([x - z * se, x + z * se], margin) == "equivalent" for x in est])
    assert share == pytest.approx(0.80, abs=0.025)
    # the minimum detectable difference is a smaller number: it is not the margin to use
    assert minimum_detectable_difference(se) < margin


# ----------------------------------------------------------------------------- Poisson


def test_poisson_ci_zero_and_known_values():
    lo, hi = poisson_ci(0, 1.0)
    assert lo == 0.0
    assert hi == pytest.approx(3.688879, abs=1e-6)
    assert hi == pytest.approx(-math.log(0.025))
    assert poisson_ci(0, 2.0)[1] == pytest.approx(hi / 2)
    lo, hi = poisson_ci(10, 1.0)
    assert lo == pytest.approx(4.7954, abs=1e-4)
    assert hi == pytest.approx(18.3904, abs=1e-4)
    lo2, hi2 = poisson_ci(10, 4.0)
    assert (lo2, hi2) == pytest.approx((lo / 4, hi / 4))
    assert isinstance(lo, float) and isinstance(hi, float)
    lo90, hi90 = poisson_ci(10, 1.0, alpha=0.1)
    assert lo < lo90 < 10 < hi90 < hi


def test_poisson_ci_coverage():
    # exact coverage over a grid of true rates (exposure 1): sum of P(k) over k whose interval covers
    kk = np.arange(0, 120)
    iv = np.array([poisson_ci(int(k), 1.0) for k in kk])
    mus = np.linspace(0.05, 30, 300)
    cov = np.array([sps.poisson.pmf(kk, mu) @ ((iv[:, 0] <= mu) & (mu <= iv[:, 1])) for mu in mus])
    assert cov.min() >= 0.95
    assert cov.mean() < 0.98  # exact, not needlessly wide
    # simulated: rates per hour over 2.5 h of audio
    rng = np.random.default_rng(2)
    for rate in (0.4, 3.0, 10.0):
        counts = rng.poisson(rate * 2.5, size=4000)
        bounds = {int(k): poisson_ci(int(k), 2.5) for k in np.unique(counts)}
        hit = np.mean([bounds[int(k)][0] <= rate <= bounds[int(k)][1] for k in counts])
        assert hit >= 0.94  # >= 0.95 up to simulation noise (sd 0.0034)


# ----------------------------------------------------------------------------- McNemar


def _paired(n11, a_only, b_only, n00):
    a = [1] * n11 + [1] * a_only + [0] * b_only + [0] * n00
    b = [1] * n11 + [0] * a_only + [1] * b_only + [0] * n00
    return np.array(a, bool), np.array(b, bool)


@pytest.mark.parametrize(
    "n11, a_only, b_only, n00",
    [(50, 7, 2, 10), (30, 5, 5, 3), (0, 0, 10, 2), (100, 15, 3, 20), (1, 1, 0, 0), (20, 40, 25, 1)],
)
def test_mcnemar_against_binomtest(n11, a_only, b_only, n00):
    a, b = _paired(n11, a_only, b_only, n00)
    res = mcnemar(a, b)
    n = n11 + a_only + b_only + n00
    assert res["n"] == n and res["a_only"] == a_only and res["b_only"] == b_only
    ref = sps.binomtest(a_only, a_only + b_only, 0.5, alternative="two-sided").pvalue
    assert res["p_value"] == pytest.approx(ref, rel=1e-10)
    assert res["diff"] == pytest.approx((b_only - a_only) / n)
    assert json.loads(json.dumps(res)) == res


def test_mcnemar_all_concordant():
    a, b = _paired(12, 0, 0, 3)
    res = mcnemar(a, b)
    assert res == {"n": 15, "a_only": 0, "b_only": 0, "p_value": 1.0, "diff": 0.0}
    res01 = mcnemar([1, 0, 1], [1, 0, 1])  # 0/1 ints work too
    assert res01["p_value"] == 1.0 and res01["n"] == 3


# ----------------------------------------------------------------------------- replicate agreement


def test_replicate_agreement():
    verdicts = ["equivalent", "equivalent", "inconclusive", "equivalent"]
    assert replicate_agreement(verdicts, "equivalent") == 0.75
    assert replicate_agreement(verdicts, "worse") == 0.0
    assert replicate_agreement(("worse",), "worse") == 1.0
    assert isinstance(replicate_agreement(verdicts, "equivalent"), float)


# ----------------------------------------------------------------------------- bad input

G3 = ["x", "y", "z"]
V3 = [0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: grouped_bootstrap_diff(G3, V3, [0.0, 1.0]), r"^a and b: lengths differ"),
        (lambda: grouped_bootstrap_diff([], [], []), r"^a: is empty"),
        (lambda: grouped_bootstrap_diff(G3, V3, [0.0, float("nan"), 1.0]), r"^b: contains NaN"),
        (lambda: grouped_bootstrap_diff(G3, [[0.0], [1.0], [0.0]], V3), r"^a: must be 1-D"),
        (lambda: grouped_bootstrap_diff(G3, ["u", "v", "w"], V3), r"^a: must be a 1-D sequence of numbers"),
        (lambda: grouped_bootstrap_diff(G3, V3, V3, exposure=[1.0, 0.0, 1.0]), r"^exposure: must be > 0"),
        (lambda: grouped_bootstrap_diff(G3, V3, V3, exposure=[1.0, 1.0]), r"^exposure: has 2 entries"),
        (lambda: grouped_bootstrap_diff(G3, V3, V3, exposure=[1.0, np.inf, 1.0]), r"^exposure: contains NaN"),
        (lambda: grouped_bootstrap_diff(["x", "y"], V3, V3), r"^groups: has 2 entries"),
        (lambda: grouped_bootstrap_diff(["x", None, "z"], V3, V3), r"^groups: entry 1"),
        (lambda: grouped_bootstrap_diff(["x", ["l"], "z"], V3, V3), r"^groups: entry 1 .* not hashable"),
        (lambda: grouped_bootstrap_diff("xyz", V3, V3), r"^groups: .*not a single string"),
        (lambda: grouped_bootstrap_diff(G3, V3, V3, strata=[0, 1]), r"^strata: has 2 entries"),
        (lambda: grouped_bootstrap_diff(G3, V3, V3, n_boot=1), r"^n_boot:"),
        (lambda: grouped_bootstrap_diff(G3, V3, V3, n_boot=10.5), r"^n_boot:"),
        (lambda: grouped_bootstrap_diff(G3, V3, V3, seed=-1), r"^seed:"),
        (lambda: grouped_bootstrap_diff(G3, V3, V3, alpha=0.0), r"^alpha: must be in \(0, 1\)"),
        (lambda: grouped_bootstrap_diff(G3, V3, V3, alpha=1.5), r"^alpha: must be in \(0, 1\)"),
        (lambda: equivalence_verdict([-0.01, 0.01], 0.0), r"^margin: must be finite and > 0"),
        (lambda: equivalence_verdict([-0.01, 0.01], -0.02), r"^margin: must be finite and > 0"),
        (lambda: equivalence_verdict([-0.01, 0.01], float("nan")), r"^margin:"),
        (lambda: equivalence_verdict([-0.01, 0.01], "0.02"), r"^margin:"),
        (lambda: equivalence_verdict([0.01, -0.01], 0.02), r"^ci: lower bound .* above upper"),
        (lambda: equivalence_verdict([float("nan"), 0.01], 0.02), r"^ci: bounds must be finite"),
        (lambda: equivalence_verdict([0.0, 0.01, 0.02], 0.02), r"^ci: must be a pair"),
        (lambda: equivalence_verdict(0.01, 0.02), r"^ci: must be a pair"),
        (lambda: minimum_detectable_difference(-1.0), r"^se:"),
        (lambda: minimum_detectable_difference(float("nan")), r"^se:"),
        (lambda: minimum_detectable_difference(0.1, alpha=1.0), r"^alpha:"),
        (lambda: minimum_detectable_difference(0.1, power=0.0), r"^power:"),
        (lambda: equivalence_power_margin(-0.1), r"^se:"),
        (lambda: equivalence_power_margin(0.1, alpha=-0.05), r"^alpha:"),
        (lambda: equivalence_power_margin(0.1, power=1.0), r"^power:"),
        (lambda: poisson_ci(-1, 1.0), r"^count: must be >= 0"),
        (lambda: poisson_ci(2.5, 1.0), r"^count: must be a whole number"),
        (lambda: poisson_ci(float("nan"), 1.0), r"^count:"),
        (lambda: poisson_ci(3, 0.0), r"^exposure: must be finite and > 0"),
        (lambda: poisson_ci(3, float("inf")), r"^exposure:"),
        (lambda: poisson_ci(3, 1.0, alpha=1.0), r"^alpha:"),
        (lambda: mcnemar([True, False], [True]), r"^a_correct and b_correct: lengths differ"),
        (lambda: mcnemar([], []), r"^a_correct: is empty"),
        (lambda: mcnemar([1, 2], [1, 0]), r"^a_correct: must hold booleans"),
        (lambda: mcnemar([1, 0], [1, float("nan")]), r"^b_correct: contains NaN"),
        (lambda: replicate_agreement([], "equivalent"), r"^per_replicate_verdicts: is empty"),
        (lambda: replicate_agreement("equivalent", "equivalent"), r"^per_replicate_verdicts:"),
        (lambda: replicate_agreement(None, "equivalent"), r"^per_replicate_verdicts:"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
