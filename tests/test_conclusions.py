"""The "What this run shows" cells (kwslib.study.conclusions): numbers read from summary.json, rounded, and advice by rule."""
import copy
import json
from pathlib import Path

import pytest

from kwslib.study import conclusions as C
from kwslib.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _entry(frr, delta, ci, verdict, **kw):
    return {"frr_at_op": frr, "delta_frr": delta, "delta_frr_ci": ci, "verdict": verdict, **kw}


def _summary():
    return {
        "profile": "demo",
        "data": {"source": "synthetic", "test_clips": 720, "speakers": {"test": 10}},
        "replicates": {"n": 3, "kind": "seeds"},
        "operating_point": {"false_detections_per_hour": 20.0, "stream_hours": 1.2023, "min_events": 20,
                            "parity_margin": 0.02},
        "models": {
            "float": {"accuracy_mean": 0.77694, "accuracy_sd": 0.03171, "frr_at_op": 0.41944,
                      "frr_at_op_ci": [0.3611, 0.4812], "params": 251670,
                      "fdph_by_source": {"synthetic_speech": 20.0726, "noise": 0.0}},
            "stage1_w8": _entry(0.394, -0.025, [-0.057, 0.007], "inconclusive", replicates_needed=8),
            "stage1_w1": _entry(0.549, 0.130, [0.043, 0.217], "worse"),
            "stage2_w8": _entry(0.391, -0.029, [-0.049, -0.008], "better",
                                fake_vs_integer={"clips": {"logit_differences": 0}, "stream": {"logit_differences": 2}}),
            "stage2_w5": _entry(0.40, 0.001, [-0.01, 0.012], "equivalent"),
            "stage2_w4": _entry(0.395, -0.024, [-0.056, 0.007], "inconclusive", replicates_needed=9),
            "stage2_w1": _entry(0.553, 0.134, [0.11, 0.158], "worse"),
        },
        "stage1": {"holds_down_to": {"tanh QAT (stage 1), per channel": 4}},
        "engine": {"bit_exact_numpy": True, "bit_exact_c": True, "bit_exact_neon": None},
        "cpu": {"aarch64_instructions_per_inference": {"float32_neon": 137909, "int8_neon": 42158, "w4_neon": 42358}},
        "pipeline": {"aarch64_instructions_per_audio_second": {"float32": 7763608, "int8": 5373233},
                     "x86_realtime_factor": {"c": 2681.386}},
        "memory_bytes": {"float32": 1006800, "int8_containers": 257970, "packed": {"5": 164514, "4": 132978, "1": 39522}},
    }


def test_float_baseline_reads_and_rounds_the_numbers():
    text = C.what_this_run_shows("01_float_baseline", _summary())
    assert text.startswith(C.HEADING)
    assert "accuracy 0.777 +- 0.032" in text and "misses 41.9% of keyword clips" in text
    assert "36.1% to 48.1%" in text and "synthetic speech 20.1, noise 0.0" in text
    assert "3 replicate(s) (seeds), 720 test clips from 10 speakers" in text and "1.20 h" in text
    assert "0.77694" not in text  # rounded, not dumped
    assert "results/demo/summary.json" in text


def test_missing_parts_say_so_instead_of_failing():
    s = _summary()
    del s["models"]["float"]["params"], s["models"]["float"]["frr_at_op_ci"]
    text = C.what_this_run_shows("01_float_baseline", s)
    assert "an unrecorded number of parameters" in text and "(no interval)" in text
    del s["models"]["float"]["accuracy_mean"]
    assert "accuracy was not measured" in C.what_this_run_shows("01_float_baseline", s)


def test_advice_follows_the_numbers_not_a_script():
    s = _summary()
    weak = C.what_this_run_shows("01_float_baseline", s)
    assert "the float model is weak" in weak and "synthetic speech; the `sc12` profile" in weak
    s["models"]["float"].update(accuracy_mean=0.95, frr_at_op=0.1)
    s["data"]["source"] = "speech_commands_test_set_v0.02"
    strong = C.what_this_run_shows("01_float_baseline", s)
    assert "weak" not in strong and "sc12" not in strong and "accuracy 0.950" in strong


