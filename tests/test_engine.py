"""The integer engine: numpy backend is the spec, C backend the same integers, streaming, posteriors."""
import warnings

import numpy as np
import pytest
import torch

from kwslib.deploy import ckernels
from kwslib.deploy import detection
from kwslib.deploy.engine import (Detector, Engine, compare_logits, eval_windows, float_forward, float_layers,
                                  random_int_model, softmax)
from kwslib.model import sliding_windows
from kwslib.quant.intspec import dense_int, quantize_input

SMALL = dict(dims=(64, 24, 12), n_mels=16, context_frames=16, decimate=4)


def windows(rng, m, n):
    return rng.normal(0, 2, (n, m.context_frames, m.n_mels)).astype(np.float32) + m.norm_mean


def test_numpy_backend_is_the_spec(rng):
    m = random_int_model((8, 4, 1, 5), seed=1)
    e = Engine(m, backend="numpy")
    assert e.backend == "numpy" and e.describe() == "numpy"
    x = rng.integers(-128, 128, (10, 960)).astype(np.int8)
    assert np.array_equal(e.forward_q(x), m.forward_int(x))
    w = windows(rng, m, 7)
    assert np.array_equal(e.logits_q(w), m.forward_int(m.quantize_input(w)))


def test_c_backend_equals_numpy(rng):
    ok, why = ckernels.availability()
    if not ok:
        pytest.skip(why)
    m = random_int_model(4, seed=2)
    w = windows(rng, m, 33)
    a, b = Engine(m, backend="numpy"), Engine(m, backend="c")
    assert b.backend == "c" and "layer kernels s4" in b.describe()
    assert np.array_equal(a.logits_q(w), b.logits_q(w))
    assert np.array_equal(a(w), b(w))


def test_posteriors_equal_stage2_integer_mode(rng):
    from kwslib.quant.stage2_int import int_posterior_fn

    m = random_int_model(8, seed=3)
    w = windows(rng, m, 50)
    p = Engine(m, backend="auto")(w)
    assert p.dtype == np.float32 and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.array_equal(p, int_posterior_fn(m)(w))  # bit-identical: same logits, same softmax


def test_softmax_empty_and_shape():
    assert softmax(np.zeros((0, 12), np.float32)).shape == (0, 12)
    assert np.allclose(softmax(np.array([[0.0, 0.0]], np.float32)), 0.5)


def test_streaming_equals_sliding_windows(rng):
    m = random_int_model(8, seed=4, **SMALL)
    e = Engine(m, backend="auto")
    feats = rng.normal(0, 2, (83, m.n_mels)).astype(np.float32)
    ref = e(sliding_windows(feats, m.context_frames, m.step_frames))
    r = e.runner()
    out, i = [], 0
    while i < len(feats):
        k = int(rng.integers(1, 9))
        p = r.push(feats[i:i + k])
        if p.size:
            out.append(p)
        i += k
    assert np.array_equal(np.concatenate(out), ref)


def test_usable_by_evaluate_posteriors(rng):
    from kwslib.evaluation.evaluate import _posteriors

    m = random_int_model(8, seed=5, **SMALL)
    e = Engine(m, backend="auto")
    w = torch.from_numpy(windows(rng, m, 9))
    assert np.array_equal(_posteriors(e, w), e(w.numpy()))


def test_float_layers_approximate_the_integer_model(rng):
    m = random_int_model(8, seed=6)
    x = rng.normal(0, 1, (200, 960)).astype(np.float32)
    xq = quantize_input(x, m.input_scale, m.input_zero_point)
    # one layer at a time: the float layer on the dequantized input is the int layer before rounding
    layer = m.layers[0]
    w, b, relu = float_layers(m)[0]
    real_in = (xq.astype(np.float32) - layer.in_zero_point) * layer.in_scale
    y = np.maximum(real_in @ w.T + b, 0)
    yq = dense_int(xq, layer)
    deq = (yq.astype(np.float32) - layer.out_zero_point) * layer.out_scale
    inside = yq < 127  # not saturated
    assert np.abs(y - deq)[inside].max() <= 0.51 * layer.out_scale
    assert float_forward(float_layers(m), x).shape == (200, 12)


