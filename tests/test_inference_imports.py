"""The inference path loads no training framework: `kwslib detect`, `kwslib export` and `kwslib.deploy.engine`
import neither torch nor scipy nor datasets (checked in a fresh interpreter, through sys.modules)."""
import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from kwslib.deploy.engine import random_int_model
from kwslib.quant.intfile import save_int_model

CHECK = """
import sys, json
from kwslib import cli
rcs = [cli.main(a) for a in json.loads(sys.argv[1])]
import kwslib.deploy.engine, kwslib.deploy.export, kwslib.frontend.features, kwslib.frontend.audio
print(json.dumps({"rcs": rcs, "loaded": sorted(m for m in ("torch", "scipy", "datasets", "pandas", "matplotlib")
                                                 if m in sys.modules)}))
"""


def test_detect_export_and_engine_import_no_training_stack(tmp_path):
    npz = tmp_path / "m.int.npz"
    save_int_model(npz, random_int_model(4, seed=0))
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "a.wav", 0.1 * rng.normal(size=(44100 * 2, 2)), 44100, subtype="PCM_24")  # resampled + downmixed
    kws = str(tmp_path / "m.kws")
    calls = [["export", str(npz), kws, "--header", str(tmp_path / "m.h")],
             ["detect", kws, str(tmp_path / "a.wav"), "--backend", "numpy", "--quiet"],
             ["detect", kws, str(tmp_path / "a.wav"), "--backend", "auto", "--quiet"]]
    res = subprocess.run([sys.executable, "-c", CHECK, json.dumps(calls)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["rcs"] == [0, 0, 0], res.stderr[-2000:]
    assert got["loaded"] == [], f"the inference path imported {got['loaded']}"


def test_the_check_would_see_torch():
    """The probe itself works: importing the training stack shows up in sys.modules."""
    res = subprocess.run([sys.executable, "-c", "import sys, kwslib.model; print('torch' in sys.modules)"],
                         capture_output=True, text=True, timeout=300)
    assert res.stdout.strip() == "True"
