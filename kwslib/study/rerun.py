"""Stored runs: recompute a summary written before the replicate-level intervals, and compare two runs.

``python -m kwslib.study.rerun SUMMARY [--out FILE]`` recomputes the replicate-level fields of every
model from the per-replicate entries a summary stores (no retraining); ``python -m kwslib.study.rerun A
--against B`` prints two runs' verdicts side by side and exits 1 when they contradict on a claim model.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from ..evaluation import stats
from ..summary import git_commit
from .verdicts import _interval_fields, power_fields
from .verdict_tables import CLAIM_MODELS  # the models whose verdicts two runs must not contradict (issue 23)


_Z975 = 1.959963984540054


def recompute_entry(entry: dict, float_entry: dict, margin: float, alpha: float = 0.05) -> dict:
    """The replicate-level fields of one quantized model, recomputed from a summary entry written before them.

    Reads only what such an entry stores per replicate: ``delta_frr`` and its speaker-bootstrap
    ``delta_frr_ci`` (the speakers' variance is taken as ``((hi - lo) / (2 z))^2``), and ``accuracy``
    (paired with ``float_entry``'s per replicate). The replicates are weighted equally (their clip counts
    are not stored), so the interval's centre is the mean of the per-replicate differences. Not
    recomputable without the records: the threshold/negatives component and the shared part of the
    negative audio (left out: the interval is the t-interval of the replicates alone), and the per-hour
    interval (``delta_fdph_ci`` None). Returns the fields to merge into the entry.
    """
    reps = entry.get("per_replicate") or []
    f_reps = float_entry.get("per_replicate") or []
    if len(reps) < 2 or any(x.get("delta_frr") is None or x.get("delta_frr_ci") is None for x in reps):
        raise ValueError("recompute_entry: needs per_replicate entries with delta_frr and delta_frr_ci "
                         f"for at least 2 replicates, got {len(reps)}")
    d_rep = np.array([x["delta_frr"] for x in reps], float)
    spk_var = np.array([((x["delta_frr_ci"][1] - x["delta_frr_ci"][0]) / (2 * _Z975)) ** 2 for x in reps])
    r = stats.replicate_interval(d_rep, None, 0.0, alpha)
    old_ci = entry.get("delta_frr_ci_speakers_only", entry.get("delta_frr_ci"))
    old_verdict = entry.get("verdict_speakers_only", entry.get("verdict"))
    verdict = stats.equivalence_verdict(r["ci"], margin)
    out = {"delta_frr_ci": r["ci"], "delta_frr_se": r["se"],
           "delta_frr_interval": {"method": "replicate t-interval (replicate = unit), recomputed from the stored "
                                            "per-replicate differences; without the shared negative-audio part",
                                  "center": r["diff"], "se_replicates": r["se_replicates"], "se_shared": None,
                                  "df": r["df"], "n_replicates": r["n_replicates"],
                                  "sd_replicates": r["sd_replicates"]},
           "delta_frr_ci_speakers_only": old_ci, "verdict_speakers_only": old_verdict,
           "verdict": verdict, "verdict_reason": None, "parity_paired": verdict == "equivalent",
           "verdict_agreement": stats.replicate_agreement([x.get("verdict") for x in reps], verdict),
           "delta_fdph_ci": None,
           "delta_fdph_ci_reason": "not recomputable from the summary: per-replicate false detections were not stored",
           "delta_fdph_ci_units_only": entry.get("delta_fdph_ci_units_only", entry.get("delta_fdph_ci"))}
    if len(f_reps) == len(reps) and all(x.get("accuracy") is not None for x in reps + f_reps):
        d_acc = [q["accuracy"] - f["accuracy"] for q, f in zip(reps, f_reps)]
        out.update(_interval_fields("delta_accuracy", d_acc, None, 0.0, alpha, {}))
        out["delta_accuracy_ci_speakers_only"] = entry.get("delta_accuracy_ci_speakers_only",
                                                           entry.get("delta_accuracy_ci"))
    out.update(power_fields(d_rep, spk_var, None, 0.0, margin, alpha,
                            threshold_reason="not recomputable from the summary: the records (per-unit false "
                                             "detections) of that run were not kept; training here includes it",
                            df=r["df"], se=r["se"]))
    if out["variance_components"] is not None:
        out["variance_components"]["shared_negatives"] = None
    if out["replicates_needed"] is not None:
        out["replicates_needed_note"] = "at least: the shared negative-audio part is not in this recomputation"
    return out


def recompute_summary(summary: dict, commit: str | None = None) -> dict:
    """A copy of a summary with every quantized model's replicate-level fields recomputed by
    :func:`recompute_entry` from its stored per-replicate entries, and a top-level ``recomputed`` label
    (``at_commit``: the code that recomputed, ``run_commit``: the run the stored numbers come from)."""
    out = copy.deepcopy(summary)
    models = out.get("models") or {}
    fl = models.get("float")
    margin = (out.get("operating_point") or {}).get("parity_margin")
    if not isinstance(fl, dict) or margin is None:
        raise ValueError("recompute_summary: needs models.float and operating_point.parity_margin")
    done, skipped = [], {}
    for name, e in models.items():
        if name == "float" or not isinstance(e, dict) or e.get("delta_frr") is None:
            continue
        try:
            e.update(_plain_json(recompute_entry(e, fl, float(margin))))
            done.append(name)
        except ValueError as exc:
            skipped[name] = str(exc)
    out["recomputed"] = {
        "at_commit": commit, "run_commit": summary.get("git_commit"), "models": done, "skipped": skipped,
        "what": "delta_frr_ci (replicate t-interval), delta_frr_ci_speakers_only (the run's interval), verdict "
                "(from the new interval; verdict_speakers_only: the run's), variance_components (test speakers, "
                "training incl. threshold), replicates_needed, delta_accuracy_ci, min_detectable_delta_frr, "
                "min_equivalence_margin",
        "from": f"the stored per-replicate entries of the run at {summary.get('git_commit')} (no retraining)",
        "not_recomputed": "the threshold/negatives component and the shared negative-audio part (the run kept no "
                          "per-unit records), delta_fdph_ci (no per-replicate false detections stored): null",
    }
    return out


def _needs_recompute(summary: dict) -> bool:
    """Whether a summary's quantized models lack the replicate-level fields (written before them)."""
    models = [e for k, e in (summary.get("models") or {}).items()
              if k != "float" and isinstance(e, dict) and e.get("delta_frr") is not None]
    return bool(models) and any("delta_frr_ci_speakers_only" not in e for e in models)


def contradicts(a: str | None, b: str | None) -> bool:
    """Two verdicts contradict when one says "better" or "equivalent" where the other says "worse"
    ("inconclusive" contradicts nothing)."""
    return (a in ("better", "equivalent") and b == "worse") or (b in ("better", "equivalent") and a == "worse")


def compare_runs(a: dict, b: dict, models=None) -> dict:
    """The verdicts of two runs side by side (each recomputed first when written before the replicate-level
    fields): ``rows`` [{model, a, b, a_ci, b_ci, contradiction, a_speakers_only, b_speakers_only}] for
    ``models`` (default: every quantized model of both, the claim models first), ``contradictions`` (models)
    and ``claim_contradictions`` (those among :data:`CLAIM_MODELS`)."""
    a = recompute_summary(a) if _needs_recompute(a) else a
    b = recompute_summary(b) if _needs_recompute(b) else b
    ma, mb = a.get("models") or {}, b.get("models") or {}
    common = [k for k in ma if k in mb and k != "float" and isinstance(ma[k], dict) and "verdict" in ma[k]]
    names = list(models) if models is not None else (
        [k for k in CLAIM_MODELS if k in common] + [k for k in common if k not in CLAIM_MODELS])
    rows = []
    for k in names:
        if k not in ma or k not in mb:
            raise ValueError(f"compare_runs: model {k!r} is not in both summaries")
        x, y = ma[k], mb[k]
        rows.append({"model": k, "a": x.get("verdict"), "b": y.get("verdict"), "a_ci": x.get("delta_frr_ci"),
                     "b_ci": y.get("delta_frr_ci"), "contradiction": contradicts(x.get("verdict"), y.get("verdict")),
                     "a_speakers_only": x.get("verdict_speakers_only"), "b_speakers_only": y.get("verdict_speakers_only")})
    bad = [r["model"] for r in rows if r["contradiction"]]
    return {"rows": rows, "contradictions": bad, "claim_contradictions": [k for k in bad if k in CLAIM_MODELS],
            "a_commit": a.get("git_commit"), "b_commit": b.get("git_commit")}


def compare_markdown(cmp: dict) -> str:
    """:func:`compare_runs` as a markdown table (FRR differences and intervals in points)."""
    def cell(ci, v):
        return (v or "") if not ci or None in ci else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] {v}"

    lines = [f"| model | run A ({cmp['a_commit']}) | run B ({cmp['b_commit']}) | contradiction | speakers-only A / B |",
             "|---|---|---|---|---|"]
    for r in cmp["rows"]:
        lines.append(f"| {r['model']} | {cell(r['a_ci'], r['a'])} | {cell(r['b_ci'], r['b'])} | "
                     f"{'YES' if r['contradiction'] else 'no'} | {r['a_speakers_only']} / {r['b_speakers_only']} |")
    lines.append("")
    lines.append(f"contradictions: {len(cmp['contradictions'])} ({', '.join(cmp['contradictions']) or 'none'}); "
                 f"among stage 2 and the paper's stage-1 widths: {len(cmp['claim_contradictions'])}")
    return "\n".join(lines)


