"""Replicates: the same chain run several times, and paired statistics pooled over the runs.

One training run on one CPU is one sample: float rounding alone moves accuracy by a point or two
between machines. A profile therefore declares ``replicates`` (:class:`ReplicatesConfig`):

- ``speaker_folds`` (real speech): replicate k tests on speaker fold k of the whole archive
  (:func:`kwslib.data.speech_commands.fold_split`), trains and validates on the other speakers,
  with its own training seed; over the k replicates every clip is a test clip exactly once.
- ``seeds`` (synthetic): replicate k draws its own synthetic corpus and training seed.

The paper reports one production run; the replicates are ours, to tell a real difference from the
spread of retraining.

Each replicate writes what its models measured as a *record* (:func:`model_record`): per keyword
clip its speaker and whether the model missed it at the operating point, per test clip whether the
class was right, per unit of negative audio the false detections, and the DET curves on one shared
threshold grid. :func:`pooled_entry` pools the records of one model over the replicates and compares
them with the float model of the same replicate on the same clips:

- ``delta_frr``: FRR of the model at its threshold for the operating point minus the float model's,
  with a 95% bootstrap interval that resamples speakers within each replicate
  (:func:`kwslib.stats.grouped_bootstrap_diff`);
- ``delta_fdph``: false detections per hour at the float model's FRR minus the float model's at the
  operating point, resampling units of negative audio (the same audio in every replicate, so one unit
  is one cluster across replicates);
- parity (paired): the interval of ``delta_frr`` inside ``[-margin, margin]``
  (:func:`kwslib.stats.equivalence_verdict`), with the design's power beside it; the single-run
  "inside the float interval" test stays as a secondary column (``parity``).

Replicate 0 writes into the profile's own results folder (the models notebooks 4 and 5 read and that
``kwslib export`` exports); replicate k > 0 into ``replicates/r<k>/`` below it.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import metrics, stats
from .errors import ConfigError

KINDS = ("seeds", "speaker_folds")
#: False-detection rates at which the FRR is also reported, where the negative hours support them.
REPORT_LEVELS = (1.0, 5.0, 10.0, 50.0)
RECORD_VERSION = 1


@dataclass
class ReplicatesConfig:
    n: int = 1
    kind: str = "seeds"  # "seeds" (synthetic) or "speaker_folds" (speech_commands_test_set)
    seeds: list[int] | None = None  # one per replicate (training seed; synthetic corpus seed too); None: 0..n-1

    def __post_init__(self):
        if not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"replicates.n must be an integer >= 1, got {self.n!r}")
        if self.kind not in KINDS:
            raise ConfigError(f"replicates.kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.seeds is not None and len(self.seeds) != self.n:
            raise ConfigError(f"replicates.seeds must have n={self.n} entries, got {self.seeds!r}")

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else list(range(self.n))

    def describe(self) -> dict:
        return {"n": self.n, "kind": self.kind, "seeds": self.seed_list}


def replicates_config(d: dict | None) -> ReplicatesConfig:
    from .config import from_dict

    return from_dict(ReplicatesConfig, d or {}, where="params.replicates")


def replicate_config(cfg, rcfg: ReplicatesConfig, k: int):
    """The experiment config of replicate ``k``: its data split or corpus, and its training seed."""
    if not 0 <= k < rcfg.n:
        raise ConfigError(f"replicate {k} outside [0, {rcfg.n})")
    seed = rcfg.seed_list[k]
    out = copy.deepcopy(cfg)
    out.train.seed = int(seed)
    if rcfg.kind == "speaker_folds":
        if cfg.data.source != "speech_commands_test_set":
            raise ConfigError(f"replicates.kind speaker_folds needs data.source speech_commands_test_set, "
                              f"got {cfg.data.source!r}")
        out.data.fold, out.data.n_folds = k, rcfg.n
    else:
        if cfg.data.source != "synthetic":
            raise ConfigError(f"replicates.kind seeds re-draws the synthetic corpus: needs data.source synthetic, "
                              f"got {cfg.data.source!r} (use speaker_folds for real speech)")
        out.data.synthetic_seed = int(cfg.data.synthetic_seed + seed)
    return out


def replicate_paths(p, k: int):
    """Replicate ``k``'s folders: the profile's own for k = 0, ``replicates/r<k>/`` below it otherwise."""
    from .experiment import Paths

    if k == 0:
        return p
    q = Paths(p.results / "replicates" / f"r{k}", p.cache)
    for d in (q.results, q.models):
        d.mkdir(parents=True, exist_ok=True)
    return q


# --------------------------------------------------------------------------- records

def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unit_counts(res, data, threshold: float) -> np.ndarray:
    """False detections per unit of negative audio at ``threshold`` (all sources, units concatenated)."""
    out = []
    for name, src in data.negatives.items():
        c = np.zeros(len(src.unit_ids), np.int64)
        sc = res.negative_scores[name]
        for k in range(sc.shape[1]):
            steps = metrics.detection_steps(sc[:, k], threshold, res.refractory)
            np.add.at(c, src.unit_of_step[steps], 1)
        out.append(c)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _lowest_fdph_threshold(curve: dict, target_frr: float) -> float:
    """The threshold with the lowest FD/h among those whose FRR is <= ``target_frr`` (metrics.fdph_at_frr's)."""
    frr, fdph, thr = (np.asarray(curve[k]) for k in ("frr", "fdph", "thresholds"))
    ok = np.flatnonzero(frr <= target_frr)
    if ok.size == 0:
        raise ValueError(f"no threshold reaches FRR <= {target_frr}")
    best = ok[fdph[ok] == fdph[ok].min()]
    return float(thr[best].min())


def model_record(res, data, cfg, op_fdph: float, float_record: dict | None = None) -> dict:
    """What one model measured in one replicate, for pooling (arrays and scalars; see the module doc)."""
    labels = np.asarray(data.test.labels)
    from .evaluate import KEYWORD_IDX

    is_pos = np.isin(labels, KEYWORD_IDX)
    thr = metrics.threshold_at_fdph(res.curve_stream, op_fdph)
    hours = data.negative_hours
    rec = {
        "accuracy": float(res.accuracy),
        "correct": np.asarray(res.pred) == labels,
        "labels": labels.astype(np.int64),
        "speakers": np.asarray(data.test.speakers).astype(str),
        "pos_speakers": np.asarray(data.test.speakers)[is_pos].astype(str),
        "pos_scores": np.asarray(res.pos_scores, np.float64),
        "threshold_at_op": float(thr),
        "misses_at_op": np.asarray(res.pos_scores) < thr,
        "frr_at_op": float(np.mean(np.asarray(res.pos_scores) < thr)),
        "unit_ids": np.array([u for src in data.negatives.values() for u in src.unit_ids], dtype=str),
        "unit_hours": np.concatenate([src.unit_hours for src in data.negatives.values()]),
        "unit_source": np.array([n for n, src in data.negatives.items() for _ in src.unit_ids], dtype=str),
        "counts_at_op": _unit_counts(res, data, thr),
        "hours": float(hours),
        "hours_by_source": data.hours_by_source(),
        "curve_thresholds": np.asarray(res.curve_stream["thresholds"]),
        "curve_frr": np.asarray(res.curve_stream["frr"]),
        "curve_false_detections": np.asarray(res.curve_stream["false_detections"]),
        "curve_clip_fdr": np.asarray(res.curve_clip["fdr"]),
        "curve_source_false_detections": {k: np.asarray(v["false_detections"]) for k, v in res.curve_by_source.items()},
        "thresholds_at_levels": {str(level): (metrics.threshold_at_fdph(res.curve_stream, level)
                                              if level * hours >= cfg.min_events else None)
                                 for level in REPORT_LEVELS},
    }
    if float_record is not None:
        t2 = _lowest_fdph_threshold(res.curve_stream, float_record["frr_at_op"])
        rec["threshold_at_float_frr"] = t2
        rec["counts_at_float_frr"] = _unit_counts(res, data, t2)
    return rec


def save_record(path, rec: dict, model_digest: str | None = None) -> None:
    """Write a record atomically as one ``.npz`` (arrays as arrays, the rest as JSON)."""
    from .io import atomic_write_bytes

    arrays = {k: v for k, v in rec.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in rec.items() if not isinstance(v, np.ndarray) and k != "curve_source_false_detections"}
    for k, v in rec.get("curve_source_false_detections", {}).items():
        arrays[f"srcfd__{k}"] = v
    meta = {"version": RECORD_VERSION, "model_digest": model_digest, **rest}
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_record(path, model_digest: str | None = None) -> dict | None:
    """The record at ``path``; None when it is missing, of another version or of another model file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            if meta.get("version") != RECORD_VERSION or (model_digest is not None and meta.get("model_digest") != model_digest):
                return None
            rec = {k: z[k] for k in z.files if k != "__meta__" and not k.startswith("srcfd__")}
            rec["curve_source_false_detections"] = {k[7:]: z[k] for k in z.files if k.startswith("srcfd__")}
    except (OSError, ValueError, KeyError):
        return None
    meta.pop("version"), meta.pop("model_digest")
    rec.update(meta)
    return rec


def record_path(p, name: str) -> Path:
    return p.results / "records" / f"{name}.npz"


# --------------------------------------------------------------------------- pooling

def _sd(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def _unknown_recall(recs: list) -> float | None:
    """Share of the ``_unknown_`` test clips classified as ``_unknown_`` (pooled); None without any."""
    from .data.base import CLASS_INDEX, UNKNOWN

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
    verdict = _verdict(d_frr, margin)
    f_ci = stats.grouped_bootstrap_diff(pos_groups, np.zeros_like(f_misses), f_misses, strata=strata_pos,
                                        n_boot=n_boot, seed=seed, alpha=alpha)["ci"]
    per_rep = []
    for i, (r, f) in enumerate(zip(recs, float_recs)):
        d = stats.grouped_bootstrap_diff(r["pos_speakers"], np.asarray(f["misses_at_op"], float),
                                         np.asarray(r["misses_at_op"], float), n_boot=n_boot, seed=seed, alpha=alpha)
        v = _verdict(d, margin)
        per_rep.append({**entry["per_replicate"][i], "delta_frr": d["diff"], "delta_frr_ci": list(d["ci"]),
                        "verdict": v, "parity_paired": v == "equivalent"})
    entry.update({
        "delta_frr": d_frr["diff"], "delta_frr_ci": list(d_frr["ci"]), "delta_frr_se": d_frr["se"],
        "delta_fdph": d_fdph["diff"], "delta_fdph_ci": list(d_fdph["ci"]),
        "fdph_at_float_frr": float(q_counts.sum() / unit_hours.sum()),
        "delta_accuracy": d_acc["diff"], "delta_accuracy_ci": list(d_acc["ci"]),
        "accuracy_mcnemar_p": stats.mcnemar(f_correct, q_correct)["p_value"],
        "parity_margin": float(margin), "verdict": verdict, "parity_paired": verdict == "equivalent",
        "verdict_agreement": stats.replicate_agreement([x["verdict"] for x in per_rep], verdict),
        "min_detectable_delta_frr": stats.minimum_detectable_difference(d_frr["se"], alpha),
        "min_equivalence_margin": stats.equivalence_power_margin(d_frr["se"], alpha),
        # secondary, single-interval reading (the pooled FRR inside the pooled float interval)
        "parity": bool(f_ci[0] <= misses.mean() <= f_ci[1]), "no_worse_than_float": bool(misses.mean() <= f_ci[1]),
        "per_replicate": per_rep,
    })
    return entry


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


__all__ = ["load_pooled_curves", "ReplicatesConfig", "replicates_config", "replicate_config", "replicate_paths", "model_record",
           "save_record", "load_record", "record_path", "pooled_entry", "pooled_curve", "file_digest",
           "REPORT_LEVELS", "REAL_SPEECH_LEVELS"]
