"""Long test streams: every clip once, at its recorded place; masks around the keywords."""
import numpy as np
import pytest

from kwslib.data.base import CLIP_SAMPLES, SAMPLE_RATE, ClipSet
from kwslib.data.streams import Stream, build_stream, keyword_masks, pad_clip


def _clips(n=30, seed=0):
    """Clips that are easy to tell apart: clip i is noise with a distinct seed, labels cycling 0..11."""
    rng = np.random.default_rng(seed)
    audio = (0.5 * rng.uniform(-1, 1, (n, CLIP_SAMPLES))).astype(np.float32)
    labels = np.arange(n) % 12
    return ClipSet(audio, labels, [f"s{i}" for i in range(n)], [f"clip{i}" for i in range(n)])


def _noise_only(stream):
    keep = np.ones(len(stream.audio), bool)
    for s, e, _ in stream.segments:
        keep[s:e] = False
    return stream.audio[keep]


def test_every_clip_once_at_its_segment():
    clips = _clips()
    noise = [np.random.default_rng(1).uniform(-1, 1, 3 * SAMPLE_RATE).astype(np.float32)]
    st = build_stream(clips, noise, seed=0)
    assert st.audio.dtype == np.float32 and len(st.segments) == len(clips)
    found = []
    for s, e, cls in st.segments:
        assert e - s == CLIP_SAMPLES
        match = [i for i in range(len(clips)) if np.array_equal(st.audio[s:e], clips.audio[i])]
        assert len(match) == 1
        assert clips.labels[match[0]] == cls
        found.append(match[0])
    assert sorted(found) == list(range(len(clips)))  # each clip exactly once
    assert found != sorted(found)  # shuffled
    starts = [s for s, _, _ in st.segments]
    ends = [e for _, e, _ in st.segments]
    assert starts[0] >= 0.2 * SAMPLE_RATE and len(st.audio) - ends[-1] >= 0.2 * SAMPLE_RATE
    assert all(s2 - e1 >= 0.2 * SAMPLE_RATE for e1, s2 in zip(ends, starts[1:]))  # a gap between clips
    assert st.hours == pytest.approx(len(st.audio) / SAMPLE_RATE / 3600)


def test_noise_share_and_levels():
    clips = _clips(n=60)
    noise = [np.full(SAMPLE_RATE, 0.5, np.float32), np.full(2 * SAMPLE_RATE, -0.5, np.float32)]
    st = build_stream(clips, noise, seed=2, noise_share=0.2)
    extra = sum(e - s for s, e in st.noise_stretches)
    assert extra / len(st.audio) == pytest.approx(0.2, abs=0.03)
    for s, e in st.noise_stretches:  # stretches lie between clips
        assert all(e <= cs or s >= ce for cs, ce, _ in st.segments)
    level = np.abs(_noise_only(st))  # constant +-0.5 recordings scaled by -30..-10 dB
    assert level.min() >= 0.5 * 10 ** (-30 / 20) - 1e-6 and level.max() <= 0.5 * 10 ** (-10 / 20) + 1e-6
    none = build_stream(clips, noise, seed=2, noise_share=0.0)
    assert none.noise_stretches == [] and len(none.audio) < len(st.audio)


def test_deterministic_for_a_seed():
    clips, noise = _clips(), [np.random.default_rng(1).standard_normal(SAMPLE_RATE).astype(np.float32)]
    a, b, c = (build_stream(clips, noise, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.segments == b.segments and a.noise_stretches == b.noise_stretches
    assert a.segments != c.segments


def test_empty_noise_falls_back_to_quiet_white_noise():
    clips = _clips(n=10)
    st = build_stream(clips, [], seed=0)
    assert len(st.segments) == 10
    gaps = _noise_only(st)
    rms = float(np.sqrt(np.mean(gaps.astype(np.float64) ** 2)))
    assert 10 ** (-55 / 20) < rms < 10 ** (-28 / 20)
    assert np.all(np.isfinite(st.audio))


def test_keyword_masks_by_hand():
    st = Stream(np.zeros(10_000, np.float32), [(3000, 5000, 2), (7000, 8000, 5), (1000, 2000, 1)])
    # step t: window [t*1000, t*1000 + 2000); tolerance 1000 samples
    m = keyword_masks(st, n_steps=9, step_samples=1000, window_samples=2000, keyword_classes=[2, 5],
                      tolerance_s=1000 / SAMPLE_RATE)
    assert m.shape == (9, 2) and m.dtype == bool
    assert np.flatnonzero(m[:, 0]).tolist() == [1, 2, 3, 4, 5]  # overlaps [2000, 6000)
    assert np.flatnonzero(m[:, 1]).tolist() == [5, 6, 7, 8]  # overlaps [6000, 9000)
    m0 = keyword_masks(st, 9, 1000, 2000, [2, 5], tolerance_s=0.0)
    assert np.flatnonzero(m0[:, 0]).tolist() == [2, 3, 4]  # overlaps [3000, 5000)
    assert np.flatnonzero(m0[:, 1]).tolist() == [6, 7]  # overlaps [7000, 8000); t=5 is [5000, 7000)
    assert not keyword_masks(st, 9, 1000, 2000, [3]).any()  # class 1 is not a listed keyword


def test_keyword_masks_match_brute_force():
    rng = np.random.default_rng(0)
    clips = _clips(n=24)
    st = build_stream(clips, [], seed=1)
    step, window, tol = 320, 8000, 0.3
    n_steps = (len(st.audio) - window) // step + 1
    kws = [2, 3, 7, 11]
    m = keyword_masks(st, n_steps, step, window, kws, tolerance_s=tol)
    t = rng.integers(0, n_steps, 300)
    end = t * step + window
    tol_n = int(round(tol * SAMPLE_RATE))
    for k, c in enumerate(kws):
        want = np.zeros(len(t), bool)
        for s, e, cls in st.segments:
            if cls == c:
                want |= (end > s - tol_n) & (end - window < e + tol_n)
        np.testing.assert_array_equal(m[t, k], want)


def test_pad_clip():
    clip = _clips(n=1).audio[0]
    a = pad_clip(clip, [], 0.5, rng=3)
    assert len(a) == CLIP_SAMPLES + SAMPLE_RATE and a.dtype == np.float32
    np.testing.assert_array_equal(a[8000:8000 + CLIP_SAMPLES], clip)
    np.testing.assert_array_equal(a, pad_clip(clip, [], 0.5, rng=np.random.default_rng(3)))
    noise = [np.full(100, 0.5, np.float32)]
    b = pad_clip(clip, noise, 0.25, rng=0)
    assert len(b) == CLIP_SAMPLES + 8000 and np.all(np.abs(b[:4000]) <= 0.5 * 10 ** (-10 / 20) + 1e-6)
