"""The integer front end, specified once: 16-bit PCM in, the network's int8 input codes out.

This is the executable specification (numpy, vectorised over frames) that the C front end
(``csrc/kws_intfrontend.c``: portable scalar C and an aarch64 NEON path) computes bit for bit.
It replaces the float64 front end (:mod:`kwslib.frontend.features`) on the device path; the float front end
stays the training path and the reference these integers are measured against
(:func:`code_agreement`: share of equal int8 codes, largest difference).

Why a separate definition, and why these widths: an embedded keyword spotter computes its log-mel
in fixed point (TensorFlow Lite Micro's micro_frontend: int16 FFT, integer filterbank, fixed-point
log). A plain int16 FFT loses too much for the int8 codes of trained models to stay the same,
so this front end keeps int32 samples in a block floating point FFT, and every later step is sized
so that the codes match the float64 front end's (measured: >= 99 % equal, never more than 1 apart).
The models trained on float features stay valid; nothing is retrained.

Per frame of ``W = win_length`` samples ``s`` (int16), ``N = n_fft`` (a power of two), ``K = N / 2``:

1. window     ``p[n] = s[n] * h[n]``, ``h[n] = min(round(hann[n] * 2^16), 2^16 - 1)`` (Q16; the one centre
              weight 2^16 is clipped by 1 so that ``|p| <= 2^15 (2^16 - 1) < 2^31`` fits int32 exactly).
              Q16, not Q15: the window's rounding is the front end's noise floor (see Precision below).
2. block      ``b`` = bit length of ``max |p|`` (0 for a silent frame), ``e = b - B`` with
   scaling    ``B = 29 - floor(log2 W)`` (21 for W = 400), so that ``2 W 2^B < 2^31``;
              ``x = p >> e`` rounded half up (``(p + 2^(e-1)) >> e``) when ``e > 0``, else ``p << -e``
              (exact). So ``|x| <= 2^B`` and the frame's own exponent ``e`` is kept.
3. FFT        the real FFT of ``x`` (zero-padded to N) as a K-point complex FFT of
              ``z[j] = x[2j] + i x[2j+1]``: Stockham decimation in frequency (natural order in and out),
              radix-4 stages and a last radix-2 stage when K is not a power of 4 (:func:`fft_stockham`
              gives the butterflies), where a product by a Q31 twiddle ``w = round(2^31 e^{-2 pi i t / K})``
              (components clipped to +-(2^31 - 1)) rounds each real product on its own: ``rmul(a, w) = (a * w + 2^30) >> 31``
              (NEON's ``vqrdmulhq_s32``); ``re = rmul(dr, wr) - rmul(di, wi)``,
              ``im = rmul(dr, wi) + rmul(di, wr)``.
              Bound: every intermediate is a partial sum of at most W/2 inputs of modulus
              ``<= sqrt(2) 2^B`` times unit twiddles (W = 400: ``< 2^29.2``), plus at most 2 per stage of rounding.
4. split      ``Y[k] = A + rmulc(W_N^k, -i B)`` with ``A = Z[k] + conj Z[K-k]``,
              ``B = Z[k] - conj Z[K-k]`` (indices mod K): ``Y = 2 X`` (the half is kept, not rounded).
              ``|A|, |B| < 2^30.2``; ``|Y| = 2 |X| <= 2 W 2^B < 2^31`` (W = 400: ``< 2^30.7``): int32.
5. power      ``P[k] = (Yr^2 + Yi^2) >> 16`` (int64: ``|Y|^2 < 2^61.4``), for the bins the filterbank reads.
6. filterbank ``E[m] = sum_k P[k] * f[m, k]``, ``f = round(weight * 2^16)`` (<= 2^16). Bound, by Parseval:
              ``sum_k |Y_k|^2 <= 4 N sum x^2 <= 4 N W 2^(2B)`` (W = 400, N = 512: ``< 2^61.7``), and each bin's
              weights in one filter are <= 1: ``E`` fits int64. A config where ``4 N W 2^(2B) >= 2^62`` is
              refused.
7. log2       ``L = log2(E)`` in Q20: leading-bit position, 30 mantissa bits, a 257-entry table of
              ``round(log2(1 + i / 256) * 2^20)`` with linear interpolation (error < 3e-6), then the frame's
              scale: ``E`` is ``E_float * 2^(64 - 2e)`` (float64 front end's energy of samples ``s / 32768``),
              so ``L += (2e - 64) * 2^20``; and ``L = max(L, Lfloor)``, ``Lfloor = round(log2(log_floor) 2^20)``
              (``E = 0`` gives ``Lfloor``). ``|L| < 2^26``: int32.

Per window (the network's input; :class:`IntModel` decimates ``decimate`` frames per group):

8. group sum  ``S[g, m] = sum of decimate consecutive L`` (int32, ``< 2^28``).
9. code       ``q = clamp((S * A[m] + C[m]) >> n[m], -128, 127)``: one multiply-shift per mel bin that folds
              log2 -> ln, the average, the normalisation ``(ln E - mean) / std``, the input scale, the
              zero point and the rounding ``floor(x / scale + 0.5)``:
              ``A[m] = round(a 2^n)``, ``a = ln 2 / (2^20 decimate std[m] scale)``, ``2^30 <= A < 2^31``,
              ``C[m] = round((z + 0.5 - mean[m] / (std[m] scale)) 2^n)`` (int64; the sum is checked < 2^62).

Precision: the window's rounding, ``s[n] (h[n] - hann[n] 2^16)``, is a noise locked to the signal, about
100 dB (Q15) or 106 dB (Q16) below the frame's peak; a mel bin that much quieter than the loudest one can
differ by more than a code. With a Q15 window one real recording did (a 90 dB drop to the top mel bin:
24 of 72.65M codes of sc12's 1-bit model on real speech were 2 apart); with Q16 the largest difference on
the same audio is 1. A frame of pure DC (the Hann side lobes) is still such a case; recorded speech is not.

Assumptions (named here, where they are made): ``n_fft`` is a power of two >= 8 and at most about
twice the window (the Parseval bound of step 6); the window fits ``n_fft``; the energy's int16 reading is
``s / 32768``, the inverse of :func:`kwslib.deploy.pipeline.as_pcm16`.
"""
from __future__ import annotations

