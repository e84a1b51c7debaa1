"""The kwslib console command: detect, export, bench; bad input -> one line, exit status 2."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from kwslib import cli
from kwslib.deploy import export
from kwslib.frontend.audio import write_wav
from kwslib.deploy.engine import random_int_model


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


def test_detect_reads_mp3(files, tmp_path, capsys):
    """MP3 (libsndfile >= 1.1 through soundfile) reads like any other format: downmixed, resampled, said so,
    and its detections are those of the same audio as a WAV, within the codec's loss (same keywords here)."""
    d, art, m = files
    audio = sf.read(d / "a.wav", dtype="float32")[0]
    mp3 = tmp_path / "a.mp3"
    sf.write(mp3, np.stack([audio, audio], 1), 16000, format="MP3")
    rc, out, err = run(["detect", str(art), str(mp3), "--threshold", "0.05", "--backend", "numpy"], capsys)
    assert rc == 0, err
    assert "MP3" in err and "downmixed to mono" in err
    rc, wav_out, _ = run(["detect", str(art), str(d / "a.wav"), "--threshold", "0.05", "--backend", "numpy"], capsys)
    assert {l.split()[1] for l in out.splitlines()} == {l.split()[1] for l in wav_out.splitlines()}


def test_detect_matches_offline_scores(files, capsys):
    """The streamed detections equal Detector over posteriors of the whole file's windows."""
    from kwslib.deploy.engine import Detector, Engine
    from kwslib.frontend.features import FeatureConfig, logmel_numpy
    from kwslib.model import sliding_windows

    d, art, m = files
    audio = sf.read(d / "a.wav", dtype="int16")[0].astype(np.float32) / 32768
    post = Engine(m, backend="numpy")(sliding_windows(logmel_numpy(audio, FeatureConfig()), 96, 4))
    det = Detector(m.class_names, 0.05, 3, 25).push(post)
    rc, out, _ = run(["detect", str(art), str(d / "a.wav"), "--threshold", "0.05", "--quiet", "--frontend", "float"],
                     capsys)
    assert [l.split()[1] for l in out.splitlines()] == [k for _, k, _ in det]
    # the integer front end (the default): the same rule over the posteriors of its int8 codes
    from kwslib.frontend import intfrontend
    from kwslib.quant.intspec import softmax

    pcm = sf.read(d / "a.wav", dtype="int16")[0]
    codes = intfrontend.window_codes(sliding_windows(intfrontend.log2_mel(pcm), 96, 4), m)
    det = Detector(m.class_names, 0.05, 3, 25).push(softmax(m.logits(m.forward_int(codes))))
    rc, out, _ = run(["detect", str(art), str(d / "a.wav"), "--threshold", "0.05", "--quiet"], capsys)
    assert [(l.split()[1], l.split()[2]) for l in out.splitlines()] == [(k, f"{v:.3f}") for _, k, v in det]


def test_detect_uses_the_stored_threshold(files, capsys):
    d, art, _ = files
    rc, out, err = run(["detect", str(art), str(d / "a.wav")], capsys)
    assert rc == 0 and "threshold 0.3 (stored in the artifact)" in err
    # the header speaks in seconds: 3 windows of 40 ms, 25 windows of lockout
    assert "smoothing 0.12 s (3 windows)" in err and "lockout 1 s" in err and "steps" not in err
    assert "16000 Hz mono WAV PCM_16, no conversion" in err


def test_detect_converts_other_recordings(files, tmp_path, capsys):
    """44.1 kHz stereo 24-bit and 16 kHz FLAC: converted, said so, and detecting what the 16 kHz WAV holds."""
    d, art, _ = files
    x = sf.read(d / "a.wav", dtype="float32")[0]
    sf.write(tmp_path / "a.flac", x, 16000, subtype="PCM_16")
    rc, out_flac, err = run(["detect", str(art), str(tmp_path / "a.flac"), "--threshold", "0.05"], capsys)
    _, out_wav, _ = run(["detect", str(art), str(d / "a.wav"), "--threshold", "0.05", "--quiet"], capsys)
    assert rc == 0 and out_flac == out_wav and "FLAC PCM_16, no conversion" in err
    from scipy.signal import resample_poly

    hi = resample_poly(x.astype(np.float64), 441, 160).astype(np.float32)
    sf.write(tmp_path / "st.wav", np.stack([hi, hi], axis=1), 44100, subtype="PCM_24")
    rc, out_st, err = run(["detect", str(art), str(tmp_path / "st.wav"), "--threshold", "0.05"], capsys)
    assert rc == 0 and "44100 Hz stereo WAV PCM_24" in err and "resampled to 16000 Hz" in err
    a, b = [l.split() for l in out_wav.splitlines()], [l.split() for l in out_st.splitlines()]
    assert [k for _, k, _ in a] == [k for _, k, _ in b]  # same keywords, in order
    assert all(abs(float(ta[:-1]) - float(tb[:-1])) <= 0.08 for (ta, _, _), (tb, _, _) in zip(a, b))


