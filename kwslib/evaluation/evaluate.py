"""Evaluate any posterior function (float model, QAT model, integer engine) the same way.

A *posterior function* maps raw log-mel windows [N, context, n_mels] (numpy
float32) to class posteriors [N, 12]. Everything here is built on that, so
the float model, each quantized model and the integer engines are read on
identical audio, features, windows and thresholds.

Detection protocol (docs/DESIGN.md section 6; our assumptions where it is silent):

- Streaming: a window every ``step_frames`` (40 ms); the keyword score is the
  posterior of that keyword smoothed by a causal moving average over
  ``smooth_windows`` steps.
- Positives: each keyword clip of the test split, padded with ``pad_s`` of
  low-level test noise on both sides and streamed; its score is the max of
  its keyword's smoothed score over the windows.
- Negatives (per hour): long streams of audio that holds no keyword at all,
  one per source (:class:`NegativesConfig`): real non-keyword speech, synthetic
  non-keyword speech (espeak-ng), background noise (the test part of the
  noise recordings). Every detection there is false. An event is a score at
  or above the threshold at least ``refractory_s`` after the keyword's last
  event (a score that stays above the threshold fires again after each
  lockout; detection.count_detections). False detections are summed over the 10
  keywords and the sources, with one threshold shared by all keywords.
- Negatives (per clip): confusions between keywords. For keyword k every test
  clip of another class is a negative trial; false detection rate = trials
  scoring >= threshold.
- Operating point: a false-detection rate per hour that the negative hours
  can support (at least ``min_events`` events at that rate).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from . import metrics
from ..deploy import detection
from ..deploy.detection import EvalConfig  # noqa: F401 (defined with the detection rule it configures)
from ..data.base import CLASSES, KEYWORDS, CLASS_INDEX, ClipSet, Corpus, keyword_indices
from ..frontend.features import FeatureConfig, logmel_torch, num_frames
from ..frontend.streaming import center_window, sliding_windows
from ..data.streams import Stream, build_stream, keyword_masks, pad_clip

KEYWORD_IDX = [CLASS_INDEX[k] for k in KEYWORDS]


@dataclass
class NegativesConfig:
    """Which negative audio the per-hour axis is read on (each source is reported apart).

    Assumptions: the same negative audio serves every replicate (it is test-only audio, never
    trained on), so a difference between two models of one replicate is read on identical audio;
    synthetic speech uses espeak-ng voices that may also speak the synthetic keyword corpus
    (kwslib.data.negatives); real speech is read only when asked for, so that a profile runs offline.
    """

    real_speech: bool = False  # real non-keyword speech from real_root / $real_env (kwslib.data.negatives)
    real_root: str | None = None
    real_env: str = "KWS_REAL_NEGATIVES_ROOT"
    # which parts of the real speech (kwslib.data.negatives.REAL_PARTS, split by source folder) the stream reads:
    # None, every clip; ["test"], the part held out when a model trains on the others (data.unknown_real_parts)
    real_parts: list[str] | None = None
    real_noise: bool = True  # with real_speech: its noises/ recordings join the noise source
    synthetic_hours: float = 1.0  # espeak-ng non-keyword speech (0: none)
    synthetic_seed: int = 1000
    # which half of the negative vocabulary (kwslib.data.vocabulary.vocabulary_part) the synthetic speech is drawn
    # from: "test" (the default: rejection training, data.unknown_speech_hours, speaks the "train" half) or
    # "train" (validation negatives for choosing settings: kwslib.study.tuning; never the test half)
    synthetic_vocabulary: str = "test"
    noise: bool = True  # the test part of the corpus's noise recordings, as a source of its own
    noise_unit_s: float = 10.0  # noise is cut into units of this length for the bootstrap
    seed: int = 0  # clip order and gap noise of the speech streams

    def __post_init__(self):
        from ..errors import ConfigError

        if self.synthetic_hours < 0 or self.noise_unit_s <= 0:
            raise ConfigError(f"negatives: need synthetic_hours >= 0 and noise_unit_s > 0, got "
                              f"{self.synthetic_hours}, {self.noise_unit_s}")
        if self.real_parts is not None:
            from ..data.negatives import REAL_PARTS

            bad = sorted(set(self.real_parts) - set(REAL_PARTS))
            if bad or not self.real_parts:
                raise ConfigError(f"negatives.real_parts: {self.real_parts!r}; list parts from {list(REAL_PARTS)} "
                                  "(or null: all real speech)")
        if self.synthetic_vocabulary not in ("train", "test"):
            raise ConfigError(f"negatives.synthetic_vocabulary must be 'train' or 'test', got {self.synthetic_vocabulary!r}")
        if not (self.real_speech or self.synthetic_hours > 0 or self.noise):
            raise ConfigError("negatives: every source is switched off (real_speech, synthetic_hours, noise)")


@dataclass
class NegativeSource:
    """One negative stream, prepared once: its features and the unit of every streaming step."""

    name: str  # "real_speech", "synthetic_speech" or "noise"
    feats: torch.Tensor  # [frames, M]
    unit_of_step: np.ndarray  # [n_steps] index into unit_ids
    unit_ids: list  # one id per unit (clip + the gap before it, or a stretch of noise)
    unit_hours: np.ndarray  # [n_units]
    hours: float


@dataclass
class EvalData:
    """Features of the test split prepared once, reused for every model."""

    test: ClipSet
    clip_windows: torch.Tensor  # [N, context, M] centred window of each clip
    padded_feats: torch.Tensor  # [N, F_pad, M] features of each padded clip
    negatives: dict  # source name -> NegativeSource (the per-hour axis)
    context: int
    step: int
    feat_cfg: FeatureConfig
    stream: Stream | None = None  # the keyword-clip test stream (streaming checks of notebook 4), if built
    stream_feats: torch.Tensor | None = None  # [T_frames, M]
    masks: np.ndarray | None = None  # [n_steps, keywords] keyword regions of the stream
    classes: list = field(default_factory=lambda: list(CLASSES))  # the corpus's class names (labels index them)

    @property
    def keyword_idx(self) -> list[int]:
        """The keywords' class indices (every class but _silence_ and _unknown_)."""
        return keyword_indices(len(self.classes))

    @property
    def negative_hours(self) -> float:
        return float(sum(n.hours for n in self.negatives.values()))

    @property
    def stream_hours(self) -> float:
        """Hours of negative audio behind the per-hour axis (all sources)."""
        return self.negative_hours

    def hours_by_source(self) -> dict:
        return {k: float(v.hours) for k, v in self.negatives.items()}


