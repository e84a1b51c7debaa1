"""Stage 2: requantization corner cases, batchnorm folding, fake-quant == integer mode == IntModel.forward_int,
training step, checkpoint and integer-model files."""
from fractions import Fraction

import numpy as np
import pytest
import torch

from kwslib.data.base import CLASS_INDEX, ClipSet, Corpus
from kwslib.errors import ArtifactError
from kwslib.frontend.features import FeatureConfig
from kwslib.model import KWSNet, ModelConfig
from kwslib.quant import intspec
from kwslib.quant import stage2 as s2m
from kwslib.quant import stage2_int
from kwslib.quant.qat import quantize_model
from kwslib.quant.weights import WeightQuantConfig

SMALL = ModelConfig(context_frames=16, decimate=4, hidden=[24, 20], dropout=0.0)
WIDTHS = [8, 5, 4, 1]


def ref_requantize(acc, mult, shift, zp, lo, hi):
    """Exact rational reference: clamp(floor(acc * mult / 2^(31 + shift) + 1/2) + zp, lo, hi)."""
    v = Fraction(int(acc) * int(mult), 2 ** (31 + int(shift))) + Fraction(1, 2)
    return min(max(v.__floor__() + zp, lo), hi)


def float_model(seed=0, cfg=SMALL):
    torch.manual_seed(seed)
    m = KWSNet(cfg)
    g = torch.Generator().manual_seed(seed)
    m.set_normalization(torch.rand(cfg.n_mels, generator=g) * 4 - 2, torch.rand(cfg.n_mels, generator=g) + 0.5)
    with torch.no_grad():
        for b in m.blocks:  # non-trivial batchnorm statistics and affine parameters
            c = b.bn.num_features
            b.bn.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            b.bn.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
            b.bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
            b.bn.bias.copy_(torch.randn(c, generator=g) * 0.2)
    m.eval()
    return m


def windows(n, seed=1, cfg=SMALL, mean=None):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, cfg.context_frames, cfg.n_mels, generator=g) * 1.5
    return w + (0 if mean is None else mean)


def stage2_net(bits, s2=None, seed=0):
    q = quantize_model(float_model(seed), WeightQuantConfig(bits=bits))
    q.eval()
    net = s2m.fold_stage1(q, s2 or s2m.Stage2Config())
    s2m.calibrate(net, windows(256, seed=7, mean=q.norm_mean), batch_size=64)
    return q, net


# ---------------------------------------------------------------------------
# requantize (intspec) corner cases

def test_requantize_ties_round_half_up():
    half = 2 ** 30  # mult 2^30, shift 0: M = 0.5 exactly
    acc = np.array([1, -1, 3, -3, 5, -5, 0])
    out = intspec.requantize(acc, np.array([half]), np.array([0]), 0)
    assert out.tolist() == [1, 0, 2, -1, 3, -2, 0]  # x.5 -> towards +infinity
    for a in acc:
        assert ref_requantize(a, half, 0, 0, -128, 127) == intspec.requantize(np.array([a]), half, 0, 0)[0]


def test_requantize_negative_values_and_saturation_both_ends():
    m, s = intspec.quantize_multiplier(0.37)
    acc = np.array([-10 ** 9, -400, -1, 0, 1, 400, 10 ** 9])
    out = intspec.requantize(acc, m, s, zero_point=-3)
    ref = [ref_requantize(a, m[0], s[0], -3, -128, 127) for a in acc]
    assert out.tolist() == ref
    assert out[0] == -128 and out[-1] == 127
    relu = intspec.requantize(acc, m, s, zero_point=-128, lo=-128)
    assert relu[:3].tolist() == [-128] * 3  # ReLU is the lower clamp at the zero point


