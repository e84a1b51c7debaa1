"""The network benchmark (:mod:`kwslib.study.bench` runs it): one network, many runtimes, one thread.

:func:`methods_for` builds the timed methods (numpy, torch, onnxruntime float32 and int8, the kwslib
numpy and C engines, through ctypes, the API and inside C), :func:`time_methods` times them in
interleaved rounds, :func:`machine_floor` measures what the machine allows (read bandwidth, int8 MAC
rate) and :func:`neon_counts` counts aarch64 instructions per inference under qemu.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..deploy.engine import Engine, float_forward, float_layers
from ..quant.intspec import IntModel


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
    from ..deploy import ckernels, export, qemu

    try:
        qemu.neon_tools()
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
            sub[name] = qemu.count_instructions(art, x, mode=mode, variant=variant, repeats=repeats)["per_inference"]
        out[variant] = sub
    return out