def _plain_json(d):
    from ..summary import _plain

    return _plain(d)


def main(argv=None) -> int:
    import argparse

    from ..io import atomic_write_json

    ap = argparse.ArgumentParser(prog="python -m kwslib.study.rerun",
                                 description="Recompute a summary's replicate-level intervals and verdicts from "
                                             "its stored per-replicate entries (no retraining).")
    ap.add_argument("summary", help="a summary.json written before the replicate-level intervals")
    ap.add_argument("--out", help="where to write the result (default: print the verdict table only)")
    ap.add_argument("--against", help="a second run's summary.json: print both runs' verdicts side by side and "
                                      "exit 1 when they contradict on a stage-2 width or the paper's stage-1 widths")
    args = ap.parse_args(argv)
    summary = json.loads(Path(args.summary).read_text())
    if args.against:
        cmp = compare_runs(summary, json.loads(Path(args.against).read_text()))
        print(compare_markdown(cmp))
        return 1 if cmp["claim_contradictions"] else 0
    out = recompute_summary(summary, git_commit())
    for name in out["recomputed"]["models"]:
        e = out["models"][name]
        ci = e["delta_frr_ci"]
        print(f"{name:14s} {100 * e['delta_frr_interval']['center']:+5.1f} [{100 * ci[0]:+5.1f}, {100 * ci[1]:+5.1f}]"
              f"  {e['verdict']:12s} (speakers only: {e['verdict_speakers_only']}); replicates needed "
              f"{e['replicates_needed']}")
    if args.out:
        atomic_write_json(Path(args.out), out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
