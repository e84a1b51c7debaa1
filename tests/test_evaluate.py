"""The evaluation protocol on a tiny synthetic corpus with posterior functions whose answers are known."""
import numpy as np
import pytest

from kwslib import evaluate, metrics
from kwslib.data import DataConfig, load_corpus
from kwslib.data.base import CLASSES
from kwslib.evaluate import KEYWORD_IDX, EvalConfig, evaluate as run_eval, model_summary, prepare_eval
from kwslib.experiment import data_summary
from kwslib.features import FeatureConfig

TINY = {"n_voices": 6, "clips_per_class_per_voice": 1, "noise_seconds": 30.0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = DataConfig(source="synthetic", synthetic=TINY)
    cache = tmp_path_factory.mktemp("cache")
    corpus = load_corpus(cfg, cache_dir=cache)
    again = load_corpus(cfg, cache_dir=cache)  # served from the Arrow cache
    np.testing.assert_array_equal(corpus.test.audio, again.test.audio)
    ecfg = EvalConfig(min_events=1, n_boot=200)
    data = prepare_eval(corpus, FeatureConfig(), 96, 4, ecfg)
    return corpus, data, ecfg


def uniform(windows):
    return np.full((len(windows), len(CLASSES)), 1.0 / len(CLASSES), np.float32)


def test_prepared_shapes(tiny):
    corpus, data, _ = tiny
    n = len(corpus.test)
    assert data.clip_windows.shape == (n, 96, 40)
    assert data.padded_feats.shape[0] == n and data.padded_feats.shape[1] > 96
    assert data.masks.shape[1] == len(KEYWORD_IDX) and data.masks.any()
    assert 0 < data.stream_hours < 1
    info = data_summary(corpus, data)
    assert info["test_clips"] == n and info["source"] == "synthetic"


def test_uniform_posteriors_give_known_numbers(tiny):
    corpus, data, ecfg = tiny
    res = run_eval(uniform, data, ecfg)
    labels = corpus.test.labels
    assert res.accuracy == pytest.approx(np.mean(labels == 0))  # argmax ties -> class 0
    assert np.allclose(res.pos_scores, 1 / 12, atol=1e-6)
    # at threshold 0 every keyword detector is stuck on: it fires once per lockout, everywhere
    # outside that keyword's own clips
    n_steps, lock = len(res.stream_scores), int(round(ecfg.refractory_s / 0.04))
    at0 = res.curve_stream["false_detections"][0]
    assert res.curve_stream["thresholds"][0] == 0
    assert 0.8 * 10 * n_steps / lock <= at0 <= 10 * np.ceil(n_steps / lock)
    # above 1/12 nothing fires and every keyword clip is rejected
    hi = res.curve_stream["thresholds"] > 1 / 12 + 1e-6
    assert np.all(res.curve_stream["false_detections"][hi] == 0)
    assert np.all(res.curve_stream["frr"][hi] == 1.0)


def test_oracle_posteriors_detect_every_keyword(tiny):
    """A posterior function that knows each window's class (from the stream bookkeeping) is perfect."""
    corpus, data, ecfg = tiny
    labels = corpus.test.labels
    lookup = {}
    for i, w in enumerate(data.clip_windows.numpy()):
        lookup[w.tobytes()] = labels[i]

    def oracle(windows):
        out = np.zeros((len(windows), 12), np.float32)
        for j, w in enumerate(windows):
            out[j, lookup.get(w.tobytes(), 0)] = 1.0
        return out

    res = run_eval(oracle, data, ecfg)
    assert res.accuracy == 1.0
    np.testing.assert_array_equal(res.confusion, np.diag(np.bincount(labels, minlength=12)))


def test_model_summary_parity_logic():
    pos = np.r_[np.full(80, 0.9), np.full(20, 0.1)]  # FRR 0.2 at threshold 0.5
    curve = {"thresholds": np.array([0.0, 0.5, 1.0]), "frr": np.array([0.0, 0.2, 1.0]),
             "fdph": np.array([100.0, 5.0, 0.0])}
    res = evaluate.EvalResult(0.9, np.eye(12), np.zeros(3), np.zeros((3, 12)), pos, np.zeros((1, 10)), curve, {})
    cfg = EvalConfig(n_boot=500)
    f = model_summary(res, 10.0, cfg, "float", 32, 100)
    assert f["frr_at_op"] == pytest.approx(0.2) and f["threshold_at_op"] == 0.5 and f["parity"]
    lo, hi = f["frr_at_op_ci"]
    assert lo < 0.2 < hi
    worse = np.r_[np.full(50, 0.9), np.full(50, 0.1)]
    res2 = evaluate.EvalResult(0.5, np.eye(12), np.zeros(3), np.zeros((3, 12)), worse, np.zeros((1, 10)),
                               dict(curve, frr=np.array([0.0, 0.5, 1.0])), {})
    q = model_summary(res2, 10.0, cfg, "stage1", 4, 100, float_entry=f)
    assert q["frr_at_op"] == pytest.approx(0.5) and not q["parity"] and not q["no_worse_than_float"]
    better = np.r_[np.full(99, 0.9), np.full(1, 0.1)]
    res3 = evaluate.EvalResult(0.95, np.eye(12), np.zeros(3), np.zeros((3, 12)), better, np.zeros((1, 10)), curve, {})
    b = model_summary(res3, 10.0, cfg, "stage2", 8, 100, float_entry=f)
    assert b["frr_at_op"] == pytest.approx(0.01) and not b["parity"] and b["no_worse_than_float"]
    assert q["fdph_at_float_frr"] == 100.0  # FRR <= 0.2 only at threshold 0


def test_operating_point_rules(tiny):
    _, data, ecfg = tiny
    assert evaluate.operating_point(data, EvalConfig(operating_point_fdph=3.0)) == 3.0
    op = evaluate.operating_point(data, ecfg)
    assert op * data.stream_hours >= ecfg.min_events
    assert op == metrics.choose_operating_point(data.stream_hours, ecfg.min_events)


def test_save_and_load_curves(tiny, tmp_path):
    _, data, ecfg = tiny
    res = run_eval(uniform, data, ecfg)
    evaluate.save_curve(tmp_path, "m", res)
    back = evaluate.load_curves(tmp_path)["m"]
    np.testing.assert_array_equal(back["stream"]["fdph"], res.curve_stream["fdph"])
    np.testing.assert_array_equal(back["clip"]["fdr"], res.curve_clip["fdr"])
    assert back["accuracy"] == res.accuracy
