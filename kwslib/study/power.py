"""Buying the power to conclude: what a design would give, by simulation from measured variance components.

A verdict (:mod:`kwslib.study.verdicts`) is conclusive when its interval lies inside the parity margin or past
it on one side. How often a design gets there depends on the variance components a run measures
(``variance_components`` of a claim model, FRR points as sd) and on what the design buys:

- **replicates** ``R`` (folds x seeds): each a new float model, QAT run and test fold;
- **QAT seeds** ``S`` per float model, their differences averaged: divides the QAT-seed part's variance by S
  (it does nothing for float retraining, the larger part on sc12);
- **negative audio** ``f`` times the run's: the threshold rests on ``f`` times the events, so the threshold
  part and the negative audio all replicates share shrink by ``sqrt(f)`` (the binomial scaling of a quantile).

:func:`simulate` draws per-replicate differences from these parts (normal, independent) and reads each draw
with the interval the verdicts use (:func:`kwslib.evaluation.stats.replicate_interval_many`, the shared part
known), so it returns the share of each verdict and the interval's coverage. :func:`plan` weighs a grid of
designs against their cost in seconds (:func:`costs_from_summary`, from the run's own timings) and a budget by
the chance of the right conclusive verdict when the models are at parity ("equivalent" at a true difference of
0; "better" or "worse" there are errors, not power), and :func:`choose` applies the declared rule: the cheapest
design within the budget whose mean chance over the claims reaches ``target``; when none does, the run's own
design, with the cheapest design at any cost that would reach it named beside it. Assumption: the parts are the measured ones (their
estimates rest on a few replicates; the QAT-seed part on 3 runs) and the true difference is 0 (parity) unless
given; the choice never reads a verdict, only variances and timings.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from ..errors import ConfigError
from ..evaluation import stats

#: The parts :func:`simulate` reads (FRR points, as sd); ``training`` stands for float retraining plus QAT seed
#: when the run did not split it (then QAT seeds are assumed to buy nothing: the conservative reading).
PARTS = ("test_speakers", "threshold_negatives", "shared_negatives", "qat_seed", "float_retraining", "training")


@dataclasses.dataclass(frozen=True)
class Design:
    """What a run buys: replicates, QAT seeds per float model, negative audio relative to the measured run's."""
    replicates: int
    qat_seeds: int = 1
    negatives_factor: float = 1.0

    def __post_init__(self):
        if isinstance(self.replicates, bool) or not isinstance(self.replicates, (int, np.integer)) or self.replicates < 2:
            raise ConfigError(f"Design.replicates must be an integer >= 2 (the interval needs 2), got {self.replicates!r}")
        if isinstance(self.qat_seeds, bool) or not isinstance(self.qat_seeds, (int, np.integer)) or self.qat_seeds < 1:
            raise ConfigError(f"Design.qat_seeds must be an integer >= 1, got {self.qat_seeds!r}")
        f = self.negatives_factor
        if isinstance(f, bool) or not isinstance(f, (int, float, np.floating)) or not math.isfinite(f) or f <= 0:
            raise ConfigError(f"Design.negatives_factor must be a number > 0, got {f!r}")

    def label(self) -> str:
        return f"{self.replicates} replicates x {self.qat_seeds} QAT seed(s), negatives x{self.negatives_factor:g}"


def _parts(components: dict) -> dict:
    """The components as non-negative sd in FRR *fractions*, with the training part split or not."""
    if not isinstance(components, dict):
        raise ConfigError(f"variance components must be a dict of FRR-point sd, got {type(components).__name__}")
    out = {}
    for k in PARTS:
        v = components.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"variance component {k!r} must be a number >= 0 (FRR points, sd), got {v!r}")
        out[k] = float(v) / 100.0
    if "float_retraining" not in out and "training" not in out:
        raise ConfigError("variance components: need 'training' or 'float_retraining' (FRR points, sd)")
    return out


def per_replicate_sd(components: dict, design: Design) -> tuple[float, float]:
    """(sd of one replicate's difference, sd of the part all replicates share) under ``design``, in FRR fractions."""
    p = _parts(components)
    if "float_retraining" in p:
        train_var = p["float_retraining"] ** 2 + p.get("qat_seed", 0.0) ** 2 / design.qat_seeds
    else:
        train_var = p["training"] ** 2
    f = float(design.negatives_factor)
    own = train_var + p.get("test_speakers", 0.0) ** 2 + p.get("threshold_negatives", 0.0) ** 2 / f
    return math.sqrt(own), p.get("shared_negatives", 0.0) / math.sqrt(f)