def long_logmel(audio: np.ndarray, feat_cfg: FeatureConfig, chunk_frames: int = 50_000) -> torch.Tensor:
    """Log-mel features of a long signal, computed in chunks of frames (the same numbers as one call)."""
    hop, win = feat_cfg.hop_length, feat_cfg.win_length
    n = num_frames(len(audio), feat_cfg)
    out = torch.zeros((max(n, 0), feat_cfg.n_mels), dtype=torch.float32)
    for f0 in range(0, n, chunk_frames):
        f1 = min(n, f0 + chunk_frames)
        piece = np.ascontiguousarray(audio[f0 * hop:(f1 - 1) * hop + win], np.float32)
        out[f0:f1] = logmel_torch(torch.from_numpy(piece), feat_cfg)
    return out


def _own_keywords(corpus: Corpus) -> list[str] | None:
    """The corpus's keywords, or None for Speech Commands' 12 classes (whose paths and cache keys stay as before)."""
    return None if list(corpus.classes) == list(CLASSES) else corpus.keywords


def negative_streams(corpus: Corpus, cfg: NegativesConfig) -> list:
    """The negative streams :class:`NegativesConfig` asks for (kwslib.data.negative_streams.NegativeStream each)."""
    from ..data import negatives as neg, negative_streams as nstreams, vocabulary

    noise = list(corpus.noise_test)
    streams = []
    if cfg.real_speech:
        real = (neg.load_real_negatives(cfg.real_root, cfg.real_env, kind="speech") if cfg.real_parts is None
                else neg.real_part_clips(cfg.real_parts, cfg.real_root, cfg.real_env))
        streams.append(nstreams.build_negative_stream(real, noise, seed=cfg.seed, source="real_speech"))
        if cfg.real_noise:
            noise = noise + [c.audio for c in neg.load_real_negatives(cfg.real_root, cfg.real_env, kind="noise")]
    if cfg.synthetic_hours > 0:
        # by default the "test" half of the vocabulary: rejection training (data.unknown_speech_hours) uses the other
        # the vocabulary holds none of the corpus's keywords (nor their homophones)
        kws = _own_keywords(corpus)
        synth = neg.synthetic_negative_speech(cfg.synthetic_hours, seed=cfg.synthetic_seed, keywords=kws,
                                              vocabulary=vocabulary.vocabulary_part(cfg.synthetic_vocabulary,
                                                                                    keywords=kws))
        streams.append(nstreams.build_negative_stream(synth, list(corpus.noise_test), seed=cfg.seed + 1,
                                                 source="synthetic_speech"))
    if cfg.noise and noise:
        streams.append(nstreams.noise_stream(noise, unit_s=cfg.noise_unit_s, source="noise"))
    return streams


