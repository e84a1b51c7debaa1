"""Paired statistics for comparing a quantized model (B) with its float reference (A).

Both models are scored on the *same* evaluation units (keyword clips, or
stretches of negative audio), so every comparison here is paired: the
quantity of interest is the difference ``B - A`` measured unit by unit, not
two independent estimates set side by side.

Sign convention
---------------
Every ``diff`` in this module except :func:`mcnemar`'s is ``B - A`` of an
*error* measure (misses, false detections, per-hour false alarm rate), so a
**positive difference means the quantized model B is worse** (more misses /
more false alarms) and a negative one means B is better.  :func:`mcnemar`
works on paired *correctness* flags and its ``diff`` is ``mean(b) - mean(a)``
of those, so there a positive value means B is right more often.

Method
------
:func:`grouped_bootstrap_diff` estimates the ratio-of-sums difference

    D = sum(b) / sum(exposure) - sum(a) / sum(exposure)

(the FRR difference when ``a``/``b`` are 0/1 miss flags and the exposure is 1
per clip; the per-hour false-detection-rate difference when they are counts
and the exposure is hours) and a percentile bootstrap interval for it.

- The resampling unit is the *cluster* (speaker), not the unit: clips of one
  speaker are correlated (a speaker that one model misses tends to be missed
  on several clips), and resampling clips as if independent gives intervals
  that are too narrow by roughly sqrt(clips per speaker) when the
  correlation is strong.  A cluster carries all its units, with both models'
  values, into a resample, which keeps the pairing.
- With ``strata`` (e.g. the replicate index when results are pooled over
  several training/quantization replicates) clusters are resampled with
  replacement *within each stratum*, each stratum keeping its number of
  clusters; clusters never move between strata.  A group id that occurs in
  two strata is two different clusters.
- Each bootstrap replicate recomputes the ratio of resampled sums, so
  unequal cluster sizes / exposures are handled by the ratio estimator
  rather than by averaging per-cluster rates.
- The interval is the plain percentile interval of the bootstrap
  distribution at level ``1 - alpha``; ``se`` is the standard deviation of
  the bootstrap replicates.

Assumptions and caveats
-----------------------
- Clusters are independent of each other, and exchangeable within a stratum
  (a random sample from one population of speakers per stratum).
- Pooling with ``strata=replicate`` treats a speaker's clips in different
  replicates as different, independent clusters.  That is right when each
  replicate draws its own speakers; when all replicates re-use the *same*
  test speakers, the interval describes the variation between
  model-replicates on these speakers, and it is too narrow as a statement
  about new speakers (by up to sqrt(number of replicates) when the speaker
  effect dominates).  To cover speaker sampling in that case pass
  ``strata=None`` and the speaker as ``groups``, so a speaker's clips in
  all replicates are one cluster and move together.
- The percentile bootstrap is approximate: with few clusters per stratum
  (say under 20-30) it tends to undercover (its spread is smaller than the
  sampling spread by about sqrt((m - 1) / m) for m clusters), and with 0/1
  data and few discordant units its distribution is coarse.  In a small
  simulation (two equally good models, 20 clips from 5 speakers) the
  nominal 95% interval excluded 0 in about 12% of runs instead of 5%.
- The interval degenerates when A and B (nearly) never disagree: with no
  discordant unit every resample has D = 0 and the interval is [0, 0],
  which :func:`equivalence_verdict` calls "equivalent" however few units
  there are.  Treat a result from few clusters (say under 30 per stratum)
  or few discordant units as inconclusive whatever the verdict; the exact
  paired test on clip level is :func:`mcnemar`.

:func:`equivalence_verdict` turns an interval into one of four verdicts
against an equivalence margin; :func:`minimum_detectable_difference` and
:func:`equivalence_power_margin` translate a bootstrap standard error into
the effect size / margin that the data can resolve, using the normal
approximation of the estimate.  :func:`poisson_ci` is the exact (Garwood)
interval of an event rate, :func:`mcnemar` the exact paired test on
per-clip correctness, and :func:`replicate_agreement` the share of
replicates whose own verdict agrees with the pooled one.

All public functions return plain Python floats / ints / lists / dicts
(JSON-serialisable) and raise :class:`StatsError` (a ``ValueError``) naming
the offending argument on bad input.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import stats as _sps

from kwslib.errors import KwsError

__all__ = [
    "StatsError",
    "grouped_bootstrap_diff",
    "equivalence_verdict",
    "minimum_detectable_difference",
    "equivalence_power_margin",
    "poisson_ci",
    "mcnemar",
    "replicate_agreement",
    "replicate_interval",
    "replicate_interval_many",
    "replicates_needed",
    "variance_components",
]

VERDICTS = ("equivalent", "worse", "better", "inconclusive")

# Bound on the entries of one [block, n_clusters] matrix of draws (8 bytes each).
_BLOCK_ENTRIES = 1 << 18


class StatsError(KwsError, ValueError):
    """Invalid input to a kwslib.evaluation.stats function (names the argument and the problem)."""


# ----------------------------------------------------------------------------- validation


def _float_vector(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"{name}: must be a 1-D sequence of numbers ({exc})") from None
    if arr.ndim != 1:
        raise StatsError(f"{name}: must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise StatsError(f"{name}: is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise StatsError(f"{name}: contains NaN or infinite values (first at index {i}: {arr[i]})")
    return arr


def _bool_vector(x, name: str) -> np.ndarray:
    arr = _float_vector(x, name)
    ok = (arr == 0.0) | (arr == 1.0)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise StatsError(f"{name}: must hold booleans (or 0/1), got {arr[i]} at index {i}")
    return arr.astype(bool)


def _codes(seq, name: str, n: int) -> tuple[np.ndarray, int]:
    """Integer codes (first-appearance order) of a sequence of hashable ids."""
    if isinstance(seq, (str, bytes)):
        raise StatsError(f"{name}: must be a sequence of ids, one per unit, not a single string")
    try:
        items = list(seq)
    except TypeError:
        raise StatsError(f"{name}: must be a sequence of ids, one per unit") from None
    if len(items) != n:
        raise StatsError(f"{name}: has {len(items)} entries but a and b have {n}")
    table: dict = {}
    codes = np.empty(n, dtype=np.int64)
    for i, item in enumerate(items):
        if item is None or (isinstance(item, float) and item != item):
            raise StatsError(f"{name}: entry {i} is {item!r}; every unit needs an id")
        try:
            codes[i] = table.setdefault(item, len(table))
        except TypeError:
            raise StatsError(f"{name}: entry {i} ({item!r}) is not hashable") from None
    return codes, len(table)


def _alpha(alpha, name: str = "alpha") -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise StatsError(f"{name}: must be a number in (0, 1), got {alpha!r}")
    alpha = float(alpha)
    if not (0.0 < alpha < 1.0):
        raise StatsError(f"{name}: must be in (0, 1), got {alpha}")
    return alpha


def _finite(x, name: str, allow_zero: bool) -> float:
    """``x`` as a float, finite and > 0 (>= 0 with ``allow_zero``); StatsError naming ``name`` otherwise."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise StatsError(f"{name}: must be a number {bound}, got {x!r}")
    x = float(x)
    if not math.isfinite(x) or x < 0.0 or (x == 0.0 and not allow_zero):
        raise StatsError(f"{name}: must be finite and {bound}, got {x}")
    return x


