"""Stage-1 weight quantizers against independent float64 numpy computations."""
import numpy as np
import pytest
import torch

from kwslib.quant.weights import WeightQuantConfig, code_max, fake_quant_weight, normalized, weight_codes

WIDTHS = [8, 5, 4, 3, 2, 1]


def np_codes(w, bits, method, per_channel):
    """Reference codes in float64 numpy, written from the formulas (docs/DESIGN.md section 5)."""
    w = np.asarray(w, np.float64)
    t = w if method == "linear" else np.tanh(w)
    m = np.abs(t).max(axis=1, keepdims=True) if per_channel else np.abs(t).max()
    wt = t / m
    if method == "dorefa":
        n = 2 ** bits - 1
        x = np.tanh(w) / (2 * m) + 0.5
        return 2 * np.round(x * n) - n
    if bits == 1:
        return np.where(w >= 0, 1.0, -1.0)
    return np.round(wt * (2 ** (bits - 1) - 1))


@pytest.fixture
def w():
    g = torch.Generator().manual_seed(0)
    # mixed scales per row, some large weights so tanh is far from linear
    return torch.randn(12, 50, generator=g, dtype=torch.float64) * torch.linspace(0.05, 2.0, 12, dtype=torch.float64)[:, None]


@pytest.mark.parametrize("method", ["tanh", "linear", "dorefa"])
@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("per_channel", [True, False])
def test_codes_match_numpy(w, method, bits, per_channel):
    cfg = WeightQuantConfig(bits, method, per_channel)
    got = weight_codes(w, cfg).numpy()
    want = np_codes(w.numpy(), bits, method, per_channel)
    np.testing.assert_array_equal(got, want)
    # forward value of the fake quantizer = codes / code_max
    np.testing.assert_allclose(fake_quant_weight(w, cfg).detach().numpy(), want / code_max(cfg), rtol=0, atol=1e-15)


@pytest.mark.parametrize("bits", WIDTHS)
def test_code_ranges(w, bits):
    qmax = 1 if bits == 1 else 2 ** (bits - 1) - 1
    for method in ("tanh", "linear"):
        c = weight_codes(w, WeightQuantConfig(bits, method))
        assert c.abs().max() == qmax  # the largest weight of each row reaches the end of the grid
        assert torch.equal(c, c.round())
        if bits == 1:
            assert set(c.unique().tolist()) == {-1.0, 1.0}
        else:
            assert set(c.unique().tolist()) <= set(range(-qmax, qmax + 1))
            assert 0.0 in c.unique().tolist()  # symmetric grid with zero
    d = weight_codes(w, WeightQuantConfig(bits, "dorefa"))
    n = 2 ** bits - 1
    assert d.abs().max() == n and code_max(WeightQuantConfig(bits, "dorefa")) == n
    assert torch.all(d.remainder(2) == 1)  # odd integers: no zero on DoReFa's grid