def test_export_stores_the_operating_point_of_its_results_folder(tmp_path, capsys):
    """Exported from results/<profile>/models/, the artifact carries that model's threshold_at_op."""
    from kwslib.quant.intfile import save_int_model

    res = tmp_path / "results" / "demo"
    (res / "models").mkdir(parents=True)
    save_int_model(res / "models" / "stage2_w4.int.npz", random_int_model(4, seed=3))
    (res / "summary.json").write_text(json.dumps({
        "profile": "demo", "operating_point": {"false_detections_per_hour": 10.0},
        "models": {"float": {"threshold_at_op": 0.5},
                   "stage2_w4": {"threshold_at_op": 0.8125, "int_model_file": "models/stage2_w4.int.npz"}}}))
    rc, out, err = run(["export", str(res / "models" / "stage2_w4.int.npz"), str(tmp_path / "m.kws")], capsys)
    assert rc == 0, err
    extra = export.load_artifact(tmp_path / "m.kws").extra
    assert extra["threshold"] == 0.8125 and extra["operating_point_fdph"] == 10.0
    assert "10 false detections/h" in extra["threshold_source"] and "stage2_w4" in extra["threshold_source"]
    assert "stored detection threshold: 0.8125" in out
    rc, _, err = run(["detect", str(tmp_path / "m.kws"), str(tmp_path / "none.wav")], capsys)
    assert rc == 2
    # an explicit --threshold wins; outside a results folder nothing is stored, and it says so
    rc, out, _ = run(["export", str(res / "models" / "stage2_w4.int.npz"), str(tmp_path / "t.kws"),
                      "--threshold", "0.25"], capsys)
    assert export.load_artifact(tmp_path / "t.kws").extra["threshold"] == 0.25
    save_int_model(tmp_path / "loose.int.npz", random_int_model(4, seed=3))
    rc, out, _ = run(["export", str(tmp_path / "loose.int.npz"), str(tmp_path / "l.kws")], capsys)
    assert rc == 0 and "threshold" not in export.load_artifact(tmp_path / "l.kws").extra
    assert "none" in out and "0.5" in out


def _op_record(threshold: float, seed: int, n_spk: int = 25, clips: int = 4) -> dict:
    """A replicate's record (replicates.model_record's keys) whose model sits at ``threshold`` at the operating point."""
    rng = np.random.default_rng(seed)
    spk = np.repeat([f"s{i}" for i in range(n_spk)], clips)
    scores = rng.random(len(spk))
    misses = scores < threshold
    units = 10
    counts = rng.poisson(0.5, units)
    return {"accuracy": 0.8, "correct": ~misses, "labels": np.full(len(spk), 2), "speakers": spk,
            "pos_speakers": spk, "pos_scores": scores, "threshold_at_op": float(threshold), "misses_at_op": misses,
            "frr_at_op": float(misses.mean()), "unit_ids": np.array([f"u{i}" for i in range(units)]),
            "unit_hours": np.full(units, 0.1), "unit_source": np.array(["synthetic_speech"] * units),
            "counts_at_op": counts, "hours": 1.0, "hours_by_source": {"synthetic_speech": 1.0},
            "thresholds_at_levels": {"1.0": None, "5.0": None, "10.0": float(threshold), "50.0": None},
            "counts_at_float_frr": counts, "curve_source_false_detections": {}}


def _results_tree(tmp_path, thresholds=None):
    """A results folder as notebooks 1 and 3 leave it: int models and records (with the model file's digest)
    of two replicates, summary entries pooled by replicates.pooled_entry. Returns (paths, thresholds, summary)."""
    from kwslib.study import replicates as R
    from kwslib.study import verdicts
    from kwslib.study.experiment import Paths
    from kwslib.quant.intfile import save_int_model
    from kwslib.summary import load_summary, update_summary

    p = Paths(tmp_path / "results" / "demo", tmp_path / "cache")
    p.models.mkdir(parents=True, exist_ok=True)
    # every model and replicate its own threshold at the operating point (values from the shared grid)
    thresholds = thresholds or {"float": (0.5, 0.6), "stage2_w8": (0.955, 0.97), "stage2_w4": (0.975, 0.93)}
    recs = {name: [] for name in thresholds}
    for name, per_rep in thresholds.items():
        for k, thr in enumerate(per_rep):
            rp = R.replicate_paths(p, k)
            digest = None
            if name != "float":
                b = int(name.split("_w")[1])
                save_int_model(rp.models / f"{name}.int.npz", random_int_model(b, seed=10 * k + b))
                digest = R.file_digest(rp.models / f"{name}.int.npz")
            rec = _op_record(thr, seed=10 * k + len(name))
            R.save_record(R.record_path(rp, name), rec, digest)
            recs[name].append(R.load_record(R.record_path(rp, name)))
    models = {"float": verdicts.pooled_entry(recs["float"], None, 0.02, n_boot=50, op_fdph=10.0)}
    for name in thresholds:
        if name != "float":
            models[name] = dict(verdicts.pooled_entry(recs[name], recs["float"], 0.02, n_boot=50, op_fdph=10.0),
                                int_model_file=f"models/{name}.int.npz")
    update_summary(p.results, "demo", {"operating_point": {"false_detections_per_hour": 10.0}, "models": models})
    return p, thresholds, load_summary(p.results)


