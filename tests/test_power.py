"""kwslib.study.power: the simulated power of a design, its price from a run's timings, and the declared choice."""
import math

import numpy as np
import pytest

from kwslib.errors import ConfigError
from kwslib.study import power
from kwslib.study.power import Design

# sc12-like parts (FRR points, sd): float retraining dominates
SC12 = {"test_speakers": 1.1, "threshold_negatives": 3.8, "shared_negatives": 0.56, "qat_seed": 1.1,
        "float_retraining": 5.7}


def test_design_rejects_bad_values():
    for bad in (dict(replicates=1), dict(replicates=2.5), dict(replicates=True), dict(replicates=5, qat_seeds=0),
                dict(replicates=5, negatives_factor=0.0), dict(replicates=5, negatives_factor=float("nan"))):
        with pytest.raises(ConfigError, match="Design"):
            Design(**bad)
    assert Design(5, 3, 5.0).label() == "5 replicates x 3 QAT seed(s), negatives x5"


def test_per_replicate_sd_by_hand():
    own, shared = power.per_replicate_sd(SC12, Design(5))
    assert own == pytest.approx(math.sqrt(5.7 ** 2 + 1.1 ** 2 + 1.1 ** 2 + 3.8 ** 2) / 100)
    assert shared == pytest.approx(0.0056)
    own, shared = power.per_replicate_sd(SC12, Design(5, qat_seeds=4, negatives_factor=4.0))
    assert own == pytest.approx(math.sqrt(5.7 ** 2 + 1.1 ** 2 / 4 + 1.1 ** 2 + 3.8 ** 2 / 4) / 100)
    assert shared == pytest.approx(0.0028)
    # training not split: QAT seeds buy nothing (the conservative reading)
    unsplit = {"training": 5.8, "test_speakers": 1.1}
    assert (power.per_replicate_sd(unsplit, Design(5, qat_seeds=3))
            == power.per_replicate_sd(unsplit, Design(5, qat_seeds=1)))
    with pytest.raises(ConfigError, match="training"):
        power.per_replicate_sd({"test_speakers": 1.0}, Design(5))
    with pytest.raises(ConfigError, match="threshold_negatives"):
        power.per_replicate_sd({**SC12, "threshold_negatives": -1.0}, Design(5))


@pytest.mark.parametrize("reps", [5, 10])
def test_simulated_interval_covers_at_nominal_rate(reps):
    """The simulated runs use the verdicts' interval: its coverage is 95% +- 2 points, training dominating."""
    out = power.simulate(SC12, Design(reps), margin=0.02, true_delta=0.01, n_sim=6000, seed=reps)
    assert 0.93 <= out["coverage"] <= 0.97
    assert sum(out[k] for k in ("equivalent", "better", "worse", "inconclusive")) == pytest.approx(1.0)
    assert out["conclusive"] == pytest.approx(1.0 - out["inconclusive"])


def test_simulated_verdicts_follow_the_truth():
    tiny = {"training": 0.1, "test_speakers": 0.1}
    assert power.simulate(tiny, Design(5), 0.02)["equivalent"] > 0.99  # a precise design at parity
    assert power.simulate(tiny, Design(5), 0.02, true_delta=0.10)["worse"] > 0.99
    assert power.simulate(tiny, Design(5), 0.02, true_delta=-0.10)["better"] > 0.99
    wide = power.simulate(SC12, Design(5), 0.02)
    assert wide["inconclusive"] > 0.9  # sc12's spread at 5 replicates: almost never conclusive
    # more replicates narrow the interval about as 1/sqrt(n) when nothing is shared
    noshare = {"float_retraining": 5.0}
    w5 = power.simulate(noshare, Design(5), 0.02)["half_width"]
    w20 = power.simulate(noshare, Design(20), 0.02)["half_width"]
    t5, t20 = 2.776, 2.093  # t quantiles, df 4 and 19
    assert w20 / w5 == pytest.approx((t20 / math.sqrt(20)) / (t5 / math.sqrt(5)), rel=0.08)
    with pytest.raises(ConfigError, match="n_sim"):
        power.simulate(SC12, Design(5), 0.02, n_sim=10)
    with pytest.raises(ConfigError, match="margin"):
        power.simulate(SC12, Design(5), 0.0)


def _summary():
    return {"replicates": {"n": 5},
            "timings": {"01_float_baseline_seconds": 700.0, "02_stage1_seconds": 900.0, "03_stage2_seconds": 1100.0,
                        "qat_seed_seconds": 400.0},
            "operating_point": {"stream_hours": 2.0},
            "models": {"float": {"eval_seconds": 10.0},
                       "stage1_w8": {"train_seconds": [10.0, 30.0], "eval_seconds": 12.0},
                       "stage1_w4": {"train_seconds": [20.0, 20.0], "eval_seconds": 8.0},
                       "stage2_w8": {"train_seconds": [5.0, 15.0], "eval_seconds": 10.0},
                       "stage2_w4": {"train_seconds": [6.0, None], "eval_seconds": 10.0}}}


