"""The replication report: the paper's claims beside this run's numbers, built from summary.json only.

Nothing here is typed in by hand except the paper's claims themselves (from
its abstract, docs/DESIGN.md section 1). Every number of ours is read from
``results/<profile>/summary.json``; a missing number shows as "not measured".
"""
from __future__ import annotations

from pathlib import Path

from ..config import REPO_ROOT
from ..io import atomic_write_text
from .tables import lookup, markdown_table
from .verdict_tables import (
    REAL_SPEECH_COST_COLUMNS,
    _power_section,
    _real_speech_section,
    _verdict_basis_section,
    real_speech_cost_rows,
    verdict_basis_text,
)

PAPER = {
    "parity": "stage-2 models with 4-, 5- and 8-bit weights match the float model's operating point on the DET curve",
    "one_bit": "1-bit weights (accelerator setting b): accuracy reported; memory reduction projected",
    "cpu": "up to 3x less CPU than float (ARM NEON; the verdict reads the packed 4-bit kernel, the 8-bit-container "
           "count is beside it)",
    "memory": "more than 4x less memory than float (8-bit containers)",
}


def _pct(x):
    return "not measured" if x is None else f"{100 * x:.1f}%"


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def parity_word(entry: dict) -> str:
    """How a quantized model stands against float at the operating point, in words.

    With the paired test of kwslib.study.replicates (``verdict``): ``parity`` (the interval of the FRR
    difference inside the margin), ``better than float``, ``worse than float`` or ``inconclusive``.
    Without it, the single-run test: ``parity`` (FRR inside the float model's 95% interval),
    ``better than float`` (below it), ``worse than float`` (above it). ``not measured`` when neither.
    """
    if not entry:
        return "not measured"
    verdict = entry.get("verdict")
    if verdict is not None:
        return {"equivalent": "parity", "better": "better than float", "worse": "worse than float"}.get(
            verdict, "inconclusive")
    if entry.get("parity") is None:
        return "not measured"
    if entry.get("parity"):
        return "parity"
    return "better than float" if entry.get("no_worse_than_float") else "worse than float"


def mean_sd(entry: dict, key: str) -> str | None:
    """'0.8312 +- 0.0104' (mean and sd over replicates) or '0.8312' (one replicate); None when missing."""
    m = entry.get(f"{key}_mean", entry.get(key))
    if m is None:
        return None
    sd = entry.get(f"{key}_sd")
    return f"{m:.4f}" if sd is None else f"{m:.4f} +- {sd:.4f}"


def model_rows(summary: dict) -> list[dict]:
    """One row per model in summary['models'], float first, then stage 2, stage 1 and baselines."""
    models = summary.get("models", {})
    order = {"float": 0, "stage2": 1, "stage1": 2, "linear_qat": 3, "dorefa_qat": 4, "ptq": 5}
    rows = []
    for name, m in models.items():
        if not isinstance(m, dict) or "accuracy" not in m:
            continue
        rows.append({"model": name, "stage": m.get("stage"), "bits": m.get("weight_bits"),
                     "accuracy": mean_sd(m, "accuracy"), "frr_at_op": m.get("frr_at_op"),
                     "frr_at_op_ci": m.get("frr_at_op_ci"), "delta_frr": m.get("delta_frr"),
                     "delta_frr_ci": m.get("delta_frr_ci"), "verdict": m.get("verdict"),
                     "delta_frr_ci_speakers_only": m.get("delta_frr_ci_speakers_only"),
                     "verdict_speakers_only": m.get("verdict_speakers_only"),
                     "replicates_needed": m.get("replicates_needed"),
                     "agreement": m.get("verdict_agreement"), "mdd": m.get("min_detectable_delta_frr"),
                     "fdph_at_float_frr": m.get("fdph_at_float_frr"),
                     "parity": m.get("parity"), "no_worse": m.get("no_worse_than_float")})
    rows.sort(key=lambda r: (order.get(r["stage"], 9), -(r["bits"] or 0), r["model"]))
    return rows


