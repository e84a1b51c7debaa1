"""The exported integer model: a versioned, self-describing binary artifact, and a C header.

An artifact (``.kws``) holds one :class:`~kwslib.quant.intspec.IntModel`:
the integer layers, the input quantization, the float front end that makes
the input vector, and the class names. It is written atomically and every
field is checked on load; a damaged, truncated or newer-version file raises
:class:`~kwslib.errors.ArtifactError` naming the file and the problem.

Format version 1 (all integers little-endian; offsets from the file start;
every block starts on a 16-byte boundary, gaps are zero)::

    header, 64 bytes
      0  magic           8 bytes  b"\\x89KWS\\r\\n\\x1a\\n"
      8  version         u32      1
     12  header_bytes    u32      64
     16  file_bytes      u64      total size, trailer included
     24  n_layers        u32
     28  record_bytes    u32      64 (size of one layer record)
     32  input_dim       u32
     36  input_zero_pt   i32
     40  input_scale     f64
     48  meta_offset     u64      UTF-8 JSON: front end, class names, notes
     56  meta_bytes      u64
    layer table at 64, n_layers records of 64 bytes
      0  in_dim u32   4 out_dim u32   8 bits u8   9 storage u8 (0: int8 containers, 1: packed)
     10  relu u8     11 reserved u8  12 in_zero_point i32  16 out_zero_point i32  20 reserved u32
     24  in_scale f64  32 out_scale f64
     40  weights_offset u64  48 weights_bytes u64
     56  params_offset u64: bias_q int32[out], mult int32[out], shift int32[out] (12 * out bytes)
    meta JSON, weights and params blocks
    trailer, 36 bytes: sha256 of everything before it (32), CRC-32 (zlib) of the same (u32)

Packing (storage 1, widths 1..7): each output row is a little-endian bit
stream: code ``i`` of the row occupies stream bits ``[i*b, (i+1)*b)``, least
significant bit first, and stream bit ``j`` is bit ``j % 8`` of the row's
byte ``j // 8``. Rows are padded with zero bits to whole bytes
(``ceil(in_dim * b / 8)`` bytes per row). Fields are ``b``-bit two's
complement, except ``b = 1`` where bit 1 is +1 and bit 0 is -1. For 4 bits:
byte ``k`` holds code ``2k`` in its low nibble and ``2k+1`` in its high nibble.
Storage 0 (and every 8-bit layer) keeps one int8 code per byte, row-major.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from ..io import atomic_write_bytes, atomic_write_text
from ..quant.intspec import SHIFT_MAX, SHIFT_MIN, IntLayer, IntModel, weight_qmax

MAGIC = b"\x89KWS\r\n\x1a\n"
FORMAT_VERSION = 1
HEADER_BYTES = 64
RECORD_BYTES = 64
TRAILER_BYTES = 36
ALIGN = 16
META_FORMAT = "kwslib-int-model"
STORAGE_CONTAINERS, STORAGE_PACKED = 0, 1
MAX_DIM = 1 << 20  # sanity bound on a layer dimension

_HEADER = struct.Struct("<8sIIQIIIidQQ")
_RECORD = struct.Struct("<IIBBBBiiIddQQQ")
assert _HEADER.size == HEADER_BYTES and _RECORD.size == RECORD_BYTES


# --- bit packing ---------------------------------------------------------------------------------

def packed_row_bytes(in_dim: int, bits: int) -> int:
    return (in_dim * bits + 7) // 8


def pack_codes(w_q: np.ndarray, bits: int) -> np.ndarray:
    """int8 codes [C, I] -> packed uint8 [C, ceil(I * bits / 8)] (see the module docstring)."""
    w = np.asarray(w_q, np.int8)
    if w.ndim != 2:
        raise ValueError(f"pack_codes: expected [C, I] codes, got shape {w.shape}")
    c, i = w.shape
    if bits == 8:
        return w.view(np.uint8).copy()
    if bits == 1:
        fields = (w > 0).astype(np.uint8)
    else:
        fields = (w.astype(np.int16) & ((1 << bits) - 1)).astype(np.uint8)
    stream = ((fields[..., None] >> np.arange(bits, dtype=np.uint8)) & 1).reshape(c, i * bits)
    return np.packbits(stream, axis=1, bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, in_dim: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: uint8 [C, row_bytes] -> int8 codes [C, in_dim]."""
    packed = np.asarray(packed, np.uint8)
    if bits == 8:
        return packed.view(np.int8)[:, :in_dim].copy()
    c = packed.shape[0]
    stream = np.unpackbits(packed, axis=1, bitorder="little")[:, :in_dim * bits].reshape(c, in_dim, bits)
    fields = (stream.astype(np.int16) << np.arange(bits, dtype=np.int16)).sum(axis=-1)
    if bits == 1:
        return np.where(fields == 1, 1, -1).astype(np.int8)
    return (fields - ((fields >> (bits - 1)) & 1) * (1 << bits)).astype(np.int8)


