"""What each data source buys for your own keywords (notebook 7): the same float model trained on different data.

:func:`compare_sources` trains the float model of every replicate once per *variant*, a set of ``data`` settings
over the profile's own (say: synthetic speech only; 10 real clips per keyword plus synthetic; real clips only),
and reads each on the same held-out test clips and negative audio. The test split and the negatives do not depend
on the training data (``mix_synthetic_train``, ``real_keyword_clips`` and ``recordings`` change the train split
only), so the variants are compared clip by clip: :func:`kwslib.study.verdicts.pooled_entry` gives each variant's
FRR at the operating point and its paired difference to the ``reference`` variant with the replicate-level
interval. :func:`keyword_accuracy` is the share of held-out keyword clips classified as their keyword, per
replicate, with the t-interval over replicates.

Assumptions: every variant uses the profile's validation split (real clips when the source is real) to pick its
best epoch, so what varies is the training data alone; the operating point is the profile's (from its negative
hours), the same for every variant.
"""
from __future__ import annotations

import copy

import numpy as np

from ..errors import ConfigError


def keyword_accuracy(recs: list) -> dict:
    """Share of keyword clips (classes from index 2) classified as their keyword: per replicate, pooled (clip
    weighted), and the 95% t-interval over replicates (None with one replicate), clipped to [0, 1]: an accuracy
    cannot leave it, and with three replicates the t-interval alone often would."""
    from ..evaluation import stats

    per = []
    for r in recs:
        labels, correct = np.asarray(r["labels"]), np.asarray(r["correct"], bool)
        kw = labels >= 2
        if not kw.any():
            raise ValueError("keyword_accuracy: a record holds no keyword clip")
        per.append((float(correct[kw].mean()), int(kw.sum())))
    acc = np.array([a for a, _ in per])
    n = np.array([c for _, c in per], float)
    out = {"per_replicate": acc.tolist(), "mean": float(acc.mean()), "pooled": float((acc * n).sum() / n.sum()),
           "clips": int(n.sum()), "ci": None}
    if len(acc) > 1:
        lo, hi = stats.replicate_interval(acc)["ci"]  # equal weights: the mean of the replicates
        out["ci"] = [max(0.0, float(lo)), min(1.0, float(hi))]
    return out


def variant_params(base: dict, overrides: dict) -> dict:
    """The notebook's parameter dicts with a variant's ``data`` overrides applied (a deep copy)."""
    out = copy.deepcopy(base)
    data = dict(out.get("data") or {})
    data.update(overrides or {})
    out["data"] = data
    return out


def compare_sources(base: dict, variants: dict, reference: str, p, log=None, on_model=None) -> dict:
    """Train and read the float model of every replicate for each variant; pool and pair them.

    ``base``: the notebook's parameter dicts (``data``, ``features``, ``model``, ``train``, ``eval``,
    ``negatives``, ``replicates``); ``variants``: name -> ``data`` overrides; ``reference``: the variant the
    others are paired with; ``p``: the profile's folders (:func:`kwslib.study.experiment.paths`; each variant
    writes below ``variants/<name>/``). Returns ``{"op": ..., "variants": {name: entry}}`` where an entry holds the pooled
    entry of :func:`~kwslib.study.verdicts.pooled_entry` (paired with the reference), ``keyword_accuracy`` and
    the training clips of each kind (from the corpus notes).
    """
    from ..evaluation import evaluate
    from . import experiment, verdicts

    from ..model import torch_posterior_fn

    if not variants or reference not in variants:
        raise ConfigError(f"own keywords: the reference {reference!r} must be one of the variants {sorted(variants or {})}")
    recs, notes, op, margin, cfg0 = {}, {}, None, None, None
    # the reference first: every other variant is read again against the reference's record of the same replicate
    # (its false detections at the reference's FRR: the paired FD/h needs them)
    for name in [reference] + [n for n in variants if n != reference]:
        prm = variant_params(base, variants[name])
        cfg = experiment.experiment_config(**{k: prm.get(k) for k in ("data", "features", "model", "train", "eval",
                                                                      "negatives", "replicates")})
        vp = experiment.paths(p.results / "variants" / name, p.cache)
        recs[name], notes[name] = [], None
        for rep in experiment.replicate_runs(cfg, vp):
            if op is None:  # the reference's negative audio sets the operating point for all (the same audio)
                op, margin, cfg0 = evaluate.operating_point(rep.data, cfg.eval), cfg.eval.parity_margin, cfg
            got = experiment.float_replicate(rep, op, log=log)
            net, rec = got[0], got[4]
            if name != reference:
                ref = recs[reference][len(recs[name])]
                f = rep.paths.models / "float.pt"
                key = {"paired_with": reference, "reference_threshold": ref["threshold_at_op"],
                       "reference_frr": ref["frr_at_op"]}
                rec = (experiment.cached_record(rep, "float_paired", f, key_extra=key)
                       or experiment.read_model(rep, "float_paired", torch_posterior_fn(net), op, f, float_record=ref,
                                                key_extra=key)[1])
            recs[name].append(rec)
            if notes[name] is None:
                notes[name] = {k: v for k, v in rep.corpus.notes.items() if k in (
                    "real_keyword_train_clips", "recordings_train_clips", "mixed_synthetic_train_clips",
                    "unknown_speech_train_clips")} | {"train_clips": len(rep.corpus.train)}
            if on_model is not None:
                on_model(name, rep.k, rec)
    out = {}
    for name in variants:
        paired = None if name == reference else recs[reference]
        e = verdicts.pooled_entry(recs[name], paired, margin, n_boot=cfg0.eval.n_boot, seed=cfg0.eval.boot_seed,
                                  op_fdph=op, min_events=cfg0.eval.min_events)
        out[name] = {"entry": e, "keyword_accuracy": keyword_accuracy(recs[name]), "train": notes[name],
                     "data": dict(variants[name])}
    return {"op": op, "reference": reference, "variants": out}
