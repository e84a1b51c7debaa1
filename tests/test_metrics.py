"""Evaluation primitives on small hand-computed cases."""

import numpy as np
import pytest

from kwslib.deploy import detection
from kwslib.errors import ConfigError
from kwslib.deploy.detection import count_detections, count_detections_many, smooth_posteriors
from kwslib.evaluation.metrics import (
    accuracy,
    bootstrap_ci,
    choose_operating_point,
    confusion_matrix,
    default_thresholds,
    det_curve_clips,
    det_curve_stream,
    fdph_at_frr,
    frr_at,
    threshold_at_fdph,
)

# steps at or above 0.5: 1, 2, 4, 7, 8, 10
SCORES = np.array([0.1, 0.6, 0.7, 0.2, 0.8, 0.1, 0.1, 0.9, 0.9, 0.3, 0.6])


def test_accuracy_and_confusion():
    pred, labels = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])
    assert accuracy(pred, labels) == 0.75
    scores = np.eye(3)[pred] * 0.8 + 0.05
    assert accuracy(scores, labels) == 0.75  # [N, C] scores: argmax
    cm = confusion_matrix(pred, labels, 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])  # rows true, cols predicted
    assert cm.sum() == 4
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError):
        accuracy([], [])


def test_smoothing_values():
    p = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(smooth_posteriors(p, 1), p)
    np.testing.assert_allclose(smooth_posteriors(p, 2), [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(smooth_posteriors(p, 3), [1.0, 1.5, 2.0, 3.0])
    np.testing.assert_allclose(smooth_posteriors(p, 10), [1.0, 1.5, 2.0, 2.5])
    two = smooth_posteriors(np.stack([p, 10 * p], axis=1), 2)  # along axis 0, per column
    np.testing.assert_allclose(two, [[1, 10], [1.5, 15], [2.5, 25], [3.5, 35]])
    with pytest.raises(ValueError):
        smooth_posteriors(p, 0)


def test_count_detections_by_hand():
    assert count_detections(SCORES, 0.5, 0) == 6  # no lockout: every step above fires
    assert count_detections(SCORES, 0.5, 3) == 4  # 1, (2), 4, 7, (8), 10: gaps of exactly 3 allowed
    assert count_detections(SCORES, 0.5, 4) == 2  # 1, (2, 4), 7, (8, 10)
    assert count_detections(SCORES, 0.5, 7) == 2  # 1, (2, 4, 7), 8, (10)
    assert count_detections(SCORES, 0.75, 0) == 3  # 4, 7, 8
    assert count_detections(SCORES, 0.0, 0) == 11  # stuck on: fires at every step
    assert count_detections(SCORES, 0.0, 5) == 3  # stuck on with a lockout of 5: 0, 5, 10
    assert count_detections(SCORES, 0.6, 0) == 6  # >= : 0.6 reaches 0.6
    assert count_detections(SCORES, 0.95, 0) == 0


def test_count_detections_allowed_mask():
    allowed = np.zeros(len(SCORES), bool)
    allowed[3:6] = True  # a true keyword around step 4
    assert count_detections(SCORES, 0.5, 0, allowed) == 5  # 1, 2, 7, 8, 10 are false
    allowed = np.zeros(len(SCORES), bool)
    allowed[0:3] = True  # the keyword at the start: the detection at 1 is correct ...
    # ... and still starts the lockout, so 2 and 4 are suppressed; 7 is false, 8 and 10 suppressed
    assert count_detections(SCORES, 0.5, 4, allowed) == 1
    assert count_detections(SCORES, 0.5, 0, np.ones(len(SCORES), bool)) == 0


def test_count_without_lockout_is_monotone():
    s = np.random.default_rng(3).random(200)
    counts = [count_detections(s, t, 0) for t in np.linspace(0, 1, 21)]
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_vectorised_counting_equals_reference():
    rng = np.random.default_rng(0)
    for trial in range(30):
        T = int(rng.integers(1, 120))
        s = np.round(rng.random(T), 1)  # coarse values: ties with thresholds happen
        thr = np.r_[np.linspace(0, 1, 11), rng.random(5)]
        allowed = None if trial % 3 == 0 else rng.random(T) < 0.3
        for refr in (0, 1, 2, 3, 5, 17, 200):
            want = [count_detections(s, x, refr, allowed) for x in thr]
            np.testing.assert_array_equal(count_detections_many(s, thr, refr, allowed, backend="numpy"), want)
            # a tiny block size exercises the block loop
            np.testing.assert_array_equal(count_detections_many(s, thr, refr, allowed, max_cells=1,
                                                                backend="numpy"), want)
            if C_OK:
                np.testing.assert_array_equal(count_detections_many(s, thr, refr, allowed, backend="c"), want)


C_OK = __import__("kwslib.deploy.ckernels", fromlist=["availability"]).availability()[0]


@pytest.mark.skipif(not C_OK, reason="no C compiler: the numpy counter is the one in use")
def test_c_counting_equals_numpy_on_long_streams():
    """kws_count_detections against the numpy specification: float32 and float64 scores (compared in
    float64, as numpy does), thresholds on score values (ties), NaN, an all-above column, masks."""
    rng = np.random.default_rng(7)
    T = 20_000
    s32 = metrics_smooth(rng.beta(0.3, 6, T), rng).astype(np.float32)
    s64 = s32.astype(np.float64) + 1e-9  # not float32-representable
    thr = np.unique(np.r_[np.linspace(0, 1, 101), s32[rng.integers(0, T, 20)].astype(np.float64), 1.0 - 1e-7])
    allowed = rng.random(T) < 0.05
    s_nan = s64.copy()
    s_nan[::97] = np.nan
    for s in (s32, s64, s_nan, np.ones(T)):
        for refr in (1, 25):
            for al in (None, allowed):
                want = count_detections_many(s, thr, refr, al, backend="numpy")
                np.testing.assert_array_equal(count_detections_many(s, thr, refr, al, backend="c"), want)
    assert count_detections_many(np.ones(T), [0.5], 25, backend="c")[0] == T // 25  # one every gap steps
    with pytest.raises(ValueError, match="backend"):
        count_detections_many(s32, thr, 1, backend="fast")


def metrics_smooth(x, rng):
    x = x.copy()
    bursts = rng.random(len(x)) < 0.003
    x[bursts] = rng.uniform(0.3, 1.0, bursts.sum())
    return np.convolve(x, np.ones(3) / 3, mode="same")


def test_det_curve_clips_by_hand():
    c = det_curve_clips([0.2, 0.6, 0.9], [0.1, 0.3, 0.7, 0.05], thresholds=[0.0, 0.5, 0.8, 1.0])
    np.testing.assert_allclose(c["frr"], [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(c["fdr"], [1, 1 / 4, 0, 0])


def test_det_curves_monotone():
    rng = np.random.default_rng(1)
    pos, neg = rng.beta(5, 2, 300), rng.beta(2, 5, 500)
    c = det_curve_clips(pos, neg)
    assert np.all(np.diff(c["thresholds"]) > 0)
    assert np.all(np.diff(c["frr"]) >= 0) and np.all(np.diff(c["fdr"]) <= 0)
    assert c["frr"][0] == 0 and c["fdr"][0] == 1 and c["fdr"][-1] == 0
    # streams of separated single-peaked bumps: here the count must fall with the threshold
    T, K = 2000, 3
    stream = np.zeros((T, K))
    bump = np.hanning(21)
    for i, start in enumerate(range(10, T - 30, 60)):
        stream[start:start + 21, i % K] = rng.random() * bump
    masks = np.zeros((T, K), bool)
    masks[100:300, 0] = True
    sc = det_curve_stream(pos, stream, masks, hours=0.5, refractory=10)
    assert np.all(np.diff(sc["frr"]) >= 0)
    # threshold 0 is reached everywhere: each column fires every 10 steps (200 times), except the
    # 20 detections of column 0 inside its own keyword region (steps 100..299)
    assert sc["thresholds"][0] == 0 and sc["false_detections"][0] == K * 200 - 20
    assert np.all(np.diff(sc["fdph"][1:]) <= 0) and sc["fdph"][1] > sc["fdph"][-1] == 0
    np.testing.assert_allclose(sc["fdph"], sc["false_detections"] / 0.5)


def test_det_curve_stream_by_hand():
    # no lockout: keyword 0 fires at 1, 2, 4, 7, 8, 10 (SCORES >= 0.5), keyword 1 at 2 and 3;
    # keyword 0 is truly present at 3..5, so its detection at 4 is not false
    stream = np.stack([SCORES, [0, 0, 0.9, 0.9, 0, 0, 0, 0, 0, 0, 0]], axis=1)
    masks = np.zeros_like(stream, bool)
    masks[3:6, 0] = True
    c = det_curve_stream([0.55, 0.95], stream, masks, hours=2.0, refractory=0, thresholds=[0.5, 0.85, 0.95])
    np.testing.assert_array_equal(c["false_detections"], [5 + 2, 2 + 2, 0])  # at 0.85: kw0 7, 8; kw1 2, 3
    np.testing.assert_allclose(c["fdph"], [3.5, 2.0, 0.0])
    np.testing.assert_allclose(c["frr"], [0.0, 0.5, 0.5])
    # a keyword's own mask does not excuse another keyword: masking kw 0 at step 2 changes nothing
    masks[2, 0] = True
    c2 = det_curve_stream([0.55, 0.95], stream, masks, hours=2.0, refractory=0, thresholds=[0.85])
    assert c2["false_detections"][0] == 4


def test_default_thresholds():
    th = default_thresholds(np.linspace(0.2, 0.8, 5))
    np.testing.assert_allclose(th, [0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0])
    many = default_thresholds(np.random.default_rng(0).random(10_000))
    assert many[0] == 0 and many[-1] == 1 and len(many) <= 402 and np.all(np.diff(many) > 0)
    top = default_thresholds([0.3, 1.0])
    assert top[-1] > 1.0  # a threshold no score reaches, even a saturated posterior


def test_threshold_at_fdph_toy():
    curve = {"thresholds": np.array([0.1, 0.3, 0.5, 0.7, 0.9]), "fdph": np.array([50, 12, 9, 2, 0.0]),
             "frr": np.array([0, 0.1, 0.2, 0.4, 0.8])}
    assert threshold_at_fdph(curve, 10) == 0.5
    assert threshold_at_fdph(curve, 12) == 0.3
    assert threshold_at_fdph(curve, 0) == 0.9
    with pytest.raises(ValueError):
        threshold_at_fdph(curve, -1)
    bumpy = dict(curve, fdph=np.array([50, 8, 12, 2, 0.0]))
    assert threshold_at_fdph(bumpy, 10) == 0.3  # the lowest threshold that meets the budget
    assert fdph_at_frr(curve, 0.2) == 9.0
    assert fdph_at_frr(curve, 0.0) == 50.0
    assert fdph_at_frr(curve, 1.0) == 0.0


def test_frr_and_bootstrap():
    pos = np.r_[np.zeros(20), np.ones(180)]  # 20 of 200 rejected at 0.5
    assert frr_at(pos, 0.5) == 0.1
    lo, hi = bootstrap_ci(pos, 0.5)
    assert lo <= 0.1 <= hi and 0.04 < lo < 0.1 < hi < 0.16
    assert bootstrap_ci(pos, 0.5, seed=3) == bootstrap_ci(pos, 0.5, seed=3)
    big = np.r_[np.zeros(2000), np.ones(18000)]
    blo, bhi = bootstrap_ci(big, 0.5)
    assert blo <= 0.1 <= bhi and (bhi - blo) < (hi - lo) / 5
    # the binomial shortcut agrees with explicit resampling of the clips
    rng = np.random.default_rng(0)
    explicit = (pos[rng.integers(0, len(pos), (4000, len(pos)))] < 0.5).mean(axis=1)
    np.testing.assert_allclose(bootstrap_ci(pos, 0.5, n_boot=4000), np.quantile(explicit, [0.025, 0.975]),
                               atol=0.011)


def test_choose_operating_point():
    assert choose_operating_point(1.0) == 20
    assert choose_operating_point(0.5) == 50
    assert choose_operating_point(40.0) == 0.5  # 0.5 * 40 = 20 events: enough
    assert choose_operating_point(100.0) == 0.5
    assert choose_operating_point(1.0, min_events=5) == 5
    with pytest.raises(ConfigError):
        choose_operating_point(0.01)  # 500 FD/h x 0.01 h = 5 events


def test_det_curve_stream_on_a_long_stream_matches_the_reference():
    """The vectorised counter on a long stream with masks, against count_detections at a few thresholds
    (its speed is a benchmark's business, not a test's)."""
    rng = np.random.default_rng(0)
    T, K = 30_000, 10
    stream = smooth_posteriors(rng.random((T, K)) ** 8, 30)
    masks = rng.random((T, K)) < 0.05
    c = det_curve_stream(rng.random(1000), stream, masks, hours=1.0, refractory=50)
    assert len(c["thresholds"]) >= 400
    for j in rng.choice(len(c["thresholds"]), 6, replace=False):
        thr = c["thresholds"][j]
        ref = sum(count_detections(stream[:, k], thr, 50, masks[:, k]) for k in range(K))
        assert c["false_detections"][j] == ref


def test_detection_steps_match_the_reference_counter():
    rng = np.random.default_rng(3)
    for _ in range(30):
        s = rng.random(400) ** 3
        thr, gap = float(rng.uniform(0.1, 0.9)), int(rng.integers(1, 30))
        steps = detection.detection_steps(s, thr, gap)
        assert len(steps) == detection.count_detections(s, thr, gap)
        # brute force: the same walk step by step
        ref, last = [], None
        for t in range(len(s)):
            if s[t] >= thr and (last is None or t - last >= gap):
                ref.append(t)
                last = t
        np.testing.assert_array_equal(steps, ref)
    assert detection.detection_steps(np.zeros(5), 0.5, 3).size == 0


def test_steps_from_above_is_detection_steps_given_the_steps_above():
    from kwslib.deploy.detection import detection_steps, steps_from_above

    rng = np.random.default_rng(3)
    s = rng.random(5000)
    for thr, gap in ((0.9, 1), (0.7, 25), (0.99, 3)):
        above = np.flatnonzero(s >= thr)
        got = steps_from_above(above, gap)
        assert np.array_equal(got, detection_steps(s, thr, gap))
        assert np.all(np.diff(got) >= gap) and set(got) <= set(above)  # a lockout between detections
    assert steps_from_above(np.zeros(0, np.int64), 5).size == 0
