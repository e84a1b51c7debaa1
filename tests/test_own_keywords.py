"""Your own keywords (issue 25): a keyword list is data, through both QAT stages to the C detector."""
import os

import numpy as np
import pytest

from kwslib.data import DataConfig, build_corpus
from kwslib.data.base import CLASSES, check_keywords, class_names, keyword_indices
from kwslib.deploy import export
from kwslib.deploy.ckernels import availability
from kwslib.deploy.pipeline import CPipeline, NumpyPipeline
from kwslib.errors import ConfigError
from kwslib.evaluation import evaluate
from kwslib.quant.qat import Stage1Config
from kwslib.quant.stage2 import Stage2Config
from kwslib.study import experiment

C_OK = availability()[0]
TWENTY = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "marvin", "sheila", "happy", "house", "bird", "tree", "forward", "backward", "follow", "learn"]


def test_class_names_follow_the_keyword_list():
    assert class_names() == CLASSES
    assert class_names(["Marvin"]) == ["_silence_", "_unknown_", "marvin"]
    assert class_names(["hey  jarvis", "stop"]) == ["_silence_", "_unknown_", "hey jarvis", "stop"]
    assert keyword_indices(3) == [2] and keyword_indices(12) == list(range(2, 12))
    with pytest.raises(ValueError):
        keyword_indices(2)


@pytest.mark.parametrize("bad, message", [
    ([], "non-empty list"), ("marvin", "non-empty list"), (["yes", "Yes"], "listed twice"),
    (["_silence_"], "reserved"), (["_unknown_", "go"], "reserved"), (["no!"], "characters"), ([""], "not a word"),
    ([3], "not a word")])
def test_bad_keyword_lists_are_refused_with_one_clear_line(bad, message):
    with pytest.raises(ConfigError, match=message):
        check_keywords(bad)
    with pytest.raises(ConfigError, match="data.keywords"):
        DataConfig(keywords=bad)


def test_keywords_need_a_source_that_can_speak_them():
    DataConfig(source="speech_commands_test_set", keywords=["marvin", "yes"])  # words of the archive: fine
    with pytest.raises(ConfigError, match=r"no source for \[.hey jarvis.\]"):
        DataConfig(source="speech_commands_test_set", keywords=["hey jarvis"])
    with pytest.raises(ConfigError, match="hub"):
        DataConfig(source="hub", keywords=["marvin"])


@pytest.mark.skipif(not os.environ.get("KWS_SC12_ROOT"), reason="needs the Speech Commands test-set archive")
def test_archive_words_become_keywords_and_the_split_stays():
    """marvin (11 clips in the archive's _unknown_ folder) as the one keyword: its clips leave _unknown_,
    the keyword folders of the 12-class task join it, and every clip keeps its split."""
    from kwslib.data.speech_commands import load_test_set

    ref = load_test_set(fold=0)
    own = load_test_set(fold=0, keywords=["marvin"])
    assert own.classes == ["_silence_", "_unknown_", "marvin"]
    for name in ("train", "val", "test"):
        a, b = ref.splits()[name], own.splits()[name]
        assert list(a.origins) == list(b.origins)  # the same clips in the same splits
        is_marvin = np.array(["/marvin_" in o for o in b.origins])
        assert np.all(b.labels[is_marvin] == 2) and np.all(b.labels[~is_marvin & (a.labels != 0)] == 1)
        assert np.array_equal(b.labels == 0, a.labels == 0)  # _silence_ stays _silence_
    assert sum(int((s.labels == 2).sum()) for s in own.splits().values()) == 11


def test_the_default_corpus_is_unchanged_by_an_explicit_keyword_list_of_the_same_words():
    """Speech Commands' 10 keywords given explicitly draw the very same corpus as the default (no list)."""
    from kwslib.data.base import KEYWORDS

    cfg = {"n_voices": 4, "clips_per_class_per_voice": 1}
    a = build_corpus(DataConfig(synthetic=cfg))
    b = build_corpus(DataConfig(synthetic=cfg, keywords=list(KEYWORDS)))
    assert a.classes == b.classes == CLASSES
    assert np.array_equal(a.train.audio, b.train.audio) and np.array_equal(a.train.labels, b.train.labels)


