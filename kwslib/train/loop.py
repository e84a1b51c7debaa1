"""Seeded training loop with atomic per-epoch checkpoints and resume.

One loop trains the float model and, with a different model and schedule
hook, the quantization-aware stages. Each epoch draws its randomness from
generators seeded by (seed, epoch), so a run killed mid-way and resumed from
its last checkpoint replays the remaining epochs exactly.

Audio is augmented and turned into log-mel features on the fly each epoch
(batched in torch: ~1 s per epoch for ~3.5k clips on 2 cores).

Determinism: the same config and seed give the same weights, metrics and
exported artifacts on the same machine. Python, numpy and torch are seeded per
epoch, the data order and every augmentation draw come from an explicit
generator, and ``fit`` runs with ``torch.use_deterministic_algorithms(True,
warn_only=True)`` (restored on return): torch then picks deterministic kernels
where it has them and warns where an op has none. On CUDA, cuBLAS needs
``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (kwslib.train.distributed sets it when it picks a
GPU) and cuDNN autotuning is switched off. Results are not expected to be
bit-identical across machines, thread counts or devices.

Several processes: ``torchrun --nproc_per_node=N -m kwslib.train --params
params/<profile>/01_float.yaml --out DIR`` trains the float model with
DistributedDataParallel; see :mod:`kwslib.train.distributed` for how a run on N
ranks computes what one process computes with the same global batch.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data.augment import AugmentConfig, augment_audio, noise_tensor, spec_augment
from ..data.base import ClipSet
from .distributed import DistEnv, all_reduce_sum, broadcast_object, local_loss_scale, rank_slice, wrap_ddp
from ..frontend.features import FeatureConfig, clip_features, logmel_torch, num_frames
from ..io import atomic_path, atomic_write_json
from ..frontend.streaming import center_window

CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-3  # AdamW, decoupled
    warmup_epochs: int = 2  # linear warm-up, then cosine decay to lr * final_lr_fraction
    final_lr_fraction: float = 0.02
    label_smoothing: float = 0.1
    grad_clip: float = 5.0
    threads: int = 2  # torch intra-op threads (this machine has 2 cores)
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # 0: augment the audio and compute its features afresh for every batch of every epoch.
    # K > 0: an augmentation bank (see augmentation_bank): K augmented feature versions of every
    # training clip are computed once per run, and every epoch draws one of them per clip; the
    # window offset and the SpecAugment masks are still drawn per batch. The audio work (~90% of an
    # epoch on 2 cores) is then paid K times instead of once per epoch.
    augment_bank: int = 0
    select_best: bool = True  # keep the weights of the best validation epoch
    # mixup (Zhang et al. 2018) on the feature windows: each batch is mixed with a permutation of itself,
    # x = lam * x + (1 - lam) * x[perm], loss = lam * CE(y) + (1 - lam) * CE(y[perm]), lam ~ Beta(a, a) per
    # batch (drawn from the epoch's generator). 0: off. Single process only (the mix pairs clips across the
    # global batch, which the ranks of a torchrun job hold apart).
    mixup_alpha: float = 0.0
    # Synthetic pretraining (kwslib.study.experiment.train_float): this many epochs on the espeak-ng keyword corpus
    # of data.synthetic / data.synthetic_seed before the epochs on the real training split (0: none). The
    # pretraining schedule is this config with `epochs` replaced; the fine-tuning starts from its weights.
    pretrain_epochs: int = 0
    # Class balance (assumption: a corpus whose classes differ in size by an order of magnitude, as a profile of your
    # own keywords with a few real clips beside a large `_unknown_` class). Each training clip's loss is weighted by
    # n_c ** -class_balance (n_c: the training clips of its class), normalised to a mean weight of 1 over the
    # training clips, and the best epoch is chosen by validation accuracy with the same weighting of the validation
    # clips (1: mean per-class recall). 0: off, every clip alike (the Speech Commands profiles).
    class_balance: float = 0.0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not (self.mixup_alpha >= 0 and math.isfinite(self.mixup_alpha)):
            raise ValueError(f"mixup_alpha must be a finite number >= 0 (0: off), got {self.mixup_alpha}")
        if self.pretrain_epochs < 0:
            raise ValueError(f"pretrain_epochs must be >= 0 (0: no pretraining), got {self.pretrain_epochs}")
        if not (0.0 <= self.class_balance <= 1.0):
            raise ValueError(f"class_balance must be in [0, 1] (0: off, 1: every class the same weight), got "
                             f"{self.class_balance!r}")
        if self.augment_bank < 0:
            raise ValueError(f"augment_bank must be >= 0 (0: no bank), got {self.augment_bank}")
        if self.warmup_epochs < 0 or not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(f"need warmup_epochs >= 0 and final_lr_fraction in [0, 1], got "
                             f"{self.warmup_epochs}, {self.final_lr_fraction}")
        if not 0.0 <= self.label_smoothing < 1.0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"need label_smoothing in [0, 1), weight_decay >= 0 and grad_clip >= 0, got "
                             f"{self.label_smoothing}, {self.weight_decay}, {self.grad_clip}")


def run_key(model: nn.Module, *configs) -> str:
    """Identify a fine-tuning run by its start weights and its config dataclasses.

    Stage 1 and stage 2 store it with their checkpoints so that a checkpoint
    left by a different run (other start weights, schedule or quantizer) is
    discarded instead of resumed.
    """
    import hashlib

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([dataclasses.asdict(c) for c in configs], sort_keys=True).encode())
    return h.hexdigest()


def class_weights(labels, power: float) -> np.ndarray:
    """Per-class weights ``n_c ** -power`` for integer ``labels`` (``n_c``: the clips of class c), scaled so that
    the mean weight over the clips is 1; a class with no clip gets 0. ``power`` 0: all 1; 1: every class present
    carries the same total weight. Index ``labels`` with the result for per-clip weights."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"labels: need a non-empty 1-D array of class indices >= 0, got shape {labels.shape}, "
                         f"dtype {labels.dtype}")
    if not (0.0 <= power <= 1.0):
        raise ValueError(f"power must be in [0, 1], got {power!r}")
    counts = np.bincount(labels).astype(np.float64)
    w = np.zeros_like(counts)
    w[counts > 0] = counts[counts > 0] ** -float(power)
    return w * (labels.size / float(w[labels].sum()))


