"""Linear (uniform affine) fake quantization: range observers and quantizers.

The torch.ao.quantization split, written small: an *observer* watches a
tensor and keeps its range (min/max), a *quantizer* turns that range into
``scale`` and ``zero_point`` for a grid ``[qmin, qmax]`` and fake-quantizes:

    q      = clamp(floor(x / scale + 0.5) + zero_point, qmin, qmax)     integer code
    x_fq   = scale * (q - zero_point)                                   the value the float model sees

Rounding is half up (towards +infinity), the rule of :mod:`kwslib.quant.intspec`
everywhere (torch.ao rounds half to even), so a fake-quantized tensor holds
exactly the codes the integer engine computes. Backward: straight-through past
the rounding (identity), zero outside the clamp range; with a learned range
(``learn_range=True``) the scale gets the LSQ gradient (Esser et al. 2020),
which autograd derives from the same formula.

Ranges (``affine_qparams``):
- affine:    scale = (max' - min') / (qmax - qmin), zero_point = qmin - round(min' / scale),
             with min' = min(min, 0), max' = max(max, 0) so that real 0 is exactly a code
             (a ReLU output, min' = 0, gets zero_point = qmin: -128 for signed 8-bit);
- symmetric: scale = max(|min'|, |max'|) / qmax_sym, zero_point = 0 (signed; qmax_sym = qmax,
             a restricted grid [-qmax, qmax]) or the grid's midpoint (unsigned).
Scales are float32 (what an artifact stores); zero points int32.

Everything a quantizer knows (range, scale, zero point, on/off switches) is a
buffer (or, learned, a parameter), so it is saved in the module's state_dict.
Observers update only in training mode and only while enabled: evaluating a
model never moves its ranges.
"""
from __future__ import annotations

import torch
from torch import nn

SCALE_EPS = float(torch.finfo(torch.float32).eps)


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """The integer grid of ``bits`` bits: [-2^(b-1), 2^(b-1) - 1] signed, [0, 2^b - 1] unsigned."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer in 1..16, got {bits!r}")
    if signed:
        if bits < 2:
            raise ValueError("a signed grid needs at least 2 bits")
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """floor(x + 0.5): the rounding rule of the integer spec (ties go towards +infinity)."""
    return torch.floor(x + 0.5)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round_half_up in the forward pass, identity in the backward pass."""
    return x + (round_half_up(x) - x).detach()


def _broadcast(v: torch.Tensor, x: torch.Tensor, ch_axis: int) -> torch.Tensor:
    """A per-channel vector [C] shaped to broadcast along ``ch_axis`` of ``x`` (scalars pass through)."""
    if v.numel() == 1:
        return v.reshape(())
    shape = [1] * x.dim()
    shape[ch_axis] = v.numel()
    return v.reshape(shape)


def quantize_codes(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int, ch_axis: int = 0) -> torch.Tensor:
    """Integer codes of ``x`` (a float tensor of exact integers), straight-through gradients.

    Computed in ``x``'s dtype: ``floor(x / scale + 0.5) + zero_point``, clamped.
    """
    scale = _broadcast(torch.as_tensor(scale, dtype=x.dtype, device=x.device), x, ch_axis)
    zp = _broadcast(torch.as_tensor(zero_point, device=x.device).to(x.dtype), x, ch_axis)
    return torch.clamp(round_ste(x / scale) + zp, qmin, qmax)


def fake_quantize(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int, ch_axis: int = 0) -> torch.Tensor:
    """``scale * (q - zero_point)``: the quantized value in real units, straight-through gradients."""
    scale_t = _broadcast(torch.as_tensor(scale, dtype=x.dtype, device=x.device), x, ch_axis)
    zp = _broadcast(torch.as_tensor(zero_point, device=x.device).to(x.dtype), x, ch_axis)
    q = torch.clamp(round_ste(x / scale_t) + zp, qmin, qmax)
    return (q - zp) * scale_t


