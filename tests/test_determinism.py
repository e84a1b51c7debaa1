"""Same config and seed -> same weights, metrics and artifact bytes; a SIGKILLed run resumes to the same weights.

The whole pipeline runs twice in this process on a tiny tone corpus: float
training, stage-1 tanh QAT, stage-2 QAT, integer model, exported artifact
(byte for byte). The resume tests kill real training subprocesses with
SIGKILL, once in the middle of an epoch and once in the middle of writing a
checkpoint, then resume in this process.
"""
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kwslib.deploy import export
from kwslib.data.augment import AugmentConfig
from kwslib.data.base import CLASS_INDEX, ClipSet, Corpus
from kwslib.frontend.features import FeatureConfig
from kwslib.model import ModelConfig, build_model, center_window
from kwslib.quant import stage2
from kwslib.quant import stage2_int
from kwslib.quant.qat import Stage1Config, train_stage1
from kwslib.quant.weights import WeightQuantConfig
from kwslib.frontend.features import clip_features
from kwslib.train.loop import TrainConfig, fit, normalization_stats

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TONES = {"yes": 400.0, "no": 1200.0, "up": 3000.0, "down": 700.0}
SMALL = ModelConfig(context_frames=96, decimate=8, hidden=[16, 16], dropout=0.1)
FEAT = FeatureConfig()


def tone_corpus(n_per_class: int, seed: int = 0) -> Corpus:
    """Noisy tones, one frequency per keyword: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000

    def clips(n):
        audio, labels = [], []
        for word, f in TONES.items():
            for _ in range(n):
                x = rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * f * rng.uniform(0.97, 1.03) * t)
                audio.append((x + 0.01 * rng.standard_normal(16000)).astype(np.float32))
                labels.append(CLASS_INDEX[word])
        return ClipSet(np.stack(audio), labels, [f"s{i}" for i in range(len(labels))], ["tone"] * len(labels))

    noise = [(0.1 * rng.standard_normal(40000)).astype(np.float32)]
    return Corpus("tones", clips(n_per_class), clips(3), clips(3), noise_train=noise, noise_test=noise)


def train_cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=16, lr=1e-2, warmup_epochs=1, threads=1, select_best=True,
                augment=AugmentConfig(time_masks=1, freq_masks=1, noise_prob=0.5))
    base.update(kw)
    return TrainConfig(**base)


def float_model(corpus, cfg, ckpt_dir=None, on_epoch_start=None):
    torch.manual_seed(cfg.seed)
    m = build_model(SMALL)
    m.set_normalization(*normalization_stats(clip_features(corpus.train.audio, FEAT)))
    h = fit(m, corpus.train, corpus.val, FEAT, cfg, noise_train=corpus.noise_train, ckpt_dir=ckpt_dir,
            on_epoch_start=on_epoch_start, log=None, progress=False)
    return m, h


def pipeline(corpus, bits: int):
    """Float -> stage 1 -> stage 2 -> integer model -> artifact bytes, plus every history and the test logits."""
    cfg = train_cfg()
    fm, fh = float_model(corpus, cfg)
    s1, s1h = train_stage1(fm, corpus, FEAT, cfg, Stage1Config(epochs=1, lr=1e-3, warmup_epochs=0),
                           WeightQuantConfig(bits=bits), log=None)
    net, s2h = stage2.train_stage2(s1, corpus, FEAT, cfg, stage2.Stage2Config(epochs=1, calibration_batches=2),
                                   log=None)
    int_model = stage2_int.to_int_model(net, FEAT)
    blob = export.to_bytes(int_model, extra={"note": "determinism test"})
    test_windows = center_window(clip_features(corpus.test.audio, FEAT), SMALL.context_frames)
    logits = export.from_bytes(blob).model.forward_int(int_model.quantize_input(test_windows.numpy()))
    metrics = [{k: v for k, v in e.items() if k != "seconds"} for e in fh.epochs + s1h + s2h]
    return {"float": fm.state_dict(), "metrics": metrics, "artifact": blob, "logits": logits}


def test_same_seed_same_metrics_and_artifact_bytes():
    corpus = tone_corpus(30)
    a = pipeline(corpus, bits=4)
    b = pipeline(corpus, bits=4)
    for k, v in a["float"].items():
        assert torch.equal(v, b["float"][k]), k
    assert a["metrics"] == b["metrics"] and len(a["metrics"]) == 5
    assert a["artifact"] == b["artifact"]  # byte for byte
    assert np.array_equal(a["logits"], b["logits"])
    assert a["metrics"][2]["val_acc"] > 0.5  # it learned something (chance: 1/4)
    # a different seed gives a different model: the comparison above is not vacuous
    c, _ = float_model(corpus, train_cfg(seed=1))
    assert not torch.equal(c.state_dict()["out.weight"], a["float"]["out.weight"])


def test_fit_runs_deterministic_kernels_and_restores_the_setting():
    torch.use_deterministic_algorithms(False)
    seen = []
    corpus = tone_corpus(4)
    float_model(corpus, train_cfg(epochs=1), on_epoch_start=lambda e, m: seen.append(
        (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)))
    assert seen == [(True, False)]
    assert not torch.are_deterministic_algorithms_enabled()


# --- resume after SIGKILL ---------------------------------------------------------------------------

CHILD = r"""
import sys, time, torch
sys.path.insert(0, {tests!r})
import test_determinism as T
mode, ckpt = sys.argv[1], sys.argv[2]
if mode == "slow-save":  # a checkpoint write that never finishes: half a file, then wait to be killed
    real_save = torch.save
    def save(obj, f, *a, **k):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            with open(f, "wb") as fh:
                fh.write(b"half a checkpoint")
            print("saving", flush=True)
            time.sleep(120)
        return real_save(obj, f, *a, **k)
    torch.save = save
