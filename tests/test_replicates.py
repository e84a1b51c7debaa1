"""Replicates: per-replicate configs, pooled paired entries, and resuming a finished replicate."""
import numpy as np
import pytest

from kwslib.study import experiment, replicates as R
from kwslib.study import rerun
from kwslib.study import verdicts
from kwslib.evaluation import stats
from kwslib.errors import ConfigError


def fake_record(rng, n_spk=30, clips=8, miss_p=0.3, units=50, rate=0.5, base=None, shift=0.0):
    """A record as model_record writes it, with known per-clip misses and per-unit detections."""
    spk = np.repeat([f"s{i}" for i in range(n_spk)], clips)
    if base is None:
        misses = rng.random(len(spk)) < miss_p
    else:  # the same clips as `base`, flipping a share `shift` of hits to misses
        misses = base["misses_at_op"] | (rng.random(len(spk)) < shift)
    counts = rng.poisson(rate, units)
    rec = {"accuracy": float(1 - misses.mean()), "correct": ~misses, "speakers": spk, "pos_speakers": spk,
           "labels": np.where(np.arange(len(spk)) % 4 == 0, 1, 2),  # every 4th clip _unknown_
           "pos_scores": np.where(misses, 0.2, 0.9), "threshold_at_op": 0.5, "misses_at_op": misses,
           "frr_at_op": float(misses.mean()), "unit_ids": np.array([f"u{i}" for i in range(units)]),
           "unit_hours": np.full(units, 0.02), "unit_source": np.array(["synthetic_speech"] * units),
           "counts_at_op": counts, "hours": 0.02 * units, "hours_by_source": {"synthetic_speech": 0.02 * units},
           "thresholds_at_levels": {"1.0": None, "5.0": None, "10.0": 0.5, "50.0": 0.5}}
    if base is not None:
        rec["counts_at_float_frr"] = counts
    return rec


def test_pooled_entry_pools_and_pairs():
    rng = np.random.default_rng(0)
    floats = [fake_record(rng) for _ in range(3)]
    same = [dict(f, counts_at_float_frr=f["counts_at_op"]) for f in floats]
    e = verdicts.pooled_entry(same, floats, margin=0.02, n_boot=500)
    all_misses = np.concatenate([f["misses_at_op"] for f in floats])
    assert e["frr_at_op"] == pytest.approx(all_misses.mean())
    assert e["delta_frr"] == 0 and e["delta_frr_ci"] == [0.0, 0.0] and e["verdict"] == "equivalent"
    assert e["delta_fdph"] == 0 and e["parity_paired"] and e["verdict_agreement"] == 1.0
    assert e["accuracy_sd"] == pytest.approx(np.std([f["accuracy"] for f in floats], ddof=1))
    assert len(e["per_replicate"]) == 3 and all(r["verdict"] == "equivalent" for r in e["per_replicate"])
    unk = np.concatenate([f["correct"][f["labels"] == 1] for f in floats])
    assert e["unknown_recall"] == pytest.approx(unk.mean())
    assert e["frr_at_fdph"]["1"] is None and e["frr_at_fdph"]["10"] == pytest.approx(all_misses.mean())
    # a model that misses 15% more of the same clips is worse, by the paired difference
    worse = [fake_record(rng, base=f, shift=0.15) for f in floats]
    w = verdicts.pooled_entry(worse, floats, margin=0.02, n_boot=500)
    diff = np.concatenate([q["misses_at_op"] for q in worse]).mean() - all_misses.mean()
    assert w["delta_frr"] == pytest.approx(diff) and w["verdict"] == "worse" and not w["parity_paired"]
    ref = stats.grouped_bootstrap_diff(np.concatenate([f["pos_speakers"] for f in floats]), all_misses.astype(float),
                                       np.concatenate([q["misses_at_op"] for q in worse]).astype(float),
                                       strata=np.repeat([0, 1, 2], len(floats[0]["pos_speakers"])), n_boot=500)
    assert w["delta_frr_ci_speakers_only"] == pytest.approx(list(ref["ci"]))
    # the interval of record has the replicate as its unit: the t-interval of the three per-replicate differences
    d_rep = [np.mean(q["misses_at_op"]) - np.mean(f["misses_at_op"]) for q, f in zip(worse, floats)]
    t = stats.replicate_interval(d_rep)
    assert w["delta_frr_ci"] == pytest.approx(t["ci"]) and w["delta_frr_se"] == pytest.approx(t["se"])
    assert [x["delta_frr"] for x in w["per_replicate"]] == pytest.approx(d_rep)
    assert w["min_detectable_delta_frr"] == pytest.approx(stats.minimum_detectable_difference(t["se"], df=2))
    assert w["variance_components"]["per_replicate_total"] == pytest.approx(100 * np.std(d_rep, ddof=1))
    assert w["variance_components"]["threshold_negatives"] is None  # these records hold no per-unit counts
    assert "version 2" in w["variance_components"]["threshold_negatives_reason"] or \
        "op_fdph" in w["variance_components"]["threshold_negatives_reason"]
    # the per-hour difference: units are shared across replicates (one cluster per unit id)
    more = [dict(q, counts_at_float_frr=f["counts_at_op"] + 1) for q, f in zip(worse, floats)]
    m = verdicts.pooled_entry(more, floats, margin=0.02, n_boot=200)
    assert m["delta_fdph"] == pytest.approx(1 / 0.02)


