"""How narrow may the integer front end be? ``python -m kwslib.study.frontend_widths``.

The integer front end (:mod:`kwslib.frontend.intfrontend`) must give the float64 front end's int8 input codes in
at least 99 % of entries and never more than 1 apart, so that the trained models stay valid. It does, with an
int32 block floating point FFT and int64 power and filterbank. Its cost on aarch64 is set by those widths. This
study measures both sides of that trade, so that a cost target can be read against what it would take:

1. **Where the instructions go** (:func:`step_costs`): executed aarch64 instructions per frame of each step of
   the C integer front end (``window_and_scale``, ``fft``, ``split_power``, ``mel_log2`` in
   ``csrc/kws_intfrontend.c``) and of the float64 front end, counted under qemu the way the benchmark counts
   them (:func:`kwslib.deploy.qemu.count_pipeline_functions`, the same harness, audio and difference of two
   runs). The sum of the steps equals the benchmark's ``pipeline.frontend_aarch64_instructions_per_audio_second``.
2. **What a 16-bit FFT does to the codes** (:func:`width_agreement`; :func:`error_by_depth` says where its
   log-mel errors lie): the codes of two 16-bit variants of the FFT step, every other step left as specified,
   against the float64 front end, on the same audio and models as notebook 4's front-end study. A 16-bit FFT is what halves the FFT's cost on a SIMD unit (twice the lanes:
   TensorFlow Lite Micro's micro_frontend, CMSIS-DSP's q15 FFT).

   - ``fft16_adaptive``: the most precise 16-bit data path. The block is scaled to 15 bits (not 21; a sample
     that rounds up to 2^15 saturates to 2^15 - 1), each stage is computed exactly (wide sums, Q15 twiddles
     ``round(2^15 e^{-i t})`` clipped to +-(2^15 - 1), each real product rounded on its own,
     ``(a w + 2^14) >> 15``) and its outputs are shifted right, rounded half up, by just enough for every
     component of the frame to fit int16; the shifts add to the frame's exponent.
     Real 16-bit code would need more than this (the sums themselves overflow 16 bits before the shift), so
     this is an upper bound on what 16-bit storage between stages can give.
   - ``fft16_fixed``: the cheap one, as CMSIS-DSP's q15 FFT: the block is scaled to 14 bits and every radix-4
     stage halves twice (radix-2 once), rounded half up, whatever the signal; the complex modulus never grows,
     so nothing can overflow.

   In both, the split, the power (not shifted: ``|Y|^2 < 2^35``), the filterbank and the log2 are the
   specification's, with the frame's exponent carried through, so any difference comes from the FFT's width.

Assumptions (named where they are made): the study's audio is notebook 4's (replicate 0's keyword-clip test stream
and every negative source at the profile's settings), read from the results folder's cached corpus and its
exported ``models/stage2_w<b>.kws``; a run of notebook 4 must come first.

Example::

    python -m kwslib.study.frontend_widths --profile sc12 --out results/sc12/frontend-widths.json
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ..errors import ConfigError
from ..frontend.features import FeatureConfig, model_features
from ..frontend.intfrontend import (
    IntFrontendTables,
    agreement_on_signals,
    block_scale,
    fft_input,
    log2_mel,
    log2_q20,
    split_power,
    stockham_stage,
    tables,
)

#: The FFT variants :func:`width_agreement` compares: name -> 16-bit scaling (None: the specification, int32).
VARIANTS = {"int32_spec": None, "fft16_adaptive": "adaptive", "fft16_fixed": "fixed"}
#: Block-scaling bits of the 16-bit variants' input (|x| <= 2^bits).
INPUT_BITS = {"adaptive": 15, "fixed": 14}
INT16_MAX = (1 << 15) - 1


def _bit_length(m: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values below 2^53 (0 for 0)."""
    _, b = np.frexp(np.asarray(m, np.int64).astype(np.float64))
    return np.where(m > 0, b, 0).astype(np.int64)


