from kwslib.study import report
from kwslib.study import verdict_tables


def _summary():
    fl = {"stage": "float", "weight_bits": 32, "accuracy": 0.8, "frr_at_op": 0.10, "frr_at_op_ci": [0.07, 0.13],
          "fdph_at_float_frr": 5.0, "parity": True}
    m = lambda stage, b, frr, par: {"stage": stage, "weight_bits": b, "accuracy": 0.79, "frr_at_op": frr,
                                    "frr_at_op_ci": [frr - 0.03, frr + 0.03], "fdph_at_float_frr": 6.0, "parity": par}
    return {"profile": "t", "data": {"source": "synthetic", "stream_hours": 1.0},
            "operating_point": {"false_detections_per_hour": 20.0},
            "models": {"float": fl, "stage2_w8": m("stage2", 8, 0.10, True), "stage2_w5": m("stage2", 5, 0.11, True),
                       "stage2_w4": m("stage2", 4, 0.2, False), "ptq_w4": m("ptq", 4, 0.3, False),
                       "stage1_w4": m("stage1", 4, 0.12, True), "linear_w4": m("linear_qat", 4, 0.14, False),
                       "dorefa_w4": m("dorefa_qat", 4, 0.13, True), "stage1_pt_w2": m("stage1", 2, 0.5, False)},
            "cpu": {"aarch64_instructions_per_inference": {"float32_neon": 900, "int8_neon": 450, "w4_neon": 300},
                    "x86_us_per_inference": {"float32_numpy": 100.0, "kwslib_int8_c": 10.0}},
            "memory_bytes": {"float32": 1000, "int8_containers": 260, "packed": {"4": 130}}}


def test_claims_verdicts_follow_the_numbers():
    c = {r["claim"]: r for r in report.claims(_summary())}
    assert c["parity at 8-bit weights (stage 2)"]["verdict"] == "supported"
    assert "float 95% CI 7.0%-13.0%" in c["parity at 8-bit weights (stage 2)"]["ours"]
    assert c["parity at 4-bit weights (stage 2)"]["verdict"] == "not supported"
    assert c["1-bit weights (stage 2)"]["verdict"] == "not measured"
    assert c["CPU"]["verdict"] == "supported" and "3.00x" in c["CPU"]["ours"] and "10.0x" in c["CPU"]["ours"]
    assert c["memory"]["verdict"].startswith("not supported with 8-bit containers")
    assert "3.85x" in c["memory"]["ours"] and "7.69x" in c["memory"]["ours"]


def test_missing_numbers_are_not_measured():
    c = report.claims({"models": {}})
    assert all(r["verdict"] == "not measured" for r in c)


def test_rows_order_and_ablation_and_markdown(tmp_path):
    s = _summary()
    rows = report.model_rows(s)
    assert [r["model"] for r in rows][:4] == ["float", "stage2_w8", "stage2_w5", "stage2_w4"]
    abl = report.ablation_table(s)
    assert abl == {"ptq": {4: 0.79}, "stage1": {4: 0.79}, "linear": {4: 0.79}, "dorefa": {4: 0.79},
                   "stage1_pt": {2: 0.79}}
    frr = report.ablation_rows(s, "frr_at_op")
    assert [r["method"] for r in frr] == ["tanh QAT (stage 1), per channel", "tanh QAT (stage 1), per tensor",
                                          "linear QAT, per channel", "DoReFa QAT, per channel",
                                          "PTQ (linear), per channel"]
    assert list(frr[0]) == ["method", "4 bits", "2 bits"]
    assert frr[0]["4 bits"] == 0.12 and frr[0]["2 bits"] is None and frr[1]["2 bits"] == 0.5
    text = report.write_report(tmp_path / "R.md", s, ["an assumption"], ["figures/x.png"])
    assert (tmp_path / "R.md").read_text() == text
    assert "| parity at 8-bit weights (stage 2) | parity |" in text and "- an assumption" in text
    assert "![x](figures/x.png)" in text
    assert "stage2_w5" in report.readme_table({"t": s}) and "ptq_w4" not in report.readme_table({"t": s})


