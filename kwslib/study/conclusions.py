"""The "What this run shows" cell that ends every notebook, generated from this run's ``summary.json``.

Each notebook ends in a few lines of markdown: the paper's claim, what this run measured and the verdict,
what the verdict rests on (replicates, clips, hours of negative audio, the margin), and what to try next.
Nothing here is a typed-in result: every number is read from the summary the notebooks wrote (the
paper's claims are the only fixed text, as in :mod:`kwslib.study.report`), and the advice is chosen by rules
on those numbers. A part the run did not measure says so.

``what_this_run_shows(notebook, summary)`` is what a notebook calls; ``reproduce`` turns its output
into the notebook's last markdown cell.
"""
from __future__ import annotations

import math

from ..errors import ConfigError
from .tables import lookup

HEADING = "## What this run shows"
#: The paper's widths (8/5/4 bits: NEON containers; 5 and 1 bits: accelerators).
PAPER_WIDTHS = (8, 5, 4, 1)
NEON_WIDTHS = (8, 5, 4)
#: Below this pooled float accuracy the advice is to strengthen the float model first (every quantized
#: model is compared with it, so its weakness bounds what the comparison can show). A rule of thumb of
#: ours, not the paper's: its models are trained on far more speech.
WEAK_FLOAT_ACCURACY = 0.9


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _pct(x, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%" if _num(x) else "not measured"


def _pts(x) -> str:
    """A difference of rates in percentage points, signed, one decimal."""
    return f"{100 * x:+.1f}" if _num(x) else "?"


def _ci_pts(ci) -> str:
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_num(v) for v in ci)):
        return "no interval"
    return f"[{_pts(ci[0])}, {_pts(ci[1])}]"


def _x(r) -> str:
    return f"{r:.2f}x" if _num(r) else "not measured"


def _ratio(a, b):
    return a / b if _num(a) and _num(b) and b != 0 else None


VERDICT_WORDS = {
    "equivalent": "parity (the whole interval lies inside the margin)",
    "better": "better than float (the interval lies below zero and reaches past the margin)",
    "worse": "worse than float (the interval lies above zero and reaches past the margin)",
    "inconclusive": "undecided (the interval is too wide to tell parity from a difference)",
}


def verdict_phrase(entry: dict) -> str:
    """A model's paired verdict in words (``entry['verdict']``; an unknown word is shown as it is). An
    undecided verdict with a ``verdict_reason`` (too few speakers or replicates, say) gives that reason."""
    v = (entry or {}).get("verdict")
    if v is None:
        return "not measured"
    if v == "inconclusive" and entry.get("verdict_reason"):
        return f"undecided ({entry['verdict_reason']})"
    return VERDICT_WORDS.get(v, str(v))


def _model_line(name: str, e: dict, margin) -> str:
    return (f"- **{name}**: FRR {_pct(e.get('frr_at_op'))}, difference to float {_pts(e.get('delta_frr'))} points, "
            f"95% interval {_ci_pts(e.get('delta_frr_ci'))} (margin +-{100 * margin:g}): {verdict_phrase(e)}")


def _require(summary: dict, *parts: str) -> None:
    if not isinstance(summary, dict):
        raise ConfigError(f"summary must be a dict (summary.json), got {type(summary).__name__}")
    missing = [p for p in parts if not summary.get(p)]
    if missing:
        raise ConfigError(f"summary.json has no {', '.join(missing)}: run the notebooks before this one first")


def _basis(summary: dict) -> str:
    """What every paired verdict rests on: replicates, test clips and speakers, negative hours, the margin."""
    reps = summary.get("replicates") or {}
    data = summary.get("data") or {}
    op = summary.get("operating_point") or {}
    n, kind = reps.get("n"), reps.get("kind")
    spk = lookup(data, "speakers", "test")
    hours = op.get("stream_hours")
    parts = [f"{n} replicate(s)" + (f" ({'speaker folds' if kind == 'speaker_folds' else 'seeds'})" if kind else "")
             if n else "one run"]
    if data.get("test_clips"):
        parts.append(f"{data['test_clips']} test clips" + (f" from {spk} speakers" if spk else "")
                     + (" in replicate 0" if n and n > 1 else ""))
    if _num(hours):
        parts.append(f"{hours:.2f} h of audio without keywords")
    return ", ".join(parts)


