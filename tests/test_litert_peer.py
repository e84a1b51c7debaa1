"""LiteRT (TFLite + XNNPACK) as a peer: the .tflite network computes our integers up to requantization rounding."""
import copy

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from kwslib.deploy.engine import random_int_model  # noqa: E402
from kwslib.study.peers import litert  # noqa: E402
from kwslib.study.peers.litert import LiteRTModelError, LiteRTNet, agreement, pack_int4, to_tflite  # noqa: E402

N_ROWS = 2000


@pytest.fixture(scope="module")
def models():
    return {8: random_int_model(8, seed=0), 4: random_int_model(4, seed=0)}


@pytest.fixture(scope="module")
def x_q():
    return np.random.default_rng(7).integers(-128, 128, (N_ROWS, 960)).astype(np.int8)


def test_available():
    ok, why = litert.available()
    assert ok and why.startswith("ai-edge-litert ")


def test_flatbuffer_reads_back(models):
    from ai_edge_litert import schema_py_generated as S

    blob = to_tflite(models[8], batch=3)
    assert blob[4:8] == b"TFL3"
    m = S.ModelT.InitFromPackedBuf(blob, 0)
    sg = m.subgraphs[0]
    assert len(sg.operators) == 4 and list(sg.tensors[sg.inputs[0]].shape) == [3, 960]
    w = sg.tensors[sg.operators[0].inputs[1]]
    assert w.type == S.TensorType.INT8 and len(w.quantization.scale) == 186 and w.quantization.quantizedDimension == 0
    assert np.array_equal(np.asarray(m.buffers[w.buffer].data, np.uint8).view(np.int8).reshape(186, 960),
                          models[8].layers[0].w_q)
    acts = [op.builtinOptions.fusedActivationFunction for op in sg.operators]
    assert acts == [S.ActivationFunctionType.RELU] * 3 + [S.ActivationFunctionType.NONE]


@pytest.mark.parametrize("bits,int4", [(8, False), (4, False), (4, True)])
def test_xnnpack_agrees_with_the_engine(models, x_q, bits, int4):
    m = models[bits]
    net = LiteRTNet(m, batch=1, int4=int4)
    assert net.path == "xnnpack", net.describe()
    assert net.ops == ["DELEGATE"] and "XNNPACK" in net.describe()
    a = agreement(m, x_q, net=net)
    # measured (2000 rows): 8 bit 100% rows identical; 4 bit (int8 or int4 containers) 99.8-99.9% rows
    # identical, max difference 1 code, argmax 100%
    assert a["argmax_equal"] >= 0.99
    assert a["values_within_1"] >= 0.999
    assert a["rows_equal"] >= 0.99
    assert a["max_abs_diff"] <= 2
    # and exactly what XNNPACK's float32 requantization of our network gives
    assert np.array_equal(net.forward_q(x_q), litert.xnnpack_reference(m, x_q, int4=int4))


@pytest.mark.parametrize("bits", [8, 4])
def test_builtin_kernels_agree_within_one_code(models, x_q, bits):
    """TFLite's own kernels (no delegate) round twice (Q31 doubling high multiply, then shift):
    measured 88% (8 bit) / 27% (4 bit) rows identical, every value within one code, argmax >= 99.7%."""
    m = models[bits]
    net = LiteRTNet(m, xnnpack=False)
    assert net.path == "builtin" and net.ops == ["FULLY_CONNECTED"] * 4
    a = agreement(m, x_q[:500], net=net)
    assert a["argmax_equal"] >= 0.99
    assert a["values_within_1"] >= 0.999
    assert a["max_abs_diff"] <= 2


