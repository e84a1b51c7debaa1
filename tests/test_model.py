import numpy as np
import pytest
import torch

from kwslib.errors import ArtifactError
from kwslib.model import (KWSNet, ModelConfig, StreamingRunner, build_model, center_window, count_params,
                          load_model, save_model, sliding_windows, torch_posterior_fn)


def test_default_model_has_about_250k_params():
    n = count_params(build_model(ModelConfig()))
    # 960*186+186 + 2*(186*186+186) + 186*12+12 + 3*2*186 batchnorm = 251,670
    assert n == 251_670
    assert abs(n - 250_000) / 250_000 < 0.10


def test_stack_averages_groups_of_frames():
    cfg = ModelConfig(context_frames=8, decimate=4, n_mels=2, hidden=[3])
    m = KWSNet(cfg)
    w = torch.arange(16, dtype=torch.float32).reshape(1, 8, 2)
    x = m.stack(w)
    # frames 0-3 average of bin0: (0+2+4+6)/4 = 3, bin1: 4; frames 4-7: 11, 12
    assert x.tolist() == [[3.0, 4.0, 11.0, 12.0]]


def test_forward_rejects_wrong_window_shape():
    m = build_model(ModelConfig())
    with pytest.raises(ValueError, match=r"expected windows \[B, 96, 40\]"):
        m(torch.zeros(2, 95, 40))


def test_sliding_windows_numpy_and_torch_agree():
    f = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    a = sliding_windows(f, 10, 4)
    b = sliding_windows(torch.from_numpy(f), 10, 4).numpy()
    assert a.shape == (11, 10, 3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[2], f[8:18])
    assert sliding_windows(f[:5], 10, 4).shape == (0, 10, 3)


def test_center_window():
    f = torch.arange(10.0).reshape(1, 10, 1)
    assert center_window(f, 6)[0, :, 0].tolist() == [2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("chunks", [[1] * 60, [7, 13, 40], [60], [3, 0, 57]])
def test_streaming_runner_equals_batched_windows(chunks):
    cfg = ModelConfig(context_frames=16, decimate=4, n_mels=5, hidden=[8, 8], step_frames=4)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    feats = np.random.default_rng(1).standard_normal((60, 5)).astype(np.float32)
    fn = torch_posterior_fn(net)
    batched = fn(sliding_windows(feats, 16, 4))
    runner = StreamingRunner(fn, 16, 4, 5)
    outs, pos = [], 0
    for c in chunks:
        o = runner.push(feats[pos:pos + c])
        pos += c
        if len(o):
            outs.append(o)
    streamed = np.concatenate(outs)
    assert streamed.shape == batched.shape == (12, 12)
    np.testing.assert_allclose(streamed, batched, atol=1e-6)


def test_save_load_roundtrip_and_damaged_files(tmp_path):
    net = build_model(ModelConfig(hidden=[16, 16]))
    net.set_normalization(np.arange(40), np.ones(40) * 2)
    save_model(tmp_path / "m.pt", net)
    back = load_model(tmp_path / "m.pt")
    x = torch.randn(3, 96, 40)
    net.eval()
    assert torch.equal(net(x), back(x))
    # truncated
    raw = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match="t.pt: damaged"):
        load_model(tmp_path / "t.pt")
    # wrong format / newer version
    torch.save({"format": "other"}, tmp_path / "o.pt")
    with pytest.raises(ArtifactError, match="not a kwslib model"):
        load_model(tmp_path / "o.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=False)
    state["version"] = 99
    torch.save(state, tmp_path / "v.pt")
    with pytest.raises(ArtifactError, match="version 99 is not supported"):
        load_model(tmp_path / "v.pt")
    with pytest.raises(ArtifactError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
