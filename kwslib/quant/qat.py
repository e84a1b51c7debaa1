"""Stage-1 quantization-aware training: dense-layer weights quantized, everything else float.

``quantize_model`` swaps every dense layer of a trained float ``KWSNet``
(``blocks[i].linear`` and ``out``) for a :class:`QuantLinear` without touching
the model code. A QuantLinear keeps the float ("latent") weight that the
optimizer updates and computes with

    effective weight = alpha[:, None] * fake_quant_weight(weight)     (codes / code_max, in [-1, 1])

``alpha`` is a learnable per-output-channel gain. In a hidden layer the
following batchnorm would absorb it (it is folded into the batchnorm gain in
stage 2); the output layer has no batchnorm, so it needs its own scale.
Biases and batchnorm stay float in stage 1.

The schedule (:class:`Stage1Config`) fine-tunes from the float checkpoint.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .weights import WeightQuantConfig, code_max, fake_quant_weight, weight_codes


class QuantLinear(nn.Linear):
    """nn.Linear whose forward uses the quantized weight alpha * codes / code_max.

    ``enabled = False`` makes it a plain float layer (latent weight), e.g. to
    compare with the float model or to delay quantization in a schedule.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 weight_cfg: WeightQuantConfig | None = None):
        super().__init__(in_features, out_features, bias=bias)
        self.weight_cfg = weight_cfg or WeightQuantConfig()
        self.alpha = nn.Parameter(torch.ones(out_features))
        self.enabled = True

    @classmethod
    def from_linear(cls, linear: nn.Linear, cfg: WeightQuantConfig) -> "QuantLinear":
        """A QuantLinear with ``linear``'s weight and bias, alpha fitted by least squares."""
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, weight_cfg=cfg)
        with torch.no_grad():
            q.weight.copy_(linear.weight)
            if linear.bias is not None:
                q.bias.copy_(linear.bias)
            q.alpha.copy_(least_squares_gain(linear.weight, cfg))
        return q

    def quantized_unit_weight(self) -> torch.Tensor:
        return fake_quant_weight(self.weight, self.weight_cfg)

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses (differentiable; straight-through past rounding)."""
        return self.alpha[:, None] * self.quantized_unit_weight()

    def int_codes(self) -> torch.Tensor:
        """The integer weight codes [C, I] as int8 (what the integer engine stores)."""
        codes = weight_codes(self.weight, self.weight_cfg)
        if codes.abs().max() > 127:
            raise ValueError(f"{self.weight_cfg.name}: codes up to {int(codes.abs().max())} do not fit int8 "
                             "(DoReFa's 8-bit grid has 255 odd levels; it is an ablation, not exported)")
        return codes.to(torch.int8)

    def forward(self, x):
        w = self.effective_weight() if self.enabled else self.weight
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        c = self.weight_cfg
        return f"{super().extra_repr()}, bits={c.bits}, method={c.method}, per_channel={c.per_channel}, enabled={self.enabled}"


def least_squares_gain(w: torch.Tensor, cfg: WeightQuantConfig) -> torch.Tensor:
    """Per-channel alpha minimising ||w_c - alpha_c * u_c||^2, u = codes / code_max: <w_c, u_c> / <u_c, u_c>."""
    with torch.no_grad():
        u = weight_codes(w, cfg) / code_max(cfg)
        num = (w * u).sum(1)
        den = (u * u).sum(1)
        fallback = w.abs().amax(1)  # a row with all-zero codes (possible per tensor): any gain is a LS solution
        return torch.where(den > 0, num / den.clamp_min(1e-30), fallback)


class FreezableBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that, once ``frozen``, stays in eval mode while the model trains.

    Frozen: it normalises with its running statistics and stops updating them
    (its gain and shift still learn), so training sees what inference sees.
    Same parameters and buffers as nn.BatchNorm1d.
    """

    frozen: bool = False

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)


def _freezable(bn: nn.BatchNorm1d) -> FreezableBatchNorm1d:
    if isinstance(bn, FreezableBatchNorm1d):
        return bn
    new = FreezableBatchNorm1d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                               track_running_stats=bn.track_running_stats)
    new.load_state_dict(bn.state_dict())
    new.train(bn.training)
    return new


def set_bn_frozen(model: nn.Module, frozen: bool) -> None:
    for m in model.modules():
        if isinstance(m, FreezableBatchNorm1d):
            m.frozen = frozen
            if frozen:
                m.eval()