def simulate(components: dict, design: Design, margin: float, true_delta: float = 0.0, n_sim: int = 4000,
             seed: int = 0, alpha: float = 0.05) -> dict:
    """Shares of the four verdicts, the interval's coverage of ``true_delta`` and its mean half-width (FRR
    fraction) over ``n_sim`` simulated runs of ``design`` (see the module doc for the model)."""
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < 100:
        raise ConfigError(f"simulate: n_sim must be an integer >= 100, got {n_sim!r}")
    if not (isinstance(margin, (int, float)) and margin > 0):
        raise ConfigError(f"simulate: margin must be > 0 (an FRR fraction), got {margin!r}")
    own, shared = per_replicate_sd(components, design)
    rng = np.random.default_rng(seed)
    d = (true_delta + own * rng.standard_normal((int(n_sim), design.replicates))
         + shared * rng.standard_normal((int(n_sim), 1)))
    r = stats.replicate_interval_many(d, shared_var=shared ** 2, alpha=alpha)
    lo, hi = r["lo"], r["hi"]
    equivalent = (lo >= -margin) & (hi <= margin)
    worse = ~equivalent & (lo > 0) & (hi > margin)
    better = ~equivalent & (hi < 0) & (lo < -margin)
    out = {"equivalent": float(equivalent.mean()), "better": float(better.mean()), "worse": float(worse.mean())}
    out["inconclusive"] = 1.0 - out["equivalent"] - out["better"] - out["worse"]
    out["conclusive"] = 1.0 - out["inconclusive"]
    out["coverage"] = float(((lo <= true_delta) & (true_delta <= hi)).mean())
    out["half_width"] = float(np.mean((hi - lo) / 2.0))
    return out


def costs_from_summary(summary: dict) -> dict:
    """Seconds per unit a design buys, from the run's own timings (None where the run did not measure it).

    ``per_replicate``: notebooks 1-3 over the replicates, the QAT-seed runs taken out; ``per_qat_seed``: one
    more stage-1 + stage-2 training per claim width and replicate (their mean training seconds);
    ``per_negative_hour``: evaluating every model of a replicate on one more hour of negative audio (the mean
    ``eval_seconds`` over the models, per hour of the run's negative audio, times the models; an upper bound:
    ``eval_seconds`` also holds the test clips, and making the extra audio, once, is not counted)."""
    models = summary.get("models") or {}
    timings = summary.get("timings") or {}
    n = int((summary.get("replicates") or {}).get("n") or 1)
    nb = [timings.get(k) for k in ("01_float_baseline_seconds", "02_stage1_seconds", "03_stage2_seconds")]
    qs = timings.get("qat_seed_seconds") or 0.0
    per_rep = None if any(v is None for v in nb) else (sum(nb) - qs) / n

    def mean_train(name):
        v = [x for x in (models.get(name) or {}).get("train_seconds") or [] if x is not None]
        return float(np.mean(v)) if v else None

    widths = sorted({int(k.split("_w")[1]) for k in models if k.startswith("stage2_w")})
    per_seed = [(mean_train(f"stage1_w{b}"), mean_train(f"stage2_w{b}")) for b in widths]
    per_qat_seed = (sum(a + b for a, b in per_seed) if per_seed and all(a is not None and b is not None
                                                                         for a, b in per_seed) else None)
    evals = [e.get("eval_seconds") for e in models.values() if isinstance(e, dict) and e.get("eval_seconds")]
    hours = (summary.get("operating_point") or {}).get("stream_hours")
    per_hour = (float(np.mean(evals)) * len(evals) / hours) if evals and hours else None
    return {"per_replicate": per_rep, "per_qat_seed": per_qat_seed, "per_negative_hour": per_hour,
            "replicates": n, "negative_hours": hours}


def design_seconds(design: Design, costs: dict) -> float | None:
    """The run's seconds under ``design`` (None when a unit it buys was not measured)."""
    if costs.get("per_replicate") is None:
        return None
    total = design.replicates * costs["per_replicate"]
    if design.qat_seeds > 1:
        if costs.get("per_qat_seed") is None:
            return None
        total += design.replicates * (design.qat_seeds - 1) * costs["per_qat_seed"]
    if design.negatives_factor != 1.0:
        if costs.get("per_negative_hour") is None or costs.get("negative_hours") is None:
            return None
        total += design.replicates * (design.negatives_factor - 1.0) * costs["negative_hours"] * costs["per_negative_hour"]
    return float(total)


DEFAULT_GRID = {"replicates": (5, 10, 20, 40, 80, 160), "qat_seeds": (1, 3), "negatives_factor": (1.0, 5.0)}


