"""The whole streaming detector: the C pipeline (front end, window, network, detector) against the numpy
specification, bit for bit where the specification says so."""
import os
from pathlib import Path

import numpy as np
import pytest

from kwslib.deploy import export
from kwslib.deploy.ckernels import availability
from kwslib.deploy.engine import float_forward, float_layers, random_int_model
from kwslib.quant.intspec import softmax
from kwslib.errors import ArtifactError, ConfigError
from kwslib.frontend.features import FeatureConfig, logmel_numpy
from kwslib.deploy.pipeline import CFrontend, CPipeline, NumpyPipeline, as_pcm16, open_pipeline
from kwslib.quant.intspec import quantize_input

pytestmark = pytest.mark.skipif(not availability()[0], reason=f"no C kernels here: {availability()[1]}")


def signal(seconds=8.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.02 * rng.normal(size=len(t)) + 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(1.3 * t) > 0)
    x += 0.2 * np.sin(2 * np.pi * (300 + 200 * t) * t) * (np.cos(0.7 * t) > 0.3)
    x[16000:19000] = 0.0  # digital silence: every mel energy at the log floor
    x[40000:40400] = 0.999  # a clipped burst
    return as_pcm16(x)


def model(bits=4, seed=0, **kw):
    m = random_int_model(bits, seed=seed, **kw)
    m.norm_mean[:] = -6.0  # roughly the log-mel level of the test signals
    m.norm_std[:] = 2.0
    return m


@pytest.mark.parametrize("feat", [FeatureConfig(), FeatureConfig(n_mels=32, win_ms=30.0, hop_ms=20.0, n_fft=512),
                                  FeatureConfig(win_ms=10.0, hop_ms=25.0, n_fft=256, fmin=0.0, fmax=8000.0)])
def test_c_front_end_equals_the_numpy_specification(feat):
    pcm = signal()
    ref = logmel_numpy(pcm.astype(np.float32) / 32768.0, feat)
    for chunk in (len(pcm), 1601, 160, 37):
        fe = CFrontend(feat)
        got = np.concatenate([fe.push(pcm[i:i + chunk]) for i in range(0, len(pcm), chunk)])
        assert got.shape == ref.shape
        # float64 in both, rounded to float32: the FFTs (KISS vs numpy's) differ by ~1e-16 relative
        assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))
        assert np.mean(got == ref) > 0.9999
    q = lambda a: quantize_input((a + 6.0) / 2.0, 0.05, 0)
    assert np.array_equal(q(got), q(ref))  # the int8 input codes are identical
    assert fe.bytes > 0


def test_c_front_end_holds_no_more_than_one_window():
    fe = CFrontend(FeatureConfig())
    assert fe.push(np.zeros(399, np.int16)).shape == (0, 40)  # 399 < 400: no frame yet
    assert fe.push(np.zeros(1, np.int16)).shape == (1, 40)
    assert fe.push(np.zeros(159, np.int16)).shape == (0, 40)
    assert fe.push(np.zeros(1, np.int16)).shape == (1, 40)
    with pytest.raises(ConfigError):
        CFrontend(FeatureConfig(win_ms=25.0, n_fft=256))  # the window does not fit the FFT: refused by C


def detections(pipe, pcm, chunk):
    out = []
    for i in range(0, len(pcm), chunk):
        out += pipe.push(pcm[i:i + chunk])
    return out


@pytest.mark.parametrize("frontend", ["int", "float"])
@pytest.mark.parametrize("bits,threshold", [(4, 0.05), (4, 0.4), (8, 0.2), (1, 0.3)])
def test_c_pipeline_detections_equal_the_numpy_specification(bits, threshold, frontend):
    m = model(bits, seed=bits)
    art = export.from_bytes(export.to_bytes(m))
    pcm = signal(12.0, seed=bits)
    ref = detections(NumpyPipeline(art, threshold, 3, 25, frontend=frontend), pcm, 1600)
    assert len(ref) > 3, "the test needs detections"
    for chunk in (1600, 999, 16000):
        got = detections(CPipeline(art, threshold, 3, 25, frontend=frontend), pcm, chunk)
        assert got == ref  # times, keywords and scores, exactly