def _cpu_claim(claim: str, measure: str, f32, i8, w4, x86: str | None, reason: str | None, worse: str) -> dict:
    """One CPU claim row: float32 / int8 and float32 / 4-bit ratios of ``measure``; the verdict reads the 4-bit
    one (>= 3 supported, >= 2 partly, else ``worse``); 'not measured (reason)' without a count."""
    r8, r4 = _ratio(f32, i8), _ratio(f32, w4)
    ours = ", ".join(s for s in [None if r8 is None else f"{measure} float32/int8 {r8:.2f}x",
                                 None if r4 is None else f"float32/4-bit {r4:.2f}x", x86] if s) or "not measured"
    verdict = (f"not measured ({reason})" if reason else "not measured") if r4 is None else (
        "supported" if r4 >= 3 else "partly supported" if r4 >= 2 else worse)
    return {"claim": claim, "paper": "up to 3x less", "ours": ours, "verdict": verdict}


def _components_phrase(m: dict) -> str | None:
    """'sd per replicate 2.7 points: training 2.5, speakers 1.0, threshold 0.4' from ``variance_components``."""
    vc = m.get("variance_components")
    if not isinstance(vc, dict) or vc.get("per_replicate_total") is None:
        return None
    parts = [f"{label} {vc[k]:.1f}" for k, label in (("training", "training" + (" (with threshold)" if vc.get(
        "training_includes_threshold") else "")), ("qat_seed", "of it the QAT seed"),
        ("float_retraining", "float retraining"), ("test_speakers", "speakers"), ("threshold_negatives", "threshold"))
        if vc.get(k) is not None]
    return f"sd per replicate {vc['per_replicate_total']:.1f} points: " + ", ".join(parts)


def _needed_phrase(m: dict) -> str:
    need = m.get("replicates_needed")
    if need is None:
        return f"replicates for a conclusive verdict: not reachable ({m.get('replicates_needed_reason') or 'unknown'})"
    return f"replicates for a conclusive verdict: {need}" + (" or more" if m.get("replicates_needed_note") else "")


def _frr_phrase(m: dict, fl: dict) -> str:
    """The FRR comparison of one model with float, paired when the entry has the paired test."""
    acc = f"accuracy {mean_sd(m, 'accuracy')} vs {mean_sd(fl, 'accuracy')}"
    if m.get("delta_frr") is not None:
        n = m.get("replicates") or 1
        ci = m.get("delta_frr_ci")
        centre = lookup(m, "delta_frr_interval", "center")
        diff = m["delta_frr"] if centre is None else centre
        head = (f"FRR {_pct(m.get('frr_at_op'))} vs float {_pct(fl.get('frr_at_op'))}: difference "
                f"{100 * diff:+.1f} points, 95% CI ")
        head += ("not measured (" + (m.get("verdict_reason") or "no interval") + ")" if ci is None or None in ci else
                 f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] over {n} replicate(s)")
        so = m.get("delta_frr_ci_speakers_only")
        extra = [f"margin +-{100 * m.get('parity_margin', 0):.0f}"]
        if so is not None and None not in so:
            extra.append(f"speakers-only CI [{100 * so[0]:+.1f}, {100 * so[1]:+.1f}]")
        comp = _components_phrase(m)
        if comp:
            extra.append(comp)
        if m.get("variance_components") is not None or m.get("replicates_needed") is not None:
            extra.append(_needed_phrase(m))
        return head + " (" + "; ".join(extra) + f"); {acc}"
    return (f"FRR {_pct(m.get('frr_at_op'))} vs float {_pct(fl.get('frr_at_op'))} "
            f"(float 95% CI {_pct(lookup(fl, 'frr_at_op_ci', 0))}-{_pct(lookup(fl, 'frr_at_op_ci', 1))}); {acc}")


