"""CPU and memory benchmark of the integer engine against float32 baselines (docs/DESIGN.md section 7).

    python -m kwslib.study.bench --profile quick        # writes results/quick/bench.json (atomically)

x86, one thread, one process: the same network (the stage-2 8-bit model, and
its 4-bit sibling for the packed kernel; random codes of the same shapes when
no stage-2 model exists yet) run by

    float32_numpy          numpy matmuls on the dequantized float32 weights (engine.float_layers)
    torch_float32          torch.nn.Sequential of Linear/ReLU, inference mode
    onnxruntime_float32    the torch model exported to ONNX
    onnxruntime_int8       onnxruntime's own quantization of that ONNX model: dynamic
                           (quantize_dynamic) and static (quantize_static, QOperator);
                           the faster of the two is the summary's number
    kwslib_int8_numpy      Engine(backend="numpy"): intspec.IntModel.forward_int
    kwslib_int8_c          the C engine on 8-bit containers (best SIMD path), through ctypes
                           with buffers bound once (what a streaming loop pays)
    kwslib_w4_c            the C engine with the packed 4-bit kernel
    *_api                  the same C engine through Engine.forward_input (numpy in/out per call)
    *_in_c                 the same, timed inside C (no Python at all)

at batch 1 (one streaming inference) and batch 256. Every method takes float32
input vectors (the integer engines quantize them). Times are the median over
interleaved rounds (each round times every method in turn), in microseconds
per inference.

The machine floor: the bytes of weights streamed from cache at the measured
read bandwidth (a probe reading a buffer of that size), and the MACs at the
measured peak int8 multiply-accumulate rate (a register-only VNNI probe);
floor = max of the two. Batch 1 re-reads every weight per inference; at batch
256 the weights could be reused, so the floor there is the MAC term alone.

aarch64: executed instructions per inference under qemu (kwslib.deploy.ckernels),
for the float32, int8 and 4-bit NEON kernels, ARMv8.0 and ARMv8.2 dotprod.
Memory: kwslib.study.memory.footprint of the same network per layout.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import memory
from ..deploy.engine import Engine, float_forward, float_layers, random_int_model
from ..config import REPO_ROOT
from ..io import atomic_write_json
from ..quant.intspec import IntModel

ROOT = REPO_ROOT


def single_thread() -> dict:
    """Pin torch, onnxruntime (per session) and numpy's OpenBLAS to one thread; report what was set."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    out = {"env": "OMP/OPENBLAS/MKL_NUM_THREADS=1"}
    try:
        import torch

        torch.set_num_threads(1)
        out["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas*.so*"))
    out["numpy_blas_threads"] = None
    for lib in libs:
        try:
            dll = ctypes.CDLL(lib)
        except OSError:
            continue
        for sym in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(dll, sym, None)
            if fn is not None:
                fn(1)
                out["numpy_blas_threads"] = 1
                break
    return out


# --- models ----------------------------------------------------------------------------------------

def load_models(results_dir) -> tuple[IntModel, IntModel, str]:
    """(8-bit model, 4-bit model, source): the stage-2 integer models if they exist, else random codes."""
    models = Path(results_dir) / "models"
    p8, p4 = models / "stage2_w8.int.npz", models / "stage2_w4.int.npz"
    if p8.exists() and p4.exists():
        from ..quant.intfile import load_int_model

        return load_int_model(p8), load_int_model(p4), f"stage2 ({p8.name}, {p4.name})"
    return random_int_model(8, seed=0), random_int_model(4, seed=0), "random codes, default model shape"


def _torch_model(layers):
    import torch

    mods = []
    for w, b, relu in layers:
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if relu:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods).eval()


