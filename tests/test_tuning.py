"""Choosing settings on validation data (kwslib.study.tuning) and synthetic pretraining (experiment.pretrain_synthetic)."""
import json

import numpy as np
import pytest
import torch
import yaml

from kwslib.study import tuning
from kwslib.errors import ConfigError

TINY = {"n_voices": 6, "clips_per_class_per_voice": 1, "noise_seconds": 30.0}


def test_parse_override_reads_yaml_values_and_rejects_bad_keys():
    assert tuning.parse_override("train.mixup_alpha=0.2") == (["train", "mixup_alpha"], 0.2)
    assert tuning.parse_override("model.hidden=[150, 150]") == (["model", "hidden"], [150, 150])
    assert tuning.parse_override("train.augment.time_masks=2") == (["train", "augment", "time_masks"], 2)
    assert tuning.parse_override("data.root=null") == (["data", "root"], None)
    for bad, why in [("train.epochs", "SECTION.KEY=VALUE"), ("epochs=3", "must start with"),
                     ("bogus.x=1", "must start with"), ("train.=1", "must start with"),
                     ("train.hidden=[1,", "not valid YAML")]:
        with pytest.raises(ConfigError, match=why):
            tuning.parse_override(bad)


def test_apply_overrides_is_deep_and_leaves_the_input_alone():
    params = {"train": {"epochs": 10, "augment": {"noise_prob": 0.3}}, "model": {}}
    out = tuning.apply_overrides(params, [(["train", "augment", "time_masks"], 2), (["model", "dropout"], 0.1),
                                          (["eval", "smooth_windows"], 3)])
    assert out == {"train": {"epochs": 10, "augment": {"noise_prob": 0.3, "time_masks": 2}},
                   "model": {"dropout": 0.1}, "eval": {"smooth_windows": 3}}
    assert params == {"train": {"epochs": 10, "augment": {"noise_prob": 0.3}}, "model": {}}
    with pytest.raises(ConfigError, match="train.epochs is 10, not a mapping"):
        tuning.apply_overrides(params, [(["train", "epochs", "x"], 1)])


def test_trial_config_is_replicate_0_of_the_profile_with_overrides():
    cfg = tuning.trial_config("sc12", [(["train", "mixup_alpha"], 0.3), (["train", "epochs"], 7)])
    assert cfg.data.fold == 0 and cfg.train.seed == 0  # speaker fold 0, its seed
    assert cfg.train.mixup_alpha == 0.3 and cfg.train.epochs == 7
    from kwslib.config import profile_dir

    shared = yaml.safe_load(open(profile_dir("sc12") / "shared.yaml"))
    assert cfg.train.batch_size == shared["train"]["batch_size"]  # the profile's settings stay
    with pytest.raises(ConfigError, match="mixup_alfa"):  # a typo is an error, not ignored
        tuning.trial_config("sc12", [(["train", "mixup_alfa"], 0.3)])
    with pytest.raises(ConfigError, match="unknown profile"):
        tuning.trial_config("nope")


def test_log_appends_replaces_by_name_and_reports_damage(tmp_path):
    log = tmp_path / "t.jsonl"
    assert tuning.read_log(log) == []
    tuning.append_log(log, {"name": "a", "val_acc": 0.5})
    tuning.append_log(log, {"name": "b", "val_acc": 0.6})
    tuning.append_log(log, {"name": "a", "val_acc": 0.7})  # a rerun replaces its record
    assert [(r["name"], r["val_acc"]) for r in tuning.read_log(log)] == [("b", 0.6), ("a", 0.7)]
    assert not list(tmp_path.glob("*.tmp*"))
    log.write_text(log.read_text() + "{not json\n")
    with pytest.raises(ConfigError, match=r"t.jsonl:3: not a JSON record"):
        tuning.read_log(log)
    log.write_text('[1, 2]\n')
    with pytest.raises(ConfigError, match="t.jsonl:1"):
        tuning.read_log(log)


def test_trials_table_lists_every_trial_with_its_change():
    recs = [{"name": "base", "overrides": {}, "train_clips": 10, "params": 5, "val_acc": 0.8125,
             "unknown_recall": None, "val_frr_at_fdph": {"20": 0.5, "50": None, "100": 0.25}, "seconds": 12.4,
             "commit": "abc"},
            {"name": "mix", "overrides": {"train.mixup_alpha": 0.2}, "val_acc": 0.9}]
    table = tuning.trials_table(recs).splitlines()
    assert len(table) == 4 and table[0].startswith("| trial |")
    assert table[2] == "| base | profile as is | 10 | 5 | 0.812 | n/a | n/a | 0.500 / n/a / 0.250 | n/a | 12 | abc |"
    assert "`train.mixup_alpha=0.2`" in table[3] and "| 0.900 |" in table[3]