def test_stage2_verdicts_counts_and_next_steps():
    text = C.what_this_run_shows("03_stage2_linear_qat", _summary())
    assert "**stage 2 (integer), 8-bit weights**: FRR 39.1%, difference to float -2.9 points, 95% interval " \
           "[-4.9, -0.8] (margin +-2): better than float" in text
    assert "5-bit weights**: FRR 40.0%, difference to float +0.1 points" in text and "parity (the whole" in text
    assert "At 2 of the 3 NEON widths" in text  # w8 better, w5 equivalent, w4 undecided
    assert "differ in 2 logit(s)" in text
    assert "at 4 bits the interval is too wide to decide: more replicates (now 3; the design estimates 9)" in text
    assert "at 1 bit the model is worse than float" in text
    # one bullet list: the four model lines are consecutive lines of one paragraph
    assert text.count("\n- **stage 2") == 4 and "\n\n- **stage 2 (integer), 5" not in text


def test_the_power_plan_is_named_in_the_advice():
    s = _summary()
    s["power_plan"] = {"cheapest_reaching_target": {"label": "160 replicates x 1 QAT seed(s), negatives x1",
                                                    "minutes": 1527.0}}
    text = C.what_this_run_shows("03_stage2_linear_qat", s)
    assert "the cheapest design that concludes parity half the time at parity: 160 replicates x 1 QAT seed(s), " \
           "negatives x1, ~25.4 h" in text
    s["power_plan"] = {"cheapest_reaching_target": None}
    assert "cheapest design" not in C.what_this_run_shows("03_stage2_linear_qat", s)


def test_stage1_and_where_it_holds():
    text = C.what_this_run_shows("02_stage1_tanh_qat", _summary())
    assert "8-bit weights**: FRR 39.4%, difference to float -2.5 points, 95% interval [-5.7, +0.7]" in text
    assert "tanh QAT (stage 1), per channel 4" in text and "worse than float" in text
    assert "the design estimates 8" in text


def test_integer_ratios_and_unmeasured_engines():
    text = C.what_this_run_shows("04_integer_inference", _summary())
    assert "float32/int8 3.27x" in text and "float32/4-bit 3.26x" in text and "1.44x fewer per second" in text
    assert "numpy, c; not measured: neon" in text and "2,681x faster than real time" in text
    assert "the front end dominates" in text  # 1.44 < 3.27 / 1.5
    s = _summary()
    s["engine"]["bit_exact_c"] = False
    s["cpu"]["aarch64_instructions_per_inference"] = {"reason": "no qemu-aarch64"}
    text = C.what_this_run_shows("04_integer_inference", s)
    assert "NOT bit-exact: c" in text and "float32/int8 not measured" in text and "no qemu-aarch64" in text


def test_integer_front_end_is_named_with_its_code_agreement():
    s = _summary()
    s["pipeline"].update(frontend="int", frontend_int8_codes_equal_share=0.99912,
                         aarch64_instructions_per_audio_second_float_frontend={"float32": 7763608, "int8": 5373233},
                         aarch64_instructions_per_audio_second={"float32": 4800000, "int8": 2000000})
    text = C.what_this_run_shows("04_integer_inference", s)
    assert "2.40x fewer per second of audio with the integer front end" in text
    assert "equal the float64 front end's in 99.91% of entries" in text and "1.44x with the float64 front end" in text
    assert "integer front end" not in C.what_this_run_shows("04_integer_inference", _summary())


