"""The integer model file (``models/stage2_w{b}.int.npz``): write, read, validate, with no torch.

Stage 2 (``kwslib.quant.stage2``) converts a trained model into an :class:`~kwslib.quant.intspec.IntModel`
and saves it here; the inference path (``kwslib export``, ``kwslib.study.bench``, the notebooks' integer
engines) reads it back without loading the training framework. A numpy ``.npz`` with no pickles:
a format tag, a version, the model's scalars and one array per layer field.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from . import intspec

INT_FORMAT = "kwslib-int-model"
INT_VERSION = 1

_LAYER_FIELDS = ("w_q", "bits", "bias_q", "mult", "shift", "in_scale", "in_zero_point", "out_scale",
                 "out_zero_point", "relu")


def save_int_model(path, model: intspec.IntModel) -> None:
    """Write an IntModel as a numpy .npz (no pickles), atomically. Validated before writing."""
    from ..io import atomic_path

    validate_int_model(model)
    arrays = {"format": np.array(INT_FORMAT), "version": np.array(INT_VERSION), "n_layers": np.array(len(model.layers)),
              "input_scale": np.array(model.input_scale, np.float64),
              "input_zero_point": np.array(model.input_zero_point, np.int64),
              "norm_mean": np.asarray(model.norm_mean, np.float32), "norm_std": np.asarray(model.norm_std, np.float32),
              "context_frames": np.array(model.context_frames), "decimate": np.array(model.decimate),
              "n_mels": np.array(model.n_mels), "step_frames": np.array(model.step_frames),
              "class_names": np.array(list(model.class_names), dtype=str),
              "feature_config": np.array(json.dumps(model.feature_config, sort_keys=True))}
    for i, layer in enumerate(model.layers):
        for f in _LAYER_FIELDS:
            arrays[f"layer{i}_{f}"] = np.asarray(getattr(layer, f))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_int_model(path) -> intspec.IntModel:
    """Read :func:`save_int_model`'s file; ArtifactError naming the file on any problem."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: integer model file does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ArtifactError(f"{path}: damaged or not an integer model file ({type(exc).__name__}: {exc})") from exc
    if "format" not in d or str(d["format"]) != INT_FORMAT:
        raise ArtifactError(f"{path}: not a kwslib integer model file (no '{INT_FORMAT}' format tag)")
    version = int(d.get("version", -1))
    if not 1 <= version <= INT_VERSION:
        raise ArtifactError(f"{path}: integer model file version {version} is not supported "
                            f"(this kwslib reads 1..{INT_VERSION})")
    try:
        layers = []
        for i in range(int(d["n_layers"])):
            g = {f: d[f"layer{i}_{f}"] for f in _LAYER_FIELDS}
            layers.append(intspec.IntLayer(
                w_q=g["w_q"], bits=int(g["bits"]), bias_q=g["bias_q"], mult=g["mult"], shift=g["shift"],
                in_scale=float(g["in_scale"]), in_zero_point=int(g["in_zero_point"]),
                out_scale=float(g["out_scale"]), out_zero_point=int(g["out_zero_point"]), relu=bool(g["relu"])))
        model = intspec.IntModel(
            layers=layers, input_scale=float(d["input_scale"]), input_zero_point=int(d["input_zero_point"]),
            norm_mean=d["norm_mean"].astype(np.float32), norm_std=d["norm_std"].astype(np.float32),
            context_frames=int(d["context_frames"]), decimate=int(d["decimate"]), n_mels=int(d["n_mels"]),
            step_frames=int(d["step_frames"]), class_names=[str(c) for c in d["class_names"]],
            feature_config=json.loads(str(d["feature_config"])))
        validate_int_model(model)
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: invalid integer model ({type(exc).__name__}: {exc})") from exc
    return model


def validate_int_model(model: intspec.IntModel) -> None:
    """Check an IntModel's shapes and integer parameters against the spec; ValueError naming the problem."""
    if not model.layers:
        raise ValueError("integer model has no layers")
    if model.context_frames % model.decimate:
        raise ValueError("context_frames must be a multiple of decimate")
    n_in = model.context_frames // model.decimate * model.n_mels
    if len(model.norm_mean) != model.n_mels or len(model.norm_std) != model.n_mels:
        raise ValueError("norm_mean/norm_std must have n_mels entries")
    scale, zp = model.input_scale, model.input_zero_point
    for i, layer in enumerate(model.layers):
        where = f"layer {i}"
        if layer.w_q.shape[1] != n_in:
            raise ValueError(f"{where}: {layer.w_q.shape[1]} inputs, previous stage gives {n_in}")
        if layer.in_scale != scale or layer.in_zero_point != zp:
            raise ValueError(f"{where}: input grid ({layer.in_scale}, {layer.in_zero_point}) is not the previous "
                             f"output grid ({scale}, {zp})")
        if not (math.isfinite(layer.out_scale) and layer.out_scale > 0):
            raise ValueError(f"{where}: output scale must be finite and > 0")
        if not intspec.ACT_QMIN <= layer.out_zero_point <= intspec.ACT_QMAX:
            raise ValueError(f"{where}: output zero point outside int8")
        m = np.abs(layer.mult.astype(np.int64))
        if np.any((m != 0) & ((m < 2 ** 30) | (m >= 2 ** 31))):
            raise ValueError(f"{where}: multipliers must be 0 or normalised (2^30 <= |mult| < 2^31)")
        if np.any((layer.shift < intspec.SHIFT_MIN) | (layer.shift > intspec.SHIFT_MAX)):
            raise ValueError(f"{where}: shifts outside [{intspec.SHIFT_MIN}, {intspec.SHIFT_MAX}]")
        if intspec.max_abs_accumulator(layer) > intspec.ACC_MAX:
            raise ValueError(f"{where}: the accumulator can overflow int32")
        if layer.relu != (i < len(model.layers) - 1):
            raise ValueError(f"{where}: hidden layers have ReLU, the output layer not")
        n_in, scale, zp = layer.w_q.shape[0], layer.out_scale, layer.out_zero_point
    if not (math.isfinite(model.input_scale) and model.input_scale > 0):
        raise ValueError("input scale must be finite and > 0")
    if len(model.class_names) != n_in:
        raise ValueError(f"{len(model.class_names)} class names for {n_in} outputs")
