"""LiteRT (TFLite) with XNNPACK as a comparison peer for the integer network.

    ok, why = available()                      # (False, reason) without the optional dependency
    blob = to_tflite(model)                    # full-int8 .tflite flatbuffer of the same network
    net = LiteRTNet(model)                     # ai_edge_litert Interpreter, one thread, XNNPACK
    net.forward_q(x_q)                         # int8 codes [N, I] -> int8 logits [N, classes]
    net.describe()                             # which runtime path ran (XNNPACK or builtin kernels)
    run = net.bound(x_q); run()                # set_tensor + invoke + get_tensor, for timing
    agreement(model, x_q)                      # LiteRT vs model.forward_int, row by row

The flatbuffer is written without TensorFlow: the object API of the schema code
that ``ai_edge_litert`` ships (``schema_py_generated``, built on the PyPI package
``flatbuffers``, a dependency of ai-edge-litert), one FULLY_CONNECTED op per :class:`~kwslib.quant.intspec.IntLayer`:

    input     int8 [N, I], scale = s_x, zero point = z_x (the layer's input quantization)
    weights   int8 [C, I] = our codes w_q, per-output-channel symmetric (zero points 0,
              quantized_dimension 0), scale s_w[c] = M[c] * s_y / s_x in float32, M[c] =
              |mult[c]| * 2^-(31 + shift[c]); of the float32 values next to it, the one whose
              s_x * s_w / s_y (what the runtime computes) is nearest to M[c]
    bias      int32 [C] = bias_q + z_x * sum_i w_q[c, i] (TFLite's FC computes
              sum_i (x_i - z_x) * w_ci + b_c; our bias_q already holds -z_x * sum_i w_ci),
              scale s_x * s_w[c]
    output    int8 [N, C], scale s_y, zero point z_y; fused RELU for a hidden layer (TFLite
              then clamps at max(-128, z_y + round(0 / s_y)) = z_y, our lower clamp), NONE for
              the logits (clamp -128..127)

A channel with mult < 0 is written with negated weights and bias (the product
acc * mult is unchanged); a channel with mult = 0 (output always z_y) with zero
weights and bias and a positive dummy scale.

Not bit-exact, by construction of the runtimes: XNNPACK requantizes in float32
(acc converted to float, times s_x * s_w / s_y as a float32, rounded to
nearest-even), TFLite's builtin kernels with a Q31 multiplier it recomputes from the float32
scales and (in its standard build) two roundings (rounding doubling high
multiply, then rounding right shift); our spec rounds
once, half up, from an exact 64-bit product. Outputs near a rounding boundary
can land one code apart, and a hidden-layer difference can move later layers.
:func:`agreement` measures it; tests/test_litert_peer.py asserts the bounds.

Measured (LiteRT 2.3.0, x86-64 AVX2, random_int_model(8) / (4), 2000 random
int8 rows): through XNNPACK, 8-bit: 100% of rows identical to ours; 4-bit:
99.8-99.9% rows identical, every value within one code, argmax 100%; XNNPACK's
output equals :func:`xnnpack_reference` (its float32 requantization in numpy)
exactly. TFLite's builtin kernels (``xnnpack=False``): 88% (8-bit) / 26-28%
(4-bit) rows identical, every value within one code, argmax >= 99.7%.

Int4 (``to_tflite(model, int4=True)``, all layers <= 4 bits): the weights are a
TensorType.INT4 tensor, two codes per byte, low nibble first, over the
flattened [C, I] tensor (FULLY_CONNECTED version 10). See :data:`INT4_NOTE`.
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
import tempfile

import numpy as np

from ...errors import KwsError
from ...quant.intspec import ACC_MAX, ACC_MIN, IntModel

PIN = "ai-edge-litert==2.3.0"
INSTALL_HINT = "ai-edge-litert not installed: pip install -e '.[peers]'"

#: What LiteRT 2.3.0 does with int4 weights (measured on x86-64 AVX2).
INT4_NOTE = ("LiteRT 2.3.0 runs FULLY_CONNECTED with packed INT4 weights (per-channel, zero points 0) and int8 "
             "activations: XNNPACK delegates it when the layer's input width is even, and "
             "leaves a layer with an odd input width to TFLite's builtin kernel; the "
             "builtin path without XNNPACK runs it too. Outputs equal the int8-container network's on the same path.")


class LiteRTModelError(KwsError, ValueError):
    """An IntModel that cannot be written as (or run by) a TFLite int8 network, with the reason."""


def available() -> tuple[bool, str]:
    """(True, 'ai-edge-litert VERSION') when the runtime imports, else (False, the reason and how to install)."""
    try:
        from ai_edge_litert import interpreter  # noqa: F401
        from ai_edge_litert import schema_py_generated  # noqa: F401
    except ImportError:
        return False, INSTALL_HINT
    except Exception as exc:  # a broken install (a shared library that does not load)
        return False, f"ai-edge-litert does not load ({type(exc).__name__}: {exc}); reinstall with pip install {PIN!r}"
    try:
        version = importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    return True, f"ai-edge-litert {version}"


def _require():
    ok, why = available()
    if not ok:
        raise ImportError(why)
    from ai_edge_litert import interpreter, schema_py_generated

    return interpreter, schema_py_generated


# --- the flatbuffer ---------------------------------------------------------------------------------

def _weight_scales(m_real: np.ndarray, s_x: float, s_y: float) -> np.ndarray:
    """float32 s_w with float64(s_x) * float64(s_w) / float64(s_y) nearest to m_real (all float32 tensor scales)."""
    sx, sy = float(np.float32(s_x)), float(np.float32(s_y))
    target = m_real * sy / sx
    base = target.astype(np.float32)
    cands = [base]
    up, down = base, base
    for _ in range(3):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        cands += [up, down]
    cands = np.stack(cands)  # [7, C]
    err = np.abs(sx * cands.astype(np.float64) / sy - m_real[None])
    return cands[np.argmin(err, axis=0), np.arange(len(m_real))].astype(np.float32)


def _check_model(model: IntModel, int4: bool):
    if not isinstance(model, IntModel):
        raise LiteRTModelError(f"to_tflite: expected an IntModel, got {type(model).__name__}")
    if not model.layers:
        raise LiteRTModelError("to_tflite: the model has no layers")
    s_x, z_x, i_dim = float(model.input_scale), int(model.input_zero_point), model.layers[0].w_q.shape[1]
    for k, layer in enumerate(model.layers):
        c, i = layer.w_q.shape
        where = f"to_tflite: layer {k}"
        if i != i_dim:
            raise LiteRTModelError(f"{where}: takes {i} inputs, the previous layer gives {i_dim}")
        if not np.isclose(layer.in_scale, s_x, rtol=1e-6, atol=0) or int(layer.in_zero_point) != z_x:
            raise LiteRTModelError(f"{where}: input quantization (scale {layer.in_scale}, zero point "
                                   f"{layer.in_zero_point}) differs from what feeds it (scale {s_x}, zero point {z_x}); "
                                   "TFLite has one quantization per tensor")
        for name, v in (("in_scale", layer.in_scale), ("out_scale", layer.out_scale)):
            if not (np.isfinite(v) and v > 0):
                raise LiteRTModelError(f"{where}: {name} must be positive and finite, got {v}")
        for name, v in (("in_zero_point", layer.in_zero_point), ("out_zero_point", layer.out_zero_point)):
            if not -128 <= int(v) <= 127:
                raise LiteRTModelError(f"{where}: {name} {v} outside int8")
        if int4 and layer.bits > 4:
            raise LiteRTModelError(f"{where}: {layer.bits}-bit weights do not fit int4 (int4=True needs every "
                                   "layer <= 4 bits)")
        s_x, z_x, i_dim = float(layer.out_scale), int(layer.out_zero_point), c


def _layer_arrays(layer):
    """(weight codes int8 [C, I], int32 bias, float32 weight scales) of one layer, in TFLite's convention."""
    w = layer.w_q.astype(np.int64)
    mult = layer.mult.astype(np.int64)
    m_real = np.abs(mult).astype(np.float64) * np.exp2(-(31.0 + layer.shift.astype(np.float64)))
    b = layer.bias_q.astype(np.int64) + int(layer.in_zero_point) * w.sum(axis=1)
    sign = np.where(mult < 0, -1, 1)
    w, b = w * sign[:, None], b * sign
    zero = mult == 0
    w[zero], b[zero] = 0, 0
    if b.size and (b.min() < ACC_MIN or b.max() > ACC_MAX):
        raise LiteRTModelError("to_tflite: a TFLite bias (bias_q + z_x * sum_i w) is outside int32")
    s_w = np.ones(len(m_real), np.float32)
    nz = ~zero
    if nz.any():
        s_w[nz] = _weight_scales(m_real[nz], layer.in_scale, layer.out_scale)
        s_w[zero] = np.median(s_w[nz])  # any positive scale: the channel's weights and bias are 0
    if not np.all(np.isfinite(s_w) & (s_w > 0)):
        raise LiteRTModelError("to_tflite: a weight scale underflows or overflows float32")
    return w.astype(np.int8), b.astype(np.int32), s_w


