"""Model-agnostic evaluation primitives (numpy): accuracy, detection counting, DET curves, CIs.

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

import functools
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


# The evaluation protocol's settings. They live here, beside the detection rule they configure
# (count_detections), so that the torch-free inference path (kwslib detect) reads the same defaults.
@dataclass
class EvalConfig:
    smooth_windows: int = 3  # causal moving average of posteriors (steps)
    refractory_s: float = 1.0  # min time between two detection events of one keyword
    pad_s: float = 0.5  # test-noise padding around each clip for streamed clip scores
    tolerance_s: float = 0.5  # a detection this close to a clip of its keyword is not false
    stream_seed: int = 0
    stream_noise_share: float = 0.2  # share of pure-noise stretches in the negative stream
    min_events: int = 20  # the operating point must rest on >= this many events of negative audio
    operating_point_fdph: float | None = None  # None: smallest supported rate (metrics.choose_operating_point)
    n_boot: int = 1000
    boot_seed: int = 0
    # Paired parity (kwslib.replicates): the 95% interval of the FRR difference (quantized minus float, at
    # the operating point, speakers resampled) must lie inside [-margin, margin]. 0.02 = 2 points absolute:
    # about 4% of the float FRR of our profiles (~0.45), and about the spread of retraining the float model
    # on another CPU (0.586 vs 0.603 quick accuracy), so a smaller margin would ask more than retraining gives.
    parity_margin: float = 0.02


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


# --- scores over time -------------------------------------------------------------------------

def smooth_posteriors(post: np.ndarray, m: int) -> np.ndarray:
    """Causal moving average over the last ``m`` steps along axis 0.

    ``out[t] = mean(post[max(0, t-m+1) : t+1])``: the first ``m-1`` steps
    average only the steps that exist (no zero padding, which would bias the
    start of a stream towards "no keyword").
    """
    post = np.asarray(post, dtype=np.float64)
    if m < 1:
        raise ValueError(f"smooth_posteriors: window m must be >= 1, got {m}")
    if post.shape[0] == 0:
        return post.copy()
    c = np.cumsum(post, axis=0)
    out = c.copy()
    out[m:] = c[m:] - c[:-m]
    counts = np.minimum(np.arange(1, len(post) + 1), m).reshape((-1,) + (1,) * (post.ndim - 1))
    return out / counts


def count_detections(scores: np.ndarray, threshold: float, refractory: int,
                     allowed: np.ndarray | None = None) -> int:
    """Number of false detection events in a score sequence (the simple reference implementation).

    The detector fires at step ``t`` when ``scores[t] >= threshold`` and at
    least ``refractory`` steps (at least 1) have passed since it last fired:
    after a detection it is locked out for the refractory period, then re-arms,
    so a score that stays above the threshold fires again every ``refractory``
    steps (a detector stuck "on" keeps producing false alarms, as on a device).
    ``allowed`` (bool, same length) marks the steps where the true keyword is
    present: a detection there is correct (it still starts a lockout) and is
    not counted. Returns the number of detections outside ``allowed`` (all
    detections when ``allowed`` is None).

    Note: with a lockout the count is not strictly monotone in the threshold
    (a lockout started by an early low peak can hide a later peak).
    """
    scores = np.asarray(scores)
    if allowed is not None and len(allowed) != len(scores):
        raise ValueError(f"count_detections: allowed has {len(allowed)} steps, scores {len(scores)}")
    gap = max(int(refractory), 1)
    count, last = 0, None
    for t in range(len(scores)):
        if scores[t] >= threshold and (last is None or t - last >= gap):
            last = t
            if allowed is None or not allowed[t]:
                count += 1
    return count


@functools.lru_cache(maxsize=1)
def _c_counter_loads() -> bool:
    """Whether the C kernels load here, asked once per process (a failed build is not retried per call)."""
    from .ckernels import availability

    return availability()[0]


def count_detections_many(scores: np.ndarray, thresholds: np.ndarray, refractory: int,
                          allowed: np.ndarray | None = None, max_cells: int = 10_000_000,
                          backend: str = "auto") -> np.ndarray:
    """:func:`count_detections` for many thresholds at once: ``[len(thresholds)]`` int64 counts.

    ``backend``: ``"numpy"`` (the specification below), ``"c"`` (``kws_count_detections`` of the C
    kernels: the same counts, ~10x faster on long streams; CKernelsUnavailable without a compiler) or
    ``"auto"`` (C when it loads, else numpy).

    numpy: vectorised over thresholds: ``nxt[j, t]`` is the first step >= t whose
    score reaches threshold j (T when there is none); the detections of all
    thresholds are then followed together, one per threshold per iteration:
    ``t -> nxt[j, t + gap]``. Thresholds are processed in blocks of at most
    ``max_cells`` (threshold, step) cells to bound memory.
    """
    if backend not in ("auto", "numpy", "c"):
        raise ValueError(f"count_detections_many: backend must be 'auto', 'numpy' or 'c', got {backend!r}")
    scores = np.asarray(scores)
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    T = len(scores)
    if allowed is not None and len(allowed) != T:
        raise ValueError(f"count_detections_many: allowed has {len(allowed)} steps, scores {T}")
    false_at = np.ones(T, bool) if allowed is None else ~np.asarray(allowed, bool)
    counts = np.zeros(len(thresholds), np.int64)
    if T == 0:
        return counts
    if backend != "numpy" and scores.ndim == 1:
        from .ckernels import CKernelsUnavailable, count_detections_c

        if backend == "c" or _c_counter_loads():
            try:
                return count_detections_c(scores, thresholds, refractory, false_at)
            except CKernelsUnavailable:
                if backend == "c":
                    raise
    gap = max(int(refractory), 1)
    steps = np.arange(T, dtype=np.int32)
    block = max(1, max_cells // T)
    for b0 in range(0, len(thresholds), block):
        thr = thresholds[b0:b0 + block]
        above = scores[None, :] >= thr[:, None]
        if gap == 1:  # no lockout: every step above the threshold is a detection
            counts[b0:b0 + len(thr)] = (above & false_at).sum(axis=1)
            continue
        nxt = np.full((len(thr), T + 1), T, dtype=np.int32)  # column T: "none" sentinel
        nxt[:, :T] = np.where(above, steps, np.int32(T))
        np.minimum.accumulate(nxt[:, ::-1], axis=1, out=nxt[:, ::-1])
        rows, t = np.arange(len(thr)), nxt[:, 0]
        while rows.size:
            live = t < T
            rows, t = rows[live], t[live]
            counts[b0 + rows] += false_at[t]
            t = nxt[rows, np.minimum(t + gap, T)]
    return counts


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
    keyword k is truly present (see :func:`kwslib.streams.keyword_masks`).
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


def detection_steps(scores: np.ndarray, threshold: float, refractory: int) -> np.ndarray:
    """The steps where :func:`count_detections` (no ``allowed`` mask) fires: ``int64 [n_events]``.

    Jumps from one detection to the first step at or above the threshold at least
    ``refractory`` steps later, so it costs O(events * log T), not a Python loop over steps.
    """
    return steps_from_above(np.flatnonzero(np.asarray(scores) >= threshold), max(int(refractory), 1))


def steps_from_above(above: np.ndarray, gap: int) -> np.ndarray:
    """:func:`detection_steps` given the sorted steps at or above the threshold and the lockout ``gap`` (>= 1)."""
    out, i = [], 0
    while i < len(above):
        t = int(above[i])
        out.append(t)
        i = int(np.searchsorted(above, t + gap, side="left"))
    return np.asarray(out, np.int64)
