"""Log-mel filterbank energies: one definition for training and for streaming.

The same numbers come out of three entry points:

- :func:`logmel_torch`  batched torch (training; any device),
- :func:`logmel_numpy`  one numpy signal (evaluation, export checks),
- :class:`StreamingFrontend`  numpy, fed chunks of any size (streaming).

Definition (kept simple so an integer engine could reproduce it later):
frame ``i`` covers samples ``[i*hop, i*hop + win)`` -- no centring, no
padding, a trailing partial frame is dropped. Each frame is multiplied by a
periodic Hann window, zero-padded to ``n_fft``, its power spectrum
``|rfft|^2`` is projected onto a triangular HTK-mel filterbank and the result
is ``log(max(energy, log_floor))`` (natural log). There is no pre-emphasis,
no dither and no mean/variance normalisation; normalisation belongs to the
model (fixed per-bin training-set mean/std, ``KWSNet``'s buffers, which fold
into the input quantizer), not to the front end.

Both paths compute in float64 and return float32, so they agree to float32
rounding even for badly conditioned frames (a loud tone next to near-silent
mel bins), not only on average.
"""
from __future__ import annotations

import functools
from dataclasses import astuple, dataclass

import numpy as np

from .audio import check_audio
from ..errors import AudioError, ConfigError


@dataclass
class FeatureConfig:
    """Front-end parameters (the defaults are the paper-style 40 x 25 ms / 10 ms)."""

    sample_rate: int = 16000
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    fmin: float = 20.0
    fmax: float = 7600.0
    log_floor: float = 1e-6

    def __post_init__(self):
        if self.sample_rate <= 0 or self.n_mels <= 0:
            raise ConfigError(f"FeatureConfig: sample_rate and n_mels must be positive, got {self}")
        if self.hop_length <= 0 or self.win_length <= 0:
            raise ConfigError(f"FeatureConfig: win_ms={self.win_ms} and hop_ms={self.hop_ms} give empty frames")
        if self.win_length > self.n_fft:
            raise ConfigError(f"FeatureConfig: window of {self.win_length} samples is longer than n_fft={self.n_fft}")
        if not 0.0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"FeatureConfig: need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}")
        if not self.log_floor > 0:
            raise ConfigError(f"FeatureConfig: log_floor must be > 0, got {self.log_floor}")

    @property
    def win_length(self) -> int:
        """Window length in samples (400 at the defaults)."""
        return int(round(self.sample_rate * self.win_ms / 1000.0))

    @property
    def hop_length(self) -> int:
        """Hop in samples (160 at the defaults)."""
        return int(round(self.sample_rate * self.hop_ms / 1000.0))


def model_features(model) -> FeatureConfig:
    """The front end an integer model records (``IntModel.feature_config``; the defaults when it records none)."""
    return FeatureConfig(**model.feature_config) if model.feature_config else FeatureConfig()