def _chain(keywords, tmp_path):
    cfg = experiment.experiment_config(
        data={"source": "synthetic", "keywords": keywords,
              "synthetic": {"n_voices": 6, "clips_per_class_per_voice": 1}},
        train={"epochs": 1}, eval={"n_boot": 20, "min_events": 2}, negatives={"synthetic_hours": 0.01})
    assert cfg.model.n_classes == len(keywords) + 2  # the output layer follows the class list
    p = experiment.paths(tmp_path / "results")
    rep = next(experiment.replicate_runs(cfg, p))
    assert rep.corpus.classes == class_names(keywords) and rep.data.classes == rep.corpus.classes
    op = evaluate.operating_point(rep.data, cfg.eval)
    _, _, _, _, frec = experiment.float_replicate(rep, op)
    assert frec["labels"].max() < len(keywords) + 2
    experiment.stage1_replicate(rep, op, [("tanh", 4, True)], Stage1Config(epochs=1))
    out = experiment.stage2_replicate(rep, op, [4], Stage2Config(epochs=1))
    im = out[4]["int_model"]
    assert im.class_names == class_names(keywords)
    return rep, im


@pytest.mark.parametrize("keywords", [["marvin"], ["marvin", "sheila"], TWENTY], ids=["1", "2", "20"])
def test_whole_chain_with_1_2_and_20_keywords(keywords, tmp_path):
    rep, im = _chain(keywords, tmp_path)
    blob = export.to_bytes(im)
    art = export.from_bytes(blob)
    assert art.model.class_names == class_names(keywords)  # class names survive export and load
    # the numpy specification and the C detector agree on a stream of the test clips (threshold low: detections)
    pcm = np.clip(np.concatenate(list(rep.corpus.test.audio[:12])) * 32767, -32768, 32767).astype(np.int16)
    def run(pipe):
        out = []
        for i in range(0, len(pcm), 1600):
            out += pipe.push(pcm[i:i + 1600])
        return out
    ref = run(NumpyPipeline(art, 0.02, 3, 25))
    assert ref and all(name in keywords for _, name, _ in ref)  # detections, and only of the profile's keywords
    if C_OK:
        assert run(CPipeline(art, 0.02, 3, 25)) == ref


def _write(path, audio, rate=16000, fmt=None):
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, format=fmt)


def test_recordings_of_any_common_format_become_train_clips(tmp_path):
    from kwslib.data.recordings import load_recordings, loudest_second

    rng = np.random.default_rng(0)
    burst = np.zeros(48000, np.float32)
    burst[30000:34000] = 0.5 * np.sin(np.arange(4000) / 3)  # the "word" at 1.9-2.1 s of a 3-s file
    _write(tmp_path / "rec" / "marvin" / "ann_1.wav", burst)
    _write(tmp_path / "rec" / "marvin" / "bob_1.flac", (0.1 * rng.standard_normal((44100, 2))).astype(np.float32),
           rate=44100)  # stereo, 44.1 kHz: averaged and converted
    _write(tmp_path / "rec" / "hey_jarvis" / "take3.ogg", (0.1 * rng.standard_normal(8000)).astype(np.float32),
           fmt="OGG")
    (tmp_path / "rec" / "marvin" / "notes.txt").write_text("not audio")
    clips = load_recordings(tmp_path / "rec", ["marvin", "hey jarvis"])
    assert clips.audio.shape == (3, 16000) and sorted(clips.labels.tolist()) == [2, 2, 3]
    assert sorted(clips.speakers.tolist()) == ["rec:ann", "rec:bob", "rec:hey_jarvis/take3"]
    i = list(clips.origins).index("marvin/ann_1.wav")
    assert np.abs(clips.audio[i]).max() == pytest.approx(0.5, abs=1e-3)  # the loudest second holds the word
    assert np.array_equal(loudest_second(np.ones(100, np.float32))[7950:8050], np.ones(100, np.float32))