def test_costs_and_design_seconds_by_hand():
    c = power.costs_from_summary(_summary())
    assert c["per_replicate"] == pytest.approx((700 + 900 + 1100 - 400) / 5)
    assert c["per_qat_seed"] == pytest.approx((20 + 10) + (20 + 6))  # stage 1 + stage 2 per claim width
    assert c["per_negative_hour"] == pytest.approx(10.0 * 5 / 2.0)  # 5 models, 10 s each on 2 h
    assert power.design_seconds(Design(5), c) == pytest.approx(2300.0)
    assert power.design_seconds(Design(10, 3, 3.0), c) == pytest.approx(
        10 * 460 + 10 * 2 * 56 + 10 * 2.0 * 2.0 * 25.0)
    s = _summary()
    for m in s["models"].values():
        m.pop("eval_seconds")
    c2 = power.costs_from_summary(s)
    assert c2["per_negative_hour"] is None and power.design_seconds(Design(5, 1, 2.0), c2) is None
    assert power.design_seconds(Design(5), {"per_replicate": None}) is None


def test_plan_and_the_declared_choice():
    costs = power.costs_from_summary(_summary())
    comps = {"stage2_w8": SC12, "stage2_w4": {**SC12, "float_retraining": 4.0}}
    grid = {"replicates": (5, 40, 160), "qat_seeds": (1,), "negatives_factor": (1.0,)}
    rows = power.plan(comps, costs, 0.02, grid=grid, n_sim=500)
    assert [r["design"].replicates for r in rows] == [5, 40, 160]
    assert rows[0]["mean_p_equivalent"] < 0.15 < rows[-1]["mean_p_equivalent"]
    assert rows[0]["mean_p_equivalent"] == pytest.approx(np.mean(list(rows[0]["p_equivalent"].values())))
    # a 90-minute budget buys nothing that reaches 50%: the run keeps its design and names what would
    got = power.choose(rows, 90 * 60, Design(5), target=0.5)
    assert got["design"] == Design(5) and "keeps its design" in got["reason"]
    reach = [r for r in rows if r["mean_p_equivalent"] >= 0.5]
    assert got["cheapest_reaching_target"] == (min(reach, key=lambda r: r["seconds"]) if reach else None)
    # a budget that covers the cheapest design reaching the target chooses it
    if reach:
        big = power.choose(rows, 1e9, Design(5), target=0.5)
        assert big["design"] == got["cheapest_reaching_target"]["design"] and "cheapest design within" in big["reason"]
    tiny = power.plan({"m": {"training": 0.1}}, costs, 0.02, grid=grid, n_sim=200)
    assert power.choose(tiny, 90 * 60, Design(5))["design"] == Design(5)  # 5 replicates already conclude
    with pytest.raises(ConfigError, match="no claim"):
        power.plan({}, costs, 0.02)


def test_plan_summary_from_a_run():
    s = _summary()
    for name in ("stage2_w8", "stage2_w4", "stage1_w8"):
        s["models"][name]["variance_components"] = SC12
    s["operating_point"]["parity_margin"] = 0.02
    got = power.plan_summary(s, budget_minutes=90, grid={"replicates": (10,), "qat_seeds": (1,),
                                                        "negatives_factor": (1.0,)}, n_sim=300)
    assert [r["design"]["replicates"] for r in got["rows"]] == [5, 10]  # the run's own design is always a row
    assert got["choice"] == {"replicates": 5, "qat_seeds": 1, "negatives_factor": 1.0}
    assert got["rows"][0]["minutes"] == pytest.approx(2300 / 60, abs=0.1)
    assert set(got["rows"][0]["p_equivalent"]) == {"stage2_w8", "stage2_w4", "stage1_w8"}
    import json
    json.dumps(got)  # it goes into summary.json
    assert power.plan_summary({"models": {"float": {}}}, 90) is None
    with pytest.raises(ConfigError, match="budget_minutes"):
        power.plan_summary(s, 0)


def test_the_plan_in_the_report():
    from kwslib.study import report, verdict_tables

    s = _summary()
    for name in ("stage2_w8", "stage2_w4"):
        s["models"][name]["variance_components"] = SC12
    for m in s["models"].values():
        m.pop("eval_seconds")  # a run that did not time its evaluations: more negative audio cannot be priced
    s["operating_point"]["parity_margin"] = 0.02
    assert verdict_tables.power_plan_rows(s) == [] and verdict_tables.power_plan_text(s) is None
    assert "What would decide the claims" not in report.report_markdown(s)
    s["power_plan"] = power.plan_summary(s, 90, grid={"replicates": (10,), "qat_seeds": (1,),
                                                      "negatives_factor": (1.0, 5.0)}, n_sim=200)
    rows = verdict_tables.power_plan_rows(s)
    minutes = [r["minutes"] for r in rows]
    assert minutes[-2:] == ["not priced", "not priced"] and [float(m) for m in minutes[:-2]] == sorted(
        float(m) for m in minutes[:-2])  # the summary has no eval_seconds here: 5x negatives is not priced
    assert set(rows[0]) >= {"design", "minutes", "P(equivalent), mean", "stage2_w8", "stage2_w4"}
    text = verdict_tables.power_plan_text(s)
    assert "Choice for the next run: 5 replicates x 1 QAT seed(s), negatives x1" in text and "within 90 minutes" in text
    md = report.report_markdown(s)
    assert "## What would decide the claims" in md and "| 10 replicates x 1 QAT seed(s), negatives x1 |" in md
