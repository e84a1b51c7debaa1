"""The report says what a verdict rests on and which of the paper's claims the data decides."""
import numpy as np

from kwslib.study import report
from kwslib.study import verdict_tables
from kwslib.study import rerun
from kwslib.study import verdicts
from kwslib.evaluation import stats


def _summary():
    fl = {"accuracy": 0.78, "frr_at_op": 0.73, "stage": "float", "weight_bits": 32,
          "per_replicate": [{"accuracy": a} for a in (0.77, 0.79, 0.78, 0.76, 0.80)]}

    def model(bits, stage, d, half=0.01):
        return {"stage": stage, "weight_bits": bits, "accuracy": 0.77, "frr_at_op": 0.73 + float(np.mean(d)),
                "delta_frr": float(np.mean(d)), "delta_frr_ci": [float(np.mean(d)) - 0.005, float(np.mean(d)) + 0.005],
                "verdict": "worse", "parity_margin": 0.02, "replicates": len(d),
                "per_replicate": [{"accuracy": 0.77, "delta_frr": x, "delta_frr_ci": [x - half, x + half],
                                   "verdict": "inconclusive"} for x in d]}

    models = {"float": fl,
              "stage2_w8": model(8, "stage2", [0.001, 0.002, 0.0, 0.001, -0.001], half=0.001),  # tight: decided
              "stage2_w4": model(4, "stage2", [0.005, -0.059, -0.040, -0.027, -0.002]),  # spread: undecided
              "stage1_w1": model(1, "stage1", [0.30, 0.31, 0.29, 0.30, 0.32])}  # far worse: decided
    return rerun.recompute_summary({"git_commit": "807132e", "replicates": {"n": 5, "kind": "speaker_folds"},
                                "operating_point": {"parity_margin": 0.02, "false_detections_per_hour": 10.0},
                                "models": models}, "abc1234")


def test_verdict_basis_rows_and_text():
    s = _summary()
    rows = {r["model"]: r for r in verdict_tables.verdict_basis_rows(s)}
    assert set(rows) == {"stage2_w8", "stage2_w4", "stage1_w1"}
    w4 = rows["stage2_w4"]
    assert w4["verdict"] == "inconclusive" and w4["speakers-only verdict"] == "worse"  # the run's verdict, kept
    ci = stats.replicate_interval([0.005, -0.059, -0.040, -0.027, -0.002])["ci"]
    assert w4["delta FRR [95% CI]"] == f"-2.5 [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
    assert w4["sd: threshold"] is None and w4["sd: training"].endswith("(with threshold)")
    assert w4["replicates needed"].startswith(">= ")  # recomputed without the shared part: a lower bound
    assert rows["stage2_w8"]["verdict"] == "equivalent" and rows["stage1_w1"]["verdict"] == "worse"
    text = verdict_tables.verdict_basis_text(s)
    assert "5 replicate(s)" in text and "+-2 FRR points" in text and "own test speakers" in text
    assert "decides: stage2_w8 (equivalent), stage1_w1 (worse)" in text
    assert "cannot decide: stage2_w4" in text and f"needs at least {w4['replicates needed'][3:]} replicates" in text
    assert "recomputed at commit abc1234" in text and "807132e" in text
    md = report.report_markdown(s)
    assert "## What a verdict rests on" in md and "speakers-only CI" in md
    claim = {c["claim"]: c for c in report.claims(s)}
    assert claim["parity at 4-bit weights (stage 2)"]["verdict"].startswith("undecided")
    assert claim["parity at 8-bit weights (stage 2)"]["verdict"] == "supported"
    assert "speakers-only CI" in claim["parity at 4-bit weights (stage 2)"]["ours"]
    assert "replicates for a conclusive verdict" in claim["parity at 4-bit weights (stage 2)"]["ours"]


def test_verdict_basis_of_a_summary_without_paired_models():
    s = {"models": {"float": {"accuracy": 0.8, "frr_at_op": 0.5}}}
    assert verdict_tables.verdict_basis_rows(s) == [] and verdict_tables.verdict_basis_text(s) is None
    assert "What a verdict rests on" not in report.report_markdown(s)


def test_verdict_basis_text_names_claims_that_replicates_alone_cannot_make_sure_of():
    s = _summary()
    w4 = s["models"]["stage2_w4"]
    w4.update(verdicts.power_fields(np.array([p["delta_frr"] for p in w4["per_replicate"]]), np.full(5, 1e-4),
                                    np.full(5, 1e-4), shared_var=0.0056 ** 2, margin=0.02))
    w4.pop("replicates_needed_note", None)
    assert w4["replicates_needed"] is None
    text = verdict_tables.verdict_basis_text(s)
    assert "cannot decide: stage2_w4 (for stage2_w4 no number of replicates is sure to conclude" in text
    assert "an 'equivalent' near parity stays within reach" in text and "needs" not in text.split("cannot")[1]
    assert "What would decide the claims" in text
