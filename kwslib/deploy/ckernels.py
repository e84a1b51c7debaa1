"""Optional C kernels: build ``kwslib/deploy/csrc`` with the system C compiler at first use, load with ctypes.

One shared library is built per SIMD variant (the sources pick their path
from the target macros, see ``csrc/kws_nn.h``):

    x86-64   scalar (baseline x86-64), avx2 (-mavx2), avx512vnni (-mavx512vnni ...)
    aarch64  scalar, neon (ARMv8.0-A), neon-dotprod (ARMv8.2-A + dot product)

:func:`best_variant` picks the widest one this CPU supports (from
``/proc/cpuinfo``). Builds are cached under ``$KWSLIB_CACHE`` (default
``~/.cache/kwslib``) keyed by a hash of the sources, the flags and the
compiler's version, and written atomically, so parallel processes can build
at once. With no compiler, :class:`CKernelsUnavailable` says why and
:mod:`kwslib.deploy.engine` falls back to numpy.

The NEON paths are checked on x86 too, cross-compiled and run under qemu: :mod:`kwslib.deploy.qemu`.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import KwsError
from ..quant.intspec import IntModel, max_abs_accumulator

CSRC = Path(__file__).resolve().parent / "csrc"
KISSFFT = ["kws_kissfft.c"]  # kissfft/kiss_fft.c + kiss_fftr.c in double precision
# The streaming detector (front end + window + network + detector) and everything it runs on.
PIPELINE_SOURCES = ["kws_fc_s8.c", "kws_fc_s4.c", "kws_fc_f32.c", "kws_requantize.c", "kws_net.c",
                    "kws_artifact.c", "kws_frontend.c", "kws_intfrontend.c", "kws_pipeline.c"] + KISSFFT
# kws_detcount.c: the false-detection counter of kwslib.deploy.detection.count_detections_many
LIB_SOURCES = PIPELINE_SOURCES + ["kws_floor.c", "kws_detcount.c"]
PIPELINE_HARNESS_SOURCES = PIPELINE_SOURCES + ["kws_pipeline_harness.c"]
HARNESS_SOURCES = ["kws_fc_s8.c", "kws_fc_s4.c", "kws_fc_f32.c", "kws_requantize.c", "kws_net.c", "kws_artifact.c",
                   "kws_harness.c"]
HEADERS = ["kws_nn.h", "kws_artifact.h", "kws_frontend.h", "kws_intfrontend.h", "kws_pipeline.h", "kissfft/kiss_fft.h",
           "kissfft/kiss_fftr.h", "kissfft/_kiss_fft_guts.h", "kissfft/kiss_fft_log.h", "kissfft/kiss_fft.c",
           "kissfft/kiss_fftr.c"]
# KISS FFT in double precision: the front end's arithmetic is float64 (kws_frontend.h); kws_kissfft.c and
# kws_frontend.c define it themselves too, so a build without this flag computes the same.
KISS_FLAGS = ["-Dkiss_fft_scalar=double"]
BASE_FLAGS = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-strict-aliasing"]

X86_VARIANTS = {  # variant -> (compiler flags, /proc/cpuinfo flags required)
    "scalar": (["-march=x86-64"], set()),
    "avx2": (["-march=x86-64", "-mavx2", "-mfma"], {"avx2", "fma"}),
    "avx512vnni": (["-march=x86-64", "-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"],
                   {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"}),
}
ARM_VARIANTS = {
    "scalar": (["-march=armv8-a", "-DKWS_FORCE_SCALAR"], set()),
    "neon": (["-march=armv8-a"], set()),
    "neon-dotprod": (["-march=armv8.2-a+dotprod"], {"asimddp"}),
}
KERNEL_S8, KERNEL_S4 = 1, 2
KERNEL_NAMES = {KERNEL_S8: "s8", KERNEL_S4: "s4"}
ERRORS = {-1: "invalid argument", -2: "out of memory", -3: "accumulator bound does not fit the kernel",
          -10: "bad magic", -11: "newer format version", -12: "truncated", -13: "checksum mismatch",
          -14: "bad field"}


class CKernelsUnavailable(KwsError, RuntimeError):
    """The C kernels cannot be used here (no compiler, build failure, unsupported CPU)."""


def cache_dir() -> Path:
    root = os.environ.get("KWSLIB_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "kwslib"


def machine() -> str:
    m = platform.machine().lower()
    return "aarch64" if m in ("aarch64", "arm64") else "x86_64" if m in ("x86_64", "amd64") else m


def cpu_flags() -> set:
    """Feature flags of this CPU from /proc/cpuinfo ('flags' on x86, 'Features' on ARM)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(val.split())
    return set()


