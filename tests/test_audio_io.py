import json
import os

import numpy as np
import pytest
import soundfile as sf

from kwslib.frontend.audio import check_audio, fit_to_clip, read_wav, write_wav
from kwslib.errors import AudioError
from kwslib.io import atomic_path, atomic_write_json


def _wav(path, data, sr=16000, subtype="PCM_16"):
    sf.write(path, data, sr, subtype=subtype, format="WAV")
    return path


def test_read_wav_roundtrip_exact(tmp_path, rng):
    ints = rng.integers(-32768, 32767, 16000).astype(np.int16)
    p = _wav(tmp_path / "a.wav", ints)
    x = read_wav(p)
    assert x.dtype == np.float32 and x.shape == (16000,)
    np.testing.assert_array_equal((x * 32768).astype(np.int16), ints)


def test_read_wav_from_bytes(tmp_path):
    p = _wav(tmp_path / "a.wav", np.zeros(100, np.int16))
    assert len(read_wav(p.read_bytes())) == 100


@pytest.mark.parametrize("case,match", [
    ("stereo", "2 channels"),
    ("rate", "sample rate 22050"),
    ("u8", "PCM_U8"),
    ("float", "FLOAT"),
    ("empty_file", "empty"),
    ("garbage", "not a readable WAV"),
    ("no_samples", "no samples"),
    ("truncated", "truncated"),
    ("missing", "does not exist"),
])
def test_read_wav_bad_inputs_name_file_and_problem(tmp_path, case, match):
    p = tmp_path / f"{case}.wav"
    if case == "stereo":
        _wav(p, np.zeros((100, 2), np.int16))
    elif case == "rate":
        _wav(p, np.zeros(100, np.int16), sr=22050)
    elif case == "u8":
        _wav(p, np.zeros(100), subtype="PCM_U8")
    elif case == "float":
        _wav(p, np.zeros(100, np.float32), subtype="FLOAT")
    elif case == "empty_file":
        p.write_bytes(b"")
    elif case == "garbage":
        p.write_bytes(b"this is not audio at all" * 10)
    elif case == "no_samples":
        _wav(p, np.zeros(0, np.int16))
    elif case == "truncated":
        _wav(p, np.ones(16000, np.int16))
        p.write_bytes(p.read_bytes()[:20000])
    with pytest.raises(AudioError, match=match) as info:
        read_wav(p)
    assert str(p) in str(info.value)


def test_check_audio():
    with pytest.raises(AudioError, match="NaN"):
        check_audio(np.array([0.0, np.nan]))
    with pytest.raises(AudioError, match="empty"):
        check_audio(np.zeros(0))
    with pytest.raises(AudioError, match="mono"):
        check_audio(np.zeros((2, 10)))
    np.testing.assert_allclose(check_audio(np.array([16384], np.int16)), [0.5])


def test_fit_to_clip_pads_and_crops_centred():
    x = np.arange(1, 5, dtype=np.float32)
    np.testing.assert_array_equal(fit_to_clip(x, 8), [0, 0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(fit_to_clip(np.arange(10, dtype=np.float32), 4), [3, 4, 5, 6])


def test_write_wav_roundtrip(tmp_path):
    x = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    write_wav(tmp_path / "o.wav", x)
    np.testing.assert_allclose(read_wav(tmp_path / "o.wav"), x, atol=1 / 32768)


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "s.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["s.json"]
