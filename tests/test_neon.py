"""The aarch64 NEON kernels, cross-compiled and run under qemu-aarch64, are bit-exact with numpy.

Skipped (with the reason) only where aarch64-linux-gnu-gcc or qemu-aarch64 is absent
(Debian: apt-get install gcc-aarch64-linux-gnu qemu-user).
"""
import numpy as np
import pytest

from kwslib.deploy import export
from kwslib.deploy import qemu
from kwslib.deploy.engine import float_forward, float_layers, random_int_model
from kwslib.quant.intspec import IntLayer, quantize_input, quantize_multiplier

VARIANTS = ("neon", "neon-dotprod", "scalar")
SMALL = dict(dims=(64, 24, 12), n_mels=16, context_frames=16, decimate=4)


@pytest.fixture(scope="session")
def harnesses(neon_tools):
    return {v: qemu.build_harness(v) for v in VARIANTS}


def run_all(tmp_path, m, x, harnesses, modes=("auto", "s8")):
    path = export.save_artifact(tmp_path / "m.kws", m)
    ref = m.forward_int(quantize_input(x, m.input_scale, m.input_zero_point))
    for v in harnesses:
        for mode in modes:
            out = qemu.run_harness(path, x, mode=mode, variant=v)
            assert np.array_equal(out, ref), f"{v}/{mode}: {(out != ref).sum()} mismatches"
    return ref


@pytest.mark.parametrize("bits", [8, 4, 1, (8, 4, 1, 5)])
def test_neon_bit_exact_random(tmp_path, rng, harnesses, bits):
    m = random_int_model(bits, seed=7)
    x = rng.normal(0, 1.3, (48, 960)).astype(np.float32)
    ref = run_all(tmp_path, m, x, harnesses)
    assert len(np.unique(ref)) > 50


def test_neon_adversarial(tmp_path, harnesses):
    """All-max weights and activations, saturation at both ends, accumulators near int32, odd dims."""
    I, C = 64, 13
    xs = np.stack([np.full(I, 1e9), np.full(I, -1e9), np.where(np.arange(I) % 2, 1e9, -1e9), np.zeros(I)])
    xs = xs.astype(np.float32)
    for bits, q in ((8, 127), (4, 7)):
        for sign in (1, -1):
            w = np.full((C, I), sign * q, np.int8)
            for real, bias in ((2.0, 0), (1e-3, 0), (1e-9, 2 ** 31 - 1 - 128 * q * I), (1e-9, -(2 ** 31 - 1 - 128 * q * I))):
                mult, shift = quantize_multiplier(np.full(C, real))
                hidden = IntLayer(w_q=w, bits=bits, bias_q=np.full(C, bias), mult=mult, shift=shift, in_scale=0.05,
                                  in_zero_point=0, out_scale=0.05, out_zero_point=-128, relu=True)
                w2 = np.full((12, C), q, np.int8)
                m2, s2 = quantize_multiplier(np.full(12, 0.01))
                out = IntLayer(w_q=w2, bits=bits, bias_q=np.zeros(12), mult=m2, shift=s2, in_scale=0.05,
                               in_zero_point=-128, out_scale=0.05, out_zero_point=0, relu=False)
                m = random_int_model(8, seed=0, dims=(I, C, 12), n_mels=16, context_frames=16, decimate=4)
                m.layers = [hidden, out]
                run_all(tmp_path, m, xs, harnesses)


def test_neon_float32_kernel(tmp_path, rng, harnesses):
    m = random_int_model(8, seed=3)
    path = export.save_artifact(tmp_path / "m.kws", m)
    x = rng.normal(0, 1, (8, 960)).astype(np.float32)
    ref = float_forward(float_layers(m), x)
    out = qemu.run_harness(path, x, mode="f32", variant="neon")
    assert np.allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_instruction_counts(tmp_path, rng, harnesses):
    """Deterministic; leaving the setup functions out of the log does not change the count."""
    m = random_int_model(4, seed=1, **SMALL)
    path = export.save_artifact(tmp_path / "s.kws", m)
    x = rng.normal(0, 1, (1, 64)).astype(np.float32)
    for mode in ("auto", "s8", "f32"):
        a = qemu.count_instructions(path, x, mode=mode, variant="neon", repeats=2)
        b = qemu.count_instructions(path, x, mode=mode, variant="neon", repeats=2, skip_setup=False)
        assert a["per_inference"] == b["per_inference"] > 100
        assert a["setup_filtered"] and a["startup"] < b["startup"]