def variants() -> dict:
    return ARM_VARIANTS if machine() == "aarch64" else X86_VARIANTS if machine() == "x86_64" else {"scalar": ([], set())}


def supported_variants() -> list[str]:
    """Variants this CPU can run, narrowest first."""
    flags = cpu_flags()
    return [v for v, (_, need) in variants().items() if need <= flags]


def best_variant() -> str:
    return supported_variants()[-1]


def find_compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc)
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _compiler_id(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else cc
    except (OSError, subprocess.SubprocessError) as exc:
        raise CKernelsUnavailable(f"C compiler {cc} does not run ({exc})") from exc


def _source_hash(sources, flags, cc_id: str) -> str:
    h = hashlib.sha256()
    for name in sorted(set(sources) | set(HEADERS)):
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    h.update(" ".join(flags).encode())
    h.update(cc_id.encode())
    return h.hexdigest()[:16]


def _compile(cc: str, args: list[str], out: Path, what: str) -> Path:
    """Run the compiler into a temp file next to ``out`` and rename it (atomic, race-safe)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        res = subprocess.run([cc, *args, "-o", tmp], capture_output=True, text=True, timeout=300, cwd=CSRC)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-12:]
            raise CKernelsUnavailable(f"building {what} with {cc} failed:\n" + "\n".join(tail))
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CKernelsUnavailable(f"building {what} with {cc} failed ({exc})") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def build_library(variant: str | None = None, cc: str | None = None) -> Path:
    """Compile (or find in the cache) the shared library of ``variant``; returns its path."""
    variant = variant or best_variant()
    table = variants()
    if variant not in table:
        raise CKernelsUnavailable(f"unknown C kernel variant {variant!r} on {machine()} (have {sorted(table)})")
    cc = cc or find_compiler()
    if not cc:
        raise CKernelsUnavailable("no C compiler found (set CC or install gcc); the numpy engine is used")
    flags = BASE_FLAGS + KISS_FLAGS + ["-fPIC", "-shared"] + table[variant][0]
    key = _source_hash(LIB_SOURCES, flags, _compiler_id(cc))
    out = cache_dir() / "ckernels" / f"libkws_{variant}_{key}.so"
    if out.exists():
        return out
    return _compile(cc, flags + LIB_SOURCES + ["-lm"], out, f"the {variant} C kernels")


def _setup(lib: ctypes.CDLL) -> ctypes.CDLL:
    P, I32, I64, F32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_float
    sig = {
        "kws_net_new": (P, [I32, F32, I32]),
        "kws_net_set_layer": (I32, [P, I32, I32, I32, I32, I32, P, P, P, P, I32, I32]),
        "kws_net_finalize": (I32, [P]),
        "kws_net_forward_s8": (I32, [P, P, I32, P]),
        "kws_net_forward_f32in": (I32, [P, P, I32, P]),
        "kws_net_call_f32in": (I32, [P]),
        "kws_net_layer_kernel": (I32, [P, I32]),
        "kws_net_weight_bytes": (I64, [P]),
        "kws_net_io_dim": (I32, [P, I32]),
        "kws_net_free": (None, [P]),
        "kws_net_load": (P, [P, I64, I32, P]),
        "kws_fnet_new": (P, [I32]),
        "kws_fnet_set_layer": (I32, [P, I32, I32, I32, P, P, I32]),
        "kws_fnet_finalize": (I32, [P]),
        "kws_fnet_forward": (I32, [P, P, I32, P]),
        "kws_fnet_free": (None, [P]),
        "kws_fnet_load": (P, [P, I64, P]),
        "kws_simd_path": (ctypes.c_char_p, []),
        "kws_crc32": (ctypes.c_uint32, [P, ctypes.c_size_t]),
        "kws_floor_read": (I64, [P, I64, I32, P]),
        "kws_floor_macs": (I64, [I64, P, P]),
        "kws_net_time": (I64, [P, P, I32, P, I32]),
        "kws_frontend_new": (P, [P]),
        "kws_frontend_free": (None, [P]),
        "kws_frontend_push_frames": (I32, [P, P, I32, P, I32]),
        "kws_frontend_bytes": (I64, [P]),
        "kws_frontend_reset": (None, [P]),
        "kws_ifrontend_new": (P, [P]),
        "kws_ifrontend_free": (None, [P]),
        "kws_ifrontend_reset": (None, [P]),
        "kws_ifrontend_push_frames": (I32, [P, P, I32, P, I32]),
        "kws_ifrontend_bytes": (I64, [P]),
        "kws_icode_map": (I32, [P, P, I32, I32, ctypes.c_double, I32, P, P, P]),
        "kws_pipeline_create": (P, [P, P, I64, I32, P]),
        "kws_pipeline_free": (None, [P]),
        "kws_pipeline_reset": (None, [P]),
        "kws_pipeline_push": (I32, [P, P, I32, P, I32]),
        "kws_pipeline_max_detections": (I32, [P, I32]),
        "kws_pipeline_ram_bytes": (I64, [P]),
        "kws_pipeline_weight_bytes": (I64, [P]),
        "kws_pipeline_windows": (I64, [P]),
        "kws_count_detections": (I32, [P, I64, P, I64, I64, P, P]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class CLib:
    """A loaded kernel library: ``variant`` (build), ``simd_path`` (what its #if branches chose)."""

    def __init__(self, variant: str, path: Path):
        self.variant, self.path = variant, path
        try:
            self.lib = _setup(ctypes.CDLL(str(path)))
        except OSError as exc:
            raise CKernelsUnavailable(f"cannot load {path} ({exc})") from exc
        self.simd_path = self.lib.kws_simd_path().decode()

    def __repr__(self):
        return f"CLib({self.variant}, simd={self.simd_path})"


@lru_cache(maxsize=None)
def load_library(variant: str | None = None) -> CLib:
    """Build if needed and load the library of ``variant`` (default: the best this CPU runs)."""
    variant = variant or best_variant()
    if variant not in supported_variants():
        raise CKernelsUnavailable(f"this CPU cannot run the {variant} kernels (supported: {supported_variants()})")
    return CLib(variant, build_library(variant))


def availability() -> tuple[bool, str]:
    """(True, description) if the best C kernels load here, else (False, the reason)."""
    try:
        lib = load_library()
        return True, f"C kernels ({lib.simd_path})"
    except CKernelsUnavailable as exc:
        return False, str(exc)


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _check(code: int, what: str):
    if code != 0:
        raise CKernelsUnavailable(f"{what}: {ERRORS.get(code, f'error {code}')}")


class _NetCall(ctypes.Structure):
    """kws_net_call (kws_nn.h): the arguments of one kws_net_forward_f32in call."""
    _fields_ = [("net", ctypes.c_void_p), ("x", ctypes.c_void_p), ("out", ctypes.c_void_p), ("n", ctypes.c_int32)]


class CNet:
    """An :class:`IntModel` built into the C engine (weights laid out for the SIMD path).

    ``kernel``: 'auto' (the 4-bit packed kernel for layers of <= 4 bits, int8
    containers otherwise), 's8' (int8 containers everywhere).
    """

    def __init__(self, model: IntModel, lib: CLib | None = None, kernel: str = "auto"):
        if kernel not in ("auto", "s8"):
            raise ValueError(f"kernel must be 'auto' or 's8', got {kernel!r}")
        self.lib = lib or load_library()
        L = self.lib.lib
        for k, layer in enumerate(model.layers):
            if max_abs_accumulator(layer) > 2 ** 31 - 1:
                raise CKernelsUnavailable(f"layer {k}: the accumulator bound {max_abs_accumulator(layer)} exceeds "
                                          "int32; only the numpy engine reports such overflows")
        self.handle = L.kws_net_new(len(model.layers), float(model.input_scale), int(model.input_zero_point))
        if not self.handle:
            raise CKernelsUnavailable("kws_net_new failed (bad input quantization)")
        for k, layer in enumerate(model.layers):
            c, i = layer.w_q.shape
            kern = KERNEL_S4 if kernel == "auto" and layer.bits <= 4 else KERNEL_S8
            arrs = [np.ascontiguousarray(layer.w_q, np.int8)] + [np.ascontiguousarray(a, np.int32) for a in
                                                                  (layer.bias_q, layer.mult, layer.shift)]
            _check(L.kws_net_set_layer(self.handle, k, i, c, int(layer.bits), kern, *map(_ptr, arrs),
                                       int(layer.out_zero_point), int(layer.lo)), f"layer {k}")
        _check(L.kws_net_finalize(self.handle), "kws_net_finalize")
        self.in_dim = model.layers[0].w_q.shape[1]
        self.n_out = model.layers[-1].w_q.shape[0]
        self.kernels = [KERNEL_NAMES[L.kws_net_layer_kernel(self.handle, k)] for k in range(len(model.layers))]
        self.weight_bytes = int(L.kws_net_weight_bytes(self.handle))

    def __del__(self):
        h, self.handle = getattr(self, "handle", None), None
        if h:
            self.lib.lib.kws_net_free(h)

    def forward_q(self, x_q: np.ndarray) -> np.ndarray:
        """int8 input codes [N, I] -> int8 logits [N, C]."""
        x = np.ascontiguousarray(x_q, np.int8).reshape(-1, self.in_dim)
        out = np.empty((len(x), self.n_out), np.int8)
        _check(self.lib.lib.kws_net_forward_s8(self.handle, _ptr(x), len(x), _ptr(out)), "forward")
        return out

    def forward_f32(self, x: np.ndarray) -> np.ndarray:
        """float32 input vectors [N, I] -> int8 logits (input quantization in C)."""
        x = np.ascontiguousarray(x, np.float32).reshape(-1, self.in_dim)
        out = np.empty((len(x), self.n_out), np.int8)
        _check(self.lib.lib.kws_net_forward_f32in(self.handle, _ptr(x), len(x), _ptr(out)), "forward")
        return out

    def time_in_c(self, x: np.ndarray, reps: int) -> float:
        """Nanoseconds per call of the whole batch ``x``, timed inside C over ``reps`` calls."""
        x = np.ascontiguousarray(x, np.float32).reshape(-1, self.in_dim)
        out = np.empty((len(x), self.n_out), np.int8)
        ns = self.lib.lib.kws_net_time(self.handle, _ptr(x), len(x), _ptr(out), int(reps))
        _check(0 if ns >= 0 else -1, "kws_net_time")
        return ns / reps

    def bound(self, x: np.ndarray):
        """A zero-argument callable running the network on the fixed float32 batch ``x``
        (pointers resolved once: the least Python overhead, for timing)."""
        x = np.ascontiguousarray(x, np.float32).reshape(-1, self.in_dim)
        out = np.empty((len(x), self.n_out), np.int8)
        # The four arguments in one kws_net_call struct, passed as one ready pointer to a copy of the
        # function without argtypes (no per-call conversion): measured ~0.6 us over the time inside C on
        # an AMD EPYC (Zen 3), against ~2 us for the 4-argument call through argtypes. The closure keeps
        # the struct, the arrays and the net alive.
        call = _NetCall(self.handle, _ptr(x), _ptr(out), len(x))
        fn = self.lib.lib["kws_net_call_f32in"]  # a fresh function object: its argtypes are its own
        fn.restype, fn.argtypes = ctypes.c_int32, None
        arg = ctypes.c_void_p(ctypes.addressof(call))

        def run():
            fn(arg)
            return out

        run.keep = (x, out, call, self)
        return run


class CFloatNet:
    """A float32 network (list of (W [C, I], b [C], relu)) on the float kernel kws_fc_f32."""

    def __init__(self, layers, lib: CLib | None = None):
        self.lib = lib or load_library()
        L = self.lib.lib
        self.handle = L.kws_fnet_new(len(layers))
        for k, (w, b, relu) in enumerate(layers):
            w = np.ascontiguousarray(w, np.float32)
            b = np.ascontiguousarray(b, np.float32)
            _check(L.kws_fnet_set_layer(self.handle, k, w.shape[1], w.shape[0], _ptr(w), _ptr(b), int(relu)),
                   f"float layer {k}")
        _check(L.kws_fnet_finalize(self.handle), "kws_fnet_finalize")
        self.in_dim, self.n_out = layers[0][0].shape[1], layers[-1][0].shape[0]

    def __del__(self):
        h, self.handle = getattr(self, "handle", None), None
        if h:
            self.lib.lib.kws_fnet_free(h)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32).reshape(-1, self.in_dim)
        out = np.empty((len(x), self.n_out), np.float32)
        _check(self.lib.lib.kws_fnet_forward(self.handle, _ptr(x), len(x), _ptr(out)), "forward")
        return out


def load_artifact_c(data: bytes, lib: CLib | None = None, kernel: str = "auto"):
    """Parse artifact bytes with the C reader (kws_artifact.c); returns a callable x_f32 -> int8 logits.

    Raises :class:`CKernelsUnavailable` with the C reader's error (bad magic, newer version, ...).
    """
    lib = lib or load_library()
    buf = np.frombuffer(bytes(data), np.uint8)
    err = np.zeros(1, np.int32)
    h = lib.lib.kws_net_load(_ptr(buf), len(buf), int(kernel == "auto"), _ptr(err))
    if not h:
        _check(int(err[0]) or -1, "C artifact reader")

    class _Net:
        handle = h
        in_dim, n_out = lib.lib.kws_net_io_dim(h, 0), lib.lib.kws_net_io_dim(h, 1)

        def __call__(self, x):
            x = np.ascontiguousarray(x, np.float32).reshape(-1, self.in_dim)
            out = np.empty((len(x), self.n_out), np.int8)
            _check(lib.lib.kws_net_forward_f32in(h, _ptr(x), len(x), _ptr(out)), "forward")
            return out

        def __del__(self):
            lib.lib.kws_net_free(h)

    return _Net()


# --- evaluation: false-detection counts (kws_detcount.c) -------------------------------------------

def count_detections_c(scores: np.ndarray, thresholds: np.ndarray, gap: int, false_at: np.ndarray,
                       lib: CLib | None = None) -> np.ndarray:
    """``kws_count_detections``: per threshold, the detections at ``false_at`` steps (see
    :func:`kwslib.deploy.detection.count_detections_many`, the specification). CKernelsUnavailable without C."""
    lib = lib or load_library()
    s = np.ascontiguousarray(scores, np.float64)
    thr = np.ascontiguousarray(thresholds, np.float64)
    fa = np.ascontiguousarray(false_at, np.uint8)
    if s.ndim != 1 or fa.shape != s.shape or thr.ndim != 1:
        raise ValueError(f"count_detections_c: scores {s.shape} and false_at {fa.shape} must be one matching 1-D "
                         f"shape, thresholds 1-D (got {thr.shape})")
    out = np.zeros(len(thr), np.int64)
    _check(lib.lib.kws_count_detections(_ptr(s), len(s), _ptr(thr), len(thr), max(int(gap), 1), _ptr(fa), _ptr(out)),
           "kws_count_detections")
    return out
