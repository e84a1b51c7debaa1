"""The aarch64 builds, checked on x86: cross-compiled with ``aarch64-linux-gnu-gcc`` and run under
``qemu-aarch64`` (the NEON paths of the C kernels, the integer front end and the whole detector).

:func:`build_harness` compiles ``csrc/kws_harness.c`` (or ``csrc/kws_pipeline_harness.c``) statically;
:func:`run_harness` and :func:`run_frontend_qemu` run it and return its outputs (the tests compare them
bit for bit with the numpy specification); :func:`count_instructions` and
:func:`count_pipeline_instructions` count the instructions it executes (``-singlestep -d exec,nochain``: one
log line per executed instruction), the benchmark's machine-independent measure of CPU cost, and
:func:`count_pipeline_functions` says which functions executed them; :func:`code_bytes`
reads the detector's code size for x86-64 or aarch64; :class:`QemuNet` is a network run under qemu.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..quant.intspec import IntModel
from .ckernels import (
    BASE_FLAGS,
    CSRC,
    HARNESS_SOURCES,
    KISS_FLAGS,
    PIPELINE_HARNESS_SOURCES,
    PIPELINE_SOURCES,
    X86_VARIANTS,
    CKernelsUnavailable,
    _compile,
    _compiler_id,
    _source_hash,
    best_variant,
    cache_dir,
    find_compiler,
    machine,
)


def neon_tools() -> tuple[str, str]:
    """(cross compiler, qemu) paths; CKernelsUnavailable naming what is missing."""
    gcc = shutil.which(os.environ.get("KWSLIB_AARCH64_CC", "aarch64-linux-gnu-gcc"))
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    missing = [n for n, p in (("aarch64-linux-gnu-gcc (apt: gcc-aarch64-linux-gnu)", gcc),
                              ("qemu-aarch64 (apt: qemu-user)", qemu)) if not p]
    if missing:
        raise CKernelsUnavailable("NEON check needs " + " and ".join(missing))
    return gcc, qemu


NEON_TARGETS = {"neon": "-march=armv8-a", "neon-dotprod": "-march=armv8.2-a+dotprod",
                "scalar": "-march=armv8-a"}


def build_harness(variant: str = "neon", extra_flags: tuple = (), pipeline: bool = False) -> Path:
    """Cross-compile the static aarch64 test harness for ``variant`` (cached).

    ``pipeline``: the whole-pipeline harness (kws_pipeline_harness.c) instead of the network one."""
    if variant not in NEON_TARGETS:
        raise ValueError(f"unknown aarch64 variant {variant!r}")
    gcc, _ = neon_tools()
    flags = BASE_FLAGS + ["-static", NEON_TARGETS[variant]] + (["-DKWS_FORCE_SCALAR"] if variant == "scalar" else [])
    flags += (KISS_FLAGS if pipeline else []) + list(extra_flags)
    sources = PIPELINE_HARNESS_SOURCES if pipeline else HARNESS_SOURCES
    key = _source_hash(sources, flags, _compiler_id(gcc))
    name = "kws_pipeline_harness" if pipeline else "kws_harness"
    out = cache_dir() / "ckernels" / f"{name}_aarch64_{variant}_{key}"
    if out.exists():
        return out
    return _compile(gcc, flags + sources + ["-lm"], out, f"the aarch64 {variant} {name}")


# Functions the harness runs only while loading the artifact and laying out weights,
# never during an inference: left out of the instruction log to keep it small.
SETUP_ONLY = ("kws_artifact_parse", "kws_crc32", "kws_unpack_codes", "kws_net_from_artifact",
              "kws_fnet_from_artifact", "layer_arrays", "kws_net_set_layer", "kws_fnet_set_layer",
              "kws_fc_s8_prepare", "kws_fc_s4_prepare", "kws_fc_f32_prepare", "kws_net_new", "kws_fnet_new",
              "kws_net_finalize", "kws_fnet_finalize", "read_file",
              "kws_pipeline_create", "kws_frontend_new", "kiss_fftr_alloc", "kiss_fft_alloc", "kf_factor",
              "kws_ifrontend_new", "kws_frontend_mel_weights", "kws_icode_map")


def _dfilter(binary: Path) -> str | None:
    """A qemu -dfilter list covering every address except the SETUP_ONLY functions (None: no nm)."""
    try:
        spans = [(a, b) for a, b, name in _function_spans(binary) if name in SETUP_ONLY]
    except CKernelsUnavailable:
        return None
    if not spans:
        return None
    ranges, pos = [], 0
    for a, b in sorted(spans):
        if a > pos:
            ranges.append(f"0x{pos:x}..0x{a - 1:x}")
        pos = max(pos, b)
    ranges.append(f"0x{pos:x}..0x{(1 << 64) - 1:x}")
    return ",".join(ranges)


def _run_qemu(binary: Path, args: list[str], log: Path | None = None, timeout: int = 600,
              dfilter: str | None = None):
    _, qemu = neon_tools()
    trace = ["-singlestep", "-d", "exec,nochain", "-D", str(log)] + (["-dfilter", dfilter] if dfilter else [])
    cmd = [qemu] + (trace if log else []) + [str(binary)] + args
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise CKernelsUnavailable(f"qemu run of {binary.name} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return res


def run_harness(artifact_path, x: np.ndarray, mode: str = "auto", variant: str = "neon",
                extra_flags: tuple = ()) -> np.ndarray:
    """Run the aarch64 harness under qemu on float32 input vectors [N, I]: int8 logits (float32 for 'f32')."""
    binary = build_harness(variant, extra_flags)
    x = np.ascontiguousarray(x, np.float32)
    with tempfile.TemporaryDirectory(prefix="kwsneon") as d:
        xin, xout = Path(d) / "x.f32", Path(d) / "y.out"
        x.tofile(xin)
        _run_qemu(binary, [mode, str(artifact_path), str(xin), str(xout), str(len(x)), "-1"])
        y = np.fromfile(xout, np.float32 if mode == "f32" else np.int8)
    return y.reshape(len(x), -1)


def _count_lines(log: Path) -> int:
    """Occurrences of b"Trace " (one per executed instruction), read in chunks; the last
    len(token) - 1 bytes of a chunk are carried over so a token split across chunks counts once."""
    token, n, tail = b"Trace ", 0, b""
    with open(log, "rb") as f:
        while chunk := f.read(1 << 24):
            buf = tail + chunk
            n += buf.count(token)
            tail = buf[-(len(token) - 1):]
    return n


def count_instructions(artifact_path, x_row: np.ndarray, mode: str = "auto", variant: str = "neon",
                       repeats: int = 3, skip_setup: bool = True, extra_flags: tuple = ()) -> dict:
    """Executed aarch64 instructions per inference (batch 1) under ``qemu-aarch64 -singlestep -d exec,nochain``.

    One log line per executed instruction; the count of a run with ``repeats``
    inferences minus that of a run with none (start-up, file reading, weight
    layout), divided by ``repeats``. ``skip_setup``: leave the setup-only
    functions (:data:`SETUP_ONLY`) out of the log with ``-dfilter``; this only
    shrinks the log, the difference is the same (tested).
    """
    binary = build_harness(variant, extra_flags)
    dfilter = _dfilter(binary) if skip_setup else None
    x = np.ascontiguousarray(np.asarray(x_row, np.float32).reshape(1, -1))
    counts = {}
    with tempfile.TemporaryDirectory(prefix="kwsneon") as d:
        xin, xout = Path(d) / "x.f32", Path(d) / "y.out"
        x.tofile(xin)
        for r in (0, repeats):
            log = Path(d) / f"exec{r}.log"
            _run_qemu(binary, [mode, str(artifact_path), str(xin), str(xout), "1", str(r)], log=log,
                      dfilter=dfilter)
            counts[r] = _count_lines(log)
            log.unlink()
    per = (counts[repeats] - counts[0]) / repeats
    return {"per_inference": int(round(per)), "startup": counts[0], "total": counts[repeats], "repeats": repeats,
            "mode": mode, "variant": variant, "setup_filtered": dfilter is not None}


def run_frontend_qemu(artifact_path, config_text: str, pcm: np.ndarray, frontend: str = "int",
                      variant: str = "neon-dotprod") -> np.ndarray:
    """The aarch64 build's front end alone under qemu (kws_pipeline_harness ``frontend`` mode) on int16
    ``pcm``: Q20 log2 frames [F, n_mels] int32 (``frontend="int"``) or float32 log-mel (``"float"``)."""
    if frontend not in ("int", "float"):
        raise ValueError(f"frontend must be int or float, got {frontend!r}")
    binary = build_harness(variant, pipeline=True)
    n_mels = int(config_text.split()[4])
    with tempfile.TemporaryDirectory(prefix="kwsneon") as d:
        cfg, raw, out = Path(d) / "config.txt", Path(d) / "pcm.raw", Path(d) / "frames.out"
        cfg.write_text(config_text)
        np.ascontiguousarray(pcm, np.int16).tofile(raw)
        _run_qemu(binary, ["frontend", str(artifact_path), str(cfg), str(raw), frontend, str(out)])
        y = np.fromfile(out, np.int32 if frontend == "int" else np.float32)
    return y.reshape(-1, n_mels)


def count_pipeline_instructions(artifact_path, config_text: str, pcm: np.ndarray, mode: str = "int",
                                variant: str = "neon-dotprod", t1: float = 0.5, t2: float = 1.5,
                                frontend: str = "int") -> dict:
    """Executed aarch64 instructions per second of audio of the whole pipeline, in steady state.

    Runs kws_pipeline_harness (primed window: a network run every ``step_frames`` frames from the
    start) on the first ``t1`` and the first ``t2`` seconds of ``pcm`` (int16 at the model's rate,
    ``sample_rate`` from the config) and divides the difference of the counts by ``t2 - t1``: front
    end, window, network and detector of that much audio, start-up and setup excluded.
    ``frontend``: ``int`` or ``float`` (kws_pipeline_config.frontend_kind). ``mode="frontend"``: the
    front end alone (no window, network or detector).
    """
    c1, c2, filtered = _pipeline_runs(lambda binary: _count_lines, artifact_path, config_text, pcm, mode, variant,
                                      t1, t2, frontend, "count_pipeline_instructions")
    per_s = (c2 - c1) / (t2 - t1)
    return {"per_audio_second": int(round(per_s)), "counts": [c1, c2], "seconds": [t1, t2],
            "mode": mode, "frontend": frontend, "variant": variant, "setup_filtered": filtered}


def _pipeline_runs(count_for, artifact_path, config_text: str, pcm: np.ndarray, mode: str, variant: str,
                   t1: float, t2: float, frontend: str, caller: str) -> tuple:
    """The pipeline harness (``variant``, setup-only functions filtered out of the log) under qemu on the first
    ``t1`` and the first ``t2`` seconds of ``pcm``. ``count_for(binary)`` gives the function that reads a run's
    exec log (deleted once read). Returns (count of t1, count of t2, whether the setup filter was applied)."""
    if frontend not in ("int", "float"):
        raise ValueError(f"frontend must be int or float, got {frontend!r}")
    if not 0 < t1 < t2:
        raise ValueError(f"{caller}: need 0 < t1 < t2, got t1={t1}, t2={t2}")
    rate = int(config_text.split()[0])
    pcm = np.ascontiguousarray(pcm, np.int16)
    n1, n2 = int(round(t1 * rate)), int(round(t2 * rate))
    if len(pcm) < n2:
        raise ValueError(f"{caller}: need {t2} s of audio, got {len(pcm) / rate:.2f} s")
    binary = build_harness(variant, pipeline=True)
    dfilter = _dfilter(binary)
    count = count_for(binary)
    counts = []
    with tempfile.TemporaryDirectory(prefix="kwsneon") as d:
        cfg = Path(d) / "config.txt"
        cfg.write_text(config_text)
        for n in (n1, n2):
            raw, log = Path(d) / f"pcm{n}.raw", Path(d) / f"exec{n}.log"
            pcm[:n].tofile(raw)
            _run_qemu(binary, [mode, str(artifact_path), str(cfg), str(raw), frontend], log=log, dfilter=dfilter)
            counts.append(count(log))
            log.unlink()
    return counts[0], counts[1], dfilter is not None


def _function_spans(binary: Path) -> list[tuple[int, int, str]]:
    """(start, end, name) of every function in ``binary``'s text, sorted (from ``nm -S``)."""
    nm = shutil.which("aarch64-linux-gnu-nm") or shutil.which("llvm-nm")
    if not nm:
        raise CKernelsUnavailable("no aarch64-linux-gnu-nm or llvm-nm to read function addresses")
    res = subprocess.run([nm, "-S", "--defined-only", str(binary)], capture_output=True, text=True, timeout=60)
    spans = []
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2].lower() == "t":
            start = int(parts[0], 16)
            spans.append((start, start + int(parts[1], 16), parts[3]))
    return sorted(spans)


