import numpy as np
import pytest
import torch

from kwslib.data.augment import (AugmentConfig, augment_audio, mix_noise, spec_augment, speed_perturb,
                                 time_shift)


def test_time_shift_moves_samples_and_zero_fills():
    x = torch.arange(1, 6, dtype=torch.float32).repeat(2, 1)
    y = time_shift(x, torch.tensor([2, -1]))
    assert y[0].tolist() == [0, 0, 1, 2, 3]
    assert y[1].tolist() == [2, 3, 4, 5, 0]


def test_speed_perturb_identity_and_frequency_scaling():
    n = 16000
    t = torch.arange(n) / 16000
    x = torch.sin(2 * torch.pi * 500 * t)[None]
    assert torch.allclose(speed_perturb(x, torch.tensor([1.0])), x, atol=1e-5)
    y = speed_perturb(x, torch.tensor([1.2]))[0].numpy()
    mid = y[4000:12000]
    freq = np.argmax(np.abs(np.fft.rfft(mid))) * 16000 / len(mid)
    assert freq == pytest.approx(600, abs=5)


def test_mix_noise_hits_requested_snr():
    g = torch.Generator().manual_seed(0)
    sig = torch.sin(torch.arange(16000) * 0.1)[None].repeat(3, 1)
    noise = torch.randn(50000)
    snr = torch.tensor([0.0, 10.0, 20.0])
    out = mix_noise(sig, noise, snr, g)
    added = out - sig
    measured = 10 * torch.log10(sig.pow(2).mean(1) / added.pow(2).mean(1))
    assert torch.allclose(measured, snr, atol=1e-3)


def test_spec_augment_masks_with_fill():
    g = torch.Generator().manual_seed(0)
    cfg = AugmentConfig(time_masks=1, time_mask_frames=5, freq_masks=1, freq_mask_bins=3)
    f = torch.ones(50, 20, 8)
    fill = torch.arange(8.0)
    out = spec_augment(f, cfg, g, fill=fill)
    masked = out != 1
    assert masked.any()
    # every masked cell holds the per-bin fill value
    assert torch.equal(out[masked], fill.expand_as(out)[masked])
    # at most 5 full frames and 3 full bins masked per example
    per_ex = masked.reshape(50, -1).sum(1)
    assert int(per_ex.max()) <= 5 * 8 + 3 * 20


def test_augment_audio_deterministic_and_bounded():
    cfg = AugmentConfig()
    x = torch.rand(4, 16000) - 0.5
    noise = torch.randn(40000)
    a = augment_audio(x, noise, cfg, torch.Generator().manual_seed(3))
    b = augment_audio(x, noise, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.abs().max() <= 1.0 and a.shape == x.shape


def test_augment_config_validation():
    with pytest.raises(ValueError, match="speed"):
        AugmentConfig(speed_min=1.2, speed_max=1.1)
    with pytest.raises(ValueError, match="noise_prob"):
        AugmentConfig(noise_prob=2)
