"""Stage-1 QAT: QuantLinear, model conversion, PTQ, BN freezing, save/load, and QAT beating PTQ at 1 bit."""
import numpy as np
import pytest
import torch
from torch import nn

from kwslib.data.augment import AugmentConfig
from kwslib.data.base import CLASS_INDEX, ClipSet, Corpus
from kwslib.errors import ArtifactError
from kwslib.frontend.features import FeatureConfig
from kwslib.model import KWSNet, ModelConfig, build_model, center_window
from kwslib.quant.qat import (FreezableBatchNorm1d, QuantLinear, Stage1Config, load_qat_model, quant_layers,
                              quantize_model, save_qat_model, set_bn_frozen, train_stage1)
from kwslib.quant.qat import ptq_quantize
from kwslib.quant.weights import WeightQuantConfig, code_max, weight_codes
from kwslib.frontend.features import clip_features
from kwslib.train.loop import TrainConfig, evaluate_logits, fit, normalization_stats

SMALL = ModelConfig(context_frames=96, decimate=8, hidden=[24, 24], dropout=0.0)


def small_net(seed=0):
    torch.manual_seed(seed)
    m = build_model(SMALL)
    for b in m.blocks:  # non-trivial batchnorm state
        b.bn.running_mean.uniform_(-0.2, 0.2)
        b.bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_quant_linear_forward_uses_scaled_codes():
    lin = nn.Linear(20, 5)
    cfg = WeightQuantConfig(4, "tanh")
    q = QuantLinear.from_linear(lin, cfg)
    codes = q.int_codes()
    assert codes.dtype == torch.int8 and codes.shape == (5, 20) and codes.abs().max() <= 7
    w_eff = q.alpha.detach()[:, None] * codes.float() / 7
    torch.testing.assert_close(q.effective_weight().detach(), w_eff)
    x = torch.randn(3, 20)
    torch.testing.assert_close(q(x), x @ w_eff.T + lin.bias.detach())
    q.enabled = False  # float pass-through
    torch.testing.assert_close(q(x), lin(x))


@pytest.mark.parametrize("method,bits", [("tanh", 4), ("linear", 3), ("dorefa", 2), ("tanh", 1)])
def test_alpha_is_least_squares_fit(method, bits):
    lin = nn.Linear(30, 6)
    q = QuantLinear.from_linear(lin, WeightQuantConfig(bits, method))
    w = lin.weight.detach().double().numpy()
    u = weight_codes(lin.weight, q.weight_cfg).double().numpy() / code_max(q.weight_cfg)
    alpha = q.alpha.detach().double().numpy()
    for c in range(6):  # alpha_c minimises ||w_c - a u_c||^2: any other gain does worse
        best = np.sum((w[c] - alpha[c] * u[c]) ** 2)
        for a in alpha[c] * np.array([0.9, 0.99, 1.01, 1.1]):
            assert best <= np.sum((w[c] - a * u[c]) ** 2) + 1e-12


def test_int_codes_refuse_dorefa_8bit_overflow():
    q = QuantLinear.from_linear(nn.Linear(300, 4), WeightQuantConfig(8, "dorefa"))
    with pytest.raises(ValueError, match="int8"):
        q.int_codes()
    assert QuantLinear.from_linear(nn.Linear(300, 4), WeightQuantConfig(7, "dorefa")).int_codes().abs().max() == 127


def test_quantize_model_swaps_dense_layers_only():
    m = small_net()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    q = quantize_model(m, WeightQuantConfig(5, "tanh"))
    assert list(quant_layers(q)) == ["blocks.0.linear", "blocks.1.linear", "out"]
    assert all(isinstance(b.bn, nn.BatchNorm1d) and isinstance(b.bn, FreezableBatchNorm1d) for b in q.blocks)
    for k, v in m.state_dict().items():  # original untouched, float state carried over
        assert torch.equal(v, before[k])
        assert torch.equal(q.state_dict()[k], v), k
    assert not any(isinstance(x, QuantLinear) for x in m.modules())
    x = torch.randn(8, 96, 40)
    q.eval()
    assert (q(x) - m(x)).abs().max() < 0.1 * m(x).abs().max()  # 5-bit PTQ is close to float


