"""Hostile input at every entry point a user reaches: a specific error (type and message), no partial output.

Entry points: the WAV reader and in-memory audio checks, the Speech Commands
and hub readers, the params loader (YAML, typed configs, profiles, notebook
parameters), the training command (``python -m kwslib.train``), the console
command (``kwslib detect`` / ``kwslib export``) and the artifact loader. The
fuzzer of the artifact format is tests/test_fuzz_artifact.py.

Cases that fail today in files owned elsewhere are strict xfails naming the
file: each passes (and must lose its marker) once that file is fixed.
"""
import io
import os
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from kwslib import cli, config
from kwslib.deploy import export
from kwslib.study import experiment
from kwslib.frontend.audio import check_audio, read_wav
from kwslib.deploy.engine import random_int_model
from kwslib.errors import ArtifactError, AudioError, ConfigError, DatasetError
from kwslib.frontend.features import StreamingFrontend, logmel_numpy, logmel_torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_speech_commands import make_test_set, write_wav  # noqa: E402


def wav_bytes(data, rate=16000, subtype="PCM_16", fmt="WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


GOOD = wav_bytes(np.linspace(-0.5, 0.5, 16000))
_DATA = GOOD.find(b"data")
_FMT = GOOD.find(b"fmt ")


def patched(data: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def snapshot(folder: Path) -> set:
    return {p for p in Path(folder).rglob("*")}


# --- the WAV reader -----------------------------------------------------------------------------------

BAD_WAVS = {  # name -> (file bytes, message)
    "zero-length file": (b"", "file is empty"),
    "header only": (GOOD[:44], "truncated: header declares 32000 data bytes, file holds 0"),
    "truncated data": (GOOD[:1000], "truncated: header declares 32000 data bytes, file holds 956"),
    "header claims 4 GB": (patched(GOOD, _DATA + 4, "<I", 0xFFFFFFF0),
                           "truncated: header declares 4294967280 data bytes, file holds 32000"),
    "fmt chunk claims 2 GB": (patched(GOOD, _FMT + 4, "<I", 0x7FFFFFF0), "not a readable WAV"),
    "data size 0": (patched(GOOD, _DATA + 4, "<I", 0), "no samples"),
    "sample rate 0 in header": (patched(GOOD, 24, "<I", 0), "not a readable WAV"),
    "0 channels in header": (patched(GOOD, 22, "<H", 0), "not a readable WAV"),
    "random bytes": (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "not a readable WAV"),
    "RIFF header then garbage": (GOOD[:12] + bytes(range(256)) * 8, "not a readable WAV"),
    "8 kHz": (wav_bytes(np.zeros(8000), 8000), "sample rate 8000 Hz, expected 16000 Hz"),
    "44.1 kHz": (wav_bytes(np.zeros(4410), 44100), "sample rate 44100 Hz, expected 16000 Hz"),
    "stereo": (wav_bytes(np.zeros((100, 2))), "2 channels, expected mono"),
    "float WAV with NaN and inf": (wav_bytes(np.array([0, np.nan, np.inf, -np.inf] * 50, np.float32), subtype="FLOAT"),
                                   "sample format FLOAT, expected 16-bit PCM"),
    "24-bit": (wav_bytes(np.zeros(100), subtype="PCM_24"), "sample format PCM_24"),
    "unsigned 8-bit": (wav_bytes(np.zeros(100), subtype="PCM_U8"), "sample format PCM_U8"),
    "FLAC named .wav": (wav_bytes(np.zeros(100), fmt="FLAC"), "format FLAC, expected WAV"),
}


@pytest.mark.parametrize("case", sorted(BAD_WAVS))
def test_read_wav_hostile_files(tmp_path, case):
    data, message = BAD_WAVS[case]
    p = tmp_path / "x.wav"
    p.write_bytes(data)
    with pytest.raises(AudioError, match=message) as info:
        read_wav(p)
    assert str(info.value).startswith(f"{p}: ")
    if data:  # the same bytes in memory
        with pytest.raises(AudioError, match=message):
            read_wav(data)


def test_read_wav_hostile_paths(tmp_path):
    with pytest.raises(AudioError, match="file does not exist"):
        read_wav(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="is a directory"):
        read_wav(tmp_path)
    with pytest.raises(AudioError, match="file is empty"):
        read_wav("/dev/null")
    with pytest.raises(AudioError, match="file does not exist"):
        read_wav(tmp_path / "a-file.txt" / "under-it.wav")
    with pytest.raises(AudioError, match="<in-memory WAV>: not a readable WAV"):
        read_wav(b"")
    for bad in (12345, None, 3.5):
        with pytest.raises(TypeError, match="expected a file path or the bytes of a WAV file"):
            read_wav(bad)
    (tmp_path / "long.wav").write_bytes(GOOD)
    with pytest.raises(AudioError, match="more than the 0 s limit"):
        read_wav(tmp_path / "long.wav", max_seconds=0.5)


def test_read_wav_tolerated_header_quirks():
    """Streaming encoders write 0xFFFFFFFF ('unknown') data sizes and wrong RIFF sizes: the samples are intact."""
    ref = read_wav(GOOD)
    for quirk in (patched(GOOD, _DATA + 4, "<I", 0xFFFFFFFF), patched(GOOD, 4, "<I", 0xFFFFFFF0)):
        np.testing.assert_array_equal(read_wav(quirk), ref)


@pytest.mark.parametrize("audio,message", [
    (np.array([0.0, np.nan]), "NaN or infinite"), (np.array([np.inf, 0.0]), "NaN or infinite"),
    (np.array([-np.inf]), "NaN or infinite"), (np.zeros(0), "empty audio"), (np.zeros((2, 8)), "expected mono 1-D"),
    (np.array(["a", "b"]), "not numeric"), (np.array([None, 1.0], object), "not numeric"),
    (np.array([1 + 2j]), "complex"), (np.array([True, False]), "not numeric"),
])
def test_in_memory_audio(audio, message):
    with pytest.raises(AudioError, match=message):
        check_audio(audio)
    with pytest.raises(AudioError, match=message):
        logmel_numpy(audio)


def test_feature_front_ends_reject_nan_and_wrong_types():
    with pytest.raises(AudioError, match="NaN or infinite"):
        logmel_torch(torch.tensor([[0.0, float("nan")] * 400]))
    with pytest.raises(AudioError, match="expected a float tensor"):
        logmel_torch(torch.zeros(800, dtype=torch.int16))
    with pytest.raises(AudioError, match="expected a float tensor"):
        logmel_torch(np.zeros(800, np.float32))
    with pytest.raises(AudioError, match=r"expected non-empty \[T\] or \[B, T\]"):
        logmel_torch(torch.zeros(2, 2, 800))
    fe = StreamingFrontend()
    with pytest.raises(AudioError, match="NaN or infinite"):
        fe.push(np.array([np.inf] * 10))
    assert fe.push(np.zeros(400, np.float32)).shape == (1, 40)  # a rejected chunk leaves no state behind


# --- dataset readers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sc_tree(tmp_path_factory):
    return make_test_set(tmp_path_factory.mktemp("sc12") / "sc", n_speakers=8, n_silence=4)


def test_speech_commands_hostile_roots(tmp_path, sc_tree, monkeypatch):
    from kwslib.data import DataConfig, load_corpus
    from kwslib.data import speech_commands as sc

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(DatasetError, match=f"folder {a_file} .*is not a folder"):
        sc.load_test_set(a_file)
    with pytest.raises(DatasetError, match="background-noise folder .* is not a folder"):
        sc.load_test_set(sc_tree, noise_root=a_file)
    monkeypatch.delenv("KWS_SC12_ROOT", raising=False)
    with pytest.raises(DatasetError, match="set the environment variable KWS_SC12_ROOT"):
        sc.load_test_set()
    monkeypatch.setenv("KWS_SC12_ROOT", str(tmp_path / "gone"))
    with pytest.raises(DatasetError, match=r"gone \(from \$KWS_SC12_ROOT\) does not exist"):
        load_corpus(DataConfig(source="speech_commands_test_set"))
    for version in ("v3", 2, None):
        with pytest.raises(ConfigError, match="version must be 'v0.01' or 'v0.02'"):
            sc.load_full(sc_tree, version=version)


def test_speech_commands_hostile_noise_recording(tmp_path, sc_tree):
    from kwslib.data import speech_commands as sc

    noise = tmp_path / "noise"
    write_wav(noise / "a.wav", n=50000)
    (noise / "b.wav").write_bytes(patched((noise / "a.wav").read_bytes(), _DATA + 4, "<I", 0xFFFFFFF0))
    with pytest.raises(DatasetError, match="background recording unreadable: .*b.wav: truncated: header declares "
                                           "4294967280 data bytes"):
        sc.load_test_set(sc_tree, noise_root=noise)


def test_speech_commands_unknown_class_folder_and_hostile_clips(tmp_path):
    """A folder that is not one of the 12 classes is not read; hostile clips are skipped with one warning."""
    from kwslib.data import speech_commands as sc

    root = make_test_set(tmp_path / "sc", n_speakers=30, n_silence=10)
    write_wav(root / "banana" / "0badbeef_nohash_0.wav")
    (root / "yes" / "deadbee1_nohash_0.wav").write_bytes(patched(GOOD, _DATA + 4, "<I", 0xFFFFFFF0))
    (root / "no" / "deadbee2_nohash_0.wav").write_bytes(
        wav_bytes(np.array([np.nan] * 16000, np.float32), subtype="FLOAT"))
    (root / "up" / "deadbee3_nohash_0.wav").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 3 unreadable clips .* first: yes/deadbee1_nohash_0.wav: "
                                         r"truncated: header declares 4294967280 data bytes"):
        c = sc.load_test_set(root)
    origins = [o for s in c.splits().values() for o in s.origins]
    assert not any("banana" in o or "deadbee" in o for o in origins)
    for split in c.splits().values():
        assert np.isfinite(split.audio).all()


def test_clipset_rejects_unknown_class_labels():
    """A negative label is refused by the clips; a label past the class list by the corpus, which holds the list
    (a profile's keywords make it any length, so a ClipSet alone cannot know the upper end)."""
    from kwslib.data.base import ClipSet, Corpus

    with pytest.raises(ValueError, match="class indices >= 0"):
        ClipSet(np.zeros((1, 16000), np.float32), [-1], ["s"], ["o"])
    clips = ClipSet(np.zeros((1, 16000), np.float32), [12], ["s"], ["o"])
    with pytest.raises(ValueError, match="label 12 outside its 12 classes"):
        Corpus("x", clips, ClipSet.empty(), ClipSet.empty())
    with pytest.raises(ValueError, match="label 3 outside its 3 classes"):
        Corpus("x", ClipSet.empty(), ClipSet.empty(), ClipSet(np.zeros((1, 16000), np.float32), [3], ["s"], ["o"]),
               classes=["_silence_", "_unknown_", "go"])


def test_hub_records_with_an_unknown_label_index():
    import datasets

    from kwslib.data import hub

    ds = datasets.Dataset.from_dict({"file": ["x/0a7c2a8d_nohash_0.wav"], "audio": [{"bytes": GOOD, "path": None}],
                                     "label": [99], "speaker_id": ["0a7c2a8d"]})
    with pytest.raises(DatasetError, match="label"):
        hub.records_to_clipset(ds, label_names=hub.LABELS_V2)


# --- params: YAML, typed configs, profiles, notebook parameters -------------------------------------------

YAML_FILES = {
    "malformed": (b"train: {epochs: 3\n", "malformed YAML"),
    "tab indentation": (b"train:\n\tepochs: 3\n", "malformed YAML"),
    "a list at the top": (b"- 1\n- 2\n", "top level must be a mapping of parameters, got list"),
    "a scalar at the top": (b"42\n", "top level must be a mapping of parameters, got int"),
    "binary": (b"\xff\xfe\x00\x01" * 8, "not a UTF-8 text file"),
    "python object tag": (b"a: !!python/object/apply:os.system ['echo pwned']\n", "malformed YAML"),
}


@pytest.mark.parametrize("case", sorted(YAML_FILES))
def test_load_yaml_hostile_files(tmp_path, case):
    data, message = YAML_FILES[case]
    p = tmp_path / "p.yaml"
    p.write_bytes(data)
    with pytest.raises(ConfigError, match=message) as info:
        config.load_yaml(p)
    assert str(p) in str(info.value)


def test_load_yaml_hostile_paths(tmp_path):
    with pytest.raises(ConfigError, match="params file does not exist"):
        config.load_yaml(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="is a folder, not a params file"):
        config.load_yaml(tmp_path)
    assert config.load_yaml("/dev/null") == {}  # an empty file is an empty mapping: every default


def test_yaml_alias_bomb_fails_fast(tmp_path):
    """A 'billion laughs' alias bomb in a list field: rejected at its first element, not expanded."""
    import time

    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdef", "bcdefg"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("model: {hidden: *g}")
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    t0 = time.time()
    with pytest.raises(ConfigError, match=r"params.model.hidden\[0\]: expected an integer"):
        experiment.experiment_config(model=config.load_yaml(p)["model"])
    assert time.time() - t0 < 5


NOTEBOOK_PARAMS = {  # experiment_config keyword arguments -> message
    "epochs as a string": (dict(train={"epochs": "3"}), r"params.train.epochs: expected an integer, got '3'"),
    "epochs as a float": (dict(train={"epochs": 3.5}), "params.train.epochs: expected an integer, got 3.5"),
    "epochs as a bool": (dict(train={"epochs": True}), "params.train.epochs: expected an integer, got True"),
    "zero epochs": (dict(train={"epochs": 0}), "epochs and batch_size must be >= 1"),
    "negative batch": (dict(train={"batch_size": -4}), "epochs and batch_size must be >= 1"),
    "lr NaN": (dict(train={"lr": float("nan")}), "params.train.lr: expected a finite number, got nan"),
    "lr infinite": (dict(train={"lr": float("inf")}), "expected a finite number"),
    "lr as a string": (dict(train={"lr": "1e-3"}), "params.train.lr: expected a number, got '1e-3'"),
    "zero threads": (dict(train={"threads": 0}), "threads must be >= 1"),
    "label smoothing 1": (dict(train={"label_smoothing": 1.0}), "label_smoothing in"),
    "negative warm-up": (dict(train={"warmup_epochs": -1}), "warmup_epochs >= 0"),
    "typo in train": (dict(train={"epoch": 3}), r"params.train: unknown key\(s\) \['epoch'\]"),
    "train as a list": (dict(train=[1, 2]), "expected a mapping of TrainConfig fields, got list"),
    "augment out of range": (dict(train={"augment": {"noise_prob": 2.0}}), "noise_prob must be in"),
    "hidden as a string": (dict(model={"hidden": "186"}), "params.model.hidden: expected a list, got str"),
    "hidden empty": (dict(model={"hidden": []}), "hidden must list positive layer widths"),
    "hidden negative": (dict(model={"hidden": [-1]}), "hidden must list positive layer widths"),
    "hidden null": (dict(model={"hidden": None}), "expected a list, got NoneType"),
    "decimate 0": (dict(model={"decimate": 0}), "params.model: decimate must be >= 1"),
    "dropout 1": (dict(model={"dropout": 1.0}), r"dropout must be in \[0, 1\)"),
    "n_mels mismatch": (dict(model={"n_mels": 20}), r"model.n_mels \(20\) must equal features.n_mels \(40\)"),
    "unknown source": (dict(data={"source": "banana"}), "unknown source 'banana'"),
    "two split fractions": (dict(data={"split_fractions": [0.5, 0.5]}), "three positive numbers summing to 1"),
    "fractions as a string": (dict(data={"split_fractions": "0.7,0.1,0.2"}), "expected a list, got str"),
    "root as a number": (dict(data={"root": 5}), "params.data.root: expected a string, got 5"),
    "synthetic typo": (dict(data={"synthetic": {"voices": 3}}), r"unknown key\(s\) \['voices'\]"),
    "synthetic wrong type": (dict(data={"synthetic": {"n_voices": "many"}}), "n_voices: expected an integer"),
    "window longer than the FFT": (dict(features={"win_ms": 100.0}), "longer than n_fft=512"),
    "hop 0": (dict(features={"hop_ms": 0.0}), "give empty frames"),
    "8 kHz features with 7.6 kHz fmax": (dict(features={"sample_rate": 8000}), "fmax <= sample_rate/2"),
    "eval typo": (dict(eval={"x": 1}), r"params.eval: unknown key\(s\) \['x'\]"),
}


@pytest.mark.parametrize("case", sorted(NOTEBOOK_PARAMS))
def test_notebook_parameters_wrong_types_and_values(case):
    kwargs, message = NOTEBOOK_PARAMS[case]
    with pytest.raises(ConfigError, match=message):
        experiment.experiment_config(**kwargs)


def test_stage_and_model_parameters():
    from kwslib.model import ModelConfig
    from kwslib.quant.qat import Stage1Config
    from kwslib.quant.stage2 import Stage2Config

    with pytest.raises(ConfigError, match="params.stage1.epochs: expected an integer, got '2'"):
        config.from_dict(Stage1Config, {"epochs": "2"}, where="params.stage1")
    with pytest.raises(ConfigError, match="stage-1 epochs must be >= 1"):
        config.from_dict(Stage1Config, {"epochs": 0}, where="params.stage1")
    with pytest.raises(ConfigError, match="gain_bits must be in 2..31"):
        config.from_dict(Stage2Config, {"gain_bits": 40}, where="params.stage2")
    with pytest.raises(ConfigError, match="params.model: expected a mapping of ModelConfig fields, got list"):
        config.from_dict(ModelConfig, [1], where="params.model")


@pytest.mark.parametrize("profile", ["..", ".", "../params", "/etc", "", None, 3, "no-such-profile"])
def test_profile_names(profile):
    with pytest.raises(ConfigError, match=r"unknown profile .*known profiles: \[.*'quick'"):
        config.profile_dir(profile)


def test_reproduce_check_params(tmp_path):
    from kwslib.study import reproduce

    nb = reproduce.ROOT / "notebooks" / "01_float_baseline.ipynb"
    p = tmp_path / "01_float.yaml"
    p.write_text("trian: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['trian'\] for 01_float_baseline.ipynb"):
        reproduce.check_params(nb, p)
    p.write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        reproduce.check_params(nb, p)
    with pytest.raises(ConfigError, match="params file does not exist"):
        reproduce.check_params(nb, tmp_path / "none.yaml")


def test_notebook_results_dir_under_a_file(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="a-file is a file"):
        experiment.paths(a_file / "results")


# --- python -m kwslib.train -----------------------------------------------------------------------------

def train_main(argv, capsys):
    from kwslib.study.train_cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


TRAIN_PARAMS = {  # params file text -> message
    "unknown key": ("trian: {epochs: 3}\n", r"unknown parameter\(s\) \['trian'\]"),
    "section not a mapping": ("train: 3\n", "'train' must be a mapping of parameters, got int 3"),
    "wrong type": ("train: {epochs: three}\n", "params.train.epochs: expected an integer, got 'three'"),
    "malformed": ("train: [\n", "malformed YAML"),
    "bad synthetic corpus": ("data: {synthetic: {noise_seconds: 1.0}}\n", "synthetic.noise_seconds"),
    "cache_dir not a path": ("cache_dir: [1]\n", "cache_dir must be a path string"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_PARAMS))
def test_train_command_hostile_params(tmp_path, capsys, case):
    text, message = TRAIN_PARAMS[case]
    params = tmp_path / "01_float.yaml"
    params.write_text(text)
    before = snapshot(tmp_path)
    rc, out, err = train_main(["--params", str(params), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and err.startswith("kwslib.train: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert snapshot(tmp_path) == before  # nothing written


def test_train_command_hostile_options(tmp_path, capsys):
    params = tmp_path / "01_float.yaml"
    params.write_text("train: {epochs: 1}\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        (["--params", str(tmp_path / "none.yaml")], "params file does not exist"),
        (["--params", str(tmp_path)], "is a folder, not a params file"),
        (["--params", str(params), "--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--params", str(params), "--device", "tpu"], "expected auto, cpu, cuda or cuda:<index>"),
        (["--params", str(params), "--out", str(a_file / "out")], f"{a_file} is a file, not a folder"),
        (["--params", str(params), "--out", str(a_file)], f"{a_file} is a file, not a folder"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--params", str(params), "--device", "cuda"], "no CUDA GPU is available"))
    before = snapshot(tmp_path)
    for argv, message in cases:
        if "--out" not in argv:
            argv = argv + ["--out", str(tmp_path / "out")]
        rc, out, err = train_main(argv, capsys)
        assert rc == 2 and message in err and "Traceback" not in err, (argv, err)
    assert snapshot(tmp_path) == before
    with pytest.raises(SystemExit) as info:  # argparse: usage and status 2
        train_main(["--params", str(params), "--out", str(tmp_path / "o"), "--epochs", "many"], capsys)
    assert info.value.code == 2


# --- kwslib detect / kwslib export and the artifact loader ------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile_cli")
    m = random_int_model(4, dims=(240, 16, 12), context_frames=24, decimate=4, seed=0)
    from kwslib.quant.intfile import save_int_model

    save_int_model(d / "m.int.npz", m)
    art = export.save_artifact(d / "m.kws", m)
    (d / "a.wav").write_bytes(wav_bytes(0.1 * np.sin(np.arange(32000) / 5.0)))
    (d / "a-file").write_text("x")
    return d, art


def run_cli(argv, capsys):
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_bad_input(rc, out, err, message):
    assert rc == 2 and out == "", (rc, out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("case", sorted(BAD_WAVS))
def test_detect_hostile_wavs(files, tmp_path, capsys, case):
    """Bad for a training clip; `kwslib detect` converts the readable ones and refuses the rest, naming the file."""
    d, art = files
    data, message = BAD_WAVS[case]
    wav = tmp_path / "x.wav"
    wav.write_bytes(data)
    if case in DETECT_CONVERTS:
        rc, out, err = run_cli(["detect", art, wav], capsys)
        assert rc == 0 and "Traceback" not in err and DETECT_CONVERTS[case] in err, err
        return
    rc, out, err = run_cli(["detect", art, wav, "--quiet"], capsys)
    assert_bad_input(rc, out, err, str(wav))


# What `kwslib detect` reads anyway (a recording, not a training clip), and what its header line says of it.
DETECT_CONVERTS = {"8 kHz": "8000 Hz mono WAV PCM_16, resampled to 16000 Hz",
                   "44.1 kHz": "44100 Hz mono WAV PCM_16, resampled to 16000 Hz",
                   "stereo": "16000 Hz stereo WAV PCM_16, downmixed to mono",
                   "24-bit": "16000 Hz mono WAV PCM_24, samples scaled",
                   "unsigned 8-bit": "16000 Hz mono WAV PCM_U8, samples scaled",
                   "FLAC named .wav": "16000 Hz mono FLAC PCM_16, no conversion"}


def test_detect_hostile_paths_and_artifacts(files, tmp_path, capsys):
    d, art = files
    cases = {
        tmp_path / "missing.wav": (art, "does not exist"),
        tmp_path: (art, "is a directory"),
    }
    for wav, (model, message) in cases.items():
        assert_bad_input(*run_cli(["detect", model, wav, "--quiet"], capsys), message)
    (tmp_path / "empty.kws").write_bytes(b"")
    huge = bytearray(art.read_bytes())
    struct.pack_into("<Q", huge, 16, 4 << 30)  # the header claims a 4 GB file
    (tmp_path / "huge.kws").write_bytes(bytes(huge))
    for model, message in [(tmp_path / "missing.kws", "artifact file does not exist"),
                           (tmp_path, "is a directory, not an artifact file"),
                           (tmp_path / "empty.kws", "bad magic"), (d / "a.wav", "bad magic"),
                           (d / "m.int.npz", "bad magic"), (tmp_path / "huge.kws", "truncated: header declares")]:
        assert_bad_input(*run_cli(["detect", model, d / "a.wav", "--quiet"], capsys), message)


def test_detect_hostile_options(files, capsys):
    d, art = files
    for value in ("nan", "-1", "1.5", "inf"):
        assert_bad_input(*run_cli(["detect", art, d / "a.wav", "--threshold", value], capsys), "--threshold must be")
    for argv in (["--threshold", "high"], ["--backend", "gpu"], ["--smooth", "2.5"]):
        rc, out, err = run_cli(["detect", art, d / "a.wav", *argv], capsys)
        assert rc == 2 and out == "" and "usage:" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--chunk-ms", "inf"], ["--chunk-ms", "nan"], ["--chunk-ms", "-5"],
                                  ["--smooth", "0"], ["--smooth", "-3"], ["--refractory", "nan"],
                                  ["--refractory", "-1"]])
def test_detect_unchecked_numeric_options(files, capsys, argv):
    d, art = files
    assert_bad_input(*run_cli(["detect", art, d / "a.wav", "--quiet", *argv], capsys), argv[0])


def test_export_hostile_sources_and_destinations(files, tmp_path, capsys):
    d, art = files
    a_file = d / "a-file"
    (tmp_path / "empty.kws").write_bytes(b"")
    cases = [
        ([tmp_path / "none.npz", tmp_path / "o.kws"], "integer model file does not exist"),
        ([tmp_path, tmp_path / "o.kws"], "damaged or not an integer model file"),
        ([d / "a.wav", tmp_path / "o.kws"], "damaged or not an integer model file"),
        ([tmp_path / "empty.kws", tmp_path / "o.kws"], "bad magic"),
        ([d / "m.int.npz", a_file / "o.kws"], f"{a_file} is a file, not a folder"),
        ([d / "m.int.npz", a_file / "x" / "o.kws"], f"{a_file} is a file, not a folder"),
        ([d / "m.int.npz", tmp_path], "it is a folder, not a file"),
        ([d / "m.int.npz", ""], "not a file name"),
    ]
    before = snapshot(tmp_path)
    for argv, message in cases:
        assert_bad_input(*run_cli(["export", *argv], capsys), message)
    assert snapshot(tmp_path) == before and not list(Path.cwd().glob(".*.tmp"))


@pytest.mark.parametrize("header_args", [["--header", "{d}/a-file/h.h"], ["--header", "{tmp}/h.h", "--prefix", "1x"]])
def test_export_failing_header_leaves_no_artifact(files, tmp_path, capsys, header_args):
    d, art = files
    argv = [a.format(d=d, tmp=tmp_path) for a in header_args]
    rc, out, err = run_cli(["export", d / "m.int.npz", tmp_path / "o.kws", *argv], capsys)
    assert rc == 2 and not (tmp_path / "o.kws").exists()


@pytest.mark.parametrize("value", ["nan", "7", "-1"])
def test_export_rejects_a_threshold_outside_0_1(files, tmp_path, capsys, value):
    d, art = files
    rc, out, err = run_cli(["export", d / "m.int.npz", tmp_path / "o.kws", "--threshold", value], capsys)
    assert rc == 2 and "--threshold" in err and not (tmp_path / "o.kws").exists()


def test_console_entry_as_a_process(files, tmp_path):
    """`python -m kwslib.cli`: bad input is one line on stderr and status 2, no traceback."""
    import subprocess

    d, art = files
    (tmp_path / "bad.wav").write_bytes(BAD_WAVS["header claims 4 GB"][0])
    res = subprocess.run([sys.executable, "-m", "kwslib.cli", "detect", str(art), str(tmp_path / "bad.wav")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr
    assert res.stderr.strip() == (f"kwslib: error: {tmp_path / 'bad.wav'}: truncated: header declares "
                                  "4294967280 data bytes, file holds 32000")


def test_artifact_loader_hostile_files(files, tmp_path):
    d, art = files
    data = art.read_bytes()
    cases = {
        "missing": (None, "artifact file does not exist"),
        "zero-length": (b"", "bad magic"),
        "magic only": (data[:8], "truncated"),
        "header only": (data[:64], "shorter than header and trailer"),
        "4 GB claimed": (patched(data, 16, "<Q", 4 << 30), "truncated: header declares 4294967296 bytes"),
        "2^64 - 1 claimed": (patched(data, 16, "<Q", (1 << 64) - 1), "truncated: header declares"),
        "version 0": (patched(data, 8, "<I", 0), "invalid artifact format version 0"),
        "version 2^32 - 1": (patched(data, 8, "<I", 0xFFFFFFFF), "newer than this kwslib supports"),
        "one flipped bit": (patched(data, 700, "<B", data[700] ^ 4), "checksum mismatch"),
        "a WAV file": (GOOD, "bad magic"),
        "trailing byte": (data + b"\0", "trailing bytes"),
    }
    for name, (content, message) in cases.items():
        p = tmp_path / f"{name}.kws"
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(ArtifactError, match=message) as info:
            export.load_artifact(p)
        assert str(info.value).startswith(f"{p}: "), name
    with pytest.raises(ArtifactError, match="is a directory"):
        export.load_artifact(tmp_path)


def test_atomic_writes_refuse_unwritable_targets(tmp_path):
    """Every writer goes through kwslib.io.atomic_path: a folder or a path through a file is refused up front."""
    from kwslib.io import atomic_write_json

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for target, error, message in [(tmp_path, IsADirectoryError, "it is a folder"),
                                   (a_file / "x.json", NotADirectoryError, f"{a_file} is a file, not a folder"),
                                   (a_file / "a" / "b" / "x.json", NotADirectoryError, "is a file, not a folder")]:
        with pytest.raises(error, match=message):
            atomic_write_json(target, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"] and a_file.read_text() == "x"
    if os.geteuid() != 0:  # root writes anywhere: a read-only folder only stops other users
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(PermissionError):
            atomic_write_json(ro / "x.json", {})
        assert list(ro.iterdir()) == []
