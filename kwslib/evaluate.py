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
- Negatives (per hour): one long stream of every test clip (keywords too, at
  known times) separated by test-noise gaps plus stretches of pure noise.
  A detection of keyword k counts as false unless it falls within a clip of k
  (tolerance ``tolerance_s``). An event is a score at or above the threshold
  at least ``refractory_s`` after the keyword's last event (a score that stays
  above the threshold fires again after each lockout; metrics.count_detections). False detections are summed over
  the 10 keywords, with one threshold shared by all keywords.
- Negatives (per clip): for keyword k every test clip of another class is a
  negative trial; false detection rate = trials scoring >= threshold.
- Operating point: a false-detection rate per hour that the stream can
  support (at least ``min_events`` events of negative audio at that rate).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import metrics
from .metrics import EvalConfig  # noqa: F401 (defined with the detection rule it configures)
from .data.base import CLASSES, KEYWORDS, CLASS_INDEX, ClipSet, Corpus
from .features import FeatureConfig, logmel_torch
from .streaming import center_window, sliding_windows
from .streams import Stream, build_stream, keyword_masks, pad_clip

KEYWORD_IDX = [CLASS_INDEX[k] for k in KEYWORDS]


@dataclass
class EvalData:
    """Features of the test split prepared once, reused for every model."""

    test: ClipSet
    clip_windows: torch.Tensor  # [N, context, M] centred window of each clip
    padded_feats: torch.Tensor  # [N, F_pad, M] features of each padded clip
    stream: Stream
    stream_feats: torch.Tensor  # [T_frames, M]
    masks: np.ndarray  # [n_steps, 10] keyword regions of the stream
    context: int
    step: int
    feat_cfg: FeatureConfig

    @property
    def stream_hours(self) -> float:
        return self.stream.hours


def prepare_eval(corpus: Corpus, feat_cfg: FeatureConfig, context_frames: int, step_frames: int,
                 cfg: EvalConfig) -> EvalData:
    from .train import clip_features

    test = corpus.test
    rng = np.random.default_rng(cfg.stream_seed)
    clip_windows = center_window(clip_features(test.audio, feat_cfg), context_frames)
    padded = np.stack([pad_clip(a, corpus.noise_test, cfg.pad_s, rng) for a in test.audio]) if len(test) else \
        np.zeros((0, 1), np.float32)
    padded_feats = clip_features(padded, feat_cfg)
    stream = build_stream(test, corpus.noise_test, seed=cfg.stream_seed, noise_share=cfg.stream_noise_share)
    stream_feats = logmel_torch(torch.from_numpy(stream.audio), feat_cfg)
    n_steps = len(sliding_windows(stream_feats, context_frames, step_frames))
    masks = keyword_masks(stream, n_steps, step_frames * feat_cfg.hop_length,
                          (context_frames - 1) * feat_cfg.hop_length + feat_cfg.win_length,
                          KEYWORD_IDX, tolerance_s=cfg.tolerance_s)
    return EvalData(test, clip_windows, padded_feats, stream, stream_feats, masks,
                    context_frames, step_frames, feat_cfg)


def _posteriors(fn, windows: torch.Tensor, batch: int = 4096) -> np.ndarray:
    out = [np.asarray(fn(windows[i:i + batch].numpy()), np.float32) for i in range(0, len(windows), batch)]
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def clip_stream_scores(fn, data: EvalData, smooth: int) -> np.ndarray:
    """[N, 12]: per clip and class, max over the streamed windows of the smoothed posterior."""
    scores = []
    for i in range(0, len(data.padded_feats), 64):
        chunk = data.padded_feats[i:i + 64]
        w = torch.stack([sliding_windows(f, data.context, data.step) for f in chunk])  # [b, W, ctx, M]
        b, nw = w.shape[:2]
        post = _posteriors(fn, w.reshape(b * nw, data.context, -1)).reshape(b, nw, -1)
        sm = np.stack([metrics.smooth_posteriors(p, smooth) for p in post])
        scores.append(sm.max(axis=1))
    return np.concatenate(scores) if scores else np.zeros((0, len(CLASSES)), np.float32)


