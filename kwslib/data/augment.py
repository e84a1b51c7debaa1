"""Training-time augmentation, batched in torch.

Audio domain: random gain, speed perturbation (resampling by linear
interpolation, which shifts pitch and tempo together), time shift, and
background noise mixed at a random SNR (from the corpus's ``noise_train``: the
training part of the six Speech Commands recordings, or the synthetic corpus's
generated noise; a corpus without noise recordings gets no noise mixed in). Feature domain: SpecAugment-style time and frequency masks.
All randomness comes from an explicit ``torch.Generator`` so that a run is
reproducible and a resumed run replays the same augmentations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class AugmentConfig:
    time_shift_ms: float = 100.0  # uniform shift in [-x, x], zero fill
    speed_min: float = 0.9  # speed perturbation factor range (1.0, 1.0 disables)
    speed_max: float = 1.1
    gain_db: float = 6.0  # uniform random gain in [-x, x] dB
    noise_prob: float = 0.8  # probability a clip gets background noise
    snr_db_min: float = 0.0
    snr_db_max: float = 20.0
    time_masks: int = 2  # SpecAugment masks on the (normalised) features
    time_mask_frames: int = 10
    freq_masks: int = 2
    freq_mask_bins: int = 5

    def __post_init__(self):
        if not 0 < self.speed_min <= self.speed_max:
            raise ValueError(f"need 0 < speed_min <= speed_max, got {self.speed_min}, {self.speed_max}")
        if self.snr_db_min > self.snr_db_max:
            raise ValueError("snr_db_min must be <= snr_db_max")
        if not 0.0 <= self.noise_prob <= 1.0:
            raise ValueError(f"noise_prob must be in [0, 1], got {self.noise_prob}")


def _uniform(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def speed_perturb(audio: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Resample each row by its factor (>1 = faster), centred, same length, zero outside."""
    b, n = audio.shape
    centre = (n - 1) / 2.0
    pos = centre + (torch.arange(n, dtype=torch.float32)[None, :] - centre) * factors[:, None]
    lo = pos.floor().long()
    frac = pos - lo
    valid = (pos >= 0) & (pos <= n - 1)
    lo_c, hi_c = lo.clamp(0, n - 1), (lo + 1).clamp(0, n - 1)
    out = audio.gather(1, lo_c) * (1 - frac) + audio.gather(1, hi_c) * frac
    return out * valid


def time_shift(audio: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Shift each row by an integer number of samples (positive = later), zero fill."""
    b, n = audio.shape
    idx = torch.arange(n)[None, :] - shifts[:, None]
    valid = (idx >= 0) & (idx < n)
    return audio.gather(1, idx.clamp(0, n - 1)) * valid


def mix_noise(audio: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, g) -> torch.Tensor:
    """Add a random segment of the 1-D ``noise`` to each row at the given SNR (dB).

    Silent rows (no speech power) get the noise at the level of a -40 dBFS signal.
    """
    b, n = audio.shape
    starts = torch.randint(0, max(1, len(noise) - n), (b,), generator=g)
    seg = noise[starts[:, None] + torch.arange(n)[None, :]]
    p_sig = audio.pow(2).mean(1).clamp(min=1e-8)
    p_noise = seg.pow(2).mean(1).clamp(min=1e-10)
    scale = torch.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    return audio + seg * scale[:, None]


def augment_audio(audio: torch.Tensor, noise: torch.Tensor | None, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Apply the audio-domain augmentations to a batch [B, N] (16 kHz)."""
    b, n = audio.shape
    x = audio
    if cfg.speed_min != 1.0 or cfg.speed_max != 1.0:
        x = speed_perturb(x, _uniform(b, cfg.speed_min, cfg.speed_max, g))
    if cfg.time_shift_ms > 0:
        max_shift = int(cfg.time_shift_ms * 16)
        x = time_shift(x, torch.randint(-max_shift, max_shift + 1, (b,), generator=g))
    if cfg.gain_db > 0:
        x = x * (10 ** (_uniform(b, -cfg.gain_db, cfg.gain_db, g) / 20))[:, None]
    if noise is not None and len(noise) > n and cfg.noise_prob > 0:
        use = torch.rand(b, generator=g) < cfg.noise_prob
        snr = _uniform(b, cfg.snr_db_min, cfg.snr_db_max, g)
        noisy = mix_noise(x, noise, snr, g)
        x = torch.where(use[:, None], noisy, x)
    return x.clamp(-1.0, 1.0)


def spec_augment(feats: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, fill=0.0) -> torch.Tensor:
    """Time and frequency masks on [B, T, M] features, masked cells set to ``fill``.

    ``fill`` is a scalar or a per-bin [M] tensor (the training mean, so that a
    masked cell is zero after the model's input normalisation).
    """
    b, t, m = feats.shape
    keep = torch.ones_like(feats, dtype=torch.bool)
    ar_t, ar_m = torch.arange(t)[None, :], torch.arange(m)[None, :]
    for _ in range(cfg.time_masks):
        w = torch.randint(0, cfg.time_mask_frames + 1, (b,), generator=g)
        s = (torch.rand(b, generator=g) * (t - w + 1)).long()
        keep &= ~((ar_t >= s[:, None]) & (ar_t < (s + w)[:, None]))[:, :, None]
    for _ in range(cfg.freq_masks):
        w = torch.randint(0, cfg.freq_mask_bins + 1, (b,), generator=g)
        s = (torch.rand(b, generator=g) * (m - w + 1)).long()
        keep &= ~((ar_m >= s[:, None]) & (ar_m < (s + w)[:, None]))[:, None, :]
    return torch.where(keep, feats, torch.as_tensor(fill, dtype=feats.dtype).expand_as(feats))


def noise_tensor(recordings: list) -> torch.Tensor | None:
    """Concatenate noise recordings into one 1-D tensor (None if there are none)."""
    recs = [np.asarray(r, np.float32) for r in recordings if len(r)]
    return torch.from_numpy(np.concatenate(recs)) if recs else None