def claims(summary: dict) -> list[dict]:
    """Each claim of the paper with our measured value and a verdict."""
    out = []
    models = summary.get("models", {})
    fl = models.get("float", {})
    for b in (8, 5, 4):
        m = models.get(f"stage2_w{b}")
        if m is None:
            out.append({"claim": f"parity at {b}-bit weights (stage 2)", "paper": "parity", "ours": "not measured",
                        "verdict": "not measured"})
            continue
        out.append({"claim": f"parity at {b}-bit weights (stage 2)", "paper": "parity", "ours": _frr_phrase(m, fl),
                    "verdict": {"parity": "supported", "better than float": "supported (better than float)",
                                "inconclusive": "undecided (the interval holds 0 and reaches past the margin)"}.get(
                        parity_word(m), "not supported")})
    m = models.get("stage2_w1")
    out.append({"claim": "1-bit weights (stage 2)", "paper": "accuracy reported (accelerators)",
                "ours": "not measured" if m is None else _frr_phrase(m, fl),
                "verdict": "not measured" if m is None else {"worse than float": "no parity",
                                                              "inconclusive": "undecided (inconclusive)"}.get(
                    parity_word(m), parity_word(m))})
    ins = lookup(summary, "cpu", "aarch64_instructions_per_inference") or {}
    us = lookup(summary, "cpu", "x86_us_per_inference") or {}
    rx = _ratio(us.get("float32_numpy"), us.get("kwslib_int8_c"))
    out.append(_cpu_claim("CPU", "aarch64 instructions", ins.get("float32_neon"), ins.get("int8_neon"),
                          ins.get("w4_neon"), None if rx is None else f"x86 time float32 numpy / int8 C {rx:.1f}x",
                          ins.get("reason"), "not supported"))
    pipe = summary.get("pipeline") or {}
    pa = pipe.get("aarch64_instructions_per_audio_second") or {}
    rt = (pipe.get("x86_realtime_factor") or {}).get("c")
    int_fe = pipe.get("frontend") == "int"  # read with the integer front end (runs before it: the float64 one)
    x86 = None if rt is None else f"x86 C pipeline {rt:,.0f}x real time"
    if int_fe:
        pf = pipe.get("aarch64_instructions_per_audio_second_float_frontend") or {}
        r8f, r4f = _ratio(pf.get("float32"), pf.get("int8")), _ratio(pf.get("float32"), pf.get("w4"))
        rtf = (pipe.get("x86_realtime_factor_float_frontend") or {}).get("c")
        beside = [f"float64 front end: float32/int8 {r8f:.2f}x, float32/4-bit {r4f:.2f}x" if r4f is not None else None,
                  None if rtf is None else f"x86 {rtf:,.0f}x real time"]
        x86 = "; ".join(s for s in [x86, ", ".join(b for b in beside if b) or None] if s) or None
    out.append(_cpu_claim("CPU, whole detector (front end to detections)",
                          "aarch64 instructions per audio second" + (" with the integer front end" if int_fe else ""),
                          pa.get("float32"), pa.get("int8"), pa.get("w4"), x86, pipe.get("reason"),
                          "not supported: the front end dominates" if int_fe else
                          "not supported: the shared front end dominates"))
    mem = summary.get("memory_bytes") or {}
    rm = _ratio(mem.get("float32"), mem.get("int8_containers"))
    r4m = _ratio(mem.get("float32"), lookup(mem, "packed", "4"))
    out.append({"claim": "memory", "paper": "more than 4x less",
                "ours": "not measured" if rm is None else
                f"float32 / 8-bit containers {rm:.2f}x; float32 / packed 4-bit {r4m:.2f}x" if r4m else f"{rm:.2f}x",
                "verdict": "not measured" if rm is None else ("supported" if rm > 4 else
                                                               ("not supported with 8-bit containers; exceeded "
                                                                "with packed 4-bit weights" if (r4m or 0) > 4 else
                                                                "not supported"))})
    return out


METHOD_LABELS = {"stage1": "tanh QAT (stage 1), per channel", "stage1_pt": "tanh QAT (stage 1), per tensor",
                 "linear": "linear QAT, per channel", "linear_pt": "linear QAT, per tensor",
                 "dorefa": "DoReFa QAT, per channel", "dorefa_pt": "DoReFa QAT, per tensor",
                 "ptq": "PTQ (linear), per channel", "ptq_pt": "PTQ (linear), per tensor"}


