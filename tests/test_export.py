"""The artifact format: packing order, round trip, validation of damaged files, C header and C reader."""
import json
import struct
import subprocess
import zlib
import hashlib

import numpy as np
import pytest

from kwslib.deploy import export
from kwslib.deploy.engine import random_int_model
from kwslib.errors import ArtifactError
from kwslib.quant.intspec import quantize_input

SMALL = dict(dims=(64, 24, 12), n_mels=16, context_frames=16, decimate=4)


def small_model(bits, seed=0):
    return random_int_model(bits, seed=seed, **SMALL)


def rechecksum(body: bytes) -> bytes:
    """A file whose trailer matches ``body`` (to test field validation behind a valid checksum)."""
    return body + hashlib.sha256(body).digest() + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def test_pack_order_4bit_and_1bit():
    # 4 bits: byte k = code 2k in the low nibble, code 2k+1 in the high nibble (two's complement)
    assert export.pack_codes(np.array([[1, -2, 3, -7]], np.int8), 4).tolist() == [[0xE1, 0x93]]
    # 1 bit: +1 -> 1, -1 -> 0, least significant bit first, rows padded to whole bytes
    w = np.array([[1, -1, -1, 1, 1, 1, 1, 1, -1]], np.int8)
    assert export.pack_codes(w, 1).tolist() == [[0xF9, 0x00]]
    # 5 bits: a little-endian bit stream; code 0 = 3 (00011), code 1 = -1 (11111)
    assert export.pack_codes(np.array([[3, -1]], np.int8), 5).tolist() == [[0b11100011, 0b11]]


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_unpack_roundtrip(rng, bits):
    q = 1 if bits == 1 else 2 ** (bits - 1) - 1
    w = rng.integers(-q, q + 1, (7, 37)).astype(np.int8)
    if bits == 1:
        w[w == 0] = 1
    p = export.pack_codes(w, bits)
    assert p.shape == (7, export.packed_row_bytes(37, bits))
    assert np.array_equal(export.unpack_codes(p, bits, 37), w)


@pytest.mark.parametrize("bits", [8, 5, 4, 1, (8, 4)])
@pytest.mark.parametrize("packed", [True, False])
def test_artifact_roundtrip(tmp_path, rng, bits, packed):
    m = small_model(bits)
    path = export.save_artifact(tmp_path / "m.kws", m, packed=packed, extra={"threshold": 0.7})
    art = export.load_artifact(path)
    r = art.model
    assert art.version == export.FORMAT_VERSION and art.extra == {"threshold": 0.7}
    for a, b in zip(m.layers, r.layers):
        assert np.array_equal(a.w_q, b.w_q) and a.bits == b.bits and a.relu == b.relu
        for f in ("bias_q", "mult", "shift"):
            assert np.array_equal(getattr(a, f), getattr(b, f))
        assert (a.in_scale, a.in_zero_point, a.out_scale, a.out_zero_point) == \
               (b.in_scale, b.in_zero_point, b.out_scale, b.out_zero_point)
    assert (r.input_scale, r.input_zero_point, r.class_names) == (m.input_scale, m.input_zero_point, m.class_names)
    assert np.array_equal(r.norm_mean, m.norm_mean) and np.array_equal(r.norm_std, m.norm_std)
    assert (r.context_frames, r.decimate, r.n_mels, r.step_frames) == \
           (m.context_frames, m.decimate, m.n_mels, m.step_frames)
    x = rng.integers(-128, 128, (20, 64)).astype(np.int8)
    assert np.array_equal(r.forward_int(x), m.forward_int(x))
    sub8 = [l.bits < 8 for l in m.layers]
    assert art.storage == [int(packed and s) for s in sub8]


def test_packed_is_smaller_and_matches_weight_bytes(tmp_path):
    m = small_model(4)
    a = len(export.to_bytes(m, packed=True))
    b = len(export.to_bytes(m, packed=False))
    assert b - a >= (export.weight_bytes(m, "int8") - export.weight_bytes(m, "4")) - 64
    assert export.weight_bytes(m, "4") * 2 == export.weight_bytes(m, "int8")


def _layout(data):
    n = struct.unpack_from("<I", data, 24)[0]
    recs = [struct.unpack_from("<IIBBBBiiIddQQQ", data, 64 + 64 * k) for k in range(n)]
    return n, recs