def test_sign_of_zero_is_plus_one():
    w = torch.tensor([[0.0, -0.3, 0.2], [0.0, 0.0, 0.0]])
    for method in ("tanh", "linear"):
        c = weight_codes(w, WeightQuantConfig(1, method))
        assert c.tolist() == [[1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]
        assert torch.isfinite(fake_quant_weight(w.requires_grad_(), WeightQuantConfig(4, method))).all()


def expected_ste_grad(w, g, method, per_channel):
    """d/dw of sum(g * w_t), w_t = f(w) / max|f(w)| (rounding replaced by identity), by hand in float64."""
    w = np.asarray(w, np.float64)
    f = w if method == "linear" else np.tanh(w)
    df = np.ones_like(w) if method == "linear" else 1 - np.tanh(w) ** 2
    if per_channel:
        j = np.abs(f).argmax(axis=1)
        rows = np.arange(len(w))
        m = np.abs(f[rows, j])[:, None]
        grad = g * df / m
        s = (g * f).sum(axis=1)  # sum_i g_i f_i per row
        grad[rows, j] -= np.sign(f[rows, j]) * df[rows, j] * s / m[:, 0] ** 2
    else:
        flat = np.abs(f).argmax()
        r, c = np.unravel_index(flat, w.shape)
        m = np.abs(f[r, c])
        grad = g * df / m
        grad[r, c] -= np.sign(f[r, c]) * df[r, c] * (g * f).sum() / m ** 2
    return grad


@pytest.mark.parametrize("method", ["tanh", "linear", "dorefa"])
@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("per_channel", [True, False])
def test_ste_gradient(w, method, bits, per_channel):
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    wr = w.clone().requires_grad_()
    (fake_quant_weight(wr, WeightQuantConfig(bits, method, per_channel)) * g).sum().backward()
    got = wr.grad.numpy()
    assert np.all(np.isfinite(got))
    # DoReFa: 2 * x - 1 = w_t, so its pass-through gradient is the tanh one
    want = expected_ste_grad(w.numpy(), g.numpy(), "linear" if method == "linear" else "tanh", per_channel)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_normalized_is_differentiable_and_bounded(w):
    for method in ("tanh", "linear"):
        wt = normalized(w, WeightQuantConfig(4, method))
        assert wt.abs().max() <= 1 + 1e-12
        np.testing.assert_allclose(wt.abs().amax(1).numpy(), 1.0)


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("per_channel", [True, False])
def test_idempotence(w, bits, per_channel):
    """Quantizing already-quantized weights changes nothing.

    Linear: on the weights themselves. tanh/DoReFa apply tanh again to whatever
    they get, so their grid is idempotent in the transformed domain: the codes
    of w_t's quantized values, re-quantized on the same grid, are the same.
    """
    lin = WeightQuantConfig(bits, "linear", per_channel)
    once = fake_quant_weight(w, lin).detach()
    assert torch.equal(fake_quant_weight(once, lin).detach(), once)
    assert torch.equal(weight_codes(once, lin), weight_codes(w, lin))
    # tanh: quantized values q / qmax (max 1 per row) quantized linearly -> the same codes
    tq = WeightQuantConfig(bits, "tanh", per_channel)
    codes = weight_codes(w, tq)
    assert torch.equal(weight_codes(codes / code_max(tq), lin), codes)
    # scaling a row does not change linear codes; tanh codes of a 1-bit layer are the signs again
    assert torch.equal(weight_codes(3.0 * w, lin), weight_codes(w, lin))
    if bits == 1:
        assert torch.equal(weight_codes(codes, tq), codes)


def test_per_channel_vs_per_tensor():
    # row 0 has large weights, row 1 tiny ones: per tensor rounds row 1 to zero, per channel keeps its shape
    w = torch.tensor([[2.0, -1.0, 0.5, 0.1], [0.02, -0.01, 0.005, 0.001]])
    for method in ("tanh", "linear"):
        pc = weight_codes(w, WeightQuantConfig(4, method, per_channel=True))
        pt = weight_codes(w, WeightQuantConfig(4, method, per_channel=False))
        assert pc.abs().amax(1).tolist() == [7.0, 7.0]  # every row uses the full grid
        assert pt[1].abs().max() == 0  # per tensor: the small row vanishes
        assert torch.equal(pc[0], pt[0])  # the row holding the global max is quantized identically
    # scaling one row changes per-tensor codes of the other rows, never per-channel ones
    w2 = w.clone()
    w2[0] *= 0.1
    assert torch.equal(weight_codes(w2, WeightQuantConfig(4, "linear"))[1], weight_codes(w, WeightQuantConfig(4, "linear"))[1])
    assert not torch.equal(weight_codes(w2, WeightQuantConfig(4, "linear", False))[1],
                           weight_codes(w, WeightQuantConfig(4, "linear", False))[1])


def test_tanh_spends_levels_differently_from_linear(w):
    # tanh compresses large weights: with a heavy-tailed row it puts fewer weights at 0 than max-abs rounding
    row = torch.tensor([[3.0] + [0.3] * 20 + [-0.25] * 20], dtype=torch.float64)
    lin = weight_codes(row, WeightQuantConfig(3, "linear"))
    th = weight_codes(row, WeightQuantConfig(3, "tanh"))
    assert (lin == 0).sum() > (th == 0).sum()


def test_config_validation():
    for bad in (0, 9, 2.5, True):
        with pytest.raises(ValueError):
            WeightQuantConfig(bits=bad)
    with pytest.raises(ValueError):
        WeightQuantConfig(method="log")
    with pytest.raises(ValueError):
        weight_codes(torch.zeros(3), WeightQuantConfig())


def test_stage1_figures_are_saved(tmp_path, w):
    from kwslib.study import plots

    cfg = WeightQuantConfig(3, "tanh")
    plots.weight_histograms(w, {"w_t": (normalized(w, cfg), "dense"), "codes": (weight_codes(w, cfg), "codes")},
                            fig_dir=tmp_path, name="hist")
    rows = [{"label": m, "weight_bits": b, "accuracy": 0.9 - 0.1 * (8 - b) / 7} for m in ("a", "b per tensor")
            for b in (8, 4, 1)]
    plots.metric_vs_bits(rows, "accuracy", reference=0.9, band=(0.85, 0.95), fig_dir=tmp_path)
    assert (tmp_path / "hist.png").stat().st_size > 0 and (tmp_path / "accuracy_vs_bits.png").stat().st_size > 0
    plots.plt.close("all")
