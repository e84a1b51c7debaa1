"""Choosing float-model settings on validation data: ``python -m kwslib.study.tuning``.

One *trial* trains the float model of replicate 0 of a profile (for ``sc12``: speaker fold 0) with
the profile's settings plus a few overrides, and reads it on the **validation** split only (the test
split is never read): 12-class accuracy, ``_unknown_`` recall, and FRR at 20 / 50 / 100 false
detections per hour of *validation negatives*. Every trial is appended to a JSON-lines log
(``results/<profile>/trials.jsonl``, one record per line, rewritten atomically) and
``--table`` renders the log as the markdown trial table (``results/<profile>/trials.md``).

Assumptions (each is a parameter below):

- **Validation negatives** are espeak-ng non-keyword speech from the *train* half of the negative
  vocabulary (``synthetic_vocabulary: train``) with their own seed (3000; rejection training uses
  2000, the test negatives the *test* half with seed 1000), plus the test part of the noise
  recordings; about 1 h, so 20 FD/h rests on >= 20 events. The FRR columns read these alone.
- **Real validation speech**: when the real non-keyword speech is there (``$KWS_REAL_NEGATIVES_ROOT``)
  and the trial does not train on it, its ``val`` part (by source folder,
  :func:`kwslib.data.negatives.real_negative_parts`) is read too: ``val_real_fdph`` is its false detections
  per hour at the threshold of 20 FD/h of the synthetic validation negatives (~0.1 h: a coarse,
  indicative number). The ``test`` part is never read here.
- A trial trains from scratch into ``results/scratch/tuning/<profile>/<name>/`` (ignored by git);
  the corpus and negative-stream caches are shared by all trials of a profile.
- Seconds are wall-clock seconds of training plus evaluation; on a shared machine they are indicative.

Example::

    python -m kwslib.study.tuning --profile sc12 --name mixup02 --set train.mixup_alpha=0.2
    python -m kwslib.study.tuning --profile sc12 --table results/sc12/trials.md
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import yaml

from ..config import REPO_ROOT
from ..errors import ConfigError
from .train_cli import EXPERIMENT_KEYS

#: The validation-negatives settings of every trial (see the module docstring).
VALIDATION_NEGATIVES = {"real_speech": False, "synthetic_hours": 1.0, "synthetic_seed": 3000,
                        "synthetic_vocabulary": "train", "noise": True}
FDPH_LEVELS = (20, 50, 100)


def parse_override(text: str) -> tuple[list[str], object]:
    """``"train.mixup_alpha=0.2"`` -> (["train", "mixup_alpha"], 0.2); the value is read as YAML."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE (e.g. train.epochs=200)")
    key, value = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or path[0] not in EXPERIMENT_KEYS or not all(path):
        raise ConfigError(f"--set {text!r}: the key must start with one of {list(EXPERIMENT_KEYS)} "
                          f"and name a parameter (e.g. train.epochs)")
    try:
        return path, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from exc


def apply_overrides(params: dict, overrides) -> dict:
    """A deep copy of ``params`` with each (path, value) set; intermediate mappings are created."""
    out = copy.deepcopy(params)
    for path, value in overrides:
        node = out
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:i + 1])} is {nxt!r}, not a mapping")
            node = nxt
        node[path[-1]] = value
    return out


def profile_params(profile: str, params_root=None) -> dict:
    """The experiment sections of a profile's ``01_float.yaml`` merged over its ``shared.yaml``
    (:func:`kwslib.study.train_cli.merged_params`, as ``python -m kwslib.train`` and ``make reproduce`` merge them)."""
    from ..config import profile_dir
    from .train_cli import merged_params

    params = merged_params(profile_dir(profile, params_root) / "01_float.yaml")
    return {k: v for k, v in params.items() if k in EXPERIMENT_KEYS}


def trial_config(profile: str, overrides=(), params_root=None):
    """ExperimentConfig of replicate 0 of ``profile`` with the overrides applied (strictly checked)."""
    from .experiment import experiment_config
    from .replicates import replicate_config

    params = apply_overrides(profile_params(profile, params_root), overrides)
    cfg = experiment_config(**{k: params.get(k) for k in EXPERIMENT_KEYS})
    return replicate_config(cfg, cfg.replicates, 0)