def test_few_speakers_are_inconclusive_and_bad_input():
    rng = np.random.default_rng(1)
    f = [fake_record(rng, n_spk=5)]
    e = verdicts.pooled_entry([dict(f[0], counts_at_float_frr=f[0]["counts_at_op"])], f, margin=0.02, n_boot=100)
    assert e["delta_frr_ci_speakers_only"] == [0.0, 0.0] and e["verdict"] == "inconclusive"  # proves nothing
    # one run measures no training variance: the interval is the speakers-only one, labelled, and no verdict
    assert e["delta_frr_ci"] == e["delta_frr_ci_speakers_only"] and "1 replicate" in e["verdict_reason"]
    assert e["delta_frr_interval"]["method"].startswith("1 replicate") and e["variance_components"] is None
    assert e["delta_fdph_ci"] == e["delta_fdph_ci_units_only"] and e["min_detectable_delta_frr"] is not None
    assert e["replicates_needed"] is None and e["replicates_needed_reason"]
    two = [fake_record(rng, n_spk=5) for _ in range(2)]
    e2 = verdicts.pooled_entry([dict(x, counts_at_float_frr=x["counts_at_op"]) for x in two], two, margin=0.02, n_boot=100)
    assert e2["delta_frr_ci"] == [0.0, 0.0] and e2["verdict"] == "inconclusive"  # [0, 0] from 10 speakers
    assert "speakers" in e2["verdict_reason"]
    with pytest.raises(ConfigError, match="margin"):
        verdicts.pooled_entry(f, f, margin=0.0)
    with pytest.raises(ValueError, match="float records"):
        verdicts.pooled_entry(f, f + f, margin=0.02)
    with pytest.raises(ValueError, match="no records"):
        verdicts.pooled_entry([], None, margin=0.02)


def test_replicate_configs():
    cfg = experiment.experiment_config(data={"source": "synthetic", "synthetic_seed": 10},
                                       replicates={"n": 3, "kind": "seeds"})
    rc = [R.replicate_config(cfg, cfg.replicates, k) for k in range(3)]
    assert [c.data.synthetic_seed for c in rc] == [10, 11, 12] and [c.train.seed for c in rc] == [0, 1, 2]
    assert cfg.data.synthetic_seed == 10 and cfg.train.seed == 0  # the profile's config is not changed
    sc = experiment.experiment_config(data={"source": "speech_commands_test_set"},
                                      replicates={"n": 5, "kind": "speaker_folds", "seeds": [7, 8, 9, 10, 11]})
    r3 = R.replicate_config(sc, sc.replicates, 3)
    assert (r3.data.fold, r3.data.n_folds, r3.train.seed) == (3, 5, 10)
    with pytest.raises(ConfigError, match="speaker_folds needs"):
        R.replicate_config(cfg, R.ReplicatesConfig(n=2, kind="speaker_folds"), 0)
    with pytest.raises(ConfigError, match="need data.source synthetic"):
        R.replicate_config(sc, R.ReplicatesConfig(n=2), 0)
    full = experiment.experiment_config(data={"source": "speech_commands"}, replicates={"n": 2, "kind": "seeds"})
    rf = [R.replicate_config(full, full.replicates, k) for k in range(2)]  # the official split, the seed varies
    assert [c.train.seed for c in rf] == [0, 1] and all(c.data == full.data for c in rf)
    with pytest.raises(ConfigError, match="replicates.kind"):
        R.ReplicatesConfig(n=2, kind="folds")
    with pytest.raises(ConfigError, match="seeds must have"):
        R.ReplicatesConfig(n=2, seeds=[1])
    with pytest.raises(ConfigError, match="outside"):
        R.replicate_config(cfg, cfg.replicates, 3)


