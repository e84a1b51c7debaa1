"""Negative audio (kwslib.data.negatives): real clips read by source, espeak non-keyword speech, streams."""
import csv
import os
import re

import numpy as np
import pytest
import soundfile as sf

from kwslib.data import negatives as N
from kwslib.data import negative_streams
from kwslib.data import vocabulary
from kwslib.data import synthetic as S
from kwslib.data.base import CLASS_INDEX, CLIP_SAMPLES, KEYWORDS, SAMPLE_RATE
from kwslib.errors import AudioError, ConfigError, DatasetError

SR = SAMPLE_RATE


def _bare(token):
    """A phoneme token without stress and pause marks (written here, not taken from the module)."""
    return re.sub(r"[',%=_]", "", token)


@pytest.fixture(scope="module")
def keyword_tokens():
    """{base voice: {bare phoneme token of each keyword}} straight from espeak."""
    return {v: {_bare(p) for p in vocabulary.phonemes(KEYWORDS, v)} for v in S.BASE_VOICES}


@pytest.fixture(scope="module")
def vocab():
    return vocabulary.negative_vocabulary()


@pytest.fixture(scope="module")
def synth():
    return N.synthetic_negative_speech(0.02, seed=3)


# --------------------------------------------------------------------------- vocabulary

def test_vocabulary_has_no_keyword_text_or_sound(vocab, keyword_tokens):
    assert 4000 < len(vocab) <= 5000 and len(set(vocab)) == len(vocab)
    assert not set(vocab) & set(KEYWORDS)
    assert all(re.fullmatch(r"[a-z]+", w) for w in vocab)
    for v in S.BASE_VOICES:
        for w, ph in zip(vocab, vocabulary.phonemes(vocab, v)):
            toks = {_bare(t) for t in ph.split()}
            assert not toks & keyword_tokens[v], (w, v, ph)
            assert _bare(ph.replace(" ", "")) not in keyword_tokens[v], (w, v, ph)


def test_homophones_removed_near_misses_kept(vocab):
    for w in ("know", "write"):  # = no, right
        assert w not in vocab
    for w in ("not", "often", "upper", "going", "stopped", "now", "gone", "top", "yet", "too", "light"):
        assert w in vocab, w
    removed = vocabulary.removed_words()
    assert removed["know"].startswith("homophone of no") and removed["write"].startswith("homophone of right")
    assert all(removed[k] == "keyword" for k in KEYWORDS)
    kept, gone = vocabulary.filter_words(["rite", "wright", "noh", "hon", "Not", "upper", "don't", "x", "GO"])
    assert kept == ["not", "upper"]
    assert set(gone) == {"rite", "wright", "noh", "hon", "don't", "x", "go"}
    assert "hon" in gone and "gbcwmd" in gone["hon"]  # h-dropping voice: only that voice says "on"


def test_espeak_phonemes_as_expected():
    assert _bare(vocabulary.phonemes("know")) == _bare(vocabulary.phonemes("no")) != _bare(vocabulary.phonemes("not"))
    assert vocabulary.phonemes(["write", "right"]) == [vocabulary.phonemes("right")] * 2


# --------------------------------------------------------------------------- synthetic speech

def test_synthetic_speech_has_no_keyword(synth, keyword_tokens):
    texts = [c.text for c in synth]
    for c in synth:
        words = c.text.split()
        assert 3 <= len(words) <= 12
        assert not set(re.findall(r"[a-z]+", c.text.lower())) & set(KEYWORDS), c.text
        base = c.source.removeprefix("synthetic:").partition("+")[0]
        ph = vocabulary.phonemes(c.text, base)
        assert not {_bare(t) for t in ph.split()} & keyword_tokens[base], (c.text, base, ph)
    assert len(set(texts)) == len(texts)


def test_synthetic_speech_duration_format_sources(synth):
    total = sum(len(c.audio) for c in synth) / SR
    assert 0.02 * 3600 <= total < 0.02 * 3600 + max(c.duration_s for c in synth)
    for c in synth:
        assert c.audio.dtype == np.float32 and c.audio.ndim == 1 and np.isfinite(c.audio).all()
        assert 10 ** (-26.5 / 20) < np.abs(c.audio).max() <= 10 ** (-0.9 / 20)
        assert c.duration_s == pytest.approx(len(c.audio) / SR)
        base, _, variant = c.source.removeprefix("synthetic:").partition("+")
        assert c.source.startswith("synthetic:") and base in S.BASE_VOICES and variant in S.VARIANTS
    assert len({c.source for c in synth}) > 5
    assert len({c.file for c in synth}) == len(synth)