def onnx_sessions(net, in_dim: int, workdir: Path, calib: np.ndarray) -> dict:
    """onnxruntime sessions (1 thread): float32, int8 dynamic, int8 static (QOperator)."""
    import logging

    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's "consider pre-processing" notes
    f32 = workdir / "model_f32.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, in_dim), str(f32), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17, dynamo=False)
    dyn, st = workdir / "model_int8_dynamic.onnx", workdir / "model_int8_static.onnx"
    quantize_dynamic(str(f32), str(dyn), weight_type=QuantType.QInt8)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": calib[i:i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(f32), str(st), Reader(), quant_format=QuantFormat.QOperator,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, per_channel=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    out = {}
    for name, path in (("float32", f32), ("int8_dynamic", dyn), ("int8_static", st)):
        out[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return out


def methods_for(m8: IntModel, m4: IntModel, x: np.ndarray, workdir: Path, calib: np.ndarray) -> tuple[dict, dict]:
    """name -> zero-argument callable running one batch ``x`` (float32 input vectors); and notes."""
    import torch

    notes = {}
    fl = float_layers(m8)
    net = _torch_model(fl)
    xt = torch.from_numpy(x)

    def torch_run():
        with torch.inference_mode():
            return net(xt)

    sessions = onnx_sessions(net, x.shape[1], workdir, calib)
    feeds = {"x": x}
    fns = {"float32_numpy": lambda: float_forward(fl, x), "torch_float32": torch_run}
    for name, s in sessions.items():
        fns[f"onnxruntime_{name}"] = (lambda s=s: s.run(None, feeds))
    notes["onnx_ops"] = {k: sorted({n.op_type for n in __import__("onnx").load(str(workdir / f"model_{k}.onnx")).graph.node})
                         for k in ("f32", "int8_dynamic", "int8_static")}
    e_np = Engine(m8, backend="numpy")
    fns["kwslib_int8_numpy"] = lambda: e_np.forward_input(x)
    try:
        e8 = Engine(m8, backend="c", kernel="s8")
        e4 = Engine(m4, backend="c", kernel="auto")
        fns["kwslib_int8_c"] = e8.cnet.bound(x)
        fns["kwslib_w4_c"] = e4.cnet.bound(x)
        fns["kwslib_int8_c_api"] = lambda: e8.forward_input(x)
        fns["kwslib_w4_c_api"] = lambda: e4.forward_input(x)
        notes["c_backend"] = {"int8": e8.describe(), "w4": e4.describe()}
        notes["_cnets"] = (e8.cnet, e4.cnet)
    except Exception as exc:  # no compiler: the C rows are null, with the reason
        notes["c_unavailable"] = str(exc)
    from .peers import litert
    from ..quant.intspec import quantize_input

    ok, why = litert.available()
    if ok:  # LiteRT takes int8 codes: its input quantization is done once, outside the timed call
        xq8 = quantize_input(x, m8.input_scale, m8.input_zero_point)
        xq4 = quantize_input(x, m4.input_scale, m4.input_zero_point)
        l8 = litert.LiteRTNet(m8, threads=1, batch=len(x))
        fns["litert_int8"] = l8.bound(xq8)
        notes["litert"] = {"int8": l8.describe(), "input": "int8 codes (input quantization not timed)"}
        try:
            l4 = litert.LiteRTNet(m4, threads=1, batch=len(x), int4=True)
            fns["litert_int4"] = l4.bound(xq4)
            notes["litert"]["int4"] = l4.describe()
        except Exception as exc:
            notes["litert"]["int4"] = f"not run: {exc}"
    else:
        notes["litert_unavailable"] = why
    return fns, notes


def time_methods(fns: dict, rounds: int, block_s: float) -> dict:
    """Median (and p10/p90) microseconds per call over interleaved rounds of blocks of calls."""
    per_call = {k: [] for k in fns}
    n_calls = {}
    for k, fn in fns.items():  # warm up and size each block to ~block_s
        fn()
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < block_s / 4 or n < 3:
            fn()
            n += 1
        n_calls[k] = max(1, int(n * block_s / max(time.perf_counter() - t0, 1e-9)))
    for _ in range(rounds):
        for k, fn in fns.items():
            n = n_calls[k]
            t0 = time.perf_counter_ns()
            for _ in range(n):
                fn()
            per_call[k].append((time.perf_counter_ns() - t0) / n / 1000.0)
    return {k: {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90)),
                "rounds": len(v), "calls_per_round": n_calls[k]} for k, v in per_call.items()}