def test_a_finished_replicate_is_reused(tmp_path):
    cfg = experiment.experiment_config(data={"synthetic": {"n_voices": 6, "clips_per_class_per_voice": 1,
                                                           "noise_seconds": 30.0}},
                                       model={"hidden": [16], "dropout": 0.0}, train={"epochs": 1, "threads": 1},
                                       eval={"n_boot": 50, "min_events": 1}, negatives={"synthetic_hours": 0.005},
                                       replicates={"n": 2})
    p = experiment.paths(tmp_path / "res", tmp_path / "cache")
    reps = list(experiment.replicate_runs(cfg, p))
    assert reps[0].paths.results == p.results and reps[1].paths.results == p.results / "replicates" / "r1"
    assert set(reps[0].corpus.test.origins) != set(reps[1].corpus.test.origins)  # each its own corpus
    op = 100.0
    first = [experiment.float_replicate(r, op) for r in reps]
    assert all(f[2] is not None for f in first)  # trained
    again = [experiment.float_replicate(r, op) for r in reps]
    assert all(a[2] is None and a[3] is None for a in again)  # reused: not trained or read again
    for f, a in zip(first, again):
        np.testing.assert_array_equal(f[4]["misses_at_op"], a[4]["misses_at_op"])
    assert experiment.float_record(reps[1])["accuracy"] == first[1][4]["accuracy"]
    curves = verdicts.load_pooled_curves(p, 2)
    assert set(curves) == {"float"} and len(curves["float"]["frr"]) == len(curves["float"]["thresholds"])
    other = experiment.experiment_config(**{**{k: getattr(cfg, k).__dict__ for k in ("data", "model", "eval")},
                                            "train": {"epochs": 2, "threads": 1},
                                            "negatives": {"synthetic_hours": 0.005}, "replicates": {"n": 2}})
    rep_other = next(experiment.replicate_runs(other, p))
    with pytest.raises(ConfigError, match="run notebook 1"):
        experiment.float_record(rep_other)  # a record of another training config is not this run's


# --------------------------------------------------------------------------- real non-keyword speech alone

GRID = np.linspace(0.0, 1.0, 11)
#: false detections on the real speech at each threshold of GRID (0.5 h: 200 ... 0 FD/h)
REAL_FD = np.array([100, 80, 60, 40, 20, 10, 8, 4, 1, 0, 0])


def real_record(scores, speakers, real_hours=0.5, real_fd=REAL_FD, misses_at_op=None):
    """A record with keyword scores and a real-speech DET curve (FD/h = real_fd / real_hours) on GRID."""
    scores = np.asarray(scores, float)
    misses = scores < 0.5 if misses_at_op is None else np.asarray(misses_at_op, bool)
    syn_fd = np.zeros_like(real_fd)
    return {"accuracy": 0.5, "correct": ~misses, "labels": np.full(len(scores), 2), "speakers": speakers,
            "pos_speakers": speakers, "pos_scores": scores, "threshold_at_op": 0.5, "misses_at_op": misses,
            "frr_at_op": float(misses.mean()), "unit_ids": np.array(["r0", "s0"]), "unit_hours": np.array([real_hours, 1.0]),
            "unit_source": np.array(["real_speech", "synthetic_speech"]), "counts_at_op": np.array([3, 1]),
            "hours": real_hours + 1.0, "hours_by_source": {"real_speech": real_hours, "synthetic_speech": 1.0},
            "curve_thresholds": GRID, "curve_frr": np.array([np.mean(scores < t) for t in GRID]),
            "curve_false_detections": real_fd + syn_fd,
            "curve_source_false_detections": {"real_speech": real_fd, "synthetic_speech": syn_fd},
            "thresholds_at_levels": {"1.0": None, "5.0": None, "10.0": 0.5, "50.0": 0.5},
            "counts_at_float_frr": np.array([3, 1])}