def test_no_compiler_falls_back_with_a_message(tmp_path, monkeypatch):
    ckernels.load_library.cache_clear()
    monkeypatch.setenv("KWSLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    try:
        m = random_int_model(8, seed=7, **SMALL)
        with pytest.warns(RuntimeWarning, match="C kernels unavailable"):
            e = Engine(m, backend="auto")
        assert e.backend == "numpy" and "no C compiler" in e.fallback_reason
        assert "fallback" in e.describe()
        with pytest.raises(ckernels.CKernelsUnavailable, match="no C compiler"):
            Engine(m, backend="c")
    finally:
        ckernels.load_library.cache_clear()


def test_bad_backend_name():
    with pytest.raises(ValueError, match="backend"):
        Engine(random_int_model(8, seed=0, **SMALL), backend="gpu")


def test_detector_matches_metrics(rng):
    names = ["_silence_", "_unknown_", "yes", "no"]
    post = rng.dirichlet(np.ones(4) * 0.3, size=400).astype(np.float32)
    d = Detector(names, threshold=0.55, smooth_windows=3, refractory=7)
    found = []
    for i in range(0, 400, 13):  # pushed in pieces
        found += d.push(post[i:i + 13])
    sm = detection.smooth_posteriors(post, 3)
    for j, name in ((2, "yes"), (3, "no")):
        steps = [s for s, k, _ in found if k == name]
        assert len(steps) == detection.count_detections(sm[:, j], 0.55, 7)
    scores = {(s, k): sc for s, k, sc in found}
    assert all(np.isclose(scores[(s, "yes")], sm[s, 2]) for s, k, _ in found if k == "yes")


def test_random_model_spreads_outputs(rng):
    m = random_int_model(4, seed=8)
    h = quantize_input(rng.normal(0, 1, (300, 960)), m.input_scale, m.input_zero_point)
    for L in m.layers[:-1]:
        h = dense_int(h, L)
        assert 0.3 < (h == L.lo).mean() < 0.7 and len(np.unique(h)) > 100
    with pytest.raises(ValueError):
        random_int_model((8, 8), seed=0)


def test_load_artifact_engine(tmp_path, rng):
    from kwslib.deploy import export

    m = random_int_model(5, seed=9, **SMALL)
    p = export.save_artifact(tmp_path / "m.kws", m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = Engine.load(p, backend="auto")
    w = windows(rng, m, 5)
    assert np.array_equal(e.logits_q(w), m.forward_int(m.quantize_input(w)))


def test_eval_windows_and_compare_logits(rng):
    from types import SimpleNamespace

    from kwslib.model import sliding_windows

    m = random_int_model(8, seed=10, **SMALL)
    ctx, step = m.context_frames, m.step_frames
    data = SimpleNamespace(clip_windows=torch.from_numpy(windows(rng, m, 5)),
                           padded_feats=torch.from_numpy(rng.normal(0, 2, (4, 40, m.n_mels)).astype(np.float32)),
                           negatives={n: SimpleNamespace(feats=torch.from_numpy(
                               rng.normal(0, 2, (t, m.n_mels)).astype(np.float32))) for n, t in (("a", 300), ("b", 200))},
                           context=ctx, step=step)
    parts = {}
    for part, w in eval_windows(data, batch=16):
        assert w.dtype == np.float32 and w.shape[1:] == (ctx, m.n_mels) and len(w) <= 16 + 7
        parts[part] = parts.get(part, 0) + len(w)
    assert parts == {"clips": 5, "padded": 4 * len(sliding_windows(np.zeros((40, 1)), ctx, step)),
                     "stream": sum(len(sliding_windows(np.zeros((t, 1)), ctx, step)) for t in (300, 200))}
    e = Engine(m, backend="numpy")
    off_by_one = lambda w: np.clip(e.logits_q(w).astype(np.int16) + (np.arange(len(w)) % 7 == 0)[:, None], -128, 127)
    res = compare_logits(e.logits_q, {"same": Engine(m, backend="auto").logits_q, "off": off_by_one},
                         eval_windows(data, batch=16))
    assert res["same"]["bit_exact"] and res["same"]["windows"] == sum(parts.values())
    assert not res["off"]["bit_exact"] and res["off"]["max_abs_difference"] == 1