def test_ptq_is_quantize_without_training():
    m = small_net()
    q = ptq_quantize(m, WeightQuantConfig(4, "linear", per_channel=False))
    assert not q.training
    for name, layer in quant_layers(q).items():
        assert layer.weight_cfg == WeightQuantConfig(4, "linear", per_channel=False)
        float_w = dict(m.named_modules())[name].weight
        assert torch.equal(layer.weight, float_w)
        assert torch.equal(layer.int_codes().float(), weight_codes(float_w, layer.weight_cfg))


def test_frozen_batchnorm_stays_in_eval_mode():
    q = quantize_model(small_net(), WeightQuantConfig(4))
    set_bn_frozen(q, True)
    q.train()
    bn = q.blocks[0].bn
    assert not bn.training and q.blocks[0].linear.training
    stats = bn.running_mean.clone()
    q(torch.randn(16, 96, 40) * 3 + 1)
    assert torch.equal(bn.running_mean, stats)  # no statistics update while frozen
    set_bn_frozen(q, False)
    q.train()
    assert bn.training
    q(torch.randn(16, 96, 40) * 3 + 1)
    assert not torch.equal(bn.running_mean, stats)


def test_save_load_round_trip(tmp_path):
    m = small_net()
    q = quantize_model(m, WeightQuantConfig(3, "dorefa", per_channel=False))
    q.out.weight_cfg = WeightQuantConfig(8, "tanh")  # per-layer configs are stored, not assumed equal
    q.blocks[1].linear.enabled = False
    with torch.no_grad():
        q.out.alpha.mul_(1.7)
    path = tmp_path / "stage1.pt"
    save_qat_model(path, q, extra={"note": "x"})
    r = load_qat_model(path)
    assert not r.training
    assert {n: l.weight_cfg for n, l in quant_layers(r).items()} == {n: l.weight_cfg for n, l in quant_layers(q).items()}
    assert r.blocks[1].linear.enabled is False
    for (k, a), b in zip(q.state_dict().items(), r.state_dict().values()):
        assert torch.equal(a, b), k
    x = torch.randn(4, 96, 40)
    q.eval()
    assert torch.equal(q(x), r(x))
    assert torch.equal(q.out.int_codes(), r.out.int_codes())


def test_load_rejects_damaged_and_foreign_files(tmp_path):
    q = quantize_model(small_net(), WeightQuantConfig(4))
    path = tmp_path / "m.pt"
    save_qat_model(path, q)
    data = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated.pt"):
        load_qat_model(bad)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_qat_model(tmp_path / "missing.pt")
    state = torch.load(path, weights_only=False)
    for name, change in [("newer.pt", {"version": 99}), ("foreign.pt", {"format": "other"}),
                         ("badcfg.pt", {"layers": {"out": {"bits": 12, "method": "tanh", "per_channel": True}}}),
                         ("nolayers.pt", {"layers": None})]:
        s = dict(state, **change)
        if change.get("layers", 0) is None:
            del s["layers"]
        torch.save(s, tmp_path / name)
        with pytest.raises(ArtifactError, match=name):
            load_qat_model(tmp_path / name)


def test_stage1_config_overrides_train_config():
    base = TrainConfig(epochs=40, lr=3e-3, weight_decay=1e-3, seed=7)
    t = Stage1Config(epochs=5, lr=1e-3, weight_decay=0.0).train_config(base)
    assert (t.epochs, t.lr, t.weight_decay, t.seed, t.label_smoothing) == (5, 1e-3, 0.0, 7, base.label_smoothing)
    assert Stage1Config().train_config(base).weight_decay == base.weight_decay
    with pytest.raises(ValueError):
        Stage1Config(epochs=0)


# ---------------------------------------------------------------------------
# A short stage-1 run on a tiny tone dataset beats post-training quantization at 1 bit.
TONES = {"yes": 400.0, "no": 600.0, "up": 900.0, "down": 1350.0, "left": 2000.0, "right": 3000.0}


def tone_clips(n_per_class, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    audio, labels = [], []
    for word, f in TONES.items():
        for _ in range(n_per_class):
            x = rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * f * rng.uniform(0.97, 1.03) * t)
            audio.append((x + 0.02 * rng.standard_normal(16000)).astype(np.float32))
            labels.append(CLASS_INDEX[word])
    n = len(labels)
    return ClipSet(np.stack(audio), labels, [f"s{i % 5}" for i in range(n)], ["tone"] * n)