# --- writing -------------------------------------------------------------------------------------

def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _meta(model: IntModel, extra: dict | None) -> dict:
    return {"format": META_FORMAT, "class_names": [str(c) for c in model.class_names],
            "feature_config": dict(model.feature_config), "context_frames": int(model.context_frames),
            "decimate": int(model.decimate), "n_mels": int(model.n_mels), "step_frames": int(model.step_frames),
            "norm_mean": [float(v) for v in np.asarray(model.norm_mean, np.float32)],
            "norm_std": [float(v) for v in np.asarray(model.norm_std, np.float32)],
            "extra": dict(extra or {})}


def weight_storage(layer: IntLayer, packed: bool) -> int:
    return STORAGE_PACKED if packed and layer.bits < 8 else STORAGE_CONTAINERS


def to_bytes(model: IntModel, packed: bool = True, extra: dict | None = None) -> bytes:
    """Serialise ``model`` (format version 1). ``packed``: bit-pack layers narrower than 8 bits."""
    if not model.layers:
        raise ValueError("to_bytes: the model has no layers")
    meta = json.dumps(_meta(model, extra), sort_keys=True).encode("utf-8")
    n = len(model.layers)
    pos = _align(HEADER_BYTES + n * RECORD_BYTES)
    blocks: list[tuple[int, bytes]] = []
    meta_offset = pos
    blocks.append((pos, meta))
    pos = _align(pos + len(meta))
    records = []
    for layer in model.layers:
        c, i = layer.w_q.shape
        storage = weight_storage(layer, packed)
        wbytes = (pack_codes(layer.w_q, layer.bits) if storage == STORAGE_PACKED else layer.w_q).tobytes()
        w_off = pos
        blocks.append((pos, wbytes))
        pos = _align(pos + len(wbytes))
        params = b"".join(np.asarray(a, "<i4").tobytes() for a in (layer.bias_q, layer.mult, layer.shift))
        p_off = pos
        blocks.append((pos, params))
        pos = _align(pos + len(params))
        records.append(_RECORD.pack(i, c, layer.bits, storage, int(bool(layer.relu)), 0,
                                    int(layer.in_zero_point), int(layer.out_zero_point), 0,
                                    float(layer.in_scale), float(layer.out_scale), w_off, len(wbytes), p_off))
    file_bytes = pos + TRAILER_BYTES
    buf = bytearray(pos)
    buf[:HEADER_BYTES] = _HEADER.pack(MAGIC, FORMAT_VERSION, HEADER_BYTES, file_bytes, n, RECORD_BYTES,
                                      model.layers[0].w_q.shape[1], int(model.input_zero_point),
                                      float(model.input_scale), meta_offset, len(meta))
    for k, rec in enumerate(records):
        buf[HEADER_BYTES + k * RECORD_BYTES:HEADER_BYTES + (k + 1) * RECORD_BYTES] = rec
    for off, data in blocks:
        buf[off:off + len(data)] = data
    body = bytes(buf)
    return body + hashlib.sha256(body).digest() + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _readable(path: Path) -> None:
    """The temp file of an atomic write is created 0600; give the result the usual 0666 & ~umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def save_bytes(path, blob: bytes) -> Path:
    """Write artifact bytes (from :func:`to_bytes`) atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, blob)
    _readable(path)
    return path


