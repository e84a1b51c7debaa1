"""The detector's decision rule (numpy): posterior smoothing, threshold and lockout.

One rule for every path that turns posteriors into detections: the evaluation's counts
(:mod:`kwslib.evaluation.metrics` builds DET curves on them), the numpy and C streaming detectors
(:mod:`kwslib.deploy.pipeline`, ``csrc/kws_pipeline.c``) and ``kwslib detect``. It lives in ``deploy``
because the torch-free inference path must read the same rule and the same defaults.

- A *score* is a smoothed keyword posterior in [0, 1]; a detection fires when the score reaches the
  threshold (``score >= threshold``) and the detector is not locked out (``refractory`` steps).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


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
    # Paired parity (kwslib.study.replicates): the 95% interval of the FRR difference (quantized minus float, at
    # the operating point, speakers resampled) must lie inside [-margin, margin]. 0.02 = 2 points absolute:
    # about 4% of the float FRR of our profiles (~0.45), and about the spread of retraining the float model
    # on another CPU (0.586 vs 0.603 quick accuracy), so a smaller margin would ask more than retraining gives.
    parity_margin: float = 0.02


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
    from ..deploy.ckernels import availability

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
        from ..deploy.ckernels import CKernelsUnavailable, count_detections_c

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
