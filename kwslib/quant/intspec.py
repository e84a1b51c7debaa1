"""The integer arithmetic, specified once (docs/DESIGN.md sections 5 and 7).

Every engine (the stage-2 model's integer mode, the numpy engine, the C,
x86-SIMD and NEON kernels) computes exactly these integers.

Per dense layer, for one input vector:

    x_q   int8  [I]       input codes, real x = s_x * (x_q - z_x)
    w_q   int8  [C, I]    weight codes (stage 1: |w_q| <= 2^(b-1) - 1; b = 1: +-1)
    acc   int32 [C]       acc[c] = sum_i w_q[c, i] * x_q[i] + bias_q[c]
                          (bias_q already holds the zero-point term -z_x * sum_i w_q[c, i])
    y_q   int8  [C]       y_q[c] = clamp(requantize(acc[c], mult[c], shift[c]) + z_y, lo, 127)

    requantize(acc, mult, shift) = (acc * mult + 2^(n - 1)) >> n,   n = 31 + shift
        64-bit product, round half up (towards +infinity), arithmetic shift;
        mult is a signed Q31 fixed-point multiplier with 2^30 <= |mult| < 2^31
        (or 0), shift in [-30, 32], so that mult * 2^-(31 + shift) approximates
        the real per-channel factor M[c] = gain[c] * s_x / s_y.
    lo = z_y for a hidden layer (ReLU fused: real 0 is code z_y = -128, so ReLU is
        the lower clamp), -128 for the output layer (int8 logits).

The input vector (normalised, decimated log-mel features, computed in float by
the front end) is quantized as x_q = clamp(floor(x / s_in + 0.5) + z_in, -128, 127).

Why these choices: int8 x int8 products fit int16, which the NEON kernels use
(vmull_s8 / sdot); signed int8 activations with a zero point give ReLU outputs
the full 256 levels; a single rounding in requantize is simple to match
exactly in C and SIMD (int64 multiply, add, shift).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ACT_QMIN, ACT_QMAX = -128, 127
ACC_MIN, ACC_MAX = -(2 ** 31), 2 ** 31 - 1
SHIFT_MIN, SHIFT_MAX = -30, 32


def weight_qmax(bits: int) -> int:
    """Largest weight code magnitude for ``bits`` (1 bit: codes are +-1)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"weight bits must be in 1..8, got {bits}")
    return 1 if bits == 1 else 2 ** (bits - 1) - 1


def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """Real factors -> (mult int32, shift int32) with real ~= mult * 2^-(31 + shift).

    |mult| in [2^30, 2^31) (normalised), or mult = 0 for a zero factor. Factors
    too small for the shift range become 0; too large raise ValueError.
    """
    real = np.atleast_1d(np.asarray(real, np.float64))
    if not np.all(np.isfinite(real)):
        raise ValueError("quantize_multiplier: non-finite factor")
    mult = np.zeros(real.shape, np.int64)
    shift = np.zeros(real.shape, np.int64)
    nz = real != 0
    mant, exp = np.frexp(real[nz])  # real = mant * 2^exp, 0.5 <= |mant| < 1
    m = np.round(mant * 2.0 ** 31).astype(np.int64)
    full = np.abs(m) == 2 ** 31  # rounding overflowed the mantissa
    m[full] //= 2
    exp = exp + full
    s = -exp.astype(np.int64)  # real = m * 2^-31 * 2^exp -> shift = -exp
    if np.any(s < SHIFT_MIN):
        raise ValueError(f"quantize_multiplier: factor too large ({real[nz][s < SHIFT_MIN].max()})")
    tiny = s > SHIFT_MAX
    m[tiny], s[tiny] = 0, 0
    mult[nz], shift[nz] = m, s
    return mult.astype(np.int32), shift.astype(np.int32)


def requantize(acc, mult, shift, zero_point: int, lo: int = ACT_QMIN, hi: int = ACT_QMAX) -> np.ndarray:
    """The one requantize routine: int32 accumulators -> int8 codes (see module docstring).

    ``mult`` and ``shift`` broadcast against the last axis of ``acc``.
    """
    acc = np.asarray(acc, np.int64)
    n = 31 + np.asarray(shift, np.int64)
    prod = acc * np.asarray(mult, np.int64)  # |acc| < 2^31, |mult| < 2^31: fits int64
    rounded = (prod + (np.int64(1) << (n - 1))) >> n
    return np.clip(rounded + zero_point, lo, hi).astype(np.int8)


def quantize_input(x, scale: float, zero_point: int) -> np.ndarray:
    """Float input features -> int8 codes: clamp(floor(x / scale + 0.5) + z, -128, 127), in float32."""
    x = np.asarray(x, np.float32)
    q = np.floor(x / np.float32(scale) + np.float32(0.5))
    return np.clip(q + zero_point, ACT_QMIN, ACT_QMAX).astype(np.int8)