def quant_layers(model: nn.Module) -> dict:
    """name -> QuantLinear, in model order (``blocks.0.linear`` ... ``out``)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantLinear)}


def _swap(model, cfgs: dict, fit_gain: bool):
    """Replace the dense layers named in ``cfgs`` by QuantLinear (in place)."""
    for i, block in enumerate(model.blocks):
        name = f"blocks.{i}.linear"
        if name in cfgs:
            lin = block.linear
            block.linear = QuantLinear.from_linear(lin, cfgs[name]) if fit_gain else \
                QuantLinear(lin.in_features, lin.out_features, lin.bias is not None, cfgs[name])
        block.bn = _freezable(block.bn)
    if "out" in cfgs:
        lin = model.out
        model.out = QuantLinear.from_linear(lin, cfgs["out"]) if fit_gain else \
            QuantLinear(lin.in_features, lin.out_features, lin.bias is not None, cfgs["out"])
    return model


def quantize_model(model: nn.Module, cfg: WeightQuantConfig) -> nn.Module:
    """A deep copy of a KWSNet with every dense layer (hidden and output) a QuantLinear.

    Weights and biases are copied; alpha starts at the least-squares fit of the
    quantized weight to the float one, so the copy is already the post-training
    quantized model. Batchnorm stays float (made freezable, same state).
    """
    q = copy.deepcopy(model)
    names = [f"blocks.{i}.linear" for i in range(len(q.blocks))] + ["out"]
    _swap(q, {n: cfg for n in names}, fit_gain=True)
    return q


# ---------------------------------------------------------------------------
# The stage-1 schedule.

def ptq_quantize(model: nn.Module, cfg: WeightQuantConfig) -> nn.Module:
    """Post-training quantization: the trained float weights rounded once, no retraining.

    Returns a copy in QAT form (``quantize_model``: QuantLinear layers with the
    least-squares per-channel gain, batchnorm unchanged), so PTQ and QAT
    models are evaluated, saved and exported the same way.
    """
    q = quantize_model(copy.deepcopy(model), cfg)
    q.eval()
    return q


@dataclass
class Stage1Config:
    """Fine-tuning schedule of stage 1, starting from the trained float model.

    Choice and why:
    - Quantization is on from the first step: the float model has converged,
      so there is nothing to gain from float epochs first (and the loop's
      best-epoch selection must only see quantized epochs).
    - A short run (``epochs``, a fraction of the float run) at a lower peak
      learning rate (``lr``, ~1/5 of the float run's) with a 1-epoch warm-up
      and cosine decay: the weights start near a good solution and only need
      to move across the rounding boundaries that matter.
    - Batchnorm statistics are frozen from ``freeze_bn_epoch`` on (None:
      never): the last epochs then train with the normalisation inference
      uses, a standard QAT step (Krishnamoorthi 2018; torch.ao freeze_bn).
    - Augmentation, batch size, label smoothing, seed: the float run's
      TrainConfig. ``weight_decay``/``label_smoothing`` None: keep the float run's.
    """

    epochs: int = 10
    lr: float = 6e-4
    warmup_epochs: int = 1
    final_lr_fraction: float = 0.05
    freeze_bn_epoch: int | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    select_best: bool = True

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"stage-1 epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"stage-1 lr must be > 0, got {self.lr}")
        if self.freeze_bn_epoch is not None and self.freeze_bn_epoch < 0:
            raise ValueError(f"freeze_bn_epoch must be >= 0 or None, got {self.freeze_bn_epoch}")

    def train_config(self, base):
        """The float run's TrainConfig with this schedule's fields replaced."""
        over = dict(epochs=self.epochs, lr=self.lr, warmup_epochs=self.warmup_epochs,
                    final_lr_fraction=self.final_lr_fraction, select_best=self.select_best)
        if self.weight_decay is not None:
            over["weight_decay"] = self.weight_decay
        if self.label_smoothing is not None:
            over["label_smoothing"] = self.label_smoothing
        return dataclasses.replace(base, **over)


def train_stage1(float_model, corpus, feat_cfg, train_cfg, stage_cfg: Stage1Config, wcfg: WeightQuantConfig,
                 ckpt_dir=None, log=print, progress: bool = False, bank_dir=None):
    """Stage-1 QAT from ``float_model`` (not modified). Returns (model in eval mode, history list).

    ``ckpt_dir``: per-epoch checkpoints and resume (see kwslib.train.loop.fit); a
    checkpoint left by a different run (other float weights, schedule or
    quantizer) is discarded, not resumed. ``bank_dir``: where fit keeps augmentation banks on disk.
    """
    from ..io import atomic_write_text
    from ..train.loop import fit, run_key, set_seed

    model = quantize_model(float_model, wcfg)
    cfg = stage_cfg.train_config(train_cfg)
    if ckpt_dir is not None:
        ckpt_dir = Path(ckpt_dir)
        key, key_file = run_key(model, stage_cfg, wcfg), ckpt_dir / "run_key.txt"
        if not key_file.exists() or key_file.read_text() != key:
            (ckpt_dir / "last.pt").unlink(missing_ok=True)
            atomic_write_text(key_file, key)

    def on_epoch_start(epoch, m):
        set_bn_frozen(m, stage_cfg.freeze_bn_epoch is not None and epoch >= stage_cfg.freeze_bn_epoch)

    set_seed(cfg.seed)
    hist = fit(model, corpus.train, corpus.val, feat_cfg, cfg, noise_train=corpus.noise_train, ckpt_dir=ckpt_dir,
               on_epoch_start=on_epoch_start, log=log, progress=progress, bank_dir=bank_dir)
    set_bn_frozen(model, False)
    model.eval()
    return model, hist.epochs


# ---------------------------------------------------------------------------
# Saving and loading: the float model file's layout plus each layer's quantizer config.
QAT_FORMAT = "kwslib-qat-model"
QAT_VERSION = 1


def save_qat_model(path, model: nn.Module, kind: str = "stage1", extra: dict | None = None) -> None:
    """Write a QAT model atomically: model config, per-layer WeightQuantConfig, state dict."""
    from ..io import atomic_path

    layers = quant_layers(model)
    if not layers:
        raise ValueError("save_qat_model: the model has no QuantLinear layers (use kwslib.model.save_model)")
    state = {"format": QAT_FORMAT, "version": QAT_VERSION, "kind": kind,
             "config": dataclasses.asdict(model.cfg),
             "layers": {n: dataclasses.asdict(m.weight_cfg) for n, m in layers.items()},
             "enabled": {n: bool(m.enabled) for n, m in layers.items()},
             "state_dict": model.state_dict(), "extra": extra or {}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_qat_model(path) -> nn.Module:
    """Load a model written by :func:`save_qat_model` (eval mode); ArtifactError naming the file on any problem."""
    from ..config import from_dict
    from ..errors import ArtifactError, ConfigError
    from ..model import KWSNet, ModelConfig

    from ..model import read_model_file

    path = Path(path)
    state = read_model_file(path, QAT_FORMAT, QAT_VERSION, "QAT model", ("config", "layers", "state_dict"))
    try:
        cfg = from_dict(ModelConfig, state["config"], where=f"{path}:config")
        cfgs = {n: from_dict(WeightQuantConfig, c, where=f"{path}:layers.{n}") for n, c in state["layers"].items()}
        model = _swap(KWSNet(cfg), cfgs, fit_gain=False)
        unknown = set(cfgs) - set(quant_layers(model))
        if unknown:
            raise KeyError(f"unknown layer(s) {sorted(unknown)}")
        model.load_state_dict(state["state_dict"])
        for n, on in state.get("enabled", {}).items():
            quant_layers(model)[n].enabled = bool(on)
    except (ConfigError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{path}: QAT model does not match its config ({exc})") from exc
    model.eval()
    return model


# ---------------------------------------------------------------------------
# Naming and reading the stage-1 ablation (notebook 2).
SUMMARY_PREFIX = {"tanh": "stage1", "linear": "linear", "dorefa": "dorefa", "ptq": "ptq"}
SUMMARY_STAGE = {"tanh": "stage1", "linear": "linear_qat", "dorefa": "dorefa_qat", "ptq": "ptq"}


def summary_key(method: str, bits: int, per_channel: bool = True) -> str:
    """summary.json key of a stage-1 or baseline model: stage1_w4, ptq_w4, linear_w4, dorefa_w4; per tensor: ptq_pt_w4."""
    if method not in SUMMARY_PREFIX:
        raise ValueError(f"unknown stage-1 method {method!r}; known: {sorted(SUMMARY_PREFIX)}")
    return f"{SUMMARY_PREFIX[method]}{'' if per_channel else '_pt'}_w{bits}"


def lowest_width_at_parity(parity_by_bits: dict) -> int | None:
    """The smallest width b such that every tested width >= b reaches parity (None: the widest fails).

    ``parity_by_bits``: {bits: bool}. "Where a method breaks" is the next tested width below it.
    """
    lowest = None
    for b in sorted(parity_by_bits, reverse=True):
        if not parity_by_bits[b]:
            break
        lowest = b
    return lowest


def stale_keys(models: dict, produced) -> list:
    """Keys of stage-1/baseline entries in summary ``models`` that this run did not produce.

    A rerun with a smaller grid must not leave an earlier run's numbers behind: the
    notebook writes them as null (docs/DESIGN.md section 8: a value not measured in this run is null).
    """
    import re

    pattern = re.compile(rf"^({'|'.join(SUMMARY_PREFIX.values())})(_pt)?_w[1-8]$")
    return sorted(k for k in models if pattern.match(k) and k not in set(produced))