def test_requantize_matches_rational_reference_fuzz(rng):
    acc = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 3000), [-2 ** 31, 2 ** 31 - 1, 0, 1, -1]])
    mult = rng.choice([-1, 1], len(acc)) * rng.integers(2 ** 30, 2 ** 31, len(acc))
    shift = rng.integers(intspec.SHIFT_MIN, intspec.SHIFT_MAX + 1, len(acc))
    zp = -17
    got = intspec.requantize(acc[:, None], mult[:, None], shift[:, None], zp)[:, 0]
    ref = [ref_requantize(a, m, s, zp, -128, 127) for a, m, s in zip(acc, mult, shift)]
    assert got.tolist() == ref
    # the same with shifts that keep results inside int8 (no saturation hides errors)
    shift2 = np.clip(np.ceil(np.log2(np.abs(acc.astype(np.float64)) + 1)).astype(int) - 6, -30, 32)
    got2 = intspec.requantize(acc[:, None], mult[:, None], shift2[:, None], 0, lo=-10 ** 6, hi=10 ** 6)[:, 0]
    ref2 = [ref_requantize(a, m, s, 0, -10 ** 6, 10 ** 6) for a, m, s in zip(acc, mult, shift2)]
    assert got2.tolist() == ref2


def test_quantize_multiplier_precision(rng):
    real = np.concatenate([rng.uniform(1e-6, 100, 500), -rng.uniform(1e-6, 100, 50), [1.0, 0.5, 2 ** -20]])
    mult, shift = intspec.quantize_multiplier(real)
    approx = mult.astype(np.float64) * 2.0 ** (-(31 + shift.astype(np.float64)))
    assert np.all(np.abs(approx - real) <= np.abs(real) * 2.0 ** -30)
    m = np.abs(mult.astype(np.int64))
    assert np.all((m >= 2 ** 30) & (m < 2 ** 31))
    assert intspec.quantize_multiplier(0.0)[0][0] == 0


@pytest.mark.parametrize("bits", range(1, 9))
def test_largest_accumulator_for_each_weight_width(bits):
    qmax = intspec.weight_qmax(bits)
    n_in = 960
    w = np.full((2, n_in), qmax, np.int8)
    room = intspec.ACC_MAX - 128 * qmax * n_in
    bias = np.array([-room, room], np.int32)
    m, s = intspec.quantize_multiplier([2.0 ** -24, 2.0 ** -24])
    layer = intspec.IntLayer(w, bits, bias, m, s, 0.1, 0, 0.1, 0, relu=False)
    assert intspec.max_abs_accumulator(layer) == intspec.ACC_MAX
    x = np.stack([np.full(n_in, -128), np.full(n_in, 127)]).astype(np.int8)
    acc = x.astype(np.int64) @ w.T.astype(np.int64) + bias
    assert acc[0, 0] == -intspec.ACC_MAX  # the extreme, reached exactly
    out = intspec.dense_int(x, layer)
    ref = [[ref_requantize(a, m[j], s[j], 0, -128, 127) for j, a in enumerate(row)] for row in acc]
    assert out.tolist() == ref
    im = intspec.IntModel([layer], 0.1, 0, np.zeros(40, np.float32), np.ones(40, np.float32), 96, 4, 40, 4, ["a", "b"])
    np.testing.assert_array_equal(stage2_int.forward_int_fast(im, x), out)


# ---------------------------------------------------------------------------
# folding, integer parity

@pytest.mark.parametrize("bits", WIDTHS)
def test_bn_folding_keeps_stage1_outputs(bits):
    q = quantize_model(float_model(), WeightQuantConfig(bits=bits))
    q.eval()
    net = s2m.fold_stage1(q)
    net.quant_enabled = False
    w = windows(64, mean=q.norm_mean)
    with torch.no_grad():
        ref, got = q(w), net(w)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    # the codes are the stage-1 codes, the factor on them is gamma * alpha / (code_max * sigma)
    for layer, block in zip(net.layers, q.blocks):
        assert torch.equal(layer.codes().to(torch.int8), block.linear.int_codes())