def _tiny_profile(tmp_path):
    d = tmp_path / "params" / "tiny"
    d.mkdir(parents=True)
    (d / "shared.yaml").write_text(yaml.safe_dump({
        "data": {"source": "synthetic", "synthetic": TINY},
        "model": {"hidden": [16], "decimate": 8, "dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 32, "threads": 1, "warmup_epochs": 1},
        "negatives": {"synthetic_hours": 0.01}, "replicates": {"n": 2, "kind": "seeds"}}))
    (d / "01_float.yaml").write_text("{}\n")
    return tmp_path / "params"


def test_run_trial_reads_validation_only_and_logs(tmp_path, monkeypatch):
    from kwslib.evaluation import evaluate as ev

    monkeypatch.delenv("KWS_REAL_NEGATIVES_ROOT", raising=False)  # no real speech: synthetic negatives only
    root = _tiny_profile(tmp_path)
    seen = []
    real_prepare = ev.prepare_eval

    def spy(corpus, *a, **kw):
        seen.append((corpus, a, kw))
        return real_prepare(corpus, *a, **kw)

    monkeypatch.setattr(ev, "prepare_eval", spy)
    rec = tuning.run_trial("tiny", "t1", [(["train", "epochs"], 1)], work_dir=tmp_path / "work",
                           params_root=root, log=None, negative_hours=0.005)
    corpus, args, kw = seen[0]
    assert corpus.test is corpus.val  # the validation split is read as the "test" data; the test split never
    neg = args[4] if len(args) > 4 else kw.get("negatives")
    assert neg.synthetic_vocabulary == "train" and not neg.real_speech and neg.synthetic_seed == 3000
    assert rec["name"] == "t1" and rec["overrides"] == {"train.epochs": 1}
    assert rec["val_clips"] == len(corpus.val) and 0.0 <= rec["val_acc"] <= 1.0
    assert set(rec["val_frr_at_fdph"]) == {"20", "50", "100"}
    assert (tmp_path / "work" / "t1" / "models" / "float.pt").is_file()
    json.dumps(rec)  # a log line


def test_validation_record_reads_the_curve_and_unknown_recall():
    from kwslib.data.base import CLASS_INDEX
    from kwslib.evaluation.evaluate import EvalResult

    u = CLASS_INDEX["_unknown_"]
    conf = np.zeros((12, 12), np.int64)
    conf[u, u], conf[u, 0] = 3, 1
    conf[2, 2], conf[2, u], conf[5, 5] = 2, 5, 1  # keywords: 3 of 8 right (and not in val_acc's 0.75 below)
    pos = np.array([0.1, 0.6, 0.9, 0.95])
    thr = np.array([0.0, 0.5, 0.8, 1.0])
    curve = {"thresholds": thr, "fdph": np.array([300.0, 60.0, 15.0, 0.0])}
    res = EvalResult(0.75, conf, None, None, pos, {}, curve, {}, {})

    class D:
        negative_hours = 1.5

        def __init__(self, hours=None):
            self.hours = hours or {}

        def hours_by_source(self):
            return self.hours

    rec = tuning.validation_record(res, D())
    assert rec["unknown_recall"] == 0.75 and rec["val_acc"] == 0.75 and rec["val_real_fdph"] is None
    assert rec["val_keyword_acc"] == 3 / 8
    # 20 and 50 FD/h: the lowest threshold with fdph <= level is 0.8 -> FRR 2/4; 100 FD/h: 0.5 -> FRR 1/4
    assert rec["val_frr_at_fdph"] == {"20": 0.5, "50": 0.5, "100": 0.25}
    curve["fdph"] = np.array([300.0, 60.0, 30.0, 25.0])
    assert tuning.validation_record(res, D())["val_frr_at_fdph"]["20"] is None  # not reachable: None
    # per-source curves: the FRR levels read synthetic speech + noise alone (1 h), the real speech apart
    by_src = {"synthetic_speech": {"thresholds": thr, "false_detections": np.array([280, 50, 10, 0])},
              "noise": {"thresholds": thr, "false_detections": np.array([20, 10, 4, 0])},
              "real_speech": {"thresholds": thr, "false_detections": np.array([90, 40, 3, 0])}}
    res = EvalResult(0.75, conf, None, None, pos, {}, curve, by_src, {})
    rec = tuning.validation_record(res, D({"synthetic_speech": 0.9, "noise": 0.1, "real_speech": 0.25}))
    # synthetic + noise: 300 / 60 / 14 / 0 FD/h -> 20 FD/h at threshold 0.8 (FRR 0.5), where real speech has 3 / 0.25 h
    assert rec["val_frr_at_fdph"] == {"20": 0.5, "50": 0.5, "100": 0.25}
    assert rec["val_real_fdph"] == pytest.approx(12.0) and rec["val_real_hours"] == 0.25
    assert rec["val_negative_hours"] == pytest.approx(1.0)


def test_cli_writes_table_and_rejects_set_without_name(tmp_path, capsys):
    log = tmp_path / "t.jsonl"
    tuning.append_log(log, {"name": "a", "overrides": {}, "val_acc": 0.5})
    assert tuning.main(["--profile", "sc12", "--log", str(log), "--table", str(tmp_path / "t.md")]) == 0
    assert "| a | profile as is |" in (tmp_path / "t.md").read_text()
    assert tuning.main(["--profile", "sc12", "--log", str(log), "--set", "train.epochs=2"]) == 2
    assert "--set needs --name" in capsys.readouterr().err


def test_pretrain_synthetic_starts_fine_tuning_from_pretrained_weights(tmp_path):
    from kwslib.study import experiment as ex
    from kwslib.data import load_corpus

    cfg = ex.experiment_config(data={"source": "synthetic", "synthetic": TINY},
                               model={"hidden": [16], "decimate": 8, "dropout": 0.0},
                               train={"epochs": 1, "batch_size": 32, "threads": 1, "warmup_epochs": 1,
                                      "pretrain_epochs": 2})
    p = ex.paths(tmp_path / "r")
    corpus = load_corpus(cfg.data, cache_dir=p.cache / "corpus")
    with pytest.raises(ConfigError, match="already 'synthetic'"):
        ex.train_float(cfg, corpus, p, log=None, device="cpu")
    # a "real" source: the same clips under another name (the pretraining corpus is data.synthetic at seed 5)
    cfg.data.source, cfg.data.synthetic_seed = "speech_commands_test_set", 5
    logs = []
    net, hist, _ = ex.train_float(cfg, corpus, p, log=logs.append, device="cpu")
    saved = torch.load(p.models / "float.pt", weights_only=False)
    assert len(saved["extra"]["pretrain_history"]) == 2 and len(hist) == 1
    assert any("synthetic pretraining" in line for line in logs)
    assert (p.checkpoints / "float_pretrain" / "last.pt").is_file()
    # without pretraining the same fine-tuning ends elsewhere: the pretrained weights were the start
    cfg.train.pretrain_epochs = 0
    plain, _, _ = ex.train_float(cfg, corpus, ex.paths(tmp_path / "plain"), log=None, device="cpu")
    assert not torch.equal(net.blocks[0].linear.weight, plain.blocks[0].linear.weight)


def test_validation_reads_the_real_val_part_only_when_not_trained_on(tmp_path, monkeypatch):
    import kwslib.data as kd
    from kwslib.evaluation import evaluate as ev
    from kwslib.data.base import ClipSet, Corpus

    got = []
    fake = Corpus("x", ClipSet.empty(), ClipSet.empty(), ClipSet.empty())
    monkeypatch.setattr(kd, "load_corpus", lambda cfg, cache_dir=None: fake)
    monkeypatch.setattr(ev, "prepare_eval", lambda corpus, *a, **kw: got.append(a[4]) or "data")
    monkeypatch.setenv("KWS_REAL_NEGATIVES_ROOT", str(tmp_path))
    cfg = tuning.trial_config("sc12")
    assert tuning.validation_data(cfg, tmp_path) == (fake, "data")
    assert got[-1].real_speech and got[-1].real_parts == ["val"] and got[-1].synthetic_vocabulary == "train"
    cfg = tuning.trial_config("sc12", [(["data", "unknown_real_parts"], ["train", "val"]),
                                       (["negatives", "real_parts"], ["test"])])
    tuning.validation_data(cfg, tmp_path)
    assert not got[-1].real_speech  # it trains on the val part: not read as validation audio
    monkeypatch.delenv("KWS_REAL_NEGATIVES_ROOT")
    tuning.validation_data(tuning.trial_config("sc12"), tmp_path)
    assert not got[-1].real_speech  # no real speech here
    tuning.validation_data(tuning.trial_config("sc12"), tmp_path, real_val=True)
    assert got[-1].real_parts == ["val"]
