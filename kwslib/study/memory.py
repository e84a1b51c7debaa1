"""Memory projection for the dense KWS network: float32, 8-bit containers, packed 1..8-bit weights.

Counts bytes, not estimates: the numbers for the exported widths equal the
payload of the artifact written by :mod:`kwslib.deploy.export` (tested). For each
layer ``l`` with ``I`` inputs and ``C`` outputs:

- weights
    float32:           4 * C * I
    8-bit containers:  C * I            (NEON-style: one code per byte, any width <= 8)
    packed b bits:     C * ceil(I * b / 8)   (each output row padded to whole bytes,
                                              as the artifact stores it; at most C bytes of padding)
- per-channel parameters
    float32:           4 * C  bias, with batchnorm folded into the weights (the fair float baseline)
    integer engine:    12 * C bias_q int32 + mult int32 + shift int32 (the artifact's layout)
- activations: peak live bytes over the layer sequence, one input and one output
  buffer at a time: max_l (I_l + C_l) * bytes per value (4 for float32, 1 for int8).

Accelerator assumption (the paper's setting b): weights stored packed at their width,
parameters and activations as in the integer engine. Scaled architectures keep the
input (960) and output (12) sizes and change the hidden width and depth.
"""
from __future__ import annotations

from dataclasses import dataclass

PARAM_BYTES_PER_CHANNEL = 12  # bias_q, mult, shift: three int32 per output channel (export format v1)


@dataclass(frozen=True)
class Layer:
    n_in: int
    n_out: int


def dense_layers(input_dim: int = 960, hidden=(186, 186, 186), n_classes: int = 12) -> list[Layer]:
    dims = [input_dim, *hidden, n_classes]
    return [Layer(a, b) for a, b in zip(dims[:-1], dims[1:])]


def n_weights(layers) -> int:
    return sum(l.n_in * l.n_out for l in layers)


def n_params(layers) -> int:
    """Float parameters of the deployable model: weights and biases (batchnorm folded)."""
    return sum(l.n_in * l.n_out + l.n_out for l in layers)


def weight_bytes(layers, layout) -> int:
    """layout: 'float32', 'int8' (8-bit containers) or an int 1..8 (packed at that width)."""
    if layout == "float32":
        return sum(4 * l.n_in * l.n_out for l in layers)
    if layout == "int8":
        return sum(l.n_in * l.n_out for l in layers)
    bits = int(layout)
    if not 1 <= bits <= 8:
        raise ValueError(f"weight width must be 1..8 bits, got {layout!r}")
    return sum(l.n_out * ((l.n_in * bits + 7) // 8) for l in layers)


def param_bytes(layers, layout) -> int:
    if layout == "float32":
        return sum(4 * l.n_out for l in layers)
    return sum(PARAM_BYTES_PER_CHANNEL * l.n_out for l in layers)


def activation_bytes(layers, layout) -> int:
    per = 4 if layout == "float32" else 1
    return max(l.n_in + l.n_out for l in layers) * per


def footprint(layers, layout) -> dict:
    """Bytes of weights, parameters and activation scratch, and their total, for one layout."""
    w, p, a = weight_bytes(layers, layout), param_bytes(layers, layout), activation_bytes(layers, layout)
    return {"layout": str(layout), "weights": w, "params": p, "activations": a, "total": w + p + a}


def projection_table(layers) -> list[dict]:
    """float32, 8-bit containers and packed 1..8 bits, with the reduction factor vs float32."""
    rows = [footprint(layers, "float32"), footprint(layers, "int8")] + [footprint(layers, b) for b in range(8, 0, -1)]
    ref = rows[0]["total"]
    for r in rows:
        r["reduction_vs_float32"] = ref / r["total"]
        r["weight_reduction_vs_float32"] = rows[0]["weights"] / r["weights"]
    return rows


def scaled_architectures(input_dim: int = 960, n_classes: int = 12, widths=(64, 128, 186, 256, 384, 512, 768),
                         depths=(2, 3, 4, 5)) -> list[dict]:
    """The same architecture at other hidden widths and depths (about 50K to 2M parameters)."""
    out = []
    for depth in depths:
        for width in widths:
            layers = dense_layers(input_dim, [width] * depth, n_classes)
            out.append({"width": width, "depth": depth, "params": n_params(layers), "layers": layers})
    return out
