"""The whole streaming detector, PCM in, detections out, on two backends that give the same detections.

Two front ends (``frontend=``): ``"int"`` (the default, what a chipset runs): the integer front end
of :mod:`kwslib.frontend.intfrontend`, whose int8 codes feed the network directly; ``"float"``: the float64
log-mel front end the models were trained on (the reference; the network quantizes its output).

- :class:`NumpyPipeline`: the executable specification in numpy: the front end
  (:class:`kwslib.frontend.intfrontend.StreamingIntFrontend` or
  :class:`kwslib.frontend.features.StreamingFrontend`), the sliding window
  (:class:`kwslib.frontend.streaming.StreamingRunner`), the integer engine's numpy spec
  (:class:`kwslib.deploy.engine.Engine`), :func:`kwslib.quant.intspec.softmax` and
  :class:`kwslib.deploy.engine.Detector`.
- :class:`CPipeline`: the same computation in C (``csrc/kws_pipeline.c``, ``csrc/kws_intfrontend.c``
  or ``csrc/kws_frontend.c`` with KISS FFT; ``kws_pipeline_push`` runs front end, window, network and detector with no
  allocation), through ctypes. Python only hands it int16 samples.

Both take int16 PCM at the model's sample rate (a device's ADC format) and return detections as
``(time_s, keyword, score)``; ``kwslib detect`` prints them. Agreement: the integer front end is
the same integers in both (bit-exact); the float front end is float64
in both (KISS FFT vs numpy's FFT differ by ~1e-16 relative, far below the float32 rounding of the
log-mel values), every later float step has the same operation order, so the detections are the
same (tested on keyword, noise and speech streams). No torch, scipy or datasets is imported here.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, ConfigError
from ..frontend.features import model_features

MODES = {"int": 0, "s8": 1, "f32": 2}
FRONTENDS = {"int": 0, "float": 1}  # kws_pipeline.h KWS_FE_INT, KWS_FE_FLOAT


class _FrontendConfig(ctypes.Structure):
    _fields_ = [("sample_rate", ctypes.c_int32), ("win_length", ctypes.c_int32), ("hop_length", ctypes.c_int32),
                ("n_fft", ctypes.c_int32), ("n_mels", ctypes.c_int32), ("fmin", ctypes.c_double),
                ("fmax", ctypes.c_double), ("log_floor", ctypes.c_double)]


class _PipelineConfig(ctypes.Structure):
    _fields_ = [("frontend", _FrontendConfig), ("context_frames", ctypes.c_int32), ("decimate", ctypes.c_int32),
                ("step_frames", ctypes.c_int32), ("norm_mean", ctypes.POINTER(ctypes.c_float)),
                ("norm_std", ctypes.POINTER(ctypes.c_float)), ("n_classes", ctypes.c_int32),
                ("class_names", ctypes.POINTER(ctypes.c_char_p)), ("threshold", ctypes.c_double),
                ("smooth_windows", ctypes.c_int32), ("refractory_steps", ctypes.c_int32),
                ("frontend_kind", ctypes.c_int32)]


class _Detection(ctypes.Structure):
    _fields_ = [("time_s", ctypes.c_double), ("score", ctypes.c_double), ("step", ctypes.c_int64),
                ("class_index", ctypes.c_int32), ("reserved", ctypes.c_int32)]


def frontend_config(feat) -> _FrontendConfig:
    """The C front end's config from a :class:`kwslib.frontend.features.FeatureConfig` (window and hop in samples)."""
    return _FrontendConfig(feat.sample_rate, feat.win_length, feat.hop_length, feat.n_fft, feat.n_mels,
                           float(feat.fmin), float(feat.fmax), float(feat.log_floor))


def window_end_time(step: int, model, feat) -> float:
    """Time (s) of the end of window ``step``: ``((step*step_frames + context - 1)*hop + win) / rate``."""
    return ((step * model.step_frames + model.context_frames - 1) * feat.hop_length + feat.win_length) \
        / feat.sample_rate


