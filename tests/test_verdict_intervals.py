"""The replicate-level interval of a paired difference: coverage by simulation, and its building blocks.

The simulation has known variance components, as a rerun of the sc12 chain sees them: per replicate a
training effect (new float model and QAT run; it dominates), its own test speakers (clips of a speaker are
correlated, the two models' misses are paired), and a threshold effect with a part of its own and a part
shared by every replicate (the same negative audio). The truth is the mean difference over all of that.
"""
import numpy as np
import pytest

from kwslib.evaluation import stats

SD_TRAINING = 0.025  # per replicate, FRR difference (2.5 points): dominates, as measured on sc12
SD_THRESHOLD_OWN = 0.006
SD_SHARED = 0.005  # the negative audio every replicate shares
TRUE_DELTA = 0.01
SPEAKERS, CLIPS = 40, 10  # per replicate


def simulate(n_rep: int, n_sims: int, seed: int):
    """Per-clip misses of float and quantized models in ``n_sims`` experiments of ``n_rep`` replicates.

    Returns (f_miss, q_miss) bool [n_sims, n_rep, SPEAKERS * CLIPS] and the speaker of each clip."""
    rng = np.random.default_rng(seed)
    p_f = 0.45 + 0.4 * rng.beta(2.0, 2.0, (n_sims, n_rep, SPEAKERS, 1))  # speaker difficulty: FRR ~0.65
    shift = (TRUE_DELTA + SD_TRAINING * rng.standard_normal((n_sims, n_rep, 1, 1))
             + SD_THRESHOLD_OWN * rng.standard_normal((n_sims, n_rep, 1, 1))
             + SD_SHARED * rng.standard_normal((n_sims, 1, 1, 1)))
    p_q = p_f + shift  # stays inside (0, 1) here: the mean difference is TRUE_DELTA exactly
    assert (p_q > 0).all() and (p_q < 1).all()
    u = rng.random((n_sims, n_rep, SPEAKERS, CLIPS))
    fresh = rng.random(u.shape)
    u_q = np.where(rng.random(u.shape) < 0.8, u, fresh)  # paired: mostly the same clips are hard for both
    f_miss = (u < p_f).reshape(n_sims, n_rep, -1)
    q_miss = (u_q < p_q).reshape(n_sims, n_rep, -1)
    speakers = np.repeat(np.arange(SPEAKERS), CLIPS)
    return f_miss, q_miss, speakers


@pytest.mark.parametrize("n_rep", [5, 10])
def test_replicate_interval_covers_at_nominal_rate_and_the_speaker_bootstrap_does_not(n_rep):
    n_sims = 2000
    f_miss, q_miss, speakers = simulate(n_rep, n_sims, seed=100 + n_rep)
    d = q_miss.mean(axis=2) - f_miss.mean(axis=2)  # [sims, replicates]
    r = stats.replicate_interval_many(d, shared_var=SD_SHARED ** 2)
    covered = (r["lo"] <= TRUE_DELTA) & (TRUE_DELTA <= r["hi"])
    assert 0.93 <= covered.mean() <= 0.97, covered.mean()
    # the same interval without the shared part misses some of it (a check that the part matters at all)
    bare = stats.replicate_interval_many(d)
    assert ((bare["lo"] <= TRUE_DELTA) & (TRUE_DELTA <= bare["hi"])).mean() < covered.mean()
    # the old interval: speakers resampled within replicates, training and threshold held fixed
    hits = []
    for s in range(150):
        strata = np.repeat(np.arange(n_rep), SPEAKERS * CLIPS)
        groups = np.tile(speakers, n_rep)
        old = stats.grouped_bootstrap_diff(groups, f_miss[s].ravel().astype(float), q_miss[s].ravel().astype(float),
                                           strata=strata, n_boot=400, seed=s)
        hits.append(old["ci"][0] <= TRUE_DELTA <= old["ci"][1])
    assert np.mean(hits) < 0.8, np.mean(hits)  # far below 95%: it leaves out the training variance