def plan(components_by_claim: dict, costs: dict, margin: float, grid: dict | None = None, n_sim: int = 2000,
         seed: int = 0) -> list[dict]:
    """One row per design of ``grid`` (keys of :data:`DEFAULT_GRID`): its seconds, and per claim and on average
    the chance of an "equivalent" verdict at a true difference of 0 (parity concluded)."""
    if not components_by_claim:
        raise ConfigError("plan: no claim has variance components (a run with >= 2 replicates measures them)")
    g = {**DEFAULT_GRID, **(grid or {})}
    rows = []
    for r, s, f in itertools.product(g["replicates"], g["qat_seeds"], g["negatives_factor"]):
        d = Design(int(r), int(s), float(f))
        p = {k: simulate(vc, d, margin, n_sim=n_sim, seed=seed)["equivalent"] for k, vc in components_by_claim.items()}
        rows.append({"design": d, "label": d.label(), "seconds": design_seconds(d, costs),
                     "p_equivalent": p, "mean_p_equivalent": float(np.mean(list(p.values())))})
    return rows


def choose(rows: list[dict], budget_s: float, current: Design, target: float = 0.5) -> dict:
    """The declared rule (module doc): ``{"design", "reason", "cheapest_reaching_target"}``."""
    reach = sorted((r for r in rows if r["mean_p_equivalent"] >= target and r["seconds"] is not None),
                   key=lambda r: r["seconds"])
    within = [r for r in reach if r["seconds"] <= budget_s]
    cheapest = reach[0] if reach else None
    if within:
        return {"design": within[0]["design"], "cheapest_reaching_target": cheapest,
                "reason": f"cheapest design within {budget_s / 60:.0f} min whose mean chance of concluding parity "
                          f"at parity is >= {target:.0%} ({within[0]['mean_p_equivalent']:.0%})"}
    return {"design": current, "cheapest_reaching_target": cheapest,
            "reason": (f"no design within {budget_s / 60:.0f} min reaches a {target:.0%} mean chance of concluding "
                       "parity at parity: the run keeps its design (spending more buys almost nothing); "
                       + (f"the cheapest that would: {cheapest['label']}, ~{cheapest['seconds'] / 3600:.1f} h"
                          if cheapest else "none of the grid's designs reaches it"))}


def plan_summary(summary: dict, budget_minutes: float, target: float = 0.5, grid: dict | None = None,
                 n_sim: int = 2000, seed: int = 0) -> dict | None:
    """The plan of a run's ``summary.json`` for its claim models (JSON-able; None when no claim has variance
    components): the grid's designs with minutes and chances, the choice under ``budget_minutes`` and why."""
    from .verdict_tables import CLAIM_MODELS

    models = summary.get("models") or {}
    comps = {k: models[k]["variance_components"] for k in CLAIM_MODELS
             if isinstance(models.get(k), dict) and models[k].get("variance_components")}
    if not comps:
        return None
    if not (isinstance(budget_minutes, (int, float)) and budget_minutes > 0):
        raise ConfigError(f"plan_summary: budget_minutes must be > 0, got {budget_minutes!r}")
    margin = (summary.get("operating_point") or {}).get("parity_margin") or 0.02
    costs = costs_from_summary(summary)
    n = int(costs["replicates"])
    current = Design(max(n, 2))
    g = {**DEFAULT_GRID, **(grid or {})}
    g["replicates"] = tuple(sorted({n, *g["replicates"]} - {1}))
    rows = plan(comps, costs, margin, grid=g, n_sim=n_sim, seed=seed)
    got = choose(rows, 60.0 * budget_minutes, current, target)

    def row(r):
        return None if r is None else {
            "design": dataclasses.asdict(r["design"]), "label": r["label"],
            "minutes": None if r["seconds"] is None else round(r["seconds"] / 60.0, 1),
            "mean_p_equivalent": round(r["mean_p_equivalent"], 3),
            "p_equivalent": {k: round(v, 3) for k, v in r["p_equivalent"].items()}}

    return {"budget_minutes": budget_minutes, "target": target, "margin": margin, "n_sim": n_sim,
            "costs_seconds": {k: (None if v is None else round(float(v), 2)) for k, v in costs.items()},
            "rows": [row(r) for r in rows], "choice": dataclasses.asdict(got["design"]), "reason": got["reason"],
            "cheapest_reaching_target": row(got["cheapest_reaching_target"]),
            "basis": "this run's variance components of the claim models (true difference 0); the next run's "
                     "design, not this one's"}