def _op_phrase(summary: dict) -> str:
    op = lookup(summary, "operating_point", "false_detections_per_hour")
    return f"{op:g} false detections per hour" if _num(op) else "the operating point"


def float_baseline(summary: dict) -> list[str]:
    _require(summary, "models", "operating_point")
    f = lookup(summary, "models", "float")
    if not f:
        raise ConfigError("summary.json has no float model: notebook 1 did not finish")
    data = summary.get("data") or {}
    acc, sd = f.get("accuracy_mean", f.get("accuracy")), f.get("accuracy_sd")
    by_src = f.get("fdph_by_source") or {}
    params = f"{f['params']:,}" if isinstance(f.get("params"), int) else "an unrecorded number of"
    ci = f.get("frr_at_op_ci")
    ci = (f"95% interval {_pct(ci[0])} to {_pct(ci[1])}" if isinstance(ci, (list, tuple)) and len(ci) == 2
          and all(_num(v) for v in ci) else "no interval")
    lines = [
        "**Claim.** The paper starts from a float, streaming, state-free keyword spotter of about 250K parameters; "
        "every quantized model is read against it at one operating point of its DET curve.",
        f"**This run** ({data.get('source', 'unknown data')}): a float model of {params} parameters, "
        f"12-class accuracy {acc:.3f}" + (f" +- {sd:.3f} (sd over replicates)" if _num(sd) else "")
        + f"; at {_op_phrase(summary)} it misses {_pct(f.get('frr_at_op'))} of keyword clips ({ci})."
        if _num(acc) else "**This run**: the float model's accuracy was not measured.",
    ]
    if by_src:
        lines.append("False detections per hour at that threshold, by source: "
                     + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in by_src.items() if _num(v)) + ".")
    lines.append(f"**It rests on** {_basis(summary)}; the operating point is the lowest rate at which that audio "
                 f"holds at least {lookup(summary, 'operating_point', 'min_events') or 20} false detections.")
    nxt = []
    if _num(acc) and acc < WEAK_FLOAT_ACCURACY:
        nxt.append(f"the float model is weak (accuracy below {WEAK_FLOAT_ACCURACY:g}), and it is the reference of every "
                   "comparison that follows: try the levers of `python -m kwslib.study.tuning` (mixup, pretraining, rejection "
                   "training), chosen on validation only")
    if _num(f.get("frr_at_op")) and f["frr_at_op"] > 0.3:
        nxt.append("read the DET curve above: a higher false-detection rate buys a lower FRR")
    if data.get("source") == "synthetic":
        nxt.append("this is synthetic speech; the `sc12` profile reads the same chain on real speech")
    lines.append("**Try next**: " + ("; ".join(nxt) if nxt else "notebook 2 quantizes this model's weights") + ".")
    return lines


def _stage_lines(summary: dict, prefix: str, label: str) -> tuple[list[str], dict]:
    models = summary.get("models") or {}
    margin = lookup(summary, "operating_point", "parity_margin") or 0.02
    rows, verdicts = [], {}
    for b in PAPER_WIDTHS:
        e = models.get(f"{prefix}{b}")
        if e:
            rows.append(_model_line(f"{label}, {b}-bit weights", e, margin))
            verdicts[b] = e.get("verdict")
    return rows, verdicts


def _needed(summary: dict, prefix: str) -> list[int]:
    return sorted({int(e["replicates_needed"]) for k, e in (summary.get("models") or {}).items()
                   if k.startswith(prefix) and isinstance(e, dict) and e.get("verdict") == "inconclusive"
                   and _num(e.get("replicates_needed"))})


def _advice_for_verdicts(summary: dict, prefix: str, verdicts: dict) -> list[str]:
    nxt = []
    undecided = [b for b, v in verdicts.items() if v == "inconclusive"]
    if undecided:
        need = _needed(summary, prefix)
        n = lookup(summary, "replicates", "n")
        est = "" if not need else f"; the design estimates {need[0]}" + (f"-{need[-1]}" if need[-1] != need[0] else "")
        cheapest = lookup(summary, "power_plan", "cheapest_reaching_target")
        plan = "" if not isinstance(cheapest, dict) or cheapest.get("minutes") is None else (
            f" (by simulation from the measured variance, the cheapest design that concludes parity half the time "
            f"at parity: {cheapest['label']}, ~{cheapest['minutes'] / 60:.1f} h)")
        nxt.append(f"at {_widths(undecided)} the interval is too wide to decide: more replicates (now {n}{est}) or "
                   f"more test speakers narrow it{plan}")
    worse = [b for b, v in verdicts.items() if v == "worse"]
    if worse:
        nxt.append(f"at {_widths(worse)} the model is worse than float: a longer fine-tuning schedule at that width "
                   "is the first lever")
    return nxt


