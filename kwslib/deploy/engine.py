"""The integer inference engine: numpy (the executable spec) or the C kernels, same integers.

    engine = Engine(int_model, backend="auto")      # or Engine.load("model.kws")
    engine.backend                                   # "c" or "numpy": what actually runs
    engine.forward_q(x_q)                            # int8 codes [N, I] -> int8 logits [N, classes]
    engine(windows)                                  # log-mel windows -> softmax posteriors (a posterior function)
    runner = engine.runner(); runner.push(frames)    # streaming: posteriors every step_frames

The numpy backend is :meth:`IntModel.forward_int` itself. ``backend="auto"``
uses the C kernels when they build and load here and falls back to numpy with
a warning saying why; ``backend="c"`` raises
:class:`~kwslib.deploy.ckernels.CKernelsUnavailable` instead. The input boundary is
the same for both: the float front end (normalise, average groups of frames)
in numpy, then input quantization (numpy, or in C for the C backend; same
float32 arithmetic).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..frontend.streaming import StreamingRunner
from ..quant.intspec import IntModel, softmax

BACKENDS = ("numpy", "c", "auto")


def float_layers(model: IntModel) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """The float32 network the integer model quantizes: [(W [C, I], b [C], relu)] on real-valued inputs.

    With g[c] = s_y * mult[c] * 2^-(31 + shift[c]) (the requantization's real factor
    times the output scale): W = (g[c] / s_x) * w_q, b = g[c] * (bias_q + z_x * sum_i w_q),
    computed in float64 and rounded once (csrc/kws_artifact.c does the same).
    Used as the float32 baseline of the benchmark (same model, same shapes).
    """
    out = []
    for layer in model.layers:
        m = layer.mult.astype(np.float64) * np.exp2(-(31.0 + layer.shift.astype(np.float64)))
        g = layer.out_scale * m
        w = layer.w_q.astype(np.float64)
        b = layer.bias_q.astype(np.int64) + int(layer.in_zero_point) * layer.w_q.astype(np.int64).sum(axis=1)
        out.append((((g / layer.in_scale)[:, None] * w).astype(np.float32), (g * b.astype(np.float64)).astype(np.float32),
                    bool(layer.relu)))
    return out


def float_forward(layers, x: np.ndarray) -> np.ndarray:
    """numpy float32 forward of :func:`float_layers` on input vectors [N, I]."""
    h = np.asarray(x, np.float32)
    for w, b, relu in layers:
        h = h @ w.T + b
        if relu:
            h = np.maximum(h, 0.0)
    return h


class Engine:
    """Integer inference of one :class:`IntModel` on the chosen backend.

    ``variant``: the C kernel build ('scalar', 'avx2', 'avx512vnni', ...; default
    the best for this CPU). ``kernel``: 'auto' (packed 4-bit kernel for layers
    of <= 4 bits) or 's8' (int8 containers everywhere).
    """

    def __init__(self, model: IntModel, backend: str = "auto", variant: str | None = None, kernel: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.model = model
        self.requested = backend
        self.fallback_reason = None
        self.cnet = None
        if backend in ("c", "auto"):
            from . import ckernels

            try:
                self.cnet = ckernels.CNet(model, ckernels.load_library(variant), kernel=kernel)
            except ckernels.CKernelsUnavailable as exc:
                if backend == "c":
                    raise
                self.fallback_reason = str(exc)
                warnings.warn(f"kwslib: C kernels unavailable, using the numpy engine: {exc}", RuntimeWarning,
                              stacklevel=2)
        self.backend = "c" if self.cnet is not None else "numpy"

    @classmethod
    def load(cls, path, backend: str = "auto", **kw) -> "Engine":
        """An engine for an exported artifact (validated; ArtifactError on a damaged file)."""
        from .export import load_artifact

        art = load_artifact(path)
        eng = cls(art.model, backend=backend, **kw)
        eng.artifact = art
        return eng

    def describe(self) -> str:
        if self.cnet is not None:
            kernels = "/".join(self.cnet.kernels)
            return f"c ({self.cnet.lib.simd_path}; layer kernels {kernels})"
        return "numpy" + (f" (fallback: {self.fallback_reason.splitlines()[0]})" if self.fallback_reason else "")

    # --- integer boundary ------------------------------------------------------------------------
    def forward_q(self, x_q: np.ndarray) -> np.ndarray:
        """int8 input codes [N, I] -> int8 logits [N, classes]."""
        if self.cnet is not None:
            return self.cnet.forward_q(x_q)
        return self.model.forward_int(np.asarray(x_q, np.int8))

    def forward_input(self, x: np.ndarray) -> np.ndarray:
        """float32 input vectors [N, I] -> int8 logits (input quantization included)."""
        if self.cnet is not None:
            return self.cnet.forward_f32(x)
        from ..quant.intspec import quantize_input

        return self.model.forward_int(quantize_input(x, self.model.input_scale, self.model.input_zero_point))

    # --- log-mel windows -------------------------------------------------------------------------
    def logits_q(self, windows: np.ndarray) -> np.ndarray:
        """Raw log-mel windows [N, context, n_mels] -> int8 logits."""
        windows = np.asarray(windows, np.float32)
        if len(windows) == 0:
            return np.zeros((0, len(self.model.class_names)), np.int8)
        return self.forward_input(self.model.input_vector(windows))

    def posteriors(self, windows: np.ndarray) -> np.ndarray:
        """Log-mel windows -> softmax posteriors [N, classes] of the dequantized int8 logits."""
        return softmax(self.model.logits(self.logits_q(windows)))

    __call__ = posteriors

    def runner(self) -> StreamingRunner:
        """Streaming: push log-mel frames, get posteriors every ``step_frames``."""
        m = self.model
        return StreamingRunner(self.posteriors, m.context_frames, m.step_frames, m.n_mels)


class Detector:
    """Streaming keyword detection on posteriors: causal moving average, threshold, refractory period.

    The same rule as kwslib.deploy.detection.count_detections: a detection is a step where a
    keyword's smoothed score (causal mean over ``smooth_windows`` steps) is at least
    ``threshold`` and at least ``refractory`` steps have passed since that keyword's
    previous detection (a lockout).
    """

    def __init__(self, class_names, threshold: float, smooth_windows: int = 3, refractory: int = 25):
        refractory = max(int(refractory), 1)
        self.keywords = [k for k, c in enumerate(class_names) if not str(c).startswith("_")]
        self.names = list(class_names)
        self.threshold, self.m, self.refractory = float(threshold), int(smooth_windows), int(refractory)
        self.history = np.zeros((0, len(self.keywords)), np.float64)
        self.last = np.full(len(self.keywords), -(10 ** 9))
        self.step = 0

    def push(self, post: np.ndarray) -> list[tuple[int, str, float]]:
        """Posteriors of the next steps [n, classes] -> [(step, keyword, score)] detections."""
        found = []
        for p in np.asarray(post, np.float64).reshape(-1, len(self.names)):
            self.history = np.concatenate([self.history, p[self.keywords][None]])[-self.m:]
            score = self.history.mean(axis=0)
            for j in np.flatnonzero(score >= self.threshold):
                if self.step - self.last[j] >= self.refractory:
                    self.last[j] = self.step
                    found.append((self.step, self.names[self.keywords[j]], float(score[j])))
            self.step += 1
        return found


def random_int_model(bits=8, dims=(960, 186, 186, 186, 12), seed: int = 0, n_mels: int = 40,
                     context_frames: int = 96, decimate: int = 4, step_frames: int = 4,
                     class_names=None, calib: int = 256) -> IntModel:
    """A synthetic :class:`IntModel` of random weight codes, for tests and benchmarks.

    ``bits``: one width for every layer or one per layer. The default dims are
    the paper-sized model (kwslib.model.ModelConfig). Biases and multipliers are
    calibrated on random inputs so that every layer's outputs spread over the
    int8 range (about half the ReLU outputs at zero, a few saturating at 127),
    as in a trained model; without this, random codes give degenerate outputs
    that would hide arithmetic errors.
    """
    from ..quant.intspec import IntLayer, dense_int, quantize_input, quantize_multiplier, weight_qmax

    rng = np.random.default_rng(seed)
    n = len(dims) - 1
    bits = [int(bits)] * n if np.isscalar(bits) else [int(b) for b in bits]
    if len(bits) != n or dims[0] != context_frames // decimate * n_mels:
        raise ValueError(f"random_int_model: {len(bits)} widths for {n} layers, input {dims[0]}")
    if class_names is None:
        from ..data.base import CLASSES

        class_names = list(CLASSES) if dims[-1] == len(CLASSES) else [f"class{k}" for k in range(dims[-1])]
    in_scale, in_zp = 4.0 / 128, 0
    h = quantize_input(rng.normal(0, 1, (calib, dims[0])), in_scale, in_zp)
    layers = []
    s_x, z_x = in_scale, in_zp
    for k, b in enumerate(bits):
        c, i = dims[k + 1], dims[k]
        qmax = weight_qmax(b)
        w = rng.integers(-qmax, qmax + 1, (c, i)) if b > 1 else rng.choice([-1, 1], (c, i))
        acc = (h.astype(np.int64) - z_x) @ w.T.astype(np.int64)
        sd = acc.std(axis=0) + 1.0
        bias_real = np.round(rng.normal(0, 0.3, c) * sd).astype(np.int64)
        relu = k < n - 1
        mult, shift = quantize_multiplier((90.0 if relu else 30.0) / sd)
        s_y = 0.05
        layer = IntLayer(w_q=w.astype(np.int8), bits=b, bias_q=bias_real - z_x * w.sum(axis=1), mult=mult,
                         shift=shift, in_scale=s_x, in_zero_point=z_x, out_scale=s_y,
                         out_zero_point=-128 if relu else 0, relu=relu)
        layers.append(layer)
        h = dense_int(h, layer)
        s_x, z_x = s_y, layer.out_zero_point
    return IntModel(layers=layers, input_scale=in_scale, input_zero_point=in_zp,
                    norm_mean=rng.normal(0, 1, n_mels).astype(np.float32),
                    norm_std=rng.uniform(0.5, 2.0, n_mels).astype(np.float32), context_frames=context_frames,
                    decimate=decimate, n_mels=n_mels, step_frames=step_frames, class_names=list(class_names),
                    feature_config={})


def eval_windows(data, batch: int = 8192, max_stream_windows: int | None = None):
    """Every window the evaluation protocol (kwslib.evaluation.evaluate.evaluate) reads, in numpy batches.

    Yields ``(part, windows [n, context, n_mels] float32)`` for part ``clips``
    (the centred window of each test clip), ``padded`` (the sliding windows of
    each noise-padded clip) and ``stream`` (the windows of every negative stream, source after source;
    at most the first ``max_stream_windows`` of each source when given).
    """
    from ..frontend.streaming import sliding_windows

    for i in range(0, len(data.clip_windows), batch):
        yield "clips", np.asarray(data.clip_windows[i:i + batch], np.float32)
    buf, n = [], 0
    for f in data.padded_feats:
        w = np.asarray(sliding_windows(f, data.context, data.step), np.float32)
        buf.append(w)
        n += len(w)
        if n >= batch:
            yield "padded", np.concatenate(buf)
            buf, n = [], 0
    if buf:
        yield "padded", np.concatenate(buf)
    for src in data.negatives.values():
        stream = sliding_windows(src.feats, data.context, data.step)
        if max_stream_windows is not None:
            stream = stream[:max_stream_windows]
        for i in range(0, len(stream), batch):
            yield "stream", np.asarray(stream[i:i + batch], np.float32)


def compare_logits(reference, others: dict, batches) -> dict:
    """Run ``reference`` and each of ``others`` (windows -> int8 logits) on every batch; count differences.

    Returns ``{name: {"windows", "elements", "differences", "max_abs_difference", "bit_exact"}}``.
    """
    out = {k: {"windows": 0, "elements": 0, "differences": 0, "max_abs_difference": 0} for k in others}
    for _, w in batches:
        ref = np.asarray(reference(w), np.int16)
        for k, fn in others.items():
            got = np.asarray(fn(w), np.int16)
            if got.shape != ref.shape:
                raise ValueError(f"compare_logits: {k} gave shape {got.shape}, reference {ref.shape}")
            d = np.abs(got - ref)
            r = out[k]
            r["windows"] += len(w)
            r["elements"] += int(ref.size)
            r["differences"] += int((d != 0).sum())
            r["max_abs_difference"] = max(r["max_abs_difference"], int(d.max(initial=0)))
    for r in out.values():
        r["bit_exact"] = r["differences"] == 0 and r["windows"] > 0
    return out
