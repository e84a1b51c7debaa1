"""The ``kwslib`` console command: detect, export, bench.

    kwslib detect MODEL.kws AUDIO.wav [--threshold 0.8] [--backend auto|numpy|c]
    kwslib export results/quick/models/stage2_w4.int.npz model_w4.kws [--header model_w4.h]
    kwslib bench --profile quick

``detect`` streams a WAV file of any length in chunks through the log-mel
front end (kwslib.features.StreamingFrontend), the sliding window
(kwslib.model.StreamingRunner) and the integer engine, and prints one line
per detection: time (end of the detecting window, seconds), keyword, score.
Scores are keyword posteriors smoothed by a causal moving average; a keyword
fires when its score reaches the threshold, then stays locked out for the
refractory period (the rule of kwslib.metrics.count_detections, with the
defaults of kwslib.evaluate.EvalConfig).

Bad input (a missing, corrupt or wrong-rate WAV, a damaged artifact) prints
one line naming the file and the problem and exits with status 2.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def _fail(msg: str) -> int:
    print(f"kwslib: error: {msg}", file=sys.stderr)
    return EXIT_BAD_INPUT


# --- WAV streaming ---------------------------------------------------------------------------------

def check_wav(path, sample_rate: int):
    """Validate a WAV header like audio.read_wav, any length, without reading the samples; returns soundfile's info."""
    from .audio import check_wav_header

    return check_wav_header(path, sample_rate, max_seconds=None)[1]


def wav_chunks(path, sample_rate: int, chunk_samples: int):
    """Yield float32 chunks of a mono 16-bit PCM WAV at ``sample_rate`` (validated by :func:`check_wav` first)."""
    import numpy as np
    import soundfile as sf

    from .errors import AudioError

    p = Path(path)
    info = check_wav(p, sample_rate)
    n = 0
    try:
        with sf.SoundFile(str(p)) as f:
            while True:
                block = f.read(chunk_samples, dtype="int16", always_2d=False)
                if len(block) == 0:
                    break
                n += len(block)
                yield block.astype(np.float32) / 32768.0
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{p}: truncated or corrupt WAV data ({exc})") from exc
    if n < info.frames:
        raise AudioError(f"{p}: truncated: header says {info.frames} samples, file holds {n}")


def detect(model_path, wav_path, threshold: float | None = None, backend: str = "auto", chunk_ms: float = 100.0,
           smooth_windows: int | None = None, refractory_s: float | None = None, out=print, info=None):
    """Stream ``wav_path`` through the artifact ``model_path``; calls ``out`` per detection, returns them."""
    import warnings

    from .engine import Detector, Engine
    from .evaluate import EvalConfig
    from .features import FeatureConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fallback is reported through `info`
        engine = Engine.load(model_path, backend=backend)
    model, extra = engine.model, engine.artifact.extra
    feat = FeatureConfig(**model.feature_config) if model.feature_config else FeatureConfig()
    ev = EvalConfig()
    threshold = float(extra.get("threshold", 0.5)) if threshold is None else float(threshold)
    smooth = ev.smooth_windows if smooth_windows is None else int(smooth_windows)
    step_s = model.step_frames * feat.hop_length / feat.sample_rate
    refractory = max(1, int(round((ev.refractory_s if refractory_s is None else refractory_s) / step_s)))
    check_wav(wav_path, feat.sample_rate)  # fail before printing anything
    if info:
        info(f"kwslib detect: model {model_path} ({len(model.layers)} layers, "
             f"{'/'.join(str(l.bits) for l in model.layers)}-bit weights), backend {engine.describe()}, "
             f"threshold {threshold:g}, smoothing {smooth} steps, lockout {refractory} steps")
    from .features import StreamingFrontend

    frontend = StreamingFrontend(feat)
    runner = engine.runner()
    detector = Detector(model.class_names, threshold, smooth, refractory)
    found = []
    chunk = max(1, int(feat.sample_rate * chunk_ms / 1000.0))
    for block in wav_chunks(wav_path, feat.sample_rate, chunk):
        frames = frontend.push(block)
        if len(frames) == 0:
            continue
        post = runner.push(frames)
        if post.size == 0:
            continue
        for step, kw, score in detector.push(post):
            t = ((step * model.step_frames + model.context_frames - 1) * feat.hop_length + feat.win_length) \
                / feat.sample_rate
            found.append((t, kw, score))
            out(f"{t:9.3f}s  {kw:<8s} {score:.3f}")
    return found