def _count_by_function(log: Path, spans: list[tuple[int, int, str]]) -> dict:
    """Executed instructions per function name from an ``exec,nochain`` log (``?``: outside every span)."""
    import bisect
    import re
    from collections import Counter

    starts = [a for a, _, _ in spans]
    pat = re.compile(rb"Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
    counts: Counter = Counter()
    with open(log, "rb") as f:
        for line in f:
            m = pat.search(line)
            if m:
                pc = int(m.group(1), 16)
                i = bisect.bisect_right(starts, pc) - 1
                counts[spans[i][2] if i >= 0 and pc < spans[i][1] else "?"] += 1
    return dict(counts)


def count_pipeline_functions(artifact_path, config_text: str, pcm: np.ndarray, mode: str = "frontend",
                             variant: str = "neon-dotprod", t1: float = 0.26, t2: float = 0.5,
                             frontend: str = "int") -> dict:
    """:func:`count_pipeline_instructions`, attributed to the functions that executed them: executed aarch64
    instructions per second of audio per function name, in steady state (the difference of the runs on the
    first ``t1`` and ``t2`` seconds over ``t2 - t1``; setup-only functions are left out as there). The C
    front ends keep each step in its own function (``window_and_scale``, ``fft``, ``split_power``,
    ``mel_log2`` in ``kws_intfrontend.c``), so this is the per-step cost. Returns ``{"per_audio_second":
    {name: count}, "total": sum of them, ...}``; names whose two counts are equal (start-up only) are dropped."""
    def count_for(binary):
        spans = _function_spans(binary)
        return lambda log: _count_by_function(log, spans)

    c1, c2, _ = _pipeline_runs(count_for, artifact_path, config_text, pcm, mode, variant, t1, t2, frontend,
                               "count_pipeline_functions")
    per_s = {}
    for name in sorted(set(c1) | set(c2)):
        diff = c2.get(name, 0) - c1.get(name, 0)
        if diff:
            per_s[name] = int(round(diff / (t2 - t1)))
    return {"per_audio_second": per_s, "total": sum(per_s.values()), "seconds": [t1, t2], "mode": mode,
            "frontend": frontend, "variant": variant}


def code_bytes(target: str = "x86_64") -> dict:
    """Code size of the streaming detector (PIPELINE_SOURCES), in bytes, for ``target``.

    Each source compiled to an object file as the library is built (x86-64: the best variant of this
    CPU; aarch64: neon-dotprod, with aarch64-linux-gnu-gcc), sizes read with binutils ``size``
    (Berkeley format: ``text`` is code plus read-only data). Returns per-file and total ``text``
    and the total ``data + bss``; CKernelsUnavailable when the compiler or ``size`` is missing.
    """
    if target == "x86_64":
        cc, sz = find_compiler(), shutil.which("size")
        vflags = X86_VARIANTS[best_variant()][0] if machine() == "x86_64" else []
    elif target == "aarch64":
        cc, sz = neon_tools()[0], shutil.which("aarch64-linux-gnu-size")
        vflags = [NEON_TARGETS["neon-dotprod"]]
    else:
        raise ValueError(f"code_bytes: target must be x86_64 or aarch64, got {target!r}")
    if not cc or not sz:
        raise CKernelsUnavailable(f"code size for {target} needs a compiler and binutils size")
    with tempfile.TemporaryDirectory(prefix="kwssize") as d:
        objs = []
        for src in PIPELINE_SOURCES:
            obj = Path(d) / (Path(src).stem + ".o")
            res = subprocess.run([cc, *BASE_FLAGS, *KISS_FLAGS, *vflags, "-c", src, "-o", str(obj)], cwd=CSRC,
                                 capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                raise CKernelsUnavailable(f"compiling {src} for {target} failed: {res.stderr.strip()[-300:]}")
            objs.append(obj)
        out = subprocess.run([sz, *map(str, objs)], capture_output=True, text=True, timeout=60).stdout.splitlines()
    per_file, data = {}, 0
    for line in out[1:]:
        parts = line.split()
        if len(parts) >= 6:
            per_file[Path(parts[-1]).stem] = int(parts[0])
            data += int(parts[1]) + int(parts[2])
    return {"text": sum(per_file.values()), "data_bss": data, "per_file": per_file, "target": target,
            "flags": " ".join(BASE_FLAGS + KISS_FLAGS + vflags)}


class QemuNet:
    """An IntModel run by the aarch64 harness under qemu (for whole-test-set checks).

    ``forward_f32(x)``: float32 input vectors -> int8 logits, computed by the
    NEON (``variant``) build with kernel ``mode`` ('auto': 4-bit kernel for
    layers of <= 4 bits; 's8').
    """

    def __init__(self, model: IntModel, variant: str = "neon-dotprod", mode: str = "auto"):
        from .export import save_artifact

        self.variant, self.mode = variant, mode
        build_harness(variant)
        self._dir = tempfile.TemporaryDirectory(prefix="kwsqemu")
        self.path = save_artifact(Path(self._dir.name) / "model.kws", model)

    def forward_f32(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if len(x) == 0:
            return np.zeros((0, 0), np.int8)
        return run_harness(self.path, x, mode=self.mode, variant=self.variant)

    def close(self):
        self._dir.cleanup()