def pack_int4(codes: np.ndarray) -> np.ndarray:
    """int8 codes in [-8, 7] -> packed uint8, two per byte, low nibble first, over the flattened array."""
    flat = np.asarray(codes, np.int8).reshape(-1)
    if flat.size and (flat.min() < -8 or flat.max() > 7):
        raise LiteRTModelError("pack_int4: codes outside [-8, 7]")
    nib = (flat.astype(np.uint8) & 0x0F)
    if len(nib) % 2:
        nib = np.concatenate([nib, np.zeros(1, np.uint8)])
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)


def to_tflite(model: IntModel, batch: int = 1, int4: bool = False) -> bytes:
    """A full-int8 .tflite flatbuffer of ``model`` (see the module docstring for the mapping).

    ``batch``: the input's first dimension (the shape signature is [-1, I], so the
    interpreter can resize it). ``int4``: weights as packed INT4 tensors (every
    layer must be <= 4 bits). Raises :class:`LiteRTModelError` for a model that
    has no TFLite equivalent (scales that differ between a layer and its input,
    a bias outside int32, ...).
    """
    import flatbuffers

    _, S = _require()
    batch = int(batch)
    if batch < 1:
        raise LiteRTModelError(f"to_tflite: batch must be >= 1, got {batch}")
    _check_model(model, int4)

    buffers = [S.BufferT()]  # buffer 0: the empty sentinel

    def buffer(arr: np.ndarray | None) -> int:
        b = S.BufferT()
        if arr is not None:
            b.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8)
        buffers.append(b)
        return len(buffers) - 1

    tensors = []

    def tensor(name, shape, ttype, scale, zero_point, buf=0, qdim=0, signature=None) -> int:
        t = S.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buf
        if signature is not None:
            t.shapeSignature = list(signature)
        q = S.QuantizationParametersT()
        q.scale = [float(s) for s in np.atleast_1d(scale)]
        q.zeroPoint = [int(z) for z in np.atleast_1d(zero_point)]
        q.quantizedDimension = qdim
        t.quantization = q
        tensors.append(t)
        return len(tensors) - 1

    code = S.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = S.BuiltinOperator.FULLY_CONNECTED
    code.version = 10 if int4 else 4  # int8 x int4 -> int8: version 10; int8: version 4 (op_version.cc)

    i_dim = model.layers[0].w_q.shape[1]
    cur = tensor("input", (batch, i_dim), S.TensorType.INT8, model.input_scale, model.input_zero_point,
                 signature=(-1, i_dim))
    first = cur
    ops = []
    for k, layer in enumerate(model.layers):
        c, i = layer.w_q.shape
        w, b, s_w = _layer_arrays(layer)
        if int4:
            wt = tensor(f"fc{k}/weights_int4", (c, i), S.TensorType.INT4, s_w, np.zeros(c, np.int64),
                        buf=buffer(pack_int4(w)))
        else:
            wt = tensor(f"fc{k}/weights", (c, i), S.TensorType.INT8, s_w, np.zeros(c, np.int64), buf=buffer(w))
        bias_scale = (np.float32(layer.in_scale) * s_w).astype(np.float32)  # as the runtime checks it (float32)
        bt = tensor(f"fc{k}/bias", (c,), S.TensorType.INT32, bias_scale, np.zeros(c, np.int64),
                    buf=buffer(b.astype("<i4")))
        out = tensor(f"fc{k}/output" if k < len(model.layers) - 1 else "logits", (batch, c), S.TensorType.INT8,
                     layer.out_scale, layer.out_zero_point, signature=(-1, c))
        opt = S.FullyConnectedOptionsT()
        opt.fusedActivationFunction = (S.ActivationFunctionType.RELU if layer.relu
                                       else S.ActivationFunctionType.NONE)
        opt.weightsFormat = S.FullyConnectedOptionsWeightsFormat.DEFAULT
        opt.keepNumDims = False
        op = S.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [cur, wt, bt], [out]
        op.builtinOptionsType, op.builtinOptions = S.BuiltinOptions.FullyConnectedOptions, opt
        ops.append(op)
        cur = out

    sg = S.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, [first], [cur], ops, "main"
    m = S.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [code], [sg], buffers
    m.description = "kwslib IntModel" + (" (int4 weights)" if int4 else "")
    builder = flatbuffers.Builder(1024 + sum(layer.w_q.size + 8 * len(layer.bias_q) for layer in model.layers))
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# --- the runtime ------------------------------------------------------------------------------------