import functools
from dataclasses import astuple, dataclass

import numpy as np

from ..errors import AudioError, ConfigError
from .features import FeatureConfig, StreamingFrontend, hann_window, mel_filterbank

WINDOW_BITS = 16      # Hann window in Q16 (clipped to 2^16 - 1)
SAMPLE_BITS = 15      # an int16 sample read as s / 2^15
POWER_SHIFT = 16      # P = |Y|^2 >> 16
MEL_BITS = 16         # filterbank weights in Q16
LOG_BITS = 20         # log2 values in Q20
LOG_TABLE_BITS = 8    # 256 table segments
MANTISSA_BITS = 30
# E = E_float * 2^(ENERGY_EXP - 2e): x = s/32768 * hann * 2^(31 - e) (Q15 sample, Q16 window), Y = 2X,
# P = |Y|^2 >> 16, f = weight * 2^16  ->  2 * (31 - e) + 2 - 16 + 16 = 64 - 2e
ENERGY_EXP = 2 * (SAMPLE_BITS + WINDOW_BITS) + 2 - POWER_SHIFT + MEL_BITS


# The declared bound of each step at the default config (W = 400, N = 512; log2 of the largest magnitude; see
# the module docstring). Checked by the tests at full-scale input; each leaves room below its container
# (int32: 31, int64: 63).
BOUNDS_LOG2 = {"window": 31.0, "block": 21.0, "fft": 29.2, "split": 30.2, "y": 30.7, "power_full": 61.4,
               "energy": 61.7, "log2": 26.0}


@dataclass(frozen=True)
class IntFrontendTables:
    """Everything the integer front end needs for one :class:`FeatureConfig` (the C code builds the same)."""

    cfg: FeatureConfig
    window: np.ndarray      # int32 [W] Q16 Hann (<= 2^16 - 1)
    tw_re: np.ndarray       # int64 [K] Q31 cos(2 pi t / K)
    tw_im: np.ndarray       # int64 [K] Q31 -sin(2 pi t / K)
    split_re: np.ndarray    # int64 [k1 - k0] Q31 cos(2 pi k / N), k in [k0, k1)
    split_im: np.ndarray    # int64 [k1 - k0] Q31 -sin(2 pi k / N)
    k0: int                 # first FFT bin the filterbank reads
    k1: int                 # one past the last
    fbank: np.ndarray       # int64 [k1 - k0, n_mels] Q16 weights
    log_table: np.ndarray   # int64 [257] Q20 log2(1 + i / 256)
    log_floor: int          # Q20 log2(log_floor)