def _speakers(n_spk, clips):
    return np.repeat([f"s{i}" for i in range(n_spk)], clips)


def test_real_speech_entry_reads_each_replicate_on_real_speech_alone():
    """Thresholds from the real-speech curve of each replicate (10/h -> 0.7, 5/h -> 0.8, 1/h -> 0.9), FRR pooled,
    the speaker-bootstrap interval of the existing code, and the events each rate rests on per replicate."""
    rng = np.random.default_rng(3)
    spk = _speakers(30, 6)
    recs = [real_record(rng.random(len(spk)), spk) for _ in range(3)]
    e = verdicts.pooled_entry(recs, None, margin=0.02, n_boot=300, op_fdph=20.0)
    rs = e["real_speech"]
    scores = np.concatenate([r["pos_scores"] for r in recs])
    for level, thr in (("10", 0.7), ("5", 0.8), ("1", 0.9)):
        assert rs["frr_at_fdph"][level] == pytest.approx(np.mean(scores < thr))
        ref = stats.grouped_bootstrap_diff(np.concatenate([spk] * 3), np.zeros(len(scores)),
                                           (scores < thr).astype(float), strata=np.repeat([0, 1, 2], len(spk)),
                                           n_boot=300)
        assert rs["frr_at_fdph_ci"][level] == pytest.approx(ref["ci"])
        lo, hi = rs["frr_at_fdph_ci"][level]
        assert lo <= rs["frr_at_fdph"][level] <= hi
    # the existing keys keep their meaning: hours per replicate, FD/h at the all-negatives operating point
    assert rs["hours"] == pytest.approx(0.5) and rs["fdph_at_op"] == pytest.approx(3 / 0.5)
    # 0.5 h of real speech: 10/h is 5 events, below 20 (the same audio in every replicate: not 3 x 5)
    assert rs["events_at_fdph"] == pytest.approx({"1": 0.5, "5": 2.5, "10": 5.0})
    assert rs["supported"] == {"1": False, "5": False, "10": False} and rs["min_events"] == 20
    at = rs["at_op_rate"]  # 20/h of real speech -> threshold 0.5 (FD/h 40 at 0.4, 20 at 0.5)
    assert at["fdph"] == 20.0 and at["threshold"] == pytest.approx(0.5) and at["events"] == pytest.approx(10.0)
    assert at["frr"] == pytest.approx(np.mean(scores < 0.5)) and at["supported"] is False
    assert "delta_frr" not in at  # the float model has nothing to be paired with
    # enough events: 3 h of real speech support 10/h (30 >= 20), not 5/h (15); min_events moves the line
    big = [real_record(r["pos_scores"], spk, real_hours=3.0) for r in recs]
    rs_big = verdicts.pooled_entry(big, None, margin=0.02, n_boot=50)["real_speech"]
    assert rs_big["supported"] == {"1": False, "5": False, "10": True} and "at_op_rate" not in rs_big
    rs_low = verdicts.pooled_entry(recs, None, margin=0.02, n_boot=50, min_events=5)["real_speech"]
    assert rs_low["supported"] == {"1": False, "5": False, "10": True} and rs_low["min_events"] == 5


