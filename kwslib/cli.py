"""The ``kwslib`` console command: detect, export, say, bench, new-profile.

    kwslib export results/quick/models/stage2_w4.int.npz model_w4.kws [--header model_w4.h]
    kwslib say "yes. stop. go left" demo.wav
    kwslib detect MODEL.kws AUDIO.wav [--threshold 0.8] [--backend auto|numpy|c] [--frontend int|float]
    kwslib bench --profile quick [--out bench.json]
    kwslib new-profile marvin --keywords marvin [--recordings DIR] [--from synthetic|sc|both]

``detect`` streams a recording of any length (WAV, FLAC, OGG; any sample rate and channel count,
converted on the fly to 16-bit PCM at the model's rate) in chunks through the detector of
kwslib.deploy.pipeline: front end, sliding window, integer network, smoothing and lockout, all in C
(``--backend c``) or in the numpy specification (``--backend numpy``), which give the same
detections. The front end is the integer one a chipset runs (``--frontend int``, the default:
kwslib.frontend.intfrontend) or the float64 log-mel the model was trained on (``--frontend float``).
It prints one line
per detection: time (end of the detecting window, seconds), keyword, score.
Scores are keyword posteriors smoothed by a causal moving average; a keyword
fires when its score reaches the threshold, then stays locked out for the
refractory period (the rule of kwslib.deploy.detection.count_detections, with the
defaults of kwslib.deploy.detection.EvalConfig).

Bad input (a missing, corrupt or truncated recording, a damaged artifact) prints
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


def detect(model_path, audio_path, threshold: float | None = None, backend: str = "auto", chunk_ms: float = 100.0,
           smooth_windows: int | None = None, refractory_s: float | None = None, out=print, info=None,
           frontend: str = "int"):
    """Stream ``audio_path`` through the artifact ``model_path``; calls ``out`` per detection, returns them.

    The recording may be WAV (8/16/24/32-bit PCM or float), FLAC or OGG at any sample rate, mono or
    multi-channel: :func:`kwslib.frontend.audio.recording_chunks` converts it while streaming, and the header
    line (``info``) says what it converted.
    """
    from .frontend.audio import check_recording, describe_recording, recording_chunks
    from .deploy.export import load_artifact
    from .deploy.pipeline import detector_settings, open_pipeline

    art = load_artifact(model_path)
    model = art.model
    ds = detector_settings(model, art.extra, threshold, smooth_windows, refractory_s)
    threshold, origin, smooth, refractory = ds["threshold"], ds["origin"], ds["smooth_windows"], ds["refractory_steps"]
    feat, step_s = ds["features"], ds["step_s"]
    _, rec = check_recording(audio_path)  # fail before printing anything
    pipe = open_pipeline(art, threshold, smooth, refractory, backend=backend, frontend=frontend)
    if info:
        fallback = getattr(pipe, "fallback_reason", None)
        info(f"kwslib detect: model {model_path} ({len(model.layers)} layers, "
             f"{'/'.join(str(l.bits) for l in model.layers)}-bit weights), backend {pipe.describe()}"
             + (f" (C unavailable: {fallback.splitlines()[0]})" if fallback else "") +
             f", threshold {threshold:g} ({origin}), smoothing {smooth * step_s:g} s ({smooth} windows), "
             f"lockout {refractory * step_s:g} s; audio {audio_path}: {rec.frames / rec.samplerate:.2f} s, "
             f"{describe_recording(rec, feat.sample_rate)}")
    found = []
    for block in recording_chunks(audio_path, feat.sample_rate, chunk_ms / 1000.0):
        for t, kw, score in pipe.push(block):
            found.append((t, kw, score))
            out(f"{t:9.3f}s  {kw:<8s} {score:.3f}")
    return found


def export_cmd(src, dst, header=None, prefix="kws_model", containers=False, threshold=None, info=print):
    """Export; nothing is written unless every output can be made (the header first, the artifact last)."""
    import math

    from .deploy import export
    from .errors import ArtifactError, ConfigError

    if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"--threshold must be in [0, 1], got {threshold}")
    if header and not prefix.isidentifier():
        raise ConfigError(f"--prefix {prefix!r} is not a C identifier")
    src = Path(src)
    if src.suffix == ".kws":
        model = export.load_model(src)
    else:
        from .quant.intfile import load_int_model

        model = load_int_model(src)
    extra = {"source": src.name}
    if src.suffix == ".kws":
        extra.update({k: v for k, v in export.load_artifact(src).extra.items() if k != "source"})
    if threshold is not None:
        extra.update(threshold=float(threshold), threshold_source="--threshold at export")
    why_none = "not in a results folder with a summary.json, no --threshold"
    if threshold is None and "threshold" not in extra:
        found, note = export.find_results_threshold(src)  # its replicate's operating point, in a results tree
        extra.update(found)
        why_none = note or why_none
    blob = export.to_bytes(model, packed=not containers, extra=extra)  # fails before anything is written
    if header:
        try:
            from .deploy.pipeline import detector_settings

            ds = detector_settings(model, extra)
            export.save_c_header(header, model, prefix=prefix, packed=not containers, artifact=blob, detector=ds)
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
    info(f"stored detection threshold: {extra['threshold']:g} ({extra.get('threshold_source', 'stored')})"
         if "threshold" in extra else
         f"stored detection threshold: none ({why_none}; no --threshold): kwslib detect will use 0.5")
    return size


def say_cmd(text: str, dst, voice: str = "en-us", rate: int = 150, pause_s: float = 0.6, info=print) -> float:
    """Speak ``text`` with espeak-ng into a 16 kHz mono 16-bit WAV (a test recording for ``detect``).

    Sentences (split at ``.``) are spoken one by one with ``pause_s`` of silence between them, so
    that each keyword stands alone as a detector hears it. Returns the length in seconds.
    """
    import numpy as np

    from .frontend.audio import write_wav
    from .data.synthetic import SAMPLE_RATE, synthesize
    from .errors import ConfigError

    parts = [t.strip() for t in text.split(".") if t.strip()]
    if not parts:
        raise ConfigError("say: nothing to speak (empty text)")
    if not (math.isfinite(pause_s) and 0 <= pause_s <= 60):
        raise ConfigError(f"--pause must be between 0 and 60 seconds, got {pause_s}")
    gap = np.zeros(int(pause_s * SAMPLE_RATE), np.float32)
    audio = np.concatenate([gap] + [x for t in parts for x in (synthesize(t, voice, rate, 50), gap)])
    audio *= 0.5 / max(1e-6, float(np.max(np.abs(audio))))
    write_wav(dst, audio)
    seconds = len(audio) / SAMPLE_RATE
    info(f"wrote {dst}: {seconds:.1f} s, {len(parts)} phrase(s) spoken by espeak-ng voice {voice} at {rate} words/min")
    return seconds


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("detect", "export", "say"):
        # The streaming path is one thread: a multi-threaded BLAS only adds start-up and contention
        # (set before numpy is first imported; an explicit setting of the user's is kept).
        import os

        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    if argv and argv[0] == "bench":  # everything after `bench` is kwslib.study.bench's own command line
        from .study import bench

        return bench.main(argv[1:])
    ap = argparse.ArgumentParser(prog="kwslib", description="kwslib: integer keyword spotting (detect, export, say, bench)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("detect", help="print keyword detections in a recording")
    d.add_argument("model", help="exported artifact (.kws)")
    d.add_argument("audio", help="WAV (8/16/24/32-bit, float), FLAC or OGG; any rate, any channels, any length")
    d.add_argument("--threshold", type=float, default=None,
                   help="score threshold in [0, 1] (default: stored in the artifact, else 0.5)")
    d.add_argument("--backend", choices=["auto", "numpy", "c"], default="auto",
                   help="c: the whole pipeline in C (front end, window, network, detector); numpy: the numpy "
                        "specification; auto: c when a C compiler is there")
    d.add_argument("--frontend", choices=["int", "float"], default="int",
                   help="integer front end (default, what a chipset runs) or the float64 one the model was trained on")
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
    e.add_argument("--threshold", type=float, default=None, help="detection threshold to store (default: the operating point of the results folder the model is in)")
    y = sub.add_parser("say", help="speak text with espeak-ng into a WAV file (a recording to try detect on)")
    y.add_argument("text", help='what to say; sentences split at "." get a pause between them')
    y.add_argument("out", help="output WAV (16 kHz mono 16-bit)")
    y.add_argument("--voice", default="en-us", help="espeak-ng voice, e.g. en-us, en-gb-x-rp, en-us+f2")
    y.add_argument("--rate", type=int, default=150, help="words per minute (80-450)")
    y.add_argument("--pause", type=float, default=0.6, help="seconds of silence between sentences")
    sub.add_parser("bench", help="CPU/memory benchmark; options: kwslib bench --help (= python -m kwslib.study.bench)")
    n = sub.add_parser("new-profile", help="write params/NAME/ for your own keywords (then make reproduce PROFILE=NAME)")
    n.add_argument("name", help="profile name (lower-case letters, digits, - or _)")
    n.add_argument("--keywords", nargs="+", required=True, help="one or more words or short phrases (quote a phrase)")
    n.add_argument("--recordings", default=None, help="your recordings: a folder DIR/<keyword>/<files> of any audio")
    n.add_argument("--from", dest="source", choices=["synthetic", "sc", "both"], default="synthetic",
                   help="keyword clips: synthetic (espeak-ng, default), sc (Speech Commands words, $KWS_SC12_ROOT) "
                        "or both")
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
                           args.refractory, out=lambda line: print(line, flush=True), info=info,
                           frontend=args.frontend)
            if info:
                info(f"kwslib detect: {len(found)} detection(s)")
            return 0
        if args.cmd == "say":
            say_cmd(args.text, args.out, args.voice, args.rate, args.pause)
            return 0
        if args.cmd == "export":
            export_cmd(args.src, args.dst, args.header, args.prefix, args.containers, args.threshold)
            return 0
        if args.cmd == "new-profile":
            from .study.newprofile import new_profile

            out = new_profile(args.name, args.keywords, args.source, args.recordings)
            print(f"wrote {out}/: make reproduce PROFILE={args.name}")
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
