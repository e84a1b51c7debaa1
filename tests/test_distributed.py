"""Data-parallel training: torchrun on 2 CPU ranks equals one process with the same global batch.

Also: the pieces that make it so (each rank's slice of a global batch gets the
augmentation it gets in one process, global-batch batchnorm), the device and
environment handling, and the parallel cached feature preparation.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from kwslib.train import distributed
from kwslib.data.augment import AugmentConfig, noise_tensor
from kwslib.train.distributed import (
    DistEnv,
    local_loss_scale,
    rank_slice,
    resolve_device,
    use_global_batchnorm,
)
from kwslib.errors import ConfigError
from kwslib.frontend.features import FeatureConfig
from kwslib.model import ModelConfig, build_model
from kwslib.frontend.features import clip_features
from kwslib.train.loop import TrainConfig, _batch_windows

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).with_name("torchrun")

# A tiny float run: 4 training voices x 2 clips x 12 classes = 96 clips, global batch 13 (uneven over 2 ranks:
# 7 + 6 rows, and a last batch of 5 = 3 + 2). Dropout 0: dropout masks are per rank.
TINY = {
    "data": {"source": "synthetic", "synthetic": {"n_voices": 6, "clips_per_class_per_voice": 2, "noise_seconds": 30.0}},
    "features": {},
    "model": {"hidden": [16, 16], "decimate": 8, "dropout": 0.0},
    "train": {"epochs": 3, "batch_size": 13, "threads": 1, "lr": 0.01, "warmup_epochs": 1},
    "eval": {},
}


def _state(out: Path) -> dict:
    return torch.load(out / "models" / "float.pt", weights_only=False)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The tiny float run in one process (in this process); it also builds the cached corpus and features."""
    from kwslib.study.train_cli import main

    d = tmp_path_factory.mktemp("ddp")
    params = d / "01_float.yaml"
    params.write_text(yaml.safe_dump(dict(TINY, cache_dir=str(d / "cache"))))
    assert main(["--params", str(params), "--out", str(d / "single"), "--device", "cpu"]) == 0
    return d, params