def test_wrong_bias_or_scale_is_caught(models, x_q):
    """The thresholds above fail for the two likely conversion mistakes."""
    m = models[8]
    no_zp = copy.deepcopy(m)  # TFLite bias taken as bias_q (forgetting the input zero-point term)
    for layer in no_zp.layers[1:]:
        layer.bias_q = layer.bias_q - layer.in_zero_point * layer.w_q.astype(np.int64).sum(axis=1)
    a = agreement(m, x_q[:500], net=LiteRTNet(no_zp))
    assert a["values_within_1"] < 0.9 and a["rows_equal"] < 0.5
    scale = copy.deepcopy(m)  # one layer's multiplier off by 2% (a weight scale without s_y / s_x, say)
    scale.layers[2].mult = (scale.layers[2].mult.astype(np.int64) * 49 // 50).astype(np.int32)
    a = agreement(m, x_q[:500], net=LiteRTNet(scale))
    assert a["values_within_1"] < 0.999 and a["rows_equal"] < 0.9


@pytest.mark.parametrize("int4", [False, True])
def test_batch_equals_single_calls(models, x_q, int4):
    m = models[4]
    x = x_q[:64]
    net = LiteRTNet(m, batch=1, int4=int4)
    singles = np.concatenate([net.forward_q(x[i:i + 1]) for i in range(len(x))])
    assert net.batch == 1
    assert np.array_equal(net.forward_q(x), singles) and net.batch == 64
    assert np.array_equal(LiteRTNet(m, batch=64, int4=int4).forward_q(x), singles)
    assert np.array_equal(net.forward_q(x[:1]), singles[:1])
    assert net.forward_q(x[:0]).shape == (0, 12)


def test_call_and_bound(models, x_q):
    m = models[8]
    net = LiteRTNet(m)
    net.x[:] = x_q[:1]
    ref = m.forward_int(x_q[:1])
    assert np.array_equal(net.call(), ref)
    run = net.bound(x_q[1:2])
    assert np.array_equal(run(), m.forward_int(x_q[1:2])) and run().shape == (1, 12)


def test_negative_and_zero_multipliers(rng):
    m = random_int_model(8, dims=(64, 25, 11), n_mels=16, context_frames=16, decimate=4, seed=3)
    layer = m.layers[0]
    layer.mult[0], layer.w_q[0], layer.bias_q[0] = -layer.mult[0], -layer.w_q[0], -layer.bias_q[0]  # same integers
    layer.mult[1] = 0  # output always z_y
    x = rng.integers(-128, 128, (500, 64)).astype(np.int8)
    a = agreement(m, x)
    assert a["path"] == "xnnpack" and a["rows_equal"] >= 0.99 and a["max_abs_diff"] <= 1


def test_int4_packing_odd_sizes(rng):
    codes = rng.integers(-8, 8, 11 * 25).astype(np.int8)
    packed = pack_int4(codes)
    assert len(packed) == 138
    lo, hi = (packed & 0xF).astype(np.int8), (packed >> 4).astype(np.int8)
    unpacked = np.stack([lo, hi], axis=1).reshape(-1)[:len(codes)]
    assert np.array_equal(np.where(unpacked > 7, unpacked - 16, unpacked), codes)
    m = random_int_model(4, dims=(64, 25, 11), n_mels=16, context_frames=16, decimate=4, seed=4)  # 25 x 11: odd
    x = rng.integers(-128, 128, (300, 64)).astype(np.int8)
    # packing checked on TFLite's builtin kernels: int4 weights give exactly the int8-container outputs
    i4, i8 = LiteRTNet(m, int4=True, xnnpack=False), LiteRTNet(m, int4=False, xnnpack=False)
    assert np.array_equal(i4.forward_q(x), i8.forward_q(x))
    # XNNPACK takes int4 FC layers only with an even input width: the 25-input layer stays on TFLite's kernel
    net = LiteRTNet(m, int4=True)
    assert net.path == "partial" and net.ops == ["DELEGATE", "FULLY_CONNECTED"], net.ops
    a = agreement(m, x, net=net)
    assert a["argmax_equal"] >= 0.99 and a["max_abs_diff"] <= 1
    with pytest.raises(LiteRTModelError, match="outside"):
        pack_int4(np.array([8], np.int8))


def test_bad_models_raise_clear_errors(models):
    m = models[8]
    with pytest.raises(LiteRTModelError, match="int4"):
        to_tflite(m, int4=True)
    bad = copy.deepcopy(m)
    bad.layers[2].in_scale *= 1.5
    with pytest.raises(LiteRTModelError, match="layer 2: input quantization"):
        LiteRTNet(bad)
    bad = copy.deepcopy(m)
    bad.layers[1].w_q = bad.layers[1].w_q[:, :100]
    with pytest.raises(LiteRTModelError, match="layer 1: takes 100 inputs, the previous layer gives 186"):
        to_tflite(bad)
    bad = copy.deepcopy(m)
    bad.layers = []
    with pytest.raises(LiteRTModelError, match="no layers"):
        to_tflite(bad)
    bad = copy.deepcopy(m)
    bad.layers[0].bias_q[:] = 2 ** 31 - 1
    bad.layers[0].in_zero_point = bad.input_zero_point = 5
    with pytest.raises(LiteRTModelError, match="outside int32"):
        to_tflite(bad)
    with pytest.raises(LiteRTModelError, match="expected an IntModel"):
        to_tflite("model.tflite")
    with pytest.raises(LiteRTModelError, match="batch"):
        to_tflite(m, batch=0)
    with pytest.raises(LiteRTModelError, match="int8"):
        LiteRTNet(m).forward_q(np.zeros((1, 960), np.float32))


def test_unavailable_reason(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_litert(name, *a, **kw):
        if name.startswith("ai_edge_litert"):
            raise ImportError("No module named 'ai_edge_litert'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    assert litert.available() == (False, "ai-edge-litert not installed: pip install -e '.[peers]'")
    with pytest.raises(ImportError, match="pip install"):
        to_tflite(random_int_model(8, dims=(64, 12), n_mels=16, context_frames=16, decimate=4))
