"""Training loop: learns, is deterministic, resumes to the same weights after a kill."""
import numpy as np
import pytest
import torch

from kwslib.data.augment import AugmentConfig
from kwslib.data.base import CLASS_INDEX, ClipSet
from kwslib.frontend.features import FeatureConfig
from kwslib.model import ModelConfig, build_model
from kwslib.frontend.features import clip_features
from kwslib.train.loop import TrainConfig, fit, lr_at, normalization_stats

TONES = {"yes": 400.0, "no": 1200.0, "up": 3000.0}


def tone_clips(n_per_class, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    audio, labels, spk = [], [], []
    for word, f in TONES.items():
        for i in range(n_per_class):
            amp = rng.uniform(0.05, 0.5)
            x = amp * np.sin(2 * np.pi * f * rng.uniform(0.97, 1.03) * t) + 0.01 * rng.standard_normal(16000)
            audio.append(x.astype(np.float32))
            labels.append(CLASS_INDEX[word])
            spk.append(f"s{i}")
    return ClipSet(np.stack(audio), labels, spk, ["tone"] * len(labels))


SMALL = ModelConfig(context_frames=96, decimate=8, hidden=[16], dropout=0.0)
FEAT = FeatureConfig()
AUG = AugmentConfig(time_masks=1, freq_masks=1, noise_prob=0.5)


def small_cfg(**kw):
    base = dict(epochs=4, batch_size=16, lr=1e-2, warmup_epochs=1, threads=1, augment=AUG, select_best=False)
    base.update(kw)
    return TrainConfig(**base)


def train_once(train, val, cfg, ckpt_dir=None, on_epoch_start=None, bank_dir=None):
    torch.manual_seed(0)
    m = build_model(SMALL)
    mean, std = normalization_stats(clip_features(train.audio, FEAT))
    m.set_normalization(mean, std)
    h = fit(m, train, val, FEAT, cfg, noise_train=[np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.1],
            ckpt_dir=ckpt_dir, on_epoch_start=on_epoch_start, log=None, progress=False, bank_dir=bank_dir)
    return m, h


class Killed(Exception):
    pass


def kill_at_2(epoch, model):
    """An on_epoch_start hook that kills the run as epoch 3 starts (epochs 1 and 2 are checkpointed)."""
    if epoch == 2:
        raise Killed()


@pytest.fixture(scope="module")
def data():
    return tone_clips(40, 0), tone_clips(4, 1)


def test_fit_learns_tones(data, tmp_path):
    train, val = data
    m, h = train_once(train, val, small_cfg(), ckpt_dir=tmp_path)
    assert h.epochs[-1]["val_acc"] >= 0.9  # chance is 1/3
    assert h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]
    assert (tmp_path / "last.pt").exists() and (tmp_path / "history.json").exists()


def test_fit_is_deterministic(data):
    train, val = data
    a, _ = train_once(train, val, small_cfg(epochs=2))
    b, _ = train_once(train, val, small_cfg(epochs=2))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_resume_after_kill_gives_same_weights(data, tmp_path):
    train, val = data
    full, _ = train_once(train, val, small_cfg())

    with pytest.raises(Killed):
        train_once(train, val, small_cfg(), ckpt_dir=tmp_path, on_epoch_start=kill_at_2)
    resumed, h = train_once(train, val, small_cfg(), ckpt_dir=tmp_path)
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3, 4]
    for (k, va), vb in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(va, vb), k


