"""Stage-1 weight quantizers: tanh (the paper), DoReFa (ablation), linear max-abs (baseline).

Each quantizer maps a dense layer's weight matrix w [C, I] to integer codes
and to a fake-quantized weight ``codes / code_max`` in [-1, 1] (the scale is
learned elsewhere: the following batchnorm, or the gain of a QuantLinear).

    tanh    w_t = tanh(w) / max|tanh(w)|          (max per output channel or per tensor)
            b >= 2: q = round(w_t * qmax),  qmax = 2^(b-1) - 1   symmetric grid with zero
            b == 1: q = sign(w), sign(0) = +1                    binary
    linear  w_t = w / max|w|, then the same rounding (plain max-abs quantization)
    dorefa  x = tanh(w) / (2 max|tanh(w)|) + 1/2 in [0, 1],  k = round(x * (2^b - 1)),
            q = 2k - (2^b - 1)                                   odd integers, no zero
            (DoReFa-Net's 2 Q_b(x) - 1, written in integer codes; code_max = 2^b - 1)

Backward: the rounding (or sign) is replaced by the identity (straight-through
estimator); the gradient through tanh and through the max normalisation is
kept, so d(fake)/dw = d(w_t)/dw (DoReFa: the same, since 2x - 1 = w_t).

Rounding is torch.round (half to even); exact ties do not occur for trained
weights. The codes are computed once here and stored by later stages, so no
other engine re-derives them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .intspec import weight_qmax

METHODS = ("tanh", "dorefa", "linear")


@dataclass
class WeightQuantConfig:
    bits: int = 4  # 1..8
    method: str = "tanh"  # "tanh" (paper, default) | "dorefa" (original DoReFa, ablation) | "linear" (max-abs)
    per_channel: bool = True  # normalisation max over each output channel (row) or the whole tensor

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise ValueError(f"weight bits must be an integer in 1..8, got {self.bits!r}")
        if self.method not in METHODS:
            raise ValueError(f"weight quantization method must be one of {METHODS}, got {self.method!r}")

    @property
    def name(self) -> str:
        return f"{self.method}_w{self.bits}_{'pc' if self.per_channel else 'pt'}"


def code_max(cfg: WeightQuantConfig) -> int:
    """The divisor that maps codes to [-1, 1]: qmax (tanh/linear), 2^b - 1 (DoReFa), 1 at one bit."""
    if cfg.method == "dorefa":
        return 2 ** cfg.bits - 1
    return weight_qmax(cfg.bits)


def _max_abs(x: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """max|x| per row [C, 1] or for the whole tensor (broadcastable); never 0."""
    m = x.abs().amax(dim=1, keepdim=True) if per_channel else x.abs().amax()
    return m.clamp_min(torch.finfo(x.dtype).tiny)


def _check(w: torch.Tensor):
    if w.dim() != 2:
        raise ValueError(f"weight quantizers expect a [C, I] matrix, got shape {tuple(w.shape)}")


def normalized(w: torch.Tensor, cfg: WeightQuantConfig) -> torch.Tensor:
    """The transformed weight w_t in [-1, 1] (differentiable): tanh(w)/max|tanh(w)| or w/max|w|."""
    _check(w)
    t = w if cfg.method == "linear" else torch.tanh(w)
    return t / _max_abs(t, cfg.per_channel)


def _round_codes(w_t: torch.Tensor, cfg: WeightQuantConfig) -> torch.Tensor:
    """Integer codes (float tensor) of normalised weights w_t in [-1, 1]."""
    if cfg.method == "dorefa":
        n = 2 ** cfg.bits - 1
        return 2 * torch.round((w_t + 1) / 2 * n) - n
    if cfg.bits == 1:
        return torch.where(w_t >= 0, 1.0, -1.0).to(w_t.dtype)
    qmax = weight_qmax(cfg.bits)
    return torch.round(w_t * qmax).clamp(-qmax, qmax)


def weight_codes(w: torch.Tensor, cfg: WeightQuantConfig) -> torch.Tensor:
    """Integer codes of a weight matrix [C, I] (a float tensor of exact integers), no gradient."""
    with torch.no_grad():
        return _round_codes(normalized(w.detach(), cfg), cfg)


def fake_quant_weight(w: torch.Tensor, cfg: WeightQuantConfig) -> torch.Tensor:
    """codes / code_max in [-1, 1]; backward: straight-through past the rounding, through tanh and max."""
    w_t = normalized(w, cfg)
    q = _round_codes(w_t.detach(), cfg) / code_max(cfg)
    return w_t + (q - w_t).detach()