def started(epoch, model):
    print(f"started {{epoch}}", flush=True)
T.float_model(T.tone_corpus(T.N_RESUME), T.train_cfg(**T.RESUME_CFG), ckpt_dir=ckpt, on_epoch_start=started)
print("finished", flush=True)
"""
N_RESUME = 60  # 240 clips: an epoch takes a good fraction of a second on a busy machine
RESUME_CFG = dict(epochs=4, select_best=False)


def run_until(ckpt: Path, mode: str, marker: str, delay: float = 0.0) -> list[str]:
    """Start a training subprocess, SIGKILL it `delay` s after it prints `marker`; returns its lines."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=str(TESTS)), mode, str(ckpt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        deadline = time.time() + 120
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == marker:
                time.sleep(delay)
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert time.time() < deadline, "child too slow"
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == -signal.SIGKILL, (rc, lines, proc.stderr.read()[-2000:])
    return lines


def test_sigkilled_runs_resume_to_the_same_weights(tmp_path):
    corpus = tone_corpus(N_RESUME)
    full, full_h = float_model(corpus, train_cfg(**RESUME_CFG))

    ckpt = tmp_path / "ckpt"
    # 1. killed in the middle of epoch 2 (index 1): the last checkpoint is epoch 1's
    lines = run_until(ckpt, "plain", "started 1", delay=0.05)
    assert lines == ["started 0", "started 1"]
    state = torch.load(ckpt / "last.pt", weights_only=False)
    assert state["epoch"] == 0, "the kill did not land in the middle of epoch 2"
    # 2. resumed in a new process, killed while writing epoch 3's checkpoint: a half temp file is left
    lines = run_until(ckpt, "slow-save", "saving")
    assert lines == ["started 1", "started 2", "saving"]  # resumed after epoch 1
    stale = list(ckpt.glob(".last.pt.*.tmp"))
    assert len(stale) == 1 and stale[0].read_bytes() == b"half a checkpoint"
    assert torch.load(ckpt / "last.pt", weights_only=False)["epoch"] == 1  # the old checkpoint is intact
    # 3. resumed here: never reads the temp file (removed), replays epochs 3-4, same weights bit for bit
    resumed, h = float_model(corpus, train_cfg(**RESUME_CFG), ckpt_dir=ckpt)
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3, 4]
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in h.epochs]
    assert strip == [{k: v for k, v in e.items() if k != "seconds"} for e in full_h.epochs]
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert sorted(p.name for p in ckpt.iterdir()) == ["history.json", "last.pt"]


def test_checkpoint_of_another_config_is_not_resumed(tmp_path):
    corpus = tone_corpus(4)
    float_model(corpus, train_cfg(epochs=1), ckpt_dir=tmp_path)
    other = dataclasses.replace(train_cfg(epochs=1), lr=5e-3)
    _, h = float_model(corpus, other, ckpt_dir=tmp_path)
    assert len(h.epochs) == 1 and h.epochs[0]["epoch"] == 1  # trained from scratch, not "resumed after epoch 0"
    key = torch.load(tmp_path / "last.pt", weights_only=False)["cfg_key"]
    # the same config on other training data (same shapes, labels and seed) is another run too
    cfg2 = train_cfg(epochs=2)
    float_model(corpus, dataclasses.replace(cfg2, epochs=1), ckpt_dir=tmp_path / "b")
    other_data = tone_corpus(4, seed=1)
    _, h = float_model(other_data, cfg2, ckpt_dir=tmp_path / "b")
    assert [e["epoch"] for e in h.epochs] == [1, 2]  # not resumed from the other data's epoch 1
    _, h = float_model(other_data, dataclasses.replace(cfg2, epochs=3), ckpt_dir=tmp_path / "b")
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3] and key != torch.load(tmp_path / "b" / "last.pt",
                                                                           weights_only=False)["cfg_key"]


@pytest.mark.parametrize("n,batch,steps", [(33, 16, 2), (32, 16, 2), (31, 16, 2), (17, 16, 1), (1, 16, 1)])
def test_a_lone_last_clip_is_dropped(n, batch, steps):
    """Batchnorm cannot train on one clip: a last batch of one is dropped instead of crashing."""
    from kwslib.train.loop import steps_per_epoch

    assert steps_per_epoch(n, batch) == steps