def save_artifact(path, model: IntModel, packed: bool = True, extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temp file + rename); returns the path."""
    return save_bytes(path, to_bytes(model, packed=packed, extra=extra))


# --- reading -------------------------------------------------------------------------------------

class Artifact:
    """A loaded artifact: the model, its metadata, the storage each layer used and the validated bytes
    (``data``: what a C reader such as kwslib.deploy.pipeline.CPipeline is given)."""

    def __init__(self, model: IntModel, meta: dict, storage: list[int], version: int, path: str, data: bytes = b""):
        self.model, self.meta, self.storage, self.version, self.path = model, meta, storage, version, path
        self.data = data

    @property
    def extra(self) -> dict:
        return self.meta.get("extra", {})


def _fail(where: str, msg: str):
    raise ArtifactError(f"{where}: {msg}")


def from_bytes(data: bytes, where: str = "<artifact bytes>") -> Artifact:
    """Parse and validate an artifact; :class:`ArtifactError` naming ``where`` on any problem."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        _fail(where, "not a kwslib artifact (bad magic bytes)")
    if len(data) < 12:
        _fail(where, f"truncated: {len(data)} bytes, shorter than the header")
    version = struct.unpack_from("<I", data, 8)[0]
    if version > FORMAT_VERSION:
        _fail(where, f"artifact format version {version} is newer than this kwslib supports ({FORMAT_VERSION}); "
                     "upgrade kwslib")
    if version < 1:
        _fail(where, f"invalid artifact format version {version}")
    if len(data) < HEADER_BYTES + TRAILER_BYTES:
        _fail(where, f"truncated: {len(data)} bytes, shorter than header and trailer")
    (_, _, header_bytes, file_bytes, n_layers, record_bytes, input_dim, input_zp, input_scale,
     meta_off, meta_len) = _HEADER.unpack_from(data, 0)
    if header_bytes != HEADER_BYTES or record_bytes != RECORD_BYTES:
        _fail(where, f"bad header: header_bytes={header_bytes}, record_bytes={record_bytes}")
    if file_bytes != len(data):
        kind = "truncated" if len(data) < file_bytes else "trailing bytes"
        _fail(where, f"{kind}: header declares {file_bytes} bytes, file holds {len(data)}")
    body, trailer = data[:-TRAILER_BYTES], data[-TRAILER_BYTES:]
    if struct.unpack("<I", trailer[32:])[0] != zlib.crc32(body) & 0xFFFFFFFF or \
            trailer[:32] != hashlib.sha256(body).digest():
        _fail(where, "checksum mismatch: the file is damaged")
    end = len(body)

    def block(off: int, size: int, what: str) -> bytes:
        if off < HEADER_BYTES or size < 0 or off + size > end:
            _fail(where, f"{what} [{off}, {off + size}) lies outside the file's data area")
        return body[off:off + size]

    if not 1 <= n_layers <= 64:
        _fail(where, f"bad layer count {n_layers}")
    if HEADER_BYTES + n_layers * RECORD_BYTES > end:
        _fail(where, "layer table runs past the end of the data")
    try:
        meta = json.loads(block(meta_off, meta_len, "metadata").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(where, f"metadata is not valid JSON ({exc})")
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        _fail(where, f"metadata lacks the '{META_FORMAT}' format tag")
    for key in ("class_names", "feature_config", "context_frames", "decimate", "n_mels", "step_frames",
                "norm_mean", "norm_std"):
        if key not in meta:
            _fail(where, f"metadata lacks '{key}'")
    s32 = float(np.float32(input_scale)) if math.isfinite(input_scale) and abs(input_scale) < 3e38 else math.inf
    # the engines divide by the scale in float32: it must stay a finite, normal, positive float32
    if not (math.isfinite(s32) and s32 >= float(np.finfo(np.float32).tiny)) or not -128 <= input_zp <= 127:
        _fail(where, f"bad input quantization: scale {input_scale}, zero point {input_zp}")

    layers, storage = [], []
    prev_out = input_dim
    for k in range(n_layers):
        (in_dim, out_dim, bits, st, relu, _r0, in_zp, out_zp, _r1, in_scale, out_scale, w_off, w_len,
         p_off) = _RECORD.unpack_from(body, HEADER_BYTES + k * RECORD_BYTES)
        what = f"layer {k}"
        if not (1 <= in_dim <= MAX_DIM and 1 <= out_dim <= MAX_DIM):
            _fail(where, f"{what}: bad dims {out_dim} x {in_dim}")
        if in_dim != prev_out:
            _fail(where, f"{what}: input dim {in_dim} does not match the previous output {prev_out}")
        prev_out = out_dim
        if not 1 <= bits <= 8 or st not in (STORAGE_CONTAINERS, STORAGE_PACKED) or relu not in (0, 1):
            _fail(where, f"{what}: bad bits/storage/relu fields ({bits}, {st}, {relu})")
        if not all(-128 <= z <= 127 for z in (in_zp, out_zp)):
            _fail(where, f"{what}: zero point outside int8")
        if not all(math.isfinite(s) and s > 0 for s in (in_scale, out_scale)):
            _fail(where, f"{what}: non-positive or non-finite scale")
        expect = out_dim * (packed_row_bytes(in_dim, bits) if st == STORAGE_PACKED else in_dim)
        if w_len != expect:
            _fail(where, f"{what}: weights block holds {w_len} bytes, {out_dim} x {in_dim} at {bits} bits "
                         f"({'packed' if st else 'int8 containers'}) needs {expect}")
        raw = np.frombuffer(block(w_off, w_len, f"{what} weights"), np.uint8)
        if st == STORAGE_PACKED:
            rows = raw.reshape(out_dim, -1)
            w_q = unpack_codes(rows, bits, in_dim)
            if bits < 8 and not np.array_equal(pack_codes(w_q, bits), rows):
                _fail(where, f"{what}: nonzero padding bits in packed weights")
        else:
            w_q = raw.view(np.int8).reshape(out_dim, in_dim)
        params = np.frombuffer(block(p_off, 12 * out_dim, f"{what} parameters"), "<i4").reshape(3, out_dim)
        bias_q, mult, shift = (params[j].astype(np.int32) for j in range(3))
        if shift.min() < SHIFT_MIN or shift.max() > SHIFT_MAX:
            _fail(where, f"{what}: shift outside [{SHIFT_MIN}, {SHIFT_MAX}]")
        am = np.abs(mult.astype(np.int64))
        if np.any((am != 0) & (am < 2 ** 30)):
            _fail(where, f"{what}: multiplier not normalised (|mult| must be 0 or in [2^30, 2^31))")
        if np.abs(w_q.astype(np.int16)).max(initial=0) > weight_qmax(bits):
            _fail(where, f"{what}: weight codes exceed the {bits}-bit range")
        try:
            layers.append(IntLayer(w_q=w_q, bits=bits, bias_q=bias_q, mult=mult, shift=shift,
                                   in_scale=in_scale, in_zero_point=in_zp, out_scale=out_scale,
                                   out_zero_point=out_zp, relu=bool(relu)))
        except ValueError as exc:
            _fail(where, f"{what}: {exc}")
        from ..quant.intspec import ACC_MAX, max_abs_accumulator

        if max_abs_accumulator(layers[-1]) > ACC_MAX:
            _fail(where, f"{what}: worst-case accumulator exceeds int32 (weights and bias too large)")
        storage.append(st)
    names = meta["class_names"]
    if not isinstance(names, list) or len(names) != prev_out:
        _fail(where, f"{len(names) if isinstance(names, list) else '?'} class names for {prev_out} outputs")
    try:
        n_mels, ctx, dec = int(meta["n_mels"]), int(meta["context_frames"]), int(meta["decimate"])
        mean = np.asarray(meta["norm_mean"], np.float32)
        std = np.asarray(meta["norm_std"], np.float32)
        step = int(meta["step_frames"])
    except (TypeError, ValueError) as exc:
        _fail(where, f"bad front-end metadata ({exc})")
    if n_mels < 1 or dec < 1 or ctx % dec or ctx // dec * n_mels != input_dim or mean.shape != (n_mels,) \
            or std.shape != (n_mels,) or step < 1 or not np.all(std > 0):
        _fail(where, f"front-end metadata (context {ctx}, decimate {dec}, n_mels {n_mels}) does not give "
                     f"the {input_dim} inputs of the first layer")
    if not isinstance(meta["feature_config"], dict):
        _fail(where, "feature_config must be a JSON object")
    model = IntModel(layers=layers, input_scale=input_scale, input_zero_point=input_zp, norm_mean=mean,
                     norm_std=std, context_frames=ctx, decimate=dec, n_mels=n_mels, step_frames=step,
                     class_names=[str(c) for c in names], feature_config=dict(meta["feature_config"]))
    return Artifact(model, meta, storage, version, where, bytes(data))


def load_artifact(path) -> Artifact:
    """Read and validate an artifact file (see :func:`from_bytes`)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: artifact file does not exist")
    if path.is_dir():
        raise ArtifactError(f"{path}: is a directory, not an artifact file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc})") from exc
    return from_bytes(data, str(path))


def load_model(path) -> IntModel:
    return load_artifact(path).model


def operating_point_extra(summary: dict, model_name: str, replicate: int = 0) -> dict:
    """The artifact ``extra`` fields that make ``kwslib detect`` behave like the report, for one model.

    ``summary`` is a results folder's ``summary.json`` (as a dict), ``model_name`` a key of its
    ``models`` (``stage2_w4``), ``replicate`` which replicate's model it is (0: the profile's own
    folder). Returns ``threshold`` (that replicate's threshold at the run's operating point:
    ``models.<name>.per_replicate[k].threshold_at_op``, or ``models.<name>.threshold_at_op`` for
    replicate 0 of a summary without ``per_replicate``), ``threshold_source`` (one phrase naming the
    replicate, the rate and the model), ``threshold_replicate``, ``operating_point_fdph`` and
    ``profile``; an empty dict when the summary has no measured threshold for that model and replicate
    (then nothing is stored and detect says so).
    """
    entry = (summary.get("models") or {}).get(model_name) or {}
    per = entry.get("per_replicate")
    if isinstance(per, list) and 0 <= replicate < len(per) and isinstance(per[replicate], dict):
        thr = per[replicate].get("threshold_at_op")
    else:
        thr = entry.get("threshold_at_op") if replicate == 0 else None
    if not _valid_threshold(thr):
        return {}
    op = (summary.get("operating_point") or {}).get("false_detections_per_hour")
    return _threshold_extra(float(thr), replicate, summary.get("profile"), op, model_name, "summary.json")


def _valid_threshold(thr) -> bool:
    return isinstance(thr, (int, float)) and not isinstance(thr, bool) and math.isfinite(thr) and 0.0 <= thr <= 1.0


def _threshold_extra(thr: float, replicate: int, profile, op, model_name: str, where: str) -> dict:
    rate = f"{op:g} false detections/h" if isinstance(op, (int, float)) else "its operating point"
    return {"threshold": thr, "operating_point_fdph": op, "profile": profile, "threshold_replicate": replicate,
            "threshold_source": f"replicate {replicate} of results/{profile}, operating point {rate}, "
                                f"model {model_name}, from {where}"}


def _record_threshold(path: Path, model_file: Path):
    """``(threshold_at_op, why_not)`` from a replicate's record ``records/<name>.npz``.

    Only the record's JSON meta is read, here rather than with :func:`kwslib.study.replicates.load_record`,
    because the inference path must not import kwslib.study.replicates (it loads scipy); and of the meta
    only ``threshold_at_op`` and ``model_digest``, so any record version that keeps those two works.
    The record must be of this very model file (``model_digest``: the sha256 of the ``.int.npz`` it
    read) unless it names none; ``why_not`` says why a record was not used.
    """
    if not path.is_file():
        return None, f"no record {path}"
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
    except (OSError, ValueError, KeyError) as exc:
        return None, f"record {path} unreadable ({exc})"
    digest = meta.get("model_digest")
    if digest is not None and model_file.suffix == ".npz" and digest != hashlib.sha256(model_file.read_bytes()).hexdigest():
        return None, f"record {path} was made from another {model_file.name} (stale)"
    thr = meta.get("threshold_at_op")
    if not _valid_threshold(thr):
        return None, f"record {path} holds no threshold in [0, 1]"
    return float(thr), None


def locate_in_results(src) -> tuple[Path, int] | None:
    """``(profile folder, replicate k)`` of a model file in a results tree, else None.

    ``results/<profile>/models/<name>`` is replicate 0; ``results/<profile>/replicates/r<k>/models/<name>``
    is replicate k (the layout of :func:`kwslib.study.replicates.replicate_paths`). A file beside
    ``summary.json`` (no ``models/`` folder) counts as replicate 0 of that folder.
    """
    src = Path(src)
    folder = src.parent.parent if src.parent.name == "models" else src.parent
    rep = folder.name
    if folder.parent.name == "replicates" and rep.startswith("r") and rep[1:].isdigit() and int(rep[1:]) > 0:
        return folder.parent.parent, int(rep[1:])
    if (folder / "summary.json").exists() or (folder / "records").is_dir():
        return folder, 0
    return None


def find_results_threshold(src) -> tuple[dict, str]:
    """The operating-point threshold of a model file inside a results tree: ``(extra, note)``.

    The threshold is the one its own replicate measured: first the replicate's record
    (``records/<name>.npz`` beside its ``models/``, checked to be of this model file), else that
    replicate's entry in the profile's ``summary.json``. ``extra`` holds :func:`operating_point_extra`'s
    fields (empty when none is found); ``note`` says, in one phrase, why none was found.
    """
    from ..errors import ConfigError
    from ..summary import load_summary

    src = Path(src)
    where = locate_in_results(src)
    if where is None:
        return {}, "not in a results folder (results/<profile>/models/ or .../replicates/r<k>/models/)"
    folder, k = where
    try:
        summary = load_summary(folder)
    except ConfigError:
        summary = {}
    name = src.name.split(".")[0]
    if k == 0:
        for key, entry in (summary.get("models") or {}).items():
            if isinstance(entry, dict) and Path(str(entry.get("int_model_file", ""))).name == src.name:
                name = key
                break
    rep_folder = folder if k == 0 else folder / "replicates" / f"r{k}"
    record = rep_folder / "records" / f"{name}.npz"
    thr, why = _record_threshold(record, src)
    if thr is not None:
        op = (summary.get("operating_point") or {}).get("false_detections_per_hour")
        return _threshold_extra(thr, k, summary.get("profile") or folder.name, op, name,
                                f"its record records/{name}.npz"), ""
    if record.exists():  # a record that is not this model's: the summary was pooled from it, so no fallback
        return {}, f"replicate {k} of {folder}: {why}"
    extra = operating_point_extra(summary, name, k)
    if extra:
        return extra, ""
    return {}, f"replicate {k} of {folder}: {why}, and summary.json has no threshold for {name}"


def results_extra(src) -> dict:
    """:func:`find_results_threshold`'s ``extra`` alone (``{}`` when the model is not in a results tree)."""
    return find_results_threshold(src)[0]


