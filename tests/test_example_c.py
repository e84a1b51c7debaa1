"""examples/c: the firmware-style detector (model header compiled in, raw PCM in) prints what `kwslib detect`
prints, allocates nothing after create, and runs as an aarch64 build under qemu where the tools exist."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kwslib import cli
from kwslib.frontend.audio import write_wav
from kwslib.deploy.engine import random_int_model
from kwslib.quant.intfile import save_int_model

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "c"
CC = shutil.which("cc") or shutil.which("gcc")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not CC or not shutil.which("make"):
        pytest.skip("no C compiler or make")
    d = tmp_path_factory.mktemp("example_c")
    m = random_int_model(4, seed=7)
    m.norm_mean[:] = -6.0
    m.norm_std[:] = 2.0
    save_int_model(d / "m.int.npz", m)
    rng = np.random.default_rng(7)
    t = np.arange(16000 * 9) / 16000
    x = 0.02 * rng.normal(size=len(t)) + 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(1.3 * t) > 0)
    write_wav(d / "a.wav", x)
    import soundfile as sf

    sf.read(d / "a.wav", dtype="int16")[0].tofile(d / "a.raw")
    return d


def make(d, target, **kw):
    args = ["make", "-s", "-C", str(EXAMPLE), target, f"MODEL={d / 'm.int.npz'}", f"BUILD={d / 'build'}",
            f"KWSLIB={sys.executable} -m kwslib.cli"] + [f"{k}={v}" for k, v in kw.items()]
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def kwslib_detect(d, capsys, threshold="0.05", frontend="int"):
    rc = cli.main(["detect", str(d / "build" / "model.kws"), str(d / "a.wav"), "--threshold", threshold,
                   "--backend", "numpy", "--quiet", "--frontend", frontend])
    out = capsys.readouterr().out
    assert rc == 0 and out.strip(), "the test needs detections"
    return out


def test_host_build_prints_what_kwslib_detect_prints(setup, capsys):
    d = setup
    make(d, "host")
    header = (d / "build" / "model.h").read_text()
    assert "KWS_MODEL_ARTIFACT_BYTES" in header and "#define KWS_MODEL_HOP_LENGTH 160" in header
    for chunk in ("1600", "37"):
        res = subprocess.run([str(d / "build" / "kws_detect"), "-t", "0.05", "-c", chunk, str(d / "a.raw")],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert res.stdout == kwslib_detect(d, capsys)
        assert "allocations after create: 0" in res.stderr and "RAM" in res.stderr
    with open(d / "a.raw", "rb") as f:  # stdin, as a microphone stream
        res = subprocess.run([str(d / "build" / "kws_detect"), "-t", "0.05", "-"], stdin=f, capture_output=True,
                             text=True, timeout=120)
    assert res.stdout == kwslib_detect(d, capsys)
    res = subprocess.run([str(d / "build" / "kws_detect"), "-t", "0.05", "-f", "float", str(d / "a.raw")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout == kwslib_detect(d, capsys, frontend="float")  # the reference front end
    for flag in (["-m", "f16"], ["-f", "double"]):
        bad = subprocess.run([str(d / "build" / "kws_detect"), *flag], capture_output=True, text=True)
        assert bad.returncode == 2 and "usage" in bad.stderr


def test_aarch64_build_under_qemu(setup, capsys, neon_tools):
    _, qemu = neon_tools
    d = setup
    make(d, "aarch64")
    res = subprocess.run([qemu, str(d / "build" / "kws_detect_aarch64"), "-t", "0.05", str(d / "a.raw")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert res.stdout == kwslib_detect(d, capsys)  # NEON dot-product build, integer front end, same detections
    assert "allocations after create: 0" in res.stderr
    res = subprocess.run([qemu, str(d / "build" / "kws_detect_aarch64"), "-t", "0.05", "-f", "float", str(d / "a.raw")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and res.stdout == kwslib_detect(d, capsys, frontend="float")