def test_replicate_interval_values():
    d = [0.005, -0.059, -0.040, -0.027, -0.002]  # sc12 stage 2 at 4 bits, per fold (run at 807132e)
    r = stats.replicate_interval(d)
    s = np.std(d, ddof=1)
    half = 2.7764451051977987 * s / np.sqrt(5)  # t_{0.975, 4}
    assert r["diff"] == pytest.approx(np.mean(d)) and r["df"] == pytest.approx(4)
    assert r["ci"] == pytest.approx([np.mean(d) - half, np.mean(d) + half])
    assert r["sd_replicates"] == pytest.approx(s) and r["n_replicates"] == 5 and r["se_shared"] == 0
    # weights: the weighted mean, and the cluster-robust variance n/(n-1) sum w^2 (d - D)^2
    w = np.array([1.0, 1, 1, 1, 4])
    rw = stats.replicate_interval(d, weights=w)
    wn = w / w.sum()
    center = float(wn @ d)
    assert rw["diff"] == pytest.approx(center)
    assert rw["se_replicates"] == pytest.approx(np.sqrt(5 / 4 * np.sum(wn ** 2 * (np.array(d) - center) ** 2)))
    # a shared component widens it and raises the degrees of freedom (Satterthwaite)
    rs = stats.replicate_interval(d, shared_var=0.01 ** 2)
    assert rs["se"] == pytest.approx(np.sqrt(r["se"] ** 2 + 1e-4)) and rs["df"] > 4
    assert rs["ci"][0] < r["ci"][0] and rs["ci"][1] > r["ci"][1]
    # identical replicates and no shared part: a zero-width interval at the common value
    assert stats.replicate_interval([0.01, 0.01, 0.01])["ci"] == pytest.approx([0.01, 0.01])
    # no replicate spread but a shared part: the normal interval of the shared part (df infinite)
    z = stats.replicate_interval([0.0, 0.0], shared_var=1.0)
    assert z["df"] is None and z["ci"] == pytest.approx([-1.959964, 1.959964])
    many = stats.replicate_interval_many(np.array([d, d]), shared_var=[0.0, 1e-4])
    assert many["lo"] == pytest.approx([r["ci"][0], rs["ci"][0]])


def test_replicate_interval_bad_input():
    with pytest.raises(stats.StatsError, match="at least 2 replicates"):
        stats.replicate_interval([0.1])
    with pytest.raises(stats.StatsError, match="NaN"):
        stats.replicate_interval([0.1, float("nan")])
    with pytest.raises(stats.StatsError, match="shared_var"):
        stats.replicate_interval([0.1, 0.2], shared_var=-1)
    with pytest.raises(stats.StatsError, match="weights"):
        stats.replicate_interval([0.1, 0.2], weights=[1, 0])
    with pytest.raises(stats.StatsError, match="weights"):
        stats.replicate_interval([0.1, 0.2], weights=[1, 2, 3])
    with pytest.raises(stats.StatsError, match="1-D"):
        stats.replicate_interval([[0.1, 0.2], [0.1, 0.3]])
    with pytest.raises(stats.StatsError, match="alpha"):
        stats.replicate_interval([0.1, 0.2], alpha=1.5)
    with pytest.raises(stats.StatsError, match="shared_var"):
        stats.replicate_interval_many([[0.1, 0.2], [0.1, 0.3]], shared_var=[1.0, 2.0, 3.0])


def test_replicates_needed_makes_the_interval_no_wider_than_the_margin():
    sd, margin = 0.026, 0.02
    n = stats.replicates_needed(sd, margin)
    width = lambda k: 2 * stats.replicate_interval_many(np.zeros(k), shared_var=0.0)["se"]  # noqa: E731
    from scipy import stats as sps

    w_n = 2 * sps.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    w_prev = 2 * sps.t.ppf(0.975, n - 2) * sd / np.sqrt(n - 1)
    assert w_n <= margin < w_prev and 25 <= n <= 35
    assert width(3) == 0  # (the helper: zero spread, zero width)
    # every interval no wider than the margin gets a conclusive verdict, wherever it lies
    for lo in np.linspace(-0.05, 0.05, 201):
        assert stats.equivalence_verdict([lo, lo + margin], margin) != "inconclusive"
    assert stats.equivalence_verdict([-0.001, margin + 0.0001], margin) == "inconclusive"
    assert stats.replicates_needed(0.0, margin) == 2
    assert stats.replicates_needed(0.001, margin) == 2
    assert stats.replicates_needed(sd, margin, shared_sd=0.006) is None  # 2 z 0.006 > 0.02: negatives, not replicates
    assert stats.replicates_needed(sd, margin, shared_sd=0.002) > n
    assert stats.replicates_needed(1.0, margin, max_n=50) is None
    with pytest.raises(stats.StatsError, match="margin"):
        stats.replicates_needed(sd, 0.0)
    with pytest.raises(stats.StatsError, match="sd_replicate"):
        stats.replicates_needed(-1.0, margin)
    with pytest.raises(stats.StatsError, match="max_n"):
        stats.replicates_needed(sd, margin, max_n=1)