def test_update_readme_replaces_only_the_block(tmp_path):
    import json

    import pytest

    from kwslib.errors import ConfigError

    (tmp_path / "results" / "t").mkdir(parents=True)
    (tmp_path / "results" / "t" / "summary.json").write_text(json.dumps(dict(_summary(), timings={"01_float_seconds": 12.0})))
    (tmp_path / "results" / "t" / "bench.json").write_text(json.dumps(
        {"machine": {"cpu": "Some CPU 9000", "simd": ["avx2", "avx512f"], "cores": 2}}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\nafter\n")
    text = report.update_readme(readme, tmp_path / "results")
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    assert "| parity at 8-bit weights (stage 2) | parity |" in text and "stage2_w8" in text
    assert "Notebook wall times on Some CPU 9000 (avx2/avx512f, 2 cores): 01_float 12 s." in text
    assert report.machine_phrase(tmp_path / "none.json") == "an unrecorded CPU"
    readme.write_text("no markers")
    with pytest.raises(ConfigError, match="no results block"):
        report.update_readme(readme, tmp_path / "results")


def test_ablation_covers_every_stage_the_qat_notebook_writes():
    # the stage names come from kwslib.quant.qat; a method the report does not know would silently vanish
    from kwslib.quant.qat import SUMMARY_STAGE

    s = {"models": {f"{st}_w4": {"stage": st, "weight_bits": 4, "accuracy": 0.5}
                    for st in SUMMARY_STAGE.values()}}
    assert len(report.ablation_table(s)) == len(set(SUMMARY_STAGE.values()))


def test_one_bit_better_than_float_is_not_called_no_parity():
    s = _summary()
    s["models"]["stage2_w1"] = dict(s["models"]["stage2_w8"], weight_bits=1, frr_at_op=0.05, parity=False,
                                    no_worse_than_float=True)
    assert {r["claim"]: r for r in report.claims(s)}["1-bit weights (stage 2)"]["verdict"] == "better than float"
    s["models"]["stage2_w1"].update(frr_at_op=0.2, no_worse_than_float=False)
    assert {r["claim"]: r for r in report.claims(s)}["1-bit weights (stage 2)"]["verdict"] == "no parity"


def test_cpu_and_memory_rows_and_their_sections():
    s = _summary()
    cpu = {(r["measure"].split()[0], r["engine"]): r for r in report.cpu_rows(s)}
    assert cpu[("aarch64", "w4_neon")]["value"] == 300 and cpu[("aarch64", "w4_neon")]["float32 / this"] == 3.0
    assert cpu[("x86", "kwslib_int8_c")]["float32 / this"] == 10.0
    assert report.memory_rows(s) == []  # no projection table in the summary: no rows, no section
    assert "## Memory" not in report.report_markdown(s)
    s["memory_projection"] = {"table": [{"layout": "float32", "weights": 800, "params": 100, "activations": 100,
                                         "total": 1000, "reduction_vs_float32": 1.0,
                                         "weight_reduction_vs_float32": 1.0}]}
    s["engine"] = {"bit_exact_numpy": True, "bit_exact_neon": None}
    text = report.report_markdown(s)
    assert "| float32 | 800 | 100 | 100 | 1000 | 1.0000 | 1.0000 |" in text
    assert "| aarch64 instructions per inference | w4_neon | 300 | 3.0000 |" in text
    assert "numpy True, neon not run" in text
    assert "## Ablation" in text and "| DoReFa QAT, per channel |" in text


def test_cpu_claim_says_why_it_was_not_measured():
    s = _summary()
    s["cpu"]["aarch64_instructions_per_inference"] = {"float32_neon": None, "int8_neon": None, "w4_neon": None,
                                                      "reason": "not measured in this run: no qemu-aarch64"}
    c = {r["claim"]: r for r in report.claims(s)}
    assert c["CPU"]["verdict"] == "not measured (not measured in this run: no qemu-aarch64)"


def test_bench_summary_nulls_every_arm_key_when_not_measured(tmp_path):
    """A run without the aarch64 tools overwrites every earlier ARM count with null (merged into summary.json)."""
    from kwslib.study import bench
    from kwslib.summary import update_summary

    update_summary(tmp_path, "t", {"cpu": {"aarch64_instructions_per_inference": {
        "float32_neon": 137909, "int8_neon": 42158, "w4_neon": 42358, "int8_neon_v80": 83438, "w4_neon_v80": 82758}}})
    res = {"batches": {"1": {"us_per_inference": {"float32_numpy": 20.0, "kwslib_int8_c": 3.0},
                             "onnxruntime_int8_best": 10.0}},
           "aarch64": {"available": False, "reason": "qemu-aarch64 not found"},
           "memory_bytes": {"float32": {"total": 1000}, "int8_containers": {"total": 260},
                            **{f"packed_{b}": {"total": 130} for b in (8, 5, 4, 1)}}}
    part = bench.summarize(res)
    merged = update_summary(tmp_path, "t", {"cpu": part["cpu"]})["cpu"]["aarch64_instructions_per_inference"]
    assert all(merged[k] is None for k in ("float32_neon", "int8_neon", "w4_neon", "int8_neon_v80", "w4_neon_v80"))
    assert "qemu-aarch64 not found" in merged["reason"]
    assert part["ratios"]["arm_float32_vs_w4"] is None and part["targets"]["arm_float32_vs_w4"]["met"] is None


def test_parity_word_says_better_than_float():
    assert report.parity_word({"parity": True, "no_worse_than_float": True}) == "parity"
    assert report.parity_word({"parity": False, "no_worse_than_float": True}) == "better than float"
    assert report.parity_word({"parity": False, "no_worse_than_float": False}) == "worse than float"
    assert report.parity_word({}) == "not measured"
    s = _summary()
    s["models"]["stage2_w1"] = {"stage": "stage2", "weight_bits": 1, "parity": False, "no_worse_than_float": True,
                                "frr_at_op": 0.05, "accuracy": 0.8}
    c = {r["claim"]: r for r in report.claims(s)}
    assert c["1-bit weights (stage 2)"]["verdict"] == "better than float"
    s["models"]["stage2_w1"]["no_worse_than_float"] = False
    assert {r["claim"]: r for r in report.claims(s)}["1-bit weights (stage 2)"]["verdict"] == "no parity"


def test_whole_detector_cpu_claim():
    s = _summary()
    s["pipeline"] = {"aarch64_instructions_per_audio_second": {"float32": 7_700_000, "int8": 5_400_000, "w4": 5_300_000},
                     "x86_realtime_factor": {"numpy": 60.0, "c": 1500.0}, "reason": None}
    c = {r["claim"]: r for r in report.claims(s)}["CPU, whole detector (front end to detections)"]
    assert c["verdict"].startswith("not supported") and "1.45x" in c["ours"] and "1,500x real time" in c["ours"]
    s["pipeline"]["aarch64_instructions_per_audio_second"]["w4"] = 2_000_000
    c = {r["claim"]: r for r in report.claims(s)}["CPU, whole detector (front end to detections)"]
    assert c["verdict"] == "supported"
    s["pipeline"] = {"aarch64_instructions_per_audio_second": {"float32": None}, "reason": "not measured in this run: x"}
    c = {r["claim"]: r for r in report.claims(s)}["CPU, whole detector (front end to detections)"]
    assert c["verdict"] == "not measured (not measured in this run: x)"


def test_whole_detector_cpu_claim_reads_the_integer_front_end():
    s = _summary()
    s["pipeline"] = {"frontend": "int", "reason": None,
                     "aarch64_instructions_per_audio_second": {"float32": 4_900_000, "int8": 2_000_000, "w4": 1_900_000},
                     "aarch64_instructions_per_audio_second_float_frontend":
                         {"float32": 7_760_000, "int8": 5_370_000, "w4": 5_300_000},
                     "x86_realtime_factor": {"c": 3000.0}, "x86_realtime_factor_float_frontend": {"c": 1500.0}}
    c = {r["claim"]: r for r in report.claims(s)}["CPU, whole detector (front end to detections)"]
    assert "with the integer front end float32/int8 2.45x" in c["ours"] and "float32/4-bit 2.58x" in c["ours"]
    assert "float64 front end: float32/int8 1.45x, float32/4-bit 1.46x" in c["ours"] and "1,500x" in c["ours"]
    assert c["verdict"] == "partly supported"


def _real_summary():
    """_summary() with real speech read: 0.85 h per replicate, operating point 10 FD/h (8.5 events)."""
    s = _summary()
    s["operating_point"] = {"false_detections_per_hour": 10.0, "min_events": 20}
    s["negatives"] = {"hours": {"real_speech": 0.85, "synthetic_speech": 1.2}}

    def rs(frr10, delta=None, delta_ci=None, excess=None, excess_ci=None):
        at = {"fdph": 10.0, "events": 8.5, "supported": False, "frr": frr10, "frr_ci": [frr10 - 0.02, frr10 + 0.02],
              "threshold": 0.97}
        if delta is not None:
            at.update(delta_frr=delta, delta_frr_ci=delta_ci, delta_frr_se=0.01, excess_delta_frr=excess,
                      excess_delta_frr_ci=excess_ci)
        return {"hours": 0.85, "fdph_at_op": 15.0, "frr_at_fdph": {"1": 0.97, "5": 0.88, "10": frr10},
                "frr_at_fdph_ci": {"1": [0.96, 0.98], "5": [0.86, 0.90], "10": [frr10 - 0.02, frr10 + 0.02]},
                "events_at_fdph": {"1": 0.85, "5": 4.25, "10": 8.5}, "supported": {"1": False, "5": False, "10": False},
                "min_events": 20, "at_op_rate": at}

    m = s["models"]
    m["float"]["real_speech"] = rs(0.77)
    m["stage2_w8"].update(delta_frr=0.061, delta_frr_ci=[0.050, 0.072], verdict="worse",
                          real_speech=rs(0.84, 0.067, [0.05, 0.09], 0.006, [-0.01, 0.02]))
    m["stage2_w4"].update(delta_frr=0.035, delta_frr_ci=[0.026, 0.045], verdict="worse",
                          real_speech=rs(0.90, 0.13, [0.10, 0.16], 0.095, [0.07, 0.12]))
    m["stage2_w5"].update(delta_frr=0.04, delta_frr_ci=[0.03, 0.05], verdict="worse",
                          real_speech=rs(0.75, -0.02, [-0.04, 0.0], -0.06, [-0.08, -0.04]))
    return s


def test_real_speech_rows_show_intervals_and_mark_unsupported_rates():
    s = _real_summary()
    rows = verdict_tables.real_speech_rows(s)
    assert [r["model"] for r in rows] == ["float", "stage2_w8", "stage2_w5", "stage2_w4"]
    assert rows[0]["FRR @ 10/h"] == "77.0% [75.0, 79.0]*" and rows[0]["FRR @ 1/h"] == "97.0% [96.0, 98.0]*"
    assert rows[3]["FRR @ 10/h"] == "90.0% [88.0, 92.0]*"
    note = verdict_tables.real_speech_note(s)
    assert "0.85 h of real speech" in note and "1/h: 0.85, 5/h: 4.25, 10/h: 8.5 false" in note and "fewer than 20" in note
    # a supported rate has no star, and the note says every rate is supported when they all are
    for e in s["models"].values():
        if "real_speech" in e:
            e["real_speech"]["supported"] = {"1": True, "5": True, "10": True}
    assert verdict_tables.real_speech_rows(s)[0]["FRR @ 10/h"] == "77.0% [75.0, 79.0]"
    assert "Every rate rests on at least 20" in verdict_tables.real_speech_note(s)
    # no real speech (quick): no rows, no note, no section
    q = _summary()
    assert verdict_tables.real_speech_rows(q) == [] and verdict_tables.real_speech_note(q) is None
    assert verdict_tables.real_speech_cost_rows(q) == [] and "Real non-keyword speech" not in report.report_markdown(q)


def test_real_speech_cost_rows_compare_real_speech_with_all_negatives(tmp_path):
    s = _real_summary()
    rows = {r["model"]: r for r in verdict_tables.real_speech_cost_rows(s)}
    assert list(rows) == ["stage2_w8", "stage2_w5", "stage2_w4"]  # float is the reference, not a row
    w4 = rows["stage2_w4"]
    assert w4["delta FRR, all negatives"] == "+3.5 [+2.6, +4.5]" and w4["delta FRR, real speech"] == "+13.0 [+10.0, +16.0]"
    assert w4["real minus all"] == "+9.5 [+7.0, +12.0]" and w4["rate"] == "10/h"
    assert w4["reading"].startswith("costs more on real speech") and "8.5 false detections, fewer than 20" in w4["reading"]
    assert rows["stage2_w8"]["reading"].startswith("no clear difference")
    assert rows["stage2_w5"]["reading"].startswith("costs less on real speech")
    s["models"]["stage2_w4"]["real_speech"]["at_op_rate"]["supported"] = True
    assert verdict_tables.real_speech_cost_rows(s)[2]["reading"] == "costs more on real speech"
    text = report.write_report(tmp_path / "R.md", s)
    assert "## Real non-keyword speech" in text and "| stage2_w4 | 4 | 10/h | +3.5 [+2.6, +4.5] |" in text
    assert "77.0% [75.0, 79.0]*" in text
    # a summary written before at_op_rate existed: the FRR table, and the comparison "not measured"
    for e in s["models"].values():
        e.get("real_speech", {}).pop("at_op_rate", None)
    assert verdict_tables.real_speech_cost_rows(s) == []
    assert "not measured (this summary has no `real_speech.at_op_rate`" in report.report_markdown(s)


def test_update_readme_carries_the_real_speech_comparison(tmp_path):
    import json

    (tmp_path / "results" / "t").mkdir(parents=True)
    (tmp_path / "results" / "t" / "summary.json").write_text(json.dumps(_real_summary()))
    (tmp_path / "results" / "q").mkdir(parents=True)
    (tmp_path / "results" / "q" / "summary.json").write_text(json.dumps(_summary()))
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.START}\n{report.END}\n")
    text = report.update_readme(readme, tmp_path / "results")
    assert text.count("threshold read on real non-keyword speech alone") == 1  # t only: q has no real speech
    assert "| stage2_w4 | 4 | 10/h | +3.5 [+2.6, +4.5] | +13.0 [+10.0, +16.0] | +9.5 [+7.0, +12.0] |" in text