def test_every_damaged_byte_is_rejected(tmp_path):
    m = small_model(4)
    data = export.to_bytes(m)
    n, recs = _layout(data)
    offsets = [0, 8, 20, 40, 64, 64 + 8, recs[0][11], recs[0][11] + 5, recs[1][13], len(data) - 40, len(data) - 1]
    for off in offsets:
        bad = bytearray(data)
        bad[off] ^= 0x10
        p = tmp_path / f"bad{off}.kws"
        p.write_bytes(bytes(bad))
        with pytest.raises(ArtifactError, match=str(p)):
            export.load_artifact(p)


def test_truncated_and_newer_version_and_magic(tmp_path):
    data = export.to_bytes(small_model(8))
    for cut in (0, 4, 12, 63, 200, len(data) - 1):
        p = tmp_path / f"t{cut}.kws"
        p.write_bytes(data[:cut])
        with pytest.raises(ArtifactError, match="truncated|bad magic|shorter"):
            export.load_artifact(p)
    newer = bytearray(data)
    newer[8:12] = struct.pack("<I", export.FORMAT_VERSION + 1)
    (tmp_path / "new.kws").write_bytes(bytes(newer))
    with pytest.raises(ArtifactError, match="newer than this kwslib supports"):
        export.load_artifact(tmp_path / "new.kws")
    (tmp_path / "txt.kws").write_bytes(b"hello world" * 20)
    with pytest.raises(ArtifactError, match="bad magic"):
        export.load_artifact(tmp_path / "txt.kws")
    with pytest.raises(ArtifactError, match="does not exist"):
        export.load_artifact(tmp_path / "missing.kws")
    with pytest.raises(ArtifactError, match="trailing bytes"):
        export.from_bytes(data + b"\0")


@pytest.mark.parametrize("field,value,message", [
    (8, 9, "bad bits"), (9, 7, "bad bits"), (0, 65, "input dim"), (4, 25, "does not match|class names|weights block"),
    (48, 3, "weights block"), (56, 10 ** 9, "outside the file"), (12, 300, "zero point"),
])
def test_bad_fields_behind_a_valid_checksum(field, value, message):
    data = bytearray(export.to_bytes(small_model(4))[:-export.TRAILER_BYTES])
    rec = 64  # layer 0
    fmt = {0: "<I", 4: "<I", 8: "<B", 9: "<B", 12: "<i", 48: "<Q", 56: "<Q"}[field]
    struct.pack_into(fmt, data, rec + field, value)
    with pytest.raises(ArtifactError, match=message):
        export.from_bytes(rechecksum(bytes(data)))


def test_bad_codes_and_params_behind_a_valid_checksum():
    m = small_model(4)
    data = export.to_bytes(m)
    n, recs = _layout(data)
    body = bytearray(data[:-export.TRAILER_BYTES])
    w_off = recs[0][11]
    body[w_off] = 0x08  # low nibble 8 = code -8: outside the 4-bit range +-7
    with pytest.raises(ArtifactError, match="exceed"):
        export.from_bytes(rechecksum(bytes(body)))
    body = bytearray(data[:-export.TRAILER_BYTES])
    p_off = recs[0][13]
    c = recs[0][1]
    struct.pack_into("<i", body, p_off + 8 * c, 99)  # shift of channel 0
    with pytest.raises(ArtifactError, match="shift"):
        export.from_bytes(rechecksum(bytes(body)))
    body = bytearray(data[:-export.TRAILER_BYTES])
    struct.pack_into("<i", body, p_off + 4 * c, 12345)  # an unnormalised multiplier
    with pytest.raises(ArtifactError, match="multiplier"):
        export.from_bytes(rechecksum(bytes(body)))


def test_nonzero_padding_bits_rejected():
    m = random_int_model(1, seed=0, dims=(60, 24, 12), n_mels=15, context_frames=16, decimate=4)
    data = export.to_bytes(m)
    n, recs = _layout(data)
    body = bytearray(data[:-export.TRAILER_BYTES])
    row_bytes = export.packed_row_bytes(60, 1)  # 60 bits -> 8 bytes, 4 padding bits
    body[recs[0][11] + row_bytes - 1] |= 0x80
    with pytest.raises(ArtifactError, match="padding"):
        export.from_bytes(rechecksum(bytes(body)))


def test_bad_metadata_behind_a_valid_checksum():
    data = export.to_bytes(small_model(8))
    meta_off, meta_len = struct.unpack_from("<QQ", data, 48)
    body = bytearray(data[:-export.TRAILER_BYTES])
    meta = json.loads(body[meta_off:meta_off + meta_len])
    meta["class_names"] = meta["class_names"][:-1] + ["x", "y"]
    raw = json.dumps(meta).encode()
    body[meta_off:meta_off + meta_len] = raw[:meta_len].ljust(meta_len)
    with pytest.raises(ArtifactError, match="metadata|class names"):
        export.from_bytes(rechecksum(bytes(body)))