def _se(se) -> float:
    return _finite(se, "se", allow_zero=True)


# ----------------------------------------------------------------------------- bootstrap


def _cluster_table(groups, a, b, exposure, strata):
    """Validated per-cluster sums; returns (a, b, e, cluster stratum, cluster d, cluster e, n_strata)."""
    a = _float_vector(a, "a")
    b = _float_vector(b, "b")
    if a.size != b.size:
        raise StatsError(f"a and b: lengths differ ({a.size} vs {b.size}); they must be paired per unit")
    n = a.size
    if exposure is None:
        e = np.ones(n)
    else:
        e = _float_vector(exposure, "exposure")
        if e.size != n:
            raise StatsError(f"exposure: has {e.size} entries but a and b have {n}")
        if (e <= 0).any():
            i = int(np.flatnonzero(e <= 0)[0])
            raise StatsError(f"exposure: must be > 0 for every unit, got {e[i]} at index {i}")
    g_codes, n_g = _codes(groups, "groups", n)
    if strata is None:
        s_codes, n_s = np.zeros(n, dtype=np.int64), 1
    else:
        s_codes, n_s = _codes(strata, "strata", n)
    # A cluster is a (stratum, group) pair; np.unique sorts by stratum first.
    uniq, inv = np.unique(s_codes * n_g + g_codes, return_inverse=True)
    k = uniq.size
    c_stratum = uniq // n_g
    c_d = np.bincount(inv, weights=b - a, minlength=k)
    c_e = np.bincount(inv, weights=e, minlength=k)
    return a, b, e, c_stratum, c_d, c_e, n_s