def test_synthetic_speech_deterministic(synth):
    again = N.synthetic_negative_speech(0.02, seed=3)
    assert [c.text for c in again] == [c.text for c in synth]
    assert [c.source for c in again] == [c.source for c in synth]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(again, synth))
    other = N.synthetic_negative_speech(0.002, seed=4)
    assert other[0].text != synth[0].text


def test_synthetic_speech_options():
    clips = N.synthetic_negative_speech(0.001, seed=1, voices=["en-us+m3"], words_per_utterance=(2, 2),
                                        vocabulary=["water", "table", "orange"])
    assert {c.source for c in clips} == {"synthetic:en-us+m3"}
    assert all(len(c.text.split()) == 2 and set(c.text.split()) <= {"water", "table", "orange"} for c in clips)


@pytest.mark.parametrize("kwargs, match", [
    (dict(hours=-1.0), "hours"), (dict(hours=0), "hours"), (dict(hours=float("nan")), "hours"),
    (dict(hours=0.01, words_per_utterance=(5, 2)), "words_per_utterance"),
    (dict(hours=0.01, vocabulary=["water", "Stop"]), "keyword"),
    (dict(hours=0.01, voices=0), "voices"),
])
def test_synthetic_speech_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        N.synthetic_negative_speech(**kwargs)


def test_bad_voice_named():
    with pytest.raises(ConfigError, match="nosuchvariant"):
        N.synthetic_negative_speech(0.001, voices=["en-us+nosuchvariant"], vocabulary=["water"])


# --------------------------------------------------------------------------- real clips (fake folder)

FAKE = {"alpha-en": [1.0, 1.5, 0.5], "beta-en-us": [2.0], "gamma": [0.8, 0.8], "delta": [3.0, 0.3]}