def test_real_speech_delta_at_the_operating_rate_is_paired_with_float():
    """A quantized model whose real-speech detections rise needs a higher threshold there: its real-speech delta
    exceeds its all-negatives delta, by the per-clip difference of the two, with a paired interval."""
    rng = np.random.default_rng(4)
    spk = _speakers(40, 5)
    floats = [real_record(rng.random(len(spk)), spk) for _ in range(2)]
    # same scores, same misses on all negatives; on real speech 4x the detections -> 10/h reads at 0.8, not 0.7
    quants = [real_record(f["pos_scores"], spk, real_fd=REAL_FD * 4) for f in floats]
    e = verdicts.pooled_entry(quants, floats, margin=0.02, n_boot=300, op_fdph=10.0)
    at = e["real_speech"]["at_op_rate"]
    scores = np.concatenate([f["pos_scores"] for f in floats])
    want = np.mean(scores < 0.8) - np.mean(scores < 0.7)
    assert want > 0.05 and e["delta_frr"] == 0
    assert at["frr"] == pytest.approx(np.mean(scores < 0.8)) and at["threshold"] == pytest.approx(0.8)
    assert at["delta_frr"] == pytest.approx(want) and at["delta_frr_all_negatives"] == pytest.approx(0.0)
    assert at["excess_delta_frr"] == pytest.approx(want)
    assert 0 < at["excess_delta_frr_ci"][0] <= want <= at["excess_delta_frr_ci"][1]
    assert at["delta_frr_ci"][0] <= want <= at["delta_frr_ci"][1] and at["delta_frr_se"] > 0
    # a model equal to float on real speech but worse on all negatives: the excess is negative
    worse_all = [real_record(f["pos_scores"], spk, misses_at_op=f["misses_at_op"] | (f["pos_scores"] < 0.6))
                 for f in floats]
    w = verdicts.pooled_entry(worse_all, floats, margin=0.02, n_boot=300, op_fdph=10.0)
    aw = w["real_speech"]["at_op_rate"]
    assert w["delta_frr"] > 0 and aw["delta_frr"] == 0
    assert aw["delta_frr_all_negatives"] == pytest.approx(w["delta_frr"])
    assert aw["excess_delta_frr"] == pytest.approx(-w["delta_frr"]) and aw["excess_delta_frr_ci"][1] < 0


def test_real_speech_bad_input_and_pooled_curve_by_source():
    spk = _speakers(5, 2)
    r = real_record(np.linspace(0, 1, 10), spk)
    for bad in (0, -1.0, float("nan"), "10", True):
        with pytest.raises(ConfigError, match="op_fdph"):
            verdicts.pooled_entry([r], None, margin=0.02, n_boot=10, op_fdph=bad)
    for bad in (0, 2.5, None):
        with pytest.raises(ConfigError, match="min_events"):
            verdicts.pooled_entry([r], None, margin=0.02, n_boot=10, min_events=bad)
    # no real speech in the records (quick): no real_speech entry, whatever op_fdph says
    syn = fake_record(np.random.default_rng(0))
    assert "real_speech" not in verdicts.pooled_entry([syn], None, margin=0.02, n_boot=10, op_fdph=10.0)
    # the DET curve of one source: its false detections over its hours, pooled over replicates
    r2 = real_record(np.linspace(0, 1, 10), spk, real_hours=1.5, real_fd=REAL_FD * 2)
    c = verdicts.pooled_curve([r, r2], source="real_speech")
    np.testing.assert_allclose(c["fdph"], (REAL_FD + REAL_FD * 2) / 2.0)
    np.testing.assert_allclose(c["frr"], (r["curve_frr"] + r2["curve_frr"]) / 2)
    np.testing.assert_allclose(verdicts.pooled_curve([r, r2])["fdph"], (REAL_FD * 3) / (1.5 + 2.5))
    with pytest.raises(ValueError, match="replicate 0 .* no negative source 'real_speech'.*synthetic_speech"):
        verdicts.pooled_curve([dict(r, curve_source_false_detections={"synthetic_speech": np.zeros(11)},
                             hours_by_source={"synthetic_speech": 1.0})], source="real_speech")
    with pytest.raises(ValueError, match="no records"):
        verdicts.pooled_curve([], source="real_speech")


def test_load_pooled_curves_by_source(tmp_path):
    from kwslib.study.experiment import Paths

    p = Paths(tmp_path / "res", tmp_path / "cache")
    spk = _speakers(5, 2)
    for k, h in enumerate((0.5, 1.0)):
        q = R.replicate_paths(p, k)
        (q.results / "records").mkdir(parents=True, exist_ok=True)
        R.save_record(R.record_path(q, "float"), real_record(np.linspace(0, 1, 10), spk, real_hours=h))
    c = verdicts.load_pooled_curves(p, 2, source="real_speech")["float"]
    np.testing.assert_allclose(c["fdph"], 2 * REAL_FD / 1.5)
    assert verdicts.load_pooled_curves(p, 3, source="real_speech") == {}  # replicate 2 has no record