def _q31(v: np.ndarray) -> np.ndarray:
    lim = 2 ** 31 - 1
    return np.clip(np.round(v * 2.0 ** 31), -lim, lim).astype(np.int64)


def block_bits(win_length: int) -> int:
    """B of step 2: FFT inputs are scaled to ``|x| <= 2^B``, ``B = 29 - floor(log2 W)`` (2 W 2^B < 2^31)."""
    return 29 - (int(win_length).bit_length() - 1)


def _check_cfg(cfg: FeatureConfig) -> None:
    n, w = cfg.n_fft, cfg.win_length
    if n < 8 or n & (n - 1):
        raise ConfigError(f"integer front end: n_fft must be a power of two >= 8, got {n}")
    if 4 * n * w * 2 ** (2 * block_bits(w)) >= 2 ** 62:
        raise ConfigError(f"integer front end: n_fft={n} is too long for a {w}-sample window "
                          "(the filterbank energies could overflow int64; use n_fft <= 2 * window)")


@functools.lru_cache(maxsize=16)
def _tables(cfg_key: tuple) -> IntFrontendTables:
    cfg = FeatureConfig(*cfg_key)
    _check_cfg(cfg)
    n, k = cfg.n_fft, cfg.n_fft // 2
    window = np.minimum(np.round(hann_window(cfg.win_length) * 2 ** WINDOW_BITS), 2 ** WINDOW_BITS - 1).astype(np.int32)
    t = np.arange(k)
    fb = mel_filterbank(cfg)  # [n/2 + 1, M]
    used = np.nonzero(fb.any(axis=1))[0]
    k0, k1 = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
    kk = np.arange(k0, k1)
    fq = np.round(fb[k0:k1] * 2 ** MEL_BITS).astype(np.int64)
    logt = np.round(np.log2(1.0 + np.arange(2 ** LOG_TABLE_BITS + 1) / 2 ** LOG_TABLE_BITS) * 2 ** LOG_BITS)
    return IntFrontendTables(
        cfg=cfg, window=window,
        tw_re=_q31(np.cos(2 * np.pi * t / k)), tw_im=_q31(-np.sin(2 * np.pi * t / k)),
        split_re=_q31(np.cos(2 * np.pi * kk / n)), split_im=_q31(-np.sin(2 * np.pi * kk / n)),
        k0=k0, k1=k1, fbank=fq, log_table=logt.astype(np.int64),
        log_floor=int(np.round(np.log2(cfg.log_floor) * 2 ** LOG_BITS)))


def tables(cfg: FeatureConfig | None = None) -> IntFrontendTables:
    """The integer front end's constant tables for ``cfg`` (cached; ConfigError for an unusable config)."""
    return _tables(astuple(cfg or FeatureConfig()))


def rmul(a, w):
    """One Q31 product, rounded half up: ``(a * w + 2^30) >> 31`` (int64 arrays; NEON vqrdmulhq_s32)."""
    return (a * w + (1 << 30)) >> 31


