"""Linear fake quantizers and observers: values against float64 references, STE gradients, saved state."""
import numpy as np
import pytest
import torch

from kwslib.quant import intspec
from kwslib.quant.fakequant import (FakeQuantize, MovingAverageMinMaxObserver, affine_qparams, fake_quantize,
                                    qrange, quantize_codes, round_half_up)


def ref_qparams(mn, mx, qmin, qmax, symmetric=False):
    """float64 reference of affine_qparams (scale rounded to float32 as an artifact stores it)."""
    mn, mx = min(float(mn), 0.0), max(float(mx), 0.0)
    if symmetric:
        levels = qmax if qmin < 0 else (qmax - qmin) / 2
        scale = np.float32(max(max(-mn, mx) / levels, np.finfo(np.float32).eps))
        return scale, (0 if qmin < 0 else (qmin + qmax + 1) // 2)
    scale = np.float32(max((mx - mn) / (qmax - qmin), np.finfo(np.float32).eps))
    zp = int(np.clip(qmin - np.floor(mn / np.float64(scale) + 0.5), qmin, qmax))
    return scale, zp


def ref_fake_quant(x, scale, zp, qmin, qmax):
    q = np.clip(np.floor(x / scale + 0.5) + zp, qmin, qmax)
    return q, (q - zp) * scale


def test_qrange():
    assert qrange(8) == (-128, 127)
    assert qrange(8, signed=False) == (0, 255)
    assert qrange(4) == (-8, 7)
    assert qrange(1, signed=False) == (0, 1)
    with pytest.raises(ValueError):
        qrange(1, signed=True)
    with pytest.raises(ValueError):
        qrange(0)


@pytest.mark.parametrize("bits,signed,symmetric", [(8, True, False), (8, False, False), (4, True, False),
                                                   (8, True, True), (6, False, True), (16, True, False)])
def test_qparams_match_float64_reference(rng, bits, signed, symmetric):
    qmin, qmax = qrange(bits, signed)
    for _ in range(50):
        mn, mx = sorted(rng.normal(0, 3, 2))
        scale, zp = affine_qparams(mn, mx, qmin, qmax, symmetric)
        r_scale, r_zp = ref_qparams(mn, mx, qmin, qmax, symmetric)
        assert scale.dtype == torch.float32 and zp.dtype == torch.int32
        assert float(scale) == float(r_scale)
        assert int(zp) == r_zp


def test_relu_range_gets_zero_point_qmin():
    scale, zp = affine_qparams(0.0, 3.0, -128, 127)
    assert int(zp) == -128 and float(scale) == pytest.approx(3.0 / 255)
    # a positive-only range is widened to include 0: real 0 is a code
    scale, zp = affine_qparams(0.5, 3.0, -128, 127)
    assert int(zp) == -128
    # degenerate range: tiny positive scale, real 0 exactly representable
    scale, zp = affine_qparams(0.0, 0.0, -128, 127)
    assert float(scale) > 0
    assert float(fake_quantize(torch.zeros(3), scale, zp, -128, 127).abs().max()) == 0.0


def test_fake_quantize_matches_float64_reference(rng):
    x = rng.normal(0, 2, 5000)
    for bits, signed in [(8, True), (8, False), (3, True)]:
        qmin, qmax = qrange(bits, signed)
        scale, zp = 0.037, (qmin + qmax) // 3
        q = quantize_codes(torch.from_numpy(x), scale, zp, qmin, qmax).numpy()
        y = fake_quantize(torch.from_numpy(x), scale, zp, qmin, qmax).numpy()
        rq, ry = ref_fake_quant(x, scale, zp, qmin, qmax)
        np.testing.assert_array_equal(q, rq)
        np.testing.assert_allclose(y, ry, rtol=0, atol=1e-15)


def test_rounding_ties_go_up_and_saturate():
    s = 0.5
    x = torch.tensor([0.25, -0.25, 0.75, -0.75, 1.25, -1.25, 1000.0, -1000.0], dtype=torch.float64)
    # x / s = 0.5, -0.5, 1.5, -1.5, 2.5, -2.5: half up -> 1, 0, 2, -1, 3, -2 ; then saturation
    q = quantize_codes(x, s, 0, -128, 127)
    assert q.tolist() == [1, 0, 2, -1, 3, -2, 127, -128]
    assert round_half_up(torch.tensor([-0.5, 0.5, 2.5])).tolist() == [0.0, 1.0, 3.0]


def test_input_quantization_equals_intspec_quantize_input(rng):
    x = (rng.normal(0, 2, (64, 960))).astype(np.float32)
    scale, zp = affine_qparams(float(x.min()), float(x.max()), -128, 127)
    ours = quantize_codes(torch.from_numpy(x), scale, zp, -128, 127).numpy().astype(np.int8)
    ref = intspec.quantize_input(x, float(scale), int(zp))
    np.testing.assert_array_equal(ours, ref)


def test_ste_gradient_is_identity_inside_zero_outside():
    x = torch.tensor([-10.0, -0.3, 0.0, 0.41, 0.9, 10.0], requires_grad=True)
    y = fake_quantize(x, 0.01, 0, -128, 127)  # range [-1.28, 1.27]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_moving_average_observer_matches_reference(rng):
    obs = MovingAverageMinMaxObserver(averaging_constant=0.1)
    mn = mx = None
    for i in range(6):
        x = rng.normal(i * 0.1, 1 + i, (32, 7))
        obs(torch.from_numpy(x.astype(np.float32)))
        bmn, bmx = float(np.float32(x).min()), float(np.float32(x).max())
        mn, mx = (bmn, bmx) if mn is None else (mn + 0.1 * (bmn - mn), mx + 0.1 * (bmx - mx))
    assert float(obs.min_val) == pytest.approx(mn, rel=1e-6)
    assert float(obs.max_val) == pytest.approx(mx, rel=1e-6)


def test_per_channel_observer_and_quantizer(rng):
    x = rng.normal(0, 1, (5, 4, 3)) * np.array([1, 10, 0.1])  # channel axis 2 (last)
    fq = FakeQuantize(bits=8, signed=True, per_channel=True, ch_axis=2, channels=3, averaging_constant=1.0)
    fq.train()
    y = fq(torch.from_numpy(x))
    for c in range(3):
        r_scale, r_zp = ref_qparams(x[..., c].min(), x[..., c].max(), -128, 127)
        assert float(fq.scale[c]) == float(r_scale) and int(fq.zero_point[c]) == r_zp
        _, ry = ref_fake_quant(x[..., c], np.float64(r_scale), r_zp, -128, 127)
        np.testing.assert_allclose(y[..., c].detach().numpy(), ry, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        MovingAverageMinMaxObserver(per_channel=True)


def test_observer_updates_only_in_training_and_when_enabled():
    fq = FakeQuantize()
    fq.eval()
    fq(torch.tensor([5.0, -5.0]))
    assert not fq.initialized
    fq.train()
    fq(torch.tensor([1.0, -1.0]))
    s1 = float(fq.scale)
    fq.disable_observer()
    fq(torch.tensor([100.0, -100.0]))
    assert float(fq.scale) == s1
    fq.disable_fake_quant()
    x = torch.tensor([0.123456])
    assert torch.equal(fq(x), x)


def test_state_dict_round_trip(rng):
    fq = FakeQuantize(bits=6, signed=False, averaging_constant=0.3)
    fq.train()
    for _ in range(3):
        fq(torch.from_numpy(rng.normal(1, 2, 100).astype(np.float32)))
    fq.disable_observer()
    other = FakeQuantize(bits=6, signed=False, averaging_constant=0.3)
    other.load_state_dict(fq.state_dict())
    for key, v in fq.state_dict().items():
        assert torch.equal(v, other.state_dict()[key]), key
    assert not bool(other.observer_enabled)
    x = torch.from_numpy(rng.normal(1, 2, 100).astype(np.float32))
    fq.eval(), other.eval()
    assert torch.equal(fq(x), other(x))


def test_learned_range_gets_lsq_gradient():
    fq = FakeQuantize(bits=4, signed=True, learn_range=True, averaging_constant=1.0)
    fq.train()
    fq(torch.tensor([-1.0, 1.0]))  # initialises the scale from this range
    assert isinstance(fq.scale, torch.nn.Parameter) and fq.initialized
    s, z = float(fq.scale.detach()), int(fq.zero_point)
    x = torch.tensor([0.3, -0.7, 5.0, -5.0], dtype=torch.float32)
    y = fq(x)
    y.sum().backward()
    # LSQ: d y / d s = round(x/s) - x/s inside the grid, (q_clamp - z) outside
    xs = x.numpy() / np.float32(s)
    q = np.floor(xs + 0.5) + z
    inside = (q >= -8) & (q <= 7)
    expect = np.where(inside, np.floor(xs + 0.5) - xs, np.clip(q, -8, 7) - z).sum()
    assert float(fq.scale.grad) == pytest.approx(float(expect), rel=1e-5)
    # the observer does not move a learned range after initialisation
    fq(torch.tensor([-50.0, 50.0]))
    assert float(fq.scale.detach()) == s
