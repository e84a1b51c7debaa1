"""Verdicts: one model's records pooled over the replicates and compared with the float model's, with
intervals that count every variance a rerun changes (see :mod:`kwslib.study.replicates` for the records).

Each replicate stores a record (:func:`kwslib.study.replicates.model_record`). :func:`pooled_entry` pools
the records of one model over the replicates and compares them with the float model of the same replicate on the same clips:

- ``delta_frr``: FRR of the model at its threshold for the operating point minus the float model's,
  pooled over the replicates (each replicate weighted by its keyword clips). Its interval of record,
  ``delta_frr_ci``, has the *replicate* as its unit, because a rerun changes the float model, the QAT run,
  (with speaker folds) the test speakers and the thresholds read off each model's own DET curve: the
  t-interval of the per-replicate differences (:func:`kwslib.evaluation.stats.replicate_interval`), widened by the
  variance that all replicates share, the negative audio (the same recordings in each), measured by
  :func:`negative_bootstrap`, which resamples the units of negative audio and re-derives every threshold
  in each draw. ``delta_frr_ci_speakers_only`` is the former interval (speakers resampled within each
  replicate, models and thresholds held fixed): too narrow for a verdict, kept as a secondary field;
- ``variance_components`` (FRR points, as sd): test speakers, threshold/negatives, training (what of the
  spread between replicates the other two do not explain) and the shared negative part;
  ``replicates_needed``: replicates for an interval no wider than the margin (always a conclusive
  verdict) at the measured spread;
- ``delta_fdph``: false detections per hour at the float model's FRR minus the float model's at the
  operating point, with the same replicate-level interval (``delta_fdph_ci_units_only``: the former one,
  units of negative audio resampled with the models fixed); ``delta_accuracy`` likewise;
- the verdict (:func:`kwslib.evaluation.stats.equivalence_verdict`) reads ``delta_frr_ci`` against the margin:
  "equivalent" (parity), "better", "worse" or "inconclusive", with 1 replicate or fewer than 20 speakers
  always "inconclusive" (``verdict_reason``); ``verdict_speakers_only`` is the former interval's.

:func:`pooled_curve` pools the DET curves; ``_real_speech`` the costs on real non-keyword speech.
"""
from __future__ import annotations

import numpy as np

from ..evaluation import stats
from ..errors import ConfigError
from .replicates import REPORT_LEVELS, load_record, record_path, replicate_paths


