"""Speech Commands loaders on tiny fabricated folder trees (and the real test set when KWS_SC12_ROOT is set)."""
from __future__ import annotations

import http.server
import io
import os
import random
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kwslib.data import speech_commands as sc
from kwslib.data.base import ALL_WORDS_V2, CLASS_INDEX, CLASSES, CLIP_SAMPLES, KEYWORDS
from kwslib.errors import DatasetError, OfflineError

UNKNOWN_WORDS = [w for w in ALL_WORDS_V2 if w not in KEYWORDS]


def write_wav(path: Path, samples=None, n=CLIP_SAMPLES, rate=16000, subtype="PCM_16", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    if samples is None:
        samples = np.random.default_rng(seed).uniform(-0.3, 0.3, n)
    sf.write(path, samples, rate, subtype=subtype, format="WAV")


def speaker_id(i: int) -> str:
    return f"{(i * 2654435761) % 16**8:08x}"


def make_test_set(root: Path, n_speakers=30, n_silence=20, seed=0) -> Path:
    """A 12-class test-set tree: each speaker says a random handful of words."""
    rng = random.Random(seed)
    k = 0
    for s in range(n_speakers):
        spk = speaker_id(s)
        for word in rng.sample(KEYWORDS, 4):
            write_wav(root / word / f"{spk}_nohash_0.wav", seed=k, n=rng.choice([CLIP_SAMPLES, 12000]))
            k += 1
        word = rng.choice(UNKNOWN_WORDS)
        write_wav(root / "_unknown_" / f"{word}_{spk}_nohash_1.wav", seed=k)
        k += 1
    for i in range(n_silence):
        write_wav(root / "_silence_" / f"{1000 + i}.wav", seed=k + i)
    return root


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    return make_test_set(tmp_path_factory.mktemp("sc12"))


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("noise")
    for i, name in enumerate(["pink_noise", "white_noise"]):
        write_wav(d / f"{name}.wav", n=5 * CLIP_SAMPLES + 123 * i, seed=100 + i)
    return d


# --------------------------------------------------------------------------- roots

def test_resolve_root(tmp_path, monkeypatch):
    monkeypatch.delenv("KWS_TEST_ROOT", raising=False)
    with pytest.raises(DatasetError, match="KWS_TEST_ROOT") as e:
        sc.resolve_root(None, "KWS_TEST_ROOT", "test-set")
    assert "parameter" in str(e.value)
    with pytest.raises(DatasetError, match="does not exist"):
        sc.resolve_root(tmp_path / "nope", "KWS_TEST_ROOT", "test-set")
    monkeypatch.setenv("KWS_TEST_ROOT", str(tmp_path / "nope2"))
    with pytest.raises(DatasetError, match=r"nope2.*\$KWS_TEST_ROOT"):
        sc.resolve_root(None, "KWS_TEST_ROOT", "test-set")
    monkeypatch.setenv("KWS_TEST_ROOT", str(tmp_path))
    assert sc.resolve_root(None, "KWS_TEST_ROOT", "x") == tmp_path
    other = tmp_path / "other"
    other.mkdir()
    assert sc.resolve_root(other, "KWS_TEST_ROOT", "x") == other  # the parameter wins


# --------------------------------------------------------------------------- test-set layout

def test_load_test_set_layout_and_mapping(test_set, noise_dir):
    c = sc.load_test_set(test_set, noise_root=noise_dir)
    assert c.source == "speech_commands_test_set_v0.02"
    clips = c.train.concat([c.train, c.val, c.test])
    assert len(clips) == 30 * 5 + 20 and c.notes["skipped"] == 0
    assert clips.audio.shape[1] == CLIP_SAMPLES
    for label, spk, origin in zip(clips.labels, clips.speakers, clips.origins):
        folder, name = origin.split("/")
        assert CLASSES[label] == folder
        if folder == "_silence_":
            assert spk == f"silence_{name[:-4]}"
        else:
            assert spk in name and len(spk) == 8
    # audio is the file's content, centre-padded when short
    i = int(np.flatnonzero(clips.origins == clips.origins[0])[0])
    data, _ = sf.read(test_set / clips.origins[i], dtype="int16")
    expected = np.zeros(CLIP_SAMPLES, np.float32)
    start = (CLIP_SAMPLES - len(data)) // 2
    expected[start:start + len(data)] = data / 32768.0
    np.testing.assert_array_equal(clips.audio[i], expected)
    # noise split by time: 80 % / 20 % of each recording
    assert len(c.noise_train) == len(c.noise_test) == 2
    assert len(c.noise_train[0]) == 4 * CLIP_SAMPLES and len(c.noise_test[0]) == CLIP_SAMPLES
    assert sc.load_test_set(test_set).noise_train == []


def test_speaker_disjoint_and_fractions(test_set):
    c = sc.load_test_set(test_set, split_seed=3)
    c.check_speaker_disjoint()
    n = sum(len(s) for s in c.splits().values())
    for split, target in zip(c.splits().values(), (0.7, 0.1, 0.2)):
        assert abs(len(split) / n - target) < 0.06
        assert split.class_counts()["_silence_"] > 0
    assert c.notes["split_seed"] == 3


def test_split_deterministic_and_independent_of_listing_order(test_set, monkeypatch):
    a = sc.load_test_set(test_set, split_seed=1)
    b = sc.load_test_set(test_set, split_seed=1)
    real_iterdir = Path.iterdir

    def shuffled(self):
        items = list(real_iterdir(self))
        random.Random(7).shuffle(items)
        return iter(items)

    monkeypatch.setattr(Path, "iterdir", shuffled)
    c = sc.load_test_set(test_set, split_seed=1)
    for name in ("train", "val", "test"):
        assert list(a.splits()[name].origins) == list(b.splits()[name].origins) == list(c.splits()[name].origins)
        np.testing.assert_array_equal(a.splits()[name].audio, c.splits()[name].audio)
    d = sc.load_test_set(test_set, split_seed=2)
    assert set(d.test.origins) != set(a.test.origins)


def test_speaker_split_fractions_and_order_independence():
    rng = np.random.default_rng(0)
    speakers = np.repeat([f"{i:08x}" for i in range(240)], rng.integers(5, 30, 240))
    split = sc.speaker_split(speakers, seed=0)
    fracs = np.bincount(split, minlength=3) / len(split)
    np.testing.assert_allclose(fracs, [0.7, 0.1, 0.2], atol=0.02)
    for s in np.unique(speakers):
        assert len(set(split[speakers == s])) == 1
    perm = rng.permutation(len(speakers))
    np.testing.assert_array_equal(sc.speaker_split(speakers[perm], seed=0), split[perm])
    with pytest.raises(ValueError):
        sc.speaker_split(speakers, fractions=(0.5, -0.1, 0.6))


def test_speaker_folds_partition_every_speaker_once():
    rng = np.random.default_rng(1)
    speakers = np.repeat([f"{i:08x}" for i in range(240)], rng.integers(5, 30, 240))
    folds = sc.speaker_folds(speakers, 5, seed=0)
    assert set(folds.tolist()) == set(range(5))
    for s in np.unique(speakers):  # every speaker in exactly one fold
        assert len(set(folds[speakers == s])) == 1
    np.testing.assert_allclose(np.bincount(folds) / len(folds), 0.2, atol=0.02)
    perm = rng.permutation(len(speakers))
    np.testing.assert_array_equal(sc.speaker_folds(speakers[perm], 5, seed=0), folds[perm])
    # over the replicates every clip is a test clip exactly once; within one no speaker is in two splits
    test_count = np.zeros(len(speakers), int)
    for k in range(5):
        split = sc.fold_split(speakers, k, 5, seed=0, val_fraction=0.125)
        np.testing.assert_array_equal(split == 2, folds == k)
        test_count += split == 2
        for s in np.unique(speakers):
            assert len(set(split[speakers == s])) == 1
        rest = split != 2
        assert abs(np.mean(split[rest] == 1) - 0.125) < 0.03
    np.testing.assert_array_equal(test_count, 1)
    # replicates draw different validation speakers
    v0, v1 = (set(speakers[sc.fold_split(speakers, k, 5) == 1]) for k in (0, 1))
    assert v0 != v1
    with pytest.raises(ValueError, match="n_folds"):
        sc.speaker_folds(speakers, 1)
    with pytest.raises(ValueError, match="5 speaker folds from 3 speakers"):
        sc.speaker_folds(["a", "b", "c"], 5)
    with pytest.raises(ValueError, match="fold must be in"):
        sc.fold_split(speakers, 5, 5)


def test_load_test_set_folds_cover_the_archive(test_set):
    tests = [sc.load_test_set(test_set, fold=k, n_folds=3) for k in range(3)]
    all_clips = set(tests[0].train.origins) | set(tests[0].val.origins) | set(tests[0].test.origins)
    pooled = [o for c in tests for o in c.test.origins]
    assert sorted(pooled) == sorted(all_clips)  # every clip tested exactly once
    for c in tests:
        spk = {name: set(getattr(c, name).speakers) for name in ("train", "val", "test")}
        assert not (spk["train"] & spk["val"] or spk["train"] & spk["test"] or spk["val"] & spk["test"])
        assert c.notes["fold"] in (0, 1, 2) and c.notes["n_folds"] == 3
        assert len(c.val) > 0 and any(c.test.labels == CLASS_INDEX["_silence_"])


# --------------------------------------------------------------------------- full layout

def make_full(root: Path, words=ALL_WORDS_V2, noise_len=6 * CLIP_SAMPLES) -> Path:
    """Full-archive tree: speaker s says every word once; speakers 0-1 are val, 2-3 test, 4-9 train."""
    val, test = [], []
    for s in range(10):
        spk = speaker_id(s)
        for w, word in enumerate(words):
            rel = f"{word}/{spk}_nohash_0.wav"
            write_wav(root / rel, seed=s * 100 + w, n=CLIP_SAMPLES if w % 3 else 9000)
            (val if s < 2 else test if s < 4 else []).append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    for i, name in enumerate(["running_tap", "white_noise"]):
        # a ramp, so every sample value tells where in the recording it is
        ramp = (np.arange(noise_len + i * 1000) % 30000 - 15000) / 32768.0
        write_wav(root / "_background_noise_" / f"{name}.wav", samples=ramp)
    (root / "_background_noise_" / "README.md").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def full_root(tmp_path_factory):
    return make_full(tmp_path_factory.mktemp("full"))


def test_load_full_official_split_and_mapping(full_root):
    c = sc.load_full(full_root, silence_fraction=0.1)
    assert c.source == "speech_commands_v0.02"
    c.check_speaker_disjoint()
    sil = CLASS_INDEX["_silence_"]
    for name, n_spk in (("train", 6), ("val", 2), ("test", 2)):
        split = c.splits()[name]
        words = split.subset(np.flatnonzero(split.labels != sil))
        assert len(words) == n_spk * 35
        assert split.class_counts()["_unknown_"] == n_spk * 25
        assert split.class_counts()["yes"] == n_spk
        assert split.class_counts()["_silence_"] == round(0.1 * n_spk * 35)
        for label, origin in zip(words.labels, words.origins):
            word = origin.split("/")[0]
            assert CLASSES[label] == (word if word in KEYWORDS else "_unknown_")
    assert "backward/" in " ".join(c.train.origins)  # a v0.02-only word, mapped to _unknown_


def test_load_full_silence_cut_from_disjoint_noise_parts(full_root):
    c = sc.load_full(full_root, silence_fraction=0.2, seed=5, noise_test_fraction=0.25)
    sil = CLASS_INDEX["_silence_"]
    lengths = {"_background_noise_/running_tap.wav": 6 * CLIP_SAMPLES,
               "_background_noise_/white_noise.wav": 6 * CLIP_SAMPLES + 1000}
    for name, split in c.splits().items():
        idx = np.flatnonzero(split.labels == sil)
        assert len(idx)
        for i in idx:
            rec, start = split.origins[i].split("@")
            start, cut = int(start), round(lengths[rec] * 0.75)
            if name == "train":
                assert start + CLIP_SAMPLES <= cut
            else:
                assert start >= cut
            ramp = (np.arange(start, start + CLIP_SAMPLES) % 30000 - 15000) / 32768.0
            np.testing.assert_allclose(split.audio[i], ramp, atol=1e-6)
    assert [len(a) for a in c.noise_test] == [round(n * 0.25) for n in lengths.values()]


def test_load_full_unknown_fraction_and_v001(full_root):
    c = sc.load_full(full_root, unknown_fraction=0.5, silence_fraction=0.0, seed=1)
    assert c.train.class_counts()["_unknown_"] == 30  # 0.5 * 60 keyword clips
    assert c.val.class_counts()["_unknown_"] == 10
    c2 = sc.load_full(full_root, unknown_fraction=0.5, silence_fraction=0.0, seed=1)
    assert list(c.train.origins) == list(c2.train.origins)
    v1 = sc.load_full(full_root, version="v0.01", silence_fraction=0.0)
    assert v1.source == "speech_commands_v0.01"
    assert not any(o.startswith("backward/") for o in v1.train.origins)
    assert len(v1.train) == 6 * 30


# --------------------------------------------------------------------------- layout errors

def test_missing_folder_class_list_errors(tmp_path, test_set):
    with pytest.raises(DatasetError, match="does not exist"):
        sc.load_test_set(tmp_path / "missing")
    partial = tmp_path / "partial"
    for d in ("yes", "no", "_unknown_"):
        write_wav(partial / d / "0badbeef_nohash_0.wav")
    with pytest.raises(DatasetError, match=r"missing sub-folder\(s\) up, down"):
        sc.load_test_set(partial)
    empty = tmp_path / "empty"
    for d in sc.TEST_SET_FOLDERS:
        write_wav(empty / d / "0badbeef_nohash_0.wav")
    for f in (empty / "go").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"go has no \.wav files"):
        sc.load_test_set(empty)
    with pytest.raises(DatasetError, match="looks like the 12-class test-set archive"):
        sc.load_full(test_set)  # a test-set folder is not a full archive