@dataclass
class EvalResult:
    accuracy: float
    confusion: np.ndarray
    pred: np.ndarray
    clip_scores: np.ndarray  # [N, 12] streamed clip scores
    pos_scores: np.ndarray  # keyword clips' own-keyword scores (pooled)
    stream_scores: np.ndarray  # [n_steps, 10] smoothed keyword scores on the negative stream
    curve_stream: dict  # thresholds, frr, fdph
    curve_clip: dict  # thresholds, frr, fdr
    extra: dict = field(default_factory=dict)


def evaluate(fn, data: EvalData, cfg: EvalConfig) -> EvalResult:
    """Run ``fn`` on the prepared test data and compute accuracy and both DET curves."""
    post = _posteriors(fn, data.clip_windows)
    pred = post.argmax(1)
    labels = data.test.labels
    acc = metrics.accuracy(pred, labels)
    conf = metrics.confusion_matrix(pred, labels, len(CLASSES))
    clip_scores = clip_stream_scores(fn, data, cfg.smooth_windows)
    is_kw = np.isin(labels, KEYWORD_IDX)
    pos = clip_scores[is_kw, labels[is_kw]]
    # per-clip negatives: for keyword k, every clip of another class
    neg = np.concatenate([clip_scores[labels != k, k] for k in KEYWORD_IDX])
    stream_windows = sliding_windows(data.stream_feats, data.context, data.step)
    stream_post = _posteriors(fn, stream_windows)
    stream_scores = metrics.smooth_posteriors(stream_post, cfg.smooth_windows)[:, KEYWORD_IDX]
    step_s = data.step * data.feat_cfg.hop_length / data.feat_cfg.sample_rate
    refractory = max(1, int(round(cfg.refractory_s / step_s)))
    thresholds = np.unique(np.concatenate([np.linspace(0, 1, 201), np.quantile(pos, np.linspace(0, 1, 201))]))
    curve_stream = metrics.det_curve_stream(pos, stream_scores, data.masks, data.stream_hours, refractory,
                                            thresholds=thresholds)
    curve_clip = metrics.det_curve_clips(pos, neg, thresholds=thresholds)
    return EvalResult(acc, conf, pred, clip_scores, pos, stream_scores, curve_stream, curve_clip)


def operating_point(data: EvalData, cfg: EvalConfig) -> float:
    """The false detections per hour at which every model is read."""
    if cfg.operating_point_fdph is not None:
        return float(cfg.operating_point_fdph)
    return float(metrics.choose_operating_point(data.stream_hours, min_events=cfg.min_events))


def model_summary(res: EvalResult, op_fdph: float, cfg: EvalConfig, stage: str, weight_bits: int, params: int,
                  float_entry: dict | None = None) -> dict:
    """The summary.json entry of one model (the results contract, docs/DESIGN.md section 8).

    ``float_entry``: the float model's entry (None when this *is* the float model).
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


def save_curve(results_dir, name: str, res: EvalResult) -> None:
    """Store a model's DET curves as ``results_dir/curves/<name>.npz`` (atomic), for the report."""
    import io as _io
    from pathlib import Path

    from .io import atomic_write_bytes

    buf = _io.BytesIO()
    np.savez(buf, **{f"stream_{k}": np.asarray(v) for k, v in res.curve_stream.items()},
             **{f"clip_{k}": np.asarray(v) for k, v in res.curve_clip.items()}, accuracy=res.accuracy)
    atomic_write_bytes(Path(results_dir) / "curves" / f"{name}.npz", buf.getvalue())


def load_curves(results_dir) -> dict:
    """name -> {"stream": curve, "clip": curve, "accuracy": float} for every saved curve."""
    from pathlib import Path

    out = {}
    for f in sorted((Path(results_dir) / "curves").glob("*.npz")):
        with np.load(f) as z:
            out[f.stem] = {"stream": {k[7:]: z[k] for k in z.files if k.startswith("stream_")},
                           "clip": {k[5:]: z[k] for k in z.files if k.startswith("clip_")},
                           "accuracy": float(z["accuracy"])}
    return out