def test_scores_are_the_numpy_engines_posteriors():
    """The C scores are the smoothed softmax of the integer engine on the same windows (not just close)."""
    from kwslib.deploy.engine import Detector, Engine
    from kwslib.frontend.streaming import sliding_windows

    m = model(5, seed=3)
    pcm = signal(6.0, seed=3)
    post = Engine(m, backend="numpy")(sliding_windows(logmel_numpy(pcm.astype(np.float32) / 32768.0), 96, 4))
    want = Detector(m.class_names, 0.0, 3, 1).push(post)  # threshold 0, lockout 1: every keyword, every step
    got = CPipeline(export.to_bytes(m), 0.0, 3, 1, frontend="float").push(pcm)
    assert [(s, k, v) for s, k, v in want] == [(round((t * 16000 - 400) / 160 - 95) // 4, k, v) for t, k, v in got]


def test_kernels_modes_and_reset():
    m = model(4, seed=5)
    blob = export.to_bytes(m)
    pcm = signal(6.0, seed=5)
    a = CPipeline(blob, 0.1, 3, 25, mode="int")
    b = CPipeline(blob, 0.1, 3, 25, mode="s8")  # bit-exact kernels: the same int8 logits
    first = a.push(pcm)
    assert first and first == b.push(pcm)
    a.reset()
    assert a.push(pcm) == first
    assert a.windows == ((len(pcm) - 400) // 160 + 1 - 96) // 4 + 1  # windows since the reset
    assert 0 < a.ram_bytes < 200_000 and a.weight_bytes > 0


def test_float32_mode_runs_the_float_network():
    m = model(8, seed=6)
    pcm = signal(4.0, seed=6)
    det = CPipeline(export.to_bytes(m), 0.0, 1, 1, mode="f32", frontend="float").push(pcm)
    from kwslib.frontend.streaming import sliding_windows

    w = sliding_windows(logmel_numpy(pcm.astype(np.float32) / 32768.0), 96, 4)
    post = softmax(float_forward(float_layers(m), m.input_vector(w)))
    kw = [j for j, c in enumerate(m.class_names) if not c.startswith("_")]
    want = post[:, kw].ravel()
    got = np.array([s for _, _, s in det])
    assert len(got) == len(want) and np.max(np.abs(got - want)) < 1e-4  # float32 sums in another order


def test_bad_input_is_refused_clearly(tmp_path):
    m = model(4)
    blob = bytearray(export.to_bytes(m))
    blob[300] ^= 0xFF
    with pytest.raises(ArtifactError, match="checksum|sha256|damaged"):
        CPipeline(bytes(blob), 0.5, 3, 25)
    with pytest.raises(ArtifactError, match="does not exist|cannot read"):
        CPipeline(tmp_path / "none.kws", 0.5, 3, 25)
    with pytest.raises(ConfigError, match="mode"):
        CPipeline(export.to_bytes(m), 0.5, 3, 25, mode="f16")
    with pytest.raises(ArtifactError, match="refused"):
        CPipeline(export.to_bytes(m), 1.5, 3, 25)  # threshold outside [0, 1]: the C create says no
    with pytest.raises(ConfigError, match="backend"):
        open_pipeline(export.from_bytes(export.to_bytes(m)), 0.5, 3, 25, backend="gpu")
    assert CPipeline(export.to_bytes(m), 0.5, 3, 25).push(np.zeros(0, np.int16)) == []


def test_pcm16_conversion():
    assert np.array_equal(as_pcm16(np.array([0.0, 0.5, -1.0, 1.0, -2.0])), [0, 16384, -32768, 32767, -32768])
    x = np.array([1, -7], np.int16)
    assert as_pcm16(x) is x


def _real_streams():
    """Real audio streams of this machine's data (env vars), or none."""
    from kwslib.frontend.audio import read_wav

    out = {}
    root = os.environ.get("KWS_SC12_ROOT")
    if root and Path(root).is_dir():
        files = sorted(Path(root).glob("*/*.wav"))[::40][:60]
        out["sc12 clips"] = np.concatenate([read_wav(f) for f in files])
    neg = os.environ.get("KWS_REAL_NEGATIVES_ROOT")
    if neg and Path(neg).is_dir():
        import soundfile as sf

        files = sorted(Path(neg).rglob("*.wav"))[::60][:20]
        out["real negatives"] = np.concatenate([sf.read(f, dtype="float32", always_2d=True)[0].mean(axis=1)
                                                for f in files if sf.info(f).samplerate == 16000])
    return out


@pytest.mark.parametrize("name", sorted(_real_streams()) or ["none"])
def test_real_speech_streams_give_identical_detections(name):
    streams = _real_streams()
    if name not in streams:
        pytest.skip("KWS_SC12_ROOT / KWS_REAL_NEGATIVES_ROOT not set")
    pcm = as_pcm16(streams[name])
    m = model(4, seed=11)
    feats = logmel_numpy(pcm.astype(np.float32) / 32768.0)
    m.norm_mean[:], m.norm_std[:] = feats.mean(axis=0), feats.std(axis=0) + 1e-3
    art = export.from_bytes(export.to_bytes(m))
    for frontend in ("int", "float"):
        ref = detections(NumpyPipeline(art, 0.15, 3, 25, frontend=frontend), pcm, 1600)
        assert ref and detections(CPipeline(art, 0.15, 3, 25, frontend=frontend), pcm, 1000) == ref


def test_keyword_hits_and_front_end_comparison():
    from kwslib.deploy.pipeline import compare_frontends, keyword_hits, stream_detections

    names = ["_silence_", "_unknown_", "yes", "no"]
    segs = [(0, 16000, 2), (16000, 32000, 0), (32000, 48000, 3), (48000, 64000, 2)]
    det = [(1.5, "yes", 0.9), (2.9, "no", 0.8), (3.5, "no", 0.7)]  # "no" at 2.9 s is in [2, 4] s
    assert keyword_hits(det, segs, names, 16000).tolist() == [True, True, False]  # the silence segment is skipped
    assert keyword_hits(det, segs, names, 16000, slack_s=0.0).tolist() == [False, True, False]
    assert keyword_hits([(4.2, "yes", 0.9)], segs, names, 16000, slack_s=0.1).tolist() == [False, False, False]

    m = model(4, seed=2)
    art = export.from_bytes(export.to_bytes(m))
    pcm = signal(10.0, seed=2)
    ref = stream_detections(CPipeline(art, 0.05, 3, 25, frontend="float"), pcm, 999)
    assert ref == detections(CPipeline(art, 0.05, 3, 25, frontend="float"), pcm, 999)
    neg = compare_frontends(art, 0.05, 3, 25, pcm)
    assert neg["detections"]["float"] == len(ref) > 0
    assert neg["false_detections_per_hour"]["float"] == pytest.approx(len(ref) / (10.0 / 3600))
    assert neg["shared_detections"] <= min(neg["detections"].values())
    assert neg["identical"] == (neg["shared_detections"] == neg["detections"]["int"] == neg["detections"]["float"])
    segs = [(s, s + 16000, k % len(m.class_names)) for k, s in enumerate(range(0, 160000 - 16000, 16000))]
    kw = compare_frontends(art, 0.05, 3, 25, pcm, segments=segs)
    n_kw = sum(not m.class_names[c].startswith("_") for *_, c in segs)
    assert kw["keyword_segments"] == n_kw and kw["hits"]["int"] - kw["int_only"] == kw["hits"]["float"] - kw["float_only"]


def test_frontend_study_reads_codes_and_detections_per_model():
    from kwslib.frontend.intfrontend import log2_mel
    from kwslib.deploy.pipeline import CIntFrontend, frontend_study

    fe = CIntFrontend(FeatureConfig())
    a, b = signal(3.0, seed=8), signal(2.0, seed=9)
    fe.push(a)
    assert np.array_equal(fe.frames(b), log2_mel(b))  # frames() starts a new stream
    arts = {}
    for bits in (8, 4):
        m = model(bits, seed=bits)
        m.input_scale, m.input_zero_point = 0.05, -20
        arts[f"w{bits}"] = export.from_bytes(export.to_bytes(m, extra={"threshold": 0.05}))
    pcm = signal(12.0, seed=4)
    segs = [(s, s + 16000, 2 + k % 10) for k, s in enumerate(range(0, 150000, 20000))]
    res = frontend_study(arts, {"speech": signal(8.0, seed=5)}, keyword_stream=(pcm, segs))
    for name, r in res["models"].items():
        assert set(r["codes"]) == {"speech", "keyword_stream"} and set(r["detections"]) == {"speech", "keyword_stream"}
        frames = (8 * 16000 - 400) // 160 + 1
        assert r["codes"]["speech"]["entries"] == ((frames - 96) // 4 + 1) * 960  # every window, every input
        assert r["detections"]["keyword_stream"]["keyword_segments"] == len(segs) and r["threshold"] == 0.05
    n = sum(c["entries"] for r in res["models"].values() for c in r["codes"].values())
    eq = sum(c["entries"] * c["equal_share"] for r in res["models"].values() for c in r["codes"].values())
    assert res["codes_equal_share"] == pytest.approx(eq / n) and res["codes_max_abs_diff"] <= 1
    numpy_res = frontend_study(arts, {"speech": signal(8.0, seed=5)}, backend="numpy")
    assert numpy_res["models"]["w4"]["codes"]["speech"] == res["models"]["w4"]["codes"]["speech"]
    assert numpy_res["models"]["w4"]["detections"]["speech"] == res["models"]["w4"]["detections"]["speech"]
