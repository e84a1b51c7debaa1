"""The C kernels (every x86 variant this CPU runs) are bit-exact with the numpy spec.

Random models and adversarial ones: all-max / all-min activations, all-max weights,
saturation at both ends, accumulators at the int32 limit, multipliers of 0 and the
extreme shifts, odd dimensions (padding), inputs on rounding boundaries.
"""
import numpy as np
import pytest

from kwslib.deploy import ckernels
from kwslib.deploy.engine import float_forward, float_layers, random_int_model
from kwslib.quant.intspec import (ACC_MAX, IntLayer, IntModel, max_abs_accumulator, quantize_input,
                                  quantize_multiplier, weight_qmax)


@pytest.fixture(scope="session")
def libs():
    """Build (once per session, cached on disk) and load every variant this CPU supports."""
    try:
        return {v: ckernels.load_library(v) for v in ckernels.supported_variants()}
    except ckernels.CKernelsUnavailable as exc:
        pytest.skip(f"C kernels unavailable here: {exc}")


def check(model, x_q, libs, kernels=("auto", "s8")):
    ref = model.forward_int(x_q)
    for v, lib in libs.items():
        for k in kernels:
            net = ckernels.CNet(model, lib, kernel=k)
            out = net.forward_q(x_q)
            bad = np.argwhere(out != ref)
            assert not len(bad), f"{v}/{k} ({net.kernels}): {len(bad)} mismatches, first {bad[0]}: " \
                                 f"{out[tuple(bad[0])]} vs {ref[tuple(bad[0])]}"
    return ref


def model_of(layers, in_scale=0.05, in_zp=0):
    i = layers[0].w_q.shape[1]
    return IntModel(layers=layers, input_scale=in_scale, input_zero_point=in_zp, norm_mean=np.zeros(i, np.float32),
                    norm_std=np.ones(i, np.float32), context_frames=1, decimate=1, n_mels=i, step_frames=1,
                    class_names=[str(k) for k in range(layers[-1].w_q.shape[0])])


def layer(w, bits, bias, real, relu, zin=0, zout=None):
    mult, shift = quantize_multiplier(real) if np.ndim(real) else quantize_multiplier(np.full(len(w), real))
    zout = (-128 if relu else 0) if zout is None else zout
    return IntLayer(w_q=np.asarray(w, np.int8), bits=bits, bias_q=np.asarray(bias), mult=mult, shift=shift,
                    in_scale=0.05, in_zero_point=zin, out_scale=0.05, out_zero_point=zout, relu=relu)


def test_variants_and_paths(libs):
    assert "scalar" in libs
    assert {lib.simd_path for v, lib in libs.items() if v == "scalar"} == {"scalar"}
    if ckernels.machine() == "x86_64" and "avx512_vnni" in ckernels.cpu_flags():
        assert libs["avx512vnni"].simd_path == "avx512vnni"


@pytest.mark.parametrize("bits", [8, 5, 4, 1, (8, 4, 1, 5), (4, 8, 8, 1)])
def test_random_models_bit_exact(libs, rng, bits):
    m = random_int_model(bits, seed=11)
    x = quantize_input(rng.normal(0, 1.3, (40, 960)), m.input_scale, m.input_zero_point)
    ref = check(m, x, libs)
    assert len(np.unique(ref)) > 50  # not a degenerate test


@pytest.mark.parametrize("bits", [8, 4, 1])
def test_adversarial_extremes(libs, bits):
    q = weight_qmax(bits)
    I, C = 200, 37  # odd sizes: padding on both axes
    w_pos = np.full((C, I), q, np.int8)
    w_alt = np.where((np.arange(C)[:, None] + np.arange(I)[None]) % 2, q, -q).astype(np.int8)
    zero_bias = np.zeros(C, np.int64)
    xs = np.stack([np.full(I, 127), np.full(I, -128), np.where(np.arange(I) % 2, 127, -128),
                   np.zeros(I)]).astype(np.int8)
    seen = set()
    for w in (w_pos, -w_pos, w_alt):
        bound = int(np.abs(w.astype(np.int64)).sum(1).max()) * 128
        for real in (1e-6, 1e-3, 0.5, 7.0):  # from tiny to saturating both ends
            for relu in (True, False):
                L = layer(w, bits, zero_bias, real, relu)
                seen |= set(check(model_of([L]), xs, libs).ravel().tolist())
        # accumulators right at the int32 limit: bias fills the headroom
        for sign in (1, -1):
            bias = np.full(C, sign * (ACC_MAX - bound))
            L = layer(w, bits, bias, 1e-9, False, zout=3)
            assert max_abs_accumulator(L) <= ACC_MAX
            check(model_of([L]), xs, libs)
    assert {127, -128} <= seen and len(seen) > 3  # both saturation ends were exercised


def test_multiplier_zero_and_extreme_shifts(libs, rng):
    I, C = 64, 33
    w = rng.integers(-127, 128, (C, I)).astype(np.int8)
    x = rng.integers(-128, 128, (16, I)).astype(np.int8)
    mult = np.full(C, 2 ** 30, np.int32)
    mult[::3] = 0
    mult[1::3] = -(2 ** 31 - 1)
    shift = np.resize(np.array([-30, 32, 0, 5, -7, 31], np.int32), C)
    for zout, relu in ((-128, True), (17, False), (-5, True)):
        L = IntLayer(w_q=w, bits=8, bias_q=rng.integers(-10 ** 6, 10 ** 6, C), mult=mult, shift=shift,
                     in_scale=0.1, in_zero_point=0, out_scale=0.1, out_zero_point=zout, relu=relu)
        check(model_of([L]), x, libs)