@dataclass
class IntLayer:
    """One dense layer in integer form (what an artifact stores per layer)."""

    w_q: np.ndarray  # int8 [C, I] weight codes
    bits: int  # weight width (codes fit a signed `bits`-bit container; 1 bit: +-1)
    bias_q: np.ndarray  # int32 [C], in the accumulator's scale, zero-point term folded in
    mult: np.ndarray  # int32 [C]
    shift: np.ndarray  # int32 [C]
    in_scale: float
    in_zero_point: int
    out_scale: float
    out_zero_point: int
    relu: bool  # hidden layer (lower clamp at out_zero_point) or output layer (int8 logits)

    def __post_init__(self):
        self.w_q = np.ascontiguousarray(self.w_q, np.int8)
        self.bias_q = np.asarray(self.bias_q, np.int32)
        self.mult = np.asarray(self.mult, np.int32)
        self.shift = np.asarray(self.shift, np.int32)
        c = self.w_q.shape[0]
        if self.w_q.ndim != 2 or any(len(a) != c for a in (self.bias_q, self.mult, self.shift)):
            raise ValueError("IntLayer: w_q must be [C, I] and bias_q/mult/shift [C]")
        qmax = weight_qmax(self.bits)
        if np.abs(self.w_q.astype(np.int16)).max(initial=0) > qmax:
            raise ValueError(f"IntLayer: weight codes exceed the {self.bits}-bit range +-{qmax}")
        if self.bits == 1 and np.any(self.w_q == 0):
            raise ValueError("IntLayer: 1-bit weight codes must be +-1")

    @property
    def lo(self) -> int:
        return self.out_zero_point if self.relu else ACT_QMIN


def dense_int(x_q: np.ndarray, layer: IntLayer) -> np.ndarray:
    """One layer of the spec on a batch of int8 inputs [N, I] -> int8 [N, C]."""
    acc = x_q.astype(np.int64) @ layer.w_q.T.astype(np.int64) + layer.bias_q.astype(np.int64)
    if acc.size and (acc.min() < ACC_MIN or acc.max() > ACC_MAX):
        raise OverflowError("dense_int: accumulator outside int32")
    return requantize(acc, layer.mult, layer.shift, layer.out_zero_point, lo=layer.lo)


def max_abs_accumulator(layer: IntLayer) -> int:
    """Worst-case |acc| over all int8 inputs (the bound that must fit int32)."""
    w = np.abs(layer.w_q.astype(np.int64)).sum(axis=1)
    return int((w * 128 + np.abs(layer.bias_q.astype(np.int64))).max(initial=0))


@dataclass
class IntModel:
    """A whole network in integer form: input quantization, then the layers in order.

    ``norm_mean``/``norm_std``/``decimate``/``context_frames`` describe the float
    front end that turns log-mel windows into the input vector (the engine's
    input boundary); ``feature_config`` is the log-mel config as a dict.
    """

    layers: list
    input_scale: float
    input_zero_point: int
    norm_mean: np.ndarray  # float32 [n_mels]
    norm_std: np.ndarray  # float32 [n_mels]
    context_frames: int
    decimate: int
    n_mels: int
    step_frames: int
    class_names: list
    feature_config: dict = field(default_factory=dict)

    def input_vector(self, windows: np.ndarray) -> np.ndarray:
        """Raw log-mel windows [N, context, M] -> float32 input vectors [N, I] (normalise, average groups)."""
        w = np.asarray(windows, np.float32)
        x = (w - self.norm_mean.astype(np.float32)) / self.norm_std.astype(np.float32)
        n = x.shape[0]
        x = x.reshape(n, self.context_frames // self.decimate, self.decimate, self.n_mels).mean(axis=2, dtype=np.float32)
        return x.reshape(n, -1)

    def quantize_input(self, windows: np.ndarray) -> np.ndarray:
        return quantize_input(self.input_vector(windows), self.input_scale, self.input_zero_point)

    def forward_int(self, x_q: np.ndarray) -> np.ndarray:
        """int8 input vectors [N, I] -> int8 logits [N, classes] (the reference spec)."""
        h = np.asarray(x_q, np.int8)
        for layer in self.layers:
            h = dense_int(h, layer)
        return h

    def logits(self, out_q: np.ndarray) -> np.ndarray:
        last = self.layers[-1]
        return (out_q.astype(np.float32) - last.out_zero_point) * np.float32(last.out_scale)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax, float32, in an operation order a C program reproduces bit for bit.

    ``z = l - max(l)`` (float32); ``e_j = float32(exp(float64(z_j)))`` (the exponential in float64,
    where every libm and numpy agree to far below float32 rounding); ``s = e_0 + e_1 + ...`` summed
    left to right in float32; ``p_j = e_j / s``. kws_pipeline.c computes exactly this, so the C
    detector's scores equal the numpy engine's, and thresholds read off these scores (the report's
    operating point) mean the same thing on both. ``stage2_int.int_posterior_fn`` uses it too.
    """
    logits = np.asarray(logits, np.float32)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z.astype(np.float64)).astype(np.float32)
    s = e[:, 0].copy()
    for j in range(1, e.shape[1]):
        s = s + e[:, j]
    return (e / s[:, None]).astype(np.float32)
