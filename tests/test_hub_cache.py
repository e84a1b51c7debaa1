"""Hub record conversion (on a locally built datasets.Dataset), hub offline errors, Arrow caches."""
from __future__ import annotations

import dataclasses
import io
import socket
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from kwslib.data import cache, hub
from kwslib.data.base import CLASS_INDEX, CLIP_SAMPLES, ClipSet, Corpus
from kwslib.errors import ConfigError, DatasetError, OfflineError


def wav_bytes(n=CLIP_SAMPLES, seed=0, rate=16000) -> bytes:
    buf = io.BytesIO()
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, n)
    sf.write(buf, audio, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


FEATURES = datasets.Features({
    "file": datasets.Value("string"),
    "audio": datasets.Audio(sampling_rate=16000, decode=False),
    "label": datasets.ClassLabel(names=hub.LABELS_V2),
    "is_unknown": datasets.Value("bool"),
    "speaker_id": datasets.Value("string"),
    "utterance_id": datasets.Value("int8"),
})


def hub_dataset(records) -> datasets.Dataset:
    """records: (file, wav bytes, word, speaker or None).

    Built with a plain struct column then cast to Audio: encoding through the
    Audio feature would need torchcodec, which kwslib does not install.
    """
    plain = datasets.Features({**FEATURES, "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}})
    ds = datasets.Dataset.from_dict({
        "file": [r[0] for r in records],
        "audio": [{"path": r[0], "bytes": r[1]} for r in records],
        "label": [hub.LABELS_V2.index(r[2]) for r in records],
        "is_unknown": [r[2] not in CLASS_INDEX for r in records],
        "speaker_id": [r[3] for r in records],
        "utterance_id": [0] * len(records),
    }, features=plain)
    ds = ds.cast(FEATURES)
    assert ds.features == FEATURES
    return ds


RECORDS = [
    ("yes/0a7c2a8d_nohash_0.wav", wav_bytes(seed=1), "yes", "0a7c2a8d"),
    ("backward/0b09edd3_nohash_0.wav", wav_bytes(seed=2), "backward", "0b09edd3"),
    ("go/0c40e715_nohash_1.wav", wav_bytes(n=8000, seed=3), "go", "0c40e715"),
    ("_silence_/27.wav", wav_bytes(seed=4), "_silence_", None),
    ("_background_noise_/running_tap.wav", wav_bytes(n=3 * CLIP_SAMPLES + 500, seed=5), "_silence_", None),
]


def test_label_names_match_hub_schema():
    assert len(hub.LABELS_V2) == 37 and hub.LABELS_V2[:10] == ["yes", "no", "up", "down", "left", "right",
                                                                 "on", "off", "stop", "go"]
    assert hub.LABELS_V2[-2:] == ["_unknown_", "_silence_"]


@pytest.mark.parametrize("decode", [False, True])
def test_records_to_clipset(decode):
    ds = hub_dataset(RECORDS)
    if decode:  # declared as decoding Audio: we must cast it back, never call datasets' decoder
        ds = ds.cast_column("audio", datasets.Audio(sampling_rate=16000))
    clips = hub.records_to_clipset(ds)
    assert len(clips) == 4 + 3
    assert [int(x) for x in clips.labels[:4]] == [CLASS_INDEX[w] for w in ("yes", "_unknown_", "go", "_silence_")]
    assert list(clips.speakers[:4]) == ["0a7c2a8d", "0b09edd3", "0c40e715", "silence_27"]
    expected = sf.read(io.BytesIO(RECORDS[0][1]), dtype="int16")[0] / 32768.0
    np.testing.assert_array_equal(clips.audio[0], expected.astype(np.float32))
    assert clips.audio[2, :4000].max() == 0 and clips.audio[2, 4000:12000].any()  # 0.5 s, centre-padded
    long = sf.read(io.BytesIO(RECORDS[4][1]), dtype="int16")[0] / 32768.0
    assert list(clips.origins[4:]) == [f"_background_noise_/running_tap.wav@{s}" for s in (0, 16000, 32000)]
    assert set(clips.speakers[4:]) == {"silence_running_tap"}
    for k, start in enumerate((0, 16000, 32000)):
        np.testing.assert_array_equal(clips.audio[4 + k], long[start:start + CLIP_SAMPLES].astype(np.float32))


def test_records_bad_audio(recwarn):
    records = RECORDS + [(f"yes/{i:08x}_nohash_0.wav", wav_bytes(seed=10 + i), "yes", f"{i:08x}") for i in range(20)]
    bad = records + [("no/deadbeef_nohash_0.wav", b"RIFFgarbage", "no", "deadbeef")]
    with pytest.warns(UserWarning, match="skipped 1 unreadable clips"):
        assert len(hub.records_to_clipset(hub_dataset(bad))) == 27
    worse = RECORDS + [("no/deadbeef_nohash_0.wav", wav_bytes(rate=8000), "no", "deadbeef")]
    with pytest.raises(DatasetError, match="unreadable"):
        hub.records_to_clipset(hub_dataset(worse))


def test_load_hub_offline_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.time()
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE") as e:
        hub.load_hub("v0.02", cache_dir=tmp_path)
    assert "load_full" in str(e.value) and time.time() - t < 30


def test_load_hub_unreachable(tmp_path, monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setattr(hub, "_hub_endpoint", lambda: f"http://127.0.0.1:{port}")
    with pytest.raises(OfflineError, match=f"127.0.0.1:{port}"):
        hub.load_hub("v0.02", cache_dir=tmp_path)
    assert datasets.config.HF_HUB_OFFLINE is False  # forced offline mode was undone


def test_load_hub_splits_and_noise(monkeypatch):
    train = hub_dataset(RECORDS[:3] + [("_background_noise_/white_noise.wav", wav_bytes(n=5 * CLIP_SAMPLES, seed=9),
                                        "_silence_", None)])
    val = hub_dataset([RECORDS[0], RECORDS[4]])
    test = hub_dataset(RECORDS[:4])
    dsd = datasets.DatasetDict({"train": train, "validation": val, "test": test})
    monkeypatch.setattr(hub, "_load_dataset_dict", lambda config, cache_dir: dsd)
    c = hub.load_hub(silence_fraction=0.5, seed=0)
    assert c.source == "hub" and c.notes["noise_recordings"] == ["running_tap.wav", "white_noise.wav"]
    assert [len(a) for a in c.noise_train] == [round((3 * CLIP_SAMPLES + 500) * 0.8), 4 * CLIP_SAMPLES]
    sil = CLASS_INDEX["_silence_"]
    assert c.train.class_counts()["_silence_"] == 2 and len(c.train) == 5  # round(0.5 * 3) cut from noise
    assert c.val.class_counts()["_silence_"] == 0 + round(0.5 * 1)
    assert len(c.test) == 4 and c.test.class_counts()["_silence_"] == 1  # the 1-s test clip kept as is
    for name, split in (("train", c.train), ("val", c.val)):
        for origin in split.origins[split.labels == sil]:
            rec, start = origin.split("@")
            cut = round({"running_tap.wav": 3 * CLIP_SAMPLES + 500, "white_noise.wav": 5 * CLIP_SAMPLES}[rec] * 0.8)
            assert (int(start) + CLIP_SAMPLES <= cut) if name == "train" else (int(start) >= cut)


# --------------------------------------------------------------------------- cache

def small_corpus(seed=0) -> Corpus:
    rng = np.random.default_rng(seed)

    def clips(n, tag):
        return ClipSet(rng.standard_normal((n, CLIP_SAMPLES)).astype(np.float32) * 0.1, rng.integers(0, 12, n),
                       [f"{tag}{i % 3}" for i in range(n)], [f"{tag}/{i}.wav" for i in range(n)])

    return Corpus("synthetic", clips(5, "tr"), clips(2, "va"), clips(0, "te"),
                  noise_train=[rng.standard_normal(1000).astype(np.float32), rng.standard_normal(70).astype(np.float32)],
                  noise_test=[rng.standard_normal(300).astype(np.float32), np.zeros(0, np.float32)],
                  notes={"seed": seed, "skipped": 0, "fractions": (0.7, 0.1, 0.2)})


def assert_corpus_equal(a: Corpus, b: Corpus):
    assert a.source == b.source
    for name in ("train", "val", "test"):
        x, y = a.splits()[name], b.splits()[name]
        np.testing.assert_array_equal(x.audio, y.audio)
        assert x.audio.dtype == y.audio.dtype == np.float32
        assert list(x.labels) == list(y.labels) and list(x.speakers) == list(y.speakers)
        assert list(x.origins) == list(y.origins)
    for p, q in zip(a.noise_train + a.noise_test, b.noise_train + b.noise_test):
        np.testing.assert_array_equal(p, q)
    assert [len(x) for x in a.noise_train] == [len(x) for x in b.noise_train]
    assert [len(x) for x in a.noise_test] == [len(x) for x in b.noise_test]


def test_config_hash():
    assert cache.config_hash({"a": 1, "b": [1, 2]}) == cache.config_hash({"b": (1, 2), "a": 1})
    assert cache.config_hash({"a": 1}) != cache.config_hash({"a": 2})
    assert len(cache.config_hash({})) == 16
    assert cache.config_hash({"p": Path("/x"), "n": np.float32(0.5)}) == cache.config_hash({"p": "/x", "n": 0.5})

    @dataclasses.dataclass
    class Cfg:
        a: int = 1
        b: str = "x"

    assert cache.config_hash(Cfg()) == cache.config_hash({"a": 1, "b": "x"})
    with pytest.raises(ConfigError):
        cache.config_hash({"f": object()})


def test_save_load_roundtrip(tmp_path):
    corpus = small_corpus()
    cache.save_corpus(corpus, tmp_path / "c")
    back = cache.load_corpus_cache(tmp_path / "c")
    assert_corpus_equal(corpus, back)
    assert back.notes == {"seed": 0, "skipped": 0, "fractions": [0.7, 0.1, 0.2]}
    back.train.audio[0, 0] = 1.0  # writable, independent of the files
    cache.save_corpus(small_corpus(1), tmp_path / "c")  # overwrite in place
    assert_corpus_equal(small_corpus(1), cache.load_corpus_cache(tmp_path / "c"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_cached_hit_and_key_change(tmp_path):
    calls = []

    def builder(seed=0):
        calls.append(seed)
        return small_corpus(seed)

    a = cache.cached(builder, {"seed": 0}, tmp_path)
    b = cache.cached(builder, {"seed": 0}, tmp_path)
    assert calls == [0]
    assert_corpus_equal(a, b)
    c = cache.cached(lambda: builder(1), {"seed": 1}, tmp_path)
    assert calls == [0, 1]
    assert_corpus_equal(c, small_corpus(1))
    assert (tmp_path / cache.config_hash({"seed": 1}) / "key.json").is_file()


def test_damaged_cache(tmp_path):
    calls = []
    key = {"seed": 0}
    cache.cached(lambda: calls.append(1) or small_corpus(), key, tmp_path)
    folder = tmp_path / cache.config_hash(key)
    for f in (folder / "train").glob("*.arrow"):
        f.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="damaged"):
        cache.load_corpus_cache(folder)
    with pytest.raises(DatasetError, match="no corpus cache"):
        cache.load_corpus_cache(tmp_path / "nothing")
    # cached() rebuilds a damaged cache with a warning
    with pytest.warns(UserWarning, match="rebuilding"):
        assert_corpus_equal(cache.cached(lambda: calls.append(1) or small_corpus(), key, tmp_path), small_corpus())
    assert len(calls) == 2
    assert_corpus_equal(cache.load_corpus_cache(folder), small_corpus())


def test_crash_during_save_leaves_no_half_cache(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(cache, "_noise_to_dataset", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.cached(small_corpus, {"k": 1}, tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    cache.save_corpus(small_corpus(0), tmp_path / "c")
    monkeypatch.setattr(cache, "_noise_to_dataset", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.save_corpus(small_corpus(1), tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert_corpus_equal(cache.load_corpus_cache(tmp_path / "c"), small_corpus(0))  # old cache intact


def test_cached_features(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(12, dtype=np.float64).reshape(3, 4) / 7

    a = cache.cached_features("logmel", {"n_mels": 40}, tmp_path, compute)
    b = cache.cached_features("logmel", {"n_mels": 40}, tmp_path, compute)
    assert a.dtype == np.float32 and np.array_equal(a, b) and len(calls) == 1
    cache.cached_features("logmel", {"n_mels": 32}, tmp_path, compute)
    assert len(calls) == 2
    path = tmp_path / f"logmel-{cache.config_hash({'n_mels': 40})}.npy"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.warns(UserWarning, match="damaged"):
        c = cache.cached_features("logmel", {"n_mels": 40}, tmp_path, compute)
    assert np.array_equal(a, c) and len(calls) == 3
    with pytest.raises(ConfigError):
        cache.cached_features("../x", {}, tmp_path, compute)
    assert not list(tmp_path.glob(".*"))  # no temp files left
