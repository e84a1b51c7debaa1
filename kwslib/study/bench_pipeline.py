"""The whole-detector benchmark (:mod:`kwslib.study.bench` runs it): PCM in, detections out.

:func:`pipeline_bench` measures, side by side in one process, the numpy and C streaming detectors with
the integer and the float64 front end (x86 real-time factors), the front end alone per frame, the C
pipeline's RAM and code size, and aarch64 instructions per second of audio under qemu (front end alone
and whole detector for the float32, int8 and 4-bit networks); :func:`detect_startup` times ``kwslib
detect``'s start; :func:`memory_table` is the network's footprint per layout.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from . import memory
from ..quant.intspec import IntModel


def bench_audio(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Deterministic int16 test audio (noise, gated tones, a chirp): the pipeline's cost does not depend on
    what is said, only on how long it is."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = 0.02 * rng.normal(size=len(t)) + 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(1.3 * t) > 0)
    x += 0.2 * np.sin(2 * np.pi * (300 + 200 * (t % 5)) * t) * (np.cos(0.7 * t) > 0.3)
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


def _rtf(pipe, pcm: np.ndarray, rate: int, repeats: int = 3, chunk: int = 1600) -> float:
    """Real-time factor (audio seconds per wall second), best of ``repeats`` passes over ``pcm``."""
    best = float("inf")
    for _ in range(repeats):
        if hasattr(pipe, "reset"):
            pipe.reset()
        t0 = time.perf_counter()
        for i in range(0, len(pcm), chunk):
            pipe.push(pcm[i:i + chunk])
        best = min(best, time.perf_counter() - t0)
    return len(pcm) / rate / best


def detect_startup(workdir: Path, m4: IntModel) -> dict:
    """``kwslib detect`` on a 1 s WAV in a fresh interpreter: wall seconds (median of 3) and peak RSS (MB).

    Measured from a separate process that starts ``python -m kwslib.cli detect`` and reads its own
    RUSAGE_CHILDREN, so nothing else this process ran counts."""
    import subprocess

    from ..deploy import export
    from ..frontend.audio import write_wav

    art, wav = workdir / "startup.kws", workdir / "one_second.wav"
    export.save_artifact(art, m4)
    write_wav(wav, bench_audio(1.0).astype(np.float32) / 32768.0)
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "r = subprocess.run(sys.argv[1:], capture_output=True); dt = time.perf_counter() - t; "
             "print(r.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "kwslib.cli", "detect", str(art),
                              str(wav), "--quiet"], capture_output=True, text=True, timeout=120).stdout.split()
        if len(out) == 3 and out[0] == "0":
            runs.append((float(out[1]), int(out[2]) / 1024.0))
    if not runs:
        return {"detect_startup_s": None, "detect_peak_rss_mb": None, "reason": "kwslib detect failed"}
    return {"detect_startup_s": float(np.median([r[0] for r in runs])),
            "detect_peak_rss_mb": float(max(r[1] for r in runs)), "runs": len(runs)}


def _frontend_ns_per_frame(fe, pcm: np.ndarray, frames: int, repeats: int = 3) -> float:
    """Nanoseconds per frame of a C front end alone over ``pcm`` (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fe.push(pcm)
        best = min(best, time.perf_counter() - t0)
    return best / max(frames, 1) * 1e9


def pipeline_bench(m8: IntModel, m4: IntModel, workdir: Path, neon: bool = True, seconds: float = 20.0,
                   log=print) -> dict:
    """The whole detector (kwslib.deploy.pipeline) behind each front end, measured side by side in this process:
    x86 real-time factor of the numpy spec and of the C pipeline, the C front ends alone (ns per frame),
    C RAM and code size, and aarch64 instructions per second of audio under qemu (the front end alone; the
    float32 network, int8 containers and 4-bit behind it), beside which the network-only counts of
    :func:`neon_counts` stand. Keys without a suffix are the integer front end (the default on a device);
    ``*_float_frontend`` keys the float64 front end (the reference the models were trained on)."""
    from ..deploy import ckernels, export, qemu
    from ..deploy.pipeline import (
        CFrontend,
        CIntFrontend,
        CPipeline,
        NumpyPipeline,
        detector_settings,
        harness_config_text,
    )

    out = {"audio": f"{seconds:g} s of bench_audio (noise, tones, chirp), int16, pushed in 100 ms chunks",
           "front_end": "integer (kwslib.frontend.intfrontend: C/NEON bit-exact with the numpy spec); *_float_frontend: "
                        "float64 log-mel (C with KISS FFT in double)"}
    ds = detector_settings(m4)
    rate = ds["features"].sample_rate
    pcm = bench_audio(seconds, rate)
    a8, a4 = export.from_bytes(export.to_bytes(m8)), export.from_bytes(export.to_bytes(m4))
    args = (ds["threshold"], ds["smooth_windows"], ds["refractory_steps"])
    log(f"[bench] pipeline: numpy spec vs C, both front ends, {seconds:g} s of audio ...")
    short = pcm[:int(min(seconds, 5.0) * rate)]
    rtf = {"numpy": _rtf(NumpyPipeline(a4, *args), short, rate, repeats=1)}
    rtf_float = {"numpy": _rtf(NumpyPipeline(a4, *args, frontend="float"), short, rate, repeats=1)}
    try:
        for fe, table in (("int", rtf), ("float", rtf_float)):
            c4, c8 = CPipeline(a4, *args, mode="int", frontend=fe), CPipeline(a8, *args, mode="s8", frontend=fe)
            table["c"] = _rtf(c4, pcm, rate)
            table["c_int8"] = _rtf(c8, pcm, rate)
            table["c_float32"] = _rtf(CPipeline(a8, *args, mode="f32", frontend=fe), pcm, rate)
            sfx = "" if fe == "int" else "_float_frontend"
            out["c_ram_bytes" + sfx] = c4.ram_bytes
            if fe == "int":
                out["c_weight_bytes"] = {"w4": c4.weight_bytes, "int8": c8.weight_bytes}
                out["c_backend"] = c4.describe()
        feat = ds["features"]
        n_frames = (len(pcm) - feat.win_length) // feat.hop_length + 1
        out["frontend_x86_ns_per_frame"] = {
            "int": _frontend_ns_per_frame(CIntFrontend(feat), pcm, n_frames),
            "float": _frontend_ns_per_frame(CFrontend(feat), pcm, n_frames)}
    except ckernels.CKernelsUnavailable as exc:
        out["c_unavailable"] = str(exc)
        out["c_ram_bytes"] = out["c_ram_bytes_float_frontend"] = None
        out["frontend_x86_ns_per_frame"] = {"int": None, "float": None}
    out["x86_realtime_factor"] = rtf
    out["x86_realtime_factor_float_frontend"] = rtf_float
    code, code_fe = {}, {}
    for target in ("x86_64", "aarch64"):
        try:
            cb = qemu.code_bytes(target)
            code[target] = cb["text"]
            pf = cb["per_file"]
            code_fe[target] = {"int": pf.get("kws_intfrontend"),
                               "float": (pf.get("kws_frontend") or 0) + (pf.get("kws_kissfft") or 0)}
        except ckernels.CKernelsUnavailable as exc:
            code[target] = code_fe[target] = None
            out[f"c_code_{target}_reason"] = str(exc)
    out["c_code_bytes"] = code
    out["c_code_bytes_frontend"] = code_fe
    arm = {"float32": None, "int8": None, "w4": None}
    arm_float = dict(arm)
    arm_fe = {"int": None, "float": None}
    if neon:
        try:
            qemu.neon_tools()
            p8, p4 = workdir / "pipe_w8.kws", workdir / "pipe_w4.kws"
            export.save_artifact(p8, m8)
            export.save_artifact(p4, m4)
            detail = {}
            for fe, table in (("int", arm), ("float", arm_float)):
                log(f"[bench] aarch64 {fe} front end alone: counting instructions under qemu ...")
                r = qemu.count_pipeline_instructions(p8, harness_config_text(m8, *args), pcm, mode="frontend",
                                                         t1=0.26, t2=0.5, frontend=fe)
                arm_fe[fe], detail[f"frontend_{fe}"] = r["per_audio_second"], r
                for name, path, model, mode in (("float32", p8, m8, "f32"), ("int8", p8, m8, "s8"),
                                                ("w4", p4, m4, "int")):
                    log(f"[bench] aarch64 whole pipeline, {name}, {fe} front end: counting instructions under qemu ...")
                    r = qemu.count_pipeline_instructions(path, harness_config_text(model, *args), pcm, mode=mode,
                                                             t1=0.26, t2=0.5, frontend=fe)
                    table[name], detail[f"{name}_{fe}_frontend"] = r["per_audio_second"], r
            out["aarch64_detail"] = {"method": "kws_pipeline_harness (primed window) under qemu-aarch64 "
                                               "-singlestep -d exec; (count of 0.50 s - count of 0.26 s) / 0.24 s: "
                                               "24 frames and 6 network runs, setup excluded", "variant": "neon-dotprod",
                                     **detail}
        except ckernels.CKernelsUnavailable as exc:
            out["aarch64_reason"] = f"not measured in this run: {exc}"
    else:
        out["aarch64_reason"] = "not requested (neon=False, --no-neon)"
    out["aarch64_instructions_per_audio_second"] = arm
    out["aarch64_instructions_per_audio_second_float_frontend"] = arm_float
    out["frontend_aarch64_instructions_per_audio_second"] = arm_fe
    hop_s = ds["features"].hop_length / rate
    out["frontend_aarch64_instructions_per_frame"] = {k: None if v is None else int(round(v * hop_s))
                                                      for k, v in arm_fe.items()}
    out.update(detect_startup(workdir, m4))
    return out


def memory_table(model: IntModel) -> dict:
    dims = memory.dense_layers(model.layers[0].w_q.shape[1], [l.w_q.shape[0] for l in model.layers[:-1]],
                               model.layers[-1].w_q.shape[0])
    rows = {"float32": memory.footprint(dims, "float32"), "int8_containers": memory.footprint(dims, "int8")}
    for b in (8, 5, 4, 1):
        rows[f"packed_{b}"] = memory.footprint(dims, b)
    return rows