def ablation_rows(summary: dict, metric: str = "accuracy") -> list[dict]:
    """The ablation as rows (one per method and granularity, one column per weight width, widest first)."""
    table = ablation_table(summary, metric)
    bits = sorted({b for by in table.values() for b in by if b is not None}, reverse=True)
    order = list(METHOD_LABELS)
    rows = []
    for method in sorted(table, key=lambda k: (order.index(k) if k in order else len(order), k)):
        rows.append({"method": METHOD_LABELS.get(method, method), **{f"{b} bits": table[method].get(b) for b in bits}})
    return rows


def cpu_rows(summary: dict) -> list[dict]:
    """Every CPU measurement of summary['cpu'] with its ratio to the float32 reference of the same kind."""
    rows = []
    for key, ref, measure, cast in (("x86_us_per_inference", "float32_numpy", "x86 microseconds per inference", float),
                                    ("aarch64_instructions_per_inference", "float32_neon",
                                     "aarch64 instructions per inference", int)):
        values = lookup(summary, "cpu", key) or {}
        rows += [{"measure": measure, "engine": k, "value": cast(v), "float32 / this": _ratio(values.get(ref), v)}
                 for k, v in values.items() if isinstance(v, (int, float))]
    return rows


def memory_rows(summary: dict) -> list[dict]:
    """The memory projection of this model (summary['memory_projection']['table']), one row per layout."""
    return [dict(r) for r in (lookup(summary, "memory_projection", "table") or []) if isinstance(r, dict)]


def report_markdown(summary: dict, assumptions: list[str] | None = None, figures: list[str] | None = None) -> str:
    prof = summary.get("profile", "?")
    parts = [f"# Replication report: profile `{prof}`", "",
             f"Generated from `results/{prof}/summary.json` (commit {summary.get('git_commit')}, "
             f"{summary.get('created')}). {data_phrase(summary)}.", "",
             "## The paper's claims and this run", "", markdown_table(claims(summary), ["claim", "paper", "ours", "verdict"]),
             "", "## Every model", "",
             "Pooled over the replicates. `delta_frr`: FRR at the operating point minus the float model's of the same "
             "replicate; `delta_frr_ci`: its 95% interval with the replicate as the unit (training, test speakers and "
             "the threshold re-derived from resampled negative audio); `verdict`: `equivalent` when that interval "
             "lies inside the parity margin, `better` / `worse` when it excludes 0 and reaches past the margin, "
             "`inconclusive` otherwise; `delta_frr_ci_speakers_only` / `verdict_speakers_only`: the former interval "
             "(speakers resampled, models and thresholds fixed), secondary; `replicates_needed`: for a conclusive "
             "verdict at the measured spread; `agreement`: share of replicates whose own (speakers-only) verdict is "
             "the pooled one; `mdd`: the smallest difference the design detects (80% power). `parity` / "
             "`no_worse`: the single-interval test (FRR inside / at most the upper end of the float model's "
             "interval), secondary.", "",
             markdown_table(model_rows(summary), ["model", "stage", "bits", "accuracy", "frr_at_op", "delta_frr",
                                             "delta_frr_ci", "verdict", "delta_frr_ci_speakers_only",
                                             "verdict_speakers_only", "replicates_needed", "agreement", "mdd",
                                             "fdph_at_float_frr", "parity", "no_worse"])]
    parts += _verdict_basis_section(summary)
    parts += _power_section(summary)
    parts += _real_speech_section(summary)
    abl = [(title, ablation_rows(summary, metric))
           for metric, title in (("accuracy", "12-class accuracy"), ("frr_at_op", "FRR at the operating point"))]
    if abl[0][1]:
        parts += ["", "## Ablation: tanh (stage 1) vs DoReFa vs linear QAT vs post-training quantization", ""]
        for title, rows in abl:
            parts += [f"{title} by weight width:", "", markdown_table(rows, list(rows[0])), ""]
    mem = memory_rows(summary)
    if mem:
        parts += ["", "## Memory (bytes) by layout", "",
                  "Weights, per-channel parameters and peak activation buffers; `int8` is the 8-bit-container "
                  "(NEON) layout, a number is packed weights of that width (see notebook 5).", "",
                  markdown_table(mem, ["layout", "weights", "params", "activations", "total", "reduction_vs_float32",
                                  "weight_reduction_vs_float32"])]
    cpu = cpu_rows(summary)
    if cpu:
        parts += ["", "## CPU", "", markdown_table(cpu, ["measure", "engine", "value", "float32 / this"])]
        note = lookup(summary, "cpu", "aarch64_instructions_per_inference", "note")
        if note:
            parts += ["", note]
    eng = summary.get("engine") or {}
    if eng:
        parts += ["", "Integer engines bit-exact against the stage-2 models' simulated integer outputs on the whole "
                  "test set: " + ", ".join(f"{k.replace('bit_exact_', '')} {v if v is not None else 'not run'}"
                                           for k, v in eng.items()) + "."]
    if assumptions:
        parts += ["", "## Assumptions where the paper is silent", ""] + [f"- {a}" for a in assumptions]
    if figures:
        parts += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(parts) + "\n"