def detector_settings(model, extra: dict | None = None, threshold: float | None = None,
                      smooth_windows: int | None = None, refractory_s: float | None = None) -> dict:
    """The detector's settings for a model, as ``kwslib detect`` and the C header use them.

    ``threshold``: given, else ``extra["threshold"]`` (an artifact's stored operating point), else 0.5;
    ``origin`` says which. Smoothing and lockout default to :class:`kwslib.deploy.detection.EvalConfig`'s
    (the evaluation protocol's); the lockout in steps is ``max(1, round(refractory_s / step_s))``.
    """
    from .detection import EvalConfig

    extra = extra or {}
    ev, feat = EvalConfig(), model_features(model)
    if threshold is None:
        thr = float(extra.get("threshold", 0.5))
        origin = extra.get("threshold_source", "stored in the artifact") if "threshold" in extra \
            else "default 0.5: none stored in the artifact"
    else:
        thr, origin = float(threshold), "--threshold"
    smooth = ev.smooth_windows if smooth_windows is None else int(smooth_windows)
    step_s = model.step_frames * feat.hop_length / feat.sample_rate
    refr = max(1, int(round((ev.refractory_s if refractory_s is None else refractory_s) / step_s)))
    return {"threshold": thr, "origin": origin, "smooth_windows": smooth, "refractory_steps": refr,
            "step_s": step_s, "features": feat}


def harness_config_text(model, threshold: float, smooth_windows: int, refractory_steps: int) -> str:
    """The config file of ``csrc/kws_pipeline_harness.c`` (the aarch64 counting harness) for ``model``."""
    f = model_features(model)
    head = [f.sample_rate, f.win_length, f.hop_length, f.n_fft, f.n_mels, repr(float(f.fmin)), repr(float(f.fmax)),
            repr(float(f.log_floor)), model.context_frames, model.decimate, model.step_frames, repr(float(threshold)),
            int(smooth_windows), int(refractory_steps), len(model.class_names)]
    rows = [" ".join(map(str, head)),
            " ".join(repr(float(v)) for v in np.asarray(model.norm_mean, np.float32)),
            " ".join(repr(float(v)) for v in np.asarray(model.norm_std, np.float32)),
            " ".join(str(c) for c in model.class_names)]
    return "\n".join(rows) + "\n"