def test_full_listed_but_missing_clip_warns(tmp_path):
    root = make_full(tmp_path / "full")
    (root / "yes" / f"{speaker_id(0)}_nohash_0.wav").unlink()  # a validation clip
    with pytest.warns(UserWarning, match="1 clips named in the list files"):
        c = sc.load_full(root)
    assert c.notes["listed_but_missing"] == 1 and c.val.class_counts()["yes"] == 1


def test_full_missing_list_and_noise(tmp_path):
    root = make_full(tmp_path / "full", noise_len=2 * CLIP_SAMPLES)
    (root / "testing_list.txt").unlink()
    with pytest.raises(DatasetError, match="testing_list.txt is missing"):
        sc.load_full(root)
    root2 = make_full(tmp_path / "full2", noise_len=2 * CLIP_SAMPLES)
    for f in (root2 / "_background_noise_").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="no .wav files"):
        sc.load_full(root2)


# --------------------------------------------------------------------------- bad clips

def _corrupt(folder: Path):
    """Five bad clips of different kinds."""
    write_wav(folder / "yes" / "deadbee1_nohash_0.wav", rate=8000, n=8000)
    write_wav(folder / "no" / "deadbee2_nohash_0.wav", samples=np.zeros((CLIP_SAMPLES, 2)))
    write_wav(folder / "up" / "deadbee3_nohash_0.wav", subtype="PCM_U8")
    full = folder / "down" / "deadbee4_nohash_0.wav"
    write_wav(full)
    full.write_bytes(full.read_bytes()[:5000])  # truncated data chunk
    (folder / "left" / "deadbee5_nohash_0.wav").write_bytes(b"RIFF not really a wav")