def test_records_keep_per_unit_counts_at_the_thresholds_and_the_entry_measures_all_three_parts(tmp_path_factory):
    """model_record's sparse per-unit counts add up to the DET curve at every band threshold and give back the
    operating-point threshold; pooled_entry over such records measures speakers, threshold and training."""
    from kwslib.evaluation import evaluate
    from kwslib.data import DataConfig, load_corpus
    from kwslib.evaluation.evaluate import EvalConfig, NegativesConfig, prepare_eval
    from kwslib.frontend.features import FeatureConfig

    cache = tmp_path_factory.mktemp("cache")
    corpus = load_corpus(DataConfig(source="synthetic", synthetic={"n_voices": 6, "clips_per_class_per_voice": 1,
                                                                     "noise_seconds": 30.0}), cache_dir=cache)
    ecfg = EvalConfig(min_events=1, n_boot=200)
    data = prepare_eval(corpus, FeatureConfig(), 96, 4, ecfg, NegativesConfig(synthetic_hours=0.01), cache_dir=cache)
    op = evaluate.operating_point(data, ecfg)

    def model(seed, sharpen):
        rng = np.random.default_rng(seed)

        def fn(windows):
            x = rng.random((len(windows), 12)).astype(np.float32) ** sharpen
            return x / x.sum(1, keepdims=True)
        return fn

    floats, quants = [], []
    for k in range(3):
        f = R.model_record(evaluate.evaluate(model(k, 4), data, ecfg), data, ecfg, op)
        floats.append(f)
        quants.append(R.model_record(evaluate.evaluate(model(100 + k, 4), data, ecfg), data, ecfg, op, float_record=f))
    rec = floats[0]
    j0, mat = verdicts._band(rec, len(rec["unit_ids"]))
    per_thr = np.asarray(mat.sum(axis=0)).ravel()
    np.testing.assert_array_equal(per_thr, rec["curve_false_detections"][j0:])
    assert np.all(rec["curve_false_detections"][j0:] / rec["hours"] <= R.BAND_FACTOR * op)
    k = verdicts._first_at_or_under((per_thr / np.sum(rec["unit_hours"]))[None, :], op)[0]
    assert rec["curve_thresholds"][j0 + k] == rec["threshold_at_op"]
    e = verdicts.pooled_entry(quants, floats, margin=0.02, n_boot=200, op_fdph=op, min_events=1)
    vc = e["variance_components"]
    # (measured, here 0: a random model misses every keyword clip of this tiny corpus at every band threshold;
    # tests/test_verdict_intervals.py checks its size against fresh samples of negative audio)
    assert vc["threshold_negatives"] is not None and vc["threshold_negatives"] >= 0 and vc["unit"] == "FRR points (sd)"
    assert vc["negative_draws"]["n_boot"] == 200 and vc["negative_draws"]["units"] == len(rec["unit_ids"])
    assert set(vc) >= {"training", "per_replicate_total", "shared_negatives", "dominant"}
    d_rep = [x["delta_frr"] for x in e["per_replicate"]]
    bare = stats.replicate_interval(d_rep, weights=[len(q["pos_scores"]) for q in quants])
    assert e["delta_frr_ci"][0] <= bare["ci"][0] and e["delta_frr_ci"][1] >= bare["ci"][1]  # the shared part widens it
    assert e["delta_frr_interval"]["se_shared"] == pytest.approx(vc["shared_negatives"] / 100)
    assert e["delta_fdph_ci"] is not None and e["delta_accuracy_ci"] is not None
    assert e["verdict"] == stats.equivalence_verdict(e["delta_frr_ci"], 0.02) or e["verdict_reason"]
    R.save_record(tmp_path_factory.mktemp("rec") / "r.npz", quants[0])


def test_base_seed_moves_every_replicate_seed():
    cfg = experiment.experiment_config(data={"source": "synthetic", "synthetic_seed": 10},
                                       replicates={"n": 3, "kind": "seeds", "seed": 100})
    assert cfg.replicates.seed_list == [100, 101, 102]
    assert cfg.replicates.describe() == {"n": 3, "kind": "seeds", "seeds": [100, 101, 102], "seed": 100,
                                         "seed_source": "params"}
    rc = [R.replicate_config(cfg, cfg.replicates, k) for k in range(3)]
    assert [c.train.seed for c in rc] == [100, 101, 102] and [c.data.synthetic_seed for c in rc] == [110, 111, 112]
    assert R.ReplicatesConfig(n=2).seed_list == [0, 1]  # the default is the runs so far
    with pytest.raises(ConfigError, match="one of them"):
        R.ReplicatesConfig(n=2, seeds=[5, 6], seed=3)
    with pytest.raises(ConfigError, match="seed"):
        R.ReplicatesConfig(n=2, seed=-1)