def test_memory_claim_both_ways():
    text = C.what_this_run_shows("05_accelerator_memory", _summary())
    assert "float32 983 KiB, 8-bit containers 252 KiB: 3.90x less (short of 4x" in text
    assert "4-bit 7.57x" in text and "1-bit 25.47x" in text
    s = _summary()
    s["memory_bytes"]["int8_containers"] = 200000
    assert "5.03x less (the claim holds)" in C.what_this_run_shows("05_accelerator_memory", s)


def test_report_counts_the_claims():
    from kwslib.study.report import claims

    s = _summary()
    rows = claims(s)
    kinds = [C.claim_kind(r["verdict"]) for r in rows]
    text = C.what_this_run_shows("06_report", s)
    assert f"The paper's {len(rows)} claims read on this run: {kinds.count('supported')} supported, " in text
    assert f"{kinds.count('not supported')} not supported, {kinds.count('open')} open" in text
    assert all(f"- {r['claim']}: {r['verdict']}" in text for r in rows)


def test_claim_kind():
    assert C.claim_kind("supported (better than float)") == "supported" and C.claim_kind("parity") == "supported"
    assert C.claim_kind("undecided (the interval holds 0)") == "open" and C.claim_kind("not measured") == "open"
    assert C.claim_kind("not supported: the shared front end dominates") == "not supported"
    assert C.claim_kind("no parity") == "not supported" and C.claim_kind("partly supported") == "partly supported"


def test_an_undecided_verdict_gives_its_reason():
    e = {"verdict": "inconclusive", "verdict_reason": "1 replicate: the training variance is not measured"}
    assert C.verdict_phrase(e) == "undecided (1 replicate: the training variance is not measured)"
    assert C.verdict_phrase({"verdict": "inconclusive"}).startswith("undecided (the interval is too wide")
    assert C.verdict_phrase({}) == "not measured" and C.verdict_phrase({"verdict": "new-word"}) == "new-word"


def test_a_changed_number_changes_the_text():
    s = _summary()
    a = C.what_this_run_shows("03_stage2_linear_qat", s)
    s2 = copy.deepcopy(s)
    s2["models"]["stage2_w8"]["delta_frr"] = -0.031
    b = C.what_this_run_shows("03_stage2_linear_qat", s2)
    assert a != b and "-3.1 points" in b


def test_bad_input_is_one_clear_error():
    with pytest.raises(ConfigError, match="no conclusion for notebook '07_x'"):
        C.what_this_run_shows("07_x", _summary())
    with pytest.raises(ConfigError, match="must be a dict"):
        C.what_this_run_shows("01_float_baseline", None)
    s = _summary()
    del s["models"]["stage2_w8"], s["models"]["stage2_w5"], s["models"]["stage2_w4"], s["models"]["stage2_w1"]
    with pytest.raises(ConfigError, match="notebook 3 did not finish"):
        C.what_this_run_shows("03_stage2_linear_qat", s)
    with pytest.raises(ConfigError, match="run the notebooks before this one"):
        C.what_this_run_shows("05_accelerator_memory", {"models": {}})


@pytest.mark.parametrize("profile", ["quick", "sc12"])
def test_every_notebook_reads_the_committed_summaries(profile):
    path = ROOT / "results" / profile / "summary.json"
    if not path.exists():
        pytest.skip(f"no {path}")
    s = json.loads(path.read_text())
    for nb in C.BY_NOTEBOOK:
        if nb == "07_own_keywords" and "own_keywords" not in s:
            continue  # an optional notebook (kwslib.study.reproduce.OPTIONAL_NOTEBOOKS) this profile does not run
        text = C.what_this_run_shows(nb, s)
        assert text.startswith(C.HEADING) and "nan" not in text.lower().split() and "None" not in text
        assert "**Try next**" in text or "Try next" in text


def test_every_notebook_ends_in_its_conclusion_cell():
    import nbformat

    for stem in C.BY_NOTEBOOK:
        nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
        last = nb.cells[-1]
        assert "conclusion" in last.metadata.get("tags", []), stem
        assert f"conclusions.what_this_run_shows({stem!r}" in last.source, stem