def _widths(bits: list[int]) -> str:
    return ", ".join(str(b) for b in bits) + (" bit" if bits == [1] else " bits")


def _interval_note(summary: dict, prefix: str) -> str:
    """How the paired interval was computed, as the summary says (``delta_frr_interval.method``), if it says."""
    for k, e in (summary.get("models") or {}).items():
        method = lookup(e, "delta_frr_interval", "method") if k.startswith(prefix) and isinstance(e, dict) else None
        if method:
            return f" The interval: {method}."
    return ""


def stage1(summary: dict) -> list[str]:
    _require(summary, "models", "operating_point")
    rows, verdicts = _stage_lines(summary, "stage1_w", "stage 1 (tanh)")
    if not rows:
        raise ConfigError("summary.json has no stage-1 models: notebook 2 did not finish")
    holds = lookup(summary, "stage1", "holds_down_to") or {}
    lines = ["**Claim.** Stage-1 QAT (dense weights through tanh to *b* bits) keeps the float model's operating point "
             "at 8, 5 and 4 bits (NEON) and 5 and 1 bits (accelerators).",
             f"**This run**, paired with the float model of the same replicate at {_op_phrase(summary)}:", *rows]
    if holds:
        lines.append("Narrowest width that is not worse than float by more than the margin, at it and every wider "
                     "width tested: " + "; ".join(f"{k} {v if v is not None else 'none'}" for k, v in holds.items())
                     + ".")
    lines.append(f"**It rests on** {_basis(summary)}. A verdict of parity needs the whole 95% interval of the FRR "
                 "difference inside the margin." + _interval_note(summary, "stage1_w"))
    nxt = _advice_for_verdicts(summary, "stage1_w", verdicts)
    lines.append("**Try next**: " + ("; ".join(nxt) if nxt else "notebook 3 quantizes the rest of the network (stage 2)")
                 + ".")
    return lines


def stage2(summary: dict) -> list[str]:
    _require(summary, "models", "operating_point")
    rows, verdicts = _stage_lines(summary, "stage2_w", "stage 2 (integer)")
    if not rows:
        raise ConfigError("summary.json has no stage-2 models: notebook 3 did not finish")
    models = summary["models"]
    neon = [b for b in NEON_WIDTHS if b in verdicts]
    at_parity = [b for b in neon if verdicts[b] in ("equivalent", "better")]
    diffs = sum(int(lookup(models[f"stage2_w{b}"], "fake_vs_integer", part, "logit_differences") or 0)
                for b in verdicts for part in ("clips", "stream"))
    lines = ["**Claim.** With the weights at 8, 5 or 4 bits and inputs, activations and logits at 8 bits (batchnorm "
             "folded, fixed-point gain, int32 bias), the fully integer model keeps the float model's operating point.",
             f"**This run**, integer mode, paired with float at {_op_phrase(summary)}:", *rows,
             f"At {len(at_parity)} of the {len(neon)} NEON widths tested the integer model is at parity with float or "
             "better; the fake-quant model and the exported integer model differ in "
             f"{diffs} logit(s) over the clips and stream windows checked."]
    lines.append(f"**It rests on** {_basis(summary)}; the same negative audio sets every model's own threshold."
                 + _interval_note(summary, "stage2_w"))
    nxt = _advice_for_verdicts(summary, "stage2_w", verdicts)
    lines.append("**Try next**: " + ("; ".join(nxt) if nxt else "notebook 4 runs these integer models on the numpy, "
                                     "C and NEON engines") + ".")
    return lines