def test_variance_components_split_the_spread():
    rng = np.random.default_rng(3)
    # many replicates with known parts: training 0.02, speakers 0.01, threshold 0.005
    d = 0.02 * rng.standard_normal(4000) + 0.01 * rng.standard_normal(4000) + 0.005 * rng.standard_normal(4000)
    vc = stats.variance_components(d, np.full(4000, 0.01 ** 2), 0.005 ** 2)
    assert vc["training"] == pytest.approx(0.02, rel=0.05) and vc["dominant"] == "training"
    assert vc["test_speakers"] == pytest.approx(0.01) and vc["threshold_negatives"] == pytest.approx(0.005)
    assert vc["per_replicate_total"] == pytest.approx(np.std(d, ddof=1))
    assert not vc["training_includes_threshold"]
    # without the threshold's part, training holds it; a spread the speakers explain leaves training at 0
    no_thr = stats.variance_components(d, 0.01 ** 2)
    assert no_thr["threshold_negatives"] is None and no_thr["training_includes_threshold"]
    assert no_thr["training"] > vc["training"]
    small = stats.variance_components([0.0, 0.001, -0.001], 0.01 ** 2)
    assert small["training"] == 0.0 and small["dominant"] == "test_speakers"
    with pytest.raises(stats.StatsError, match="speaker_var"):
        stats.variance_components([0.0, 0.1], [0.1, 0.1, 0.1])
    with pytest.raises(stats.StatsError, match="threshold_var"):
        stats.variance_components([0.0, 0.1], 0.1, -1.0)


def test_t_quantiles_in_power_helpers():
    assert stats.minimum_detectable_difference(0.01, df=4) > stats.minimum_detectable_difference(0.01)
    assert stats.minimum_detectable_difference(0.01, df=1e9) == pytest.approx(stats.minimum_detectable_difference(0.01))
    assert stats.equivalence_power_margin(0.01, df=4) > stats.equivalence_power_margin(0.01)
    with pytest.raises(stats.StatsError, match="df"):
        stats.minimum_detectable_difference(0.01, df=0)


# ----------------------------------------------------------------------------- threshold from resampled negatives

GRID = np.linspace(0.0, 1.0, 401)
UNITS, UNIT_HOURS, EVENTS_PER_HOUR, OP = 400, 0.005, 200.0, 10.0  # 2 h of negative audio, 20 events at the op


def _unit_curve(unit, scores):
    """unit_curve_* keys of a record: per (unit, grid threshold) the events with a score at or above it."""
    counts = np.zeros((GRID.size, UNITS), np.int64)
    order = np.searchsorted(GRID, scores, side="right")  # the event counts at grid indices < order
    for u, o in zip(unit, order):
        counts[:o, u] += 1
    jj, uu = np.nonzero(counts)
    return {"unit_curve_from": 0, "unit_curve_index": jj.astype(np.int32), "unit_curve_unit": uu.astype(np.int32),
            "unit_curve_count": counts[jj, uu].astype(np.int32)}


def negative_pair(rng, pos_f, pos_q):
    """Float and quantized records on one fresh sample of negative audio (the quantized model's false-alarm
    scores are the float model's plus noise: the two thresholds move together)."""
    n_ev = rng.poisson(EVENTS_PER_HOUR * UNITS * UNIT_HOURS)
    unit = rng.integers(0, UNITS, n_ev)
    s_f = rng.random(n_ev) ** 3
    s_q = np.clip(s_f + 0.03 * rng.standard_normal(n_ev), 0, 1)
    base = {"unit_ids": np.array([f"u{i}" for i in range(UNITS)]), "unit_hours": np.full(UNITS, UNIT_HOURS),
            "curve_thresholds": GRID}
    return ({**base, "pos_scores": pos_f, **_unit_curve(unit, s_f)},
            {**base, "pos_scores": pos_q, **_unit_curve(unit, s_q)})


def _point(f, q):
    """The FRR difference on the whole sample, each threshold the lowest grid value at or under OP."""

    from kwslib.study import verdicts

    out = []
    for rec in (f, q):
        j0, mat = verdicts._band(rec, UNITS)
        rate = np.asarray(mat.sum(axis=0)).ravel() / (UNITS * UNIT_HOURS)
        out.append(np.mean(rec["pos_scores"] < GRID[j0 + verdicts._first_at_or_under(rate[None, :], OP)[0]]))
    return out[1] - out[0]


