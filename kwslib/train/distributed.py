"""Data-parallel training under ``torchrun``: process group, device, batch slices, global batchnorm.

    torchrun --nproc_per_node=2 -m kwslib.train --params params/quick/01_float.yaml --out DIR

``torchrun`` starts one process per rank and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` (and the rendezvous address) in their environments;
:func:`init` reads them and joins the process group: NCCL when the ranks run
on GPUs, gloo on CPU. Without torchrun (``WORLD_SIZE`` unset or 1) nothing
is initialised and training is the plain single-process loop.

The contract (tested against a single-process run, tests/test_distributed.py):
a run on W ranks with global batch B computes what one process computes with
batch B, up to float rounding:

- every rank draws the same seeded permutation and augmentation parameters
  for the whole global batch, then keeps its slice of the rows
  (:func:`rank_slice`, the rows ``rank::world`` like torch's
  ``DistributedSampler``, but per global batch and without padding, so the
  global batch is exactly the single-process batch);
- batchnorm statistics are those of the global batch (:class:`GlobalBatchNormMixin`);
- each rank's loss is ``W / B * sum(local losses)``, so DDP's gradient
  average is the gradient of the global mean loss, even when the last batch
  of an epoch does not split evenly;
- rank 0 alone writes checkpoints, history and logs.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError


@dataclass
class DistEnv:
    """Where this process stands: its rank among ``world_size`` ranks and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, results and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def resolve_device(spec: str | None, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU (``cuda:<local_rank>``) when there is one, else the CPU.

    ``cpu``, ``cuda`` (this rank's GPU) and ``cuda:N`` are taken as given;
    asking for a GPU on a machine without one is a :class:`ConfigError`.
    """
    spec = "auto" if spec is None else str(spec).strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: no CUDA GPU is available here (torch {torch.__version__}); "
                              "use --device cpu or auto")
        index = local_rank if spec == "cuda" else spec.split(":", 1)[1]
        try:
            index = int(index)
        except ValueError:
            raise ConfigError(f"--device {spec}: expected cuda:<index>") from None
        if not 0 <= index < torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: this machine has {torch.cuda.device_count()} GPU(s)")
        # cuBLAS is deterministic only with a fixed workspace; must be set before its first use
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    raise ConfigError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:<index>")


def init(device: str | None = "auto") -> DistEnv:
    """Join the process group if torchrun started this process; returns this rank's :class:`DistEnv`.

    Backend: NCCL for GPU ranks, gloo for CPU ranks. Idempotent.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier(env: DistEnv) -> None:
    if env.distributed:
        if env.device.type == "cuda":
            dist.barrier(device_ids=[env.device.index])
        else:
            dist.barrier()


@contextlib.contextmanager
def main_first(env: DistEnv):
    """Run the block (e.g. build or read a cache) in three waves: rank 0; the first rank of every other
    node; everyone else. On a shared filesystem only rank 0 builds; with node-local disks one rank per
    node builds, never two ranks into the same folder at once."""
    wave = 0 if env.is_main else 1 if env.local_rank == 0 else 2
    for w in range(wave):
        barrier(env)
    yield
    for w in range(wave, 2):
        barrier(env)


def broadcast_object(obj, env: DistEnv):
    """Rank 0's ``obj`` on every rank (pickled; e.g. a checkpoint only rank 0 can read)."""
    if not env.distributed:
        return obj
    box = [obj if env.is_main else None]
    dist.broadcast_object_list(box, src=0, device=env.device if env.device.type == "cuda" else None)
    return box[0]


def rank_slice(global_idx: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's rows of a global batch: ``global_idx[rank::world_size]`` (may be empty)."""
    return global_idx[rank::world_size]


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    """Sum plain numbers over ranks (float64, for logging totals); identity on one rank."""
    if not env.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return t.tolist()


# --- batchnorm over the global batch ---------------------------------------------------------------

class GlobalBatchNormMixin:
    """Batchnorm whose training statistics are those of the global batch across all ranks.

    The per-channel sum, sum of squares and count of the local rows are
    all-reduced with the differentiable ``torch.distributed.nn.functional.all_reduce``
    (its backward all-reduces the gradients), so the forward and the
    gradients equal single-process batchnorm on the whole batch. Works on
    CPU (gloo), unlike ``torch.nn.SyncBatchNorm``. Outside a process group,
    or in eval mode, it is the parent class unchanged. Running statistics
    follow ``nn.BatchNorm1d``: biased variance to normalise, unbiased variance
    into ``running_var``, ``momentum`` (or a cumulative average when None).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if not (use_batch_stats and active()):
            return super().forward(x)
        if x.dim() != 2:
            raise ValueError(f"{type(self).__name__}: expected [B, C] input, got {tuple(x.shape)}")
        xd = x.double()  # sums of squares over a large batch: keep the cancellation out of float32
        count = torch.full((1,), float(x.shape[0]), dtype=torch.float64, device=x.device)
        stats = _differentiable_all_reduce(torch.cat([xd.sum(0), (xd * xd).sum(0), count]))
        c = x.shape[1]
        n = stats[-1]
        if float(n.detach()) < 2:
            raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel when training, "
                             f"got a global batch of {int(float(n.detach()))}")
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp(min=0.0)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                unbiased = var.detach() * (n / (n - 1))
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        y = (x - mean.to(x.dtype)) * torch.rsqrt(var.to(x.dtype) + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y


def _differentiable_all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks; its backward sums the gradients over ranks (torch.distributed.nn.functional).

    torch 2.13 marks that function deprecated in favour of the functional
    collectives, but it is the documented differentiable all-reduce; the
    FutureWarning is silenced here only.
    """
    import warnings

    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(t)


_GLOBAL_BN_CLASSES: dict[type, type] = {}


def _global_class(cls: type) -> type:
    if issubclass(cls, GlobalBatchNormMixin):
        return cls
    if cls not in _GLOBAL_BN_CLASSES:
        _GLOBAL_BN_CLASSES[cls] = type(f"Global{cls.__name__}", (GlobalBatchNormMixin, cls), {})
    return _GLOBAL_BN_CLASSES[cls]


def use_global_batchnorm(model: nn.Module) -> nn.Module:
    """Switch every ``nn.BatchNorm1d`` (subclasses included) of ``model`` to global-batch statistics.

    In place: each module keeps its parameters, buffers and state-dict keys
    (only its class gains :class:`GlobalBatchNormMixin`), so checkpoints of a
    distributed run and of a single-process run are interchangeable.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.__class__ = _global_class(type(m))
    return model


def wrap_ddp(model: nn.Module, env: DistEnv) -> nn.Module:
    """DistributedDataParallel over ``model`` (already on ``env.device``), global batchnorm swapped in."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    use_global_batchnorm(model)
    ids = [env.device.index] if env.device.type == "cuda" else None
    # buffers (running statistics) come from all-reduced statistics, equal on every rank: no per-step broadcast
    return DDP(model, device_ids=ids, forward_sync_buffers=False)


def local_loss_scale(global_batch: int, env: DistEnv) -> float:
    """Factor on the sum of a rank's per-example losses: DDP's gradient average becomes the global mean."""
    return env.world_size / max(1, global_batch)


__all__ = ["DistEnv", "init", "shutdown", "active", "barrier", "main_first", "broadcast_object", "rank_slice", "all_reduce_sum",
           "resolve_device", "GlobalBatchNormMixin", "use_global_batchnorm", "wrap_ddp", "local_loss_scale"]
