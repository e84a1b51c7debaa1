"""The report's tables on what each verdict rests on, and on real non-keyword speech.

:func:`verdict_basis_rows` / :func:`verdict_basis_text`: per claim model, the replicate-level interval
of the FRR difference, its verdict, the speakers-only interval beside it, the variance components and the
replicates a conclusive verdict would need. :func:`real_speech_rows`, :func:`real_speech_note` and
:func:`real_speech_cost_rows`: false detections per hour and the FRR cost on real speech, reported apart
from the synthetic negatives. :mod:`kwslib.study.report` puts them in REPORT.md.
"""
from __future__ import annotations

from .tables import lookup, markdown_table

#: The models whose verdicts answer the paper's claims: stage 2 at the widths of its two settings (8/5/4 bits on
#: NEON, 1 and 5 bits on accelerators) and stage 1 at the same widths (two runs must not contradict on them).
CLAIM_MODELS = ("stage2_w8", "stage2_w5", "stage2_w4", "stage2_w1", "stage1_w8", "stage1_w5", "stage1_w4", "stage1_w1")


def _sd(vc, key):
    v = vc.get(key) if isinstance(vc, dict) else None
    return None if v is None else f"{v:.1f}"


def verdict_basis_rows(summary: dict) -> list[dict]:
    """What each claim model's verdict rests on: the interval (replicate as unit) and the speakers-only one,
    the variance components (sd in FRR points), the replicates and the replicates a conclusive verdict needs."""
    models = summary.get("models") or {}
    rows = []
    for name in CLAIM_MODELS:
        m = models.get(name)
        if not isinstance(m, dict) or m.get("delta_frr") is None:
            continue
        vc = m.get("variance_components") or {}
        centre = lookup(m, "delta_frr_interval", "center")
        need = m.get("replicates_needed")
        rows.append({"model": name, "bits": m.get("weight_bits"),
                     "delta FRR [95% CI]": _pts(m["delta_frr"] if centre is None else centre, m.get("delta_frr_ci")),
                     "verdict": m.get("verdict"),
                     "speakers-only CI": _pts(m["delta_frr"], m.get("delta_frr_ci_speakers_only")),
                     "speakers-only verdict": m.get("verdict_speakers_only"),
                     "sd: training": _sd(vc, "training") if not vc.get("training_includes_threshold") else
                     (None if _sd(vc, "training") is None else _sd(vc, "training") + " (with threshold)"),
                     "sd: QAT seed": _sd(vc, "qat_seed"), "sd: float retraining": _sd(vc, "float_retraining"),
                     "sd: speakers": _sd(vc, "test_speakers"), "sd: threshold": _sd(vc, "threshold_negatives"),
                     "sd: per replicate": _sd(vc, "per_replicate_total"),
                     "replicates": m.get("replicates"),
                     "replicates needed": None if need is None else (f">= {need}" if m.get("replicates_needed_note")
                                                                     else str(need))})
    return rows


VERDICT_BASIS_COLUMNS = ["model", "bits", "delta FRR [95% CI]", "verdict", "speakers-only CI", "speakers-only verdict",
                         "sd: training", "sd: QAT seed", "sd: float retraining", "sd: speakers", "sd: threshold",
                         "sd: per replicate", "replicates", "replicates needed"]