def _sd(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def _unknown_recall(recs: list) -> float | None:
    """Share of the ``_unknown_`` test clips classified as ``_unknown_`` (pooled); None without any."""
    from ..data.base import CLASS_INDEX, UNKNOWN

    hits = [np.asarray(r["correct"])[np.asarray(r["labels"]) == CLASS_INDEX[UNKNOWN]] for r in recs]
    hits = np.concatenate(hits) if hits else np.zeros(0, bool)
    return float(hits.mean()) if hits.size else None


def _pooled_frr_at_levels(recs: list) -> dict:
    out = {}
    for level in REPORT_LEVELS:
        thr = [r["thresholds_at_levels"].get(str(level)) for r in recs]
        if any(t is None for t in thr):
            out[str(int(level))] = None
            continue
        misses = np.concatenate([np.asarray(r["pos_scores"]) < t for r, t in zip(recs, thr)])
        out[str(int(level))] = float(misses.mean())
    return out


def _has_unit_curve(rec: dict) -> bool:
    return all(k in rec for k in ("unit_curve_from", "unit_curve_index", "unit_curve_unit", "unit_curve_count",
                                  "curve_thresholds"))


def _band(rec: dict, n_units: int):
    """(first grid index, sparse [units, band thresholds] matrix of false detections) of a record."""
    from scipy import sparse

    j_lo = int(rec["unit_curve_from"])
    n_thr = len(rec["curve_thresholds"]) - j_lo
    jj = np.asarray(rec["unit_curve_index"], np.int64) - j_lo
    uu = np.asarray(rec["unit_curve_unit"], np.int64)
    if n_thr < 1 or (jj.size and (jj.min() < 0 or jj.max() >= n_thr or uu.min() < 0 or uu.max() >= n_units)):
        raise ValueError("record: its per-unit threshold counts do not fit its grid or its units")
    mat = sparse.csr_matrix((np.asarray(rec["unit_curve_count"], np.float64), (uu, jj)), shape=(n_units, n_thr))
    return j_lo, mat


def _first_at_or_under(rate: np.ndarray, target: float) -> np.ndarray:
    """Per row of ``rate`` [B, J], the first column with ``rate <= target`` (the lowest threshold meeting
    the budget; the last column when none does)."""
    ok = rate <= target * (1.0 + 1e-12)
    return np.where(ok.any(axis=1), ok.argmax(axis=1), rate.shape[1] - 1)


def negative_bootstrap(recs: list, float_recs: list, op_fdph: float, n_boot: int = 1000, seed: int = 0) -> dict | None:
    """What resampling the negative audio does to each replicate's paired differences, every threshold re-derived.

    Each draw resamples the units of negative audio with replacement (one draw for every replicate: the
    audio is the same recordings in each), recomputes every model's DET curve on the resampled audio from
    the per-unit counts of its record, and reads again, with the keyword clips held fixed:

    - the float model's and the quantized model's thresholds at ``op_fdph`` (the lowest grid threshold whose
      resampled rate is <= ``op_fdph``) and the FRR difference there;
    - the quantized model's FD/h at the float model's FRR (its lowest resampled rate among thresholds whose
      FRR is at most the float model's) minus the float model's FD/h at its threshold.

    Returns ``{"delta_frr": [B, n], "delta_fdph": [B, n], "n_boot", "units", "below_band"}`` (``below_band``:
    share of quantized readings at the float FRR that needed a threshold under the stored band, read at the
    band's edge), or None when a record has no per-unit counts (records written before version 2).
    """
    if not recs or len(recs) != len(float_recs):
        raise ValueError(f"negative_bootstrap: {len(recs)} records but {len(float_recs)} float records")
    if not all(_has_unit_curve(r) for r in list(recs) + list(float_recs)):
        return None
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"negative_bootstrap: n_boot must be an integer >= 2, got {n_boot!r}")
    ids = np.asarray(recs[0]["unit_ids"]).astype(str)
    for r in list(recs) + list(float_recs):
        if not np.array_equal(np.asarray(r["unit_ids"]).astype(str), ids):
            raise ValueError("negative_bootstrap: the replicates were read on different negative audio")
    n_units = ids.size
    hours = np.asarray(recs[0]["unit_hours"], np.float64)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=int(n_boot)).astype(np.float64)
    w_hours = w @ hours
    d_frr = np.empty((int(n_boot), len(recs)))
    d_fdph = np.empty_like(d_frr)
    below = 0
    for i, (q, f) in enumerate(zip(recs, float_recs)):
        thr = np.asarray(f["curve_thresholds"], np.float64)
        if not np.array_equal(thr, np.asarray(q["curve_thresholds"], np.float64)):
            raise ValueError("negative_bootstrap: the model and the float model have different threshold grids")
        jf, cf = _band(f, n_units)
        jq, cq = _band(q, n_units)
        rate_f = (cf.T @ w.T).T / w_hours[:, None]  # [B, band of f]
        rate_q = (cq.T @ w.T).T / w_hours[:, None]
        pf = np.asarray(f["pos_scores"], np.float64)
        pq = np.asarray(q["pos_scores"], np.float64)
        frr_f = (pf[None, :] < thr[jf:, None]).mean(axis=1)  # FRR at each band threshold
        frr_q = (pq[None, :] < thr[jq:, None]).mean(axis=1)
        kf = _first_at_or_under(rate_f, op_fdph)
        kq = _first_at_or_under(rate_q, op_fdph)
        rows = np.arange(int(n_boot))
        f_frr_b = frr_f[kf]
        d_frr[:, i] = frr_q[kq] - f_frr_b
        # the quantized model at the float model's FRR: lowest resampled FD/h among thresholds with FRR <= it
        allowed = frr_q[None, :] <= f_frr_b[:, None] + 1e-12
        none = ~allowed.any(axis=1)
        below += int(none.sum())
        allowed[none, 0] = True
        q_rate = np.where(allowed, rate_q, np.inf).min(axis=1)
        d_fdph[:, i] = q_rate - rate_f[rows, kf]
    return {"delta_frr": d_frr, "delta_fdph": d_fdph, "n_boot": int(n_boot), "units": int(n_units),
            "below_band": below / float(n_boot * len(recs))}