def test_augmentation_bank_versions_and_reuse(data):
    from kwslib.train import loop as tr
    from kwslib.data.augment import augment_audio, noise_tensor

    train, _ = data
    audio = torch.from_numpy(train.audio[:20])
    noise = noise_tensor([np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.1])
    cfg = small_cfg(augment_bank=3)
    tr._BANK_CACHE.clear()
    bank = tr.augmentation_bank(audio, noise, FEAT, cfg, "k", batch=8)
    assert bank.shape == (3, 20, clip_features(train.audio[:1], FEAT).shape[1], FEAT.n_mels)
    # version v is augment_audio with its own seeded generator, batch by batch, then the log-mel features
    g = torch.Generator().manual_seed(cfg.seed * 100003 + 50_000_017 + 1)
    ref = torch.cat([clip_features(augment_audio(audio[i:i + 8], noise, cfg.augment, g).numpy(), FEAT)
                     for i in range(0, 20, 8)])
    torch.testing.assert_close(bank[1], ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(bank[0], bank[1])  # the versions differ
    assert tr.augmentation_bank(audio, noise, FEAT, cfg, "k", batch=8) is bank  # kept for the next run with the same key
    lines = []
    assert tr.augmentation_bank(audio, noise, FEAT, small_cfg(augment_bank=3, seed=1), "k", log=lines.append) is not bank
    assert [l.split(" (")[0] for l in lines] == [f"augmentation bank: version {v}/3 of 20 clips" for v in (1, 2, 3)]
    assert lines[-1].endswith("~0s left)")  # the last version: nothing remains
    with pytest.raises(ValueError, match="augment_bank"):
        small_cfg(augment_bank=-1)


def test_augmentation_bank_on_disk_is_the_same_bank(data, tmp_path):
    """A second process (emptied memory cache) reads the float run's bank from disk: identical values, and a
    training run with it ends with identical weights; a damaged file is rebuilt; another key, another file."""
    from kwslib.train import loop as tr
    from kwslib.data.augment import noise_tensor

    train, val = data
    audio = torch.from_numpy(train.audio[:20])
    noise = noise_tensor([np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.1])
    cfg = small_cfg(augment_bank=2)
    tr._BANK_CACHE.clear()
    built = tr.augmentation_bank(audio, noise, FEAT, cfg, "k", batch=8, cache_dir=tmp_path).clone()
    files = sorted(tmp_path.glob("bank-*.npy"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp*"))
    tr._BANK_CACHE.clear()
    lines = []
    read = tr.augmentation_bank(audio, noise, FEAT, cfg, "k", batch=8, cache_dir=tmp_path, log=lines.append)
    assert torch.equal(read, built) and lines and "read from" in lines[0]
    tr._BANK_CACHE.clear()
    tr.augmentation_bank(audio, noise, FEAT, small_cfg(augment_bank=2, seed=1), "k", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("bank-*.npy"))) == 2  # another seed: another bank, the first one kept
    files[0].write_bytes(b"not a numpy file")
    tr._BANK_CACHE.clear()
    lines = []
    again = tr.augmentation_bank(audio, noise, FEAT, cfg, "k", batch=8, cache_dir=tmp_path, log=lines.append)
    assert torch.equal(again, built) and "version 1/2" in lines[0]  # rebuilt, not read
    tr._BANK_CACHE.clear()
    tr.augmentation_bank(audio, noise, FEAT, cfg, "k", cache_dir=tmp_path / "ro", save=False)
    assert not (tmp_path / "ro").exists()  # save=False (a rank other than 0) writes nothing
    # fit with a bank folder: the second run (memory cache emptied) reads it and trains to the same weights
    tr._BANK_CACHE.clear()
    m1, _ = train_once(train, val, cfg, bank_dir=tmp_path / "banks")
    assert len(list((tmp_path / "banks").glob("bank-*.npy"))) == 1
    tr._BANK_CACHE.clear()
    m2, _ = train_once(train, val, cfg, bank_dir=tmp_path / "banks")
    for (k, va), vb in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(va, vb), k


def test_fit_with_bank_learns_deterministic_and_resumes(data, tmp_path):
    train, val = data
    cfg = small_cfg(augment_bank=2)
    m, h = train_once(train, val, cfg)
    assert h.epochs[-1]["val_acc"] >= 0.9 and h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]
    plain, _ = train_once(train, val, small_cfg())
    assert not torch.equal(m.blocks[0].linear.weight, plain.blocks[0].linear.weight)  # the bank is used

    with pytest.raises(Killed):
        train_once(train, val, cfg, ckpt_dir=tmp_path, on_epoch_start=kill_at_2)
    resumed, _ = train_once(train, val, cfg, ckpt_dir=tmp_path)
    for (k, va), vb in zip(m.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(va, vb), k


def test_lr_schedule_warmup_and_cosine():
    cfg = TrainConfig(epochs=10, lr=1.0, warmup_epochs=2, final_lr_fraction=0.1)
    assert lr_at(1.0, cfg) == pytest.approx(0.5, rel=1e-2)
    assert lr_at(2.0, cfg) == pytest.approx(1.0)
    assert lr_at(6.0, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(10.0, cfg) == pytest.approx(0.1)


def test_mixup_draw_is_seeded_and_in_range():
    from kwslib.train.loop import mixup_draw

    lam, pair = mixup_draw(10, 0.4, torch.Generator().manual_seed(3))
    lam2, pair2 = mixup_draw(10, 0.4, torch.Generator().manual_seed(3))
    assert lam == lam2 and torch.equal(pair, pair2)  # replayed by a resumed epoch
    assert 0.0 <= lam <= 1.0 and sorted(pair.tolist()) == list(range(10))
    # Beta(a, a) has mean 1/2 and variance 1 / (4 (2a + 1)): checked on many draws
    g = torch.Generator().manual_seed(0)
    lams = np.array([mixup_draw(4, 0.4, g)[0] for _ in range(4000)])
    assert abs(lams.mean() - 0.5) < 0.02 and abs(lams.var() - 1 / (4 * 1.8)) < 0.01


def test_fit_with_mixup_mixes_learns_and_resumes(data, tmp_path, monkeypatch):
    from kwslib.train import loop as tr

    train, val = data
    cfg = small_cfg(mixup_alpha=0.4)
    m, h = train_once(train, val, cfg)
    assert h.epochs[-1]["val_acc"] >= 0.9  # the tones are still learnt under mixup
    plain, _ = train_once(train, val, small_cfg())
    assert not torch.equal(m.blocks[0].linear.weight, plain.blocks[0].linear.weight)  # mixup changed training
    with pytest.raises(Killed):
        train_once(train, val, cfg, ckpt_dir=tmp_path, on_epoch_start=kill_at_2)
    resumed, _ = train_once(train, val, cfg, ckpt_dir=tmp_path)
    for (k, va), vb in zip(m.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(va, vb), k
    # lam = 1 for every batch (the identity mix) gives exactly the run without mixup
    monkeypatch.setattr(tr, "mixup_draw", lambda n, a, g: (1.0, torch.arange(n)))
    same, _ = train_once(train, val, cfg)
    for (k, va), vb in zip(plain.state_dict().items(), same.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(ValueError, match="mixup_alpha"):
        small_cfg(mixup_alpha=-0.1)
    with pytest.raises(ValueError, match="pretrain_epochs"):
        small_cfg(pretrain_epochs=-1)


def test_class_weights_hand_computed_and_bad_input():
    from kwslib.train.loop import class_weights

    labels = np.array([2, 2, 2, 3])  # 3 clips of class 2, 1 of class 3; classes 0 and 1 absent
    np.testing.assert_allclose(class_weights(labels, 0.0), [0, 0, 1, 1])
    w = class_weights(labels, 1.0)  # 1/3 and 1, scaled to a mean of 1 over the 4 clips: x 4 / 2
    np.testing.assert_allclose(w, [0, 0, 2 / 3, 2])
    assert w[labels].mean() == pytest.approx(1.0) and w[2] * 3 == pytest.approx(w[3] * 1)  # equal class totals
    h = class_weights(labels, 0.5)
    assert h[3] / h[2] == pytest.approx(np.sqrt(3)) and h[labels].mean() == pytest.approx(1.0)
    for bad, match in ((np.array([]), "non-empty"), (np.array([0.5, 1.0]), "class indices"),
                       (np.array([-1, 2]), "class indices"), (np.zeros((2, 2), int), "1-D")):
        with pytest.raises(ValueError, match=match):
            class_weights(bad, 1.0)
    with pytest.raises(ValueError, match="power"):
        class_weights(labels, 1.5)
    with pytest.raises(ValueError, match="class_balance"):
        TrainConfig(class_balance=-0.1)


def test_class_balance_moves_the_learned_prior_to_equal_classes():
    """Clips that carry no information (noise), 40 `yes` and 10 `no`: a model can only learn the prior. Unweighted it
    says `yes` rather than `no` with p ~ 0.8 on new noise; with every class weighted to the same total (class_balance 1)
    with p ~ 0.5.
    The class-weighted validation accuracy is recorded and chooses the epoch only when the balance is on."""
    from kwslib.frontend.streaming import center_window

    def noise_set(n_yes, n_no, seed):
        r = np.random.default_rng(seed)
        audio = (0.1 * r.standard_normal((n_yes + n_no, 16000))).astype(np.float32)
        labels = [CLASS_INDEX["yes"]] * n_yes + [CLASS_INDEX["no"]] * n_no
        return ClipSet(audio, labels, [f"s{i}" for i in range(len(labels))], ["noise"] * len(labels))

    train, val = noise_set(40, 10, 0), noise_set(10, 10, 1)
    p_yes = {}
    for balance in (0.0, 1.0):
        cfg = small_cfg(epochs=30, lr=1e-2, label_smoothing=0.0, class_balance=balance, weight_decay=0.0,
                        augment=AugmentConfig(time_masks=0, freq_masks=0, noise_prob=0.0))
        m, h = train_once(train, val, cfg)
        with torch.no_grad():
            windows = center_window(clip_features(val.audio, FEAT), SMALL.context_frames)
            prob = torch.softmax(m.eval()(windows), 1)
        # of the two classes seen in training (the others' share falls towards 0 as it trains)
        p_yes[balance] = float((prob[:, CLASS_INDEX["yes"]] / (prob[:, CLASS_INDEX["yes"]] + prob[:, CLASS_INDEX["no"]])).mean())
        assert ("val_acc_weighted" in h.epochs[-1]) == (balance > 0)
    assert p_yes[0.0] == pytest.approx(0.8, abs=0.12)
    assert p_yes[1.0] == pytest.approx(0.5, abs=0.12)
