"""Every profile's params build valid configs; sc-full loads a fabricated tree in the full layout."""
from pathlib import Path

import pytest

from kwslib.study import reproduce
from kwslib.config import load_yaml
from kwslib.errors import ConfigError
from kwslib.data import load_corpus
from kwslib.study.experiment import experiment_config

from test_speech_commands import make_full

ROOT = Path(reproduce.__file__).resolve().parents[2]  # kwslib/study/reproduce.py -> the repository
PROFILES = sorted(p.name for p in (ROOT / "params").iterdir() if p.is_dir())


def test_the_three_profiles_exist():
    assert {"quick", "sc12", "sc-full"} <= set(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_shared_params_build_an_experiment_config(profile):
    shared = load_yaml(ROOT / "params" / profile / "shared.yaml")
    cfg = experiment_config(**{k: shared.get(k) for k in ("data", "features", "model", "train", "eval")})
    assert cfg.model.input_dim == 960


@pytest.mark.parametrize("profile", PROFILES)
def test_every_notebook_accepts_its_params(profile):
    for nb_stem, params_stem in reproduce.NOTEBOOKS:
        nb = ROOT / "notebooks" / f"{nb_stem}.ipynb"
        path = ROOT / "params" / profile / f"{params_stem}.yaml"
        if nb.exists() and path.exists():
            reproduce.check_params(nb, path)


def test_sc_full_profile_reads_a_fabricated_full_tree(tmp_path, monkeypatch):
    root = make_full(tmp_path / "speech_commands_v0.02")
    monkeypatch.setenv("KWS_SC_FULL_ROOT", str(root))
    shared = load_yaml(ROOT / "params" / "sc-full" / "shared.yaml")
    cfg = experiment_config(data=shared["data"])
    corpus = load_corpus(cfg.data)
    assert corpus.source == "speech_commands_v0.02"
    assert len(corpus.train) and len(corpus.val) and len(corpus.test)
    corpus.check_speaker_disjoint()
    monkeypatch.delenv("KWS_SC_FULL_ROOT")
    with pytest.raises(FileNotFoundError, match="KWS_SC_FULL_ROOT"):
        load_corpus(cfg.data)


RUN_SECTIONS = ("data", "features", "model", "train", "eval", "negatives", "replicates")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_writes_out_the_sections_a_run_depends_on(profile):
    """A section missing from shared.yaml silently takes the notebook's own default, which is the seconds-long
    scratch setting (0.05 h of negative speech): sc-full ran so in its first rehearsal (issue 26)."""
    shared = load_yaml(ROOT / "params" / profile / "shared.yaml")
    assert set(RUN_SECTIONS) <= set(shared), sorted(set(RUN_SECTIONS) - set(shared))
    cfg = experiment_config(**{k: shared[k] for k in RUN_SECTIONS})
    assert cfg.negatives.synthetic_hours >= 1.0 or cfg.negatives.real_speech


def test_sc_full_replicate_config():
    from kwslib.study.replicates import replicate_config

    shared = load_yaml(ROOT / "params" / "sc-full" / "shared.yaml")
    cfg = experiment_config(**{k: shared[k] for k in RUN_SECTIONS})
    rc = replicate_config(cfg, cfg.replicates, 0)
    assert rc.data.source == "speech_commands" and rc.data.fold is None  # the official split, untouched
    assert rc.train.seed == cfg.replicates.seed_list[0]


def test_sc_full_profile_trains_and_reads_on_a_tiny_full_layout_tree(tmp_path):
    """The sc-full profile end to end on a full-archive layout (35 word folders, the official lists,
    _background_noise_): its corpus, its replicate, one float epoch and the evaluation of that model. Only the
    size is cut (epochs, negative hours): the data path, the split and the replicate kind are the profile's."""
    from kwslib.study import experiment

    root = make_full(tmp_path / "speech_commands_v0.02")
    shared = load_yaml(ROOT / "params" / "sc-full" / "shared.yaml")
    sections = {k: dict(shared[k]) for k in RUN_SECTIONS}
    sections["data"]["root"] = str(root)
    sections["train"].update(epochs=1, batch_size=64)
    sections["negatives"].update(synthetic_hours=0.01)
    sections["eval"] = {**sections["eval"], "min_events": 1}
    cfg = experiment_config(**{k: sections[k] for k in RUN_SECTIONS})
    p = experiment.paths(tmp_path / "results", tmp_path / "cache")
    reps = list(experiment.replicate_runs(cfg, p))
    assert len(reps) == 1 and reps[0].corpus.source == "speech_commands_v0.02"
    assert len(reps[0].corpus.test) > 0 and reps[0].data.negative_hours > 0
    model, history, seconds, result, record = experiment.float_replicate(reps[0], 20.0, log=lambda *a: None)
    assert len(history) == 1 and 0.0 <= record["accuracy"] <= 1.0 and (p.models / "float.pt").exists()
