"""Model-agnostic evaluation measures (numpy): accuracy, DET curves, operating points, CIs.

The detection rule they count (smoothing, threshold, lockout) is :mod:`kwslib.deploy.detection`.

Conventions used throughout:

- A *score* is a smoothed keyword posterior in [0, 1]; a detection fires
  when the score reaches the threshold (``score >= threshold``).
- FRR (false rejection rate): the fraction of keyword clips whose score
  stays below the threshold.
- FDR (false detection rate, per clip): the fraction of negative clips whose
  score reaches the threshold.
- FD/h (false detections per hour): detection events on long test streams
  outside the keyword's own segments, divided by the stream's hours.

One threshold is shared by all keywords (the paper reports one operating
point per model, not per keyword).
"""
from __future__ import annotations

import numpy as np

from ..deploy.detection import count_detections_many
from ..errors import ConfigError


# --- classification ---------------------------------------------------------------------------

def _as_pred(pred) -> np.ndarray:
    pred = np.asarray(pred)
    return pred.argmax(axis=1) if pred.ndim == 2 else pred


def accuracy(pred, labels) -> float:
    """Fraction of correct predictions. ``pred`` is class indices ``[N]`` or scores ``[N, C]`` (argmax is taken)."""
    pred, labels = _as_pred(pred), np.asarray(labels)
    if pred.shape != labels.shape or pred.size == 0:
        raise ValueError(f"accuracy: need equal, non-empty shapes, got {pred.shape} and {labels.shape}")
    return float(np.mean(pred == labels))


def confusion_matrix(pred, labels, n_classes: int) -> np.ndarray:
    """``[n_classes, n_classes]`` int64 counts; rows are the true class, columns the predicted class."""
    pred, labels = _as_pred(pred).astype(np.int64), np.asarray(labels, dtype=np.int64)
    if pred.shape != labels.shape:
        raise ValueError(f"confusion_matrix: shapes differ: {pred.shape} and {labels.shape}")
    if pred.size and (min(pred.min(), labels.min()) < 0 or max(pred.max(), labels.max()) >= n_classes):
        raise ValueError(f"confusion_matrix: class index outside [0, {n_classes})")
    return np.bincount(labels * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


# --- DET curves -------------------------------------------------------------------------------

def default_thresholds(*score_arrays, max_points: int = 400) -> np.ndarray:
    """Threshold grid for DET curves: the distinct score values (thinned to about ``max_points``
    quantiles when there are more), plus 0 and 1, plus one value just above the largest score
    when that is >= 1, so that the grid always reaches "no detection at all"."""
    values = np.unique(np.concatenate([np.asarray(a, np.float64).ravel() for a in score_arrays]))
    if values.size > max_points:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, max_points)))
    extra = [0.0, 1.0]
    if values.size and values[-1] >= 1.0:
        extra.append(np.nextafter(values[-1], np.inf))
    return np.unique(np.concatenate([values, extra]))