def _stored_summary():
    """A summary as the runs before the replicate-level intervals wrote it (per-replicate entries only)."""
    fl = {"accuracy": 0.78, "per_replicate": [{"accuracy": a} for a in (0.77, 0.79, 0.78, 0.76, 0.80)]}
    d = [0.005, -0.059, -0.040, -0.027, -0.002]
    q = {"delta_frr": -0.025, "delta_frr_ci": [-0.035, -0.015], "verdict": "better", "delta_fdph_ci": [-1.0, 2.0],
         "per_replicate": [{"accuracy": a, "delta_frr": x, "delta_frr_ci": [x - 0.0196, x + 0.0196],
                            "verdict": "inconclusive"} for a, x in zip((0.76, 0.78, 0.79, 0.75, 0.80), d)]}
    return {"git_commit": "807132e", "operating_point": {"parity_margin": 0.02},
            "models": {"float": fl, "stage2_w4": q, "one_rep": {"delta_frr": 0.0, "per_replicate": [q["per_replicate"][0]]}}}, d


def test_recompute_summary_from_stored_per_replicate_entries():
    s, d = _stored_summary()
    out = rerun.recompute_summary(s, "abc1234")
    e = out["models"]["stage2_w4"]
    t = stats.replicate_interval(d)
    assert e["delta_frr_ci"] == pytest.approx(t["ci"]) and e["delta_frr_interval"]["center"] == pytest.approx(np.mean(d))
    assert e["verdict"] == "inconclusive" and e["verdict_speakers_only"] == "better"  # [-5.8, +0.8] crosses 0
    assert e["delta_frr_ci_speakers_only"] == [-0.035, -0.015] and e["delta_fdph_ci"] is None
    assert e["delta_fdph_ci_reason"] and e["delta_fdph_ci_units_only"] == [-1.0, 2.0]
    vc = e["variance_components"]
    assert vc["test_speakers"] == pytest.approx(1.0, rel=1e-3)  # a +-1.96-point interval: sd 1 point
    assert vc["threshold_negatives"] is None and vc["training_includes_threshold"] and vc["dominant"] == "training"
    assert vc["training"] == pytest.approx(np.sqrt(100 ** 2 * np.var(d, ddof=1) - 1.0), rel=1e-3)
    assert e["replicates_needed"] == stats.replicates_needed(np.std(d, ddof=1), 0.02) and e["replicates_needed_note"]
    acc = stats.replicate_interval([q - f for q, f in zip((0.76, 0.78, 0.79, 0.75, 0.80), (0.77, 0.79, 0.78, 0.76, 0.80))])
    assert e["delta_accuracy_ci"] == pytest.approx(acc["ci"])
    lab = out["recomputed"]
    assert lab["at_commit"] == "abc1234" and lab["run_commit"] == "807132e" and lab["models"] == ["stage2_w4"]
    assert "one_rep" in lab["skipped"] and "807132e" in lab["from"]
    assert s["models"]["stage2_w4"]["verdict"] == "better"  # the input is not changed
    # recomputing twice gives the same (the run's speaker-only interval stays the secondary one)
    again = rerun.recompute_summary(out, "abc1234")["models"]["stage2_w4"]
    assert again["delta_frr_ci_speakers_only"] == [-0.035, -0.015] and again["verdict_speakers_only"] == "better"
    with pytest.raises(ValueError, match="parity_margin"):
        rerun.recompute_summary({"models": {"float": {}}})


def test_recompute_command_writes_atomically(tmp_path, capsys):
    import json

    s, _ = _stored_summary()
    src = tmp_path / "summary.json"
    src.write_text(json.dumps(s))
    assert rerun.main([str(src), "--out", str(tmp_path / "new.json")]) == 0
    assert "stage2_w4" in capsys.readouterr().out
    new = json.loads((tmp_path / "new.json").read_text())
    assert new["models"]["stage2_w4"]["verdict"] == "inconclusive" and new["recomputed"]["run_commit"] == "807132e"
    assert json.loads(src.read_text()) == s