def _negative_sources(corpus: Corpus, feat_cfg: FeatureConfig, context: int, step: int, cfg: NegativesConfig,
                      cache_dir=None) -> dict:
    """source -> NegativeSource; features cached under ``cache_dir`` (keyed by everything they depend on)."""
    import json

    from ..data import negative_streams as nstreams
    from ..io import atomic_write_json

    def build():
        out = {}
        for st in negative_streams(corpus, cfg):
            feats = long_logmel(st.audio, feat_cfg)
            n_steps = len(sliding_windows(feats, context, step)) if len(feats) >= context else 0
            window = (context - 1) * feat_cfg.hop_length + feat_cfg.win_length
            u = nstreams.unit_of_step(st, n_steps, step * feat_cfg.hop_length, window)
            out[st.source] = NegativeSource(st.source, feats, u, [f"{st.source}:{x[2]}" for x in st.units],
                                            st.hours_by_unit(), st.hours)
        return out

    if cache_dir is None:
        return build()
    from pathlib import Path

    from ..data.cache import config_hash

    noise_fp = [(len(r), float(np.asarray(r[::997], np.float64).sum())) for r in corpus.noise_test]
    key = {"negatives": dataclasses.asdict(cfg), "features": dataclasses.asdict(feat_cfg), "context": context,
           "step": step, "noise_test": noise_fp, "schema": 2,
           **({} if _own_keywords(corpus) is None else {"keywords": corpus.keywords}),
           "real_root": (cfg.real_root or os.environ.get(cfg.real_env)) if cfg.real_speech else None}
    folder = Path(cache_dir) / f"negatives-{config_hash(key)}"
    meta = folder / "meta.json"
    if meta.is_file():
        try:
            info = json.loads(meta.read_text())
            return {k: NegativeSource(k, torch.from_numpy(np.load(folder / f"{k}.npy")),
                                      np.asarray(v["unit_of_step"], np.int64), v["unit_ids"],
                                      np.asarray(v["unit_hours"], np.float64), float(v["hours"]))
                    for k, v in info.items()}
        except (OSError, ValueError, KeyError) as exc:
            import warnings

            warnings.warn(f"negative-stream cache {folder} is damaged ({exc}); rebuilding it", stacklevel=2)
    out = build()
    folder.mkdir(parents=True, exist_ok=True)
    from ..io import atomic_path

    for k, v in out.items():
        with atomic_path(folder / f"{k}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, v.feats.numpy())
    atomic_write_json(meta, {k: {"unit_of_step": v.unit_of_step.tolist(), "unit_ids": v.unit_ids,
                                 "unit_hours": v.unit_hours.tolist(), "hours": v.hours} for k, v in out.items()})
    return out


def _clip_inputs(corpus: Corpus, feat_cfg: FeatureConfig, context: int, cfg: EvalConfig, cache_dir=None):
    """(centred window of each test clip, features of each clip padded with test noise); with ``cache_dir``
    read from / written to ``clips-<key>.npz`` there (keyed by the test audio, noise, features and padding),
    so the notebooks of a run compute them once per replicate."""
    from ..frontend.features import clip_features

    def build():
        test = corpus.test
        rng = np.random.default_rng(cfg.stream_seed)
        windows = center_window(clip_features(test.audio, feat_cfg), context)
        padded = np.stack([pad_clip(a, corpus.noise_test, cfg.pad_s, rng) for a in test.audio]) if len(test) else \
            np.zeros((0, 1), np.float32)
        return windows, clip_features(padded, feat_cfg)

    if cache_dir is None:
        return build()
    import hashlib
    from pathlib import Path

    from ..data.cache import config_hash
    from ..io import atomic_path

    audio = np.ascontiguousarray(np.asarray(corpus.test.audio, np.float32))
    h = hashlib.sha256(audio.tobytes() + np.asarray(corpus.test.labels, np.int64).tobytes())
    for r in corpus.noise_test:
        h.update(np.ascontiguousarray(r, np.float32).tobytes())
    key = {"audio": h.hexdigest(), "shape": list(audio.shape), "features": dataclasses.asdict(feat_cfg),
           "context": context, "pad_s": cfg.pad_s, "stream_seed": cfg.stream_seed, "schema": 1}
    path = Path(cache_dir) / f"clips-{config_hash(key)}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return torch.from_numpy(z["windows"]), torch.from_numpy(z["padded"])
        except (OSError, ValueError, KeyError) as exc:
            import warnings

            warnings.warn(f"clip-feature cache {path} is damaged ({exc}); rebuilding it", stacklevel=2)
    windows, padded = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, windows=np.asarray(windows), padded=np.asarray(padded))
    return windows, padded