def test_exported_threshold_is_the_reports_replicate_0_threshold_of_that_model(tmp_path, capsys):
    """A results folder as notebooks 1 and 3 leave it (records of two replicates, summary entries pooled by
    replicates.pooled_entry): ``kwslib export`` stores summary.json's ``threshold_at_op`` of the exported model,
    which is replicate 0's, not another replicate's, another model's or a pooled value; detect and the C header use it."""
    from kwslib.study import replicates as R
    from kwslib.deploy.pipeline import detector_settings

    p, thresholds, summary = _results_tree(tmp_path)
    for b in (4, 8):
        key = f"stage2_w{b}"
        want = summary["models"][key]["threshold_at_op"]
        rep0 = R.load_record(R.record_path(p, key))["threshold_at_op"]
        assert want == rep0 == thresholds[key][0]  # the report's threshold is replicate 0's
        assert summary["models"][key]["per_replicate"][1]["threshold_at_op"] == thresholds[key][1] != want
        dst, header = tmp_path / f"{key}.kws", tmp_path / f"{key}.h"
        rc, out, err = run(["export", str(p.models / f"{key}.int.npz"), str(dst), "--header", str(header)], capsys)
        assert rc == 0, err
        art = export.load_artifact(dst)
        assert art.extra["threshold"] == want and art.extra["operating_point_fdph"] == 10.0
        others = [t for name, ts in thresholds.items() for t in ts if t != want]
        assert art.extra["threshold"] not in others  # not another replicate's or another model's
        assert key in art.extra["threshold_source"] and f"stored detection threshold: {want:g}" in out
        assert detector_settings(art.model, art.extra)["threshold"] == want  # what kwslib detect uses
        assert f"#define KWS_MODEL_THRESHOLD {want!r}" in header.read_text()


def test_export_of_replicate_k_takes_that_replicates_threshold_and_says_so(tmp_path, capsys):
    """``kwslib export results/<p>/replicates/r1/models/stage2_w4.int.npz`` stores replicate 1's own threshold
    (from its record), not replicate 0's (issue 26 item 8), and its message names the replicate and the rate."""
    from kwslib.study import replicates as R
    from kwslib.deploy.pipeline import detector_settings

    p, thresholds, summary = _results_tree(tmp_path)
    for key in ("stage2_w4", "stage2_w8"):
        want = thresholds[key][1]
        assert want != thresholds[key][0] and summary["models"][key]["per_replicate"][1]["threshold_at_op"] == want
        src = R.replicate_paths(p, 1).models / f"{key}.int.npz"
        dst = tmp_path / f"r1_{key}.kws"
        rc, out, err = run(["export", str(src), str(dst)], capsys)
        assert rc == 0, err
        art = export.load_artifact(dst)
        assert art.extra["threshold"] == want and art.extra["threshold_replicate"] == 1
        assert art.extra["operating_point_fdph"] == 10.0 and art.extra["profile"] == "demo"
        src_text = art.extra["threshold_source"]
        assert "replicate 1" in src_text and "10 false detections/h" in src_text and key in src_text
        assert "record" in src_text  # read from the replicate's own record
        assert f"stored detection threshold: {want:g} (replicate 1 of results/demo" in out
        assert detector_settings(art.model, art.extra)["threshold"] == want


def test_export_falls_back_to_the_summary_when_the_record_is_gone(tmp_path):
    """Without the record file, that replicate's summary entry (per_replicate[k]) gives the threshold."""
    from kwslib.study import replicates as R

    p, thresholds, _ = _results_tree(tmp_path)
    rp = R.replicate_paths(p, 1)
    R.record_path(rp, "stage2_w4").unlink()
    extra, note = export.find_results_threshold(rp.models / "stage2_w4.int.npz")
    assert note == "" and extra["threshold"] == thresholds["stage2_w4"][1] and extra["threshold_replicate"] == 1
    assert "summary.json" in extra["threshold_source"]
    # replicate 0 through the summary alone too
    R.record_path(p, "stage2_w8").unlink()
    extra, _ = export.find_results_threshold(p.models / "stage2_w8.int.npz")
    assert extra["threshold"] == thresholds["stage2_w8"][0] and extra["threshold_replicate"] == 0


