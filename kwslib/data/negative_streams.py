"""Negative audio as streams: clips back to back, cut into units, so false detections are counted per unit.

:func:`build_negative_stream` puts clips (real or synthetic speech) back to back with gaps of noise
between them, one unit per clip; :func:`noise_stream` cuts noise recordings into fixed-length units;
:func:`unit_of_step` maps each model step to its unit, so detections can be counted per unit and per
source for a unit-level (or source-level) bootstrap. See :mod:`kwslib.data.negatives` for the clips and
the other assumptions.

Assumption:

- **Streams.** Clips are concatenated unchanged in a seeded order, each after a
  gap of background noise drawn as :func:`kwslib.data.streams._noise_piece` draws
  it (a random piece of ``noise`` at a random gain; generated white noise when
  ``noise`` is empty or None). A unit is ``[gap, clip]``, so units tile the
  stream and each clip fills the end of its unit; the stream ends with the last
  clip (no closing gap). A detection is attributed to the unit holding the last
  sample of the model's input window at that step (a false alarm that fires
  late, after its clip, may so land on the next unit). Gap gains are drawn from
  ``noise_gain_db`` = (-30, -10) dB as in :func:`kwslib.data.streams.build_stream`.
  :func:`noise_stream` cuts each recording into ``unit_s`` pieces from its
  start, the last piece holding the remainder, with no gaps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import SAMPLE_RATE
from .negatives import NegativeClip, _positive_number
from .streams import _noise_piece
from ..errors import AudioError, ConfigError


@dataclass
class NegativeStream:
    """A long negative signal cut into units that tile it."""

    audio: np.ndarray  # float32, 16 kHz
    units: list  # (start_sample, end_sample, unit_id, source), in stream order, tiling [0, len(audio))
    source: str  # what the stream is: "real_speech", "synthetic_speech", "noise", ...

    @property
    def hours(self) -> float:
        return len(self.audio) / SAMPLE_RATE / 3600.0

    def hours_by_unit(self) -> np.ndarray:
        """Hours of each unit, in the order of ``units`` (the indices :func:`unit_of_step` returns)."""
        return np.array([(e - s) for s, e, _, _ in self.units], np.float64) / SAMPLE_RATE / 3600.0

    def hours_by_source(self) -> dict[str, float]:
        """Hours of the units of each source (upstream folder or synthetic voice)."""
        out: dict[str, float] = {}
        for (_, _, _, src), h in zip(self.units, self.hours_by_unit()):
            out[src] = out.get(src, 0.0) + float(h)
        return out


def _clip_audio(c, what: str) -> np.ndarray:
    x = np.asarray(c.audio if isinstance(c, NegativeClip) else c)
    if x.ndim != 1:
        raise AudioError(f"{what}: audio of shape {x.shape}, expected mono (1-D)")
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        raise AudioError(f"{what}: audio must be finite floating-point samples (got {x.dtype})")
    return x.astype(np.float32, copy=False)


def _range(name: str, r, allow_zero: bool = True) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in r)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} = {r!r} must be a (min, max) pair") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and (lo >= 0 if allow_zero else True) and lo <= hi):
        raise ConfigError(f"{name} = {r!r} must be (min, max) with {'0 <= ' if allow_zero else ''}min <= max")
    return lo, hi


def build_negative_stream(clips: list[NegativeClip], noise=None, gap_s=(0.2, 1.0), seed: int = 0,
                          source: str = "real_speech", noise_gain_db=(-30.0, -10.0)) -> NegativeStream:
    """Every clip once, in a seeded order, each after a gap of ``gap_s`` seconds of background noise.

    ``noise``: recordings (arrays or NegativeClips) the gaps are cut from; None
    or empty: white noise (as in :func:`kwslib.data.streams.build_stream`). Unit k =
    the gap before clip k + the clip; unit_id = the clip's ``file``, unit source
    = the clip's ``source``.
    """
    if not clips:
        raise ConfigError("build_negative_stream: no clips")
    gap_s = _range("build_negative_stream: gap_s", gap_s)
    noise_gain_db = _range("build_negative_stream: noise_gain_db", noise_gain_db, allow_zero=False)
    noise = [_clip_audio(r, f"noise recording {i}") for i, r in enumerate(noise or [])]
    audio = [_clip_audio(c, f"clip {c.file}") for c in clips]
    rng = np.random.default_rng(seed)
    parts, units, pos = [], [], 0
    for i in rng.permutation(len(clips)):
        gap = _noise_piece(noise, int(rng.uniform(*gap_s) * SAMPLE_RATE), rng, noise_gain_db)
        end = pos + len(gap) + len(audio[i])
        units.append((pos, end, clips[i].file, clips[i].source))
        parts += [gap, audio[i]]
        pos = end
    return NegativeStream(np.concatenate(parts).astype(np.float32, copy=False), units, source)


def noise_stream(recordings, unit_s: float = 10.0, source: str = "noise") -> NegativeStream:
    """Noise recordings (arrays or NegativeClips) back to back, cut into units of ``unit_s`` seconds.

    The last unit of each recording holds its remainder (shorter). unit_id =
    ``"<file or rec index>#<k>"``; unit source = the clip's source, or ``source``
    for a plain array.
    """
    unit_s = _positive_number("noise_stream: unit_s", unit_s)
    n_unit = max(1, int(round(unit_s * SAMPLE_RATE)))
    parts, units, pos = [], [], 0
    for i, r in enumerate(recordings):
        name = r.file if isinstance(r, NegativeClip) else f"rec{i}"
        src = r.source if isinstance(r, NegativeClip) else source
        x = _clip_audio(r, f"noise recording {name}")
        for k, a in enumerate(range(0, len(x), n_unit)):
            b = min(a + n_unit, len(x))
            units.append((pos + a, pos + b, f"{name}#{k}", src))
        parts.append(x)
        pos += len(x)
    if pos == 0:
        raise ConfigError("noise_stream: no noise (no recordings, or all of them empty)")
    return NegativeStream(np.concatenate(parts).astype(np.float32, copy=False), units, source)


def unit_of_step(stream: NegativeStream, n_steps: int, step_samples: int, window_samples: int) -> np.ndarray:
    """``[n_steps]`` int: the index into ``stream.units`` of the unit holding sample ``e - 1`` of step t.

    Step ``t`` is the model input window ``[e - window_samples, e)`` with
    ``e = t * step_samples + window_samples`` (as in
    :func:`kwslib.data.streams.keyword_masks`). A window that ends past the stream
    is an error (the step/window sizes do not belong to this stream).
    """
    for name, v in (("n_steps", n_steps), ("step_samples", step_samples), ("window_samples", window_samples)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (0 if name == "n_steps" else 1):
            raise ConfigError(f"unit_of_step: {name} = {v!r} must be an integer >= {0 if name == 'n_steps' else 1}")
    ends = np.arange(int(n_steps), dtype=np.int64) * int(step_samples) + int(window_samples)
    if n_steps and ends[-1] > len(stream.audio):
        raise ConfigError(f"unit_of_step: step {n_steps - 1} ends at sample {ends[-1]}, past the stream's "
                          f"{len(stream.audio)} samples (n_steps/step_samples/window_samples do not fit it)")
    starts = np.array([u[0] for u in stream.units], np.int64)
    return np.searchsorted(starts, ends - 1, side="right") - 1