def set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(epoch_float: float, cfg: TrainConfig) -> float:
    """Learning rate at a fractional epoch: linear warm-up then cosine decay."""
    if epoch_float < cfg.warmup_epochs:
        return cfg.lr * (epoch_float + 1e-3) / cfg.warmup_epochs
    span = max(1e-9, cfg.epochs - cfg.warmup_epochs)
    t = min(1.0, (epoch_float - cfg.warmup_epochs) / span)
    lo = cfg.lr * cfg.final_lr_fraction
    return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * t))


def normalization_stats(train_feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel-bin mean and std over all training frames."""
    flat = train_feats.reshape(-1, train_feats.shape[-1]).double()
    return flat.mean(0).float().numpy(), flat.std(0).float().numpy()


def evaluate_logits(model: nn.Module, windows: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(windows[i:i + batch]) for i in range(0, len(windows), batch)])


@dataclass
class History:
    epochs: list = field(default_factory=list)  # one dict per epoch

    def best(self):
        return max(self.epochs, key=lambda e: e["val_acc"]) if self.epochs else None


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _remove_stale_temp_files(folder: Path) -> None:
    """Delete temp files a killed run left behind (``.last.pt.*.tmp``, ...); nothing ever reads them."""
    if folder.is_dir():
        for name in ("last.pt", "history.json"):
            for tmp in folder.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def deterministic_algorithms():
    """Deterministic torch kernels (warn where an op has none) for the block; the old setting after."""
    was, was_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    was_bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)
        torch.backends.cudnn.benchmark = was_bench


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch; a last batch of a single clip is dropped (batchnorm needs two)."""
    steps = max(1, math.ceil(n / batch_size))
    return steps - 1 if steps > 1 and n % batch_size == 1 else steps


_BANK_CACHE: dict = {}  # key -> bank tensor; holds the latest bank only (stage 1/2 runs reuse the float run's)
BANK_FORMAT = 1  # in the on-disk bank's name: raise it when the way a bank is built changes
BANK_FOLDER = "augmentation_banks"  # beside the checkpoint folders (see fit's ckpt_dir)


def augmentation_bank(train_audio: torch.Tensor, noise, feat_cfg: FeatureConfig, cfg: TrainConfig,
                      data_key: str, batch: int = 256, log: Callable[[str], None] | None = None,
                      cache_dir=None, save: bool = True) -> torch.Tensor:
    """``[K, N, frames, n_mels]`` log-mel features of K augmented versions of every training clip.

    Version ``v`` of the whole set is :func:`~kwslib.data.augment.augment_audio` with a
    generator seeded by ``(cfg.seed, v)`` (batches of ``batch`` clips in order), so the bank
    depends only on the data, the augmentation and feature settings, the seed and K. It is kept
    in memory for the next run with the same key (the quantization-aware stages fine-tune on the
    float run's data with the same settings, so they reuse its bank). ``log``: a line per version built,
    with the time it took and what remains (building it is minutes of silence otherwise).

    ``cache_dir``: also keep it on disk there (``bank-<hash of the key>.npy``, written atomically when
    ``save``), so the stage-1 and stage-2 notebooks, separate processes, load the float run's bank instead
    of building it again (the same values: the file is the bank itself). A damaged file is rebuilt.
    """
    key = (data_key, repr(cfg.augment), repr(feat_cfg), cfg.seed, cfg.augment_bank, batch)
    if key in _BANK_CACHE:
        return _BANK_CACHE[key]
    _BANK_CACHE.clear()
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(repr((BANK_FORMAT,) + key).encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"bank-{digest}.npy"
        if path.is_file():
            try:
                bank = torch.from_numpy(np.load(path, allow_pickle=False))
                expected = (cfg.augment_bank, len(train_audio), num_frames(train_audio.shape[1], feat_cfg),
                            feat_cfg.n_mels)
                if tuple(bank.shape) == expected and bank.dtype == torch.float32:
                    if log:
                        log(f"augmentation bank: {cfg.augment_bank} versions of {len(train_audio)} clips read from {path}")
                    _BANK_CACHE[key] = bank
                    return bank
            except (OSError, ValueError):
                pass  # damaged or half-read: build it again below
    n = len(train_audio)
    frames = num_frames(train_audio.shape[1], feat_cfg)
    bank = torch.empty((cfg.augment_bank, n, frames, feat_cfg.n_mels), dtype=torch.float32)
    t0 = time.time()
    for v in range(cfg.augment_bank):
        g = torch.Generator().manual_seed(cfg.seed * 100003 + 50_000_017 + v)
        for i in range(0, n, batch):
            audio = augment_audio(train_audio[i:i + batch], noise, cfg.augment, g)
            bank[v, i:i + batch] = logmel_torch(audio, feat_cfg, compute_dtype=torch.float32)
        if log:
            took = time.time() - t0
            log(f"augmentation bank: version {v + 1}/{cfg.augment_bank} of {n} clips "
                f"({took:.0f}s; ~{took / (v + 1) * (cfg.augment_bank - v - 1):.0f}s left)")
    if path is not None and save:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, bank.numpy())
    _BANK_CACHE[key] = bank
    return bank


def _batch_windows(train_audio, idx, rows, noise, feat_cfg: FeatureConfig, cfg: TrainConfig, context: int,
                   g: torch.Generator, fill: torch.Tensor, device: torch.device, bank=None) -> torch.Tensor:
    """Augmented training windows of the global batch ``idx``, for its rows ``rows`` only, on ``device``.

    Every random draw is made for the whole global batch from ``g`` (on the
    CPU, in the same order on every rank), so a rank's rows get exactly the
    augmentation they get in a single-process run; the log-mel features (the
    costly part) are computed for ``rows`` only. The SpecAugment masks are
    drawn as the mask of a batch of ones, then applied to the rows' features.
    With a ``bank`` (:func:`augmentation_bank`), each clip's features are one of its banked
    versions, drawn from ``g`` for the whole global batch (no audio work here).
    """
    n_mels = feat_cfg.n_mels
    frames = num_frames(train_audio.shape[1], feat_cfg)  # the same on every rank, even one with no rows
    if bank is not None:
        version = torch.randint(0, bank.shape[0], (len(idx),), generator=g)
        feats = bank[version[rows], idx[rows]].to(device)
    elif len(rows):
        audio = augment_audio(train_audio[idx], noise, cfg.augment, g)[rows]
        feats = logmel_torch(audio.to(device), feat_cfg, compute_dtype=torch.float32)
    else:
        augment_audio(train_audio[idx], noise, cfg.augment, g)  # the same draws from g as the other ranks'
        feats = torch.zeros((0, frames, n_mels), device=device)
    extra = frames - context
    offset = int(torch.randint(0, extra + 1, (1,), generator=g)) if extra > 0 else 0
    keep = spec_augment(torch.ones(len(idx), context, n_mels), cfg.augment, g, fill=0.0)[rows] > 0
    window = feats[:, offset:offset + context]
    return torch.where(keep.to(device), window, fill.to(device).expand_as(window))


def mixup_draw(n: int, alpha: float, g: torch.Generator) -> tuple[float, torch.Tensor]:
    """One mixup draw for a batch of ``n``: ``(lam, pair)``, lam ~ Beta(alpha, alpha) and a permutation.

    Both come from ``g`` (lam through a numpy generator seeded from it), so a resumed epoch replays them.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return lam, torch.randperm(n, generator=g)


def fit(model: nn.Module, train: ClipSet, val: ClipSet, feat_cfg: FeatureConfig, cfg: TrainConfig,
        noise_train: list | None = None, ckpt_dir=None, on_epoch_start: Callable | None = None,
        log: Callable[[str], None] | None = print, progress: bool = True, device=None,
        dist_env: DistEnv | None = None, bank_dir=None) -> History:
    """Train ``model`` (input: raw log-mel windows) on ``train``; select on ``val``.

    ``ckpt_dir``: if given, ``last.pt`` is written atomically after every
    epoch and training resumes from it when it exists and was written by the same run
    (same start weights, TrainConfig, features and training data; otherwise it starts over). On
    return the model holds the best-validation weights (or the last ones when
    ``select_best`` is false), and ``ckpt_dir/history.json`` the log.
    ``on_epoch_start(epoch, model)`` lets QAT schedules switch quantization
    on or freeze batchnorm at given epochs.
    ``bank_dir``: with ``cfg.augment_bank``, the augmentation bank is also kept on disk there and read back
    by later runs on the same data and settings (see :func:`augmentation_bank`).

    ``device``: where the model trains (default: where it is; it is moved
    there and stays there). ``dist_env``: this rank of a ``torchrun`` job
    (:func:`kwslib.train.distributed.init`; its device wins): the model is wrapped
    in DistributedDataParallel with global-batch batchnorm, each rank computes
    its slice of every global batch of ``cfg.batch_size`` clips, and rank 0
    alone logs and writes checkpoints and history, and reads the checkpoint to
    resume and sends it to the others (no shared filesystem needed). All
    ranks end with the same weights.
    """
    from tqdm.auto import tqdm

    if device is None:
        device = next(model.parameters()).device
    env = dist_env if dist_env is not None else DistEnv(device=torch.device(device))
    dev = env.device
    if not env.is_main:
        log, progress = None, False
    torch.set_num_threads(cfg.threads)
    model.to(dev)
    context = model.cfg.context_frames
    train_audio = torch.from_numpy(np.ascontiguousarray(train.audio, np.float32))  # no copy: read only
    train_labels = torch.from_numpy(np.array(train.labels, np.int64))
    val_windows = center_window(clip_features(val.audio, feat_cfg), context).to(dev)
    val_labels = torch.from_numpy(np.array(val.labels, np.int64)).to(dev)
    noise = noise_tensor(noise_train or [])
    fill = model.norm_mean.detach().clone()

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.class_balance > 0:  # each clip's loss times its class weight (see TrainConfig.class_balance)
        clip_w = torch.from_numpy(class_weights(train.labels, cfg.class_balance)).float().to(dev)
        val_w = torch.from_numpy(class_weights(val.labels, cfg.class_balance)).float().to(dev)[val_labels]
        _ce = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction="none")

        def sum_loss_fn(logits, labels):
            return (_ce(logits, labels) * clip_w[labels]).sum()

        def loss_fn(logits, labels):
            return sum_loss_fn(logits, labels) / max(1, len(labels))
    else:
        val_w = None
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        sum_loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction="sum")
    history, start_epoch, best_state = History(), 0, None
    # A checkpoint is resumed only by the same run: same start weights (seed, architecture, input
    # normalisation), schedule, features and training data (labels and a strided sample of the audio).
    data_fp = hashlib.sha256(np.asarray(train.labels, np.int64).tobytes()
                             + np.ascontiguousarray(np.asarray(train.audio)[:, ::61]).tobytes()
                             + repr(np.asarray(train.audio).shape).encode()).hexdigest()
    cfg_key = run_key(model, cfg, feat_cfg) + data_fp

    ckpt = Path(ckpt_dir) / "last.pt" if ckpt_dir else None
    state = None
    if ckpt is not None and env.is_main:  # rank 0 reads the checkpoint; the others get it from rank 0
        _remove_stale_temp_files(ckpt.parent)
        if ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if ckpt is not None:
        state = broadcast_object(state, env)
    if state is not None:
        if state.get("version") == CHECKPOINT_VERSION and state.get("cfg_key") == cfg_key:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            history = History(state["history"])
            best_state = state["best_state"]
            start_epoch = state["epoch"] + 1
            if log:
                log(f"resumed from {ckpt} after epoch {state['epoch']}")
        elif log:
            log(f"{ckpt} was written by another run (other start weights, config, features or data): starting over")

    if cfg.mixup_alpha > 0 and env.distributed:
        raise ValueError("train.mixup_alpha > 0 needs a single process (mixup pairs clips across the global batch)")
    net = wrap_ddp(model, env) if env.distributed else model
    n = len(train)
    steps = steps_per_epoch(n, cfg.batch_size)
    bank = (augmentation_bank(train_audio, noise, feat_cfg, cfg, data_fp, log=log, cache_dir=bank_dir,
                              save=env.is_main) if cfg.augment_bank else None)
    with deterministic_algorithms():
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.time()
            set_seed(cfg.seed * 100003 + epoch)
            if env.distributed:  # dropout masks differ between ranks; the generator g below does not
                torch.manual_seed(cfg.seed * 100003 + epoch + 7919 * env.rank)
            g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            if on_epoch_start is not None:
                on_epoch_start(epoch, model)
            net.train()
            perm = torch.randperm(n, generator=g)
            tot_loss, tot_correct, seen = 0.0, 0, 0
            it = range(steps)
            if progress:
                it = tqdm(it, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=1.0)
            for step in it:
                idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                rows = rank_slice(torch.arange(len(idx)), env.rank, env.world_size)
                for group in opt.param_groups:
                    group["lr"] = lr_at(epoch + step / steps, cfg)
                windows = _batch_windows(train_audio, idx, rows, noise, feat_cfg, cfg, context, g, fill, dev, bank)
                labels = train_labels[idx][rows].to(dev)
                if cfg.mixup_alpha > 0:
                    lam, pair = mixup_draw(len(idx), cfg.mixup_alpha, g)
                    windows = lam * windows + (1.0 - lam) * windows[pair]
                logits = net(windows)
                if cfg.mixup_alpha > 0:
                    loss = lam * loss_fn(logits, labels) + (1.0 - lam) * loss_fn(logits, labels[pair])
                    tot_loss += float(loss.detach()) * len(idx)
                elif env.distributed:
                    loss_sum = sum_loss_fn(logits, labels)
                    loss = loss_sum * local_loss_scale(len(idx), env)
                    tot_loss += float(loss_sum.detach())
                else:
                    loss = loss_fn(logits, labels)
                    tot_loss += float(loss.detach()) * len(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                tot_correct += int((logits.argmax(1) == labels).sum())
                seen += len(idx)
            tot_loss, tot_correct = all_reduce_sum([tot_loss, float(tot_correct)], env)
            val_logits = evaluate_logits(model, val_windows)
            val_hit = (val_logits.argmax(1) == val_labels).float()
            val_acc = float(val_hit.mean())
            rec = {"epoch": epoch + 1, "train_loss": tot_loss / seen, "train_acc": tot_correct / seen,
                   "val_loss": float(nn.functional.cross_entropy(val_logits, val_labels,
                                                               label_smoothing=cfg.label_smoothing)),
                   "val_acc": val_acc,
                   "lr": lr_at(epoch + 1, cfg), "seconds": time.time() - t0}
            if val_w is not None:  # the epoch is chosen by the class-weighted validation accuracy
                rec["val_acc_weighted"] = float((val_hit * val_w).sum() / val_w.sum())
            history.epochs.append(rec)
            sel = "val_acc_weighted" if val_w is not None else "val_acc"
            if best_state is None or rec[sel] >= max(e[sel] for e in history.epochs):
                best_state = copy.deepcopy(model.state_dict())
            if log:
                ran = history.epochs[-(epoch + 1 - start_epoch):]  # the epochs of this call (not resumed ones)
                left = sum(e["seconds"] for e in ran) / len(ran) * (cfg.epochs - epoch - 1)
                log(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {rec['train_loss']:.3f}  train {rec['train_acc']:.3f}  "
                    f"val {val_acc:.3f}  ({rec['seconds']:.1f}s; ~{left:.0f}s left)")
            if ckpt is not None and env.is_main:
                _save_checkpoint(ckpt, {"version": CHECKPOINT_VERSION, "cfg_key": cfg_key, "epoch": epoch,
                                        "model": model.state_dict(), "opt": opt.state_dict(),
                                        "history": history.epochs, "best_state": best_state})
    if cfg.select_best and best_state is not None:
        model.load_state_dict(best_state)
    if ckpt_dir and env.is_main:
        atomic_write_json(Path(ckpt_dir) / "history.json", history.epochs)
    return history