def block_scale(p: np.ndarray, bits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Windowed frames ``p`` [F, W] (int64, |p| < 2^31) -> (x [F, W] with |x| <= 2^B, exponent e [F]).
    ``bits``: B (default :func:`block_bits` of W, the specification's; other values for width studies)."""
    m = np.abs(p).max(axis=1) if p.shape[1] else np.zeros(len(p), np.int64)
    _, blen = np.frexp(m.astype(np.float64))  # m = f 2^blen, 0.5 <= f < 1: blen = bit length (0 for m = 0)
    e = np.where(m > 0, blen.astype(np.int64) - (block_bits(p.shape[1]) if bits is None else bits), 0)
    pos = np.maximum(e, 0)[:, None]
    down = (p + np.where(pos > 0, np.int64(1) << np.maximum(pos - 1, 0), 0)) >> pos
    up = p << np.maximum(-e, 0)[:, None]
    return np.where(e[:, None] > 0, down, up), e


def _peak(stats: dict | None, key: str, *arrays) -> None:
    if stats is not None:
        v = max((int(np.abs(a).max(initial=0)) for a in arrays), default=0)
        stats[key] = max(stats.get(key, 0), v)


def cmul(dr, di, wr, wi):
    """A complex product by a Q31 twiddle, each real product rounded on its own (:func:`rmul`)."""
    return rmul(dr, wr) - rmul(di, wi), rmul(dr, wi) + rmul(di, wr)


def fft_stockham(re: np.ndarray, im: np.ndarray, tb: IntFrontendTables,
                 stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """K-point complex FFT of rows [F, K] (int64) in the specified fixed-point arithmetic (step 3).

    Stockham decimation in frequency, natural order in and out: radix-4 stages while the sub-transform
    length n is >= 4, then one radix-2 stage when K is not a power of 4. Radix-4 stage (m = n / 4,
    stride s, w = W_n = W_K^s), for p < m, q < s, with a_j = x[q + s (p + j m)]:
    ``b0 = a0 + a2, b1 = a0 - a2, b2 = a1 + a3, b3 = -i (a1 - a3)`` (exact: a swap and a sign),
    ``y[q + s 4p] = b0 + b2``, ``y[q + s (4p+1)] = (b1 + b3) w^p``, ``y[q + s (4p+2)] = (b0 - b2) w^2p``,
    ``y[q + s (4p+3)] = (b1 - b3) w^3p`` (products by :func:`cmul`). Radix-2 stage (n = 2):
    ``y[q] = a + b, y[q + s] = a - b`` (its twiddle is 1). ``stats``: ``stats["fft"]`` gets the largest
    |component| of any stage's output."""
    def mul(dr, di, t):
        return cmul(dr, di, tb.tw_re[t], tb.tw_im[t])

    n, s = re.shape[1], 1
    while n >= 2:
        re, im, n, s = stockham_stage(re, im, n, s, mul)
        _peak(stats, "fft", re, im)
    return re, im


def stockham_stage(re: np.ndarray, im: np.ndarray, n: int, s: int, mul) -> tuple[np.ndarray, np.ndarray, int, int]:
    """One stage of :func:`fft_stockham` on rows [F, K] (sub-transform length n, stride s): radix 4 when n >= 4,
    else radix 2. ``mul(dr, di, t)`` multiplies (dr, di) by the twiddle ``W_K^t`` (t: int array [1, m, 1]) in the
    caller's arithmetic. Returns (re, im, n / radix, s * radix)."""
    f, k = re.shape
    if n >= 4:
        m = n // 4
        xr, xi = re.reshape(f, 4, m, s), im.reshape(f, 4, m, s)
        b0r, b0i = xr[:, 0] + xr[:, 2], xi[:, 0] + xi[:, 2]
        b1r, b1i = xr[:, 0] - xr[:, 2], xi[:, 0] - xi[:, 2]
        b2r, b2i = xr[:, 1] + xr[:, 3], xi[:, 1] + xi[:, 3]
        b3r, b3i = xi[:, 1] - xi[:, 3], xr[:, 3] - xr[:, 1]  # -i (a1 - a3)
        p = np.arange(m) * s
        outs = [(b0r + b2r, b0i + b2i)]
        for j, (dr, di) in ((1, (b1r + b3r, b1i + b3i)), (2, (b0r - b2r, b0i - b2i)), (3, (b1r - b3r, b1i - b3i))):
            outs.append(mul(dr, di, (j * p)[None, :, None]))
        re = np.stack([o[0] for o in outs], axis=2).reshape(f, k)  # [F, m, 4, s]
        im = np.stack([o[1] for o in outs], axis=2).reshape(f, k)
        return re, im, m, 4 * s
    xr, xi = re.reshape(f, 2, s), im.reshape(f, 2, s)
    re = np.stack([xr[:, 0] + xr[:, 1], xr[:, 0] - xr[:, 1]], axis=1).reshape(f, k)
    im = np.stack([xi[:, 0] + xi[:, 1], xi[:, 0] - xi[:, 1]], axis=1).reshape(f, k)
    return re, im, n // 2, 2 * s


def frames_log2(frames: np.ndarray, cfg: FeatureConfig | None = None, stats: dict | None = None) -> np.ndarray:
    """int16 frames [F, win_length] -> Q20 log2 mel energies L [F, n_mels] (int32): steps 1-7.

    ``stats``: a dict that receives the largest magnitude each step reached (``window``, ``block``,
    ``fft``, ``split``, ``y``, ``power_full`` (``|Y|^2`` before the shift), ``energy``, ``log2``), to
    check the declared bounds."""
    tb = tables(cfg)
    cfg = tb.cfg
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[1] != cfg.win_length:
        raise AudioError(f"frames_log2: expected [F, {cfg.win_length}] frames, got shape {frames.shape}")
    p = frames.astype(np.int64) * tb.window.astype(np.int64)
    x, e = block_scale(p)
    _peak(stats, "window", p)
    _peak(stats, "block", x)
    zr, zi = fft_stockham(*fft_input(x, cfg.n_fft), tb, stats)
    full = split_power(zr, zi, tb, stats)
    energy = (full >> POWER_SHIFT) @ tb.fbank  # int64 matmul: exact (bounded < 2^61.7, step 6)
    _peak(stats, "energy", energy)
    out = log2_q20(energy, e, tb)
    _peak(stats, "log2", out)
    return out


def fft_input(x: np.ndarray, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Block-scaled frames x [F, W] -> the FFT's input rows ``z = x[2j] + i x[2j+1]`` (zero-padded to n_fft)."""
    xp = np.zeros((len(x), n_fft), np.int64)
    xp[:, :x.shape[1]] = x
    return xp[:, 0::2].copy(), xp[:, 1::2].copy()


def split_power(zr: np.ndarray, zi: np.ndarray, tb: IntFrontendTables, stats: dict | None = None) -> np.ndarray:
    """Steps 4-5 before the shift: the real-FFT split of the K-point FFT rows (zr, zi) [F, K] and
    ``|Y|^2 = Yr^2 + Yi^2`` (int64) for the bins the filterbank reads, [F, k1 - k0]."""
    k = zr.shape[1]
    kk = np.arange(tb.k0, tb.k1)
    rk = (k - kk) % k
    kk = kk % k
    a_re, a_im = zr[:, kk] + zr[:, rk], zi[:, kk] - zi[:, rk]
    b_re, b_im = zr[:, kk] - zr[:, rk], zi[:, kk] + zi[:, rk]
    # -i B = (b_im, -b_re); Y = A + W (-i B)
    y_re = a_re + (rmul(b_im, tb.split_re) - rmul(-b_re, tb.split_im))
    y_im = a_im + (rmul(b_im, tb.split_im) + rmul(-b_re, tb.split_re))
    _peak(stats, "split", a_re, a_im, b_re, b_im)
    _peak(stats, "y", y_re, y_im)
    full = y_re * y_re + y_im * y_im
    _peak(stats, "power_full", full)
    return full


def log2_q20(energy: np.ndarray, e: np.ndarray, tb: IntFrontendTables) -> np.ndarray:
    """Step 7: int64 energies [F, M] and frame exponents e [F] -> Q20 log2 of the float energies, floored."""
    energy = np.asarray(energy, np.int64)
    _, bits = np.frexp(energy.astype(np.float64))  # exact bit length for E < 2^53; corrected below for more
    lead = bits.astype(np.int64) - 1
    # float64 rounding can carry E just below a power of two up to it: fix the bit length exactly
    lead = np.where((lead >= 0) & ((energy >> np.clip(lead, 0, 62)) == 0), lead - 1, lead)
    lead = np.maximum(lead, 0)
    norm = np.where(lead >= MANTISSA_BITS, energy >> np.maximum(lead - MANTISSA_BITS, 0),
                    energy << np.maximum(MANTISSA_BITS - lead, 0))
    frac = norm & ((1 << MANTISSA_BITS) - 1)
    rest_bits = MANTISSA_BITS - LOG_TABLE_BITS
    i, r = frac >> rest_bits, frac & ((1 << rest_bits) - 1)
    t0, t1 = tb.log_table[i], tb.log_table[i + 1]
    val = (lead << LOG_BITS) + t0 + (((t1 - t0) * r) >> rest_bits)
    val = val + ((2 * np.asarray(e, np.int64)[:, None] - ENERGY_EXP) << LOG_BITS)
    val = np.where(energy > 0, np.maximum(val, tb.log_floor), tb.log_floor)
    return val.astype(np.int32)


def num_frames(n_samples: int, cfg: FeatureConfig) -> int:
    return 0 if n_samples < cfg.win_length else 1 + (n_samples - cfg.win_length) // cfg.hop_length


def log2_mel(pcm: np.ndarray, cfg: FeatureConfig | None = None, chunk: int = 4096, frames_fn=None) -> np.ndarray:
    """int16 PCM (1-D) -> Q20 log2 mel energies [num_frames, n_mels] int32 (frames as kwslib.frontend.features).
    ``frames_fn(frames, cfg)``: the per-frame computation (default :func:`frames_log2`, the specification)."""
    frames_fn = frames_fn or frames_log2
    cfg = tables(cfg).cfg
    pcm = np.asarray(pcm)
    if pcm.ndim != 1 or pcm.dtype != np.int16:
        raise AudioError(f"log2_mel: expected 1-D int16 PCM, got {pcm.dtype} of shape {pcm.shape}")
    n = num_frames(len(pcm), cfg)
    if n == 0:
        return np.zeros((0, cfg.n_mels), np.int32)
    view = np.lib.stride_tricks.sliding_window_view(pcm, cfg.win_length)[::cfg.hop_length][:n]
    return np.concatenate([frames_fn(view[i:i + chunk], cfg) for i in range(0, n, chunk)])


def to_ln(l_q20) -> np.ndarray:
    """Q20 log2 values -> natural-log float64 (for comparing with :func:`kwslib.frontend.features.logmel_numpy`)."""
    return np.asarray(l_q20, np.float64) * (np.log(2.0) / 2 ** LOG_BITS)


@dataclass(frozen=True)
class CodeMap:
    """Step 9 for one model: per mel bin ``q = clamp((S * mult + add) >> shift, -128, 127)``."""

    mult: np.ndarray   # int64 [M], in [2^30, 2^31)
    add: np.ndarray    # int64 [M]
    shift: np.ndarray  # int64 [M]
    decimate: int


def code_map(model) -> CodeMap:
    """The multiply-shift per mel bin of an :class:`kwslib.quant.intspec.IntModel` (its normalisation,
    decimation, input scale and zero point), checked for overflow at the largest group sum."""
    mean = np.asarray(model.norm_mean, np.float64)
    std = np.asarray(model.norm_std, np.float64)
    scale, zp, d = float(model.input_scale), int(model.input_zero_point), int(model.decimate)
    if not (np.all(std > 0) and scale > 0 and np.all(np.isfinite(mean))):
        raise ConfigError("code_map: the model's norm_std and input_scale must be positive, norm_mean finite")
    a = np.log(2.0) / (2.0 ** LOG_BITS * d * std * scale)
    _, ex = np.frexp(a)  # a = f 2^ex, 0.5 <= f < 1: A = a 2^n in [2^30, 2^31) for n = 31 - ex
    shift = (31 - ex).astype(np.int64)
    if np.any(shift < 1) or np.any(shift > 62):
        raise ConfigError(f"code_map: per-bin factor out of range (shifts {shift.min()}..{shift.max()})")
    mult = np.round(a * np.exp2(shift)).astype(np.int64)
    over = mult >= 2 ** 31
    mult[over] //= 2
    shift[over] -= 1
    add = np.round((zp + 0.5 - mean / (std * scale)) * np.exp2(shift.astype(np.float64)))
    s_max = d * 2 ** 26  # |L| < 2^26 (step 7)
    if np.any(np.abs(add) + s_max * mult.astype(np.float64) >= 2.0 ** 62):
        raise ConfigError("code_map: S * mult + add could overflow int64 for this model's normalisation")
    return CodeMap(mult=mult, add=add.astype(np.int64), shift=shift, decimate=d)


def group_codes(l_frames: np.ndarray, cmap: CodeMap) -> np.ndarray:
    """Q20 log2 frames [..., G * decimate, M] -> int8 codes [..., G, M] (steps 8 and 9)."""
    l_frames = np.asarray(l_frames, np.int64)
    *lead, f, m = l_frames.shape
    if f % cmap.decimate:
        raise ValueError(f"group_codes: {f} frames is not a multiple of decimate={cmap.decimate}")
    s = l_frames.reshape(*lead, f // cmap.decimate, cmap.decimate, m).sum(axis=-2)
    q = (s * cmap.mult + cmap.add) >> cmap.shift
    return np.clip(q, -128, 127).astype(np.int8)


def window_codes(l_windows: np.ndarray, model, cmap: CodeMap | None = None) -> np.ndarray:
    """Q20 log2 windows [N, context, M] -> the network's int8 input codes [N, I] (as IntModel.quantize_input)."""
    cmap = cmap or code_map(model)
    codes = group_codes(l_windows, cmap)
    return codes.reshape(len(codes), -1)


def clip_codes(pcm: np.ndarray, model) -> np.ndarray:
    """int16 PCM of one clip -> int8 input codes of every window the streaming model sees [N, I]."""
    from .features import model_features
    from .streaming import sliding_windows

    l_frames = log2_mel(pcm, model_features(model))
    return window_codes(sliding_windows(l_frames, model.context_frames, model.step_frames), model)


def code_agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Equal share and largest absolute difference of two int8 code arrays of one shape."""
    a, b = np.asarray(a, np.int16), np.asarray(b, np.int16)
    if a.shape != b.shape:
        raise ValueError(f"code_agreement: shapes differ {a.shape} vs {b.shape}")
    d = np.abs(a - b)
    return {"entries": int(d.size), "equal_share": float((d == 0).mean()) if d.size else 1.0,
            "max_abs_diff": int(d.max(initial=0)), "within_1_share": float((d <= 1).mean()) if d.size else 1.0}


class StreamingIntFrontend(StreamingFrontend):
    """Chunk-by-chunk integer front end: ``push(int16 chunk)`` -> the Q20 log2 frames it completes
    (exactly :func:`log2_mel` of the whole signal)."""

    def __init__(self, cfg: FeatureConfig | None = None):
        super().__init__(tables(cfg).cfg)

    def _check(self, chunk) -> np.ndarray:
        chunk = np.asarray(chunk)
        if chunk.size and (chunk.ndim != 1 or chunk.dtype != np.int16):
            raise AudioError(f"StreamingIntFrontend.push: expected 1-D int16 PCM, got {chunk.dtype} {chunk.shape}")
        return chunk.astype(np.int16).ravel()

    def _frames(self, buffer: np.ndarray) -> np.ndarray:
        return log2_mel(buffer, self.cfg)


def codes_both(pcm: np.ndarray, model, log2_fn=None) -> tuple[np.ndarray, np.ndarray]:
    """The int8 input codes of every streamed window of one int16 signal from both front ends:
    (float64 front end + ``IntModel.quantize_input``, integer front end). ``log2_fn``: int16 PCM -> Q20
    log2 frames (default :func:`log2_mel`, the specification; :class:`kwslib.deploy.pipeline.CIntFrontend`'s
    ``push`` computes the same integers faster)."""
    from .features import logmel_numpy, model_features
    from .streaming import sliding_windows

    feat = model_features(model)
    l_frames = (log2_fn or (lambda x: log2_mel(x, feat)))(pcm)
    f_frames = logmel_numpy(pcm.astype(np.float32) / 32768.0, feat)
    a = model.quantize_input(sliding_windows(f_frames, model.context_frames, model.step_frames)) \
        if len(f_frames) >= model.context_frames else np.zeros((0, model.layers[0].w_q.shape[1]), np.int8)
    b = window_codes(sliding_windows(l_frames, model.context_frames, model.step_frames), model) \
        if len(l_frames) >= model.context_frames else np.zeros_like(a)
    return a, b


def agreement_on_signals(model, signals, log2_fn=None, piece_s: float = 60.0) -> dict:
    """:func:`code_agreement` of the two front ends' codes over every window of every signal (int16 arrays),
    long signals read in pieces of ``piece_s`` seconds (windows across a piece boundary are left out)."""
    from .features import model_features

    rate = model_features(model).sample_rate
    n = equal = within = 0
    worst = 0
    step = int(piece_s * rate)
    for pcm in signals:
        pcm = np.asarray(pcm, np.int16)
        for i in range(0, max(len(pcm), 1), step):
            a, b = codes_both(pcm[i:i + step], model, log2_fn)
            d = np.abs(a.astype(np.int16) - b)
            n, equal, within = n + d.size, equal + int((d == 0).sum()), within + int((d <= 1).sum())
            worst = max(worst, int(d.max(initial=0)))
    return {"entries": n, "equal_share": equal / n if n else None, "within_1_share": within / n if n else None,
            "max_abs_diff": worst if n else None}