def prepare_eval(corpus: Corpus, feat_cfg: FeatureConfig, context_frames: int, step_frames: int,
                 cfg: EvalConfig, negatives: NegativesConfig | None = None, cache_dir=None,
                 keyword_stream: bool = False) -> EvalData:
    """Test features prepared once per corpus: the clips, their padded streams and the negative streams.

    ``keyword_stream``: also build the stream of every test clip with noise gaps (notebook 4 checks the
    streaming engines on it; it is no longer the per-hour axis).
    """
    test = corpus.test
    clip_windows, padded_feats = _clip_inputs(corpus, feat_cfg, context_frames, cfg, cache_dir)
    neg_sources = _negative_sources(corpus, feat_cfg, context_frames, step_frames, negatives or NegativesConfig(),
                                    cache_dir)
    data = EvalData(test, clip_windows, padded_feats, neg_sources, context_frames, step_frames, feat_cfg,
                    classes=list(corpus.classes))
    if keyword_stream:
        data.stream = build_stream(test, corpus.noise_test, seed=cfg.stream_seed, noise_share=cfg.stream_noise_share)
        data.stream_feats = long_logmel(data.stream.audio, feat_cfg)
        n_steps = len(sliding_windows(data.stream_feats, context_frames, step_frames))
        data.masks = keyword_masks(data.stream, n_steps, step_frames * feat_cfg.hop_length,
                                   (context_frames - 1) * feat_cfg.hop_length + feat_cfg.win_length,
                                   data.keyword_idx, tolerance_s=cfg.tolerance_s)
    return data


def _posteriors(fn, windows: torch.Tensor, batch: int = 4096, n_classes: int = len(CLASSES)) -> np.ndarray:
    out = [np.asarray(fn(windows[i:i + batch].numpy()), np.float32) for i in range(0, len(windows), batch)]
    return np.concatenate(out) if out else np.zeros((0, n_classes), np.float32)


def clip_stream_scores(fn, data: EvalData, smooth: int) -> np.ndarray:
    """[N, classes]: per clip and class, max over the streamed windows of the smoothed posterior."""
    scores = []
    for i in range(0, len(data.padded_feats), 64):
        chunk = data.padded_feats[i:i + 64]
        w = torch.stack([sliding_windows(f, data.context, data.step) for f in chunk])  # [b, W, ctx, M]
        b, nw = w.shape[:2]
        post = _posteriors(fn, w.reshape(b * nw, data.context, -1), n_classes=len(data.classes)).reshape(b, nw, -1)
        sm = np.stack([detection.smooth_posteriors(p, smooth) for p in post])
        scores.append(sm.max(axis=1))
    return np.concatenate(scores) if scores else np.zeros((0, len(data.classes)), np.float32)


#: One threshold grid for every model and replicate (so DET curves can be pooled): 201 even steps plus
#: a fine ladder towards 1, where confident detectors put their thresholds. The last value lies just
#: above 1, so the grid always reaches "no detection at all" (a float32 posterior can be exactly 1).
THRESHOLDS = np.unique(np.concatenate([np.linspace(0.0, 1.0, 201), 1.0 - np.logspace(-6, -2, 41),
                                       [np.nextafter(1.0, 2.0)]]))


@dataclass
class EvalResult:
    accuracy: float
    confusion: np.ndarray
    pred: np.ndarray
    clip_scores: np.ndarray  # [N, 12] streamed clip scores
    pos_scores: np.ndarray  # keyword clips' own-keyword scores (pooled)
    negative_scores: dict  # source -> [n_steps, 10] smoothed keyword scores on that negative stream
    curve_stream: dict  # thresholds, frr, fdph, false_detections: all negative sources together
    curve_by_source: dict  # source -> the same curve on that source alone
    curve_clip: dict  # thresholds, frr, fdr (per-clip confusions between keywords)
    refractory: int = 1  # lockout in steps
    extra: dict = field(default_factory=dict)