def affine_qparams(min_val, max_val, qmin: int, qmax: int, symmetric: bool = False):
    """(scale float32, zero_point int32) tensors for the range [min_val, max_val] (scalars or [C]).

    The range is widened to contain 0. Computed in float64; the scale is then
    rounded to float32 and the zero point derived from that float32 scale.
    """
    mn = torch.clamp(torch.as_tensor(min_val, dtype=torch.float64), max=0.0)
    mx = torch.clamp(torch.as_tensor(max_val, dtype=torch.float64), min=0.0)
    if symmetric:
        signed = qmin < 0
        levels = float(qmax) if signed else (qmax - qmin) / 2.0
        scale = torch.maximum(-mn, mx) / levels
    else:
        scale = (mx - mn) / float(qmax - qmin)
    scale = torch.clamp(scale, min=SCALE_EPS).to(torch.float32)
    if symmetric:
        zp = torch.full_like(scale, 0 if qmin < 0 else (qmin + qmax + 1) // 2, dtype=torch.int32)
    else:
        zp = qmin - round_half_up(mn / scale.to(torch.float64))
        zp = torch.clamp(zp, qmin, qmax).to(torch.int32)
    return scale, zp


class MovingAverageMinMaxObserver(nn.Module):
    """Range observer: min/max of each batch, averaged with ``averaging_constant`` c.

    First batch: range = its min/max; then min <- min + c * (batch_min - min)
    (likewise max). ``averaging_constant=1`` keeps the last batch's range.
    Per channel (``per_channel=True``, ``channels`` given): one range per index
    of ``ch_axis``, the min/max taken over every other axis.
    """

    def __init__(self, averaging_constant: float = 0.01, per_channel: bool = False, ch_axis: int = 0,
                 channels: int | None = None):
        super().__init__()
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        if per_channel and not channels:
            raise ValueError("a per-channel observer needs the number of channels")
        self.averaging_constant = float(averaging_constant)
        self.per_channel, self.ch_axis = per_channel, ch_axis
        n = channels if per_channel else 1
        self.register_buffer("min_val", torch.zeros(n))
        self.register_buffer("max_val", torch.zeros(n))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.uint8))

    def batch_range(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().to(torch.float32)
        if self.per_channel:
            flat = x.movedim(self.ch_axis, 0).reshape(x.shape[self.ch_axis], -1)
            return flat.amin(dim=1), flat.amax(dim=1)
        return x.amin().reshape(1), x.amax().reshape(1)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == 0:
            return x
        mn, mx = self.batch_range(x)
        if not bool(self.initialized):
            self.min_val.copy_(mn)
            self.max_val.copy_(mx)
            self.initialized.fill_(1)
        else:
            c = self.averaging_constant
            self.min_val.add_(c * (mn - self.min_val))
            self.max_val.add_(c * (mx - self.max_val))
        return x

    def calculate_qparams(self, qmin: int, qmax: int, symmetric: bool = False):
        return affine_qparams(self.min_val, self.max_val, qmin, qmax, symmetric)

    def extra_repr(self) -> str:
        return f"averaging_constant={self.averaging_constant}, per_channel={self.per_channel}"


class FakeQuantize(nn.Module):
    """A linear quantizer with its own observer: ``bits`` wide, signed or not, per tensor or per channel.

    ``forward(x)`` observes (training mode, observer enabled) and returns the
    fake-quantized ``x``; ``codes(x)`` returns the integer codes instead;
    ``observe(x)`` only updates the range (for a caller that computes the
    quantization itself, e.g. the stage-2 requantization).

    ``learn_range=True``: the scale is a parameter, initialised from the
    observer's range on the first training batch, then learned (LSQ); the
    zero point stays where that first range put it.
    """

    def __init__(self, bits: int = 8, signed: bool = True, symmetric: bool = False, per_channel: bool = False,
                 ch_axis: int = 0, channels: int | None = None, averaging_constant: float = 0.01,
                 learn_range: bool = False):
        super().__init__()
        self.bits, self.signed, self.symmetric = bits, signed, symmetric
        self.qmin, self.qmax = qrange(bits, signed)
        self.per_channel, self.ch_axis = per_channel, ch_axis
        self.learn_range = learn_range
        self.observer = MovingAverageMinMaxObserver(averaging_constant, per_channel, ch_axis, channels)
        n = channels if per_channel else 1
        if learn_range:
            self.scale = nn.Parameter(torch.ones(n))
        else:
            self.register_buffer("scale", torch.ones(n))
        self.register_buffer("zero_point", torch.zeros(n, dtype=torch.int32))
        self.register_buffer("fake_quant_enabled", torch.ones((), dtype=torch.uint8))
        self.register_buffer("observer_enabled", torch.ones((), dtype=torch.uint8))

    # -- switches (torch.ao names)
    def enable_observer(self, on: bool = True):
        self.observer_enabled.fill_(int(on))
        return self

    def disable_observer(self):
        return self.enable_observer(False)

    def enable_fake_quant(self, on: bool = True):
        self.fake_quant_enabled.fill_(int(on))
        return self

    def disable_fake_quant(self):
        return self.enable_fake_quant(False)

    @property
    def initialized(self) -> bool:
        return bool(self.observer.initialized)

    @torch.no_grad()
    def update_qparams(self):
        """Recompute scale and zero point from the observer's range."""
        scale, zp = self.observer.calculate_qparams(self.qmin, self.qmax, self.symmetric)
        self.scale.data.copy_(scale)
        self.zero_point.copy_(zp)

    def observe(self, x: torch.Tensor) -> None:
        """Update the range from ``x`` (training mode, observer enabled; a learned range only once)."""
        if not (self.training and bool(self.observer_enabled)):
            return
        if self.learn_range and self.initialized:
            return
        self.observer(x)
        self.update_qparams()

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero_point) as used now; a learned scale is kept positive."""
        scale = self.scale.clamp_min(SCALE_EPS) if self.learn_range else self.scale
        return scale, self.zero_point

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Observe, then the integer codes of ``x`` (float tensor of exact integers, straight-through)."""
        self.observe(x)
        scale, zp = self.qparams()
        return quantize_codes(x, scale.to(x.dtype), zp, self.qmin, self.qmax, self.ch_axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.observe(x)
        if not bool(self.fake_quant_enabled):
            return x
        scale, zp = self.qparams()
        return fake_quantize(x, scale.to(x.dtype), zp, self.qmin, self.qmax, self.ch_axis)

    def describe(self) -> dict:
        """Observed range and quantization parameters, as plain numbers (per tensor) or lists."""
        def plain(t):
            v = t.detach().cpu().tolist()
            return v[0] if isinstance(v, list) and len(v) == 1 else v

        return {"min": plain(self.observer.min_val), "max": plain(self.observer.max_val),
                "scale": plain(self.qparams()[0]), "zero_point": plain(self.zero_point),
                "qmin": self.qmin, "qmax": self.qmax}

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, signed={self.signed}, symmetric={self.symmetric}, "
                f"per_channel={self.per_channel}, learn_range={self.learn_range}")