def machine_floor(weight_bytes: dict, macs: int) -> dict:
    """Measured read bandwidth (per buffer size) and int8 MAC rate; floors per method in microseconds."""
    from ..deploy import ckernels

    lib = ckernels.load_library()
    L = lib.lib
    sink = np.zeros(1, np.uint64)
    bw = {}
    for name, nbytes in weight_bytes.items():
        n = max(256, (int(nbytes) + 255) // 256 * 256)
        buf = np.ones(n, np.uint8)
        reps = max(1, (64 << 20) // n)
        best = min(L.kws_floor_read(buf.ctypes.data, n, reps, sink.ctypes.data) for _ in range(7))
        bw[name] = n * reps / best  # bytes per ns
    mp = np.zeros(1, np.int64)
    iters = 2_000_000
    best = min(L.kws_floor_macs(iters, sink.ctypes.data, mp.ctypes.data) for _ in range(5))
    mac_rate = iters * int(mp[0]) / best  # MACs per ns
    floors = {}
    for name, nbytes in weight_bytes.items():
        t_bytes = nbytes / bw[name] / 1000.0
        t_macs = macs / mac_rate / 1000.0 if name != "float32" else None
        floors[name] = {"bytes": int(nbytes), "read_bytes_per_ns": round(bw[name], 2), "bytes_us": t_bytes,
                        "macs_us": t_macs, "batch1_floor_us": max(t_bytes, t_macs or 0.0),
                        "batched_floor_us": t_macs}
    return {"simd_path": lib.simd_path, "int8_macs_per_ns": round(mac_rate, 1), "macs_per_inference": int(macs),
            "per_layout": floors,
            "assumptions": "bandwidth: widest loads over a buffer the size of the weights, repeated (cache-resident, "
                           "as the weights are between inferences); MAC rate: independent vpdpbusd chains (or the "
                           "path's widest int8 MAC) on registers; float32 floor: bytes only"}


def neon_counts(m8: IntModel, m4: IntModel, workdir: Path, repeats: int = 2) -> dict:
    """Instructions per inference under qemu-aarch64 (None values with the reason if the tools are absent)."""
    from ..deploy import ckernels, export

    try:
        ckernels.neon_tools()
    except ckernels.CKernelsUnavailable as exc:
        return {"available": False, "reason": str(exc)}
    a8, a4 = workdir / "bench_w8.kws", workdir / "bench_w4.kws"
    export.save_artifact(a8, m8)
    export.save_artifact(a4, m4)
    x = np.random.default_rng(0).normal(0, 1, (1, m8.layers[0].w_q.shape[1])).astype(np.float32)
    out = {"available": True, "repeats": repeats, "method": "qemu-aarch64 -singlestep -d exec,nochain; "
           "(count with k inferences - count with 0) / k; setup-only functions filtered with -dfilter"}
    for variant in ("neon", "neon-dotprod"):
        sub = {}
        for name, art, mode in (("float32", a8, "f32"), ("int8", a8, "s8"), ("w4", a4, "auto")):
            sub[name] = ckernels.count_instructions(art, x, mode=mode, variant=variant, repeats=repeats)["per_inference"]
        out[variant] = sub
    return out


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
    from ..deploy import ckernels, export
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
            cb = ckernels.code_bytes(target)
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
            ckernels.neon_tools()
            p8, p4 = workdir / "pipe_w8.kws", workdir / "pipe_w4.kws"
            export.save_artifact(p8, m8)
            export.save_artifact(p4, m4)
            detail = {}
            for fe, table in (("int", arm), ("float", arm_float)):
                log(f"[bench] aarch64 {fe} front end alone: counting instructions under qemu ...")
                r = ckernels.count_pipeline_instructions(p8, harness_config_text(m8, *args), pcm, mode="frontend",
                                                         t1=0.26, t2=0.5, frontend=fe)
                arm_fe[fe], detail[f"frontend_{fe}"] = r["per_audio_second"], r
                for name, path, model, mode in (("float32", p8, m8, "f32"), ("int8", p8, m8, "s8"),
                                                ("w4", p4, m4, "int")):
                    log(f"[bench] aarch64 whole pipeline, {name}, {fe} front end: counting instructions under qemu ...")
                    r = ckernels.count_pipeline_instructions(path, harness_config_text(model, *args), pcm, mode=mode,
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


def run_bench(profile: str = "quick", results_dir=None, rounds: int = 25, block_s: float = 0.02,
              batches=(1, 256), neon: bool = True, log=print) -> dict:
    """Run everything and return the result dict (see :func:`main` for saving)."""
    threads = single_thread()
    results_dir = Path(results_dir) if results_dir else ROOT / "results" / profile
    m8, m4, source = load_models(results_dir)
    in_dim = m8.layers[0].w_q.shape[1]
    macs = sum(l.w_q.size for l in m8.layers)
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 1, (256, in_dim)).astype(np.float32)
    res = {"profile": profile, "model_source": source, "threads": threads,
           "machine": machine_info(),
           "macs_per_inference": macs, "batches": {}}
    with tempfile.TemporaryDirectory(prefix="kwsbench") as d:
        d = Path(d)
        for n in batches:
            x = rng.normal(0, 1, (n, in_dim)).astype(np.float32)
            fns, notes = methods_for(m8, m4, x, d, calib)
            cnets = notes.pop("_cnets", None)
            log(f"[bench] batch {n}: timing {len(fns)} methods x {rounds} rounds ...")
            t = time_methods(fns, rounds, block_s)
            if cnets:
                for name, net in zip(("kwslib_int8_c_in_c", "kwslib_w4_c_in_c"), cnets):
                    reps = max(1, int(2000 / n))
                    t[name] = {"median": float(np.median([net.time_in_c(x, reps) for _ in range(rounds)])) / 1000.0}
            per_inf = {k: v["median"] / n for k, v in t.items()}
            ort_int8 = min(per_inf["onnxruntime_int8_dynamic"], per_inf["onnxruntime_int8_static"])
            res["batches"][str(n)] = {"us_per_inference": per_inf, "us_per_call": t, "notes": notes,
                                      "onnxruntime_int8_best": ort_int8}
        wb = {"int8": sum(l.w_q.size for l in m8.layers), "w4": memory.weight_bytes(
            memory.dense_layers(in_dim, [l.w_q.shape[0] for l in m8.layers[:-1]], m8.layers[-1].w_q.shape[0]), 4),
              "float32": 4 * macs}
        try:
            res["floor"] = machine_floor(wb, macs)
        except Exception as exc:
            res["floor"] = {"error": str(exc)}
        res["aarch64"] = neon_counts(m8, m4, d) if neon else {"available": False, "reason": "not requested (neon=False, --no-neon)"}
        res["pipeline"] = pipeline_bench(m8, m4, d, neon=neon, log=log)
    res["memory_bytes"] = memory_table(m8)
    res["summary"] = summarize(res)
    return res


def machine_info() -> dict:
    """The CPU a measurement ran on: model name, SIMD level (the widest kwslib C build it runs), cores."""
    from ..deploy import ckernels

    flags = ckernels.cpu_flags()
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp") if f in flags]
    return {"cpu": _cpu_name(), "machine": platform.machine(), "simd": simd, "kwslib_c_variant": ckernels.best_variant(),
            "cores": os.cpu_count(), "python": platform.python_version()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def summarize(res: dict) -> dict:
    """The summary.json parts (cpu, memory_bytes; docs/DESIGN.md section 8) and the speed/memory targets."""
    b1 = res["batches"].get("1", {}).get("us_per_inference", {})
    g = b1.get
    ort8 = res["batches"].get("1", {}).get("onnxruntime_int8_best")
    cpu = {"x86_us_per_inference": {
        "float32_numpy": g("float32_numpy"), "torch_float32": g("torch_float32"),
        "onnxruntime_float32": g("onnxruntime_float32"), "onnxruntime_int8": ort8,
        "kwslib_int8_numpy": g("kwslib_int8_numpy"), "kwslib_int8_c": g("kwslib_int8_c"),
        "kwslib_w4_c": g("kwslib_w4_c"), "litert_int8": g("litert_int8"), "litert_int4": g("litert_int4")}}
    if g("litert_int8") is None:
        cpu["x86_us_per_inference"]["litert_reason"] = (res["batches"].get("1", {}).get("notes", {})
                                                       .get("litert_unavailable", "not measured"))
    arm = res.get("aarch64", {})
    if arm.get("available"):
        dp, v80 = arm["neon-dotprod"], arm["neon"]
        cpu["aarch64_instructions_per_inference"] = {
            "float32_neon": v80["float32"], "int8_neon": dp["int8"], "w4_neon": dp["w4"],
            "int8_neon_v80": v80["int8"], "w4_neon_v80": v80["w4"],
            "note": "int8_neon / w4_neon: ARMv8.2-A dot-product build; *_v80: ARMv8.0-A (vmull/vpadal)",
            "reason": None}
    else:  # every key present and null: nothing of an earlier run may survive a merge into summary.json
        cpu["aarch64_instructions_per_inference"] = {
            "float32_neon": None, "int8_neon": None, "w4_neon": None, "int8_neon_v80": None, "w4_neon_v80": None,
            "reason": f"not measured in this run: {arm.get('reason', 'unknown')}"}
    mem = res["memory_bytes"]
    memory_bytes = {"float32": mem["float32"]["total"], "int8_containers": mem["int8_containers"]["total"],
                    "packed": {str(b): mem[f"packed_{b}"]["total"] for b in (8, 5, 4, 1)}}

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    ins = cpu["aarch64_instructions_per_inference"]
    floor = res.get("floor", {}).get("per_layout", {})
    targets = {
        "x86_int8_c_vs_float32_numpy": ratio(g("float32_numpy"), g("kwslib_int8_c")),
        "x86_int8_c_vs_onnxruntime_int8": ratio(ort8, g("kwslib_int8_c")),
        "x86_int8_c_vs_litert_int8": ratio(g("litert_int8"), g("kwslib_int8_c")),
        "x86_w4_c_vs_litert_int8": ratio(g("litert_int8"), g("kwslib_w4_c")),
        "x86_int8_c_vs_floor": ratio(g("kwslib_int8_c"), floor.get("int8", {}).get("batch1_floor_us")),
        "x86_w4_c_vs_floor": ratio(g("kwslib_w4_c"), floor.get("w4", {}).get("batch1_floor_us")),
        "arm_float32_vs_w4": ratio(ins.get("float32_neon"), ins.get("w4_neon")),
        "arm_float32_vs_int8": ratio(ins.get("float32_neon"), ins.get("int8_neon")),
        "arm_float32_vs_w4_v80": ratio(ins.get("float32_neon"), ins.get("w4_neon_v80")),
        "arm_float32_vs_int8_v80": ratio(ins.get("float32_neon"), ins.get("int8_neon_v80")),
        "memory_float32_vs_int8": ratio(memory_bytes["float32"], memory_bytes["int8_containers"]),
        "memory_float32_vs_packed4": ratio(memory_bytes["float32"], memory_bytes["packed"]["4"]),
    }
    goals = {"x86_int8_c_vs_float32_numpy": (">=", 5), "x86_int8_c_vs_onnxruntime_int8": (">=", 2),
             "x86_int8_c_vs_litert_int8": (">=", 1), "x86_w4_c_vs_litert_int8": (">=", 1.4),
             "x86_int8_c_vs_floor": ("<=", 3), "arm_float32_vs_w4": (">=", 3), "arm_float32_vs_int8": (">=", 1.5),
             "memory_float32_vs_int8": (">=", 4), "memory_float32_vs_packed4": (">=", 7)}
    met = {k: (None if targets[k] is None else (targets[k] >= v if op == ">=" else targets[k] <= v))
           for k, (op, v) in goals.items()}
    pipe = res.get("pipeline") or {}
    pa = pipe.get("aarch64_instructions_per_audio_second") or {}
    pf = pipe.get("aarch64_instructions_per_audio_second_float_frontend") or {}
    fe = pipe.get("frontend_aarch64_instructions_per_audio_second") or {}
    rt, rtf_ = pipe.get("x86_realtime_factor") or {}, pipe.get("x86_realtime_factor_float_frontend") or {}
    keys = ("numpy", "c", "c_int8", "c_float32")
    pipeline = {"frontend": "int",
                "x86_realtime_factor": {k: rt.get(k) for k in keys},
                "x86_realtime_factor_float_frontend": {k: rtf_.get(k) for k in keys},
                "frontend_x86_ns_per_frame": {k: (pipe.get("frontend_x86_ns_per_frame") or {}).get(k)
                                              for k in ("int", "float")},
                "aarch64_instructions_per_audio_second": {k: pa.get(k) for k in ("float32", "int8", "w4")},
                "aarch64_instructions_per_audio_second_float_frontend": {k: pf.get(k) for k in ("float32", "int8", "w4")},
                "frontend_aarch64_instructions_per_audio_second": {k: fe.get(k) for k in ("int", "float")},
                "frontend_aarch64_instructions_per_frame": {
                    k: (pipe.get("frontend_aarch64_instructions_per_frame") or {}).get(k) for k in ("int", "float")},
                "detect_startup_s": pipe.get("detect_startup_s"), "detect_peak_rss_mb": pipe.get("detect_peak_rss_mb"),
                "c_ram_bytes": pipe.get("c_ram_bytes"), "c_ram_bytes_float_frontend": pipe.get("c_ram_bytes_float_frontend"),
                "c_code_bytes": {k: (pipe.get("c_code_bytes") or {}).get(k) for k in ("x86_64", "aarch64")},
                "c_code_bytes_frontend": pipe.get("c_code_bytes_frontend"),
                "reason": pipe.get("aarch64_reason")}
    targets.update({
        "pipeline_x86_c_realtime_factor": pipeline["x86_realtime_factor"]["c"],
        "pipeline_x86_c_realtime_factor_float_frontend": pipeline["x86_realtime_factor_float_frontend"]["c"],
        "pipeline_x86_int_vs_float_frontend": ratio(rt.get("c"), rtf_.get("c")),
        "pipeline_arm_float32_vs_int8": ratio(pa.get("float32"), pa.get("int8")),
        "pipeline_arm_float32_vs_w4": ratio(pa.get("float32"), pa.get("w4")),
        "pipeline_arm_float32_vs_int8_float_frontend": ratio(pf.get("float32"), pf.get("int8")),
        "pipeline_arm_float32_vs_w4_float_frontend": ratio(pf.get("float32"), pf.get("w4")),
        "pipeline_arm_int8_instructions_per_audio_second": pa.get("int8"),
        "frontend_arm_instructions_per_audio_second": fe.get("int"),
        "frontend_arm_float_vs_int": ratio(fe.get("float"), fe.get("int")),
        "x86_int8_c_batch1_vs_batch256": ratio(g("kwslib_int8_c"),
                                               res["batches"].get("256", {}).get("us_per_inference", {}).get("kwslib_int8_c")),
        "detect_startup_s": pipeline["detect_startup_s"], "detect_peak_rss_mb": pipeline["detect_peak_rss_mb"]})
    for k, goal in (("pipeline_x86_c_realtime_factor", (">=", 1000)), ("x86_int8_c_batch1_vs_batch256", (">=", 1)),
                    ("detect_startup_s", ("<=", 0.5)), ("detect_peak_rss_mb", ("<=", 80)),
                    ("pipeline_arm_float32_vs_int8", (">=", 2.5)),
                    ("pipeline_arm_int8_instructions_per_audio_second", ("<=", 1_600_000)),
                    ("frontend_arm_instructions_per_audio_second", ("<=", 500_000)),
                    ("pipeline_x86_int_vs_float_frontend", (">=", 3))):
        goals[k] = goal
        v = targets[k]
        met[k] = None if v is None else (v >= goal[1] if goal[0] == ">=" else v <= goal[1])
    return {"cpu": cpu, "memory_bytes": memory_bytes, "ratios": targets, "pipeline": pipeline,
            "targets": {k: {"goal": f"{op} {v}", "value": targets[k], "met": met[k]} for k, (op, v) in goals.items()}}


def _round(v, digits: int):
    """``v`` rounded for a report line (None stays None)."""
    return None if v is None else round(float(v), digits)


def format_report(res: dict) -> str:
    lines = [f"kwslib bench, profile {res['profile']}: model {res['model_source']}; {res['machine']['cpu']}"]
    for n, b in res["batches"].items():
        lines.append(f"  batch {n} (us per inference, median):")
        for k, v in sorted(b["us_per_inference"].items(), key=lambda t: t[1]):
            lines.append(f"    {k:28s} {v:10.3f}")
    fl = res.get("floor", {})
    if "per_layout" in fl:
        lines.append(f"  floor ({fl['simd_path']}, {fl['int8_macs_per_ns']} int8 MAC/ns):")
        for k, v in fl["per_layout"].items():
            lines.append(f"    {k:8s} {v['bytes']:>9d} B at {v['read_bytes_per_ns']} B/ns -> {v['bytes_us']:.2f} us; "
                         f"batch-1 floor {v['batch1_floor_us']:.2f} us")
    arm = res.get("aarch64", {})
    if arm.get("available"):
        for v in ("neon", "neon-dotprod"):
            lines.append(f"  aarch64 {v:13s} instructions/inference: " +
                         ", ".join(f"{k} {c:,}" for k, c in arm[v].items()))
    else:
        lines.append(f"  aarch64: not measured ({arm.get('reason')})")
    pipe = res.get("pipeline") or {}
    if pipe:
        for sfx, name in (("", "integer front end"), ("_float_frontend", "float64 front end")):
            rt = pipe.get("x86_realtime_factor" + sfx) or {}
            lines.append(f"  whole pipeline, {name} (front end + window + network + detector), x86 real-time factor: " +
                         ", ".join(f"{k} {v:,.0f}x" for k, v in rt.items() if v is not None))
            pa = pipe.get("aarch64_instructions_per_audio_second" + sfx) or {}
            if any(v is not None for v in pa.values()):
                lines.append(f"  whole pipeline, {name}, aarch64 instructions per second of audio: " +
                             ", ".join(f"{k} {v:,}" for k, v in pa.items() if v is not None))
        fe = pipe.get("frontend_aarch64_instructions_per_audio_second") or {}
        if any(v is not None for v in fe.values()):
            lines.append("  front end alone, aarch64 instructions per second of audio: " +
                         ", ".join(f"{k} {v:,}" for k, v in fe.items() if v is not None))
        else:
            lines.append(f"  whole pipeline, aarch64: {pipe.get('aarch64_reason')}")
        ns = pipe.get("frontend_x86_ns_per_frame") or {}
        if any(v is not None for v in ns.values()):
            lines.append("  front end alone, x86 ns per frame: " + ", ".join(f"{k} {v:,.0f}" for k, v in ns.items()
                                                                          if v is not None))
        lines.append(f"  C pipeline RAM {pipe.get('c_ram_bytes')} B (state + scratch; float64 front end "
                     f"{pipe.get('c_ram_bytes_float_frontend')} B), code {pipe.get('c_code_bytes')} "
                     f"(front ends {pipe.get('c_code_bytes_frontend')}); "
                     f"kwslib detect start-up {_round(pipe.get('detect_startup_s'), 2)} s, peak RSS "
                     f"{_round(pipe.get('detect_peak_rss_mb'), 1)} MB")
    for k, t in res["summary"]["targets"].items():
        val = "n/a" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"  target {k:34s} {t['goal']:>6s}: {val:>6s}  {'met' if t['met'] else 'NOT met' if t['met'] is False else ''}")
    return "\n".join(lines)


def plot_cpu(res: dict, fig_dir=None, name: str = "cpu"):
    """Bar charts: x86 microseconds per inference at batch 1 (with the floors) and aarch64 instructions."""
    from . import plots

    plt = plots.plt
    b1 = res["batches"].get("1", {}).get("us_per_inference", {})
    keys = [k for k in ("float32_numpy", "torch_float32", "onnxruntime_float32", "onnxruntime_int8_dynamic",
                        "onnxruntime_int8_static", "kwslib_int8_numpy", "kwslib_int8_c", "kwslib_w4_c") if k in b1]
    arm = res.get("aarch64", {})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    vals = [b1[k] for k in keys]
    colors = ["#1f77b4" if not k.startswith("kwslib") else "#d62728" for k in keys]
    ax.barh(keys, vals, color=colors)
    ax.set_xscale("log")
    ax.set_xlabel("us per inference, batch 1 (log scale)")
    ax.set_title("x86, one thread")
    fl = res.get("floor", {}).get("per_layout", {})
    for lay, ls in (("int8", "--"), ("w4", ":")):
        if lay in fl:
            ax.axvline(fl[lay]["batch1_floor_us"], color="k", ls=ls, lw=1, label=f"floor {lay}")
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[1]
    if arm.get("available"):
        labels, counts = [], []
        for v in ("neon", "neon-dotprod"):
            for k in ("float32", "int8", "w4"):
                if v == "neon-dotprod" and k == "float32":
                    continue
                labels.append(f"{k} ({'v8.0' if v == 'neon' else 'v8.2 dotprod'})")
                counts.append(arm[v][k])
        ax.barh(labels, counts, color=["#1f77b4"] + ["#d62728"] * (len(counts) - 1))
        for y, c in enumerate(counts):
            ax.text(c, y, f" {c / 1000:.0f}K ({counts[0] / c:.1f}x)", va="center", fontsize=8)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1000:.0f}K"))
        ax.set_xlabel("executed instructions per inference (qemu)")
        ax.set_xlim(0, max(counts) * 1.35)
    else:
        ax.text(0.5, 0.5, "aarch64 not measured:\n" + str(arm.get("reason", "")), ha="center", va="center",
                transform=ax.transAxes, fontsize=8, wrap=True)
    ax.set_title("aarch64 NEON")
    fig.tight_layout()
    plots.save(fig, fig_dir, name)
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kwslib.study.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--results-dir", default=None, help="default results/<profile>")
    ap.add_argument("--out", default=None,
                    help="where to write the JSON (default results/scratch/bench-<profile>.json, ignored by git: "
                         "the tracked results/<profile>/bench.json is written by `make reproduce`)")
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--block-ms", type=float, default=20.0, help="timed calls per method per round, in ms")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--no-neon", action="store_true", help="skip the qemu instruction counts")
    args = ap.parse_args(argv)
    results_dir = Path(args.results_dir) if args.results_dir else ROOT / "results" / args.profile
    res = run_bench(args.profile, results_dir, rounds=args.rounds, block_s=args.block_ms / 1000.0,
                    batches=tuple(args.batches), neon=not args.no_neon, log=lambda m: print(m, file=sys.stderr))
    out = Path(args.out) if args.out else ROOT / "results" / "scratch" / f"bench-{args.profile}.json"
    from ..summary import _plain

    atomic_write_json(out, _plain(res))
    print(format_report(res))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