def val_metrics(model, windows, labels):
    logits = evaluate_logits(model, windows)
    return float(nn.functional.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())


def test_stage1_beats_ptq_at_one_bit(tmp_path):
    feat = FeatureConfig()
    aug = AugmentConfig(time_masks=0, freq_masks=0, noise_prob=0.0)
    train, val = tone_clips(20, 0), tone_clips(6, 1)
    corpus = Corpus(source="tones", train=train, val=val, test=val)
    torch.manual_seed(0)
    net = build_model(SMALL)
    net.set_normalization(*normalization_stats(clip_features(train.audio, feat)))
    base = TrainConfig(epochs=5, batch_size=16, lr=1e-2, warmup_epochs=1, threads=1, augment=aug, label_smoothing=0.0)
    fit(net, train, val, feat, base, log=None, progress=False)
    windows = center_window(clip_features(val.audio, feat), SMALL.context_frames)
    labels = torch.from_numpy(val.labels).long()
    float_loss, float_acc = val_metrics(net, windows, labels)
    assert float_acc >= 0.9

    wcfg = WeightQuantConfig(1, "tanh")
    ptq_loss, ptq_acc = val_metrics(ptq_quantize(net, wcfg), windows, labels)
    stage = Stage1Config(epochs=6, lr=5e-3, warmup_epochs=0, freeze_bn_epoch=4)
    q, hist = train_stage1(net, corpus, feat, base, stage, wcfg, ckpt_dir=tmp_path, log=None)
    qat_loss, qat_acc = val_metrics(q, windows, labels)
    assert len(hist) == 6 and not q.training
    assert all(set(torch.unique(l.int_codes()).tolist()) == {-1, 1} for l in quant_layers(q).values())
    print("float", float_loss, float_acc, "ptq", ptq_loss, ptq_acc, "qat", qat_loss, qat_acc)
    assert qat_loss < ptq_loss and qat_acc >= ptq_acc
    assert qat_acc >= 0.9
    # the float model is not modified by stage 1
    assert float_loss == val_metrics(net, windows, labels)[0]


def test_summary_keys_and_parity_breakdown():
    from kwslib.quant.qat import lowest_width_at_parity, summary_key

    assert summary_key("tanh", 4) == "stage1_w4" and summary_key("ptq", 5) == "ptq_w5"
    assert summary_key("linear", 1) == "linear_w1" and summary_key("dorefa", 2, per_channel=False) == "dorefa_pt_w2"
    with pytest.raises(ValueError):
        summary_key("log", 4)
    assert lowest_width_at_parity({8: True, 5: True, 4: True, 3: False, 2: True, 1: False}) == 4  # 2 is not contiguous
    assert lowest_width_at_parity({8: False, 4: True}) is None
    assert lowest_width_at_parity({8: True, 1: True}) == 1
    assert lowest_width_at_parity({}) is None


@pytest.mark.parametrize("profile", ["quick", "sc12"])
def test_stage1_params_are_valid(profile):
    """Notebook 2's schedule in each profile builds a Stage1Config (data/model/train come from shared.yaml)."""
    from kwslib.config import PROFILES_DIR, load_yaml

    p2 = PROFILES_DIR / profile / "02_stage1.yaml"
    if not p2.exists():
        pytest.skip(f"params/{profile} lacks 02_stage1.yaml")
    b = load_yaml(p2)
    assert not {"data", "features", "model", "train", "eval"} & set(b), "these belong in shared.yaml"
    Stage1Config(**b["stage1"])


def test_stale_keys_only_touch_stage1_families():
    from kwslib.quant.qat import stale_keys

    models = {"float": {}, "stage1_w4": {}, "stage1_w3": {}, "stage2_w4": {}, "ptq_pt_w2": {}, "linear_w1": {},
              "dorefa_w8": {}, "stage1_pt_w4": {}}
    assert stale_keys(models, ["stage1_w4", "linear_w1"]) == ["dorefa_w8", "ptq_pt_w2", "stage1_pt_w4", "stage1_w3"]