def torchrun(params: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    res = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "kwslib.train",
                          "--params", str(params), "--out", str(out), "--device", "auto"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_torchrun_resumes_from_rank_0_checkpoint(single_run):
    """A finished single-process run's checkpoint, resumed by 2 ranks: rank 0 reads it and sends it to rank 1."""
    d, params = single_run
    shutil.copytree(d / "single" / "checkpoints", d / "resumed" / "checkpoints")
    res = torchrun(params, d / "resumed", d)
    assert res.stdout.count("resumed from") == 1 and "after epoch 2" in res.stdout
    assert not any(line.startswith("epoch") for line in res.stdout.splitlines())  # nothing left to train
    single, resumed = _state(d / "single"), _state(d / "resumed")
    for k, v in single["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k


def test_torchrun_two_ranks_match_one_process(single_run):
    d, params = single_run
    res = torchrun(params, d / "ddp", d)
    # rank 0 alone logs: one header, one line per epoch
    assert res.stdout.count("2 rank(s) on cpu (DistributedDataParallel, gloo)") == 1, res.stdout
    assert sum(line.startswith("epoch") for line in res.stdout.splitlines()) == 3
    ddp_dir = d / "ddp"
    assert sorted(p.name for p in (ddp_dir / "checkpoints" / "float").iterdir()) == ["history.json", "last.pt"]
    assert not [p for p in ddp_dir.rglob(".*") if p.name.endswith(".tmp")]

    single, ddp = _state(d / "single"), _state(ddp_dir)
    assert ddp["extra"]["world_size"] == 2
    h1, h2 = single["extra"]["history"], ddp["extra"]["history"]
    assert len(h2) == 3 and h2[-1]["train_loss"] < h2[0]["train_loss"]  # it trains
    for a, b in zip(h1, h2):
        # training-mode losses and accuracies are those of the global batches
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["train_acc"] == a["train_acc"] and b["lr"] == a["lr"]
    for k, a in single["state_dict"].items():
        b = ddp["state_dict"][k]
        if k.endswith("linear.bias") or k.endswith("running_mean"):
            # A dense bias right before batchnorm has a gradient of exactly 0 in theory; in floats it is
            # rounding noise, which Adam normalises into steps of ~lr/10 whose sign depends on the
            # summation order (one process with 1 or 2 threads differs the same way). Batchnorm removes
            # the bias in training, and its running mean follows it: compare their size, not their value.
            assert (a - b).abs().max() < 0.1, k
        else:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)


def test_each_rank_gets_its_slice_of_the_single_process_batch():
    """Windows of rank r = rows r::W of the single-process windows, augmentation included (W = 1, 2, 3)."""
    rng = np.random.default_rng(0)
    audio = torch.from_numpy((0.1 * rng.standard_normal((11, 16000))).astype(np.float32))
    noise = noise_tensor([(0.05 * rng.standard_normal(40000)).astype(np.float32)])
    feat = FeatureConfig()
    cfg = TrainConfig(augment=AugmentConfig(time_masks=2, freq_masks=2, noise_prob=0.5))
    fill = torch.linspace(-5, 5, 40)
    idx = torch.tensor([7, 3, 9, 0, 10, 5, 1])

    def windows(rows):
        g = torch.Generator().manual_seed(42)
        w = _batch_windows(audio, idx, rows, noise, feat, cfg, 96, g, fill, torch.device("cpu"))
        return w, torch.rand(1, generator=g)  # the generator ends in the same state on every rank

    full, g_full = windows(torch.arange(len(idx)))
    for world in (1, 2, 3, 8):  # 8 ranks: one gets no rows
        for rank in range(world):
            rows = rank_slice(torch.arange(len(idx)), rank, world)
            part, g_part = windows(rows)
            assert torch.equal(part, full[rows]) and torch.equal(g_part, g_full)
    assert (full == fill.expand_as(full)).any()  # masks were drawn


def test_rank_slices_partition_the_batch_and_loss_scale():
    idx = torch.arange(100, 113)
    for world in (1, 2, 3, 5):
        parts = [rank_slice(idx, r, world) for r in range(world)]
        assert sorted(torch.cat(parts).tolist()) == idx.tolist()
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # sum over ranks of (W / B) * local loss sums, averaged by DDP (/ W) = the mean over the global batch
    assert local_loss_scale(13, DistEnv(world_size=2)) == pytest.approx(2 / 13)


def test_global_batchnorm_outside_a_process_group_is_plain_batchnorm():
    torch.manual_seed(0)
    m = build_model(ModelConfig(context_frames=96, decimate=8, hidden=[16, 8], dropout=0.0))
    ref = build_model(ModelConfig(context_frames=96, decimate=8, hidden=[16, 8], dropout=0.0))
    ref.load_state_dict(m.state_dict())
    keys = list(m.state_dict())
    use_global_batchnorm(m)
    assert type(m.blocks[0].bn).__name__ == "GlobalBatchNorm1d"
    assert isinstance(m.blocks[0].bn, torch.nn.BatchNorm1d) and list(m.state_dict()) == keys
    x = torch.randn(9, 96, 40)
    for mode in (True, False):
        m.train(mode)
        ref.train(mode)
        assert torch.equal(m(x), ref(x))
    assert not distributed.active()


def test_device_and_environment():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    with pytest.raises(ConfigError, match="expected auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU is available"):
            resolve_device("cuda")
    env = distributed.init("cpu")  # not started by torchrun: a single process, nothing initialised
    assert (env.rank, env.world_size, env.is_main, env.distributed) == (0, 1, True, False)


@pytest.mark.parametrize("rank,world,match", [("x", "2", "RANK='x' is not an integer"), ("2", "2", "bad torchrun"),
                                              ("0", "0", "bad torchrun")])
def test_bad_torchrun_environment(monkeypatch, rank, world, match):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(ConfigError, match=match):
        distributed.init("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_gpu_training_matches_cpu(tmp_path):
    """--device auto trains on the GPU when there is one; the result matches the CPU run within float tolerance."""
    params = tmp_path / "01_float.yaml"
    params.write_text(yaml.safe_dump(dict(TINY, cache_dir=str(tmp_path / "cache"))))
    from kwslib.study.train_cli import main

    assert main(["--params", str(params), "--out", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    assert main(["--params", str(params), "--out", str(tmp_path / "gpu"), "--device", "auto"]) == 0
    cpu, gpu = _state(tmp_path / "cpu"), _state(tmp_path / "gpu")
    assert gpu["extra"]["device"].startswith("cuda")
    for a, b in zip(cpu["extra"]["history"], gpu["extra"]["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)


# --- feature preparation -----------------------------------------------------------------------------

def test_parallel_features_equal_clip_features_and_are_cached(tmp_path, monkeypatch):
    from kwslib.data import prepare

    rng = np.random.default_rng(3)
    audio = (0.2 * rng.standard_normal((40, 16000))).astype(np.float32)
    feat = FeatureConfig()
    monkeypatch.setattr(prepare, "MAP_BATCH", 8)  # 5 map batches over 2 worker processes
    got = prepare.split_features(audio, feat, tmp_path, name="train", num_proc=2)
    ref = clip_features(audio, feat).numpy()
    assert got.dtype == np.float32 and np.array_equal(got, ref)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("train-") and files[0].suffix == ".npy"

    def must_not_run(*a, **k):
        raise AssertionError("recomputed: the cache was not used")

    monkeypatch.setattr(prepare, "compute_features", must_not_run)
    assert np.array_equal(prepare.split_features(audio, feat, tmp_path, name="train", num_proc=2), ref)
    # another feature config or other audio: another cache entry
    monkeypatch.undo()
    other = prepare.split_features(audio[:3], FeatureConfig(n_mels=20, fmax=7000.0), tmp_path, num_proc=1)
    assert other.shape == (3, 98, 20) and len(list(tmp_path.iterdir())) == 2


def test_feature_preparation_rejects_bad_audio_and_leaves_no_cache(tmp_path):
    from kwslib.data import prepare
    from kwslib.errors import AudioError

    audio = np.zeros((3, 16000), np.float32)
    audio[1, 5] = np.nan
    with pytest.raises(AudioError, match="clip 1 contains NaN or infinite samples"):
        prepare.split_features(audio, FeatureConfig(), tmp_path, num_proc=2)
    assert list(tmp_path.iterdir()) == []