@pytest.mark.parametrize("bits", WIDTHS)
def test_integer_mode_equals_fake_quant_and_forward_int(bits):
    q, net = stage2_net(bits)
    im = stage2_int.to_int_model(net, FeatureConfig())
    w = windows(300, seed=3, mean=q.norm_mean)
    fake = net.int8_outputs(w)
    integer = net.int_forward(w)
    reference = im.forward_int(im.quantize_input(w.numpy()))
    np.testing.assert_array_equal(integer, reference)  # exact, element by element
    np.testing.assert_array_equal(fake, integer)
    assert (fake.argmax(1) == integer.argmax(1)).all()
    report = stage2_int.compare_modes(net, im, w)
    assert report["logit_differences"] == report["reference_differences"] == report["input_code_differences"] == 0
    # hidden layers: ReLU outputs with zero point -128; every accumulator fits int32
    assert [layer.out_zero_point for layer in im.layers[:-1]] == [-128] * (len(im.layers) - 1)
    s2m.validate_int_model(im)


def test_training_forward_equals_eval_forward_and_gradients_reach_parameters():
    q, net = stage2_net(4)
    net.set_observers(False)
    w = windows(32, seed=5, mean=q.norm_mean)
    net.eval()
    with torch.no_grad():
        ev = net(w)
    net.train()
    tr = net(w)
    assert torch.equal(tr.detach(), ev)  # the simulated integers, not an approximation of them
    torch.nn.functional.cross_entropy(tr, torch.arange(32) % 12).backward()
    for layer in net.layers:
        for p in (layer.gain, layer.bias, layer.weight):
            assert p.grad is not None and float(p.grad.abs().sum()) > 0
    # latent weights frozen on request
    _, frozen = stage2_net(4, s2m.Stage2Config(train_weights=False))
    frozen.train()
    frozen(w).sum().backward()
    assert frozen.layers[0].weight.grad is None and frozen.layers[0].gain.grad is not None


def test_observers_move_only_while_training():
    q, net = stage2_net(8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    with torch.no_grad():
        net(windows(64, seed=9, mean=q.norm_mean) * 3)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    net.train()
    net.set_observers(True)
    with torch.no_grad():
        net(windows(64, seed=9, mean=q.norm_mean) * 3)
    assert not torch.equal(net.input_fq.observer.max_val, before["input_fq.observer.max_val"])


def test_reduced_gain_bits_still_exact():
    q, net = stage2_net(5, s2m.Stage2Config(gain_bits=8))
    im = stage2_int.to_int_model(net)
    for layer in im.layers:
        assert np.all(layer.mult.astype(np.int64) % 2 ** 23 == 0)  # 8 significant bits
    w = windows(100, seed=4, mean=q.norm_mean)
    np.testing.assert_array_equal(net.int8_outputs(w), im.forward_int(im.quantize_input(w.numpy())))


def test_bias_is_clamped_so_the_accumulator_fits_int32():
    q, net = stage2_net(8)
    with torch.no_grad():
        net.layers[0].gain[:3] = 1e-9  # bias / (gain * s_x) far beyond int32
        net.layers[0].bias[:3] = torch.tensor([50.0, -50.0, 3.0])
    im = stage2_int.to_int_model(net)
    layer = im.layers[0]
    assert intspec.max_abs_accumulator(layer) <= intspec.ACC_MAX
    w = windows(100, seed=6, mean=q.norm_mean)
    np.testing.assert_array_equal(net.int8_outputs(w), im.forward_int(im.quantize_input(w.numpy())))


def test_dorefa_is_refused():
    q = quantize_model(float_model(), WeightQuantConfig(bits=4, method="dorefa"))
    with pytest.raises(ValueError, match="DoReFa"):
        s2m.fold_stage1(q)


def test_int_posterior_fn_is_softmax_of_integer_logits():
    q, net = stage2_net(4)
    im = stage2_int.to_int_model(net)
    w = windows(20, seed=8, mean=q.norm_mean).numpy()
    post = stage2_int.int_posterior_fn(im)(w)
    logits = im.logits(stage2_int.int_forward(im, w))
    np.testing.assert_allclose(post, torch.softmax(torch.from_numpy(logits), 1).numpy(), rtol=1e-5, atol=1e-7)
    assert post.dtype == np.float32 and np.allclose(post.sum(1), 1, atol=1e-5)


# ---------------------------------------------------------------------------
# files

def test_stage2_checkpoint_round_trips_quantization_state(tmp_path):
    q, net = stage2_net(5, s2m.Stage2Config(gain_bits=12))
    net.set_observers(False)
    path = tmp_path / "stage2_w5.pt"
    s2m.save_stage2_model(path, net, extra={"note": 1})
    back = s2m.load_stage2_model(path)
    for k, v in net.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    assert not bool(back.input_fq.observer_enabled) and back.stage2_cfg.gain_bits == 12
    assert back.layers[0].weight_cfg == net.layers[0].weight_cfg
    w = windows(50, seed=2, mean=q.norm_mean)
    np.testing.assert_array_equal(back.int8_outputs(w), net.int8_outputs(w))
    a, b = stage2_int.to_int_model(net), stage2_int.to_int_model(back)
    for la, lb in zip(a.layers, b.layers):
        for f in ("w_q", "bias_q", "mult", "shift"):
            np.testing.assert_array_equal(getattr(la, f), getattr(lb, f))
    # damage
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="trunc.pt"):
        s2m.load_stage2_model(tmp_path / "trunc.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ArtifactError, match="format tag"):
        s2m.load_stage2_model(tmp_path / "other.pt")
    state = torch.load(path, weights_only=False)
    state["version"] = 99
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(ArtifactError, match="version"):
        s2m.load_stage2_model(tmp_path / "future.pt")
    state["version"] = 1
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if "observer" not in k}
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ArtifactError, match="does not match"):
        s2m.load_stage2_model(tmp_path / "partial.pt")
    with pytest.raises(ArtifactError, match="does not exist"):
        s2m.load_stage2_model(tmp_path / "missing.pt")