def data_phrase(summary: dict) -> str:
    """'Data: ..., N replicates (kind), train/val/test clips, negative hours by source; operating point ...'."""
    data = summary.get("data", {})
    rep = summary.get("replicates") or {}
    hours = lookup(summary, "negatives", "hours") or {}
    neg = ", ".join(f"{k.replace('_', ' ')} {v:.2f} h" for k, v in hours.items()) or \
        f"{(data.get('stream_hours') or 0):.2f} h"
    return (f"Data: {data.get('source')}, {rep.get('n', 1)} replicate(s) ({rep.get('kind', 'single run')}); replicate "
            f"0: {data.get('train_clips')} / {data.get('val_clips')} / {data.get('test_clips')} train/val/test clips. "
            f"Negative audio (no keyword): {neg}; operating point "
            f"{lookup(summary, 'operating_point', 'false_detections_per_hour')} false detections per hour")


def write_report(path, summary: dict, assumptions=None, figures=None) -> str:
    text = report_markdown(summary, assumptions, figures)
    atomic_write_text(path, text)
    return text


def readme_table(summaries: dict) -> str:
    """A markdown table of the headline numbers of several profiles (profile -> summary)."""
    rows = []
    for prof, s in summaries.items():
        for r in model_rows(s):
            if r["stage"] in ("float", "stage1", "stage2"):
                rows.append(dict(r, profile=prof))
    return markdown_table(rows, ["profile", "model", "bits", "accuracy", "frr_at_op", "delta_frr_ci", "verdict",
                            "delta_frr_ci_speakers_only", "verdict_speakers_only", "replicates_needed"])


ASSUMPTIONS = [
    "Data: Speech Commands (public) stands in for the paper's 26,000 h of private production audio; the sc12 "
    "profile splits the official v0.02 12-class test set into speaker folds (every clip a test clip once over the "
    "replicates); quick uses espeak-ng synthetic speech, one corpus per replicate seed.",
    "Features: 40 log-mel energies, 25 ms Hann window, 10 ms hop, 512-point FFT, 20-7600 Hz, natural log; "
    "normalised per mel bin with training statistics inside the model.",
    "Model: 96-frame window averaged in groups of 4 (960 inputs), 3 dense layers of 186 with batchnorm and ReLU, "
    "12 outputs: 251,670 parameters (the paper: ~250K).",
    "Detection: one window every 40 ms, posteriors smoothed over 3 windows, 1 s lockout after a detection; "
    "false detections counted on negative audio with no keyword in it (real non-keyword speech, espeak-ng "
    "non-keyword speech, test noise), one threshold for all keywords; the operating point is the smallest rate in "
    "a fixed ladder backed by >= 20 false detections of negative audio.",
    "Parity: paired equivalence. The 95% interval of the FRR difference (quantized minus the float model of the "
    "same replicate, pooled over replicates) lies inside the margin (eval.parity_margin, 2 points absolute). The "
    "interval takes the replicate (a training run) as its unit: a t-interval of the per-replicate differences, "
    "widened by the variance of the negative audio all replicates share (units resampled, every threshold "
    "re-derived); its coverage is checked by simulation (tests/test_verdict_intervals.py). The speakers-only "
    "interval and the single-interval test (FRR inside the float model's interval) are kept as secondary columns. "
    "The paper reports one production run; the replicates are ours.",
    "Stage 1: w_t = tanh(w) / max|tanh(w)| per output channel, codes round(w_t (2^(b-1)-1)), 1 bit = sign; "
    "straight-through gradients; a learned per-channel gain; fine-tuned from the float model.",
    "Stage 2: batchnorm folded into a per-channel gain (fixed-point multiplier + shift) and int32 bias; input, "
    "activations and logits int8 with moving-average min/max observers; integer arithmetic as in "
    "kwslib/quant/intspec.py.",
    "CPU: instructions per inference counted under qemu-aarch64 for NEON kernels (the paper measured a device); "
    "memory: bytes of weights, per-channel parameters and peak activation buffers.",
]