def validation_data(cfg, cache_dir, negative_hours: float | None = None, real_val: bool | None = None):
    """(corpus, EvalData): the corpus of ``cfg`` and its *validation* split prepared as the test data.

    ``negative_hours``: hours of synthetic validation negatives (default :data:`VALIDATION_NEGATIVES`'s).
    ``real_val``: also read the ``val`` part of the real non-keyword speech (None: when
    ``$KWS_REAL_NEGATIVES_ROOT`` is set and ``cfg`` does not train on that part).
    """
    import dataclasses
    import os

    from ..data import load_corpus
    from ..evaluation.evaluate import NegativesConfig, prepare_eval

    if real_val is None:
        real_val = bool(os.environ.get(cfg.data.real_env) or cfg.data.real_root) \
            and "val" not in cfg.data.unknown_real_parts
    neg = {**VALIDATION_NEGATIVES, **({} if negative_hours is None else {"synthetic_hours": negative_hours})}
    if real_val:
        neg.update(real_speech=True, real_parts=["val"], real_noise=False, real_root=cfg.data.real_root,
                   real_env=cfg.data.real_env)
    corpus = load_corpus(cfg.data, cache_dir=Path(cache_dir) / "corpus")
    as_test = dataclasses.replace(corpus, test=corpus.val)
    data = prepare_eval(as_test, cfg.features, cfg.model.context_frames, cfg.model.step_frames, cfg.eval,
                        NegativesConfig(**neg), cache_dir=Path(cache_dir) / "negatives")
    return corpus, data


def validation_record(res, data) -> dict:
    """The numbers a trial reports from an EvalResult on validation data.

    FRR at each level of :data:`FDPH_LEVELS` is read on the synthetic validation negatives and noise
    alone (the sources of :data:`VALIDATION_NEGATIVES`); ``val_real_fdph``: false detections per hour of
    the real validation speech (source ``real_speech``, when read) at the threshold of 20 FD/h.
    """
    import numpy as np

    from ..evaluation import metrics
    from ..data.base import CLASS_INDEX

    u = CLASS_INDEX["_unknown_"]
    conf = res.confusion
    hours = data.hours_by_source()
    base = [k for k in res.curve_by_source if k != "real_speech"] if res.curve_by_source else []
    if base:
        thr = np.asarray(res.curve_by_source[base[0]]["thresholds"])
        fd = sum(np.asarray(res.curve_by_source[k]["false_detections"]) for k in base)
        curve = {"thresholds": thr, "fdph": fd / sum(hours[k] for k in base)}
    else:  # a result without per-source curves: its pooled curve
        curve = res.curve_stream
    frr, thresholds = {}, {}
    for level in FDPH_LEVELS:
        try:
            thresholds[level] = metrics.threshold_at_fdph(curve, level)
            frr[str(level)] = metrics.frr_at(res.pos_scores, thresholds[level])
        except ValueError:
            frr[str(level)] = None
    real = None
    if "real_speech" in res.curve_by_source and FDPH_LEVELS[0] in thresholds:
        rc = res.curve_by_source["real_speech"]
        j = int(np.flatnonzero(np.asarray(rc["thresholds"]) == thresholds[FDPH_LEVELS[0]])[0])
        real = float(rc["false_detections"][j] / hours["real_speech"])
    kw = np.asarray(conf)[2:]  # the keyword rows (classes 2.., after _silence_ and _unknown_)
    return {"val_acc": float(res.accuracy),
            # the share of keyword clips classified as their keyword: with a large _unknown_ class val_acc hides it
            "val_keyword_acc": float(np.trace(np.asarray(conf)[2:, 2:]) / kw.sum()) if kw.sum() else None,
            "unknown_recall": float(conf[u, u] / conf[u].sum()) if conf[u].sum() else None,
            "val_frr_at_fdph": frr, "val_negative_hours": float(sum(hours[k] for k in base) if base else
                                                                data.negative_hours),
            "val_real_fdph": real, "val_real_hours": hours.get("real_speech")}