@pytest.mark.parametrize("case", ["no folder", "empty folder", "unreadable", "silent"])
def test_bad_recordings_give_one_clear_line(tmp_path, case):
    from kwslib.data.recordings import load_recordings
    from kwslib.errors import DatasetError

    root = tmp_path / "rec"
    root.mkdir()
    if case == "empty folder":
        (root / "marvin").mkdir()
        (root / "marvin" / "readme.txt").write_text("x")
    elif case == "unreadable":
        (root / "marvin").mkdir()
        (root / "marvin" / "a.wav").write_bytes(b"RIFF....WAVEjunk")
    elif case == "silent":
        _write(root / "marvin" / "a.wav", np.zeros(16000, np.float32))
    message = {"no folder": "no folder of any keyword", "empty folder": "holds no audio file",
               "unreadable": "a.wav", "silent": "holds no sound"}[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(DatasetError, match=message):
        load_recordings(root, ["marvin"])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_a_keyword_with_no_source_is_refused(tmp_path):
    from kwslib.data.recordings import check_sources

    _write(tmp_path / "rec" / "marvin" / "a.wav", 0.1 * np.ones(8000, np.float32))
    check_sources(["marvin", "sheila"], {"sheila"}, tmp_path / "rec")  # one from each: fine
    with pytest.raises(ConfigError, match=r"no source for \['hey jarvis'\]"):
        check_sources(["marvin", "hey jarvis"], set(), tmp_path / "rec")
    with pytest.raises(ConfigError, match="does not exist"):
        DataConfig(recordings=str(tmp_path / "nowhere"))


def test_new_profile_writes_params_the_notebooks_read(tmp_path, monkeypatch):
    import yaml

    from kwslib import cli
    from kwslib.study import newprofile

    _write(tmp_path / "rec" / "marvin" / "me_1.wav", 0.2 * np.sin(np.arange(12000) / 5).astype(np.float32))
    out = newprofile.new_profile("mine", ["Marvin", "hey jarvis"], "synthetic", str(tmp_path / "rec"),
                                 params_dir=tmp_path / "params")
    assert sorted(p.name for p in out.iterdir()) == sorted(("shared.yaml",) + newprofile.NOTEBOOK_PARAMS)
    shared = yaml.safe_load((out / "shared.yaml").read_text())
    assert shared["data"]["keywords"] == ["marvin", "hey jarvis"] and shared["data"]["source"] == "synthetic"
    assert shared["data"]["recordings"] == str((tmp_path / "rec").resolve())
    nb = {**yaml.safe_load((out / "01_float.yaml").read_text()), **shared}
    cfg = experiment.experiment_config(**{k: nb.get(k) for k in ("data", "features", "model", "train", "eval",
                                                                  "negatives", "replicates")})
    assert cfg.model.n_classes == 4 and cfg.data.keywords == ["marvin", "hey jarvis"]
    # the command line: the same files; a second time it refuses (nothing overwritten), with one line
    monkeypatch.setattr(newprofile, "PROFILES_DIR", tmp_path / "cli")
    assert cli.main(["new-profile", "mine", "--keywords", "Marvin", "hey jarvis"]) == 0
    assert (tmp_path / "cli" / "mine" / "03_stage2.yaml").read_text() == (out / "03_stage2.yaml").read_text()
    before = (tmp_path / "cli" / "mine" / "shared.yaml").read_text()
    assert cli.main(["new-profile", "mine", "--keywords", "sheila"]) == 2
    assert (tmp_path / "cli" / "mine" / "shared.yaml").read_text() == before


@pytest.mark.parametrize("args, message", [
    ((["yes", "yes"],), "listed twice"), (([],), "non-empty"), ((["_unknown_"],), "reserved"),
    ((["hey jarvis"], "sc"), "no source|KWS_SC12_ROOT"), ((["marvin"], "web"), "--from")])
def test_new_profile_bad_input_writes_nothing(tmp_path, monkeypatch, args, message):
    from kwslib.study import newprofile

    monkeypatch.setenv("KWS_SC12_ROOT", str(tmp_path))
    (tmp_path / "params").mkdir()
    with pytest.raises(ConfigError, match=message):
        newprofile.new_profile("mine", *args, params_dir=tmp_path / "params")
    assert list((tmp_path / "params").iterdir()) == []


def test_new_profile_refuses_an_existing_profile_and_bad_recordings(tmp_path):
    from kwslib.errors import DatasetError
    from kwslib.study import newprofile

    (tmp_path / "params" / "mine").mkdir(parents=True)
    (tmp_path / "params" / "mine" / "shared.yaml").write_text("keep: me\n")
    with pytest.raises(ConfigError, match="exists already"):
        newprofile.new_profile("mine", ["marvin"], params_dir=tmp_path / "params")
    assert (tmp_path / "params" / "mine" / "shared.yaml").read_text() == "keep: me\n"
    (tmp_path / "rec" / "marvin").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no audio file"):
        newprofile.new_profile("other", ["marvin"], recordings=str(tmp_path / "rec"), params_dir=tmp_path / "params")
    with pytest.raises(ConfigError, match="name"):
        newprofile.new_profile("My Profile", ["marvin"], params_dir=tmp_path / "params")
    assert sorted(p.name for p in (tmp_path / "params").iterdir()) == ["mine"]


def test_cap_keyword_clips_keeps_the_first_speakers_clips():
    from kwslib.data import cap_keyword_clips
    from kwslib.data.base import ClipSet

    labels = [2, 2, 2, 3, 3, 1, 1, 0]
    speakers = ["a", "b", "c", "a", "c", "a", "b", "s"]
    clips = ClipSet(np.zeros((8, 16000), np.float32), labels, speakers, [f"c{i}" for i in range(8)])
    out, kept = cap_keyword_clips(clips, 1, seed=0, n_classes=4)
    assert kept == {2: 1, 3: 1} and len(out) == 5  # one per keyword; _unknown_ and _silence_ untouched
    assert sorted(out.labels.tolist()) == [0, 1, 1, 2, 3]
    # the speaker order is seeded: the kept keyword clips come from the earliest speakers of that order
    none, kept0 = cap_keyword_clips(clips, 0, seed=0, n_classes=4)
    assert kept0 == {2: 0, 3: 0} and sorted(none.labels.tolist()) == [0, 1, 1]
    same, _ = cap_keyword_clips(clips, 5, seed=3, n_classes=4)
    assert list(same.origins) == list(clips.origins)
    with pytest.raises(ConfigError, match="real_keyword_clips"):
        DataConfig(source="speech_commands_test_set", real_keyword_clips=-1)
    with pytest.raises(ConfigError, match="synthetic"):
        DataConfig(real_keyword_clips=5)


def test_the_digits_profile_and_notebook_7_params():
    from kwslib.config import PROFILES_DIR, load_yaml
    from kwslib.study import reproduce

    shared = load_yaml(PROFILES_DIR / "digits" / "shared.yaml")
    cfg = experiment.experiment_config(**{k: shared[k] for k in ("data", "features", "model", "train", "eval",
                                                                  "negatives", "replicates")})
    assert cfg.data.keywords[0] == "zero" and len(cfg.data.keywords) == 10 and cfg.model.n_classes == 12
    assert cfg.data.real_keyword_clips == 10 and cfg.data.mix_synthetic_train
    root = PROFILES_DIR.parent
    for nb_stem, params_stem in reproduce.NOTEBOOKS + reproduce.OPTIONAL_NOTEBOOKS:
        reproduce.check_params(root / "notebooks" / f"{nb_stem}.ipynb", PROFILES_DIR / "digits" / f"{params_stem}.yaml")
    v = load_yaml(PROFILES_DIR / "digits" / "07_own_keywords.yaml")
    assert v["reference"] in v["variants"] and len(v["variants"]) == 3
    for overrides in v["variants"].values():  # every variant is a valid data config
        experiment.experiment_config(data={**shared["data"], **overrides})


def test_notebook_7_conclusion_reads_its_summary_part():
    from kwslib.study import conclusions

    s = {"profile": "digits", "own_keywords": {
        "keywords": ["zero", "one"], "operating_point_fdph": 10.0, "reference": "c",
        "variants": {"a": {"keyword_accuracy": {"mean": 0.61, "ci": [0.55, 0.67]}, "frr_at_op": 0.5,
                           "delta_frr": 0.2, "delta_frr_ci": [0.1, 0.3], "verdict": "worse", "replicates": 3},
                     "c": {"keyword_accuracy": {"mean": 0.86, "ci": [0.8, 0.92]}, "frr_at_op": 0.3,
                           "replicates": 3}}}}
    text = conclusions.what_this_run_shows("07_own_keywords", s)
    assert "zero, one" in text and "61.0% [55.0%, 67.0%]" in text and "+20.0 points vs c [+10.0, +30.0] (worse)" in text
    assert "3 replicate(s)" in text and "`c` reads best" in text
    with pytest.raises(ConfigError):
        conclusions.what_this_run_shows("07_own_keywords", {"models": {}})


def test_keyword_accuracy_counts_keyword_clips_only():
    from kwslib.study.own_keywords import keyword_accuracy

    r1 = {"labels": np.array([0, 1, 2, 2, 3, 3]), "correct": np.array([True, False, True, False, True, True])}
    r2 = {"labels": np.array([2, 3]), "correct": np.array([True, True])}
    one = keyword_accuracy([r1])
    assert one["mean"] == 0.75 and one["clips"] == 4 and one["ci"] is None
    two = keyword_accuracy([r1, r2])
    assert two["per_replicate"] == [0.75, 1.0] and two["pooled"] == pytest.approx(5 / 6)
    assert two["ci"] == [0.0, 1.0]  # t(1) interval [-0.71, 2.46], clipped to what an accuracy can be
    rk = [{"labels": np.full(50, 2), "correct": np.arange(50) < k} for k in (40, 41, 42)]
    three = keyword_accuracy(rk)  # 0.80, 0.82, 0.84: mean 0.82 +- t(2) 4.303 * 0.02 / sqrt(3), inside [0, 1]
    assert three["ci"] == pytest.approx([0.82 - 4.3027 * 0.02 / 3 ** 0.5, 0.82 + 4.3027 * 0.02 / 3 ** 0.5], abs=1e-4)
    with pytest.raises(ValueError, match="no keyword clip"):
        keyword_accuracy([{"labels": np.array([0, 1]), "correct": np.array([True, True])}])


def test_compare_sources_pairs_every_variant_with_the_reference(tmp_path):
    """Two variants on tiny synthetic data, 2 replicates: the other variant is paired with the reference on the same
    clips and negative audio (its FD/h at the reference's FRR needs a second reading, kept as a record); a second
    call trains and reads nothing again and gives the same numbers."""
    from kwslib.study import own_keywords

    base = {"data": {"source": "synthetic", "keywords": ["marvin"],
                     "synthetic": {"n_voices": 12, "clips_per_class_per_voice": 2}},
            "features": {}, "model": {}, "train": {"epochs": 2}, "eval": {"n_boot": 200, "min_events": 5},
            "negatives": {"synthetic_hours": 0.05}, "replicates": {"n": 2}}
    variants = {"other": {"synthetic_seed": 5}, "ref": {}}  # the reference listed last, as in params/digits
    p = experiment.paths(tmp_path / "res", tmp_path / "cache")
    seen = []
    res = own_keywords.compare_sources(base, variants, "ref", p, on_model=lambda n, k, r: seen.append((n, k)))
    assert seen == [("ref", 0), ("ref", 1), ("other", 0), ("other", 1)]  # the reference is read first
    ref, other = res["variants"]["ref"]["entry"], res["variants"]["other"]["entry"]
    assert "delta_frr" not in ref and other["replicates"] == 2
    assert other["delta_frr"] == pytest.approx(other["frr_at_op"] - ref["frr_at_op"], abs=1e-9)
    assert "delta_fdph" in other and other["delta_frr_ci"][0] <= other["delta_frr"] <= other["delta_frr_ci"][1]
    for k in (0, 1):
        folder = p.results / "variants" / "other" / ("" if k == 0 else f"replicates/r{k}")
        assert (folder / "records" / "float_paired.npz").is_file()
    again = own_keywords.compare_sources(base, variants, "ref", p)
    assert again["variants"]["other"]["entry"]["delta_frr"] == other["delta_frr"]
    assert again["variants"]["other"]["keyword_accuracy"] == res["variants"]["other"]["keyword_accuracy"]