def test_export_refuses_a_stale_record(tmp_path, capsys):
    """A record made from another model file (retrained since) gives no threshold, and the reason is printed."""
    from kwslib.study import replicates as R
    from kwslib.quant.intfile import save_int_model

    p, _, _ = _results_tree(tmp_path)
    rp = R.replicate_paths(p, 1)
    save_int_model(rp.models / "stage2_w4.int.npz", random_int_model(4, seed=99))  # a new model, old record
    extra, note = export.find_results_threshold(rp.models / "stage2_w4.int.npz")
    assert extra == {} and "stale" in note and "replicate 1" in note
    rc, out, err = run(["export", str(rp.models / "stage2_w4.int.npz"), str(tmp_path / "x.kws")], capsys)
    assert rc == 0 and "threshold" not in export.load_artifact(tmp_path / "x.kws").extra
    assert "stale" in out and "will use 0.5" in out


def test_locate_in_results():
    from pathlib import Path

    assert export.locate_in_results("/x/results/sc12/replicates/r3/models/stage2_w4.int.npz") == (
        Path("/x/results/sc12"), 3)
    assert export.locate_in_results("/nowhere/stage2_w4.int.npz") is None
    assert export.locate_in_results("/x/results/sc12/replicates/r0/models/a.int.npz") is None  # r0 is the profile
    assert export.locate_in_results("/x/results/sc12/replicates/rx/models/a.int.npz") is None


def test_operating_point_extra_rejects_unmeasured_thresholds():
    assert export.operating_point_extra({"models": {"m": {"threshold_at_op": None}}}, "m") == {}
    assert export.operating_point_extra({"models": {}}, "m") == {}
    assert export.operating_point_extra({"models": {"m": {"threshold_at_op": 1.5}}}, "m") == {}
    assert export.operating_point_extra({"models": {"m": {"threshold_at_op": True}}}, "m") == {}
    summ = {"models": {"m": {"threshold_at_op": 0.9, "per_replicate": [{"threshold_at_op": 0.9},
                                                                      {"threshold_at_op": 0.7}]}}}
    assert export.operating_point_extra(summ, "m", 1)["threshold"] == 0.7
    assert export.operating_point_extra(summ, "m", 2) == {}  # no such replicate: nothing, not replicate 0's


@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "nonfinite", "empty", "dir"])
def test_detect_bad_wav(files, tmp_path, capsys, case):
    d, art, _ = files
    wav = tmp_path / "x.wav"
    if case == "corrupt":
        wav.write_bytes(b"RIFF0000WAVEjunkjunkjunk" * 10)
    elif case == "truncated":
        wav.write_bytes((d / "a.wav").read_bytes()[:3000])
    elif case == "nonfinite":
        sf.write(wav, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    elif case == "empty":
        wav.write_bytes(b"")
    elif case == "dir":
        wav = tmp_path
    rc, out, err = run(["detect", str(art), str(wav)], capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    if case == "nonfinite":  # found while streaming, after the header line: the error is the last line
        assert len(lines) == 2 and str(wav) in lines[-1] and "non-finite sample" in lines[-1]
    else:
        assert len(lines) == 1 and str(wav) in err


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
    from kwslib.quant.intfile import save_int_model

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
    from kwslib.quant.intfile import save_int_model

    src = tmp_path / "m.int.npz"
    save_int_model(src, random_int_model(4, seed=2))
    (tmp_path / "a-file").write_text("x")
    rc, out, err = run(["export", str(src), str(tmp_path / "o.kws"), *[a.format(tmp=tmp_path) for a in argv]], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.kws").exists() and not (tmp_path / "h.h").exists()


def test_say_writes_a_recording_that_detect_reads(tmp_path, files, capsys):
    d, art, _ = files
    rc, out, err = run(["say", "yes. stop", str(tmp_path / "s.wav"), "--pause", "0.5"], capsys)
    assert rc == 0, err
    x, rate = sf.read(tmp_path / "s.wav", dtype="int16")
    assert rate == 16000 and x.ndim == 1 and np.abs(x).max() > 8000  # normalised to half scale
    assert np.all(x[:7000] == 0) and np.all(x[-7000:] == 0)  # the pauses are silence
    assert "2 phrase(s)" in out
    rc, out, err = run(["detect", str(art), str(tmp_path / "s.wav")], capsys)
    assert rc == 0 and "no conversion" in err
    rc, _, err = run(["say", " . ", str(tmp_path / "e.wav")], capsys)
    assert rc == 2 and "empty text" in err and not (tmp_path / "e.wav").exists()
