"""The integer front end: its numpy specification against independent references (numpy's FFT, log2, the
float64 front end), its declared overflow bounds at full-scale input, and the C and NEON builds bit for bit."""
import os
from pathlib import Path

import numpy as np
import pytest

from kwslib.frontend import intfrontend as I
from kwslib.deploy.ckernels import CKernelsUnavailable, availability
from kwslib.deploy.qemu import neon_tools, run_frontend_qemu
from kwslib.deploy.engine import random_int_model
from kwslib.errors import AudioError, ConfigError
from kwslib.frontend.features import FeatureConfig, logmel_numpy
from kwslib.deploy.pipeline import as_pcm16
from kwslib.quant.intspec import quantize_input
from kwslib.frontend.streaming import sliding_windows

have_c = pytest.mark.skipif(not availability()[0], reason=f"no C kernels here: {availability()[1]}")
CONFIGS = [FeatureConfig(), FeatureConfig(n_mels=32, win_ms=30.0, hop_ms=20.0, n_fft=512),
           FeatureConfig(win_ms=10.0, hop_ms=25.0, n_fft=256, fmin=0.0, fmax=8000.0)]


def speechlike(seconds=4.0, seed=0, burst=True):
    """Tones, chirps, noise, digital silence and a clipped burst: every regime of the front end."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.02 * rng.normal(size=len(t)) + 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(1.3 * t) > 0)
    x += 0.2 * np.sin(2 * np.pi * (300 + 200 * t) * t) * (np.cos(0.7 * t) > 0.3)
    x *= np.exp(np.sin(2.1 * t) * 2.5)  # 40 dB of level changes
    x[8000:11000] = 0.0
    if burst:  # a frame of pure DC: its Hann side lobes 100 dB down are below the integer front end's precision
        x[20000:20400] = 0.999
    return as_pcm16(x)


def hard_signals():
    """The issue's list: random PCM, silence, full-scale square waves, clipping, single impulses."""
    rng = np.random.default_rng(7)
    n = 16000
    t = np.arange(n)
    sig = {
        "random": rng.integers(-32768, 32768, n).astype(np.int16),
        "silence": np.zeros(n, np.int16),
        "lsb_noise": rng.integers(-1, 2, n).astype(np.int16),
        "square_1k": np.where((t // 8) % 2, 32767, -32768).astype(np.int16),
        "square_nyquist": np.where(t % 2, 32767, -32768).astype(np.int16),
        "dc_max": np.full(n, -32768, np.int16),
        "clipped_sine": as_pcm16(np.clip(3.0 * np.sin(2 * np.pi * 250 * t / 16000), -1, 1)),
    }
    imp = np.zeros(n, np.int16)
    imp[[0, 1, 399, 400, 1234, 5000, 15999]] = [32767, -32768, 1, -1, 32767, 1000, -5]
    sig["impulses"] = imp
    sig["speechlike"] = speechlike(2.0)
    return sig


def test_fft_is_the_dft_to_a_few_units():
    tb = I.tables(FeatureConfig())
    rng = np.random.default_rng(0)
    x = rng.integers(-2 ** 21, 2 ** 21 + 1, (4, 512))
    zr, zi = I.fft_stockham(x[:, 0::2].copy(), x[:, 1::2].copy(), tb)
    ref = np.fft.fft(x[:, 0::2] + 1j * x[:, 1::2], axis=1)
    err = max(np.abs(zr - ref.real).max(), np.abs(zi - ref.imag).max())
    assert err < 64  # 8 stages of per-product rounding, on outputs of ~2^26
    assert np.abs(ref).max() > 2 ** 25


def test_log2_is_log2_to_the_table_accuracy():
    tb = I.tables(FeatureConfig())
    rng = np.random.default_rng(1)
    e_int = np.concatenate([rng.integers(1, 2 ** 62, 5000), 2 ** np.arange(63, dtype=np.int64),
                            2 ** np.arange(1, 63, dtype=np.int64) - 1])
    got = I.log2_q20(e_int[:, None], np.zeros(len(e_int), np.int64), tb)[:, 0] / 2 ** 20
    want = np.log2(e_int.astype(np.float64)) - I.ENERGY_EXP
    ok = want > np.log2(1e-6)
    assert np.abs(got[ok] - want[ok]).max() < 4e-6  # table + interpolation + Q20 rounding
    assert np.all(got[~ok] == tb.log_floor / 2 ** 20)  # below the floor: the floor
    assert I.log2_q20(np.zeros((1, 1), np.int64), np.zeros(1, np.int64), tb)[0, 0] == tb.log_floor


def test_block_scaling_bounds_and_exactness():
    rng = np.random.default_rng(2)
    p = rng.integers(-2 ** 30, 2 ** 30 + 1, (50, 400)) >> rng.integers(0, 31, (50, 1))
    x, e = I.block_scale(p)
    b = I.block_bits(400)
    assert b == 21 and np.abs(x).max() <= 2 ** b
    nz = np.abs(p).max(axis=1) > 0
    assert np.all(np.abs(x[nz]).max(axis=1) >= 2 ** (b - 1))  # normalised: the top bit is used
    left = e <= 0
    assert np.array_equal(x[left] >> (-e[left])[:, None], p[left])  # left shifts are exact
    assert np.all(np.abs((x[~left] << e[~left][:, None]) - p[~left]) <= (1 << e[~left])[:, None] // 2)


def test_every_step_stays_inside_its_declared_bound_at_full_scale():
    cfg = FeatureConfig()
    stats = {}
    for name, pcm in hard_signals().items():
        I.log2_mel(pcm, cfg) if name != "dc_max" else None
        frames = np.lib.stride_tricks.sliding_window_view(pcm, 400)[::160]
        I.frames_log2(frames, cfg, stats=stats)
    # the worst case of steps 3-6 (sum |x| at its largest): |s| h = const over the window
    h = I.tables(cfg).window.astype(np.float64)
    worst = np.clip(np.round(0.2 * 32768 * h.max() / np.maximum(h, 1)), -32768, 32767).astype(np.int16)
    sign = np.where(np.cos(2 * np.pi * 64 * np.arange(400) / 512) >= 0, 1, -1).astype(np.int16)  # bin 64 (2 kHz)
    I.frames_log2(np.stack([worst, -worst, worst * sign]), cfg, stats=stats)
    for key, bound in I.BOUNDS_LOG2.items():
        assert stats[key] > 0, key
        assert np.log2(stats[key]) <= bound, (key, np.log2(stats[key]), bound)
    assert np.log2(stats["y"]) > 29.0  # the stress signal comes within a factor 3.2 of the declared bound


def test_bad_configs_and_input_are_refused():
    with pytest.raises(ConfigError, match="power of two"):
        I.tables(FeatureConfig(n_fft=500))
    with pytest.raises(ConfigError, match="too long"):
        I.tables(FeatureConfig(win_ms=5.0, n_fft=4096))
    with pytest.raises(AudioError, match="int16"):
        I.log2_mel(np.zeros(1000, np.float32))
    with pytest.raises(AudioError, match="frames"):
        I.frames_log2(np.zeros((2, 399), np.int16))
    assert I.log2_mel(np.zeros(399, np.int16)).shape == (0, 40)


def test_streaming_equals_whole_signal():
    pcm = speechlike(3.0)
    ref = I.log2_mel(pcm)
    for chunk in (len(pcm), 1601, 160, 37):
        fe = I.StreamingIntFrontend()
        got = np.concatenate([fe.push(pcm[i:i + chunk]) for i in range(0, len(pcm), chunk)])
        assert np.array_equal(got, ref)


def stand_in_model(pcm_list, cfg=FeatureConfig()):
    """A model whose normalisation and input range are those of the given audio (as training would set)."""
    m = random_int_model(8, seed=0)
    feats = [logmel_numpy(p.astype(np.float32) / 32768.0, cfg) for p in pcm_list]
    allf = np.concatenate(feats)
    m.norm_mean[:], m.norm_std[:] = allf.mean(axis=0), allf.std(axis=0) + 1e-3
    x = np.concatenate([m.input_vector(sliding_windows(f, 96, 4)) for f in feats])
    lo, hi = float(x.min()), float(x.max())
    m.input_scale = (hi - lo) / 255.0
    m.input_zero_point = int(-128 - np.round(lo / m.input_scale))
    return m


def float_codes(pcm, m):
    return m.quantize_input(sliding_windows(logmel_numpy(pcm.astype(np.float32) / 32768.0), 96, 4))


def test_window_precision_keeps_a_band_90_db_down():
    """The window's rounding is the front end's noise floor. A recording whose top mel band lies 90 dB under
    its loudest (seen in the real negatives: 2-code differences with a Q15 window) must stay within 0.15 in
    ln energy there (Q15 window: 0.22; the Q16 one: 0.13); and the Q16 window times any int16 sample fits int32."""
    tb = I.tables()
    assert tb.window.max() == 2 ** 16 - 1 and 32768 * int(tb.window.max()) < 2 ** 31
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    spec = np.fft.rfft(rng.normal(size=len(t)))
    spec[np.fft.rfftfreq(len(t), 1 / 16000) < 6500] = 0
    high = np.fft.irfft(spec, len(t))
    x = 0.45 * np.sin(2 * np.pi * 180 * t) + 0.3 * np.sin(2 * np.pi * 530 * t) + 10 ** (-90 / 20) * 0.45 * high / high.std()
    pcm = np.round(x * 32767).astype(np.int16)
    err = np.abs(I.to_ln(I.log2_mel(pcm)) - logmel_numpy(pcm.astype(np.float32) / 32768.0))
    assert err[:, 36:].max() <= 0.15, err[:, 36:].max()


def test_codes_match_the_float_front_end():
    clips = [speechlike(3.0, seed=s, burst=False) for s in range(6)]
    m = stand_in_model(clips)
    a = np.concatenate([float_codes(p, m) for p in clips])
    b = np.concatenate([I.clip_codes(p, m) for p in clips])
    agree = I.code_agreement(a, b)
    assert agree["entries"] > 100_000
    assert agree["equal_share"] >= 0.99 and agree["max_abs_diff"] <= 1
    # and the comparison can fail: a front end off by 1 % in energy (0.01 in ln) is caught
    shifted = logmel_numpy(clips[0].astype(np.float32) / 32768.0) + np.float32(0.01)
    worse = I.code_agreement(float_codes(clips[0], m), m.quantize_input(sliding_windows(shifted, 96, 4)))
    assert worse["equal_share"] < 0.99


def _real_clips():
    from kwslib.frontend.audio import read_wav

    out = {}
    root = os.environ.get("KWS_SC12_ROOT")
    if root and Path(root).is_dir():
        out["sc12 clips"] = [as_pcm16(read_wav(f)) for f in sorted(Path(root).glob("*/*.wav"))[::25]]
    neg = os.environ.get("KWS_REAL_NEGATIVES_ROOT")
    if neg and Path(neg).is_dir():
        import soundfile as sf

        files = [f for f in sorted(Path(neg).rglob("*.wav"))[::40][:12] if sf.info(f).samplerate == 16000]
        clips = [as_pcm16(sf.read(f, dtype="float32", always_2d=True)[0].mean(axis=1)[:16000 * 60]) for f in files]
        out["real negatives"] = [c for c in clips if len(c) >= 16000]
    return out


@pytest.mark.parametrize("name", sorted(_real_clips()) or ["none"])
def test_codes_match_the_float_front_end_on_real_speech(name):
    clips = _real_clips()
    if name not in clips:
        pytest.skip("KWS_SC12_ROOT / KWS_REAL_NEGATIVES_ROOT not set")
    pcm = clips[name]
    m = stand_in_model(pcm)
    agree = I.code_agreement(np.concatenate([float_codes(p, m) for p in pcm]),
                             np.concatenate([I.clip_codes(p, m) for p in pcm]))
    assert agree["equal_share"] >= 0.99 and agree["max_abs_diff"] <= 1, agree


@have_c
@pytest.mark.parametrize("cfg", CONFIGS)
def test_c_equals_the_specification_bit_for_bit(cfg):
    from kwslib.deploy.pipeline import CIntFrontend

    for name, pcm in list(hard_signals().items()) + [("long", speechlike(6.0, seed=3))]:
        ref = I.log2_mel(pcm, cfg)
        for chunk in (len(pcm), 1601, 37):
            fe = CIntFrontend(cfg)
            got = np.concatenate([fe.push(pcm[i:i + chunk]) for i in range(0, len(pcm), chunk)])
            assert np.array_equal(got, ref), (name, chunk)
    assert fe.bytes > 0


@have_c
def test_c_refuses_what_the_specification_refuses():
    from kwslib.deploy.pipeline import CIntFrontend

    for cfg in (FeatureConfig(n_fft=500), FeatureConfig(win_ms=5.0, n_fft=4096)):
        with pytest.raises(ConfigError):
            CIntFrontend(cfg)


@have_c
def test_c_code_map_equals_numpy():
    from kwslib.deploy.pipeline import c_code_map

    rng = np.random.default_rng(4)
    for seed in range(5):
        m = random_int_model(4, seed=seed)
        m.norm_mean[:] = rng.normal(-8, 3, 40)
        m.norm_std[:] = rng.uniform(0.3, 4, 40)
        m.input_scale = float(rng.uniform(0.005, 0.2))
        m.input_zero_point = int(rng.integers(-128, 128))
        cm = I.code_map(m)
        mult, add, shift = c_code_map(m)
        assert np.array_equal(mult, cm.mult) and np.array_equal(add, cm.add) and np.array_equal(shift, cm.shift)
        assert np.all((cm.mult >= 2 ** 30) & (cm.mult < 2 ** 31))
    m.norm_std[3] = 0.0
    with pytest.raises(ConfigError):
        I.code_map(m)
    with pytest.raises(ConfigError):
        c_code_map(m)


def test_group_codes_equal_the_float_formula_off_the_rounding_edges():
    rng = np.random.default_rng(5)
    m = random_int_model(8, seed=1)
    m.norm_mean[:] = rng.normal(-6, 2, 40)
    m.norm_std[:] = rng.uniform(0.5, 3, 40)
    m.input_scale, m.input_zero_point = 0.03, -20
    lq = rng.integers(-20 * 2 ** 20, 10 * 2 ** 20, (200, 96, 40)).astype(np.int32)
    got = I.window_codes(lq, m)
    x = m.input_vector(I.to_ln(lq).astype(np.float32))
    real = x / np.float32(m.input_scale) + 0.5
    want = quantize_input(x, m.input_scale, m.input_zero_point)
    edge = np.abs(real - np.round(real)) < 1e-3  # within float32 rounding of a code boundary
    assert np.array_equal(got[~edge], want[~edge])
    assert np.abs(got.astype(int) - want).max() <= 1


def _with_features(text: str, cfg: FeatureConfig) -> str:
    """The harness config ``text`` with its front-end fields (and norm rows) set to ``cfg``'s: the front end
    alone reads nothing else."""
    head, mean, std, names = text.splitlines()[:4]
    h = head.split()
    h[:8] = [str(cfg.sample_rate), str(cfg.win_length), str(cfg.hop_length), str(cfg.n_fft), str(cfg.n_mels),
             repr(float(cfg.fmin)), repr(float(cfg.fmax)), repr(float(cfg.log_floor))]
    return "\n".join([" ".join(h), " ".join(["0.0"] * cfg.n_mels), " ".join(["1.0"] * cfg.n_mels), names]) + "\n"


# every config of the C test, and a 401-sample window: odd, not a multiple of the NEON path's 16-sample step
NEON_CONFIGS = CONFIGS + [FeatureConfig(win_ms=25.0625)]


@pytest.mark.parametrize("variant", ["neon", "scalar"])
def test_neon_equals_the_specification_under_qemu(variant, tmp_path):
    try:
        neon_tools()
    except CKernelsUnavailable as exc:
        pytest.skip(str(exc))
    from kwslib.deploy import export
    from kwslib.deploy.pipeline import harness_config_text

    m = random_int_model(8, seed=0)
    art = export.save_artifact(tmp_path / "m.kws", m)
    text = harness_config_text(m, 0.5, 3, 25)
    pcm = np.concatenate(list(hard_signals().values()))
    assert NEON_CONFIGS[-1].win_length == 401
    for cfg in NEON_CONFIGS:
        got = run_frontend_qemu(art, _with_features(text, cfg), pcm, "int", variant=variant)
        assert np.array_equal(got, I.log2_mel(pcm, cfg)), cfg


def test_agreement_on_signals_counts_every_window():
    clips = [speechlike(3.0, seed=s, burst=False) for s in range(3)]
    m = stand_in_model(clips)
    agg = I.agreement_on_signals(m, clips + [np.zeros(100, np.int16)], piece_s=1.6)
    a, b = zip(*(I.codes_both(c[i:i + 25600], m) for c in clips for i in range(0, len(c), 25600)))
    direct = I.code_agreement(np.concatenate(a), np.concatenate(b))
    assert agg["entries"] == direct["entries"] > 0 and agg["equal_share"] == direct["equal_share"]
    assert agg["max_abs_diff"] == direct["max_abs_diff"] <= 1
    assert I.agreement_on_signals(m, [np.zeros(100, np.int16)])["equal_share"] is None