def refractory_steps(data: EvalData, cfg: EvalConfig) -> int:
    step_s = data.step * data.feat_cfg.hop_length / data.feat_cfg.sample_rate
    return max(1, int(round(cfg.refractory_s / step_s)))


def evaluate(fn, data: EvalData, cfg: EvalConfig) -> EvalResult:
    """Run ``fn`` on the prepared test data: accuracy, the per-hour DET curve on the negative sources
    (together and per source) and the per-clip DET curve."""
    kw_idx, n_classes = data.keyword_idx, len(data.classes)
    post = _posteriors(fn, data.clip_windows, n_classes=n_classes)
    if post.shape[1] != n_classes:
        raise ValueError(f"evaluate: the model gives {post.shape[1]} class posteriors, the data has {n_classes} "
                         f"classes ({data.classes})")
    pred = post.argmax(1)
    labels = data.test.labels
    acc = metrics.accuracy(pred, labels)
    conf = metrics.confusion_matrix(pred, labels, n_classes)
    clip_scores = clip_stream_scores(fn, data, cfg.smooth_windows)
    is_kw = np.isin(labels, kw_idx)
    pos = clip_scores[is_kw, labels[is_kw]]
    # per-clip negatives: for keyword k, every clip of another class
    neg = np.concatenate([clip_scores[labels != k, k] for k in kw_idx])
    refractory = refractory_steps(data, cfg)
    scores, by_source = {}, {}
    counts = np.zeros(len(THRESHOLDS), np.int64)
    for name, src in data.negatives.items():
        windows = sliding_windows(src.feats, data.context, data.step)
        sc = detection.smooth_posteriors(_posteriors(fn, windows, n_classes=n_classes), cfg.smooth_windows)[:, kw_idx]
        scores[name] = sc.astype(np.float32)
        by_source[name] = metrics.det_curve_stream(pos, sc, np.zeros(sc.shape, bool), src.hours, refractory,
                                                   thresholds=THRESHOLDS)
        counts += by_source[name]["false_detections"]
    hours = data.negative_hours
    curve_stream = {"thresholds": THRESHOLDS.copy(), "frr": metrics.det_curve_clips(pos, neg, THRESHOLDS)["frr"],
                    "fdph": counts / hours, "false_detections": counts}
    curve_clip = metrics.det_curve_clips(pos, neg, thresholds=THRESHOLDS)
    return EvalResult(acc, conf, pred, clip_scores, pos, scores, curve_stream, by_source, curve_clip, refractory)


def operating_point(data: EvalData, cfg: EvalConfig) -> float:
    """The false detections per hour at which every model is read (from the negative hours)."""
    if cfg.operating_point_fdph is not None:
        return float(cfg.operating_point_fdph)
    return float(metrics.choose_operating_point(data.negative_hours, min_events=cfg.min_events))


def model_summary(res: EvalResult, op_fdph: float, cfg: EvalConfig, stage: str, weight_bits: int, params: int,
                  float_entry: dict | None = None) -> dict:
    """The single-run summary entry of one model (one replicate; docs/DESIGN.md section 8).

    ``float_entry``: the float model's entry (None when this *is* the float model). The
    ``parity`` here is the single-run test (the FRR inside the float model's interval), kept
    as a secondary column beside the paired equivalence test of :mod:`kwslib.study.replicates`.
    """
    thr = metrics.threshold_at_fdph(res.curve_stream, op_fdph)
    frr = metrics.frr_at(res.pos_scores, thr)
    ci = metrics.bootstrap_ci(res.pos_scores, thr, n_boot=cfg.n_boot, seed=cfg.boot_seed)
    ref_frr = frr if float_entry is None else float_entry["frr_at_op"]
    ref_ci = ci if float_entry is None else tuple(float_entry["frr_at_op_ci"])
    fdph = metrics.fdph_at_frr(res.curve_stream, ref_frr)
    return {"stage": stage, "weight_bits": int(weight_bits), "params": int(params), "accuracy": float(res.accuracy),
            "frr_at_op": float(frr), "frr_at_op_ci": [float(ci[0]), float(ci[1])], "threshold_at_op": float(thr),
            "fdph_at_float_frr": float(fdph), "parity": bool(ref_ci[0] <= frr <= ref_ci[1]),
            # `parity` is the results contract's two-sided test; a model better than float fails it,
            # so the one-sided reading is recorded too
            "no_worse_than_float": bool(frr <= ref_ci[1])}