def export_cmd(src, dst, header=None, prefix="kws_model", containers=False, threshold=None, info=print):
    """Export; nothing is written unless every output can be made (the header first, the artifact last)."""
    import math

    from . import export
    from .errors import ArtifactError, ConfigError

    if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"--threshold must be in [0, 1], got {threshold}")
    if header and not prefix.isidentifier():
        raise ConfigError(f"--prefix {prefix!r} is not a C identifier")
    src = Path(src)
    if src.suffix == ".kws":
        model = export.load_model(src)
    else:
        from .quant.stage2 import load_int_model

        model = load_int_model(src)
    extra = {"source": src.name}
    if threshold is not None:
        extra["threshold"] = float(threshold)
    blob = export.to_bytes(model, packed=not containers, extra=extra)  # fails before anything is written
    if header:
        try:
            export.save_c_header(header, model, prefix=prefix, packed=not containers)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{header}: cannot write the C header ({exc})") from exc
    try:
        export.save_bytes(dst, blob)
    except (OSError, ValueError) as exc:
        if header:
            Path(header).unlink(missing_ok=True)
        raise ArtifactError(f"{dst}: cannot write ({exc})") from exc
    size = Path(dst).stat().st_size
    info(f"wrote {dst}: {size:,} bytes, {len(model.layers)} layers, weights "
         f"{'/'.join(str(l.bits) for l in model.layers)} bits "
         f"({'int8 containers' if containers else 'sub-8-bit layers bit-packed'})"
         + (f"; C header {header}" if header else ""))
    return size


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":  # everything after `bench` is kwslib.bench's own command line
        from . import bench

        return bench.main(argv[1:])
    ap = argparse.ArgumentParser(prog="kwslib", description="kwslib: integer keyword spotting (detect, export, bench)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("detect", help="print keyword detections in a WAV file")
    d.add_argument("model", help="exported artifact (.kws)")
    d.add_argument("audio", help="16 kHz mono 16-bit PCM WAV, any length")
    d.add_argument("--threshold", type=float, default=None,
                   help="score threshold in [0, 1] (default: stored in the artifact, else 0.5)")
    d.add_argument("--backend", choices=["auto", "numpy", "c"], default="auto")
    d.add_argument("--chunk-ms", type=float, default=100.0, help="audio chunk fed per step (streaming)")
    d.add_argument("--smooth", type=int, default=None, help="moving-average steps (default 3)")
    d.add_argument("--refractory", type=float, default=None, help="lockout after a detection, seconds (default 1)")
    d.add_argument("--quiet", action="store_true", help="no header line on stderr")
    e = sub.add_parser("export", help="stage-2 integer model (.int.npz) -> artifact (.kws) [+ C header]")
    e.add_argument("src", help="stage2_w{b}.int.npz (or a .kws to re-export)")
    e.add_argument("dst", help="output artifact (.kws)")
    e.add_argument("--header", default=None, help="also write a C header of const arrays")
    e.add_argument("--prefix", default="kws_model", help="C identifier prefix in the header")
    e.add_argument("--containers", action="store_true", help="int8 containers instead of bit-packed weights")
    e.add_argument("--threshold", type=float, default=None, help="default detection threshold to store")
    sub.add_parser("bench", help="CPU/memory benchmark; options: kwslib bench --help (= python -m kwslib.bench)")
    args = ap.parse_args(argv)

    from .errors import KwsError

    try:
        if args.cmd == "detect":
            if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
                return _fail(f"--threshold must be in [0, 1], got {args.threshold}")
            if not (math.isfinite(args.chunk_ms) and 0 < args.chunk_ms <= 3_600_000):
                return _fail(f"--chunk-ms must be a positive number of milliseconds, got {args.chunk_ms}")
            if args.smooth is not None and args.smooth < 1:
                return _fail(f"--smooth must be at least 1 step, got {args.smooth}")
            if args.refractory is not None and not (math.isfinite(args.refractory) and args.refractory >= 0):
                return _fail(f"--refractory must be a non-negative number of seconds, got {args.refractory}")
            info = None if args.quiet else (lambda m: print(m, file=sys.stderr))
            found = detect(args.model, args.audio, args.threshold, args.backend, args.chunk_ms, args.smooth,
                           args.refractory, out=lambda line: print(line, flush=True), info=info)
            if info:
                info(f"kwslib detect: {len(found)} detection(s)")
            return 0
        if args.cmd == "export":
            export_cmd(args.src, args.dst, args.header, args.prefix, args.containers, args.threshold)
            return 0
        return 0
    except KwsError as exc:
        return _fail(str(exc))
    except (OSError, ValueError) as exc:
        where = getattr(exc, "filename", None)
        return _fail(f"{where}: {exc}" if where else str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