def _bootstrap_draws(c_stratum, c_d, c_e, n_boot: int, seed: int) -> np.ndarray:
    """n_boot bootstrap replicates of sum(d)/sum(e), clusters resampled within strata.

    Each replicate's resampled sums are ``counts @ cluster_sums`` for a count
    matrix of draws per cluster; they are computed as sums of the drawn
    clusters' values (the same numbers, without materialising the counts,
    which is about twice as fast), in blocks of replicates to bound memory.
    """
    rng = np.random.default_rng(seed)
    strata = np.unique(c_stratum)
    members = [np.flatnonzero(c_stratum == s) for s in strata]
    cols = [(np.ascontiguousarray(c_d[idx]), np.ascontiguousarray(c_e[idx])) for idx in members]
    max_m = max(idx.size for idx in members)
    block = max(1, min(n_boot, _BLOCK_ENTRIES // max_m))
    out = np.empty(n_boot)
    for start in range(0, n_boot, block):
        nb = min(block, n_boot - start)
        num = np.zeros(nb)
        den = np.zeros(nb)
        for d_s, e_s in cols:
            m = d_s.size
            draws = rng.integers(0, m, size=(nb, m))  # m clusters drawn with replacement
            num += d_s[draws].sum(axis=1)
            den += e_s[draws].sum(axis=1)
        out[start:start + nb] = num / den
    return out


def grouped_bootstrap_diff(groups, a, b, exposure=None, strata=None, n_boot=2000, seed=0,
                           alpha=0.05) -> dict:
    """Paired cluster (speaker) bootstrap of ``D = sum(b)/sum(exposure) - sum(a)/sum(exposure)``.

    Parameters
    ----------
    groups : sequence of hashable, one per unit
        Cluster id (speaker) of each unit.
    a, b : sequence of float, one per unit
        Per-unit value of model A (reference, float) and model B (quantized)
        on the same unit: 1.0 for a missed clip else 0.0, or a count of
        false detections.
    exposure : sequence of float > 0, optional
        Weight of each unit (1 per clip by default; hours of audio for rates).
    strata : sequence of hashable, optional
        Stratum of each unit (e.g. replicate index).  Clusters are resampled
        within their stratum, each stratum keeping its number of clusters; a
        group id in two strata is two clusters.
    n_boot : int >= 2
    seed : int >= 0
        Seed of ``numpy.random.default_rng``; the result is a deterministic
        function of the inputs and the seed.
    alpha : float in (0, 1)
        The interval is the percentile interval at level ``1 - alpha``.

    Returns
    -------
    dict with ``diff`` (D; positive = B worse), ``ci`` ([lo, hi]), ``se``
    (standard deviation of the bootstrap D), ``n_units``, ``n_clusters``,
    ``n_strata``, ``a`` and ``b`` (each model's ratio of sums).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 2:
        raise StatsError(f"n_boot: must be an integer >= 2, got {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise StatsError(f"seed: must be an integer >= 0, got {seed!r}")
    alpha = _alpha(alpha)
    a, b, e, c_stratum, c_d, c_e, n_s = _cluster_table(groups, a, b, exposure, strata)
    draws = _bootstrap_draws(c_stratum, c_d, c_e, int(n_boot), int(seed))
    lo, hi = np.quantile(draws, [alpha / 2.0, 1.0 - alpha / 2.0])
    total_e = float(e.sum())
    rate_a = float(a.sum()) / total_e
    rate_b = float(b.sum()) / total_e
    return {
        "diff": float(c_d.sum()) / total_e,
        "ci": [float(lo), float(hi)],
        "se": float(np.std(draws, ddof=1)),
        "n_units": int(a.size),
        "n_clusters": int(c_d.size),
        "n_strata": int(n_s),
        "a": rate_a,
        "b": rate_b,
    }


# ----------------------------------------------------------------------------- verdicts


def equivalence_verdict(ci, margin) -> str:
    """Verdict on ``diff = B - A`` (positive = B worse) from its interval and a margin > 0.

    - ``"equivalent"``: ``lo >= -margin`` and ``hi <= margin`` (the whole
      interval lies within the margin, even if it excludes 0);
    - ``"worse"``: ``lo > 0`` and ``hi > margin`` (B significantly worse and
      not shown to be within the margin);
    - ``"better"``: ``hi < 0`` and ``lo < -margin``;
    - ``"inconclusive"``: anything else, e.g. an interval that straddles 0 and
      reaches past the margin (too little data to tell).
    """
    try:
        lo, hi = (float(v) for v in ci)
    except (TypeError, ValueError):
        raise StatsError(f"ci: must be a pair of numbers [lo, hi], got {ci!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise StatsError(f"ci: bounds must be finite, got [{lo}, {hi}]")
    if lo > hi:
        raise StatsError(f"ci: lower bound {lo} is above upper bound {hi}")
    margin = _finite(margin, "margin", allow_zero=False)
    if lo >= -margin and hi <= margin:
        return "equivalent"
    if lo > 0 and hi > margin:
        return "worse"
    if hi < 0 and lo < -margin:
        return "better"
    return "inconclusive"


def _quantile_fn(df):
    """The standard normal quantile function (``df`` None) or Student's t with ``df`` degrees of freedom."""
    if df is None:
        return _sps.norm.ppf
    df = _finite(df, "df", allow_zero=False)
    return lambda q: _sps.t.ppf(q, df)


def minimum_detectable_difference(se, alpha=0.05, power=0.8, df=None) -> float:
    """Smallest true difference a two-sided level-``alpha`` test detects with probability ``power``.

    With the estimate ``D ~ N(delta, se^2)`` and the test rejecting when
    ``|D| > z_{1-alpha/2} se``, the power at ``delta > 0`` is (neglecting the
    far tail) ``Phi(delta/se - z_{1-alpha/2})``; setting it to ``power`` gives
    ``delta = (z_{1-alpha/2} + z_{power}) * se`` (2.8016 se at the defaults).
    With ``df`` (the degrees of freedom of a t-based interval, e.g.
    :func:`replicate_interval`'s) Student's t quantiles replace the normal ones.
    """
    se = _se(se)
    alpha = _alpha(alpha)
    power = _alpha(power, "power")
    q = _quantile_fn(df)
    return float((q(1.0 - alpha / 2.0) + q(power)) * se)


def equivalence_power_margin(se, alpha=0.05, power=0.8, df=None) -> float:
    """Smallest margin at which a truly zero difference is called "equivalent" with probability ``power``.

    Consistent with :func:`equivalence_verdict` applied to the level
    ``1 - alpha`` interval, approximated as ``D +- z_{1-alpha/2} se`` with
    ``D ~ N(0, se^2)``: the verdict is "equivalent" when
    ``|D| + z_{1-alpha/2} se <= margin``, i.e. ``|D|/se <= margin/se - z_{1-alpha/2}``,
    which has probability ``2 Phi(margin/se - z_{1-alpha/2}) - 1``.  Setting
    that to ``power``:

        margin = (z_{1-alpha/2} + z_{(1+power)/2}) * se     (3.2415 se at the defaults).

    (This is stricter than the textbook TOST margin, which uses a
    ``1 - 2 alpha`` interval.)  With ``df``, Student's t quantiles replace the normal ones.
    """
    se = _se(se)
    alpha = _alpha(alpha)
    power = _alpha(power, "power")
    q = _quantile_fn(df)
    return float((q(1.0 - alpha / 2.0) + q((1.0 + power) / 2.0)) * se)


# ----------------------------------------------------------------------------- rates and tests


def poisson_ci(count, exposure, alpha=0.05) -> tuple[float, float]:
    """Exact (Garwood) ``1 - alpha`` interval of a Poisson rate: ``count`` events over ``exposure``.

    ``lower = chi2.ppf(alpha/2, 2k) / 2 / exposure`` (0 when k == 0) and
    ``upper = chi2.ppf(1 - alpha/2, 2k + 2) / 2 / exposure``.  Its coverage is
    at least ``1 - alpha`` for every true rate (it is conservative).
    """
    if isinstance(count, bool) or not isinstance(count, numbers.Real):
        raise StatsError(f"count: must be an integer >= 0, got {count!r}")
    if not isinstance(count, numbers.Integral):
        if not (math.isfinite(float(count)) and float(count).is_integer()):
            raise StatsError(f"count: must be a whole number of events, got {count!r}")
    k = int(count)
    if k < 0:
        raise StatsError(f"count: must be >= 0, got {k}")
    exposure = _finite(exposure, "exposure", allow_zero=False)
    alpha = _alpha(alpha)
    lower = 0.0 if k == 0 else float(_sps.chi2.ppf(alpha / 2.0, 2 * k)) / 2.0 / exposure
    upper = float(_sps.chi2.ppf(1.0 - alpha / 2.0, 2 * k + 2)) / 2.0 / exposure
    return (lower, upper)


def mcnemar(a_correct, b_correct) -> dict:
    """Exact two-sided McNemar test on paired per-unit correctness flags of A and B.

    Returns ``n``, ``a_only`` (A right, B wrong), ``b_only`` (B right, A
    wrong), ``p_value`` = ``min(1, 2 * binom.cdf(min(a_only, b_only), a_only + b_only, 0.5))``
    (1.0 when there are no discordant pairs) and ``diff = mean(b) - mean(a)``
    (of correctness: positive = B right more often).  Treats units as
    independent; for clustered data use :func:`grouped_bootstrap_diff`.
    """
    a = _bool_vector(a_correct, "a_correct")
    b = _bool_vector(b_correct, "b_correct")
    if a.size != b.size:
        raise StatsError(f"a_correct and b_correct: lengths differ ({a.size} vs {b.size})")
    a_only = int(np.count_nonzero(a & ~b))
    b_only = int(np.count_nonzero(b & ~a))
    n_disc = a_only + b_only
    if n_disc == 0:
        p = 1.0
    else:
        p = min(1.0, 2.0 * float(_sps.binom.cdf(min(a_only, b_only), n_disc, 0.5)))
    return {
        "n": int(a.size),
        "a_only": a_only,
        "b_only": b_only,
        "p_value": p,
        "diff": float(b.mean() - a.mean()),
    }


def replicate_agreement(per_replicate_verdicts: list, pooled_verdict) -> float:
    """Share of replicates whose own verdict equals (``==``) the pooled verdict."""
    if isinstance(per_replicate_verdicts, (str, bytes)):
        raise StatsError("per_replicate_verdicts: must be a list of verdicts, not a single string")
    try:
        verdicts = list(per_replicate_verdicts)
    except TypeError:
        raise StatsError(
            f"per_replicate_verdicts: must be a list of verdicts, got {type(per_replicate_verdicts).__name__}"
        ) from None
    if not verdicts:
        raise StatsError("per_replicate_verdicts: is empty; need at least one replicate")
    return float(sum(1 for v in verdicts if v == pooled_verdict) / len(verdicts))


# ----------------------------------------------------------------------------- replicate-level intervals
#
# The unit that a rerun changes is the replicate: a new float model, a new QAT run, (with speaker folds)
# other test speakers, and a threshold read off that replicate's own DET curve. A speaker bootstrap within
# replicates holds all but the speakers fixed and is too narrow (docs/DESIGN.md section 6). The functions
# below treat the per-replicate paired differences d_r as the observations:
#
#     D = sum_r w_r d_r                                    (w_r >= 0, sum 1: the pooled ratio of sums when
#                                                           w_r is replicate r's share of the clips)
#     V_rep = n / (n - 1) * sum_r w_r^2 (d_r - D)^2         (s^2 / n for equal weights: the cluster-robust
#                                                           variance with the replicate as the cluster)
#     se^2 = V_rep + V_shared
#     interval: D +- t_{1 - alpha/2, df} se, df = (V_rep + V_shared)^2 / (V_rep^2 / (n - 1))  (Satterthwaite)
#
# V_rep holds everything that differs between replicates (training, test speakers, the part of the threshold's
# noise that is a replicate's own); ``shared_var`` is the variance of a component common to every replicate,
# which the spread of the d_r cannot show: the negative audio, the same recordings in every replicate
# (kwslib.study.replicates estimates it by resampling negative units and re-deriving every threshold). With
# ``shared_var`` 0 the interval is the t-interval of the mean of the d_r, exact for normal d_r at any n >= 2.


def _replicate_matrix(d, name: str = "d") -> np.ndarray:
    try:
        arr = np.asarray(d, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"{name}: must be an array of numbers ({exc})") from None
    if arr.ndim < 1:
        raise StatsError(f"{name}: must hold one difference per replicate (last axis), got a scalar")
    if arr.shape[-1] < 2:
        raise StatsError(f"{name}: needs at least 2 replicates (last axis) to measure the training variance, "
                         f"got {arr.shape[-1]}")
    if not np.isfinite(arr).all():
        raise StatsError(f"{name}: contains NaN or infinite values")
    return arr


def _weights(weights, d: np.ndarray) -> np.ndarray:
    n = d.shape[-1]
    if weights is None:
        return np.full(n, 1.0 / n)
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"weights: must be numbers, one per replicate ({exc})") from None
    if w.shape[-1:] != (n,):
        raise StatsError(f"weights: must have one entry per replicate ({n}) on the last axis, got shape {w.shape}")
    if not np.isfinite(w).all() or (w <= 0).any():
        raise StatsError("weights: must be finite and > 0")
    try:
        np.broadcast_shapes(w.shape, d.shape)
    except ValueError:
        raise StatsError(f"weights: shape {w.shape} does not broadcast against d's {d.shape}") from None
    return w / w.sum(axis=-1, keepdims=True)


def replicate_interval_many(d, weights=None, shared_var=0.0, alpha=0.05) -> dict:
    """The replicate-level interval (see the section comment above) of many experiments at once.

    ``d``: per-replicate differences, replicates on the last axis (``[..., n]``, n >= 2); ``weights``:
    ``[n]`` or broadcastable to ``d`` (None: equal); ``shared_var``: variance of a component common to
    all replicates, a number or an array of ``d.shape[:-1]`` (>= 0). Returns numpy arrays of
    ``d.shape[:-1]``: ``diff``, ``lo``, ``hi``, ``se``, ``se_replicates`` (sqrt V_rep) and ``df``.
    """
    d = _replicate_matrix(d)
    alpha = _alpha(alpha)
    w = _weights(weights, d)
    try:
        shared = np.broadcast_to(np.asarray(shared_var, dtype=np.float64), d.shape[:-1])
    except (TypeError, ValueError):
        raise StatsError(f"shared_var: must be a number >= 0 or an array of shape {d.shape[:-1]}") from None
    if not np.isfinite(shared).all() or (shared < 0).any():
        raise StatsError("shared_var: must be finite and >= 0")
    n = d.shape[-1]
    center = (w * d).sum(axis=-1)
    v_rep = n / (n - 1.0) * (w ** 2 * (d - center[..., None]) ** 2).sum(axis=-1)
    v = v_rep + shared
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(v_rep > 0, v ** 2 / np.where(v_rep > 0, v_rep, 1.0) ** 2 * (n - 1.0),
                      np.where(shared > 0, np.inf, n - 1.0))
    t = _sps.t.ppf(1.0 - alpha / 2.0, df)
    se = np.sqrt(v)
    return {"diff": center, "lo": center - t * se, "hi": center + t * se, "se": se,
            "se_replicates": np.sqrt(v_rep), "df": df}


def replicate_interval(d, weights=None, shared_var=0.0, alpha=0.05) -> dict:
    """Interval of the pooled paired difference with the replicate as the top-level unit (one experiment).

    ``d``: the ``n >= 2`` per-replicate differences ``B - A``; ``weights``: one per replicate (e.g. its
    clips; None: equal); ``shared_var``: the variance of a component that every replicate shares (the
    negative audio), >= 0. Returns ``diff``, ``ci``, ``se``, ``se_replicates`` (the replicates' part),
    ``se_shared`` (sqrt ``shared_var``), ``df`` (Satterthwaite; ``None`` when infinite), ``n_replicates``
    and ``sd_replicates`` (plain sd of the d_r). See the section comment for the formulas.
    """
    arr = _replicate_matrix(d)
    if arr.ndim != 1:
        raise StatsError(f"d: must be 1-D (one difference per replicate), got shape {arr.shape}; "
                         f"use replicate_interval_many for many experiments")
    shared = _finite(shared_var, "shared_var", allow_zero=True)
    r = replicate_interval_many(arr, weights, shared, alpha)
    df = float(r["df"])
    return {"diff": float(r["diff"]), "ci": [float(r["lo"]), float(r["hi"])], "se": float(r["se"]),
            "se_replicates": float(r["se_replicates"]), "se_shared": math.sqrt(shared),
            "df": df if math.isfinite(df) else None, "n_replicates": int(arr.size),
            "sd_replicates": float(np.std(arr, ddof=1))}


def replicates_needed(sd_replicate, margin, shared_sd=0.0, alpha=0.05, max_n=1000) -> int | None:
    """Replicates for a conclusive verdict at ``margin``, at the measured variance.

    An interval no wider than the margin cannot hold both 0 and a margin edge, so whatever the estimate
    :func:`equivalence_verdict` calls it "equivalent", "better" or "worse", never "inconclusive". This is
    the smallest ``n >= 2`` whose expected interval (:func:`replicate_interval` with per-replicate sd
    ``sd_replicate`` and a shared component of sd ``shared_sd``) has ``2 t_{df} se_n <= margin``,
    ``se_n^2 = sd_replicate^2 / n + shared_sd^2``. ``None`` when no ``n <= max_n`` reaches it (in
    particular when the shared component alone is too wide: ``2 z shared_sd > margin``; more replicates
    cannot fix that, more negative audio can. An interval inside +-margin, the weaker goal of an "equivalent"
    at a true difference near 0, may still be within reach then: ``kwslib.study.power`` simulates that).
    """
    sd = _finite(sd_replicate, "sd_replicate", allow_zero=True)
    shared = _finite(shared_sd, "shared_sd", allow_zero=True)
    margin = _finite(margin, "margin", allow_zero=False)
    alpha = _alpha(alpha)
    if isinstance(max_n, bool) or not isinstance(max_n, numbers.Integral) or max_n < 2:
        raise StatsError(f"max_n: must be an integer >= 2, got {max_n!r}")
    n = np.arange(2, int(max_n) + 1, dtype=np.float64)
    v_rep = sd ** 2 / n
    v = v_rep + shared ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(v_rep > 0, v ** 2 / np.where(v_rep > 0, v_rep, 1.0) ** 2 * (n - 1.0), np.inf)
    width = 2.0 * _sps.t.ppf(1.0 - alpha / 2.0, df) * np.sqrt(v)
    ok = np.flatnonzero(width <= margin)
    return int(n[ok[0]]) if ok.size else None


def variance_components(d, speaker_var, threshold_var=None) -> dict:
    """Method-of-moments split of the spread of per-replicate differences ``d`` (n >= 2) into named parts.

    ``speaker_var``: per replicate (or one number), the variance of that replicate's difference from
    resampling its test speakers (the square of a speaker bootstrap's se); ``threshold_var``: likewise
    from resampling the negative audio with the threshold re-derived (None when not measured). With
    independent parts, ``Var(d_r) = training + speakers + threshold``, so

        training = max(0, s^2 - mean(speaker_var) - mean(threshold_var))

    where ``s`` is the sd of the ``d_r`` (noisy at small n: with 5 replicates s^2 is within a factor of
    about 3 of the truth; 0 when the other parts already explain the spread). Returns standard
    deviations in the units of ``d``: ``per_replicate_total`` (s), ``test_speakers``,
    ``threshold_negatives`` (None without ``threshold_var``), ``training`` (with the threshold's part
    in it when that is not measured: ``training_includes_threshold``) and ``dominant``, the largest part.
    """
    arr = _replicate_matrix(d)
    if arr.ndim != 1:
        raise StatsError(f"d: must be 1-D, got shape {arr.shape}")

    def per_rep(v, name):
        x = np.asarray(v, dtype=np.float64) if not isinstance(v, bool) else None
        if x is None or x.ndim > 1 or (x.ndim == 1 and x.size != arr.size):
            raise StatsError(f"{name}: must be a number or one variance per replicate ({arr.size})")
        if not np.isfinite(x).all() or (x < 0).any():
            raise StatsError(f"{name}: must be finite and >= 0")
        return float(np.mean(x))

    s2 = float(np.var(arr, ddof=1))
    spk = per_rep(speaker_var, "speaker_var")
    thr = None if threshold_var is None else per_rep(threshold_var, "threshold_var")
    train = max(0.0, s2 - spk - (thr or 0.0))
    parts = {"test_speakers": math.sqrt(spk), "threshold_negatives": None if thr is None else math.sqrt(thr),
             "training": math.sqrt(train)}
    dominant = max((k for k, v in parts.items() if v is not None), key=lambda k: parts[k])
    return {"per_replicate_total": math.sqrt(s2), **parts, "training_includes_threshold": thr is None,
            "dominant": dominant}
