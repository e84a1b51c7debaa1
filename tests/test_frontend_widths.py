"""The front-end width study (kwslib.study.frontend_widths): the 16-bit FFT variants and the per-step counts."""
import numpy as np
import pytest

from kwslib.deploy import export, qemu
from kwslib.deploy.engine import random_int_model
from kwslib.deploy.pipeline import detector_settings, harness_config_text
from kwslib.frontend import intfrontend as itf
from kwslib.frontend.features import FeatureConfig, logmel_numpy
from kwslib.study import frontend_widths as fw
from kwslib.study.bench_pipeline import bench_audio


def test_fft_q15_impulse_and_dc_exact():
    k = 256
    re, im = np.zeros((2, k), np.int64), np.zeros((2, k), np.int64)
    re[0, 0] = 1 << 14            # an impulse: every bin 2^14, no stage grows, so no shift
    re[1, :] = 1 << 12            # DC: bin 0 = K 2^12 = 2^20, the rest 0
    yr, yi, sh = fw.fft_q15(re, im, "adaptive")
    assert sh[0] == 0 and np.all(yr[0] == 1 << 14) and np.all(yi[0] == 0)
    assert yr[1, 0] << sh[1] == 1 << 20 and sh[1] == 6 and np.all(yr[1, 1:] == 0) and np.all(yi[1] == 0)
    yr, yi, sh = fw.fft_q15(re, im, "fixed")   # 2 bits per radix-4 stage: 8 for K = 256
    assert np.all(sh == 8) and yr[1, 0] == 1 << 12 and np.all(yr[0] == 64)


@pytest.mark.parametrize("k", [128, 256])   # 128: a last radix-2 stage
@pytest.mark.parametrize("scaling", ["adaptive", "fixed"])
def test_fft_q15_matches_numpy_and_stays_int16(rng, k, scaling):
    bits = fw.INPUT_BITS[scaling]
    re = rng.integers(-(1 << bits), 1 << bits, size=(8, k)).astype(np.int64)
    im = rng.integers(-(1 << bits), 1 << bits, size=(8, k)).astype(np.int64)
    yr, yi, sh = fw.fft_q15(re, im, scaling)
    assert np.abs(yr).max() <= fw.INT16_MAX and np.abs(yi).max() <= fw.INT16_MAX
    ref = np.fft.fft(re + 1j * im, axis=1) / 2.0 ** sh[:, None]
    err = np.abs((yr + 1j * yi) - ref).max(axis=1)
    stages = int(np.log2(k) + 1) // 2
    assert np.all(err <= 4 * stages), err       # a few rounding steps of one unit per stage
    if scaling == "adaptive":                   # no shift left unused: the output uses the 16 bits
        assert np.all(np.maximum(np.abs(yr).max(axis=1), np.abs(yi).max(axis=1)) >= 1 << 13)


def test_fft_q15_bad_input():
    z = np.zeros((1, 256), np.int64)
    with pytest.raises(ValueError, match="scaling"):
        fw.fft_q15(z, z, "float")
    with pytest.raises(ValueError, match="int16"):
        fw.fft_q15(z + (1 << 15), z)
    with pytest.raises(ValueError, match="power of two"):
        fw.fft_q15(np.zeros((1, 100), np.int64), np.zeros((1, 100), np.int64))
    # full-scale input (15 bits, not the 14 of fixed scaling) that one twiddle turns by 45 degrees: K = 8, p = 1,
    # a_j = (c, ic, -c, -ic) with c = (2^15 - 1)(1 + i) makes b1 + b3 = 4c, and 4c W_8 / 4 has a component of 46,340
    c = complex(fw.INT16_MAX, fw.INT16_MAX)
    x = np.zeros(8, complex)
    x[[1, 3, 5, 7]] = [c, 1j * c, -c, -1j * c]
    with pytest.raises(ValueError, match="stage's output left int16"):
        fw.fft_q15(x.real.astype(np.int64)[None], x.imag.astype(np.int64)[None], "fixed")
    fw.fft_q15(x.real.astype(np.int64)[None], x.imag.astype(np.int64)[None], "adaptive")  # shifts once more


def test_fft16_log2_against_float_front_end():
    cfg = FeatureConfig()
    pcm = bench_audio(4.0)
    ref = logmel_numpy(pcm.astype(np.float32) / 32768.0, cfg)
    spec = itf.to_ln(itf.log2_mel(pcm, cfg))
    err = {}
    for sc in ("adaptive", "fixed"):
        out = itf.log2_mel(pcm, cfg, frames_fn=lambda f, c, sc=sc: fw.frames_log2_fft16(f, c, sc))
        assert out.shape == spec.shape and out.dtype == np.int32
        err[sc] = np.abs(itf.to_ln(out) - ref)
    # the exponent bookkeeping is right (a wrong offset would be >= 2 ln 2 everywhere) and precision orders as it
    # should: the int32 specification, then 16-bit adaptive, then 16-bit fixed scaling
    assert np.median(err["adaptive"]) < 1e-3 and np.median(err["fixed"]) < 0.05
    assert np.abs(spec - ref).mean() < err["adaptive"].mean() < err["fixed"].mean()
    with pytest.raises(ValueError, match="scaling"):
        fw.frames_log2_fft16(np.zeros((1, cfg.win_length), np.int16), cfg, "none")