def _frr(pos_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    s = np.sort(np.asarray(pos_scores, np.float64))
    if s.size == 0:
        raise ValueError("no positive (keyword) scores")
    return np.searchsorted(s, thresholds, side="left") / s.size  # fraction with score < thr


def det_curve_clips(pos_scores, neg_scores, thresholds=None) -> dict:
    """DET curve on clips: ``{"thresholds", "frr", "fdr"}`` (arrays, thresholds increasing).

    FRR = fraction of positive clips with score < thr; FDR = fraction of
    negative clips with score >= thr. Both are monotone in the threshold.
    """
    if thresholds is None:
        thresholds = default_thresholds(pos_scores, neg_scores)
    thresholds = np.sort(np.asarray(thresholds, np.float64))
    neg = np.sort(np.asarray(neg_scores, np.float64))
    if neg.size == 0:
        raise ValueError("det_curve_clips: no negative scores")
    fdr = 1.0 - np.searchsorted(neg, thresholds, side="left") / neg.size
    return {"thresholds": thresholds, "frr": _frr(pos_scores, thresholds), "fdr": fdr}


def det_curve_stream(pos_scores, stream_scores: np.ndarray, keyword_masks: np.ndarray, hours: float,
                     refractory: int, thresholds=None) -> dict:
    """DET curve of FRR against false detections per hour on long test streams.

    ``pos_scores``: one score per keyword clip (max over its streamed windows
    of the smoothed posterior of its own keyword), all keywords pooled.
    ``stream_scores`` ``[T, K]``: smoothed posterior of each of the K keywords
    at each step of the streams. ``keyword_masks`` ``[T, K]`` bool: steps where
    keyword k is truly present (see :func:`kwslib.data.streams.keyword_masks`).
    False detections are :func:`count_detections` events of each column
    outside its own mask, summed over keywords; ``fdph = count / hours``.

    Returns ``{"thresholds", "frr", "fdph", "false_detections"}``. FRR is
    non-decreasing in the threshold; FD/h usually falls but is not
    guaranteed to (see :func:`count_detections`); in particular a threshold
    at or below a column's lowest score is crossed once, at step 0, and
    counts as a single event.
    """
    stream_scores = np.asarray(stream_scores)
    keyword_masks = np.asarray(keyword_masks, bool)
    if stream_scores.ndim != 2 or keyword_masks.shape != stream_scores.shape:
        raise ValueError(f"det_curve_stream: stream_scores {stream_scores.shape} and keyword_masks "
                         f"{keyword_masks.shape} must both be [T, K]")
    if not hours > 0:
        raise ValueError(f"det_curve_stream: hours must be > 0, got {hours}")
    if thresholds is None:
        thresholds = default_thresholds(pos_scores, stream_scores)
    thresholds = np.sort(np.asarray(thresholds, np.float64))
    counts = np.zeros(len(thresholds), np.int64)
    for k in range(stream_scores.shape[1]):
        counts += count_detections_many(stream_scores[:, k], thresholds, refractory, keyword_masks[:, k])
    return {"thresholds": thresholds, "frr": _frr(pos_scores, thresholds),
            "fdph": counts / hours, "false_detections": counts}


# --- operating points and confidence ----------------------------------------------------------

def threshold_at_fdph(curve: dict, target_fdph: float) -> float:
    """The lowest threshold of ``curve`` whose FD/h is <= ``target_fdph``.

    FRR only grows with the threshold, so this is the threshold with the
    smallest FRR that respects the false-alarm budget.
    """
    ok = np.flatnonzero(np.asarray(curve["fdph"]) <= target_fdph)
    if ok.size == 0:
        raise ValueError(f"threshold_at_fdph: no threshold reaches {target_fdph} FD/h")
    thresholds = np.asarray(curve["thresholds"])
    return float(thresholds[ok].min())


def frr_at(pos_scores, threshold: float) -> float:
    """False rejection rate: fraction of positive scores below ``threshold``."""
    pos = np.asarray(pos_scores, np.float64)
    if pos.size == 0:
        raise ValueError("frr_at: no positive scores")
    return float(np.mean(pos < threshold))


def bootstrap_ci(pos_scores, threshold: float, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval (1 - alpha) of the FRR at ``threshold``.

    Resampling the n positives with replacement gives a resampled number of
    rejections that is exactly Binomial(n, observed FRR), so that is drawn
    directly (same distribution, no [n_boot, n] index array).
    """
    pos = np.asarray(pos_scores, np.float64)
    if pos.size == 0:
        raise ValueError("bootstrap_ci: no positive scores")
    rng = np.random.default_rng(seed)
    frr = rng.binomial(pos.size, np.mean(pos < threshold), size=n_boot) / pos.size
    lo, hi = np.quantile(frr, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def fdph_at_frr(curve: dict, target_frr: float) -> float:
    """FD/h at the threshold with the lowest FD/h among those whose FRR is <= ``target_frr``."""
    ok = np.asarray(curve["frr"]) <= target_frr
    if not ok.any():
        raise ValueError(f"fdph_at_frr: no threshold reaches FRR <= {target_frr}")
    return float(np.asarray(curve["fdph"])[ok].min())


def choose_operating_point(hours: float, min_events: int = 20,
                           candidates=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)) -> float:
    """The smallest candidate FD/h level that ``hours`` of negative audio can measure.

    A false-detection rate must rest on at least ``min_events`` events, so
    the level must satisfy ``level * hours >= min_events``; otherwise it is
    a count of a handful of events. Raises :class:`ConfigError` when the
    streams are too short for every candidate.
    """
    for c in sorted(candidates):
        if c * hours >= min_events:
            return float(c)
    raise ConfigError(f"{hours:.3f} h of test streams is too short: even {max(candidates)} FD/h "
                      f"would rest on fewer than {min_events} events; build longer streams")