def as_pcm16(chunk) -> np.ndarray:
    """int16 PCM from int16 (as is) or float samples in [-1, 1] (round(x * 32768), saturated)."""
    a = np.asarray(chunk)
    if a.dtype == np.int16:
        return a
    return np.clip(np.rint(a.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def check_frontend(frontend: str, model) -> None:
    """ConfigError unless ``frontend`` is ``int`` or ``float`` and the model's window suits it."""
    if frontend not in FRONTENDS:
        raise ConfigError(f"front end must be one of {sorted(FRONTENDS)}, got {frontend!r}")
    if frontend == "int" and model.step_frames % model.decimate:
        raise ConfigError(f"the integer front end needs step_frames ({model.step_frames}) to be a multiple of "
                          f"decimate ({model.decimate}); use frontend='float'")


class NumpyPipeline:
    """The specification: numpy front end (integer or float64), window, integer engine (numpy), softmax, detector."""

    backend = "numpy"

    def __init__(self, artifact, threshold: float, smooth_windows: int, refractory_steps: int, frontend: str = "int"):
        from .engine import Detector, Engine
        from ..quant.intspec import softmax
        from .export import load_artifact
        from ..frontend.features import StreamingFrontend
        from ..frontend.intfrontend import StreamingIntFrontend, code_map, window_codes
        from ..frontend.streaming import StreamingRunner

        art = artifact if hasattr(artifact, "model") else load_artifact(artifact)
        self.model, self.feat = art.model, model_features(art.model)
        check_frontend(frontend, self.model)
        self.frontend = frontend
        self.engine = Engine(self.model, backend="numpy")
        m = self.model
        if frontend == "int":
            cmap = code_map(m)

            def posteriors(l_windows):
                return softmax(m.logits(self.engine.forward_q(window_codes(l_windows, m, cmap))))

            self._frontend = StreamingIntFrontend(self.feat)
            self._runner = StreamingRunner(posteriors, m.context_frames, m.step_frames, m.n_mels, dtype=np.int32)
        else:
            self._frontend, self._runner = StreamingFrontend(self.feat), self.engine.runner()
        self._detector = Detector(self.model.class_names, threshold, smooth_windows, refractory_steps)

    def describe(self) -> str:
        fe = "integer front end" if self.frontend == "int" else "float64 front end"
        return f"numpy (specification: {fe}, numpy integer engine)"

    def push(self, pcm) -> list[tuple[float, str, float]]:
        x = as_pcm16(pcm)
        frames = self._frontend.push(x if self.frontend == "int" else x.astype(np.float32) / 32768.0)
        if len(frames) == 0:
            return []
        post = self._runner.push(frames)
        if post.size == 0:
            return []
        return [(window_end_time(step, self.model, self.feat), kw, score)
                for step, kw, score in self._detector.push(post)]


class CPipeline:
    """The detector in C (``kws_pipeline.c``): create once, push int16 chunks of any size.

    ``mode``: ``"int"`` (4-bit kernel for layers of <= 4 bits, int8 containers otherwise),
    ``"s8"`` (int8 containers everywhere) or ``"f32"`` (the float32 network the integer one
    quantizes; for cost comparisons). ``frontend``: ``"int"`` (default) or ``"float"``.
    ``lib``: a :class:`kwslib.deploy.ckernels.CLib` (default: the best
    build for this CPU). Raises :class:`kwslib.deploy.ckernels.CKernelsUnavailable` without a compiler.
    """

    backend = "c"

    def __init__(self, artifact, threshold: float, smooth_windows: int, refractory_steps: int,
                 mode: str = "int", lib=None, frontend: str = "int"):
        from . import ckernels
        from .export import from_bytes

        if mode not in MODES:
            raise ConfigError(f"CPipeline mode must be one of {sorted(MODES)}, got {mode!r}")
        if hasattr(artifact, "model"):  # a loaded (validated) kwslib.deploy.export.Artifact
            art, blob, where = artifact, artifact.data, artifact.path
        else:
            if isinstance(artifact, (bytes, bytearray)):
                blob, where = bytes(artifact), "<artifact bytes>"
            else:
                where = str(artifact)
                try:
                    blob = Path(artifact).read_bytes()
                except OSError as exc:
                    raise ArtifactError(f"{where}: cannot read ({exc})") from exc
            art = from_bytes(blob, where)  # validated in Python first: a clear error names the problem
        self.model, self.feat, self.mode = art.model, model_features(art.model), mode
        check_frontend(frontend, self.model)
        self.frontend = frontend
        self.lib = lib or ckernels.load_library()
        m = self.model
        self._mean = np.ascontiguousarray(m.norm_mean, np.float32)
        self._std = np.ascontiguousarray(m.norm_std, np.float32)
        self._names = (ctypes.c_char_p * len(m.class_names))(*[str(c).encode() for c in m.class_names])
        cfg = _PipelineConfig(frontend_config(self.feat), m.context_frames, m.decimate, m.step_frames,
                              self._mean.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                              self._std.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), len(m.class_names),
                              self._names, float(threshold), int(smooth_windows), int(refractory_steps),
                              FRONTENDS[frontend])
        self._blob = ctypes.create_string_buffer(blob, len(blob))
        err = ctypes.c_int32(0)
        self._p = self.lib.lib.kws_pipeline_create(ctypes.byref(cfg), self._blob, len(blob), MODES[mode],
                                                   ctypes.byref(err))
        if not self._p:
            raise ArtifactError(f"{where}: the C pipeline refused it ({ckernels.ERRORS.get(err.value, err.value)})")
        self._out = None

    def describe(self) -> str:
        fe = "integer front end" if self.frontend == "int" else "float64 KISS FFT front end"
        return f"c (whole pipeline in C: {fe}, {self.lib.simd_path} {self.mode} network)"

    def push(self, pcm) -> list[tuple[float, str, float]]:
        x = np.ascontiguousarray(as_pcm16(pcm))
        L = self.lib.lib
        need = L.kws_pipeline_max_detections(self._p, len(x))
        if self._out is None or len(self._out) < need:
            self._out = (_Detection * max(need, 64))()
        n = L.kws_pipeline_push(self._p, x.ctypes.data, len(x), self._out, len(self._out))
        if n < 0:
            raise RuntimeError(f"kws_pipeline_push failed ({n})")
        names = self.model.class_names
        return [(d.time_s, names[d.class_index], d.score) for d in self._out[:n]]

    def reset(self):
        self.lib.lib.kws_pipeline_reset(self._p)

    @property
    def ram_bytes(self) -> int:
        """State + scratch of the whole pipeline (front end, frames, detector, activations), weights not included."""
        return int(self.lib.lib.kws_pipeline_ram_bytes(self._p))

    @property
    def weight_bytes(self) -> int:
        return int(self.lib.lib.kws_pipeline_weight_bytes(self._p))

    @property
    def windows(self) -> int:
        return int(self.lib.lib.kws_pipeline_windows(self._p))

    def __del__(self):
        p, self._p = getattr(self, "_p", None), None
        if p:
            self.lib.lib.kws_pipeline_free(p)


class CFrontend:
    """The C float64 front end alone (``kws_frontend.c``): int16 chunks -> log-mel frames, for checks against the spec.

    :class:`CIntFrontend` is the same wrapper around the integer front end (``PREFIX`` names the C functions)."""

    PREFIX, DTYPE, WHAT = "kws_frontend", np.float32, "front end"

    def __init__(self, feat, lib=None):
        from . import ckernels

        self.feat, self.lib = feat, lib or ckernels.load_library()
        self._call = {op: getattr(self.lib.lib, f"{self.PREFIX}_{op}")
                      for op in ("new", "free", "reset", "push_frames", "bytes")}
        cfg = frontend_config(feat)
        self._fe = self._call["new"](ctypes.byref(cfg))
        if not self._fe:
            raise ConfigError(f"the C {self.WHAT} refused the feature config {feat}")

    def reset(self) -> None:
        """Forget buffered samples (start of a new stream)."""
        self._call["reset"](self._fe)

    def frames(self, pcm) -> np.ndarray:
        """The frames of one whole signal (reset, then push): the specification's numbers."""
        self.reset()
        return self.push(pcm)

    def push(self, pcm) -> np.ndarray:
        x = np.ascontiguousarray(as_pcm16(pcm))
        most = (len(x) + self.feat.win_length) // self.feat.hop_length + 1
        out = np.zeros((most, self.feat.n_mels), self.DTYPE)
        n = self._call["push_frames"](self._fe, x.ctypes.data, len(x), out.ctypes.data, most)
        if n < 0:
            raise RuntimeError(f"{self.PREFIX}_push_frames failed ({n})")
        return out[:n]

    @property
    def bytes(self) -> int:
        return int(self._call["bytes"](self._fe))

    def __del__(self):
        fe, self._fe = getattr(self, "_fe", None), None
        if fe:
            self._call["free"](fe)


class CIntFrontend(CFrontend):
    """The C integer front end alone (``kws_intfrontend.c``): int16 chunks -> Q20 log2 mel frames (int32),
    :func:`kwslib.frontend.intfrontend.log2_mel`'s integers."""

    PREFIX, DTYPE, WHAT = "kws_ifrontend", np.int32, "integer front end"


def c_code_map(model, lib=None):
    """The C code map (``kws_icode_map``) of an IntModel: (mult, add, shift), to check against
    :func:`kwslib.frontend.intfrontend.code_map`. ConfigError when C refuses it."""
    from . import ckernels

    lib = lib or ckernels.load_library()
    m = model.n_mels
    mean = np.ascontiguousarray(model.norm_mean, np.float32)
    std = np.ascontiguousarray(model.norm_std, np.float32)
    mult, add, shift = np.zeros(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int32)
    rc = lib.lib.kws_icode_map(mean.ctypes.data, std.ctypes.data, m, int(model.decimate), float(model.input_scale),
                               int(model.input_zero_point), mult.ctypes.data, add.ctypes.data, shift.ctypes.data)
    if rc != 0:
        raise ConfigError("kws_icode_map refused the model's normalisation")
    return mult, add, shift


def open_pipeline(artifact, threshold: float, smooth_windows: int, refractory_steps: int, backend: str = "auto",
                  frontend: str = "int"):
    """A pipeline on ``backend``: ``numpy``, ``c``, or ``auto`` (C when a compiler is there, else numpy,
    with the reason in ``fallback_reason``), with the ``int`` (default) or ``float`` front end."""
    if backend not in ("auto", "numpy", "c"):
        raise ConfigError(f"backend must be auto, numpy or c, got {backend!r}")
    if backend == "numpy":
        return NumpyPipeline(artifact, threshold, smooth_windows, refractory_steps, frontend=frontend)
    from . import ckernels

    try:
        return CPipeline(artifact, threshold, smooth_windows, refractory_steps, frontend=frontend)
    except ckernels.CKernelsUnavailable as exc:
        if backend == "c":
            raise
        pipe = NumpyPipeline(artifact, threshold, smooth_windows, refractory_steps, frontend=frontend)
        pipe.fallback_reason = str(exc)
        return pipe


def stream_detections(pipe, pcm, chunk: int = 1600) -> list[tuple[float, str, float]]:
    """Every detection of ``pipe`` over int16 ``pcm`` pushed in ``chunk``-sample pieces (a device's audio buffers)."""
    pcm = as_pcm16(pcm)
    return [d for i in range(0, len(pcm), chunk) for d in pipe.push(pcm[i:i + chunk])]


def keyword_hits(detections, segments, class_names, sample_rate: int, slack_s: float = 1.0) -> np.ndarray:
    """For each keyword segment ``(start, end, class_index)`` of a test stream (non-keyword classes, names
    starting with ``_``, are skipped), whether a detection of that keyword falls in ``[start, end + slack_s]``
    seconds. Assumption: a detection is reported at the end of its window, up to about one window after the
    word ends, so ``slack_s`` defaults to the 1 s window."""
    by_kw = {}
    for t, kw, _ in detections:
        by_kw.setdefault(kw, []).append(t)
    times = {k: np.sort(np.asarray(v)) for k, v in by_kw.items()}
    hits = []
    for start, end, c in segments:
        name = class_names[c]
        if name.startswith("_"):
            continue
        t = times.get(name)
        lo, hi = start / sample_rate, end / sample_rate + slack_s
        hits.append(t is not None and bool(np.any((t >= lo) & (t <= hi))))
    return np.asarray(hits, bool)


def compare_frontends(artifact, threshold: float, smooth_windows: int, refractory_steps: int, pcm,
                      segments=None, backend: str = "c") -> dict:
    """One model behind the integer and the float64 front end on the same audio: detections of each, how many
    are identical (time, keyword and score), false detections per hour (when ``segments`` is None: audio with no
    keyword) or keyword hits, paired per keyword segment (the integer front end alone, the float one alone)."""
    from .export import load_artifact

    pcm = as_pcm16(pcm)
    art = artifact if hasattr(artifact, "model") else load_artifact(artifact)
    make = CPipeline if backend == "c" else NumpyPipeline
    det = {fe: stream_detections(make(art, threshold, smooth_windows, refractory_steps, frontend=fe), pcm)
           for fe in ("int", "float")}
    rate = model_features(art.model).sample_rate
    hours = len(pcm) / rate / 3600.0
    shared = len(set(det["int"]) & set(det["float"]))
    out = {"hours": hours, "detections": {k: len(v) for k, v in det.items()}, "identical": det["int"] == det["float"],
           "shared_detections": shared}
    if segments is None:
        out["false_detections_per_hour"] = {k: len(v) / hours if hours else None for k, v in det.items()}
    else:
        names = art.model.class_names
        hi, hf = (keyword_hits(det[fe], segments, names, rate) for fe in ("int", "float"))
        out.update(keyword_segments=int(len(hi)), hits={"int": int(hi.sum()), "float": int(hf.sum())},
                   int_only=int((hi & ~hf).sum()), float_only=int((hf & ~hi).sum()),
                   miss_rate={"int": float(1 - hi.mean()) if len(hi) else None,
                              "float": float(1 - hf.mean()) if len(hf) else None})
    return out


def frontend_study(artifacts: dict, negatives: dict, keyword_stream=None, backend: str = "c") -> dict:
    """The integer front end against the float64 one, per model, on the same audio: the share of equal int8 input
    codes (:func:`kwslib.frontend.intfrontend.agreement_on_signals`) and the detections behind each
    (:func:`compare_frontends`).

    ``artifacts``: name -> loaded artifact (its stored threshold is the operating point); ``negatives``: source
    name -> int16 audio with no keyword; ``keyword_stream``: ``(pcm, segments)`` of a test stream or None.
    Returns ``{"models": {name: {"codes": {source: agreement}, "detections": {source: comparison}}},
    "codes_equal_share": overall share of equal codes (every model and source), "codes_max_abs_diff"}``.
    """
    from ..frontend.intfrontend import agreement_on_signals

    out, n, equal, worst = {}, 0, 0.0, 0
    for name, art in artifacts.items():
        ds = detector_settings(art.model, art.extra)
        args = (ds["threshold"], ds["smooth_windows"], ds["refractory_steps"])
        log2_fn = CIntFrontend(model_features(art.model)).frames if backend == "c" else None  # same integers
        signals = dict(negatives)
        if keyword_stream is not None:
            signals["keyword_stream"] = keyword_stream[0]
        codes = {src: agreement_on_signals(art.model, [pcm], log2_fn) for src, pcm in signals.items()}
        det = {src: compare_frontends(art, *args, pcm, backend=backend) for src, pcm in negatives.items()}
        if keyword_stream is not None:
            det["keyword_stream"] = compare_frontends(art, *args, keyword_stream[0], segments=keyword_stream[1],
                                                      backend=backend)
        out[name] = {"threshold": args[0], "codes": codes, "detections": det}
        for c in codes.values():
            if c["entries"]:
                n, equal = n + c["entries"], equal + c["equal_share"] * c["entries"]
                worst = max(worst, c["max_abs_diff"])
    return {"models": out, "codes_equal_share": equal / n if n else None, "codes_max_abs_diff": worst if n else None}