def test_int_model_file_round_trip_and_damage(tmp_path):
    q, net = stage2_net(4)
    im = stage2_int.to_int_model(net, FeatureConfig())
    path = tmp_path / "m.int.npz"
    s2m.save_int_model(path, im)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temp file left
    back = s2m.load_int_model(path)
    assert back.class_names == im.class_names and back.feature_config == im.feature_config
    assert back.input_scale == im.input_scale and back.input_zero_point == im.input_zero_point
    w = windows(40, seed=3, mean=q.norm_mean).numpy()
    np.testing.assert_array_equal(back.forward_int(back.quantize_input(w)), im.forward_int(im.quantize_input(w)))
    data = path.read_bytes()
    (tmp_path / "trunc.int.npz").write_bytes(data[: len(data) - 200])
    with pytest.raises(ArtifactError):
        s2m.load_int_model(tmp_path / "trunc.int.npz")
    arrays = dict(np.load(path))
    arrays["layer1_mult"] = arrays["layer1_mult"] // 4  # not normalised any more
    with open(tmp_path / "bad.int.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ArtifactError, match="normalised"):
        s2m.load_int_model(tmp_path / "bad.int.npz")
    del arrays["layer0_bias_q"]
    with open(tmp_path / "missing_key.int.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ArtifactError):
        s2m.load_int_model(tmp_path / "missing_key.int.npz")


# ---------------------------------------------------------------------------
# train_stage2 end to end on a tiny corpus

def tone_set(n, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    audio, labels = [], []
    for word, f in {"yes": 400.0, "no": 1200.0, "up": 3000.0}.items():
        for _ in range(n):
            audio.append((rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * f * t)
                          + 0.01 * rng.standard_normal(16000)).astype(np.float32))
            labels.append(CLASS_INDEX[word])
    return ClipSet(np.stack(audio), labels, [f"s{i}" for i in range(len(labels))], ["tone"] * len(labels))


def test_train_stage2_runs_checkpoints_and_resumes(tmp_path):
    from kwslib.data.augment import AugmentConfig
    from kwslib.train.loop import TrainConfig

    cfg = ModelConfig(context_frames=96, decimate=8, hidden=[16], dropout=0.0)
    fm = float_model(cfg=cfg)
    stage1 = quantize_model(fm, WeightQuantConfig(bits=4))
    stage1.eval()
    corpus = Corpus("tones", tone_set(12, 0), tone_set(3, 1), tone_set(3, 2))
    train_cfg = TrainConfig(epochs=5, batch_size=16, threads=1, augment=AugmentConfig(noise_prob=0.0))
    s2 = s2m.Stage2Config(epochs=2, lr=1e-3, calibration_batches=2)
    logs = []
    net, hist = s2m.train_stage2(stage1, corpus, FeatureConfig(), train_cfg, s2, ckpt_dir=tmp_path, log=logs.append)
    assert len(hist) == 2 and (tmp_path / "last.pt").exists() and (tmp_path / "run_key.txt").exists()
    assert not net.training and not bool(net.input_fq.observer_enabled)
    assert 0.0 <= stage2_int.changed_codes(stage1, net) < 0.5
    assert stage2_int.changed_codes(stage1, s2m.fold_stage1(stage1)) == 0.0
    im = stage2_int.to_int_model(net)
    w = windows(10, cfg=cfg, mean=fm.norm_mean)
    np.testing.assert_array_equal(net.int8_outputs(w), im.forward_int(im.quantize_input(w.numpy())))
    # a second run of the same configuration resumes from the finished checkpoint
    logs.clear()
    net2, hist2 = s2m.train_stage2(stage1, corpus, FeatureConfig(), train_cfg, s2, ckpt_dir=tmp_path, log=logs.append)
    assert any("resumed" in line for line in logs) and len(hist2) == 2
    for k, v in net.state_dict().items():
        assert torch.equal(v, net2.state_dict()[k]), k
    # epochs = 0: calibration only
    net0, hist0 = s2m.train_stage2(stage1, corpus, FeatureConfig(), train_cfg, s2m.Stage2Config(epochs=0), log=None)
    assert hist0 == [] and net0.input_fq.initialized


@pytest.mark.parametrize("bound_offset", [0, 1])
def test_fast_integer_path_is_exact_at_the_float32_boundary(rng, bound_offset):
    """Accumulator bound exactly 2^24 (float32 path) and 2^24 + 1 (float64 path): both exact."""
    n_in = 960
    w = np.full((3, n_in), 127, np.int8)
    room = stage2_int.FLOAT32_EXACT + bound_offset - 128 * 127 * n_in
    bias = np.array([-room, room, 0], np.int32)
    m, s = intspec.quantize_multiplier([2.0 ** -17, 2.0 ** -17, 2.0 ** -16])
    layer = intspec.IntLayer(w, 8, bias, m, s, 0.1, 0, 0.1, 0, relu=False)
    assert intspec.max_abs_accumulator(layer) == stage2_int.FLOAT32_EXACT + bound_offset
    x = np.concatenate([np.full((1, n_in), -128), np.full((1, n_in), 127),
                        rng.integers(-128, 128, (200, n_in))]).astype(np.int8)
    im = intspec.IntModel([layer], 0.1, 0, np.zeros(40, np.float32), np.ones(40, np.float32), 96, 4, 40, 4,
                          ["a", "b", "c"])
    np.testing.assert_array_equal(stage2_int.forward_int_fast(im, x), intspec.dense_int(x, layer))


@pytest.mark.parametrize("decimate", [1, 3, 4, 6])
def test_input_vector_and_codes_match_the_numpy_front_end(decimate):
    cfg = ModelConfig(context_frames=48, decimate=decimate, hidden=[8], dropout=0.0)
    q = quantize_model(float_model(cfg=cfg), WeightQuantConfig(bits=4))
    q.eval()
    net = s2m.fold_stage1(q)
    w = windows(400, seed=11, cfg=cfg, mean=q.norm_mean) * 3
    s2m.calibrate(net, w, batch_size=100)
    im = stage2_int.to_int_model(net)
    with torch.no_grad():
        np.testing.assert_array_equal(net.stack(w).numpy(), im.input_vector(w.numpy()))  # bit for bit
        torch.testing.assert_close(net.stack(w), q.stack(w))  # and the model's own front end, up to rounding
    report = stage2_int.compare_modes(net, im, w)
    assert report["input_code_differences"] == report["logit_differences"] == 0