def verdict_basis_text(summary: dict) -> str | None:
    """A paragraph: what the verdicts rest on and which of the paper's claims this data can and cannot decide."""
    models = summary.get("models") or {}
    claim = [(k, models[k]) for k in CLAIM_MODELS if isinstance(models.get(k), dict) and
             models[k].get("delta_frr") is not None]
    if not claim:
        return None
    n = claim[0][1].get("replicates") or 1
    margin = (summary.get("operating_point") or {}).get("parity_margin") or claim[0][1].get("parity_margin")
    op = (summary.get("operating_point") or {}).get("false_detections_per_hour")
    decided = [f"{k} ({m.get('verdict')})" for k, m in claim if m.get("verdict") not in (None, "inconclusive")]
    open_ = [k for k, m in claim if m.get("verdict") in (None, "inconclusive")]
    needs = [m.get("replicates_needed") for k, m in claim if k in open_ and m.get("replicates_needed") is not None]
    at_least = any(m.get("replicates_needed_note") for k, m in claim if k in open_)
    floored = [k for k, m in claim if k in open_ and m.get("replicates_needed") is None
               and str(m.get("replicates_needed_reason") or "").startswith("not by replicates alone")]
    doms = [(m.get("variance_components") or {}).get("dominant") for _, m in claim]
    doms = [d for d in doms if d]
    dominant = max(set(doms), key=doms.count) if doms else None
    text = [f"Each verdict rests on {n} replicate(s) (a training run each: float model and QAT"
            + (", and its own test speakers" if (summary.get("replicates") or {}).get("kind") == "speaker_folds"
               else "") + f"), read at {op} false detections per hour, against a margin of "
            f"+-{100 * (margin or 0):.0f} FRR points. The interval takes the replicate as its unit (a t-interval "
            "of the per-replicate differences, "
            + ("which a run of the current code also widens by the negative audio all replicates share; this "
               "recomputation could not, see below" if isinstance(summary.get("recomputed"), dict) else
               "widened by the negative audio all replicates share, every threshold re-derived in each draw")
            + "), so it holds what a rerun changes; the speakers-only interval, which holds the models and "
            "thresholds fixed, is shown beside it and is too narrow for a verdict."]
    if dominant:
        text.append(f"The largest part of the spread between replicates is {dominant.replace('_', ' ')} in "
                    f"{doms.count(dominant)} of {len(doms)} of these models.")
    why = []
    if needs:
        span = str(min(needs)) if min(needs) == max(needs) else f"{min(needs)}-{max(needs)}"
        why.append(f"at the measured spread a conclusive verdict needs {'at least ' if at_least else ''}{span} "
                   "replicates")
    if floored:
        why.append(f"for {', '.join(floored)} no number of replicates is sure to conclude, as the negative audio all "
                   "replicates share keeps the interval wider than the margin, though an 'equivalent' near parity "
                   "stays within reach")
    if why:
        why.append("what other means would buy is weighed under 'What would decide the claims'")
    text.append("This data decides: " + (", ".join(decided) if decided else "none of the paper's precision claims")
                + ". It cannot decide: " + (", ".join(open_) if open_ else "nothing")
                + (f" ({'; '.join(why)})" if why else "") + ".")
    text.append("The CPU and memory claims are counts (instructions, bytes), not samples: they are decided as "
                "measured.")
    rec = summary.get("recomputed")
    if isinstance(rec, dict):
        text.append(f"These intervals and verdicts were recomputed at commit {rec.get('at_commit')} from "
                    f"{rec.get('from')}; not recomputed: {rec.get('not_recomputed')}.")
    return " ".join(text)


def _verdict_basis_section(summary: dict) -> list[str]:
    rows = verdict_basis_rows(summary)
    if not rows:
        return []
    return ["", "## What a verdict rests on", "", verdict_basis_text(summary) or "", "",
            "Differences and sd in FRR points (quantized minus the float model of the same replicate); `sd: training` "
            "is what of the spread between replicates the speakers and the threshold do not explain (a method-of-"
            "moments estimate, noisy at a few replicates); `sd: QAT seed`: the spread of the same model trained "
            "with other QAT seeds from one replicate's float model (speakers and negatives fixed), and `sd: float "
            "retraining` what of the training part remains beyond it; `replicates needed`: the replicates for an interval no "
            "wider than the margin, which always gives a conclusive verdict, at the measured spread.", "",
            markdown_table(rows, VERDICT_BASIS_COLUMNS)]