def test_atomic_save_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "m.kws"
    export.save_artifact(p, small_model(8))
    before = p.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "to_bytes", boom)
    with pytest.raises(RuntimeError):
        export.save_artifact(p, small_model(4))
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["m.kws"]


HEADER_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "kws_artifact.h"
#include "model.h"
/* Build the network from the header's const arrays (unpacking packed layers) and run it. */
int main(int argc, char **argv) {
    kws_net *net = kws_net_new(KWS_MODEL_N_LAYERS, kws_model_input_scale, kws_model_input_zero_point);
    for (int k = 0; k < KWS_MODEL_N_LAYERS; k++) {
        const kws_model_layer_t *L = &kws_model_layers[k];
        int8_t *w = malloc((size_t)L->in_dim * L->out_dim);
        kws_unpack_codes((const uint8_t *)L->weights, L->out_dim, L->in_dim, L->storage ? L->bits : 8, w);
        if (kws_net_set_layer(net, k, L->in_dim, L->out_dim, L->bits, KWS_KERNEL_S8, w, L->bias, L->mult,
                              L->shift, L->out_zero_point, L->relu ? L->out_zero_point : -128)) return 3;
        free(w);
    }
    if (kws_net_finalize(net)) return 4;
    FILE *f = fopen(argv[1], "rb");
    static int8_t x[KWS_MODEL_INPUT_DIM * 64], y[KWS_MODEL_N_CLASSES * 64];
    int n = (int)fread(x, KWS_MODEL_INPUT_DIM, 64, f);
    kws_net_forward_s8(net, x, n, y);
    fwrite(y, KWS_MODEL_N_CLASSES, n, fopen(argv[2], "wb"));
    printf("%s %d\n", kws_model_class_names[0], n);
    return 0;
}
"""


@pytest.mark.parametrize("packed", [True, False])
def test_c_header_compiles_and_runs_bit_exact(tmp_path, rng, packed):
    from kwslib.deploy import ckernels

    cc = ckernels.find_compiler()
    if not cc:
        pytest.skip("no C compiler")
    m = random_int_model((8, 4), seed=3, **SMALL)
    export.save_c_header(tmp_path / "model.h", m, packed=packed)
    (tmp_path / "main.c").write_text(HEADER_MAIN)
    srcs = [str(ckernels.CSRC / s) for s in ckernels.LIB_SOURCES]
    exe = tmp_path / "run"
    res = subprocess.run([cc, "-O1", "-std=c11", "-Wall", "-Werror", "-Wno-unused-const-variable",
                          "-DKWS_FORCE_SCALAR", f"-I{ckernels.CSRC}", f"-I{tmp_path}", str(tmp_path / "main.c"),
                          *srcs, "-lm", "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    x = rng.integers(-128, 128, (10, 64)).astype(np.int8)
    x.tofile(tmp_path / "x.bin")
    out = subprocess.run([str(exe), str(tmp_path / "x.bin"), str(tmp_path / "y.bin")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == [m.class_names[0], "10"]
    y = np.fromfile(tmp_path / "y.bin", np.int8).reshape(10, -1)
    assert np.array_equal(y, m.forward_int(x))


def test_c_reader_agrees_and_rejects(tmp_path, rng):
    from kwslib.deploy import ckernels

    try:
        lib = ckernels.load_library()
    except ckernels.CKernelsUnavailable as exc:
        pytest.skip(str(exc))
    m = small_model((8, 1))
    data = export.to_bytes(m)
    net = ckernels.load_artifact_c(data, lib)
    x = rng.normal(0, 2, (30, 64)).astype(np.float32)
    assert np.array_equal(net(x), m.forward_int(quantize_input(x, m.input_scale, m.input_zero_point)))
    bad = bytearray(data)
    bad[100] ^= 1
    with pytest.raises(ckernels.CKernelsUnavailable, match="checksum"):
        ckernels.load_artifact_c(bytes(bad), lib)
    newer = bytearray(data)
    newer[8] = 2
    with pytest.raises(ckernels.CKernelsUnavailable, match="newer"):
        ckernels.load_artifact_c(bytes(newer), lib)
    wrong_size = bytearray(data)
    struct.pack_into("<Q", wrong_size, 16, len(data) + 5)  # the header declares more than the file holds
    with pytest.raises(ckernels.CKernelsUnavailable, match="truncated"):
        ckernels.load_artifact_c(bytes(wrong_size), lib)
