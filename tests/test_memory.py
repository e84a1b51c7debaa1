import numpy as np
import pytest

from kwslib.study import memory
from kwslib.study.memory import Layer


def test_default_model_counts_by_hand():
    layers = memory.dense_layers()
    assert memory.n_weights(layers) == 960 * 186 + 2 * 186 * 186 + 186 * 12 == 249_984
    assert memory.weight_bytes(layers, "float32") == 4 * 249_984
    assert memory.weight_bytes(layers, "int8") == 249_984
    assert memory.weight_bytes(layers, 8) == 249_984
    # 4 bits: two codes per byte; every row length here is even so no padding
    assert memory.weight_bytes(layers, 4) == 249_984 // 2
    # 1 bit: rows of 960 -> 120 B, 186 -> 24 B (186 bits = 23.25 B, padded), 186 -> 24 B
    assert memory.weight_bytes(layers, 1) == 186 * 120 + 2 * 186 * 24 + 12 * 24
    # 5 bits: ceil(960*5/8)=600, ceil(186*5/8)=117
    assert memory.weight_bytes(layers, 5) == 186 * 600 + 2 * 186 * 117 + 12 * 117
    assert memory.param_bytes(layers, "float32") == 4 * 570
    assert memory.param_bytes(layers, "int8") == 12 * 570
    assert memory.activation_bytes(layers, "float32") == 4 * (960 + 186)
    assert memory.activation_bytes(layers, 4) == 960 + 186


def test_projection_table_is_ordered_and_consistent():
    rows = memory.projection_table(memory.dense_layers())
    assert [r["layout"] for r in rows] == ["float32", "int8", "8", "7", "6", "5", "4", "3", "2", "1"]
    totals = [r["total"] for r in rows[2:]]
    assert all(a > b for a, b in zip(totals, totals[1:]))  # fewer bits, fewer bytes
    assert rows[0]["reduction_vs_float32"] == 1.0
    for r in rows:
        assert r["total"] == r["weights"] + r["params"] + r["activations"]
    assert rows[1]["weight_reduction_vs_float32"] == 4.0


def test_bad_width():
    with pytest.raises(ValueError, match="1..8"):
        memory.weight_bytes([Layer(4, 4)], 9)


def test_scaled_architectures_span_50k_to_2m():
    archs = memory.scaled_architectures()
    params = [a["params"] for a in archs]
    assert min(params) < 80_000 and max(params) > 2_000_000
    default = [a for a in archs if a["width"] == 186 and a["depth"] == 3][0]
    assert default["params"] == memory.n_params(memory.dense_layers())


def test_projection_equals_artifact_payload(tmp_path):
    """For every exported width the projected weight and parameter bytes are the artifact's blocks."""
    from kwslib.deploy import export
    from kwslib.quant.intspec import IntLayer, IntModel, weight_qmax

    rng = np.random.default_rng(0)
    dims = memory.dense_layers(input_dim=40, hidden=(13, 7), n_classes=3)
    for bits in (8, 5, 4, 1):
        q = weight_qmax(bits)
        layers = []
        for i, l in enumerate(dims):
            w = rng.integers(-q, q + 1, (l.n_out, l.n_in))
            if bits == 1:
                w = np.where(w >= 0, 1, -1)
            layers.append(IntLayer(w, bits, np.zeros(l.n_out), np.full(l.n_out, 2 ** 30), np.zeros(l.n_out), 0.1,
                                   0, 0.1, -128 if i < len(dims) - 1 else 0, i < len(dims) - 1))
        model = IntModel(layers, 0.1, 0, np.zeros(4, np.float32), np.ones(4, np.float32), 40, 4, 4, 4,
                         ["a", "b", "c"])
        blob = export.to_bytes(model, packed=True)
        export.from_bytes(blob)  # valid
        # read the layer table as documented in kwslib/deploy/export.py: records of 64 B at offset 64,
        # out_dim u32 at +4, weights_bytes u64 at +48; params are 12 B per output channel
        n_layers = int.from_bytes(blob[24:28], "little")
        rec = [blob[64 + 64 * k: 128 + 64 * k] for k in range(n_layers)]
        w_bytes = sum(int.from_bytes(r[48:56], "little") for r in rec)
        p_bytes = sum(12 * int.from_bytes(r[4:8], "little") for r in rec)
        assert w_bytes == memory.weight_bytes(dims, bits) == export.weight_bytes(model, str(bits))
        assert p_bytes == memory.param_bytes(dims, bits)
