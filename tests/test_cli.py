"""The kwslib console command: detect, export, bench; bad input -> one line, exit status 2."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from kwslib import cli, export
from kwslib.audio import write_wav
from kwslib.engine import random_int_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    m = random_int_model(4, seed=0)
    m.norm_mean[:] = -6.0  # roughly the log-mel level of the test audio
    m.norm_std[:] = 2.0
    art = export.save_artifact(d / "m.kws", m, extra={"threshold": 0.3})
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 7) / 16000
    audio = (0.02 * rng.normal(size=len(t)) + 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(t) > 0)).astype(np.float32)
    write_wav(d / "a.wav", audio)
    return d, art, m


def run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_detect_streams_any_length(files, capsys):
    d, art, m = files
    rc, out, err = run(["detect", str(art), str(d / "a.wav"), "--threshold", "0.05"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines, "expected detections at a low threshold"
    for line in lines:
        t, kw, score = line.split()
        assert t.endswith("s") and 0 < float(t[:-1]) <= 7.0 + 1e-6
        assert kw in m.class_names and not kw.startswith("_") and 0.05 <= float(score) <= 1
    assert "backend" in err and "detection(s)" in err
    # same detections whatever the chunk size and backend
    rc2, out2, _ = run(["detect", str(art), str(d / "a.wav"), "--threshold", "0.05", "--chunk-ms", "37",
                        "--backend", "numpy", "--quiet"], capsys)
    assert rc2 == 0 and out2 == out


def test_detect_matches_offline_scores(files, capsys):
    """The streamed detections equal Detector over posteriors of the whole file's windows."""
    from kwslib.engine import Detector, Engine
    from kwslib.features import FeatureConfig, logmel_numpy
    from kwslib.model import sliding_windows

    d, art, m = files
    audio = sf.read(d / "a.wav", dtype="int16")[0].astype(np.float32) / 32768
    post = Engine(m, backend="numpy")(sliding_windows(logmel_numpy(audio, FeatureConfig()), 96, 4))
    det = Detector(m.class_names, 0.05, 3, 25).push(post)
    rc, out, _ = run(["detect", str(art), str(d / "a.wav"), "--threshold", "0.05", "--quiet"], capsys)
    assert [l.split()[1] for l in out.splitlines()] == [k for _, k, _ in det]


def test_detect_uses_the_stored_threshold(files, capsys):
    d, art, _ = files
    rc, out, err = run(["detect", str(art), str(d / "a.wav")], capsys)
    assert rc == 0 and "threshold 0.3" in err


@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "rate", "stereo", "empty", "dir"])
def test_detect_bad_wav(files, tmp_path, capsys, case):
    d, art, _ = files
    wav = tmp_path / "x.wav"
    if case == "corrupt":
        wav.write_bytes(b"RIFF0000WAVEjunkjunkjunk" * 10)
    elif case == "truncated":
        wav.write_bytes((d / "a.wav").read_bytes()[:3000])
    elif case == "rate":
        sf.write(wav, np.zeros(8000), 8000, subtype="PCM_16")
    elif case == "stereo":
        sf.write(wav, np.zeros((16000, 2)), 16000, subtype="PCM_16")
    elif case == "empty":
        wav.write_bytes(b"")
    elif case == "dir":
        wav = tmp_path
    rc, out, err = run(["detect", str(art), str(wav)], capsys)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(wav) in err and "Traceback" not in err


def test_detect_bad_artifact(files, tmp_path, capsys):
    d, art, _ = files
    data = bytearray(art.read_bytes())
    data[500] ^= 0xFF
    bad = tmp_path / "bad.kws"
    bad.write_bytes(bytes(data))
    for model in (bad, tmp_path / "none.kws", d / "a.wav"):
        rc, out, err = run(["detect", str(model), str(d / "a.wav")], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and str(model) in err


def test_detect_bad_threshold(files, capsys):
    d, art, _ = files
    rc, _, err = run(["detect", str(art), str(d / "a.wav"), "--threshold", "1.5"], capsys)
    assert rc == 2 and "threshold" in err


def test_export_from_stage2_npz(tmp_path, capsys):
    from kwslib.quant.stage2 import save_int_model

    m = random_int_model(5, seed=1)
    src = tmp_path / "stage2_w5.int.npz"
    save_int_model(src, m)
    rc, out, err = run(["export", str(src), str(tmp_path / "m.kws"), "--header", str(tmp_path / "m.h"),
                        "--threshold", "0.8"], capsys)
    assert rc == 0, err
    art = export.load_artifact(tmp_path / "m.kws")
    assert art.extra["threshold"] == 0.8 and art.storage == [1, 1, 1, 1]
    assert all(np.array_equal(a.w_q, b.w_q) for a, b in zip(art.model.layers, m.layers))
    assert "kws_model_l0_weights" in (tmp_path / "m.h").read_text()
    rc, out, err = run(["export", str(tmp_path / "nothing.npz"), str(tmp_path / "x.kws")], capsys)
    assert rc == 2 and "nothing.npz" in err and len(err.strip().splitlines()) == 1


def test_console_script_and_bench(tmp_path):
    """`python -m kwslib.cli bench` end to end (tiny settings), as a subprocess: exit 0 and the JSON."""
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "kwslib.cli", "bench", "--profile", "test", "--results-dir",
                          str(tmp_path), "--rounds", "1", "--block-ms", "1", "--batches", "1", "--no-neon",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    cpu = data["summary"]["cpu"]["x86_us_per_inference"]
    assert cpu["float32_numpy"] > 0 and cpu["onnxruntime_int8"] > 0 and cpu["kwslib_int8_numpy"] > 0
    assert set(data["summary"]["memory_bytes"]["packed"]) == {"8", "5", "4", "1"}
    assert data["model_source"].startswith("random")
    res = subprocess.run([sys.executable, "-m", "kwslib.cli", "detect"], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr


@pytest.mark.parametrize("argv", [["--chunk-ms", "inf"], ["--chunk-ms", "nan"], ["--chunk-ms", "-5"],
                                  ["--smooth", "0"], ["--refractory", "nan"], ["--refractory", "-1"]])
def test_detect_rejects_bad_numeric_options(files, capsys, argv):
    d, art, _ = files
    rc, out, err = run(["detect", str(art), str(d / "a.wav"), "--quiet", *argv], capsys)
    assert rc == 2 and out == "" and argv[0] in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["--threshold", "nan"], ["--threshold", "7"], ["--header", "{tmp}/h.h", "--prefix", "1x"],
                                  ["--header", "{tmp}/a-file/h.h"]])
def test_export_writes_nothing_on_bad_options(tmp_path, capsys, argv):
    from kwslib.quant.stage2 import save_int_model

    src = tmp_path / "m.int.npz"
    save_int_model(src, random_int_model(4, seed=2))
    (tmp_path / "a-file").write_text("x")
    rc, out, err = run(["export", str(src), str(tmp_path / "o.kws"), *[a.format(tmp=tmp_path) for a in argv]], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.kws").exists() and not (tmp_path / "h.h").exists()
