from kwslib import report


def _summary():
    fl = {"stage": "float", "weight_bits": 32, "accuracy": 0.8, "frr_at_op": 0.10, "frr_at_op_ci": [0.07, 0.13],
          "fdph_at_float_frr": 5.0, "parity": True}
    m = lambda stage, b, frr, par: {"stage": stage, "weight_bits": b, "accuracy": 0.79, "frr_at_op": frr,
                                    "frr_at_op_ci": [frr - 0.03, frr + 0.03], "fdph_at_float_frr": 6.0, "parity": par}
    return {"profile": "t", "data": {"source": "synthetic", "stream_hours": 1.0},
            "operating_point": {"false_detections_per_hour": 20.0},
            "models": {"float": fl, "stage2_w8": m("stage2", 8, 0.10, True), "stage2_w5": m("stage2", 5, 0.11, True),
                       "stage2_w4": m("stage2", 4, 0.2, False), "ptq_w4": m("ptq", 4, 0.3, False),
                       "stage1_w4": m("stage1", 4, 0.12, True), "linear_w4": m("linear_qat", 4, 0.14, False)},
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
    assert abl == {"ptq": {4: 0.79}, "stage1": {4: 0.79}, "linear": {4: 0.79}}
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
    (tmp_path / "results" / "t" / "summary.json").write_text(json.dumps(_summary()))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\nafter\n")
    text = report.update_readme(readme, tmp_path / "results")
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    assert "| parity at 8-bit weights (stage 2) | parity |" in text and "stage2_w8" in text
    readme.write_text("no markers")
    with pytest.raises(ConfigError, match="no results block"):
        report.update_readme(readme, tmp_path / "results")