class _StderrCapture:
    """Capture what native code writes to file descriptor 2 (TFLite logs the delegates it creates there)."""

    def __enter__(self):
        sys.stderr.flush()
        self.tmp = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()
        return False


def _execution_plan(interp) -> list[str]:
    """Names of the nodes that run, in order: the graph's nodes less those a delegate replaced.

    The wrapper lists every node, the original ones and the delegate kernels
    appended after them ('DELEGATE'). A delegate node replaces the original
    nodes between its inputs and its outputs: walk back from its outputs
    through their producers, stopping at its inputs.
    """
    nodes = [(d["op_name"], set(map(int, d["inputs"])), set(map(int, d["outputs"])))
             for d in interp._get_ops_details()]
    producer = {t: k for k, (name, _, outs) in enumerate(nodes) if name != "DELEGATE" for t in outs}
    slot = {}  # original node -> the delegate node that runs in its place
    for d, (name, ins, outs) in enumerate(nodes):
        if name != "DELEGATE":
            continue
        todo = [t for t in outs if t not in ins]
        while todo:
            k = producer.get(todo.pop())
            if k is None or k in slot:
                continue
            slot[k] = d
            todo += [t for t in nodes[k][1] if t not in ins]
    plan, placed = [], set()
    for k, (name, _, _) in enumerate(nodes):  # original nodes are in execution order; a delegate runs
        if name == "DELEGATE":                # where the first node it replaced was
            if k not in placed:
                plan.append(name)
        elif k not in slot:
            plan.append(name)
        elif slot[k] not in placed:
            placed.add(slot[k])
            plan.append("DELEGATE")
    return plan


