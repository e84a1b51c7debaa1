"""Replicates: the same chain run several times, and the record each run writes of what its models measured.

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
threshold grid. :mod:`kwslib.study.verdicts` pools the records of one model over the replicates into its verdict, and
:mod:`kwslib.study.rerun` recomputes and compares stored runs.

Replicate 0 writes into the profile's own results folder (the models notebooks 4 and 5 read and that
``kwslib export`` exports); replicate k > 0 into ``replicates/r<k>/`` below it.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..deploy import detection
from ..evaluation import metrics
from ..errors import ConfigError

KINDS = ("seeds", "speaker_folds")
#: Environment variable that sets ``replicates.seed`` over the params: a second run of the same commit with
#: other seeds is ``KWS_REPLICATES_SEED=100 make reproduce PROFILE=sc12`` (from a fresh clone, or with
#: ``--force``: the reproduce stamps do not see it); the summary records it (``replicates.seed_source``).
SEED_ENV = "KWS_REPLICATES_SEED"
#: False-detection rates at which the FRR is also reported, where the negative hours support them.
REPORT_LEVELS = (1.0, 5.0, 10.0, 50.0)
RECORD_VERSION = 2  # 2: per-unit counts at the band of thresholds (unit_curve_*)


@dataclass
class ReplicatesConfig:
    n: int = 1
    kind: str = "seeds"  # "seeds" (synthetic) or "speaker_folds" (speech_commands_test_set)
    seeds: list[int] | None = None  # one per replicate (training seed; synthetic corpus seed too); None: seed..seed+n-1
    seed: int = 0  # base seed: replicate k trains with seed + k (two runs with different bases are two samples)

    def __post_init__(self):
        env = os.environ.get(SEED_ENV)
        self.seed_source = "params"
        if env not in (None, ""):
            try:
                self.seed = int(env)
            except ValueError:
                raise ConfigError(f"{SEED_ENV}={env!r}: must be an integer >= 0 (the replicates' base seed)") from None
            self.seed_source = SEED_ENV
            if self.seeds is not None:
                raise ConfigError(f"{SEED_ENV} sets the base seed, but the params list replicates.seeds: "
                                  "remove one of the two")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"replicates.n must be an integer >= 1, got {self.n!r}")
        if self.kind not in KINDS:
            raise ConfigError(f"replicates.kind must be one of {list(KINDS)}, got {self.kind!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"replicates.seed must be an integer >= 0, got {self.seed!r}")
        if self.seeds is not None:
            if len(self.seeds) != self.n:
                raise ConfigError(f"replicates.seeds must have n={self.n} entries, got {self.seeds!r}")
            if self.seed != 0:
                raise ConfigError("replicates.seeds and replicates.seed: give one of them (seeds lists every "
                                  "replicate's seed, seed is the base of seed..seed+n-1)")

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [self.seed + k for k in range(self.n)]

    def describe(self) -> dict:
        return {"n": self.n, "kind": self.kind, "seeds": self.seed_list, "seed": self.seed,
                "seed_source": self.seed_source}


def replicates_config(d: dict | None) -> ReplicatesConfig:
    from ..config import from_dict

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
    elif cfg.data.source == "synthetic":  # a new corpus and a new training seed
        out.data.synthetic_seed = int(cfg.data.synthetic_seed + seed)
    elif cfg.data.source == "speech_commands_test_set":
        raise ConfigError("replicates.kind seeds on the test-set archive: it has no split of its own, so the "
                          "replicates need data.source synthetic, or kind speaker_folds for this archive")
    # else a dataset with its own official split (the full archive's lists, the hub): the split stays and only the
    # training seed varies, so the replicates measure training variance with the test speakers held fixed
    return out


def replicate_paths(p, k: int):
    """Replicate ``k``'s folders: the profile's own for k = 0, ``replicates/r<k>/`` below it otherwise."""
    if k == 0:
        return p
    q = dataclasses.replace(p, results=p.results / "replicates" / f"r{k}")  # the same cache
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
            steps = detection.detection_steps(sc[:, k], threshold, res.refractory)
            np.add.at(c, src.unit_of_step[steps], 1)
        out.append(c)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


#: A record keeps the false detections of every unit of negative audio at every grid threshold from the
#: lowest one past which the DET curve stays at or under BAND_FACTOR x the operating point's rate: what it
#: takes to re-derive the operating-point threshold from resampled negative audio (a resample whose rate
#: at a threshold is 4x lower than the whole audio's, at >= 20 events, does not happen).
BAND_FACTOR = 4.0


def _unit_curve(res, data, op_fdph: float) -> dict:
    """Per-unit false detections at the band of grid thresholds (see BAND_FACTOR), sparse: the
    ``(unit, threshold index, count)`` triplets of the non-zero counts and the band's first index."""
    thr = np.asarray(res.curve_stream["thresholds"], np.float64)
    fdph = np.asarray(res.curve_stream["fdph"], np.float64)
    suffix_max = np.maximum.accumulate(fdph[::-1])[::-1]
    ok = np.flatnonzero(suffix_max <= BAND_FACTOR * op_fdph)
    j_lo = int(ok[0]) if ok.size else len(thr) - 1
    gap = max(int(res.refractory), 1)
    n_units = sum(len(src.unit_ids) for src in data.negatives.values())
    counts = np.zeros((len(thr) - j_lo, n_units), np.int64)
    offset = 0
    for name, src in data.negatives.items():
        sc = res.negative_scores[name]
        unit_of_step = np.asarray(src.unit_of_step)
        for k in range(sc.shape[1]):
            col = np.asarray(sc[:, k])
            pos = np.flatnonzero(col >= thr[j_lo])
            vals = col[pos]
            for j in range(j_lo, len(thr)):
                steps = detection.steps_from_above(pos[vals >= thr[j]], gap)
                if steps.size:
                    np.add.at(counts[j - j_lo], offset + unit_of_step[steps], 1)
        offset += len(src.unit_ids)
    jj, uu = np.nonzero(counts)
    return {"unit_curve_from": j_lo, "unit_curve_index": (jj + j_lo).astype(np.int32),
            "unit_curve_unit": uu.astype(np.int32), "unit_curve_count": counts[jj, uu].astype(np.int32)}


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
    is_pos = np.isin(labels, data.keyword_idx)
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
    rec.update(_unit_curve(res, data, op_fdph))
    if float_record is not None:
        t2 = _lowest_fdph_threshold(res.curve_stream, float_record["frr_at_op"])
        rec["threshold_at_float_frr"] = t2
        rec["counts_at_float_frr"] = _unit_counts(res, data, t2)
    return rec


def save_record(path, rec: dict, model_digest: str | None = None) -> None:
    """Write a record atomically as one ``.npz`` (arrays as arrays, the rest as JSON)."""
    from ..io import atomic_write_bytes

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