def test_fft16_log2_scales_exactly():
    """Doubling the samples adds exactly 2 to log2 E (2^21 in Q20): block floating point keeps the mantissas."""
    cfg = FeatureConfig()
    frames = (bench_audio(1.0)[:cfg.win_length * 4].reshape(4, cfg.win_length) // 4).astype(np.int16)
    for sc in ("adaptive", "fixed"):
        a = fw.frames_log2_fft16(frames, cfg, sc).astype(np.int64)
        b = fw.frames_log2_fft16((frames * 2).astype(np.int16), cfg, sc).astype(np.int64)
        assert np.array_equal(b - a, np.full_like(a, 2 << 20))


def test_variants_and_width_agreement():
    m = random_int_model(8, seed=0)
    m.norm_mean[:] = -6
    m.norm_std[:] = 2
    feat = detector_settings(m)["features"]
    pcm = bench_audio(3.0)
    assert np.array_equal(fw.variant_log2_fn("int32_spec", feat)(pcm), itf.log2_mel(pcm, feat))
    with pytest.raises(ValueError, match="unknown front-end variant"):
        fw.variant_log2_fn("int8", feat)
    res = fw.width_agreement({"m": m}, {"noise": pcm}, log=lambda *a: None)
    assert set(res) == set(fw.VARIANTS)
    direct = itf.agreement_on_signals(m, [pcm])
    assert res["int32_spec"]["models"]["m"]["noise"] == direct
    assert res["int32_spec"]["entries"] == direct["entries"] > 0
    for v in res.values():
        assert 0 <= v["equal_share"] <= v["within_1_share"] <= 1
    with pytest.raises(ValueError, match="at least one"):
        fw.width_agreement({}, {"noise": pcm})


def test_step_costs_add_up_to_the_benchmark_count(neon_tools, tmp_path):
    """Per-function counts (a regex over each log line's PC) sum to count_pipeline_instructions' line count."""
    m = random_int_model(8, seed=0)
    r = fw.step_costs(m, frontends=("int",))
    steps = r["int"]["steps_per_frame"]
    assert set(steps) == set(fw.INT_STEPS) | {"other"} and all(steps[s] > 100 for s in fw.INT_STEPS)
    assert sum(steps.values()) == r["int"]["total_per_frame"]
    path = tmp_path / "m.kws"
    export.save_artifact(path, m)
    ds = detector_settings(m)
    text = harness_config_text(m, ds["threshold"], ds["smooth_windows"], ds["refractory_steps"])
    whole = qemu.count_pipeline_instructions(path, text, bench_audio(0.5), mode="frontend", t1=0.26, t2=0.5)
    assert abs(r["int"]["total_per_audio_second"] - whole["per_audio_second"]) <= len(r["int"]["per_audio_second"])
    assert r["int"]["steps_per_frame"]["other"] < steps["fft"]
    with pytest.raises(ValueError, match="t1 < t2"):
        qemu.count_pipeline_functions(path, text, bench_audio(0.5), t1=0.5, t2=0.26)


def test_cli_without_models_says_what_is_missing(tmp_path, capsys):
    out = tmp_path / "w.json"
    rc = fw.main(["--profile", "quick", "--results-dir", str(tmp_path / "res"), "--out", str(out), "--no-neon"])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "stage2_w" in err and "notebook 4" in err and str(tmp_path / "res") in err


def test_fft16_log2_full_scale_saturates_instead_of_failing():
    """A frame whose largest windowed sample rounds up to 2^15 at 15 bits still runs (saturated to 2^15 - 1)."""
    cfg = FeatureConfig()
    tb = itf.tables(cfg)
    frames = np.zeros((1, cfg.win_length), np.int16)
    # a sample s at position n whose p = s h[n] has bit length b and p >= 2^b - 2^(b - 16): its top 15 bits round up
    # to 2^15 (found by search over every position and every s >= 2^14)
    s = np.arange(1 << 14, 1 << 15, dtype=np.int64)[None, :]
    p = s * tb.window.astype(np.int64)[:, None]
    b = np.floor(np.log2(np.maximum(p, 1))).astype(np.int64) + 1
    n, k = np.argwhere((p > 0) & (p >= (np.int64(1) << b) - (np.int64(1) << np.maximum(b - 16, 0))))[0]
    frames[0, n] = s[0, k]
    assert int(np.abs(itf.block_scale(frames.astype(np.int64) * tb.window, 15)[0]).max()) == 1 << 15
    out = fw.frames_log2_fft16(frames, cfg, "adaptive")   # an impulse: its spectrum is flat, the 16 bits suffice
    assert np.abs(itf.to_ln(out) - itf.to_ln(itf.frames_log2(frames, cfg))).max() < 1e-3


def test_error_by_depth_bands():
    cfg = FeatureConfig()
    pcm = bench_audio(3.0)
    rows = fw.error_by_depth({"a": pcm}, cfg, "fft16_fixed")
    assert [r["band_db"] for r in rows] == [list(b) for b in fw.DEPTH_BANDS_DB]
    n_frames = itf.num_frames(len(pcm), cfg)
    assert sum(r["entries"] for r in rows) == n_frames * cfg.n_mels     # every entry in exactly one band
    top = rows[0]
    assert top["entries"] >= n_frames                                    # each frame's loudest bin is at 0 dB
    assert 0 <= top["mean_abs_ln_error"] <= top["p999_abs_ln_error"] <= top["max_abs_ln_error"]
    # the error grows with depth below the frame's peak (the 16-bit FFT's noise floor)
    filled = [r for r in rows if r["entries"] > 100]
    assert filled[-1]["mean_abs_ln_error"] > filled[0]["mean_abs_ln_error"]
    same = fw.error_by_depth({"a": pcm}, cfg, "int32_spec")
    assert max(r["max_abs_ln_error"] for r in same if r["entries"]) < 0.01
    assert all(r["mean_abs_ln_error"] is None for r in fw.error_by_depth({"a": np.zeros(10, np.int16)}, cfg))