def test_instruction_counts_default_model(tmp_path, rng, harnesses):
    """The default-size model: integer kernels execute fewer instructions than float32."""
    m8, m4 = random_int_model(8, seed=2), random_int_model(4, seed=2)
    p8, p4 = export.save_artifact(tmp_path / "m8.kws", m8), export.save_artifact(tmp_path / "m4.kws", m4)
    x = rng.normal(0, 1, (1, 960)).astype(np.float32)
    f32 = qemu.count_instructions(p8, x, mode="f32", variant="neon", repeats=1)["per_inference"]
    i8 = qemu.count_instructions(p8, x, mode="s8", variant="neon-dotprod", repeats=1)["per_inference"]
    w4 = qemu.count_instructions(p4, x, mode="auto", variant="neon-dotprod", repeats=1)["per_inference"]
    macs = sum(l.w_q.size for l in m8.layers)
    assert macs / 4 < f32 < macs  # roughly 2 instructions per 4-lane FMA, nothing pathological
    assert f32 / i8 > 1.5 and f32 / w4 > 1.5


def test_qemu_net(rng, harnesses):
    m = random_int_model((8, 4), seed=5, **SMALL)
    x = rng.normal(0, 2, (20, 64)).astype(np.float32)
    q = qemu.QemuNet(m, variant="neon", mode="auto")
    try:
        assert np.array_equal(q.forward_f32(x), m.forward_int(quantize_input(x, m.input_scale, m.input_zero_point)))
    finally:
        q.close()


def test_log_counter_handles_chunk_boundaries(tmp_path, monkeypatch):
    log = tmp_path / "log"
    log.write_bytes(b"Trace 0: a\n" * 1000)
    import builtins

    real_open = builtins.open

    class Small:  # read in 7-byte chunks: most tokens straddle a boundary
        def __init__(self, *a, **k):
            self.f = real_open(*a, **k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def read(self, n):
            return self.f.read(7)

    monkeypatch.setattr(builtins, "open", Small)
    assert qemu._count_lines(log) == 1000


def test_whole_pipeline_instructions_per_audio_second(tmp_path, harnesses):
    """The pipeline harness under qemu: a count per second of audio, steady state, float32 > integer,
    and the difference of two lengths (setup and start-up cancel) scales with the audio."""
    from kwslib.study.bench_pipeline import bench_audio
    from kwslib.deploy.pipeline import harness_config_text

    m = random_int_model(4, **dict(SMALL, dims=(64, 24, 12)), seed=3)
    m.feature_config = {"n_mels": 16}
    path = export.save_artifact(tmp_path / "m.kws", m)
    cfg = harness_config_text(m, 0.5, 3, 25)
    pcm = bench_audio(1.5)
    f32 = qemu.count_pipeline_instructions(path, cfg, pcm, mode="f32", t1=0.5, t2=0.98)
    w4 = qemu.count_pipeline_instructions(path, cfg, pcm, mode="int", t1=0.5, t2=0.98)
    longer = qemu.count_pipeline_instructions(path, cfg, pcm, mode="int", t1=0.5, t2=1.46)
    assert f32["per_audio_second"] > w4["per_audio_second"] > 100_000  # the front end alone is ~40K per frame
    assert f32["setup_filtered"] and w4["counts"][1] > w4["counts"][0]
    assert abs(longer["per_audio_second"] - w4["per_audio_second"]) < 0.01 * w4["per_audio_second"]