def test_rounding_ties_in_requantize(libs):
    # acc * mult / 2^n exactly on .5: round half up (towards +inf) for both signs
    I, C = 64, 32
    w = np.zeros((C, I), np.int8)
    w[:, 0] = 1
    bias = np.arange(C) - 16  # acc = x0 + bias
    L = layer(w, 8, bias, 0.5, False)  # mult = 2^30, shift = 0: acc / 2
    x = np.zeros((3, I), np.int8)
    x[:, 0] = [1, 0, -1]
    ref = check(model_of([L]), x, libs)
    assert ref[0, 16] == 1 and ref[2, 16] == 0  # 0.5 -> 1, -0.5 -> 0


def test_input_quantization_bit_exact(libs, rng):
    m = random_int_model(8, seed=5, dims=(64, 32, 12), n_mels=16, context_frames=16, decimate=4)
    s = np.float32(m.input_scale)
    ties = (np.arange(-200, 200)[:, None] + np.float32(0.5)) * s  # on the rounding boundary
    vals = np.concatenate([ties.ravel(), np.nextafter(ties.ravel(), np.inf), np.nextafter(ties.ravel(), -np.inf),
                           [np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0], rng.normal(0, 3, 1000)]).astype(np.float32)
    vals = np.resize(vals, (len(vals) // 64 + 1) * 64).reshape(-1, 64)
    ref = m.forward_int(quantize_input(vals, m.input_scale, m.input_zero_point))
    for v, lib in libs.items():
        assert np.array_equal(ckernels.CNet(m, lib).forward_f32(vals), ref), v


def test_batch_shapes(libs, rng):
    m = random_int_model(4, seed=2)
    for n in (0, 1, 3, 17):
        x = rng.integers(-128, 128, (n, 960)).astype(np.int8)
        for lib in libs.values():
            out = ckernels.CNet(m, lib).forward_q(x)
            assert out.shape == (n, 12) and np.array_equal(out, m.forward_int(x))


def test_s8_tiles_and_pair_sums_at_the_int16_limit(libs, rng):
    """The s8 kernel on every batch tile size (1..4 inputs per weight pass, and a remainder) and row
    counts that take each block grouping of the AVX2 path; inputs and weights at the extremes, so the
    AVX2 vpmaddubsw pair sums reach +-2 * 128 * 127 (x = -128 against w = -127 and 127)."""
    for I, C in ((960, 200), (128, 37), (64, 12)):
        w = rng.choice(np.array([-127, 127, -126, 1, 0], np.int8), (C, I), p=[0.35, 0.35, 0.1, 0.1, 0.1])
        w[0], w[1] = -127, 127
        bias = rng.integers(-1000, 1000, C)
        x = rng.choice(np.array([-128, 127, -127, 0, 5], np.int8), (9, I), p=[0.4, 0.3, 0.1, 0.1, 0.1])
        x[0], x[1] = -128, 127
        for relu in (True, False):
            L = layer(w, 8, bias, 40.0 / (128 * 127 * np.sqrt(I)), relu)
            assert max_abs_accumulator(L) <= ACC_MAX
            for n in (1, 2, 3, 4, 5, 9):
                ref = check(model_of([L]), x[:n], libs, kernels=("s8",))
            assert len(np.unique(ref)) > 20  # not a degenerate test (outputs not all clamped)


def test_float_kernel_matches_numpy(libs, rng):
    m = random_int_model(8, seed=4)
    fl = float_layers(m)
    x = rng.normal(0, 1, (8, 960)).astype(np.float32)
    ref = float_forward(fl, x)
    for lib in libs.values():
        out = ckernels.CFloatNet(fl, lib).forward(x)
        assert np.allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_bound_call_and_c_timer(libs, rng):
    m = random_int_model(8, seed=1)
    x = rng.normal(0, 1, (2, 960)).astype(np.float32)
    net = ckernels.CNet(m, libs[ckernels.best_variant()])
    run = net.bound(x)
    assert np.array_equal(run(), net.forward_f32(x))
    assert net.time_in_c(x, 3) > 0


def test_accumulator_bound_beyond_int32_is_refused(libs):
    w = np.full((4, 64), 127, np.int8)
    L = layer(w, 8, np.full(4, ACC_MAX - 100), 1e-9, False)
    assert max_abs_accumulator(L) > ACC_MAX
    with pytest.raises(ckernels.CKernelsUnavailable, match="int32"):
        ckernels.CNet(model_of([L]), libs["scalar"])


def test_build_is_cached(libs):
    p1 = ckernels.build_library("scalar")
    p2 = ckernels.build_library("scalar")
    assert p1 == p2 and p1.exists()


def test_no_compiler_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("KWSLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(ckernels.CKernelsUnavailable, match="no C compiler"):
        ckernels.build_library("scalar")
    monkeypatch.setenv("CC", "false")  # a "compiler" that fails
    with pytest.raises(ckernels.CKernelsUnavailable, match="failed"):
        ckernels.build_library("scalar")
