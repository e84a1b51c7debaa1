"""Replicates: per-replicate configs, pooled paired entries, and resuming a finished replicate."""
import numpy as np
import pytest

from kwslib import experiment, replicates as R, stats
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
    e = R.pooled_entry(same, floats, margin=0.02, n_boot=500)
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
    w = R.pooled_entry(worse, floats, margin=0.02, n_boot=500)
    diff = np.concatenate([q["misses_at_op"] for q in worse]).mean() - all_misses.mean()
    assert w["delta_frr"] == pytest.approx(diff) and w["verdict"] == "worse" and not w["parity_paired"]
    ref = stats.grouped_bootstrap_diff(np.concatenate([f["pos_speakers"] for f in floats]), all_misses.astype(float),
                                       np.concatenate([q["misses_at_op"] for q in worse]).astype(float),
                                       strata=np.repeat([0, 1, 2], len(floats[0]["pos_speakers"])), n_boot=500)
    assert w["delta_frr_ci"] == pytest.approx(list(ref["ci"]))
    assert w["min_detectable_delta_frr"] == pytest.approx(stats.minimum_detectable_difference(ref["se"]))
    # the per-hour difference: units are shared across replicates (one cluster per unit id)
    more = [dict(q, counts_at_float_frr=f["counts_at_op"] + 1) for q, f in zip(worse, floats)]
    m = R.pooled_entry(more, floats, margin=0.02, n_boot=200)
    assert m["delta_fdph"] == pytest.approx(1 / 0.02)


def test_few_speakers_are_inconclusive_and_bad_input():
    rng = np.random.default_rng(1)
    f = [fake_record(rng, n_spk=5)]
    e = R.pooled_entry([dict(f[0], counts_at_float_frr=f[0]["counts_at_op"])], f, margin=0.02, n_boot=100)
    assert e["delta_frr_ci"] == [0.0, 0.0] and e["verdict"] == "inconclusive"  # [0, 0] from 5 speakers proves nothing
    with pytest.raises(ConfigError, match="margin"):
        R.pooled_entry(f, f, margin=0.0)
    with pytest.raises(ValueError, match="float records"):
        R.pooled_entry(f, f + f, margin=0.02)
    with pytest.raises(ValueError, match="no records"):
        R.pooled_entry([], None, margin=0.02)


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
    with pytest.raises(ConfigError, match="needs data.source synthetic"):
        R.replicate_config(sc, R.ReplicatesConfig(n=2), 0)
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
    curves = R.load_pooled_curves(p, 2)
    assert set(curves) == {"float"} and len(curves["float"]["frr"]) == len(curves["float"]["thresholds"])
    other = experiment.experiment_config(**{**{k: getattr(cfg, k).__dict__ for k in ("data", "model", "eval")},
                                            "train": {"epochs": 2, "threads": 1},
                                            "negatives": {"synthetic_hours": 0.005}, "replicates": {"n": 2}})
    rep_other = next(experiment.replicate_runs(other, p))
    with pytest.raises(ConfigError, match="run notebook 1"):
        experiment.float_record(rep_other)  # a record of another training config is not this run's