def ablation_table(summary: dict, metric: str = "accuracy") -> dict:
    """method -> {bits: metric} for stage 1 (tanh) and the baselines (PTQ, linear QAT, DoReFa)."""
    out: dict = {}
    for name, m in summary.get("models", {}).items():
        if not isinstance(m, dict) or m.get("stage") not in ("stage1", "ptq", "linear_qat", "dorefa_qat"):
            continue
        method = name.rsplit("_w", 1)[0]
        out.setdefault(method, {})[m.get("weight_bits")] = m.get(metric)
    return out


START, END = "<!-- results:start -->", "<!-- results:end -->"


def machine_phrase(bench_json) -> str:
    """'AMD EPYC (avx2, 2 cores)' from a bench.json's ``machine`` record; 'an unrecorded CPU' without one."""
    import json

    try:
        m = json.loads(Path(bench_json).read_text()).get("machine") or {}
    except (OSError, ValueError):
        return "an unrecorded CPU"
    detail = ", ".join(x for x in ("/".join(m.get("simd") or []) or None,
                                   f"{m['cores']} cores" if m.get("cores") else None) if x)
    return f"{m.get('cpu', 'an unrecorded CPU')}" + (f" ({detail})" if detail else "")


def update_readme(readme, results_root) -> str:
    """Replace the README's results block (between the markers) with tables built from every summary."""
    import json

    from ..errors import ConfigError

    readme, results_root = Path(readme), Path(results_root)
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ConfigError(f"{readme}: no results block ({START} ... {END}) to update")
    summaries = {}
    for f in sorted(results_root.glob("*/summary.json")):
        if f.parent.name.startswith("scratch"):
            continue
        summaries[f.parent.name] = json.loads(f.read_text())
    parts = [START, "", "Generated by `make readme` (`python -m kwslib.study.report --readme README.md`) from "
             + ", ".join(f"`results/{p}/summary.json` (commit {s.get('git_commit')})" for p, s in summaries.items())
             + ".", ""]
    for prof, s in summaries.items():
        parts += [f"### `{prof}`", "", data_phrase(s) + ".",
                  "", markdown_table(claims(s), ["claim", "paper", "ours", "verdict"]), "",
                  readme_table({prof: s}), ""]
        basis = verdict_basis_text(s)
        if basis:
            parts += [basis, ""]
        cost = real_speech_cost_rows(s)
        if cost:
            parts += ["Stage 2 against float with the threshold read on real non-keyword speech alone vs on all "
                      "negative audio (FRR difference in points, 95% speakers-only intervals: they compare the two "
                      "thresholds within the same runs and are not verdicts):", "",
                      markdown_table(cost, REAL_SPEECH_COST_COLUMNS), ""]
        timings = s.get("timings") or {}
        if timings:
            parts += [f"Notebook wall times on {machine_phrase(results_root / prof / 'bench.json')}: " + ", ".join(
                f"{k.replace('_seconds', '')} {v:.0f} s" for k, v in timings.items() if v is not None) + ".", ""]
    parts.append(END)
    new = text[:text.index(START)] + "\n".join(parts) + text[text.index(END) + len(END):]
    atomic_write_text(readme, new)
    return new


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m kwslib.study.report", description="Update the README's results tables.")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--results", default=str(REPO_ROOT / "results"))
    args = ap.parse_args(argv)
    update_readme(args.readme, args.results)
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