def hz_to_mel(f):
    """HTK mel scale: 2595 * log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Triangular HTK-mel filterbank, ``[n_fft//2 + 1, n_mels]`` float64.

    ``n_mels + 2`` edge frequencies are equally spaced on the mel scale from
    ``fmin`` to ``fmax``; filter ``j`` rises linearly (in Hz) from edge ``j``
    to a peak of 1 at edge ``j+1`` and falls to 0 at edge ``j+2``. Weights
    are evaluated at the FFT bin frequencies ``k * sample_rate / n_fft``. No
    area normalisation (peaks are 1), so in the band between the first and
    last centre the weights of each FFT bin sum to 1.
    """
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    freqs = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    lo, centre, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lo) / (centre - lo)
    falling = (hi - freqs[:, None]) / (hi - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window of ``n`` samples (float64): 0.5 - 0.5 cos(2 pi k / n)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def num_frames(n_samples: int, cfg: FeatureConfig) -> int:
    """Number of complete frames in ``n_samples``: ``1 + (n - win) // hop``, 0 if ``n < win``."""
    if n_samples < cfg.win_length:
        return 0
    return 1 + (n_samples - cfg.win_length) // cfg.hop_length


@functools.lru_cache(maxsize=16)
def _constants(cfg_key: tuple) -> tuple[np.ndarray, np.ndarray]:
    cfg = FeatureConfig(*cfg_key)
    return hann_window(cfg.win_length), mel_filterbank(cfg)


def _numpy_frames_to_logmel(frames: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``[F, win]`` float64 frames -> ``[F, n_mels]`` float32 log-mel."""
    window, fbank = _constants(astuple(cfg))
    spec = np.fft.rfft(frames * window, n=cfg.n_fft, axis=-1)
    power = spec.real ** 2 + spec.imag ** 2
    return np.log(np.maximum(power @ fbank, cfg.log_floor)).astype(np.float32)


def _numpy_logmel_unchecked(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    n = num_frames(len(audio), cfg)
    if n == 0:
        return np.zeros((0, cfg.n_mels), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), cfg.win_length)
    return _numpy_frames_to_logmel(frames[::cfg.hop_length][:n], cfg)


def logmel_numpy(audio: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """Log-mel features of one mono signal: 1-D audio -> ``[num_frames, n_mels]`` float32.

    Raises :class:`AudioError` for empty, multi-channel or non-finite audio.
    A signal shorter than one window gives a ``[0, n_mels]`` array.
    """
    cfg = cfg or FeatureConfig()
    return _numpy_logmel_unchecked(check_audio(audio, "logmel_numpy input"), cfg)


def clip_features(audio, feat_cfg: FeatureConfig, batch: int = 1024) -> "torch.Tensor":
    """Log-mel features of a batch of clips [N, samples] -> [N, F, M] float32 (torch; no augmentation)."""
    import torch

    audio = torch.as_tensor(np.asarray(audio, np.float32))
    out = [logmel_torch(audio[i:i + batch], feat_cfg) for i in range(0, len(audio), batch)]
    return torch.cat(out) if out else torch.zeros(0)


def logmel_torch(audio: "torch.Tensor", cfg: FeatureConfig | None = None,
                 compute_dtype: "torch.dtype | None" = None) -> "torch.Tensor":
    """Batched log-mel features: ``[B, T]`` -> ``[B, F, n_mels]`` (or ``[T]`` -> ``[F, n_mels]``), float32.

    Same numbers as :func:`logmel_numpy` (computed in float64 on the input's
    device, returned as float32). Raises :class:`AudioError` for non-float,
    empty, more than 2-D or non-finite input.

    ``compute_dtype=torch.float32`` is ~3x faster and agrees to ~1e-4 in the
    log domain; training uses it (augmented audio changes every epoch anyway),
    evaluation and streaming use float64 so that every path gives the same numbers.
    ``compute_dtype=None`` means float64.

    torch is imported here, not at module level: the streaming path (numpy front end,
    integer engine, ``kwslib detect``) must not load the training framework.
    """
    import torch

    cfg = cfg or FeatureConfig()
    compute_dtype = torch.float64 if compute_dtype is None else compute_dtype
    if not isinstance(audio, torch.Tensor) or not audio.is_floating_point():
        raise AudioError(f"logmel_torch: expected a float tensor, got {type(audio).__name__} "
                         f"{getattr(audio, 'dtype', '')}")
    if audio.dim() not in (1, 2) or audio.shape[-1] == 0:
        raise AudioError(f"logmel_torch: expected non-empty [T] or [B, T] audio, got shape {tuple(audio.shape)}")
    if not bool(torch.isfinite(audio).all()):
        raise AudioError("logmel_torch: audio contains NaN or infinite samples")
    single = audio.dim() == 1
    x = audio.reshape(1, -1) if single else audio
    n = num_frames(x.shape[-1], cfg)
    if n == 0:
        out = x.new_zeros((x.shape[0], 0, cfg.n_mels), dtype=torch.float32)
    else:
        window, fbank = _constants(astuple(cfg))
        window = torch.as_tensor(window, device=x.device, dtype=compute_dtype)
        fbank = torch.as_tensor(fbank, device=x.device, dtype=compute_dtype)
        frames = x.to(compute_dtype).unfold(-1, cfg.win_length, cfg.hop_length)  # [B, F, win]
        spec = torch.fft.rfft(frames * window, n=cfg.n_fft, dim=-1)
        power = spec.real ** 2 + spec.imag ** 2
        out = torch.log(torch.clamp(power @ fbank, min=cfg.log_floor)).to(torch.float32)
    return out[0] if single else out


class StreamingFrontend:
    """Chunk-by-chunk log-mel: ``push(chunk)`` returns the frames completed by that chunk.

    Keeps the samples not yet consumed by a complete frame (fewer than
    ``win_length``), so feeding a signal in chunks of any size
    yields exactly the frames of :func:`logmel_numpy` on the whole signal.
    Subclasses (:class:`kwslib.frontend.intfrontend.StreamingIntFrontend`) change what a frame is computed
    from and by: ``_check``, ``_frames``, ``_empty``.
    """

    def __init__(self, cfg: FeatureConfig | None = None):
        self.cfg = cfg or FeatureConfig()
        self.reset()

    def reset(self) -> None:
        """Forget buffered samples and the frame count (start of a new stream)."""
        self._buffer = self._check(np.zeros(0, np.float32))
        self.frames_emitted = 0

    def _check(self, chunk) -> np.ndarray:
        return np.zeros(0, np.float32) if chunk.size == 0 else check_audio(chunk, "StreamingFrontend.push chunk")

    def _frames(self, buffer: np.ndarray) -> np.ndarray:
        return _numpy_logmel_unchecked(buffer, self.cfg)

    def push(self, chunk) -> np.ndarray:
        """Append ``chunk`` (1-D audio; may be empty) and return ``[k, n_mels]`` new frames (k may be 0)."""
        chunk = np.asarray(chunk)
        if chunk.ndim == 1 and chunk.size == 0:
            return self._frames(self._buffer[:0])
        self._buffer = np.concatenate([self._buffer, self._check(chunk)])
        out = self._frames(self._buffer)
        self._buffer = self._buffer[len(out) * self.cfg.hop_length:]
        self.frames_emitted += len(out)
        return out
