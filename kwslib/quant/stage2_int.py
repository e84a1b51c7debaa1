"""Stage 2 in integers: the :class:`~kwslib.quant.intspec.IntModel` of a trained stage-2 network.

:func:`to_int_model` reads the integers the network's eval forward computes (weight codes, Q31
multipliers and shifts, int32 biases, zero points); :func:`int_forward` / :func:`int_posterior_fn` run
them with numpy (the same integers as the engines); :func:`compare_modes` checks that the fake-quantized
forward and the integer model agree element by element; :func:`changed_codes` and
:func:`describe_ranges` say what stage 2 changed and what its quantizers observed.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import intspec

if TYPE_CHECKING:  # a type only: stage2 imports this module (Stage2Net.int_forward)
    from .stage2 import Stage2Net


def to_int_model(net: Stage2Net, feat_cfg=None, class_names=None) -> intspec.IntModel:
    """The trained stage-2 model as an :class:`intspec.IntModel` (the integers its eval forward computes).

    ``class_names``: the corpus's classes (None: Speech Commands' 12, cut to the network's outputs); the
    artifact carries them to ``kwslib detect`` and the C detector."""
    from ..data.base import CLASSES

    for name, q in net.quantizers().items():
        if not q.initialized:
            raise ValueError(f"to_int_model: quantizer '{name}' was never calibrated")
    s_in, z_in = float(net.input_fq.scale), int(net.input_fq.zero_point)
    layers = []
    with torch.no_grad():
        for layer in net.layers:
            qp = layer.quant_params(s_in, z_in)
            layers.append(intspec.IntLayer(
                w_q=qp.w.numpy().astype(np.int8), bits=layer.weight_cfg.bits, bias_q=qp.bias_q,
                mult=qp.mult, shift=qp.shift, in_scale=s_in, in_zero_point=z_in,
                out_scale=qp.s_out, out_zero_point=qp.z_out, relu=layer.relu))
            s_in, z_in = qp.s_out, qp.z_out
    c = net.cfg
    if class_names is not None and len(class_names) != c.n_classes:
        raise ValueError(f"to_int_model: {len(class_names)} class names for a network of {c.n_classes} outputs")
    feature_config = dataclasses.asdict(feat_cfg) if dataclasses.is_dataclass(feat_cfg) else dict(feat_cfg or {})
    return intspec.IntModel(layers=layers, input_scale=float(net.input_fq.scale),
                            input_zero_point=int(net.input_fq.zero_point),
                            norm_mean=net.norm_mean.numpy().astype(np.float32).copy(),
                            norm_std=net.norm_std.numpy().astype(np.float32).copy(),
                            context_frames=c.context_frames, decimate=c.decimate, n_mels=c.n_mels,
                            step_frames=c.step_frames, class_names=list(CLASSES)[:c.n_classes] if class_names is None else [str(n) for n in class_names],
                            feature_config=feature_config)


FLOAT32_EXACT = 2 ** 24  # float32 holds every integer of magnitude <= 2^24


def forward_int_fast(model: intspec.IntModel, x_q: np.ndarray) -> np.ndarray:
    """IntModel.forward_int, with the products summed by float BLAS.

    Exact: every product and partial sum is an integer of magnitude at most
    ``intspec.max_abs_accumulator`` (< 2^31, checked), so any summation order
    (and FMA) gives the same integer in a float type that holds every integer
    up to that bound: float32 when the bound is <= 2^24 (e.g. 4-bit weights),
    float64 (2^53) otherwise. The requantization is :func:`intspec.requantize`.
    """
    h = np.asarray(x_q, np.int8)
    for layer in model.layers:
        bound = intspec.max_abs_accumulator(layer)
        if bound > intspec.ACC_MAX:
            raise OverflowError("forward_int_fast: a layer's accumulator bound exceeds int32")
        ft = np.float32 if bound <= FLOAT32_EXACT else np.float64
        acc = h.astype(ft) @ layer.w_q.T.astype(ft) + layer.bias_q.astype(ft)
        h = intspec.requantize(acc.astype(np.int64), layer.mult, layer.shift, layer.out_zero_point, lo=layer.lo)
    return h


def int_forward(model: intspec.IntModel, windows, batch: int = 8192) -> np.ndarray:
    """Integer mode: raw log-mel windows [N, context, M] -> int8 logits [N, classes].

    Input boundary: ``IntModel.quantize_input`` (numpy float32), identical for every engine.
    """
    w = np.asarray(windows, np.float32)
    out = [forward_int_fast(model, model.quantize_input(w[i:i + batch])) for i in range(0, len(w), batch)]
    return np.concatenate(out) if out else np.zeros((0, len(model.layers[-1].mult)), np.int8)


def int_posterior_fn(model: intspec.IntModel, batch: int = 8192):
    """windows -> softmax of the integer mode's dequantized logits (``IntModel.logits``), float32."""

    from .intspec import softmax  # the one softmax of every integer path (bit-identical posteriors)

    def fn(windows):
        return softmax(model.logits(int_forward(model, windows, batch)))

    return fn


def compare_modes(net: Stage2Net, model: intspec.IntModel, windows, reference: int | None = None) -> dict:
    """The fake-quant model (eval) vs the integer mode vs IntModel.forward_int on the same windows.

    Counts differing input codes (torch front end vs numpy), differing int8
    logits and differing class decisions. ``reference``: run the slow
    ``IntModel.forward_int`` on the first ``reference`` windows (None: all).
    """
    w = torch.as_tensor(np.asarray(windows, np.float32))
    fq = net.int8_outputs(w)
    x_np = model.quantize_input(w.numpy())
    with torch.no_grad():
        net.eval()
        x_t = net.input_fq.codes(net.stack(w)).numpy().astype(np.int8)
    im = forward_int_fast(model, x_np)
    n_ref = len(w) if reference is None else min(reference, len(w))
    ref = model.forward_int(x_np[:n_ref])
    return {"windows": int(len(w)),
            "input_code_differences": int((x_t != x_np).sum()),
            "logit_differences": int((fq != im).sum()),
            "decision_differences": int((fq.argmax(1) != im.argmax(1)).sum()),
            "max_abs_logit_difference": int(np.abs(fq.astype(np.int16) - im.astype(np.int16)).max(initial=0)),
            "reference_windows": int(n_ref),
            "reference_differences": int((ref != im[:n_ref]).sum())}


def changed_codes(stage1_model, net: Stage2Net) -> float:
    """Fraction of weight codes that stage 2 changed (the latent weights kept training)."""
    lins = [b.linear for b in stage1_model.blocks] + [stage1_model.out]
    with torch.no_grad():
        diff = sum(int((layer.codes().to(torch.int8) != lin.int_codes()).sum()) for layer, lin in zip(net.layers, lins))
    return diff / sum(layer.weight.numel() for layer in net.layers)


def describe_ranges(net: Stage2Net) -> list[dict]:
    """Per quantized tensor: observed range, scale, zero point (and per layer the integer parameters' spans)."""
    rows = []
    for name, q in net.quantizers().items():
        rows.append(dict(tensor=name, **q.describe()))
    im = to_int_model(net)
    for row, layer in zip(rows[1:], im.layers):
        row.update(weight_bits=layer.bits, mult_min=int(np.abs(layer.mult).min()),
                   shift_min=int(layer.shift.min()), shift_max=int(layer.shift.max()),
                   bias_q_absmax=int(np.abs(layer.bias_q.astype(np.int64)).max()),
                   acc_bound_fraction_of_int32=intspec.max_abs_accumulator(layer) / 2 ** 31)
    return rows