class LiteRTNet:
    """One :class:`IntModel` on the LiteRT interpreter (int8 in, int8 out).

    ``xnnpack=True`` (the default): the BUILTIN op resolver, which applies
    LiteRT's default XNNPACK delegate; ``False``: BUILTIN_WITHOUT_DEFAULT_DELEGATES
    (TFLite's own optimized kernels), for comparison. :attr:`path` says what
    actually ran, read from the interpreter's graph after allocation: 'xnnpack'
    when a delegate node replaced every FULLY_CONNECTED node, 'builtin' when
    there is no delegate node, 'partial' otherwise (:attr:`ops` lists the
    execution plan's node names). The only default delegate of the BUILTIN
    resolver is XNNPACK; :attr:`log` holds what the runtime printed while
    loading ("Created TensorFlow Lite XNNPACK delegate for CPU.", printed once
    per process). ``int4``: packed INT4 weights (layers <= 4 bits).
    """

    def __init__(self, model: IntModel, threads: int = 1, batch: int = 1, int4: bool = False,
                 xnnpack: bool = True):
        interpreter, _ = _require()
        self.model, self.threads, self.int4, self.xnnpack = model, int(threads), bool(int4), bool(xnnpack)
        self.blob = to_tflite(model, batch=batch, int4=int4)
        resolver = (interpreter.OpResolverType.BUILTIN if xnnpack
                    else interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        with _StderrCapture() as cap:
            try:
                self.interp = interpreter.Interpreter(model_content=self.blob, num_threads=self.threads,
                                                      experimental_op_resolver_type=resolver)
                self.interp.allocate_tensors()
            except (RuntimeError, ValueError) as exc:
                err = exc
            else:
                err = None
        self.log = cap.text.strip()
        if err is not None:
            raise LiteRTModelError(f"LiteRT rejected the model: {err}" + (f"\n{self.log}" if self.log else ""))
        inp, out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        self.in_index, self.out_index = inp["index"], out["index"]
        self.in_dim, self.n_out = int(inp["shape"][1]), int(out["shape"][1])
        self.batch = int(inp["shape"][0])
        self.x = np.zeros((self.batch, self.in_dim), np.int8)
        self.ops = _execution_plan(self.interp)
        delegated = sum(op == "DELEGATE" for op in self.ops)
        self.path = ("xnnpack" if self.ops and delegated == len(self.ops) else "builtin" if delegated == 0
                     else "partial")

    def describe(self) -> str:
        ok, version = available()
        weights = "int4 (packed INT4)" if self.int4 else "int8"
        how = {"xnnpack": "XNNPACK delegate (every op delegated)",
               "builtin": "TFLite builtin kernels (no delegate)",
               "partial": "XNNPACK delegate for part of the graph"}[self.path]
        return (f"{version}, {how}, {weights} weights, {self.threads} thread(s); execution plan: "
                f"{', '.join(self.ops)}")

    def _resize(self, n: int):
        if n != self.batch:
            self.interp.resize_tensor_input(self.in_index, [n, self.in_dim])
            self.interp.allocate_tensors()
            self.batch = n
            self.x = np.zeros((n, self.in_dim), np.int8)

    def forward_q(self, x_q: np.ndarray) -> np.ndarray:
        """int8 input codes [N, I] -> int8 logits [N, classes] (the input tensor is resized to N if needed)."""
        x = np.asarray(x_q)
        if x.dtype != np.int8:
            raise LiteRTModelError(f"forward_q: input must be int8 codes, got {x.dtype}")
        x = np.ascontiguousarray(x).reshape(-1, self.in_dim) if x.size else x.reshape(0, self.in_dim)
        if len(x) == 0:
            return np.zeros((0, self.n_out), np.int8)
        self._resize(len(x))
        self.interp.set_tensor(self.in_index, x)
        self.interp.invoke()
        return self.interp.get_tensor(self.out_index)

    def call(self) -> np.ndarray:
        """Run on :attr:`x` (int8 [batch, I], fill it in place): set_tensor + invoke + get_tensor."""
        self.interp.set_tensor(self.in_index, self.x)
        self.interp.invoke()
        return self.interp.get_tensor(self.out_index)

    def bound(self, x_q: np.ndarray):
        """A zero-argument callable running the fixed int8 batch ``x_q`` (as CNet.bound, for timing)."""
        x = np.ascontiguousarray(x_q, np.int8).reshape(-1, self.in_dim)
        self._resize(len(x))
        interp, i, o = self.interp, self.in_index, self.out_index
        set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor

        def run():
            set_tensor(i, x)
            invoke()
            return get_tensor(o)

        run.keep = x
        return run


def xnnpack_reference(model: IntModel, x_q: np.ndarray, int4: bool = False) -> np.ndarray:
    """What XNNPACK computes for :func:`to_tflite`'s network, in numpy: int8 [N, I] -> int8 [N, classes].

    XNNPACK's per-channel int8 FC requantizes in float32: y = clamp(rint(float32(acc)
    * scale) + z_y) with scale = float32(s_x) * s_w / float32(s_y) evaluated in
    float32 and rint rounding half to even (acc is TFLite's accumulator, sum (x -
    z_x) * w + b). Measured equal to LiteRT 2.3's XNNPACK output on x86 (AVX2),
    int8 and int4 weights; it differs from our spec (one rounding, half up, from
    the exact Q31 product) only where float32 rounding crosses a half code.
    """
    _check_model(model, int4)
    h = np.asarray(x_q, np.int8)
    for layer in model.layers:
        w, b, s_w = _layer_arrays(layer)
        acc = (h.astype(np.int64) - int(layer.in_zero_point)) @ w.T.astype(np.int64) + b.astype(np.int64)
        scale = (np.float32(layer.in_scale) * s_w / np.float32(layer.out_scale)).astype(np.float32)
        y = np.rint(acc.astype(np.float32) * scale).astype(np.int64) + int(layer.out_zero_point)
        h = np.clip(y, layer.lo, 127).astype(np.int8)
    return h


def agreement(model: IntModel, x_q: np.ndarray, net: LiteRTNet | None = None, **kw) -> dict:
    """LiteRT's int8 logits against ``model.forward_int(x_q)``.

    Returns {"rows", "rows_equal" (share of rows with identical logits), "argmax_equal"
    (share of identical decisions), "values_within_1" (share of logits at most one code
    apart), "max_abs_diff", "path"}. ``net``: an existing :class:`LiteRTNet`
    (else one is built with ``kw``).
    """
    x = np.asarray(x_q, np.int8)
    net = net or LiteRTNet(model, batch=max(len(x), 1), **kw)
    got = net.forward_q(x).astype(np.int16)
    ref = model.forward_int(x).astype(np.int16)
    d = np.abs(got - ref)
    n = len(x)
    return {"rows": n,
            "rows_equal": float((d.max(axis=1) == 0).mean()) if n else 1.0,
            "argmax_equal": float((got.argmax(axis=1) == ref.argmax(axis=1)).mean()) if n else 1.0,
            "values_within_1": float((d <= 1).mean()) if n else 1.0,
            "max_abs_diff": int(d.max(initial=0)),
            "path": net.path}