def _round_shift(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``(v + 2^(s-1)) >> s`` per frame (``s`` [F] >= 0; s = 0 leaves v as it is); v [F, ...] int64."""
    s = np.asarray(s, np.int64).reshape((-1,) + (1,) * (v.ndim - 1))
    return (v + np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)) >> s


def twiddles_q15(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Q15 twiddles of a K-point FFT: ``round(2^15 cos(2 pi t / K))``, ``round(-2^15 sin(2 pi t / K))``, t < K,
    clipped to +-(2^15 - 1) (int64)."""
    a = 2.0 * np.pi * np.arange(k) / k
    q = (lambda v: np.clip(np.rint(v * 32768.0), -INT16_MAX, INT16_MAX).astype(np.int64))
    return q(np.cos(a)), q(-np.sin(a))


def rmul15(a, w):
    """One Q15 product, rounded half up: ``(a * w + 2^14) >> 15`` (NEON's vqrdmulhq_s16)."""
    return (a * w + (1 << 14)) >> 15


def fft_q15(re: np.ndarray, im: np.ndarray, scaling: str = "adaptive") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K-point complex FFT of rows [F, K] (int64 holding int16 values) with 16-bit data between stages.

    The butterflies are :func:`kwslib.frontend.intfrontend.fft_stockham`'s (its :func:`stockham_stage`: Stockham
    DIF, radix 4, a last radix 2 when K is not a power of 4) with Q15 twiddles (:func:`twiddles_q15`, :func:`rmul15`). After each
    stage the outputs are shifted right, rounded half up: ``scaling="adaptive"`` by the least shift that
    brings every component of the frame within int16, ``"fixed"`` by 2 (radix 4) or 1 (radix 2) always.
    Returns (re, im, shift [F]): the result is the exact FFT over ``2^shift``, within the rounding.
    Raises ValueError if an input or a fixed-scaling output leaves int16 (the input's block scaling is wrong)."""
    if scaling not in ("adaptive", "fixed"):
        raise ValueError(f"fft_q15: scaling must be 'adaptive' or 'fixed', got {scaling!r}")
    re, im = np.asarray(re, np.int64), np.asarray(im, np.int64)
    if re.ndim != 2 or re.shape != im.shape or re.shape[1] < 2 or re.shape[1] & (re.shape[1] - 1):
        raise ValueError(f"fft_q15: expected two [F, K] arrays with K a power of two, got {re.shape}, {im.shape}")
    if max(int(np.abs(re).max(initial=0)), int(np.abs(im).max(initial=0))) > INT16_MAX:
        raise ValueError("fft_q15: input outside int16")
    f, k = re.shape
    wr, wi = twiddles_q15(k)

    def mul(dr, di, t):
        return rmul15(dr, wr[t]) - rmul15(di, wi[t]), rmul15(dr, wi[t]) + rmul15(di, wr[t])

    total = np.zeros(f, np.int64)
    n, s = k, 1
    while n >= 2:
        radix = 4 if n >= 4 else 2
        re, im, n, s = stockham_stage(re, im, n, s, mul)
        if scaling == "fixed":
            sh = np.full(f, 2 if radix == 4 else 1, np.int64)
        else:
            peak = np.maximum(np.abs(re).max(axis=1), np.abs(im).max(axis=1))
            sh = np.maximum(_bit_length(peak) - 15, 0)
            # rounding up can carry 2^15 - 1/2 to 2^15: one bit more for those frames
            over = np.maximum(np.abs(_round_shift(re, sh)).max(axis=1), np.abs(_round_shift(im, sh)).max(axis=1))
            sh = sh + (over > INT16_MAX)
        re, im = _round_shift(re, sh), _round_shift(im, sh)
        total += sh
        if max(int(np.abs(re).max(initial=0)), int(np.abs(im).max(initial=0))) > INT16_MAX:
            raise ValueError(f"fft_q15: a stage's output left int16 ({scaling} scaling)")
    return re, im, total


def frames_log2_fft16(frames: np.ndarray, cfg: FeatureConfig | None = None, scaling: str = "adaptive") -> np.ndarray:
    """The specification's Q20 log2 mel energies (:func:`kwslib.frontend.intfrontend.frames_log2`) with the FFT
    step replaced by :func:`fft_q15`: block scaling to :data:`INPUT_BITS` bits, the 16-bit FFT, then the
    specification's split, power (not shifted), filterbank and log2 with the frame's exponent carried through."""
    if scaling not in INPUT_BITS:
        raise ValueError(f"frames_log2_fft16: scaling must be one of {sorted(INPUT_BITS)}, got {scaling!r}")
    tb: IntFrontendTables = tables(cfg)
    cfg = tb.cfg
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[1] != cfg.win_length:
        raise ValueError(f"frames_log2_fft16: expected [F, {cfg.win_length}] frames, got shape {frames.shape}")
    p = frames.astype(np.int64) * tb.window.astype(np.int64)
    x, e = block_scale(p, INPUT_BITS[scaling])
    # rounding can carry the largest sample to 2^bits exactly; at 15 bits that leaves int16, so it saturates, as
    # a 16-bit implementation's saturating narrowing shift (NEON vqrshrn) would (an assumption of this study)
    x = np.clip(x, -INT16_MAX, INT16_MAX)
    zr, zi, shift = fft_q15(*fft_input(x, cfg.n_fft), scaling)
    energy = split_power(zr, zi, tb) @ tb.fbank  # |Y|^2 < 2^35, weights <= 2^16, <= 2 filters per bin: exact
    # frames_log2 keeps E = E_float 2^(64 - 2e) with the power shifted by 16; here the exponent is e + shift and
    # the power is not shifted, so E = E_float 2^(80 - 2 (e + shift)): log2_q20's e is e + shift - 8
    return log2_q20(energy, e + shift - 8, tb)


def variant_log2_fn(variant: str, feat: FeatureConfig):
    """int16 PCM -> Q20 log2 frames of one :data:`VARIANTS` entry (for ``agreement_on_signals``'s ``log2_fn``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown front-end variant {variant!r}; known: {list(VARIANTS)}")
    scaling = VARIANTS[variant]
    if scaling is None:
        return lambda pcm: log2_mel(pcm, feat)
    return lambda pcm: log2_mel(pcm, feat, frames_fn=lambda fr, c: frames_log2_fft16(fr, c, scaling))


def width_agreement(models: dict, signals: dict, variants=tuple(VARIANTS), log=print) -> dict:
    """Codes of each variant against the float64 front end's, per model and audio source.

    ``models``: name -> IntModel; ``signals``: source -> int16 audio. Returns ``{variant: {"entries",
    "equal_share", "within_1_share", "max_abs_diff", "models": {model: {source: agreement}}}}`` with the
    agreement of :func:`kwslib.frontend.intfrontend.agreement_on_signals` (the same windows as notebook 4)."""
    if not models or not signals:
        raise ValueError("width_agreement: need at least one model and one signal")
    out = {}
    for v in variants:
        t0 = time.time()
        per, n, equal, within, worst = {}, 0, 0, 0, 0
        for name, model in models.items():
            fn = variant_log2_fn(v, model_features(model))
            per[name] = {src: agreement_on_signals(model, [pcm], fn) for src, pcm in signals.items()}
            for a in per[name].values():
                if a["entries"]:
                    n += a["entries"]
                    equal += round(a["equal_share"] * a["entries"])
                    within += round(a["within_1_share"] * a["entries"])
                    worst = max(worst, a["max_abs_diff"])
        out[v] = {"entries": n, "equal_share": equal / n if n else None, "within_1_share": within / n if n else None,
                  "max_abs_diff": worst if n else None, "models": per}
        log(f"[widths] {v}: {n:,} codes, equal {out[v]['equal_share']:.5f}, within 1 {out[v]['within_1_share']:.6f}, "
            f"largest difference {worst} ({time.time() - t0:.0f} s)")
    return out


#: Depth bands (dB below a frame's loudest mel bin) of :func:`error_by_depth`.
DEPTH_BANDS_DB = ((-20, 0), (-40, -20), (-60, -40), (-80, -60), (None, -80))


def error_by_depth(signals: dict, feat: FeatureConfig, variant: str = "fft16_adaptive") -> list[dict]:
    """Where a variant's log-mel error lies: |ln E_variant - ln E_float64| per frame and mel bin, grouped by how
    far that bin lies below its frame's loudest bin (float64 front end, dB of energy; :data:`DEPTH_BANDS_DB`).
    ``signals``: source -> int16 audio (each read in 60 s pieces). Returns one row per band: ``{"band_db",
    "entries", "mean_abs_ln_error", "p999_abs_ln_error", "max_abs_ln_error"}`` (None where the band is empty)."""
    from ..frontend.features import logmel_numpy
    from ..frontend.intfrontend import to_ln

    fn = variant_log2_fn(variant, feat)
    step = int(60 * feat.sample_rate)
    err, depth = [], []
    for pcm in signals.values():
        pcm = np.asarray(pcm, np.int16)
        for i in range(0, len(pcm), step):
            piece = pcm[i:i + step]
            ref = logmel_numpy(piece.astype(np.float32) / 32768.0, feat).astype(np.float64)
            if not len(ref):
                continue
            err.append(np.abs(to_ln(fn(piece)) - ref).ravel())
            depth.append(((ref - ref.max(axis=1, keepdims=True)) * 10.0 / np.log(10.0)).ravel())
    err = np.concatenate(err) if err else np.zeros(0)
    depth = np.concatenate(depth) if depth else np.zeros(0)
    rows = []
    for lo, hi in DEPTH_BANDS_DB:
        m = (depth < hi if hi < 0 else depth <= hi) & (depth >= lo if lo is not None else True)
        e = err[m]
        rows.append({"band_db": [lo, hi], "entries": int(m.sum()),
                     "mean_abs_ln_error": float(e.mean()) if e.size else None,
                     "p999_abs_ln_error": float(np.quantile(e, 0.999)) if e.size else None,
                     "max_abs_ln_error": float(e.max()) if e.size else None})
    return rows


#: The C integer front end's steps (function names in csrc/kws_intfrontend.c).
INT_STEPS = ("window_and_scale", "fft", "split_power", "mel_log2")


def step_costs(model, variant: str = "neon-dotprod", frontends=("int", "float")) -> dict:
    """Executed aarch64 instructions per frame of each step of both C front ends, counted as the benchmark
    counts the front end alone (``mode="frontend"``, bench audio, (count of 0.50 s - count of 0.26 s) / 0.24 s).
    ``model``: any IntModel of the profile (its features set the front end). Returns ``{"int": {...}, "float":
    {...}}``, each ``{"per_frame": {function: count}, "per_audio_second": {...}, "total_per_audio_second",
    "steps_per_frame": the integer steps (:data:`INT_STEPS`) and "other"}``; ``frontends`` says which."""
    import tempfile
    from pathlib import Path

    from ..deploy import export, qemu
    from ..deploy.pipeline import detector_settings, harness_config_text
    from .bench_pipeline import bench_audio

    ds = detector_settings(model)
    feat = ds["features"]
    frames_per_s = feat.sample_rate / feat.hop_length
    out = {"variant": variant, "method": "kws_pipeline_harness frontend mode under qemu-aarch64 -singlestep -d exec; "
                                         "per function, (count of 0.50 s - count of 0.26 s) / 0.24 s"}
    with tempfile.TemporaryDirectory(prefix="kwswidths") as d:
        path = Path(d) / "m.kws"
        export.save_artifact(path, model)
        text = harness_config_text(model, ds["threshold"], ds["smooth_windows"], ds["refractory_steps"])
        pcm = bench_audio(0.5, feat.sample_rate)
        for fe in frontends:
            r = qemu.count_pipeline_functions(path, text, pcm, mode="frontend", variant=variant, t1=0.26, t2=0.5,
                                              frontend=fe)
            per_frame = {k: round(v / frames_per_s) for k, v in r["per_audio_second"].items()}
            res = {"per_audio_second": r["per_audio_second"], "total_per_audio_second": r["total"],
                   "per_frame": per_frame, "total_per_frame": round(r["total"] / frames_per_s)}
            if fe == "int":
                steps = {k: per_frame.get(k, 0) for k in INT_STEPS}
                steps["other"] = res["total_per_frame"] - sum(steps.values())
                res["steps_per_frame"] = steps
            out[fe] = res
    return out


def _load(profile: str, results_dir):
    """The models and audio of notebook 4's front-end study for a profile (see the module's assumptions)."""
    from ..config import REPO_ROOT, load_yaml, profile_dir
    from ..evaluation.evaluate import negative_streams
    from ..deploy import export
    from ..deploy.pipeline import as_pcm16
    from . import experiment
    from .train_cli import merged_params
    from .tuning import EXPERIMENT_KEYS

    pdir = profile_dir(profile)
    params = merged_params(pdir / "01_float.yaml")
    cfg = experiment.experiment_config(**{k: params.get(k) for k in EXPERIMENT_KEYS})
    p = experiment.paths(results_dir or REPO_ROOT / "results" / profile, params.get("cache_dir"))
    params = load_yaml(pdir / "04_integer.yaml")
    widths = params.get("widths", [8, 5, 4, 1])
    missing = [b for b in widths if not (p.models / f"stage2_w{b}.kws").exists()]
    if missing:
        raise ConfigError(f"no models/stage2_w<b>.kws for widths {missing} in {p.results}: run notebook 4 first")
    models = {f"stage2_w{b}": export.load_artifact(p.models / f"stage2_w{b}.kws").model for b in widths}
    rep0 = next(experiment.replicate_runs(cfg, p, keyword_stream=True))
    signals = {s.source: as_pcm16(s.audio) for s in negative_streams(rep0.corpus, cfg.negatives)}
    signals["keyword_stream"] = as_pcm16(rep0.data.stream.audio)
    return models, signals, p


def main(argv=None) -> int:
    from ..io import atomic_write_json
    from ..summary import _plain

    ap = argparse.ArgumentParser(prog="python -m kwslib.study.frontend_widths", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--results-dir", help="results folder (default: the profile's, results/<profile>)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--no-neon", action="store_true", help="skip the aarch64 step counts (no qemu)")
    a = ap.parse_args(argv)
    try:
        models, signals, _ = _load(a.profile, a.results_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    rate = model_features(next(iter(models.values()))).sample_rate
    res = {"profile": a.profile, "hours": {k: round(len(v) / rate / 3600, 3) for k, v in signals.items()},
           "models": list(models),
           # one code is std * input_scale of the group-averaged ln energy (min, median, max over mel bins)
           "ln_per_code": {k: [float(f(np.asarray(m.norm_std, np.float64) * float(m.input_scale)))
                               for f in (np.min, np.median, np.max)] for k, m in models.items()}}
    if not a.no_neon:
        res["step_costs"] = step_costs(next(iter(models.values())))
        print(f"[widths] aarch64 steps per frame (integer front end): {res['step_costs']['int']['steps_per_frame']}")
    res["agreement"] = width_agreement(models, signals, a.variants)
    real = {k: v for k, v in signals.items() if k == "real_speech"} or signals
    res["error_by_depth"] = {"audio": sorted(real), **{v: error_by_depth(real, model_features(
        next(iter(models.values()))), v) for v in a.variants if VARIANTS[v] is not None}}
    res["seconds"] = round(time.time() - t0, 1)
    atomic_write_json(a.out, _plain(res))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