# --- memory accounting ---------------------------------------------------------------------------

def weight_bytes(model: IntModel, layout: str) -> int:
    """Bytes of weight codes: layout 'float32', 'int8' (containers) or a width '1'..'8' (packed)."""
    total = 0
    for layer in model.layers:
        c, i = layer.w_q.shape
        if layout == "float32":
            total += 4 * c * i
        elif layout == "int8":
            total += c * i
        else:
            total += c * packed_row_bytes(i, int(layout))
    return total


# --- C header ------------------------------------------------------------------------------------

def _c_array(ctype: str, name: str, values, per_line: int = 16) -> str:
    vals = [str(int(v)) for v in np.asarray(values).ravel()]
    lines = [", ".join(vals[k:k + per_line]) for k in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(vals)}] = {{\n    {body}\n}};\n"


def _c_float(v: float) -> str:
    return f"{float(np.float32(v)).hex()}f" if math.isfinite(v) else "0.0f"


def c_header(model: IntModel, prefix: str = "kws_model", packed: bool = True, artifact: bytes | None = None,
             detector: dict | None = None) -> str:
    """The model as a C header of ``const`` arrays (weights as stored in the artifact, packing included).

    It also defines the front end (``PREFIX_SAMPLE_RATE``, ``_WIN_LENGTH``, ``_HOP_LENGTH``, ``_N_FFT``,
    ``_FMIN``, ``_FMAX``, ``_LOG_FLOOR``). ``artifact``: the artifact's bytes, embedded as
    ``prefix_artifact[PREFIX_ARTIFACT_BYTES]`` for ``kws_pipeline_create`` (how firmware carries a model,
    like a .tflite in a C array). ``detector``: ``threshold``, ``smooth_windows``, ``refractory_steps``
    (kwslib.deploy.pipeline.detector_settings) as ``PREFIX_THRESHOLD`` etc. ``examples/c/`` uses all of it.
    """
    if not prefix.isidentifier():
        raise ValueError(f"c_header: prefix {prefix!r} is not a C identifier")
    P = prefix.upper()
    from ..frontend.features import model_features

    feat = model_features(model)
    out = [f"/* Generated by kwslib.deploy.export.c_header: integer KWS model (artifact format {FORMAT_VERSION}). */",
           "/* Arithmetic: kwslib/quant/intspec.py; packing order: kwslib/deploy/export.py docstring. */",
           f"#ifndef {P}_H", f"#define {P}_H", "#include <stdint.h>", "",
           f"#define {P}_N_LAYERS {len(model.layers)}",
           f"#define {P}_INPUT_DIM {model.layers[0].w_q.shape[1]}",
           f"#define {P}_N_CLASSES {model.layers[-1].w_q.shape[0]}",
           f"#define {P}_CONTEXT_FRAMES {model.context_frames}",
           f"#define {P}_DECIMATE {model.decimate}", f"#define {P}_N_MELS {model.n_mels}",
           f"#define {P}_STEP_FRAMES {model.step_frames}",
           f"#define {P}_STORAGE_INT8 {STORAGE_CONTAINERS}", f"#define {P}_STORAGE_PACKED {STORAGE_PACKED}", "",
           "/* front end (kwslib.frontend.features.FeatureConfig; window and hop in samples) */",
           f"#define {P}_SAMPLE_RATE {feat.sample_rate}", f"#define {P}_WIN_LENGTH {feat.win_length}",
           f"#define {P}_HOP_LENGTH {feat.hop_length}", f"#define {P}_N_FFT {feat.n_fft}",
           f"#define {P}_FMIN {float(feat.fmin)!r}", f"#define {P}_FMAX {float(feat.fmax)!r}",
           f"#define {P}_LOG_FLOOR {float(feat.log_floor)!r}", "",
           f"static const float {prefix}_input_scale = {_c_float(model.input_scale)}; /* {model.input_scale!r} */",
           f"static const int32_t {prefix}_input_zero_point = {int(model.input_zero_point)};",
           f"static const float {prefix}_norm_mean[{model.n_mels}] = {{"
           + ", ".join(_c_float(v) for v in np.asarray(model.norm_mean, np.float32)) + "};",
           f"static const float {prefix}_norm_std[{model.n_mels}] = {{"
           + ", ".join(_c_float(v) for v in np.asarray(model.norm_std, np.float32)) + "};",
           f"static const char *const {prefix}_class_names[{len(model.class_names)}] = {{"
           + ", ".join(json.dumps(str(c)) for c in model.class_names) + "};", ""]
    for k, layer in enumerate(model.layers):
        st = weight_storage(layer, packed)
        w = pack_codes(layer.w_q, layer.bits) if st == STORAGE_PACKED else layer.w_q
        ctype = "uint8_t" if st == STORAGE_PACKED else "int8_t"
        out.append(_c_array(ctype, f"{prefix}_l{k}_weights", w))
        out.append(_c_array("int32_t", f"{prefix}_l{k}_bias", layer.bias_q, 8))
        out.append(_c_array("int32_t", f"{prefix}_l{k}_mult", layer.mult, 8))
        out.append(_c_array("int32_t", f"{prefix}_l{k}_shift", layer.shift, 16))
    out += ["typedef struct {",
            "    int32_t in_dim, out_dim, bits, storage, relu, in_zero_point, out_zero_point;",
            "    float in_scale, out_scale;", "    const void *weights;",
            "    const int32_t *bias, *mult, *shift;", f"}} {prefix}_layer_t;", "",
            f"static const {prefix}_layer_t {prefix}_layers[{len(model.layers)}] = {{"]
    for k, layer in enumerate(model.layers):
        c, i = layer.w_q.shape
        out.append(f"    {{{i}, {c}, {layer.bits}, {weight_storage(layer, packed)}, {int(bool(layer.relu))}, "
                   f"{int(layer.in_zero_point)}, {int(layer.out_zero_point)}, {_c_float(layer.in_scale)}, "
                   f"{_c_float(layer.out_scale)}, {prefix}_l{k}_weights, {prefix}_l{k}_bias, "
                   f"{prefix}_l{k}_mult, {prefix}_l{k}_shift}},")
    out += ["};", ""]
    if detector:
        out += [f"/* detector: {detector.get('origin', 'threshold given at export')} */",
                f"#define {P}_THRESHOLD {float(detector['threshold'])!r}",
                f"#define {P}_SMOOTH_WINDOWS {int(detector['smooth_windows'])}",
                f"#define {P}_REFRACTORY_STEPS {int(detector['refractory_steps'])}", ""]
    if artifact is not None:
        out += [f"/* the artifact itself ({len(artifact)} bytes, format {FORMAT_VERSION}): kws_pipeline_create's input */",
                f"#define {P}_ARTIFACT_BYTES {len(artifact)}",
                _c_array("uint8_t", f"{prefix}_artifact", np.frombuffer(artifact, np.uint8), 24), ""]
    out += [f"#endif /* {P}_H */", ""]
    return "\n".join(out)


def save_c_header(path, model: IntModel, prefix: str = "kws_model", packed: bool = True,
                  artifact: bytes | None = None, detector: dict | None = None) -> Path:
    path = Path(path)
    atomic_write_text(path, c_header(model, prefix=prefix, packed=packed, artifact=artifact, detector=detector))
    _readable(path)
    return path