def test_unreadable_clips_skipped_with_one_warning(tmp_path):
    root = make_test_set(tmp_path / "sc", n_speakers=30)
    _corrupt(root)
    with pytest.warns(UserWarning, match=r"skipped 5 unreadable clips in .*sc, first: ") as rec:
        c = sc.load_test_set(root)
    assert len([w for w in rec if "unreadable" in str(w.message)]) == 1
    assert c.notes["skipped"] == 5
    assert str(rec[0].message).endswith("first: yes/deadbee1_nohash_0.wav: sample rate 8000 Hz, expected 16000 Hz")
    assert sum(len(s) for s in c.splits().values()) == 170
    assert not any("deadbee" in o for s in c.splits().values() for o in s.origins)


def test_too_many_unreadable_clips_is_an_error(tmp_path):
    root = make_test_set(tmp_path / "sc", n_speakers=10, n_silence=5)  # 55 clips: 5 bad is > 5 %
    _corrupt(root)
    with pytest.raises(DatasetError, match=r"5 of 60 clips .* unreadable"):
        sc.load_test_set(root)


# --------------------------------------------------------------------------- download

def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_download_offline_error(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/speech_commands_test_set_v0.02.tar.gz"
    with pytest.raises(OfflineError, match="KWS_SC12_ROOT") as e:
        sc.download("v0.02", tmp_path, test_set=True, timeout=2, url=url)
    assert url in str(e.value)
    assert not (tmp_path / "speech_commands_test_set_v0.02").exists()


def _tar_bytes(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_safe_extract_rejects_escaping_members(tmp_path, kind):
    good = tarfile.TarInfo("yes/ok.wav")
    good.size = 3
    bad = tarfile.TarInfo({"dotdot": "yes/../../evil.txt", "absolute": str(tmp_path / "evil.txt"),
                           "symlink": "yes/link"}[kind])
    if kind == "symlink":
        bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        bad.size = 4
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_bytes([(good, b"abc"), (bad, None if kind == "symlink" else b"evil")]))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DatasetError, match="refusing to extract"):
        sc.safe_extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not any(dest.rglob("*"))
    ok = tmp_path / "ok.tar.gz"
    ok.write_bytes(_tar_bytes([(good, b"abc")]))
    sc.safe_extract(ok, dest)
    assert (dest / "yes" / "ok.wav").read_bytes() == b"abc"


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    ranges: list = []

    def do_GET(self):
        rng = self.headers.get("Range")
        self.ranges.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_download_resumes_extracts_and_verifies(tmp_path, test_set, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(test_set, arcname=".")
    _RangeHandler.payload, _RangeHandler.ranges = buf.getvalue(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/x.tar.gz"
    dest = tmp_path / "dl"
    dest.mkdir()
    half = len(_RangeHandler.payload) // 2
    (dest / "speech_commands_test_set_v0.02.tar.gz.part").write_bytes(_RangeHandler.payload[:half])
    try:
        monkeypatch.setitem(sc.MIN_CLIPS, ("v0.02", True), 170)
        out = sc.download("v0.02", dest, test_set=True, url=url)
        assert _RangeHandler.ranges == [f"bytes={half}-"]
        assert out == dest / "speech_commands_test_set_v0.02"
        assert sum(len(s) for s in sc.load_test_set(out).splits().values()) == 170
        assert sorted(p.name for p in dest.iterdir()) == ["speech_commands_test_set_v0.02"]
        assert sc.download("v0.02", dest, test_set=True, url=url) == out  # present: no new request
        assert len(_RangeHandler.ranges) == 1
        monkeypatch.setitem(sc.MIN_CLIPS, ("v0.02", True), 4890)
        with pytest.raises(DatasetError, match="holds 170 clips"):
            sc.download("v0.02", tmp_path / "dl2", test_set=True, url=url)
        assert list((tmp_path / "dl2").iterdir()) == []  # no folder, no temp files, bad archive deleted
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- real data

def test_real_test_set():
    root = os.environ.get("KWS_SC12_ROOT")
    if not root or not Path(root).is_dir():
        pytest.skip("KWS_SC12_ROOT not set or missing: real Speech Commands test set not available")
    noise = os.environ.get("KWS_SC_NOISE_ROOT")
    c = sc.load_test_set(root, noise_root=noise if noise and Path(noise).is_dir() else None)
    c.check_speaker_disjoint()
    n = sum(len(s) for s in c.splits().values())
    assert n == 4890 and c.notes["skipped"] == 0
    speakers = {s for split in c.splits().values() for s in split.speakers if not s.startswith("silence_")}
    assert 230 <= len(speakers) <= 250
    for split, target in zip(c.splits().values(), (0.7, 0.1, 0.2)):
        assert abs(len(split) / n - target) < 0.02
