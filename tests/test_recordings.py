"""Recordings as people have them, read for `kwslib detect`: any rate, channels, sample format, container.

References: the samples that were written (exact or to the format's quantization step), an analytic
band-limited signal at 16 kHz, and scipy's polyphase resampler (an independent implementation).
"""
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from kwslib.frontend.audio import check_recording, describe_recording, recording_chunks
from kwslib.errors import AudioError

FREQS = (310.0, 1230.0, 3100.0)  # well inside every rate's band (the lowest rate, 8 kHz, passes < 4 kHz)


def tones(rate: int, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.2 * sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate(FREQS))).astype(np.float32)


def read_all(path, chunk_seconds=0.1) -> np.ndarray:
    return np.concatenate(list(recording_chunks(path, 16000, chunk_seconds)))


@pytest.mark.parametrize("fmt,subtype,tol", [
    ("WAV", "PCM_16", 0.0), ("WAV", "PCM_U8", 1 / 128), ("WAV", "PCM_24", 2 ** -23), ("WAV", "PCM_32", 2 ** -31),
    ("WAV", "FLOAT", 0.0), ("WAV", "DOUBLE", 1e-7), ("FLAC", "PCM_16", 2 ** -15), ("FLAC", "PCM_24", 2 ** -23)])
def test_sample_formats_at_16k_read_back_the_samples(tmp_path, fmt, subtype, tol):
    x = tones(16000)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y = read_all(path)
    assert y.dtype == np.float32 and len(y) == len(x)
    if subtype == "PCM_16":  # the training path's exact rule: int16 / 32768
        ref = sf.read(path, dtype="int16")[0].astype(np.float32) / 32768.0
        assert np.array_equal(y, ref)
    else:
        assert np.max(np.abs(y - x)) <= tol + 1e-7


def test_ogg_vorbis_is_decoded(tmp_path):
    x = tones(16000)
    path = tmp_path / "x.ogg"
    sf.write(path, x, 16000, format="OGG", subtype="VORBIS")
    y = read_all(path)
    assert abs(len(y) - len(x)) <= 16
    n = min(len(x), len(y))
    snr = 10 * np.log10(np.sum(x[:n] ** 2) / np.sum((x[:n] - y[:n]) ** 2))
    assert snr > 20, snr  # lossy, but the same signal


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampled_to_16k_matches_the_signal_and_a_reference_resampler(tmp_path, rate):
    path = tmp_path / "x.wav"
    sf.write(path, tones(rate), rate, subtype="FLOAT")
    y = read_all(path)
    want = tones(16000)
    assert abs(len(y) - len(want)) <= 1
    n = min(len(y), len(want))
    core = slice(800, n - 800)  # away from the filter's start-up and end
    assert np.max(np.abs(y[:n][core] - want[:n][core])) < 2e-3
    g = np.gcd(rate, 16000)
    ref = resample_poly(tones(rate).astype(np.float64), 16000 // g, rate // g)
    m = min(n, len(ref))
    assert np.max(np.abs(y[:m][800:m - 800] - ref[:m][800:m - 800])) < 3e-3


def test_resampling_does_not_depend_on_the_chunk_size(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, tones(44100, 3.0), 44100, subtype="PCM_24")
    a, b = read_all(path, 0.037), read_all(path, 1.0)
    assert len(a) == len(b) and np.allclose(a, b, atol=1e-6)


def test_stereo_is_downmixed_to_the_mean(tmp_path):
    x = tones(16000)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([x, -0.5 * x], axis=1), 16000, subtype="FLOAT")
    y = read_all(path)
    assert np.allclose(y, 0.25 * x, atol=1e-7)
    _, info = check_recording(path)
    assert "downmixed to mono" in describe_recording(info, 16000)


def test_description_names_each_conversion(tmp_path):
    sf.write(tmp_path / "a.wav", tones(16000), 16000, subtype="PCM_16")
    sf.write(tmp_path / "b.flac", np.zeros((4410, 2)), 44100, subtype="PCM_24")
    d_a = describe_recording(check_recording(tmp_path / "a.wav")[1], 16000)
    d_b = describe_recording(check_recording(tmp_path / "b.flac")[1], 16000)
    assert d_a == "16000 Hz mono WAV PCM_16, no conversion"
    assert "44100 Hz stereo FLAC PCM_24" in d_b and "resampled to 16000 Hz" in d_b and "downmixed" in d_b


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_sample_is_an_error_with_its_time(tmp_path, bad):
    x = tones(16000)
    x[12000] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan.wav: non-finite sample .* at 0.750 s"):
        read_all(path)


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 50)
    for name, msg in (("missing.wav", "does not exist"), ("empty.wav", "empty"), ("junk.wav", "not a readable")):
        with pytest.raises(AudioError, match=msg) as e:
            check_recording(tmp_path / name)
        assert name in str(e.value)
    with pytest.raises(AudioError, match="directory"):
        check_recording(tmp_path)
    with pytest.raises(TypeError):
        check_recording(b"RIFF")
