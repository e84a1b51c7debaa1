"""Long test streams with known keyword times, for false detections per hour.

A stream is every clip of a split played once, in a seeded random order,
with short gaps of background noise between clips and some longer stretches
of pure noise, so that a detector runs on continuous audio (clip onsets,
noise, words it must ignore) and every keyword position is known.

Assumptions:
- Clips are copied unchanged (no noise mixed under them): the slice
  ``audio[start:end]`` of a segment is exactly the clip.
- Noise pieces are cut from the given recordings (which must be test-time
  noise, never the noise used in training) at random offsets, looped if a
  recording is shorter than the piece, and scaled by a random gain in dB.
- With no noise recordings, gaps are filled with generated white Gaussian
  noise of RMS ``10 ** ((gain_db - 20) / 20)`` for a gain drawn from
  ``noise_gain_db`` (about -50 to -30 dBFS at the defaults: a quiet room).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import SAMPLE_RATE, ClipSet


@dataclass
class Stream:
    """A long test signal and where each clip was placed in it."""

    audio: np.ndarray  # float32, 16 kHz
    segments: list  # (start_sample, end_sample, class_index) of every clip, in stream order
    noise_stretches: list = field(default_factory=list)  # (start, end) of the extra pure-noise stretches

    @property
    def hours(self) -> float:
        return len(self.audio) / SAMPLE_RATE / 3600.0


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _noise_piece(noise: list, n: int, rng: np.random.Generator, gain_db=(-30.0, -10.0)) -> np.ndarray:
    """``n`` samples of background noise at a random gain (see the module docstring)."""
    gain_db = float(rng.uniform(*gain_db))
    recordings = [r for r in noise if len(r)]
    if not recordings:
        return (10 ** ((gain_db - 20) / 20) * rng.standard_normal(n)).astype(np.float32)
    rec = np.asarray(recordings[int(rng.integers(len(recordings)))], np.float32)
    start = int(rng.integers(len(rec)))
    piece = np.take(rec, np.arange(start, start + n), mode="wrap")
    return (10 ** (gain_db / 20) * piece).astype(np.float32)


def build_stream(clips: ClipSet, noise: list, seed: int = 0, gap_s=(0.2, 1.0), noise_gain_db=(-30.0, -10.0),
                 noise_segment_s=(1.0, 5.0), noise_share: float = 0.2) -> Stream:
    """Concatenate every clip of ``clips`` once into one stream with noise between them.

    Layout: ``gap, item, gap, item, ..., item, gap`` where the items are the
    clips in a seeded random order plus extra pure-noise stretches (lengths
    drawn from ``noise_segment_s``) inserted at random places, and each gap
    lasts a random ``gap_s`` seconds. ``noise_share`` is the fraction of the
    whole stream taken by the extra stretches (the short gaps come on top).
    Every noise region is a fresh piece of ``noise`` with its own gain drawn
    from ``noise_gain_db``; an empty ``noise`` list means generated white noise.
    """
    if not 0.0 <= noise_share < 1.0:
        raise ValueError(f"build_stream: noise_share must be in [0, 1), got {noise_share}")
    rng = np.random.default_rng(seed)
    sr = SAMPLE_RATE
    order = rng.permutation(len(clips))
    clip_samples = len(clips) * clips.audio.shape[1]

    # extra noise stretches, sized so that they are noise_share of the final stream
    n_gaps_approx = len(order) + 1
    gaps_approx = n_gaps_approx * np.mean(gap_s) * sr
    want = noise_share / (1.0 - noise_share) * (clip_samples + gaps_approx)
    stretches = []
    while sum(stretches) < want:
        stretches.append(int(rng.uniform(*noise_segment_s) * sr))
    if stretches:
        stretches[-1] -= int(sum(stretches) - want)  # trim the last one to the exact total
        stretches[-1] = max(stretches[-1], 1)

    # items: ("clip", index) and ("noise", length), stretches at random places among the clips
    items = [("clip", int(i)) for i in order]
    for length in stretches:
        items.insert(int(rng.integers(len(items) + 1)), ("noise", length))

    parts, segments, noise_stretches, pos = [], [], [], 0

    def add(x):
        nonlocal pos
        parts.append(x)
        pos += len(x)

    add(_noise_piece(noise, int(rng.uniform(*gap_s) * sr), rng, noise_gain_db))
    for kind, value in items:
        if kind == "clip":
            segments.append((pos, pos + clips.audio.shape[1], int(clips.labels[value])))
            add(clips.audio[value])
        else:
            noise_stretches.append((pos, pos + value))
            add(_noise_piece(noise, value, rng, noise_gain_db))
        add(_noise_piece(noise, int(rng.uniform(*gap_s) * sr), rng, noise_gain_db))
    audio = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    return Stream(audio, segments, noise_stretches)


def keyword_masks(stream: Stream, n_steps: int, step_samples: int, window_samples: int,
                  keyword_classes: list, tolerance_s: float = 0.5) -> np.ndarray:
    """``[n_steps, K]`` bool: where a detection of keyword k is a true one, not a false alarm.

    Step ``t`` is the model input window ``[e - window_samples, e)`` ending at
    ``e = t * step_samples + window_samples``. It is marked for keyword k
    when that window overlaps a segment of class ``keyword_classes[k]``
    widened by ``tolerance_s`` on both sides: a window that still holds (part
    of) the keyword clip, or is within the tolerance of it (smoothing and
    detection delays), is not counted as a false detection.
    """
    tol = int(round(tolerance_s * SAMPLE_RATE))
    masks = np.zeros((n_steps, len(keyword_classes)), bool)
    column = {c: k for k, c in enumerate(keyword_classes)}
    for start, end, cls in stream.segments:
        if cls not in column:
            continue
        # window overlaps [start - tol, end + tol)  <=>  e > start - tol  and  e - window < end + tol
        first = (start - tol - window_samples) // step_samples + 1
        last = -(-(end + tol) // step_samples) - 1  # ceil((end + tol) / step) - 1
        first, last = max(first, 0), min(last, n_steps - 1)
        if first <= last:
            masks[first:last + 1, column[cls]] = True
    return masks


def pad_clip(clip: np.ndarray, noise: list, pad_s: float, rng=None, gain_db=(-30.0, -10.0)) -> np.ndarray:
    """``clip`` with ``pad_s`` seconds of background noise before and after it.

    For scoring a single clip by streaming: the detector's windows slide in
    from noise, over the clip and out again, as in a stream. Noise as in
    :func:`build_stream` (white noise when ``noise`` is empty). ``rng`` is a
    numpy Generator or a seed.
    """
    rng = _rng(rng)
    n = int(round(pad_s * SAMPLE_RATE))
    clip = np.asarray(clip, np.float32)
    return np.concatenate([_noise_piece(noise, n, rng, gain_db), clip, _noise_piece(noise, n, rng, gain_db)])