def power_plan_rows(summary: dict) -> list[dict]:
    """The designs of ``summary["power_plan"]`` (kwslib.study.power.plan_summary), cheapest first (unpriced last):
    minutes, and the chance of concluding parity at parity on average over the claims and per claim model."""
    plan = summary.get("power_plan")
    if not isinstance(plan, dict):
        return []
    rows = []
    for r in sorted(plan.get("rows") or [], key=lambda r: (r.get("minutes") is None, r.get("minutes") or 0)):
        row = {"design": r.get("label"), "minutes": "not priced" if r.get("minutes") is None else f"{r['minutes']:.0f}",
               "P(equivalent), mean": f"{r['mean_p_equivalent']:.2f}"}
        row.update({k: f"{v:.2f}" for k, v in (r.get("p_equivalent") or {}).items()})
        rows.append(row)
    return rows


def power_plan_text(summary: dict) -> str | None:
    """What the plan chose and why (one paragraph), or None without a plan."""
    plan = summary.get("power_plan")
    if not isinstance(plan, dict):
        return None
    c = plan.get("choice") or {}
    return (f"Which means would buy the power to conclude, by simulation (`kwslib.study.power`) from this run's "
            f"variance components: the chance that a run says \"equivalent\" (margin +-{100 * plan.get('margin', 0):.0f} "
            f"FRR points) when the quantized and float models are truly at parity. Each design's runs are drawn from "
            f"the measured parts and read with the verdicts' own interval. Means "
            f"priced from this run's timings: replicates, QAT seeds per float model (averaged), negative audio "
            f"(x5: the threshold on 5x the events). Rule (declared in the params): the cheapest design within "
            f"{plan.get('budget_minutes'):g} minutes whose mean chance over the claims is at least "
            f"{plan.get('target', 0):.0%}. Choice for the next run: {c.get('replicates')} replicates x "
            f"{c.get('qat_seeds')} QAT seed(s), negatives x{c.get('negatives_factor', 1):g}; {plan.get('reason')}.")


def _power_section(summary: dict) -> list[str]:
    rows = power_plan_rows(summary)
    if not rows:
        return []
    cols = list(rows[0].keys())
    return ["", "## What would decide the claims", "", power_plan_text(summary) or "", "", markdown_table(rows, cols)]


def _pts(v, ci=None) -> str:
    """'+6.1 [+5.0, +7.2]': a difference of rates and its interval in percentage points."""
    if v is None:
        return "not measured"
    text = f"{100 * v:+.1f}"
    if ci is not None and len(ci) == 2 and None not in ci:
        text += f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
    return text


def _real_models(summary: dict) -> list[tuple[str, dict]]:
    """(name, entry) of float and every stage-2 width (widest first) that were read on real speech."""
    models = summary.get("models") or {}
    names = ["float"] + sorted((k for k in models if k.startswith("stage2_w")),
                               key=lambda k: -((models[k] or {}).get("weight_bits") or 0))
    return [(k, models[k]) for k in names if isinstance(models.get(k), dict) and
            isinstance(models[k].get("real_speech"), dict)]


def real_speech_rows(summary: dict) -> list[dict]:
    """Float and every stage-2 width on real non-keyword speech alone (``models.<name>.real_speech``).

    One row per model: FRR at 1, 5 and 10 false detections per hour of real speech (each replicate's
    model at its own threshold on that curve, pooled) with the 95% speaker-bootstrap interval; a
    trailing ``*`` marks a rate resting on fewer than ``min_events`` false detections of real speech
    (:func:`real_speech_note` says how many). ``[]`` when no model was read on real speech.
    """
    rows = []
    for name, m in _real_models(summary):
        rs = m["real_speech"]
        row = {"model": name, "bits": m.get("weight_bits"), "hours": rs.get("hours")}
        for level, frr in (rs.get("frr_at_fdph") or {}).items():
            if frr is None:
                row[f"FRR @ {level}/h"] = "not measured"
                continue
            ci = lookup(rs, "frr_at_fdph_ci", level)
            text = f"{100 * frr:.1f}%" + ("" if ci is None or None in ci else
                                          f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]")
            row[f"FRR @ {level}/h"] = text + ("*" if lookup(rs, "supported", level) is False else "")
        rows.append(row)
    return rows


