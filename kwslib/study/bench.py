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

aarch64: executed instructions per inference under qemu (kwslib.deploy.qemu),
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
from pathlib import Path

import numpy as np

from . import memory
from ..deploy.engine import random_int_model
from .bench_network import machine_floor, methods_for, neon_counts, time_methods
from .bench_pipeline import memory_table, pipeline_bench
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