def _write_folder(root, rate=SR, channels=1, bad_file=None):
    rng = np.random.default_rng(0)
    rows, audio = [], {}
    for src, durs in FAKE.items():
        for k, d in enumerate(durs):
            rel = f"speech/{src}__clip{k}.wav"
            x = (0.1 * rng.standard_normal(int(d * SR))).astype(np.float32)
            audio[rel] = x
            (root / "speech").mkdir(parents=True, exist_ok=True)
            r, ch = (rate, channels) if rel == bad_file or bad_file is None else (SR, 1)
            sf.write(root / rel, np.tile(x[:, None], (1, ch)) if ch > 1 else x, r, subtype="PCM_16")
            rows.append(dict(file=rel, kind="speech", duration_s=d, text=f"{src} {k}"))
    (root / "noises").mkdir(exist_ok=True)
    sf.write(root / "noises/room__n0.wav", np.zeros(SR // 2, np.float32), SR, subtype="PCM_16")
    rows.insert(2, dict(file="noises/room__n0.wav", kind="noise", duration_s=0.5, text="room tone"))
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["file", "kind", "duration_s", "text"])
        w.writeheader()
        w.writerows(rows)
    return rows, audio


def test_load_fake_folder(tmp_path, monkeypatch):
    rows, audio = _write_folder(tmp_path)
    clips = N.load_real_negatives(tmp_path)
    speech_rows = [r for r in rows if r["kind"] == "speech"]
    assert [c.file for c in clips] == [r["file"] for r in speech_rows]  # manifest order
    assert [c.source for c in clips] == [r["file"].split("/")[1].split("__")[0] for r in speech_rows]
    assert [c.text for c in clips] == [r["text"] for r in speech_rows]
    for c in clips:
        assert c.audio.dtype == np.float32 and c.duration_s == pytest.approx(len(audio[c.file]) / SR)
        np.testing.assert_allclose(c.audio, audio[c.file], atol=1 / 32768)
    noise = N.load_real_negatives(tmp_path, kind="noise")
    assert [(c.file, c.source, c.text) for c in noise] == [("noises/room__n0.wav", "room", "room tone")]
    monkeypatch.setenv("KWS_TEST_NEG_ROOT", str(tmp_path))
    assert [c.file for c in N.load_real_negatives(env_var="KWS_TEST_NEG_ROOT")] == [c.file for c in clips]


def test_split_by_source(tmp_path):
    _write_folder(tmp_path)
    clips = N.load_real_negatives(tmp_path)
    total = sum(len(c.audio) for c in clips)
    seen_tests = set()
    for seed in range(8):
        for frac in (0.2, 0.5, 0.6):  # any 3 sources hold >= 0.66: never all in test
            train, test = N.split_by_source(clips, test_fraction=frac, seed=seed)
            assert not {c.source for c in train} & {c.source for c in test}
            assert sorted(c.file for c in train + test) == sorted(c.file for c in clips)
            assert train and test
            assert sum(len(c.audio) for c in test) >= frac * total
            # order kept inside each part
            assert [c.file for c in test] == [c.file for c in clips if c.source in {t.source for t in test}]
            again = N.split_by_source(clips, test_fraction=frac, seed=seed)
            assert [c.file for c in again[1]] == [c.file for c in test]
            seen_tests.add(frozenset(c.source for c in test))
    assert len(seen_tests) > 2  # the seed matters
    train, test = N.split_by_source(clips, test_sources=["gamma", "beta-en-us"])
    assert {c.source for c in test} == {"gamma", "beta-en-us"}
    assert {c.source for c in train} == {"alpha-en", "delta"}
    with pytest.raises(ConfigError, match="nosuch"):
        N.split_by_source(clips, test_sources=["nosuch"])
    with pytest.raises(ConfigError, match="test_fraction"):
        N.split_by_source(clips, test_fraction=1.0)
    with pytest.raises(ConfigError, match="every source in test"):
        N.split_by_source(clips, test_fraction=0.95)
    with pytest.raises(ConfigError, match="at least 2 sources"):
        N.split_by_source([c for c in clips if c.source == "gamma"])


def test_missing_root_names_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv("KWS_REAL_NEGATIVES_ROOT", raising=False)
    with pytest.raises(DatasetError, match="KWS_REAL_NEGATIVES_ROOT"):
        N.load_real_negatives()
    with pytest.raises(DatasetError, match=r"(?s)nothere.*KWS_REAL_NEGATIVES_ROOT"):
        N.load_real_negatives(tmp_path / "nothere")
    monkeypatch.setenv("KWS_REAL_NEGATIVES_ROOT", str(tmp_path / "gone"))
    with pytest.raises(DatasetError, match=r"(?s)gone.*KWS_REAL_NEGATIVES_ROOT"):
        N.load_real_negatives()
    with pytest.raises(DatasetError, match=r"(?s)manifest\.csv.*KWS_REAL_NEGATIVES_ROOT"):
        N.load_real_negatives(tmp_path)  # exists, but no manifest
    with pytest.raises(ConfigError, match="kind"):
        N.load_real_negatives(tmp_path, kind="music")


@pytest.mark.parametrize("rate, channels, match", [(8000, 1, "8000 Hz"), (SR, 2, "2 channels")])
def test_bad_wav_named(tmp_path, rate, channels, match):
    bad = "speech/gamma__clip1.wav"
    _write_folder(tmp_path, rate=rate, channels=channels, bad_file=bad)
    with pytest.raises(AudioError, match=rf"(?s)gamma__clip1\.wav.*{match}"):
        N.load_real_negatives(tmp_path)


def test_missing_listed_file_named(tmp_path):
    _write_folder(tmp_path)
    os.remove(tmp_path / "speech/delta__clip1.wav")
    with pytest.raises(DatasetError, match="delta__clip1.wav"):
        N.load_real_negatives(tmp_path)


def test_real_folder():
    root = os.environ.get("KWS_REAL_NEGATIVES_ROOT")
    if not root or not os.path.isdir(root):
        pytest.skip("real negatives not available (set KWS_REAL_NEGATIVES_ROOT)")
    clips = N.load_real_negatives()
    with open(os.path.join(root, "manifest.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "speech"]
    assert [c.file for c in clips] == [r["file"] for r in rows]
    for c, r in zip(clips, rows):
        assert abs(c.duration_s - float(r["duration_s"])) < 0.01, c.file
    train, test = N.split_by_source(clips, test_fraction=0.5, seed=0)
    assert not {c.source for c in train} & {c.source for c in test}
    assert len(train) + len(test) == len(clips) and len({c.source for c in clips}) >= 2
    assert sum(c.duration_s for c in test) >= 0.5 * sum(c.duration_s for c in clips)
    st = negative_streams.build_negative_stream(test, seed=0)
    assert st.hours_by_unit().sum() == pytest.approx(st.hours)
    noise = N.load_real_negatives(kind="noise")
    assert noise and negative_streams.noise_stream(noise).hours == pytest.approx(sum(c.duration_s for c in noise) / 3600)


# --------------------------------------------------------------------------- streams

def _fake_clips(n=25, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = (0.5 * rng.uniform(-1, 1, int(rng.integers(SR // 4, 3 * SR)))).astype(np.float32)
        out.append(N.NegativeClip(x, f"src{i % 4}", f"speech/src{i % 4}__c{i}.wav", len(x) / SR, f"t{i}"))
    return out


def _check_tiling(st):
    assert st.units[0][0] == 0 and st.units[-1][1] == len(st.audio)
    assert all(a[1] == b[0] for a, b in zip(st.units, st.units[1:]))
    assert all(s < e for s, e, _, _ in st.units)
    assert st.hours_by_unit().sum() == pytest.approx(st.hours, rel=1e-12)
    assert sum(st.hours_by_source().values()) == pytest.approx(st.hours, rel=1e-12)


@pytest.mark.parametrize("with_noise", [False, True])
def test_negative_stream_units(with_noise):
    clips = _fake_clips()
    noise = [np.random.default_rng(5).uniform(-1, 1, 2 * SR).astype(np.float32)] if with_noise else None
    st = negative_streams.build_negative_stream(clips, noise=noise, gap_s=(0.2, 1.0), seed=7, source="synthetic_speech")
    assert st.source == "synthetic_speech" and st.audio.dtype == np.float32
    assert len(st.units) == len(clips)
    _check_tiling(st)
    by_file = {c.file: c for c in clips}
    assert sorted(u[2] for u in st.units) == sorted(by_file)
    assert [u[2] for u in st.units] != [c.file for c in clips]  # shuffled
    for s, e, uid, src in st.units:
        c = by_file[uid]
        assert src == c.source
        assert np.array_equal(st.audio[e - len(c.audio):e], c.audio)  # clip unchanged at the unit's end
        gap = e - len(c.audio) - s
        assert int(0.2 * SR) <= gap <= int(1.0 * SR)
        assert 0 < np.abs(st.audio[s:s + gap]).max() < 0.5  # noise, quieter than the clips
    again = negative_streams.build_negative_stream(clips, noise=noise, seed=7, source="synthetic_speech")
    assert np.array_equal(again.audio, st.audio) and again.units == st.units
    assert st.hours_by_source().keys() == {"src0", "src1", "src2", "src3"}


def test_noise_stream_units():
    recs = [np.ones(25 * SR, np.float32), 2 * np.ones(7 * SR, np.float32), 3 * np.ones(10 * SR, np.float32)]
    st = negative_streams.noise_stream(recs, unit_s=10.0)
    assert [(e - s) / SR for s, e, _, _ in st.units] == [10, 10, 5, 7, 10]
    assert [u[2] for u in st.units] == ["rec0#0", "rec0#1", "rec0#2", "rec1#0", "rec2#0"]
    assert {u[3] for u in st.units} == {"noise"}
    _check_tiling(st)
    for (s, e, uid, _), val in zip(st.units, [1, 1, 1, 2, 3]):
        assert np.all(st.audio[s:e] == val)
    clip = N.NegativeClip(np.zeros(3 * SR, np.float32), "room", "noises/room__a.wav", 3.0)
    st2 = negative_streams.noise_stream([clip], unit_s=2.0, source="real_noise")
    assert st2.units == [(0, 2 * SR, "noises/room__a.wav#0", "room"), (2 * SR, 3 * SR, "noises/room__a.wav#1", "room")]
    with pytest.raises(ConfigError, match="unit_s"):
        negative_streams.noise_stream(recs, unit_s=0)
    with pytest.raises(ConfigError, match="no noise"):
        negative_streams.noise_stream([])


@pytest.mark.parametrize("step, window", [(160, 16000), (320, 480), (1000, 1), (7, 3)])
def test_unit_of_step_brute_force(step, window):
    st = negative_streams.build_negative_stream(_fake_clips(12, seed=2), seed=1)
    n_steps = (len(st.audio) - window) // step + 1
    got = negative_streams.unit_of_step(st, n_steps, step, window)
    want = []
    for t in range(n_steps):
        e = t * step + window
        want.append(next(k for k, (s, end, _, _) in enumerate(st.units) if s <= e - 1 < end))
    assert got.dtype.kind == "i" and got.tolist() == want
    assert len(set(want)) > 1
    with pytest.raises(ConfigError, match="past the stream"):
        negative_streams.unit_of_step(st, n_steps + 1, step, window)
    assert negative_streams.unit_of_step(st, 0, step, window).shape == (0,)


def test_stream_bad_input():
    clips = _fake_clips(3)
    with pytest.raises(ConfigError, match="no clips"):
        negative_streams.build_negative_stream([])
    with pytest.raises(ConfigError, match="gap_s"):
        negative_streams.build_negative_stream(clips, gap_s=(1.0, 0.2))
    stereo = N.NegativeClip(np.zeros((100, 2), np.float32), "s", "speech/s__x.wav", 0.0)
    with pytest.raises(AudioError, match=r"s__x\.wav.*mono"):
        negative_streams.build_negative_stream(clips + [stereo])
    with pytest.raises(ConfigError, match="step_samples"):
        negative_streams.unit_of_step(negative_streams.build_negative_stream(clips), 3, 0, 10)


def test_vocabulary_halves_are_disjoint_and_training_clips_are_unknown():
    from kwslib.data.base import CLASS_INDEX, CLIP_SAMPLES

    train, test = vocabulary.vocabulary_part("train"), vocabulary.vocabulary_part("test")
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(vocabulary.negative_vocabulary())
    assert vocabulary.vocabulary_part("train") == train  # seeded
    with pytest.raises(ValueError, match="part must be one of"):
        vocabulary.vocabulary_part("val")
    clips = N.unknown_training_clips(0.005, seed=3, vocabulary=train)
    assert len(clips) >= 0.005 * 3600 * 0.8 and clips.audio.shape[1] == CLIP_SAMPLES
    assert set(clips.labels.tolist()) == {CLASS_INDEX["_unknown_"]}
    assert all(s.startswith("negspeech:") for s in clips.speakers)
    assert np.isfinite(clips.audio).all() and np.abs(clips.audio).max() > 0.01
    # the pieces are the utterances' samples, in order
    utt = N.synthetic_negative_speech(0.005, seed=3, vocabulary=train)
    first = np.asarray(utt[0].audio, np.float32)
    if len(first) >= CLIP_SAMPLES:
        np.testing.assert_array_equal(clips.audio[0], first[:CLIP_SAMPLES])


def test_rejection_training_clips_join_the_train_split_only():
    from kwslib.data import DataConfig, build_corpus

    tiny = {"n_voices": 6, "clips_per_class_per_voice": 1, "noise_seconds": 30.0}
    plain = build_corpus(DataConfig(source="synthetic", synthetic=tiny))
    more = build_corpus(DataConfig(source="synthetic", synthetic=tiny, unknown_speech_hours=0.002))
    n = more.notes["unknown_speech_train_clips"]
    assert n > 0 and len(more.train) == len(plain.train) + n
    assert len(more.val) == len(plain.val) and len(more.test) == len(plain.test)
    extra = more.train.subset(np.arange(len(plain.train), len(more.train)))
    assert all(s.startswith("negspeech:") for s in extra.speakers)
    assert not set(extra.speakers) & set(more.test.speakers)
    with pytest.raises(ConfigError, match="unknown_speech_hours"):
        DataConfig(unknown_speech_hours=-1.0)


def test_real_negative_parts_keep_sources_apart(tmp_path):
    _write_folder(tmp_path)
    clips = N.load_real_negatives(tmp_path)
    for seed in range(6):
        try:
            parts = N.real_negative_parts(clips, seed=seed)
        except ConfigError as exc:  # 4 fake sources: a seed may leave a single source after the test part
            assert "at least 2 sources" in str(exc)
            continue
        assert set(parts) == set(N.REAL_PARTS)
        src = {k: {c.source for c in v} for k, v in parts.items()}
        assert all(src[k] for k in N.REAL_PARTS)  # no empty part
        assert not (src["train"] & src["val"] or src["train"] & src["test"] or src["val"] & src["test"])
        assert sorted(c.file for v in parts.values() for c in v) == sorted(c.file for c in clips)
        total = sum(c.duration_s for c in clips)
        assert sum(c.duration_s for c in parts["test"]) >= 0.5 * total
        # the same parts from the folder, in manifest order
        for part in N.REAL_PARTS:
            got = N.real_part_clips([part], tmp_path, seed=seed)
            assert [c.file for c in got] == [c.file for c in clips if c.source in src[part]]
        both = N.real_part_clips(["train", "val"], tmp_path, seed=seed)
        assert [c.file for c in both] == [c.file for c in clips if c.source in src["train"] | src["val"]]
        # cut into 1-s _unknown_ clips whose speaker is the source folder
        cut = N.real_unknown_training_clips(["train"], tmp_path, seed=seed)
        assert len(cut) and set(cut.speakers) == {f"realneg:{s}" for s in src["train"]}
        assert set(cut.labels.tolist()) == {CLASS_INDEX["_unknown_"]} and cut.audio.shape[1] == CLIP_SAMPLES
        break
    else:
        pytest.fail("no seed gave three parts")
    with pytest.raises(ConfigError, match="unknown part"):
        N.real_part_clips(["dev"], tmp_path)


def test_training_on_real_negatives_refuses_to_test_on_them(tmp_path, monkeypatch):
    from kwslib.data import DataConfig
    from kwslib.evaluation.evaluate import NegativesConfig
    from kwslib.study.experiment import experiment_config

    with pytest.raises(ConfigError, match="unknown_real_parts"):
        DataConfig(unknown_real_parts=["test"])
    with pytest.raises(ConfigError, match="real_parts"):
        NegativesConfig(real_speech=True, real_parts=["holdout"])
    with pytest.raises(ConfigError, match=r"set negatives.real_parts: \[test\]"):
        experiment_config(data={"unknown_real_parts": ["train"]}, negatives={"real_speech": True})
    with pytest.raises(ConfigError, match=r"\['val'\]"):
        experiment_config(data={"unknown_real_parts": ["train", "val"]},
                          negatives={"real_speech": True, "real_parts": ["val", "test"]})
    cfg = experiment_config(data={"unknown_real_parts": ["train", "val"]},
                            negatives={"real_speech": True, "real_parts": ["test"]})
    assert cfg.negatives.real_parts == ["test"]


def test_real_rejection_clips_join_training_and_the_stream_reads_the_test_part(tmp_path):
    from kwslib.data import DataConfig, build_corpus
    from kwslib.evaluation.evaluate import NegativesConfig, negative_streams

    _write_folder(tmp_path)
    clips = N.load_real_negatives(tmp_path)
    parts = N.real_negative_parts(clips, seed=0)
    tiny = {"n_voices": 6, "clips_per_class_per_voice": 1, "noise_seconds": 30.0}
    plain = build_corpus(DataConfig(source="synthetic", synthetic=tiny))
    more = build_corpus(DataConfig(source="synthetic", synthetic=tiny, unknown_real_parts=["train"],
                                   real_root=str(tmp_path)))
    n = more.notes["unknown_real_train_clips"]
    assert n == len(N.one_second_clips(parts["train"], lambda c: c.source)) and len(more.train) == len(plain.train) + n
    assert len(more.val) == len(plain.val) and len(more.test) == len(plain.test)
    streams = negative_streams(plain, NegativesConfig(real_speech=True, real_root=str(tmp_path), real_parts=["test"],
                                                      synthetic_hours=0.0, noise=False))
    real = [s for s in streams if s.source == "real_speech"][0]
    # one unit per clip of the test part (its gap and the clip), none of the other parts
    assert sorted(u[2] for u in real.units) == sorted(c.file for c in parts["test"])
    assert {u[3] for u in real.units} == {c.source for c in parts["test"]}
    assert real.hours * 3600 >= sum(c.duration_s for c in parts["test"])