def _shared_var(draws: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    """(variance common to every replicate, per-replicate variances) of negative-audio draws [B, n]:
    Var(sum_r w_r d_r) minus the replicates' own parts sum_r w_r^2 Var(d_r), i.e. their covariances
    (floored at 0). The replicates' own parts are in the spread between replicates already."""
    per_rep = np.var(draws, axis=0, ddof=1)
    pooled = float(np.var(draws @ weights, ddof=1))
    return max(0.0, pooled - float((weights ** 2 * per_rep).sum())), per_rep


def _interval_fields(prefix: str, d_rep, weights, shared_var: float, alpha: float, single: dict) -> dict:
    """``<prefix>_ci``, ``_se`` and the interval's details from per-replicate differences. With one replicate
    the spread of training is not measured: the interval is ``single``'s (a speakers- or units-only
    bootstrap), labelled so in ``<prefix>_interval``; the verdict is then "inconclusive" whatever it says."""
    if len(d_rep) < 2:
        return {f"{prefix}_ci": list(single["ci"]), f"{prefix}_se": single["se"],
                f"{prefix}_interval": {"method": "1 replicate: the bootstrap within it only (the training variance "
                                                 "is not measured; replicates.n >= 2 measures it)",
                                       "se_replicates": None, "se_shared": None, "df": None, "n_replicates": 1,
                                       "sd_replicates": None}}
    r = stats.replicate_interval(np.asarray(d_rep, float), weights, shared_var, alpha)
    return {f"{prefix}_ci": r["ci"], f"{prefix}_se": r["se"],
            f"{prefix}_interval": {"method": "replicate t-interval (replicate = unit) + shared negative-audio "
                                             "variance (threshold re-derived per draw)",
                                   "se_replicates": r["se_replicates"], "se_shared": r["se_shared"], "df": r["df"],
                                   "n_replicates": r["n_replicates"], "sd_replicates": r["sd_replicates"]}}


def pooled_entry(recs: list, float_recs: list | None, margin: float, n_boot: int = 2000, seed: int = 0,
                 alpha: float = 0.05, op_fdph: float | None = None, min_events: int = 20) -> dict:
    """Pool one model's records over the replicates (``float_recs``: the float model's, same order;
    None when this is the float model). Keys: see docs/DESIGN.md section 8.

    ``op_fdph`` (the run's operating point, false detections per hour) and ``min_events``
    (``eval.min_events``) only shape the ``real_speech`` entry: with ``op_fdph`` it also reads every
    model at that rate on real speech alone (``real_speech.at_op_rate``, paired with float), and a
    real-speech rate counts as ``supported`` when the real speech holds ``>= min_events`` false
    detections at it."""
    if not recs:
        raise ValueError("pooled_entry: no records")
    if float_recs is not None and len(float_recs) != len(recs):
        raise ValueError(f"pooled_entry: {len(recs)} records but {len(float_recs)} float records")
    if not margin > 0:
        raise ConfigError(f"parity margin must be > 0, got {margin!r}")
    if op_fdph is not None and (isinstance(op_fdph, bool) or not isinstance(op_fdph, (int, float))
                                or not np.isfinite(op_fdph) or op_fdph <= 0):
        raise ConfigError(f"pooled_entry: op_fdph must be a number of false detections per hour > 0, got {op_fdph!r}")
    if isinstance(min_events, bool) or not isinstance(min_events, (int, np.integer)) or min_events < 1:
        raise ConfigError(f"pooled_entry: min_events must be an integer >= 1, got {min_events!r}")
    strata_pos = np.concatenate([np.full(len(r["pos_scores"]), i) for i, r in enumerate(recs)])
    pos_groups = np.concatenate([r["pos_speakers"] for r in recs])
    misses = np.concatenate([r["misses_at_op"] for r in recs]).astype(float)
    frr = stats.grouped_bootstrap_diff(pos_groups, np.zeros_like(misses), misses, strata=strata_pos,
                                       n_boot=n_boot, seed=seed, alpha=alpha)
    hours = float(sum(r["hours"] for r in recs))
    counts_op = np.concatenate([r["counts_at_op"] for r in recs])
    by_source = {}
    for r in recs:
        for src, h in r["hours_by_source"].items():
            c = int(np.asarray(r["counts_at_op"])[np.asarray(r["unit_source"]) == src].sum())
            hh, cc = by_source.get(src, (0.0, 0))
            by_source[src] = (hh + h, cc + c)
    entry = {
        "accuracy": float(np.concatenate([r["correct"] for r in recs]).mean()),
        "accuracy_mean": float(np.mean([r["accuracy"] for r in recs])),
        "accuracy_sd": _sd([r["accuracy"] for r in recs]),
        "frr_at_op": float(misses.mean()),
        "frr_at_op_ci": [float(frr["ci"][0]), float(frr["ci"][1])],
        "frr_at_op_mean": float(np.mean([r["frr_at_op"] for r in recs])),
        "frr_at_op_sd": _sd([r["frr_at_op"] for r in recs]),
        "threshold_at_op": float(recs[0]["threshold_at_op"]),  # replicate 0's: the model that is exported
        "fdph_at_op": float(counts_op.sum() / hours),
        "fdph_at_op_ci": list(stats.poisson_ci(int(counts_op.sum()), hours, alpha)),
        "fdph_by_source": {s: float(c / h) for s, (h, c) in by_source.items()},
        "frr_at_fdph": _pooled_frr_at_levels(recs),
        "unknown_recall": _unknown_recall(recs),
        "replicates": len(recs),
        # seconds to evaluate the model, mean over replicates (records of older runs: None)
        "eval_seconds": (float(np.mean([r["eval_seconds"] for r in recs]))
                         if all(r.get("eval_seconds") is not None for r in recs) else None),
        "per_replicate": [{"accuracy": r["accuracy"], "frr_at_op": r["frr_at_op"],
                           "threshold_at_op": r["threshold_at_op"], "unknown_recall": _unknown_recall([r])}
                          for r in recs],
    }
    if "real_speech" in recs[0]["hours_by_source"]:
        entry["real_speech"] = _real_speech(recs, float_recs, op_fdph, min_events, n_boot=n_boot, seed=seed,
                                            alpha=alpha)
    if float_recs is None:
        return entry
    f_misses = np.concatenate([r["misses_at_op"] for r in float_recs]).astype(float)
    if len(f_misses) != len(misses):
        raise ValueError("pooled_entry: the model and the float model were read on different clips")
    d_frr = stats.grouped_bootstrap_diff(pos_groups, f_misses, misses, strata=strata_pos, n_boot=n_boot,
                                         seed=seed, alpha=alpha)
    # negative audio is the same in every replicate: one unit id is one cluster across replicates
    unit_groups = np.concatenate([r["unit_ids"] for r in recs])
    unit_hours = np.concatenate([r["unit_hours"] for r in recs])
    f_counts = np.concatenate([r["counts_at_op"] for r in float_recs]).astype(float)
    q_counts = np.concatenate([r["counts_at_float_frr"] for r in recs]).astype(float)
    d_fdph = stats.grouped_bootstrap_diff(unit_groups, f_counts, q_counts, exposure=unit_hours, n_boot=n_boot,
                                          seed=seed, alpha=alpha)
    strata_clip = np.concatenate([np.full(len(r["correct"]), i) for i, r in enumerate(recs)])
    clip_groups = np.concatenate([r["speakers"] for r in recs])
    q_correct = np.concatenate([r["correct"] for r in recs])
    f_correct = np.concatenate([r["correct"] for r in float_recs])
    d_acc = stats.grouped_bootstrap_diff(clip_groups, f_correct.astype(float), q_correct.astype(float),
                                         strata=strata_clip, n_boot=n_boot, seed=seed, alpha=alpha)
    verdict_speakers = _verdict(d_frr, margin)
    f_ci = stats.grouped_bootstrap_diff(pos_groups, np.zeros_like(f_misses), f_misses, strata=strata_pos,
                                        n_boot=n_boot, seed=seed, alpha=alpha)["ci"]
    n_rep = len(recs)
    weights = np.array([len(r["pos_scores"]) for r in recs], float)
    weights /= weights.sum()
    per_rep, spk_var = [], []
    for i, (r, f) in enumerate(zip(recs, float_recs)):
        d = stats.grouped_bootstrap_diff(r["pos_speakers"], np.asarray(f["misses_at_op"], float),
                                         np.asarray(r["misses_at_op"], float), n_boot=n_boot, seed=seed, alpha=alpha)
        spk_var.append(d["se"] ** 2)
        v = _verdict(d, margin)
        u_h = float(np.sum(r["unit_hours"]))
        per_rep.append({**entry["per_replicate"][i], "delta_frr": d["diff"], "delta_frr_ci": list(d["ci"]),
                        "delta_frr_se_speakers": d["se"],
                        "delta_fdph": float((np.sum(r["counts_at_float_frr"]) - np.sum(f["counts_at_op"])) / u_h),
                        "delta_accuracy": float(np.mean(r["correct"]) - np.mean(f["correct"])),
                        "verdict": v, "parity_paired": v == "equivalent"})
    d_rep = np.array([x["delta_frr"] for x in per_rep])
    neg = negative_bootstrap(recs, float_recs, op_fdph, n_boot=n_boot, seed=seed) if (
        op_fdph is not None and n_rep >= 2) else None
    if neg is None:
        shared_frr = shared_fdph = 0.0
        thr_var = None
        thr_reason = ("op_fdph not given" if op_fdph is None else "1 replicate" if n_rep < 2 else
                      "the records hold no per-unit counts at the thresholds (written before record version 2)")
    else:
        shared_frr, thr_var = _shared_var(neg["delta_frr"], weights)
        shared_fdph, _ = _shared_var(neg["delta_fdph"], np.full(n_rep, 1.0 / n_rep))
        thr_reason = None
    fields = {}
    fields.update(_interval_fields("delta_frr", d_rep, weights, shared_frr, alpha, d_frr))
    fields.update(_interval_fields("delta_fdph", [x["delta_fdph"] for x in per_rep], None, shared_fdph, alpha,
                                   d_fdph))
    fields.update(_interval_fields("delta_accuracy", [x["delta_accuracy"] for x in per_rep],
                                   np.array([len(r["correct"]) for r in recs], float), 0.0, alpha, d_acc))
    if n_rep < 2:
        verdict, reason = "inconclusive", "1 replicate: the training variance is not measured (replicates.n >= 2)"
    elif d_frr["n_clusters"] < MIN_CLUSTERS:
        verdict, reason = "inconclusive", f"fewer than {MIN_CLUSTERS} speakers behind the interval"
    else:
        verdict, reason = stats.equivalence_verdict(fields["delta_frr_ci"], margin), None
    entry.update({
        "delta_frr": d_frr["diff"], **fields,
        "delta_frr_ci_speakers_only": list(d_frr["ci"]), "delta_frr_se_speakers_only": d_frr["se"],
        "delta_fdph": d_fdph["diff"], "delta_fdph_ci_units_only": list(d_fdph["ci"]),
        "fdph_at_float_frr": float(q_counts.sum() / unit_hours.sum()),
        "delta_accuracy": d_acc["diff"], "delta_accuracy_ci_speakers_only": list(d_acc["ci"]),
        "accuracy_mcnemar_p": stats.mcnemar(f_correct, q_correct)["p_value"],
        "parity_margin": float(margin), "verdict": verdict, "verdict_reason": reason,
        "verdict_speakers_only": verdict_speakers, "parity_paired": verdict == "equivalent",
        "verdict_agreement": stats.replicate_agreement([x["verdict"] for x in per_rep], verdict),
        # secondary, single-interval reading (the pooled FRR inside the pooled float interval)
        "parity": bool(f_ci[0] <= misses.mean() <= f_ci[1]), "no_worse_than_float": bool(misses.mean() <= f_ci[1]),
        "per_replicate": per_rep,
    })
    entry.update(power_fields(d_rep, spk_var, thr_var, shared_frr, margin, alpha,
                              threshold_reason=thr_reason, df=(fields.get("delta_frr_interval") or {}).get("df"),
                              se=fields["delta_frr_se"]))
    if neg is not None:
        entry["variance_components"]["negative_draws"] = {"n_boot": neg["n_boot"], "units": neg["units"],
                                                          "below_band": neg["below_band"]}
    return entry


def power_fields(d_rep, speaker_var, threshold_var, shared_var: float, margin: float, alpha: float = 0.05,
                 threshold_reason: str | None = None, df=None, se=None) -> dict:
    """``variance_components`` (FRR points, as sd), ``replicates_needed`` (+ ``_reason`` when None),
    ``min_detectable_delta_frr`` and ``min_equivalence_margin`` of one model's per-replicate differences.

    ``speaker_var``: per replicate, the variance of its difference over speakers; ``threshold_var``: over
    negative-audio draws (None: not measured, ``threshold_reason`` says why); ``shared_var``: the variance
    common to all replicates (negative audio); ``se``/``df``: the new interval's (None with 1 replicate)."""
    d_rep = np.asarray(d_rep, float)
    out: dict = {}
    if d_rep.size < 2:
        out["variance_components"] = None
        out["variance_components_reason"] = "1 replicate: the training variance is not measured"
        out["replicates_needed"] = None
        out["replicates_needed_reason"] = "1 replicate: the spread between replicates is not measured"
        # the power of the one replicate's bootstrap (speakers only): an upper bound on the design's power
        out["min_detectable_delta_frr"] = None if se is None else stats.minimum_detectable_difference(se, alpha)
        out["min_equivalence_margin"] = None if se is None else stats.equivalence_power_margin(se, alpha)
        return out
    vc = stats.variance_components(d_rep, speaker_var, threshold_var)
    comp = {k: (None if vc[k] is None else 100.0 * vc[k])
            for k in ("per_replicate_total", "test_speakers", "threshold_negatives", "training")}
    comp.update(unit="FRR points (sd)", shared_negatives=100.0 * float(np.sqrt(shared_var)),
                training_includes_threshold=vc["training_includes_threshold"], dominant=vc["dominant"],
                estimate="method of moments over the replicates: training = what of the spread between "
                         "replicates the speakers and the threshold do not explain (noisy at a few replicates)")
    if threshold_var is None:
        comp["threshold_negatives_reason"] = threshold_reason or "not measured"
    out["variance_components"] = comp
    need = stats.replicates_needed(vc["per_replicate_total"], margin, float(np.sqrt(shared_var)), alpha)
    out["replicates_needed"] = need
    floor = 1.96 * np.sqrt(shared_var)  # the half-width no number of replicates goes below
    out["replicates_needed_reason"] = None if need is not None else (
        "more than 1000 at this spread" if 2 * floor <= margin else
        f"not by replicates alone: the negative audio all replicates share keeps the interval at least "
        f"+-{100 * floor:.1f} points wide, more than the {100 * margin:.0f}-point margin, so no number of "
        "replicates makes every outcome conclusive (more negative audio lowers that floor); an 'equivalent' at a "
        "true difference near 0 asks less, an interval inside the margin: the power plan prices that")
    if se is not None:
        out["min_detectable_delta_frr"] = stats.minimum_detectable_difference(se, alpha, df=df)
        out["min_equivalence_margin"] = stats.equivalence_power_margin(se, alpha, df=df)
    return out


#: Fewer speakers than this behind a paired interval: the verdict is "inconclusive" whatever the interval
#: (a speaker bootstrap over a handful of clusters is too narrow, and two models that miss every clip give
#: the interval [0, 0]).
MIN_CLUSTERS = 20


def _verdict(diff: dict, margin: float) -> str:
    if diff["n_clusters"] < MIN_CLUSTERS:
        return "inconclusive"
    return stats.equivalence_verdict(diff["ci"], margin)


#: False detections per hour of real speech alone at which the FRR is reported (``real_speech.frr_at_fdph``).
REAL_SPEECH_LEVELS = (1.0, 5.0, 10.0)


def _source_threshold(rec: dict, source: str, fdph: float) -> float:
    """The lowest grid threshold whose false detections per hour of ``source`` alone are <= ``fdph``
    (inf, every clip missed, when none is)."""
    fd = np.asarray(rec["curve_source_false_detections"][source]) / rec["hours_by_source"][source]
    ok = np.flatnonzero(fd <= fdph)
    return float(np.asarray(rec["curve_thresholds"])[ok].min()) if ok.size else np.inf


def _misses_on_source(recs: list, source: str, fdph: float) -> np.ndarray:
    """Per keyword clip of every replicate (concatenated): missed at the model's own threshold for
    ``fdph`` false detections per hour of ``source`` alone (1.0) or not (0.0)."""
    return np.concatenate([np.asarray(r["pos_scores"]) < _source_threshold(r, source, fdph)
                           for r in recs]).astype(float)


def _real_speech(recs: list, float_recs: list | None = None, op_fdph: float | None = None, min_events: int = 20,
                 n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """The model read on real non-keyword speech alone (docs/DESIGN.md sections 6.3 and 8).

    - ``hours``: hours of real speech per replicate (the same audio in every replicate);
      ``fdph_at_op``: its FD/h at the thresholds of the operating point on all negatives;
    - ``frr_at_fdph`` {"1", "5", "10"}: FRR pooled over replicates, each replicate's model at its own
      threshold for that many FD/h of real speech; ``frr_at_fdph_ci``: 95% speaker bootstrap within
      replicates (as ``frr_at_op_ci``; the thresholds held fixed);
    - ``events_at_fdph``: the false detections that rate allows in the real speech (rate x hours),
      ``supported``: whether that is ``>= min_events`` (``min_events`` beside it). A rate resting on
      fewer events has a threshold set by a handful of detections: read its FRR as indicative;
    - with ``op_fdph``, ``at_op_rate``: the same reading at the run's operating-point rate
      (``fdph``, ``events``, ``supported``, ``frr``, ``frr_ci``, ``threshold`` of replicate 0), and for a
      quantized model the paired ``delta_frr`` (minus the float model's at the same rate of real
      speech, same clips), ``delta_frr_ci``, ``delta_frr_se``, ``delta_frr_all_negatives`` (the
      entry's ``delta_frr``) and ``excess_delta_frr`` = real-speech delta minus all-negatives delta,
      with ``excess_delta_frr_ci`` from the same speaker bootstrap (> 0: quantization costs more
      when the threshold is set on real speech).
    """
    src = "real_speech"
    total_hours = float(sum(r["hours_by_source"][src] for r in recs))
    hours = total_hours / len(recs)
    groups = np.concatenate([r["pos_speakers"] for r in recs])
    strata = np.concatenate([np.full(len(r["pos_scores"]), i) for i, r in enumerate(recs)])

    def boot(a, b) -> dict:
        return stats.grouped_bootstrap_diff(groups, a, b, strata=strata, n_boot=n_boot, seed=seed, alpha=alpha)

    out, ci, events = {}, {}, {}
    for level in REAL_SPEECH_LEVELS:
        misses = _misses_on_source(recs, src, level)
        key = str(int(level))
        out[key] = float(misses.mean())
        ci[key] = [float(x) for x in boot(np.zeros_like(misses), misses)["ci"]]
        events[key] = float(level * hours)
    c = sum(int(np.asarray(r["counts_at_op"])[np.asarray(r["unit_source"]) == src].sum()) for r in recs)
    entry = {"hours": hours, "frr_at_fdph": out, "fdph_at_op": float(c / total_hours),
             "frr_at_fdph_ci": ci, "events_at_fdph": events,
             "supported": {k: bool(v >= min_events) for k, v in events.items()}, "min_events": int(min_events)}
    if op_fdph is None:
        return entry
    m = _misses_on_source(recs, src, op_fdph)
    at = {"fdph": float(op_fdph), "events": float(op_fdph * hours), "supported": bool(op_fdph * hours >= min_events),
          "frr": float(m.mean()), "frr_ci": [float(x) for x in boot(np.zeros_like(m), m)["ci"]],
          "threshold": _source_threshold(recs[0], src, op_fdph)}
    if float_recs is not None:
        f = _misses_on_source(float_recs, src, op_fdph)
        d = boot(f, m)
        q_all = np.concatenate([r["misses_at_op"] for r in recs]).astype(float)
        f_all = np.concatenate([r["misses_at_op"] for r in float_recs]).astype(float)
        x = boot(q_all - f_all, m - f)  # per clip: (real-speech delta) - (all-negatives delta)
        at.update(delta_frr=d["diff"], delta_frr_ci=[float(v) for v in d["ci"]], delta_frr_se=d["se"],
                  delta_frr_all_negatives=x["a"], excess_delta_frr=x["diff"],
                  excess_delta_frr_ci=[float(v) for v in x["ci"]])
    entry["at_op_rate"] = at
    return entry


def pooled_curve(recs: list, source: str | None = None) -> dict:
    """The DET curve pooled over replicates: FRR over all keyword clips and FD/h over all negative hours
    at each threshold of the shared grid; with ``source`` (``"real_speech"``, ``"synthetic_speech"``,
    ``"noise"``) FD/h over that source's hours alone."""
    if not recs:
        raise ValueError("pooled_curve: no records")
    thr = np.asarray(recs[0]["curve_thresholds"])
    n_pos = np.array([len(r["pos_scores"]) for r in recs], float)
    frr = sum(np.asarray(r["curve_frr"]) * n for r, n in zip(recs, n_pos)) / n_pos.sum()
    if source is None:
        fd = sum(np.asarray(r["curve_false_detections"]) for r in recs)
        hours = sum(r["hours"] for r in recs)
    else:
        for i, r in enumerate(recs):
            have = r.get("curve_source_false_detections") or {}
            if source not in have or source not in (r.get("hours_by_source") or {}):
                raise ValueError(f"pooled_curve: the record of replicate {i} has no negative source {source!r} "
                                 f"(it has {sorted(have)})")
        fd = sum(np.asarray(r["curve_source_false_detections"][source]) for r in recs)
        hours = sum(r["hours_by_source"][source] for r in recs)
        if not hours > 0:
            raise ValueError(f"pooled_curve: negative source {source!r} has no audio ({hours} h)")
    return {"thresholds": thr, "frr": frr, "fdph": fd / hours, "false_detections": fd}


def load_pooled_curves(p, n: int, names=None, source: str | None = None) -> dict:
    """name -> DET curve pooled over replicates 0..n-1 (FD/h of ``source`` alone when given, see
    :func:`pooled_curve`), for every model whose record every replicate has."""
    folder = p.results / "records"
    names = sorted(f.stem for f in folder.glob("*.npz")) if names is None else list(names)
    out = {}
    for name in names:
        recs = [load_record(record_path(replicate_paths(p, k), name)) for k in range(n)]
        if recs and all(r is not None for r in recs):
            out[name] = pooled_curve(recs, source)
    return out


def qat_seed_split(components: dict, float_rec: dict, main_rec: dict, seed_recs: list, replicate: int = 0) -> dict:
    """``components`` (a :func:`pooled_entry`'s ``variance_components``) with the training part split in two.

    ``main_rec`` and ``seed_recs`` are records of the same model trained from the same float model of replicate
    ``replicate`` (its own QAT run and the other QAT seeds of :func:`kwslib.study.experiment.qat_seed_replicate`),
    read on the same clips and negative audio. The sd of their FRR differences to ``float_rec`` at the operating
    point is ``qat_seed`` (FRR points): the QAT run alone, its threshold included. ``float_retraining`` is
    ``sqrt(training^2 - qat_seed^2)`` (0 when the QAT part already explains the training part): what retraining
    the float model adds. With n runs the sd has n - 1 degrees of freedom (2 for 3 runs: within a factor of about
    2 of the truth), which ``qat_seed_note`` says. ``dominant`` is then read among speakers, threshold,
    QAT seed and float retraining. The input dict is not changed.
    """
    recs = [main_rec, *seed_recs]
    if len(recs) < 2:
        raise ValueError(f"qat_seed_split: need the model's own run and at least one other seed, got {len(recs)} run(s)")
    deltas = [100.0 * (float(r["frr_at_op"]) - float(float_rec["frr_at_op"])) for r in recs]
    qat = float(np.std(deltas, ddof=1))
    out = dict(components)
    training = components.get("training")
    out.update(qat_seed=qat, qat_seed_deltas=[round(d, 3) for d in deltas], qat_seed_replicate=int(replicate),
               qat_seed_note=f"{len(recs)} QAT runs on the float model of replicate {replicate} "
                             f"({len(recs) - 1} degrees of freedom)",
               float_retraining=None if training is None else float(np.sqrt(max(training ** 2 - qat ** 2, 0.0))))
    parts = {k: out.get(k) for k in ("test_speakers", "threshold_negatives", "qat_seed", "float_retraining")}
    present = {k: v for k, v in parts.items() if v is not None}
    if present:
        out["dominant"] = max(present, key=present.get)
    return out
