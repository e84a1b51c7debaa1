"""The evaluation protocol on a tiny synthetic corpus with posterior functions whose answers are known."""
import numpy as np
import pytest

from kwslib.evaluation import evaluate, metrics
from kwslib.data import DataConfig, load_corpus
from kwslib.data.base import CLASSES
from kwslib.evaluation.evaluate import (
    KEYWORD_IDX,
    EvalConfig,
    NegativesConfig,
    evaluate as run_eval,
    model_summary,
    prepare_eval,
)
from kwslib.study.experiment import data_summary
from kwslib.frontend.features import FeatureConfig

TINY = {"n_voices": 6, "clips_per_class_per_voice": 1, "noise_seconds": 30.0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = DataConfig(source="synthetic", synthetic=TINY)
    cache = tmp_path_factory.mktemp("cache")
    corpus = load_corpus(cfg, cache_dir=cache)
    again = load_corpus(cfg, cache_dir=cache)  # served from the Arrow cache
    np.testing.assert_array_equal(corpus.test.audio, again.test.audio)
    ecfg = EvalConfig(min_events=1, n_boot=200)
    data = prepare_eval(corpus, FeatureConfig(), 96, 4, ecfg, NegativesConfig(synthetic_hours=0.01),
                        cache_dir=cache, keyword_stream=True)
    again = prepare_eval(corpus, FeatureConfig(), 96, 4, ecfg, NegativesConfig(synthetic_hours=0.01), cache_dir=cache)
    for name, src in data.negatives.items():  # the negative streams come back from the cache unchanged
        np.testing.assert_array_equal(src.feats.numpy(), again.negatives[name].feats.numpy())
        np.testing.assert_array_equal(src.unit_of_step, again.negatives[name].unit_of_step)
    return corpus, data, ecfg


def uniform(windows):
    return np.full((len(windows), len(CLASSES)), 1.0 / len(CLASSES), np.float32)


def test_prepared_shapes(tiny):
    corpus, data, _ = tiny
    n = len(corpus.test)
    assert data.clip_windows.shape == (n, 96, 40)
    assert data.padded_feats.shape[0] == n and data.padded_feats.shape[1] > 96
    assert data.masks.shape[1] == len(KEYWORD_IDX) and data.masks.any()  # the keyword-clip stream (notebook 4)
    assert set(data.negatives) == {"synthetic_speech", "noise"}
    hours = data.hours_by_source()
    assert hours["synthetic_speech"] >= 0.01 and data.negative_hours == pytest.approx(sum(hours.values()))
    for src in data.negatives.values():  # every streaming step belongs to a unit; unit hours add up
        n_steps = len(evaluate.sliding_windows(src.feats, 96, 4))
        assert len(src.unit_of_step) == n_steps and src.unit_of_step.min() >= 0
        assert src.unit_of_step.max() < len(src.unit_ids) and np.all(np.diff(src.unit_of_step) >= 0)
        assert src.unit_hours.sum() == pytest.approx(src.hours)
    assert data.stream_hours == data.negative_hours
    info = data_summary(corpus, data)
    assert info["test_clips"] == n and info["source"] == "synthetic"
    assert info["classes"] == list(corpus.classes) and info["keywords"] == list(corpus.classes[2:])
    assert info["keywords"][:2] == ["yes", "no"] and len(info["keywords"]) == 10  # the 12-class task's keywords


def test_uniform_posteriors_give_known_numbers(tiny):
    corpus, data, ecfg = tiny
    res = run_eval(uniform, data, ecfg)
    labels = corpus.test.labels
    assert res.accuracy == pytest.approx(np.mean(labels == 0))  # argmax ties -> class 0
    assert np.allclose(res.pos_scores, 1 / 12, atol=1e-6)
    # at threshold 0 every keyword detector is stuck on: it fires once per lockout on every negative stream
    lock = int(round(ecfg.refractory_s / 0.04))
    assert res.refractory == lock
    expect = sum(10 * np.ceil(len(sc) / lock) for sc in res.negative_scores.values())
    assert res.curve_stream["thresholds"][0] == 0 and res.curve_stream["false_detections"][0] == expect
    assert res.curve_stream["fdph"][0] == pytest.approx(expect / data.negative_hours)
    by_src = sum(c["false_detections"] for c in res.curve_by_source.values())
    np.testing.assert_array_equal(by_src, res.curve_stream["false_detections"])
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
    res = evaluate.EvalResult(0.9, np.eye(12), np.zeros(3), np.zeros((3, 12)), pos, {}, curve, {}, {})
    cfg = EvalConfig(n_boot=500)
    f = model_summary(res, 10.0, cfg, "float", 32, 100)
    assert f["frr_at_op"] == pytest.approx(0.2) and f["threshold_at_op"] == 0.5 and f["parity"]
    lo, hi = f["frr_at_op_ci"]
    assert lo < 0.2 < hi
    worse = np.r_[np.full(50, 0.9), np.full(50, 0.1)]
    res2 = evaluate.EvalResult(0.5, np.eye(12), np.zeros(3), np.zeros((3, 12)), worse, {},
                               dict(curve, frr=np.array([0.0, 0.5, 1.0])), {}, {})
    q = model_summary(res2, 10.0, cfg, "stage1", 4, 100, float_entry=f)
    assert q["frr_at_op"] == pytest.approx(0.5) and not q["parity"] and not q["no_worse_than_float"]
    better = np.r_[np.full(99, 0.9), np.full(1, 0.1)]
    res3 = evaluate.EvalResult(0.95, np.eye(12), np.zeros(3), np.zeros((3, 12)), better, {}, curve, {}, {})
    b = model_summary(res3, 10.0, cfg, "stage2", 8, 100, float_entry=f)
    assert b["frr_at_op"] == pytest.approx(0.01) and not b["parity"] and b["no_worse_than_float"]
    assert q["fdph_at_float_frr"] == 100.0  # FRR <= 0.2 only at threshold 0


def test_operating_point_rules(tiny):
    _, data, ecfg = tiny
    assert evaluate.operating_point(data, EvalConfig(operating_point_fdph=3.0)) == 3.0
    op = evaluate.operating_point(data, ecfg)
    assert op * data.stream_hours >= ecfg.min_events
    assert op == metrics.choose_operating_point(data.stream_hours, ecfg.min_events)


def test_records_count_every_detection_in_its_unit(tiny, tmp_path):
    """The record's per-unit false detections add up to the DET curve's count at the same threshold."""
    from kwslib.study import replicates as R

    _, data, ecfg = tiny
    rng = np.random.default_rng(0)

    def noisy(windows):
        x = rng.random((len(windows), 12)).astype(np.float32) ** 4
        return x / x.sum(1, keepdims=True)

    res = run_eval(noisy, data, ecfg)
    op = evaluate.operating_point(data, ecfg)
    rec = R.model_record(res, data, ecfg, op)
    j = int(np.flatnonzero(res.curve_stream["thresholds"] == rec["threshold_at_op"])[0])
    assert rec["counts_at_op"].sum() == res.curve_stream["false_detections"][j]
    assert rec["counts_at_op"].sum() / data.negative_hours <= op
    assert len(rec["counts_at_op"]) == len(rec["unit_ids"]) == len(rec["unit_hours"])
    assert rec["frr_at_op"] == pytest.approx(np.mean(res.pos_scores < rec["threshold_at_op"]))
    q = R.model_record(res, data, ecfg, op, float_record=rec)  # the model against itself
    # at the float FRR it picks the threshold with the fewest false detections: no more than at the op
    assert np.mean(res.pos_scores < q["threshold_at_float_frr"]) <= rec["frr_at_op"]
    assert q["counts_at_float_frr"].sum() <= rec["counts_at_op"].sum()
    R.save_record(tmp_path / "r.npz", q, "abc")
    back = R.load_record(tmp_path / "r.npz", "abc")
    for k, v in q.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(back[k], v)
        elif isinstance(v, dict) and k == "curve_source_false_detections":
            assert set(back[k]) == set(v)
        else:
            assert back[k] == v, k
    assert R.load_record(tmp_path / "r.npz", "other") is None  # a record of another model file is not reused
    assert R.load_record(tmp_path / "missing.npz") is None


def test_clip_inputs_cached_equal_to_computed_and_damage_rebuilt(tiny, tmp_path):
    """The cached clip windows / padded features are the computed ones; a new corpus or padding gets its own
    file; a damaged file is rebuilt with a warning."""
    corpus, _, ecfg = tiny
    fresh = evaluate._clip_inputs(corpus, FeatureConfig(), 96, ecfg, None)
    first = evaluate._clip_inputs(corpus, FeatureConfig(), 96, ecfg, tmp_path)
    files = list(tmp_path.glob("clips-*.npz"))
    assert len(files) == 1
    again = evaluate._clip_inputs(corpus, FeatureConfig(), 96, ecfg, tmp_path)
    for a, b, c in zip(fresh, first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(a.numpy(), c.numpy())
    import dataclasses

    evaluate._clip_inputs(corpus, FeatureConfig(), 96, dataclasses.replace(ecfg, pad_s=ecfg.pad_s + 0.1), tmp_path)
    assert len(list(tmp_path.glob("clips-*.npz"))) == 2
    files[0].write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="damaged"):
        rebuilt = evaluate._clip_inputs(corpus, FeatureConfig(), 96, ecfg, tmp_path)
    np.testing.assert_array_equal(rebuilt[1].numpy(), fresh[1].numpy())