def test_base_seed_from_the_environment(monkeypatch):
    monkeypatch.setenv("KWS_REPLICATES_SEED", "200")
    rc = R.ReplicatesConfig(n=2, seed=5)  # the environment wins over the params' base, and says so
    assert rc.seed_list == [200, 201] and rc.describe()["seed_source"] == "KWS_REPLICATES_SEED"
    with pytest.raises(ConfigError, match="replicates.seeds"):
        R.ReplicatesConfig(n=2, seeds=[1, 2])
    monkeypatch.setenv("KWS_REPLICATES_SEED", "x")
    with pytest.raises(ConfigError, match="integer"):
        R.ReplicatesConfig(n=2)
    monkeypatch.setenv("KWS_REPLICATES_SEED", "-3")
    with pytest.raises(ConfigError, match="seed"):
        R.ReplicatesConfig(n=2)
    monkeypatch.delenv("KWS_REPLICATES_SEED")
    assert R.ReplicatesConfig(n=2).describe()["seed_source"] == "params"


def test_compare_runs_finds_contradictions_only_between_conclusive_opposites(tmp_path, capsys):
    import copy
    import json

    assert rerun.contradicts("better", "worse") and rerun.contradicts("worse", "equivalent")
    assert not rerun.contradicts("inconclusive", "worse") and not rerun.contradicts("better", "equivalent")
    assert not rerun.contradicts("worse", "worse")
    a, _ = _stored_summary()
    b = copy.deepcopy(a)
    b["git_commit"] = "e22dcde"
    cmp = rerun.compare_runs(a, b)  # both written before the new fields: recomputed first
    assert [r["model"] for r in cmp["rows"]][0] == "stage2_w4" and cmp["contradictions"] == []
    assert cmp["rows"][0]["a"] == "inconclusive" and cmp["rows"][0]["a_speakers_only"] == "better"
    # run B far worse in every replicate: conclusive "worse" against A's "inconclusive" is no contradiction...
    for x in b["models"]["stage2_w4"]["per_replicate"]:
        x["delta_frr"] += 0.2
    assert rerun.compare_runs(a, b)["contradictions"] == []
    # ...but against a conclusive "equivalent" it is
    for x in a["models"]["stage2_w4"]["per_replicate"]:
        x["delta_frr"] = 0.001 * (hash(str(x["accuracy"])) % 3)
        x["delta_frr_ci"] = [x["delta_frr"] - 0.001, x["delta_frr"] + 0.001]
    cmp = rerun.compare_runs(a, b)
    assert cmp["claim_contradictions"] == ["stage2_w4"] and "YES" in rerun.compare_markdown(cmp)
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    assert rerun.main([str(pa), "--against", str(pb)]) == 1
    assert "stage2_w4" in capsys.readouterr().out
    assert rerun.main([str(pa), "--against", str(pa)]) == 0
    with pytest.raises(ValueError, match="not in both"):
        rerun.compare_runs(a, b, models=["stage2_w3"])


def test_replicates_needed_reason_names_the_shared_floor_and_what_replicates_still_buy():
    """Shared negative audio of sd 0.56 points: the interval's half-width never goes below 1.96 x 0.56 = 1.1
    points, so no n makes it narrower than the 2-point margin (``replicates_needed`` None), yet an interval inside
    +-2 (an 'equivalent' at a true difference near 0) stays within reach: the reason must say both, not that
    replicates cannot help."""
    d = np.array([0.01, -0.05, 0.03, -0.02, 0.04])
    out = verdicts.power_fields(d, np.full(5, 1e-4), np.full(5, 1e-4), shared_var=0.0056 ** 2, margin=0.02)
    assert out["replicates_needed"] is None
    reason = out["replicates_needed_reason"]
    assert "+-1.1 points" in reason and "2-point margin" in reason and "power plan" in reason
    assert "not by replicates alone" in reason
    # a narrow shared part: replicates reach it, no reason
    ok = verdicts.power_fields(d, np.full(5, 1e-4), np.full(5, 1e-4), shared_var=0.001 ** 2, margin=0.02)
    assert ok["replicates_needed"] is not None and ok["replicates_needed_reason"] is None
    # the same floor with a margin the floor fits twice into: a spread too wide for 1000 replicates instead
    far = verdicts.power_fields(d * 30, np.full(5, 1e-4), np.full(5, 1e-4), shared_var=0.001 ** 2, margin=0.02)
    assert far["replicates_needed"] is None and far["replicates_needed_reason"] == "more than 1000 at this spread"