def real_speech_note(summary: dict) -> str | None:
    """How many false detections of real speech each reported rate rests on, and which fall short."""
    for _, m in _real_models(summary):
        rs = m["real_speech"]
        events = rs.get("events_at_fdph") or {}
        if not events:
            return None
        need = rs.get("min_events", 20)
        short = [k for k, ok in (rs.get("supported") or {}).items() if ok is False]
        listing = ", ".join(f"{k}/h: {v:.3g}" for k, v in events.items())
        return (f"{rs.get('hours', 0):.2f} h of real speech allow {listing} false detections at these rates. "
                + (f"`*`: fewer than {need}, the events the operating point asks for; the threshold there is "
                   f"set by a handful of detections, so read those FRRs as indicative (the interval holds the "
                   f"thresholds fixed and does not include that)." if short else
                   f"Every rate rests on at least {need}."))
    return None


def real_speech_cost_rows(summary: dict) -> list[dict]:
    """Does quantization cost more on real speech? One row per stage-2 width with ``real_speech.at_op_rate``.

    ``delta FRR, all negatives``: the paired FRR difference (minus float, points) at the operating point
    read on all negative audio (``delta_frr``, ``delta_frr_ci``); ``delta FRR, real speech``: the same
    with each model's threshold read at the same rate of real speech alone; ``real minus all``: their
    difference on the same clips with its speaker-bootstrap interval; ``reading``: "costs more on real
    speech" / "costs less on real speech" when that interval excludes 0, else "no clear difference",
    with the events of real speech at that rate when fewer than ``min_events``. ``[]`` without any.
    """
    rows = []
    for name, m in _real_models(summary):
        at = m["real_speech"].get("at_op_rate") or {}
        if name == "float" or at.get("delta_frr") is None:
            continue
        ex, ci = at.get("excess_delta_frr"), at.get("excess_delta_frr_ci") or [None, None]
        reading = ("not measured" if ex is None or None in ci else "costs more on real speech" if ci[0] > 0 else
                   "costs less on real speech" if ci[1] < 0 else "no clear difference")
        events = at.get("events")
        if at.get("supported") is False and events is not None:
            reading += (f" (the real-speech threshold rests on {events:.3g} false detections, fewer than "
                        f"{m['real_speech'].get('min_events', 20)})")
        rate = "not measured" if at.get("fdph") is None else f"{at['fdph']:g}/h"
        rows.append({"model": name, "bits": m.get("weight_bits"), "rate": rate,
                     # speakers-only, like the two columns beside it: the three compare thresholds within the same
                     # runs (the replicate-level interval of the verdict is in the claims and verdict tables)
                     "delta FRR, all negatives": _pts(m.get("delta_frr"), m.get("delta_frr_ci_speakers_only",
                                                                                m.get("delta_frr_ci"))),
                     "delta FRR, real speech": _pts(at.get("delta_frr"), at.get("delta_frr_ci")),
                     "real minus all": _pts(ex, ci), "reading": reading})
    return rows


REAL_SPEECH_COST_COLUMNS = ["model", "bits", "rate", "delta FRR, all negatives", "delta FRR, real speech",
                            "real minus all", "reading"]


def _real_speech_section(summary: dict) -> list[str]:
    rows = real_speech_rows(summary)
    if not rows:
        return []
    parts = ["", "## Real non-keyword speech", "",
             "FRR of the keyword clips with each model's threshold read on the DET curve of real non-keyword speech "
             "alone (false detections per hour of real speech), pooled over the replicates, with the 95% "
             "speaker-bootstrap interval (figure `report_det_real_speech`).", "",
             markdown_table(rows, list(rows[0]))]
    note = real_speech_note(summary)
    if note:
        parts += ["", note]
    cost = real_speech_cost_rows(summary)
    parts += ["", "Does quantization cost more on real speech? The paired FRR difference of each stage-2 width "
              "(minus the float model of the same replicate, percentage points, 95% speaker-bootstrap interval) at "
              "the operating-point rate, the thresholds read on all negative audio or on real speech alone:", ""]
    parts += [markdown_table(cost, REAL_SPEECH_COST_COLUMNS)] if cost else [
        "not measured (this summary has no `real_speech.at_op_rate`: rerun notebooks 1-3)"]
    return parts
