"""The log-mel front end: one definition, three entry points, checked against an independent reference."""
import numpy as np
import pytest
import torch

from kwslib.errors import AudioError, ConfigError
from kwslib.frontend.features import (FeatureConfig, StreamingFrontend, logmel_numpy, logmel_torch,
                                      mel_filterbank, num_frames)

CFG = FeatureConfig()


def _signals(seed=0, n=16000):
    """Three signals of different character: noise, loud tone + faint noise, near silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    noise = 0.3 * rng.standard_normal(n)
    tone = 0.9 * np.sin(2 * np.pi * 1234.5 * t) + 1e-4 * rng.standard_normal(n)
    quiet = 1e-5 * rng.standard_normal(n)
    return np.stack([noise, tone, quiet]).astype(np.float32)


# --- an independent float64 reference: own Hann, own mel formula, DFT as a matrix product ---

def _ref_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _ref_mel_inv(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def _ref_filterbank(sr, n_fft, n_mels, fmin, fmax):
    mels = np.linspace(_ref_mel(fmin), _ref_mel(fmax), n_mels + 2)
    hz = [_ref_mel_inv(m) for m in mels]
    fb = np.zeros((n_fft // 2 + 1, n_mels))
    for k in range(n_fft // 2 + 1):
        f = k * sr / n_fft
        for j in range(n_mels):
            a, b, c = hz[j], hz[j + 1], hz[j + 2]
            if a < f <= b:
                fb[k, j] = (f - a) / (b - a)
            elif b < f < c:
                fb[k, j] = (c - f) / (c - b)
    return fb


def _ref_logmel(x, cfg):
    x = np.asarray(x, np.float64)
    win, hop, n_fft = 400, 160, 512  # 25 ms / 10 ms at 16 kHz, written out
    window = np.sin(np.pi * np.arange(win) / win) ** 2  # periodic Hann as sin^2
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(win)[None, :]
    dft = np.exp(-2j * np.pi * k * n / n_fft)  # only the first `win` columns: zero padding
    fb = _ref_filterbank(16000, n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    rows = []
    start = 0
    while start + win <= len(x):
        spec = dft @ (x[start:start + win] * window)
        rows.append(np.log(np.maximum(np.abs(spec) ** 2 @ fb, cfg.log_floor)))
        start += hop
    return np.array(rows).reshape(-1, cfg.n_mels)


def test_matches_independent_reference():
    for x in _signals(n=4000):
        ref = _ref_logmel(x, CFG)
        got = logmel_numpy(x, CFG)
        assert got.shape == ref.shape == (num_frames(4000, CFG), 40)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_filterbank_matches_reference_and_is_sensible():
    fb = mel_filterbank(CFG)
    assert fb.shape == (257, 40) and fb.dtype == np.float64
    np.testing.assert_allclose(fb, _ref_filterbank(16000, 512, 40, 20.0, 7600.0), atol=1e-12)
    assert (fb.max(axis=0) > 0).all(), "every filter has at least one FFT bin"
    assert (fb.max(axis=0) <= 1.0).all() and (fb >= 0).all()
    freqs = np.arange(257) * 16000 / 512
    centres = _ref_mel_inv(np.linspace(_ref_mel(20.0), _ref_mel(7600.0), 42))[1:-1]
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    np.testing.assert_allclose(fb[inside].sum(axis=1), 1.0, atol=1e-9)
    outside = (freqs <= 20.0) | (freqs >= 7600.0)
    assert (fb[outside] == 0).all()


def test_pure_tone_lands_in_its_mel_bin():
    fb = mel_filterbank(CFG)
    t = np.arange(8000) / 16000
    for k in (10, 32, 80, 160, 230):  # FFT bins: 312.5, 1000, 2500, 5000, 7187.5 Hz
        tone = (0.5 * np.sin(2 * np.pi * k * 31.25 * t)).astype(np.float32)
        best = int(logmel_numpy(tone, CFG).mean(axis=0).argmax())
        assert fb[k, best] >= 0.5, (k, best, fb[k])  # the filter(s) covering that frequency most


def test_torch_batched_equals_numpy():
    x = _signals()
    out = logmel_torch(torch.from_numpy(x), CFG)
    assert out.shape == (3, 98, 40) and out.dtype == torch.float32
    for i in range(3):
        np.testing.assert_allclose(out[i].numpy(), logmel_numpy(x[i], CFG), atol=1e-4, rtol=0)
    single = logmel_torch(torch.from_numpy(x[1]), CFG)
    assert single.shape == (98, 40)
    np.testing.assert_allclose(single.numpy(), out[1].numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [1, 7, 160, 399, 1000, None])
def test_streaming_equals_whole_signal(chunk):
    x = _signals(seed=1, n=8000)[1]
    whole = logmel_numpy(x, CFG)
    fe = StreamingFrontend(CFG)
    step = chunk or len(x)
    parts = [fe.push(x[i:i + step]) for i in range(0, len(x), step)]
    got = np.concatenate(parts)
    assert fe.frames_emitted == len(whole) == num_frames(8000, CFG)
    np.testing.assert_allclose(got, whole, atol=1e-4, rtol=0)


def test_streaming_random_chunks_and_reset():
    rng = np.random.default_rng(3)
    x = _signals(seed=2)[0]
    whole = logmel_numpy(x, CFG)
    fe = StreamingFrontend(CFG)
    for _ in range(2):  # second pass checks reset()
        fe.reset()
        parts, i = [], 0
        while i < len(x):
            n = int(rng.integers(0, 700))
            parts.append(fe.push(x[i:i + n]))
            i += n
        assert all(p.shape[1] == 40 for p in parts)
        np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-4, rtol=0)
        assert fe.frames_emitted == len(whole)


def test_num_frames_edges():
    assert CFG.win_length == 400 and CFG.hop_length == 160
    assert [num_frames(n, CFG) for n in (0, 399, 400, 559, 560, 16000)] == [0, 0, 1, 1, 2, 98]
    assert logmel_numpy(np.zeros(399, np.float32), CFG).shape == (0, 40)
    assert logmel_torch(torch.zeros(2, 399), CFG).shape == (2, 0, 40)


def test_silence_hits_the_floor():
    out = logmel_numpy(np.zeros(1600, np.float32), CFG)
    np.testing.assert_allclose(out, np.log(CFG.log_floor), rtol=1e-6)


def test_bad_audio_raises():
    x = np.zeros(1000, np.float32)
    bad = x.copy()
    bad[10] = np.nan
    for a in (bad, np.zeros(0, np.float32), np.zeros((2, 1000), np.float32), np.full(500, np.inf)):
        with pytest.raises(AudioError):
            logmel_numpy(a, CFG)
    for t in (torch.from_numpy(bad), torch.zeros(2, 2, 1000), torch.zeros(0), torch.zeros(1000, dtype=torch.int16)):
        with pytest.raises(AudioError):
            logmel_torch(t, CFG)
    with pytest.raises(AudioError):
        StreamingFrontend(CFG).push(bad)


def test_bad_config_raises():
    with pytest.raises(ConfigError):
        FeatureConfig(win_ms=40.0)  # 640 samples > n_fft 512
    with pytest.raises(ConfigError):
        FeatureConfig(fmax=9000.0)


def test_float32_compute_close_to_float64():
    import torch
    from kwslib.frontend.features import logmel_torch
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((3, 4000)).astype(np.float32) * 0.1)
    a = logmel_torch(x)
    b = logmel_torch(x, compute_dtype=torch.float32)
    assert b.dtype == torch.float32 and b.shape == a.shape
    assert float((a - b).abs().max()) < 1e-3
