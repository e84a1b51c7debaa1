"""The QAT-seed study (issue 23): stage 1 and stage 2 trained again from one replicate's own float model."""
import numpy as np
import pytest

from kwslib.errors import ConfigError
from kwslib.quant.qat import Stage1Config
from kwslib.quant.stage2 import Stage2Config
from kwslib.study import experiment, verdicts
from kwslib.evaluation import evaluate


@pytest.fixture(scope="module")
def replicate(tmp_path_factory):
    """A tiny synthetic replicate with its float model and a 1-bit stage-1 model (notebooks 1 and 2 in small)."""
    cfg = experiment.experiment_config(
        data={"source": "synthetic", "synthetic": {"n_voices": 6, "clips_per_class_per_voice": 1}},
        train={"epochs": 1}, eval={"n_boot": 50, "min_events": 2}, negatives={"synthetic_hours": 0.02})
    p = experiment.paths(tmp_path_factory.mktemp("qs") / "results")
    rep = next(experiment.replicate_runs(cfg, p))
    op = evaluate.operating_point(rep.data, cfg.eval)
    experiment.float_replicate(rep, op)
    experiment.stage1_replicate(rep, op, [("tanh", 1, True)], Stage1Config(epochs=1))
    return rep, op


def test_qat_seed_runs_train_from_the_same_float_model_with_other_seeds(replicate):
    rep, op = replicate
    s2cfg = Stage2Config(epochs=1)
    main = experiment.stage2_replicate(rep, op, [1], s2cfg)[1]["record"]
    seen = []
    out = experiment.qat_seed_replicate(rep, op, [1], 2, s2cfg, on_model=lambda key, o: seen.append(key))
    assert list(out) == [1] and len(out[1]) == 2 and seen == ["qatseed1_stage2_w1", "qatseed2_stage2_w1"]
    for j in (1, 2):
        assert (rep.paths.models / "qat_seeds" / f"s{j}" / "stage2_w1.int.npz").is_file()
        assert (rep.paths.results / "records" / f"qatseed{j}_stage2_w1.npz").is_file()
    # the same clips and negatives: every record scores the same keyword clips
    for rec in out[1]:
        assert np.array_equal(rec["pos_speakers"], main["pos_speakers"])
    # the other seeds are other runs: three different integer models
    from kwslib.study.replicates import file_digest

    files = [rep.paths.models / "stage2_w1.int.npz"] + [rep.paths.models / "qat_seeds" / f"s{j}" / "stage2_w1.int.npz"
                                                         for j in (1, 2)]
    assert len({file_digest(f) for f in files}) == 3
    # a second call reuses the saved models and records (nothing trained: seconds None)
    again = []
    out2 = experiment.qat_seed_replicate(rep, op, [1], 2, s2cfg, on_model=lambda key, o: again.append(o["seconds"]))
    assert again == [None, None] and [r["frr_at_op"] for r in out2[1]] == [r["frr_at_op"] for r in out[1]]
    vc = verdicts.qat_seed_split({}, experiment.float_record(rep), main, out[1])
    assert vc["qat_seed"] >= 0 and len(vc["qat_seed_deltas"]) == 3


def test_qat_seed_bad_input(replicate):
    rep, op = replicate
    with pytest.raises(ConfigError, match="extra_seeds"):
        experiment.qat_seed_replicate(rep, op, [1], 0, Stage2Config(epochs=1))
    with pytest.raises(ConfigError, match="no stage-1 model"):
        experiment.qat_seed_replicate(rep, op, [3], 1, Stage2Config(epochs=1))
