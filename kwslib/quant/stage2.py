"""Stage 2: linear quantization of everything but the weights (8-bit inputs and activations, the
gain as a Q31 fixed-point multiplier, int32 bias), simulated exactly.

Starting from a stage-1 model (dense weights as b-bit integer codes times a
per-channel float gain alpha, float bias and batchnorm), each dense layer +
batchnorm is folded into

    y[c] = gain[c] / code_max * sum_i w_q[c, i] x[i] + bias[c]
    gain = gamma * alpha / sigma,  bias = beta + gamma * (b - mu) / sigma,  sigma = sqrt(var + eps)

(output layer: gain = alpha, bias = b). The weight codes w_q do not change;
``gain`` is kept per *unit* weight (codes / code_max), so its size does not
depend on the bit width (the factor on the integer codes, gamma*alpha/(code_max*sigma),
is ``gain / code_max``): Adam's steps are absolute, and a gain of 1e-4 (8 bits)
would otherwise move as fast as one of 1e-1 (1 bit).

Then everything is quantized as :mod:`kwslib.quant.intspec` specifies:

    input     x_q = clamp(floor(x / s_in + 0.5) + z_in, -128, 127)          (observer on x)
    layer     acc = sum_i w_q[c, i] (x_q[i] - z_x) + B[c]                    int32 (exact)
              B[c] = round(bias[c] / (M_q[c] * s_y))                        bias in the accumulator's scale
              M[c] = gain[c] / code_max * s_x / s_y -> (mult, shift), M_q = mult * 2^-(31 + shift)
              y_q = clamp(requantize(acc, mult, shift) + z_y, lo, 127)      lo = z_y (ReLU) or -128 (logits)
    activations: observer on relu(y) (hidden; min 0 -> z_y = -128) or y (logits)

The integer layer stores ``bias_q = B - z_x * sum_i w_q[c, i]`` (zero-point
term folded in) and computes ``sum_i w_q x_q + bias_q``: the same integers.
B is clamped so that every int8 input keeps ``acc`` inside int32
(``|bias_q| <= 2^31 - 1 - 128 sum_i |w_q|``). Why s_y in B's formula: the
real pre-activation is ``y = M_q s_y acc``, i.e. ``gain_q s_x acc`` with the
gain the fixed point actually represents, ``gain_q = M_q s_y / s_x * code_max``.

The training forward computes exactly these integers (the weight codes, the
fixed-point multiplier, the rounded and clamped bias, and the requantization
by :func:`intspec.requantize` itself), in float64 where every value is an
exact integer, and lets gradients pass by straight-through estimators:
d y_q / d acc = M inside the clamp range, rounding of the input and of the
bias as identity, M_q as M. So in eval mode the model's int8 outputs are the
integer spec's, element by element, given the same input codes.

Choices (documented in notebook 3 too):
- The latent float weights keep training through the stage-1 quantizer
  (``train_weights``): codes can still change in stage 2.
- Gain: a Q31 fixed-point multiplier and shift (``gain_bits`` = 31; fewer
  bits round the multiplier's mantissa, an ablation). Bias: int32 in the
  accumulator's scale. Input, activations, logits: int8, asymmetric,
  moving-average min/max observers (ReLU outputs: zero point -128).
- Observers are calibrated on clean training windows before fine-tuning and
  frozen from ``freeze_observers_fraction`` of the epochs on.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ArtifactError
from .intfile import INT_FORMAT, INT_VERSION, load_int_model, save_int_model, validate_int_model  # noqa: F401
from . import intspec
from .fakequant import FakeQuantize, round_ste
from .stage2_int import int_forward, to_int_model
from .weights import WeightQuantConfig, code_max, fake_quant_weight, weight_codes


@dataclass
class Stage2Config:
    """Stage-2 fine-tuning schedule and quantization choices.

    - ``epochs`` (0: calibrate the observers only, no training), ``lr``,
      ``warmup_epochs``, ``final_lr_fraction``, ``select_best``: the schedule
      (the float run's TrainConfig otherwise: augmentation, batch size, seed).
    - ``weight_decay``: 0 by default: the folded gain and bias set the scale
      of each layer and should not shrink. ``label_smoothing`` None: the float run's.
    - ``train_weights``: latent weights keep training through the stage-1 quantizer.
    - ``averaging_constant``: the observers' moving-average constant.
    - ``calibration_batches``: batches of clean training windows that set the ranges first.
    - ``freeze_observers_fraction``: observers frozen from epoch ceil(f * epochs) (1.0: never).
    - ``gain_bits``: mantissa bits of the fixed-point gain multiplier (31: full Q31).
    - ``dropout``: dropout on the layer inputs while training (0: none).
    """

    epochs: int = 8
    lr: float = 3e-4
    warmup_epochs: int = 0
    final_lr_fraction: float = 0.05
    weight_decay: float = 0.0
    label_smoothing: float | None = None
    select_best: bool = True
    train_weights: bool = True
    averaging_constant: float = 0.02
    calibration_batches: int = 8
    freeze_observers_fraction: float = 0.5
    gain_bits: int = 31
    dropout: float = 0.0

    def __post_init__(self):
        if self.epochs < 0:
            raise ValueError(f"stage-2 epochs must be >= 0, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"stage-2 lr must be > 0, got {self.lr}")
        if not 0.0 < self.averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {self.averaging_constant}")
        if self.calibration_batches < 1:
            raise ValueError(f"calibration_batches must be >= 1, got {self.calibration_batches}")
        if not 0.0 <= self.freeze_observers_fraction <= 1.0:
            raise ValueError(f"freeze_observers_fraction must be in [0, 1], got {self.freeze_observers_fraction}")
        if not 2 <= self.gain_bits <= 31:
            raise ValueError(f"gain_bits must be in 2..31, got {self.gain_bits}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def train_config(self, base):
        """The float run's TrainConfig with this schedule's fields replaced (epochs >= 1)."""
        over = dict(epochs=max(1, self.epochs), lr=self.lr, warmup_epochs=self.warmup_epochs,
                    final_lr_fraction=self.final_lr_fraction, select_best=self.select_best,
                    weight_decay=self.weight_decay)
        if self.label_smoothing is not None:
            over["label_smoothing"] = self.label_smoothing
        return dataclasses.replace(base, **over)

    def freeze_epoch(self) -> int:
        return math.ceil(self.freeze_observers_fraction * self.epochs)


def fixed_point(M: np.ndarray, gain_bits: int = 31):
    """Real per-channel factors -> (mult, shift, M_q) with M_q = mult * 2^-(31 + shift) exactly.

    ``gain_bits`` < 31 first rounds each factor's mantissa to that many bits.
    The multiplier itself is :func:`intspec.quantize_multiplier`'s.
    """
    M = np.asarray(M, np.float64)
    if gain_bits < 31:
        mant, exp = np.frexp(M)
        M = np.ldexp(np.round(mant * 2.0 ** gain_bits) / 2.0 ** gain_bits, exp)
    mult, shift = intspec.quantize_multiplier(M)
    M_q = np.ldexp(mult.astype(np.float64), -(31 + shift.astype(np.int64)))
    return mult, shift, M_q


class Stage2Dense(nn.Module):
    """One folded dense layer: weight codes (from latent weights), gain, bias, output quantizer."""

    def __init__(self, n_in: int, n_out: int, weight_cfg: WeightQuantConfig, relu: bool, s2: Stage2Config):
        super().__init__()
        if weight_cfg.method == "dorefa":
            raise ValueError("stage 2 needs codes on a symmetric grid that fits the b-bit container "
                             "(tanh or linear); DoReFa's odd codes need b + 1 bits")
        self.weight = nn.Parameter(torch.zeros(n_out, n_in), requires_grad=s2.train_weights)  # latent (stage 1)
        self.gain = nn.Parameter(torch.ones(n_out))  # per unit weight codes / code_max
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.weight_cfg = weight_cfg
        self.relu = relu
        self.gain_bits = s2.gain_bits
        self.act = FakeQuantize(8, signed=True, averaging_constant=s2.averaging_constant)
        self.drop = nn.Dropout(s2.dropout)

    def codes(self) -> torch.Tensor:
        """Weight codes [C, I] (float64 of exact integers); gradients reach the latent weights (stage-1 STE)."""
        u = fake_quant_weight(self.weight, self.weight_cfg).double() * code_max(self.weight_cfg)
        exact = weight_codes(self.weight, self.weight_cfg).double()
        return u + (exact - u).detach()

    def quant_params(self, s_in: float, z_in: int, w: torch.Tensor | None = None) -> SimpleNamespace:
        """Integer parameters for inputs on the grid (s_in, z_in): the one derivation for training and export.

        Returns w (codes, STE), M (M_q, STE to M), mult, shift (numpy int32), B (bias in accumulator
        units, exact integers, STE), bias_q (numpy int32, zero-point term folded in), s_out, z_out.
        """
        w = self.codes() if w is None else w
        scale, zp = self.act.qparams()
        s_out, z_out = float(scale), int(zp)
        M = self.gain.double() / code_max(self.weight_cfg) * (s_in / s_out)
        mult, shift, M_q_np = fixed_point(M.detach().cpu().numpy(), self.gain_bits)
        M_q = M + (torch.from_numpy(M_q_np) - M).detach()
        nz = torch.from_numpy(mult != 0)
        denom = torch.where(nz, M_q * s_out, torch.ones_like(M_q))
        B = round_ste(torch.where(nz, self.bias.double() / denom, torch.zeros_like(M_q)))
        wd = w.detach()
        wsum = wd.sum(1)
        room = intspec.ACC_MAX - 128 * wd.abs().sum(1)  # |bias_q| <= room keeps acc in int32
        B = torch.maximum(torch.minimum(B, room + z_in * wsum), -room + z_in * wsum)
        bias_q = (B.detach() - z_in * wsum).numpy().astype(np.int64)
        return SimpleNamespace(w=w, M=M_q, mult=mult, shift=shift, B=B, bias_q=bias_q.astype(np.int32),
                               s_out=s_out, z_out=z_out)

    def forward(self, x_codes: torch.Tensor, s_in: float, z_in: int):
        """int8 codes (float64) on grid (s_in, z_in) -> output codes (float64, exact), s_out, z_out."""
        w = self.codes()
        a = self.drop(x_codes - z_in)
        acc0 = a @ w.T
        if self.training and bool(self.act.observer_enabled):
            y = (self.gain.double() / code_max(self.weight_cfg) * s_in) * acc0 + self.bias.double()
            self.act.observe(torch.relu(y) if self.relu else y)
        qp = self.quant_params(s_in, z_in, w)
        acc = acc0 + qp.B
        lo = qp.z_out if self.relu else intspec.ACT_QMIN
        surrogate = torch.clamp(acc * qp.M + qp.z_out, lo, intspec.ACT_QMAX)
        acc_int = torch.round(acc.detach()).to(torch.int64).numpy()
        exact = intspec.requantize(acc_int, qp.mult, qp.shift, qp.z_out, lo=lo, hi=intspec.ACT_QMAX)
        y_q = surrogate + (torch.from_numpy(exact.astype(np.float64)) - surrogate).detach()
        return y_q, qp.s_out, qp.z_out

    def forward_float(self, x: torch.Tensor) -> torch.Tensor:
        """The folded layer in float (no activation quantization): the stage-1 layer + batchnorm."""
        w = self.codes().float() * (self.gain / code_max(self.weight_cfg))[:, None]
        y = F.linear(x, w, self.bias)
        return torch.relu(y) if self.relu else y


class Stage2Net(nn.Module):
    """The stage-2 model. Input: raw log-mel windows [B, context, n_mels] (as KWSNet).

    ``forward`` returns float logits ``s_y * (y_q - z_y)``: fake-quant in
    training mode (observers update), the exact integer computation in eval
    mode. ``quant_enabled = False`` runs the folded float model instead.
    """

    def __init__(self, cfg, weight_cfgs: list, s2: Stage2Config):
        super().__init__()
        from ..model import ModelConfig

        if not isinstance(cfg, ModelConfig):
            raise TypeError("Stage2Net needs a kwslib.model.ModelConfig")
        dims = [cfg.input_dim] + list(cfg.hidden) + [cfg.n_classes]
        if len(weight_cfgs) != len(dims) - 1:
            raise ValueError(f"Stage2Net: {len(dims) - 1} dense layers but {len(weight_cfgs)} weight configs")
        self.cfg, self.stage2_cfg = cfg, s2
        self.register_buffer("norm_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("norm_std", torch.ones(cfg.n_mels))
        self.input_fq = FakeQuantize(8, signed=True, averaging_constant=s2.averaging_constant)
        n = len(dims) - 1
        self.layers = nn.ModuleList(Stage2Dense(a, b, wc, relu=i < n - 1, s2=s2)
                                    for i, (a, b, wc) in enumerate(zip(dims[:-1], dims[1:], weight_cfgs)))
        self.quant_enabled = True

    def stack(self, windows: torch.Tensor) -> torch.Tensor:
        """Normalise and decimate as KWSNet, in the float32 operations of ``IntModel.input_vector``.

        The groups are summed in order and divided by ``decimate`` (numpy's
        mean); torch's mean multiplies by 1/decimate, which differs in the last
        bit for some widths (e.g. 6) and would move a few input codes.
        """
        c = self.cfg
        if windows.dim() != 3 or windows.shape[1] != c.context_frames or windows.shape[2] != c.n_mels:
            raise ValueError(f"expected windows [B, {c.context_frames}, {c.n_mels}], got {tuple(windows.shape)}")
        x = ((windows.float() - self.norm_mean) / self.norm_std).reshape(
            windows.shape[0], c.context_frames // c.decimate, c.decimate, c.n_mels)
        s = x[:, :, 0]
        for k in range(1, c.decimate):
            s = s + x[:, :, k]
        return (s / c.decimate).flatten(1)

    def quantizers(self) -> dict:
        """name -> FakeQuantize, in data-flow order."""
        out = {"input": self.input_fq}
        for i, layer in enumerate(self.layers):
            out[f"layer{i}" if i < len(self.layers) - 1 else "logits"] = layer.act
        return out

    def set_observers(self, on: bool) -> None:
        for q in self.quantizers().values():
            q.enable_observer(on)

    def forward_codes(self, windows: torch.Tensor):
        """Run the quantized network; returns (output codes float64, s_y, z_y)."""
        x = self.stack(windows)
        h = self.input_fq.codes(x).double()
        s, z = float(self.input_fq.scale), int(self.input_fq.zero_point)
        for layer in self.layers:
            h, s, z = layer(h, s, z)
        return h, s, z

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if not self.quant_enabled:
            h = self.stack(windows)
            for layer in self.layers:
                h = layer.forward_float(h)
            return h
        h, s, z = self.forward_codes(windows)
        return ((h - z) * s).float()

    @torch.no_grad()
    def int8_outputs(self, windows, batch: int = 4096) -> np.ndarray:
        """int8 logits of the fake-quant model in eval mode [N, classes] (to compare with the integer mode)."""
        was = self.training
        self.eval()
        w = torch.as_tensor(np.asarray(windows, np.float32))
        out = [self.forward_codes(w[i:i + batch])[0].numpy().astype(np.int8) for i in range(0, len(w), batch)]
        self.train(was)
        return np.concatenate(out) if out else np.zeros((0, self.cfg.n_classes), np.int8)

    def int_forward(self, windows, feat_cfg=None) -> np.ndarray:
        """Integer mode: the network as an IntModel, run on raw windows -> int8 logits."""
        return int_forward(to_int_model(self, feat_cfg), windows)


# ---------------------------------------------------------------------------
# Folding a stage-1 model, calibrating, training.

def fold_stage1(stage1_model, s2: Stage2Config | None = None) -> Stage2Net:
    """A Stage2Net holding ``stage1_model``'s codes with each batchnorm folded into gain and bias.

    The stage-1 model is not modified; the returned model is in eval mode
    with uncalibrated quantizers (``quant_enabled`` True).
    """
    from .qat import QuantLinear

    s2 = s2 or Stage2Config()
    pairs = [(b.linear, b.bn) for b in stage1_model.blocks] + [(stage1_model.out, None)]
    for lin, _ in pairs:
        if not isinstance(lin, QuantLinear):
            raise TypeError("fold_stage1 needs a stage-1 model (every dense layer a QuantLinear)")
        if not lin.enabled:
            raise ValueError("fold_stage1: a QuantLinear has quantization disabled; enable it first")
    net = Stage2Net(stage1_model.cfg, [lin.weight_cfg for lin, _ in pairs], s2)
    with torch.no_grad():
        net.norm_mean.copy_(stage1_model.norm_mean)
        net.norm_std.copy_(stage1_model.norm_std)
        for layer, (lin, bn) in zip(net.layers, pairs):
            alpha = lin.alpha.double()
            b = lin.bias.double() if lin.bias is not None else torch.zeros_like(alpha)
            if bn is None:
                gain, bias = alpha, b
            else:
                sigma = torch.sqrt(bn.running_var.double() + bn.eps)
                gamma = bn.weight.double() if bn.affine else torch.ones_like(alpha)
                beta = bn.bias.double() if bn.affine else torch.zeros_like(alpha)
                gain = gamma * alpha / sigma
                bias = beta + gamma * (b - bn.running_mean.double()) / sigma
            layer.weight.copy_(lin.weight)
            layer.gain.copy_(gain)
            layer.bias.copy_(bias)
    net.eval()
    return net


@torch.no_grad()
def calibrate(net: Stage2Net, windows: torch.Tensor, batch_size: int = 128, batches: int | None = None) -> None:
    """Set the observers' ranges from ``windows`` (observers on, no dropout, no gradient); ends in eval mode."""
    net.train()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    net.set_observers(True)
    n = len(windows) if batches is None else min(len(windows), batches * batch_size)
    for i in range(0, n, batch_size):
        net(windows[i:i + batch_size])
    net.eval()


def train_stage2(stage1_model, corpus, feat_cfg, train_cfg, stage2_cfg: Stage2Config, ckpt_dir=None, log=print,
                 progress: bool = False, bank_dir=None):
    """Fold ``stage1_model`` (not modified), calibrate, fine-tune with fake quantization.

    ``train_cfg``: the float run's TrainConfig (``stage2_cfg`` replaces the
    schedule). ``ckpt_dir``: per-epoch checkpoints and resume (kwslib.train.loop.fit);
    a checkpoint of a different run is discarded; ``bank_dir``: where fit keeps augmentation banks on
    disk. Returns (Stage2Net in eval
    mode with observers off, history list).
    """
    from ..io import atomic_write_text
    from ..frontend.streaming import center_window
    from ..frontend.features import clip_features
    from ..train.loop import fit, run_key, set_seed

    s2 = stage2_cfg
    cfg = s2.train_config(train_cfg)
    set_seed(cfg.seed)
    net = fold_stage1(stage1_model, s2)
    g = torch.Generator().manual_seed(cfg.seed)
    n_cal = min(len(corpus.train), s2.calibration_batches * cfg.batch_size)
    idx = torch.randperm(len(corpus.train), generator=g)[:n_cal].numpy()
    cal = center_window(clip_features(corpus.train.audio[np.sort(idx)], feat_cfg), net.cfg.context_frames)
    calibrate(net, cal, cfg.batch_size)
    history = []
    if s2.epochs > 0:
        if ckpt_dir is not None:
            ckpt_dir = Path(ckpt_dir)
            key, key_file = run_key(stage1_model, cfg, s2), ckpt_dir / "run_key.txt"
            if not key_file.exists() or key_file.read_text() != key:
                (ckpt_dir / "last.pt").unlink(missing_ok=True)
                atomic_write_text(key_file, key)
        freeze = s2.freeze_epoch()

        def on_epoch_start(epoch, m):
            m.set_observers(epoch < freeze)

        history = fit(net, corpus.train, corpus.val, feat_cfg, cfg, noise_train=corpus.noise_train,
                      ckpt_dir=ckpt_dir, on_epoch_start=on_epoch_start, log=log, progress=progress,
                      bank_dir=bank_dir).epochs
    net.set_observers(False)
    net.eval()
    return net, history


# ---------------------------------------------------------------------------
# Saving and loading.
STAGE2_FORMAT = "kwslib-stage2-model"
STAGE2_VERSION = 1


def save_stage2_model(path, net: Stage2Net, extra: dict | None = None) -> None:
    """Write a Stage2Net atomically: model config, stage-2 config, per-layer weight configs, state dict
    (observers' ranges, scales, zero points and switches included)."""
    from ..io import atomic_path

    state = {"format": STAGE2_FORMAT, "version": STAGE2_VERSION, "kind": "stage2",
             "config": dataclasses.asdict(net.cfg), "stage2": dataclasses.asdict(net.stage2_cfg),
             "layers": [dataclasses.asdict(layer.weight_cfg) for layer in net.layers],
             "state_dict": net.state_dict(), "extra": extra or {}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_stage2_model(path) -> Stage2Net:
    """Load a model written by :func:`save_stage2_model` (eval mode); ArtifactError naming the file on any problem."""
    from ..config import from_dict
    from ..errors import ConfigError
    from ..model import ModelConfig

    from ..model import read_model_file

    path = Path(path)
    state = read_model_file(path, STAGE2_FORMAT, STAGE2_VERSION, "stage-2 model",
                            ("config", "stage2", "layers", "state_dict"))
    try:
        cfg = from_dict(ModelConfig, state["config"], where=f"{path}:config")
        s2 = from_dict(Stage2Config, state["stage2"], where=f"{path}:stage2")
        wcfgs = [from_dict(WeightQuantConfig, c, where=f"{path}:layers[{i}]") for i, c in enumerate(state["layers"])]
        net = Stage2Net(cfg, wcfgs, s2)
        net.load_state_dict(state["state_dict"])
    except (ConfigError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{path}: stage-2 model does not match its config ({exc})") from exc
    net.eval()
    return net