def run_trial(profile: str, name: str, overrides=(), work_dir=None, params_root=None, log=print,
              negative_hours: float | None = None) -> dict:
    """Train and read one trial; returns its record (not yet logged).

    ``work_dir``: where trials train (default ``results/scratch/tuning/<profile>``); ``params_root``: the
    params folder (default the repository's ``params/``); ``negative_hours``: see :func:`validation_data`.
    """
    from ..evaluation import evaluate
    from .experiment import Paths, train_float
    from ..model import count_params, torch_posterior_fn

    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"trial name {name!r}: use a plain name (letters, digits, - and _)")
    cfg = trial_config(profile, overrides, params_root)
    root = Path(work_dir) if work_dir else REPO_ROOT / "results" / "scratch" / "tuning" / profile
    p = Paths(root / name, root / "cache")
    for folder in (p.results, p.models, p.cache):
        folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    corpus, data = validation_data(cfg, p.cache, negative_hours)
    net, history, train_seconds = train_float(cfg, corpus, p, log=log, resume=True, device="cpu")[:3]
    res = evaluate.evaluate(torch_posterior_fn(net), data, cfg.eval)
    rec = {"name": name, "profile": profile, "overrides": {".".join(k): v for k, v in overrides},
           "train_clips": len(corpus.train), "val_clips": len(corpus.val), "params": count_params(net),
           **validation_record(res, data), "train_seconds": round(float(train_seconds), 1),
           "seconds": round(time.time() - t0, 1), "commit": _commit()}
    return rec


def _commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=REPO_ROOT)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "kwslib"], capture_output=True, text=True,
                               timeout=10, cwd=REPO_ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def read_log(path) -> list[dict]:
    """The records of a trial log (missing file: none); ConfigError naming the line of a damaged one."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{i}: not a JSON record ({exc})") from exc
        if not isinstance(rec, dict) or "name" not in rec:
            raise ConfigError(f"{path}:{i}: a trial record is a JSON object with a 'name'")
        out.append(rec)
    return out


def append_log(path, rec: dict) -> None:
    """Add ``rec`` to the log (a record of the same name is replaced); written to a temp file, then renamed."""
    from ..io import atomic_write_text

    recs = [r for r in read_log(path) if r["name"] != rec["name"]] + [rec]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))


def _fmt(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"


def trials_table(records: list[dict]) -> str:
    """The markdown table of trial records, in log order."""
    head = ("| trial | change (over the profile) | train clips | params | val acc | val keyword acc | "
            "`_unknown_` recall | val FRR @ " + " / ".join(str(x) for x in FDPH_LEVELS) + " FD/h | "
            "real val speech FD/h | seconds | commit |")
    lines = [head, "|" + "---|" * 11]
    for r in records:
        change = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in r.get("overrides", {}).items()) or "profile as is"
        frr = " / ".join(_fmt(r.get("val_frr_at_fdph", {}).get(str(x))) for x in FDPH_LEVELS)
        lines.append(f"| {r['name']} | {change} | {r.get('train_clips', 'n/a')} | {r.get('params', 'n/a')} | "
                     f"{_fmt(r.get('val_acc'))} | {_fmt(r.get('val_keyword_acc'))} | "
                     f"{_fmt(r.get('unknown_recall'))} | {frr} | "
                     f"{_fmt(r.get('val_real_fdph'), 1)} | "
                     f"{_fmt(r.get('seconds'), 0)} | {r.get('commit') or 'n/a'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kwslib.study.tuning", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--name", help="trial name (runs a trial)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a profile setting (repeatable), e.g. train.mixup_alpha=0.2")
    ap.add_argument("--log", help="trial log (default results/<profile>/trials.jsonl)")
    ap.add_argument("--table", metavar="PATH", help="write the markdown table of the log to PATH ('-': print it)")
    args = ap.parse_args(argv)
    root = REPO_ROOT
    log_path = Path(args.log) if args.log else root / "results" / args.profile / "trials.jsonl"
    try:
        if args.name:
            overrides = [parse_override(s) for s in args.set]
            rec = run_trial(args.profile, args.name, overrides)
            append_log(log_path, rec)
            print(json.dumps(rec, sort_keys=True))
        elif args.set:
            raise ConfigError("--set needs --name (the trial to run)")
        if args.table:
            table = trials_table(read_log(log_path))
            if args.table == "-":
                print(table, end="")
            else:
                from ..io import atomic_write_text

                atomic_write_text(args.table, table)
        if not args.name and not args.table:
            ap.error("give --name (run a trial) and/or --table (write the table)")
    except ConfigError as exc:
        print(f"kwslib.study.tuning: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