def integer(summary: dict) -> list[str]:
    _require(summary, "engine")
    eng = summary.get("engine") or {}
    exact = [k.replace("bit_exact_", "") for k, v in eng.items() if v is True]
    not_exact = [k.replace("bit_exact_", "") for k, v in eng.items() if v is False]
    unmeasured = [k.replace("bit_exact_", "") for k, v in eng.items() if v is None]
    arm = lookup(summary, "cpu", "aarch64_instructions_per_inference") or {}
    r8, r4 = _ratio(arm.get("float32_neon"), arm.get("int8_neon")), _ratio(arm.get("float32_neon"), arm.get("w4_neon"))
    pipe = lookup(summary, "pipeline", "aarch64_instructions_per_audio_second") or {}
    p8 = _ratio(pipe.get("float32"), pipe.get("int8"))
    rtf = lookup(summary, "pipeline", "x86_realtime_factor", "c")
    int_fe = lookup(summary, "pipeline", "frontend") == "int"
    pf = lookup(summary, "pipeline", "aarch64_instructions_per_audio_second_float_frontend") or {}
    p8f = _ratio(pf.get("float32"), pf.get("int8"))
    codes = lookup(summary, "pipeline", "frontend_int8_codes_equal_share")
    fe_phrase = ("" if not int_fe else
                 " with the integer front end" + (f" (its int8 codes equal the float64 front end's in "
                                                  f"{_pct(codes, 2)} of entries)" if _num(codes) else "")
                 + (f"; {_x(p8f)} with the float64 front end the models were trained on" if _num(p8f) else ""))
    lines = ["**Claim.** The integer network needs up to 3x less CPU than float on ARM NEON.",
             "**This run**: the integer engines are bit-exact with the specification: "
             + (", ".join(exact) if exact else "none")
             + (f"; NOT bit-exact: {', '.join(not_exact)}" if not_exact else "")
             + (f"; not measured: {', '.join(unmeasured)}" if unmeasured else "") + ".",
             f"The network alone takes float32/int8 {_x(r8)} and float32/4-bit {_x(r4)} fewer aarch64 instructions per "
             f"inference; the whole detector (front end, window, network, smoothing) {_x(p8)} fewer per second of "
             "audio" + fe_phrase + (f", and the C detector runs {rtf:,.0f}x faster than real time on one x86 core"
                                    if _num(rtf) else "") + ".",
             "**It rests on** executed instructions counted under qemu-aarch64 (not time on a phone) and timings "
             "on this machine's CPU; bit-exactness is checked on every test clip window and the first windows of "
             "each negative source."]
    nxt = []
    if _num(r8) and _num(p8) and p8 < r8 / 1.5:
        nxt.append("the front end dominates the whole detector's instruction count: the network's saving reaches "
                   "the device only as far as the front end shrinks too")
    if not _num(r8):
        nxt.append(f"install the aarch64 tools to count instructions ({lookup(summary, 'cpu', 'aarch64_instructions_per_inference', 'reason') or 'see the README'})")
    nxt.append("`kwslib export` and `kwslib detect` run these models from the command line (README)")
    lines.append("**Try next**: " + "; ".join(nxt) + ".")
    return lines


def memory(summary: dict) -> list[str]:
    _require(summary, "memory_bytes")
    mb = summary["memory_bytes"]
    f32, i8 = mb.get("float32"), mb.get("int8_containers")
    packed = mb.get("packed") or {}
    r8 = _ratio(f32, i8)
    rp = {b: _ratio(f32, packed.get(str(b))) for b in (5, 4, 1)}
    lines = ["**Claim.** More than 4x less memory than float with 8-bit containers; accelerators that pack weights "
             "at their own width save more.",
             f"**This run**: float32 {f32 / 1024:.0f} KiB, 8-bit containers {i8 / 1024:.0f} KiB: {_x(r8)} less"
             + (" (the claim holds)" if _num(r8) and r8 > 4 else " (short of 4x: the int32 bias, multiplier and shift "
                                                                 "per channel and the activation buffers cost the rest)"
                if _num(r8) else "")
             + "; packed " + ", ".join(f"{b}-bit {_x(r)}" for b, r in rp.items()) + "."
             if _num(f32) and _num(i8) else "**This run**: the memory projection was not written.",
             "**It rests on** bytes counted from the layer shapes exactly as the exported artifact stores them "
             "(weights, per-channel parameters, the largest pair of activation buffers), not estimates."]
    lines.append("**Try next**: the table of scaled architectures above shows how the ratios move with model size; "
                 "notebook 6 sets every claim beside the paper's.")
    return lines


def claim_kind(verdict: str) -> str:
    """A report verdict (:func:`kwslib.study.report.claims`) as ``supported``, ``partly supported``, ``open``
    (undecided, not measured) or ``not supported``, by its first words."""
    v = str(verdict).lower()
    if v.startswith(("supported", "parity")):
        return "supported"
    if v.startswith("partly"):
        return "partly supported"
    if v.startswith(("not measured", "undecided", "inconclusive")):
        return "open"
    return "not supported"