def test_negative_bootstrap_measures_the_threshold_variance():
    """Its sd of the FRR difference (one sample of negative audio, thresholds re-derived per draw) matches the
    sd over fresh samples of negative audio."""
    from kwslib.study import verdicts

    rng = np.random.default_rng(7)
    pos_f = rng.uniform(0.5, 1.0, 800)
    pos_q = np.clip(pos_f + 0.02 * rng.standard_normal(800), 0, 1)
    truth = np.std([_point(*negative_pair(rng, pos_f, pos_q)) for _ in range(300)], ddof=1)
    boot = []
    for _ in range(12):
        f, q = negative_pair(rng, pos_f, pos_q)
        draws = verdicts.negative_bootstrap([q], [f], OP, n_boot=400, seed=int(rng.integers(1 << 30)))
        boot.append(np.std(draws["delta_frr"][:, 0], ddof=1))
        assert draws["delta_frr"].shape == (400, 1) and draws["units"] == UNITS
    assert truth > 0.005  # the threshold matters here
    assert np.mean(boot) == pytest.approx(truth, rel=0.3), (np.mean(boot), truth)
    # a model against itself: every draw gives 0
    same = verdicts.negative_bootstrap([f, f], [f, f], OP, n_boot=50)
    assert not same["delta_frr"].any() and not same["delta_fdph"].any()
    # shared across replicates: two replicates read on the same audio move together
    two = verdicts.negative_bootstrap([q, q], [f, f], OP, n_boot=200, seed=1)
    shared, per_rep = verdicts._shared_var(two["delta_frr"], np.array([0.5, 0.5]))
    assert shared == pytest.approx(per_rep.mean() / 2, rel=1e-6)  # perfectly correlated: all of the covariance


def test_negative_bootstrap_bad_input_and_old_records():
    from kwslib.study import verdicts

    rng = np.random.default_rng(8)
    f, q = negative_pair(rng, rng.random(50), rng.random(50))
    old = {k: v for k, v in q.items() if not k.startswith("unit_curve")}
    assert verdicts.negative_bootstrap([old], [f], OP) is None  # a version-1 record: not measurable, not an error
    with pytest.raises(ValueError, match="float records"):
        verdicts.negative_bootstrap([q, q], [f], OP)
    other = dict(q, unit_ids=np.array([f"v{i}" for i in range(UNITS)]))
    with pytest.raises(ValueError, match="different negative audio"):
        verdicts.negative_bootstrap([other], [f], OP)
    with pytest.raises(ValueError, match="n_boot"):
        verdicts.negative_bootstrap([q], [f], OP, n_boot=1)
    bad = dict(q, unit_curve_unit=q["unit_curve_unit"] + UNITS)
    with pytest.raises(ValueError, match="do not fit"):
        verdicts.negative_bootstrap([bad], [f], OP)


def test_qat_seed_split_separates_the_qat_run_from_float_retraining():
    from kwslib.study import verdicts

    comp = {"training": 5.0, "test_speakers": 1.0, "threshold_negatives": 0.5, "dominant": "training"}
    fl = {"frr_at_op": 0.40}
    runs = [{"frr_at_op": v} for v in (0.42, 0.45, 0.39)]  # deltas +2, +5, -1 points
    out = verdicts.qat_seed_split(comp, fl, runs[0], runs[1:], replicate=0)
    sd = float(np.std([2.0, 5.0, -1.0], ddof=1))  # 3.0
    assert out["qat_seed"] == pytest.approx(sd) and out["qat_seed_deltas"] == pytest.approx([2.0, 5.0, -1.0])
    assert out["float_retraining"] == pytest.approx(np.sqrt(25.0 - sd ** 2))  # 4.0
    assert out["dominant"] == "float_retraining" and "2 degrees of freedom" in out["qat_seed_note"]
    assert comp["dominant"] == "training" and "qat_seed" not in comp  # the input is not changed
    # the QAT part explains all of the training part: no float retraining left, and the QAT seed dominates
    big = verdicts.qat_seed_split(comp, fl, {"frr_at_op": 0.30}, [{"frr_at_op": 0.50}])
    assert big["float_retraining"] == 0.0 and big["dominant"] == "qat_seed"
    # no replicate-level training part (one replicate): QAT sd alone, float retraining unknown
    one = verdicts.qat_seed_split({}, fl, runs[0], runs[1:])
    assert one["float_retraining"] is None and one["dominant"] == "qat_seed"
    with pytest.raises(ValueError, match="at least one other seed"):
        verdicts.qat_seed_split(comp, fl, runs[0], [])