def report_notebook(summary: dict) -> list[str]:
    from .report import claims

    _require(summary, "models")
    rows = claims(summary)
    if not rows:
        raise ConfigError("summary.json holds no claim this report can read")
    kind = claim_kind
    counts = {k: sum(kind(r["verdict"]) == k for r in rows)
              for k in ("supported", "partly supported", "not supported", "open")}
    lines = [f"**Claims.** The paper's {len(rows)} claims read on this run: {counts['supported']} supported, "
             + (f"{counts['partly supported']} partly supported, " if counts["partly supported"] else "")
             + f"{counts['not supported']} not supported, {counts['open']} open (undecided or not measured).",
             *[f"- {r['claim']}: {r['verdict']}" for r in rows],
             f"**It rests on** {_basis(summary)}; `REPORT.md` beside this notebook holds every number and interval."]
    nxt = [f"'{r['claim']}' is open: {r['verdict']}" for r in rows if kind(r["verdict"]) == "open"][:2]
    lines.append("**Try next**: " + ("; ".join(nxt) + " (see the earlier notebooks' own advice)" if nxt
                                     else "run the other profile to see whether the verdicts move with the data") + ".")
    return lines


def own_keywords(summary: dict) -> list[str]:
    _require(summary, "own_keywords")
    ok = summary["own_keywords"]
    kws = ok.get("keywords") or ["the 10 of Speech Commands"]
    var = ok.get("variants") or {}
    ref = ok.get("reference")
    op = ok.get("operating_point_fdph")

    def acc(v):
        a = v.get("keyword_accuracy") or {}
        ci = a.get("ci")
        return _pct(a.get("mean")) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else " (one replicate: no interval)")

    lines = [f"**Question.** What each source of keyword clips buys for {', '.join(kws)}: the same float model "
             f"trained on {len(var)} variant(s) of the training data, read on the same held-out clips.",
             *[f"- {name}: keyword accuracy {acc(v)}, FRR at {op:g} false detections/h {_pct(v.get('frr_at_op'))}"
               + ("" if name == ref else f", {_pts(v.get('delta_frr'))} points vs {ref} {_ci_pts(v.get('delta_frr_ci'))}"
                  f" ({v.get('verdict')})") for name, v in var.items()],
             f"**It rests on** {max((v.get('replicates') or 1) for v in var.values()) if var else 0} replicate(s) per "
             "variant, the replicate as the unit of every interval; the test clips and the negative audio are the "
             "same for all variants, so the differences are paired clip by clip."]
    best = max(var, key=lambda k: (var[k].get("keyword_accuracy") or {}).get("mean") or 0) if var else None
    lines.append("**Try next**: " + (f"`{best}` reads best here; " if best else "")
                 + "record a few clips of your words (`--recordings`) and compare again, or run the whole chain "
                 "(`make reproduce PROFILE=<profile>`) on the variant you choose.")
    return lines


BY_NOTEBOOK = {
    "01_float_baseline": float_baseline,
    "02_stage1_tanh_qat": stage1,
    "03_stage2_linear_qat": stage2,
    "04_integer_inference": integer,
    "05_accelerator_memory": memory,
    "06_report": report_notebook,
    "07_own_keywords": own_keywords,
}


def what_this_run_shows(notebook: str, summary: dict) -> str:
    """The markdown that ends ``notebook`` (a stem of :data:`BY_NOTEBOOK`), from this run's ``summary``."""
    if notebook not in BY_NOTEBOOK:
        raise ConfigError(f"no conclusion for notebook {notebook!r}; known: {sorted(BY_NOTEBOOK)}")
    lines = BY_NOTEBOOK[notebook](summary)
    profile = summary.get("profile")
    src = f"*Generated by `kwslib.study.conclusions` from `results/{profile}/summary.json` of this run.*" if profile else \
        "*Generated by `kwslib.study.conclusions` from this run's summary.json.*"
    return _join([HEADING, *lines, src])


def _join(lines: list[str]) -> str:
    """Paragraphs apart, consecutive bullet lines together (one markdown list)."""
    out = []
    for line in lines:
        if out and line.startswith("- ") and out[-1].startswith("- "):
            out[-1] += "\n" + line
        else:
            out.append(line)
    return "\n\n".join(out)
