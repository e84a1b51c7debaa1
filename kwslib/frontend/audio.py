"""Reading and checking audio: 16 kHz mono 16-bit PCM WAV clips, as Speech Commands ships them, and
recordings of any common format for the streaming command line (:func:`recording_chunks`).

We decode WAV ourselves with soundfile (libsndfile), never through
``datasets``' ffmpeg-based decoder. Every failure raises :class:`AudioError`
naming the file and the problem.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError

#: The sample rate of every clip, stream and model in the project (Speech Commands' 16 kHz).
SAMPLE_RATE = 16000

#: Refuse files longer than this (a guard against huge or hostile inputs).
MAX_SECONDS = 4 * 3600


def _where(path) -> str:
    return str(path) if not isinstance(path, (bytes, bytearray, io.IOBase)) else "<in-memory WAV>"


def _declared_data_bytes(raw: bytes, total: int) -> tuple[int, int] | None:
    """(declared size, bytes present) of the RIFF ``data`` chunk, or None if not found.

    ``raw``: the first bytes of the file (enough to hold the header chunks); ``total``: file size.
    """
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], int.from_bytes(raw[pos + 4:pos + 8], "little")
        if cid == b"data":
            return size, total - (pos + 8)
        pos += 8 + size + (size & 1)
    return None


def _check_file(p: Path, what: str) -> Path:
    """AudioError naming ``p`` if it is missing, a directory or empty."""
    if not p.exists():
        raise AudioError(f"{p}: file does not exist")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not {what}")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: file is empty (0 bytes)")
    return p


def check_wav_header(path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = MAX_SECONDS):
    """Validate a WAV file's header without reading its samples: returns ``(src, info, where)``.

    ``src`` is what soundfile should read (a path or a rewound BytesIO), ``info`` soundfile's
    header info, ``where`` the name used in errors. Raises :class:`AudioError` as :func:`read_wav`
    does; ``max_seconds=None`` accepts any length (streaming a long recording).
    """
    if not isinstance(path, (str, os.PathLike, bytes, bytearray, io.IOBase)):
        raise TypeError(f"read_wav: expected a file path or the bytes of a WAV file, got {type(path).__name__}")
    where = _where(path)
    src = io.BytesIO(bytes(path)) if isinstance(path, (bytes, bytearray)) else path
    if not isinstance(src, io.IOBase):
        src = os.fspath(_check_file(Path(src), "a WAV file"))
    try:
        info = sf.info(src)
    except Exception as exc:  # libsndfile says "Format not recognised" etc.
        raise AudioError(f"{where}: not a readable WAV file ({exc})") from exc
    if isinstance(src, io.IOBase):
        src.seek(0)
        head = src.read(1 << 16)
        total = src.seek(0, io.SEEK_END)
        src.seek(0)
    else:
        with open(src, "rb") as f:
            head = f.read(1 << 16)
        total = os.path.getsize(src)
    declared = _declared_data_bytes(head, total)
    # libsndfile silently shortens a truncated data chunk; compare with the header.
    # (0xFFFFFFFF / 0 sizes are written by streaming encoders and mean "unknown".)
    if declared and 0 < declared[0] < 0xFFFFFFFF and declared[1] < declared[0]:
        raise AudioError(f"{where}: truncated: header declares {declared[0]} data bytes, file holds {declared[1]}")
    if info.format != "WAV" and info.format != "WAVEX":
        raise AudioError(f"{where}: format {info.format}, expected WAV")
    if info.channels != 1:
        raise AudioError(f"{where}: {info.channels} channels, expected mono")
    if info.subtype != "PCM_16":
        raise AudioError(f"{where}: sample format {info.subtype}, expected 16-bit PCM (PCM_16)")
    if info.samplerate != sample_rate:
        raise AudioError(f"{where}: sample rate {info.samplerate} Hz, expected {sample_rate} Hz")
    if max_seconds is not None and info.frames > max_seconds * sample_rate:
        raise AudioError(f"{where}: {info.frames / sample_rate:.0f} s long, more than the {max_seconds:.0f} s limit")
    if info.frames == 0:
        raise AudioError(f"{where}: WAV holds no samples (empty audio)")
    return src, info, where


def read_wav(path, sample_rate: int = SAMPLE_RATE,
             max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Read a mono 16-bit PCM WAV file into float32 samples in [-1, 1).

    ``path`` may be a filesystem path or the bytes of a WAV file. Raises
    :class:`AudioError` if the file is missing, not a WAV, truncated, empty,
    stereo, not 16-bit PCM (8-bit, 24-bit, float) or not at ``sample_rate``.
    """
    src, info, where = check_wav_header(path, sample_rate, max_seconds)
    try:
        data, _ = sf.read(src, dtype="int16", always_2d=False)
    except Exception as exc:
        raise AudioError(f"{where}: truncated or corrupt WAV data ({exc})") from exc
    # libsndfile silently returns fewer frames for a truncated data chunk.
    if len(data) == 0:
        raise AudioError(f"{where}: WAV holds no samples (empty audio)")
    if info.frames > 0 and len(data) < info.frames:
        raise AudioError(f"{where}: truncated: header says {info.frames} samples, file holds {len(data)}")
    return (data.astype(np.float32) / 32768.0)


def check_audio(audio, where: str = "audio", sample_rate: int | None = None) -> np.ndarray:
    """Validate an in-memory mono signal: 1-D, non-empty, finite. Returns float32."""
    a = np.asarray(audio)
    if a.ndim != 1:
        raise AudioError(f"{where}: expected mono 1-D audio, got shape {a.shape}")
    if a.size == 0:
        raise AudioError(f"{where}: empty audio")
    if not np.issubdtype(a.dtype, np.number):
        raise AudioError(f"{where}: audio dtype {a.dtype} is not numeric")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise AudioError(f"{where}: audio dtype {a.dtype} is complex, expected real samples")
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / 32768.0
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise AudioError(f"{where}: audio contains NaN or infinite samples")
    return a


def fit_to_clip(audio: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad (centred) or centre-crop a signal to exactly ``n`` samples."""
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) >= n:
        start = (len(audio) - n) // 2
        return audio[start:start + n].copy()
    out = np.zeros(n, np.float32)
    start = (n - len(audio)) // 2
    out[start:start + len(audio)] = audio
    return out


def write_wav(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float audio in [-1, 1] as 16-bit PCM, atomically (temp file + rename)."""
    from ..io import atomic_path

    audio = np.clip(np.asarray(audio, np.float32), -1.0, 32767 / 32768)
    with atomic_path(path) as tmp:
        sf.write(tmp, (audio * 32768.0).round().astype(np.int16), sample_rate, subtype="PCM_16", format="WAV")


# --- recordings of any format, for the streaming command line -------------------------------------

def describe_recording(info, sample_rate: int) -> str:
    """One phrase for the header line: what the file is and what reading it converts.

    ``info`` is soundfile's info of the file. Example: ``"44100 Hz stereo WAV FLOAT, downmixed to mono,
    resampled to 16000 Hz"``; a file that needs nothing says ``"16000 Hz mono WAV PCM_16, no conversion"``.
    """
    channels = {1: "mono", 2: "stereo"}.get(info.channels, f"{info.channels}-channel")
    steps = []
    if info.channels > 1:
        steps.append("downmixed to mono (mean of the channels)")
    if info.samplerate != sample_rate:
        steps.append(f"resampled to {sample_rate} Hz (soxr, HQ)")
    if info.subtype != "PCM_16":
        steps.append("samples scaled to [-1, 1)")
    return f"{info.samplerate} Hz {channels} {info.format} {info.subtype}, " + (", ".join(steps) or "no conversion")


def check_recording(path):
    """Validate a recording for streaming: returns ``(str path, soundfile info)``.

    Accepts whatever libsndfile reads: WAV (8/16/24/32-bit PCM, float), FLAC, OGG/Vorbis, AIFF, ...
    at any sample rate and any number of channels, any length. Raises :class:`AudioError` naming the
    file: missing, a directory, empty, unreadable, no samples, a truncated WAV data chunk.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"check_recording: expected a file path, got {type(path).__name__}")
    p = _check_file(Path(path), "an audio file")
    try:
        info = sf.info(str(p))
    except Exception as exc:
        raise AudioError(f"{p}: not a readable audio file (WAV, FLAC, OGG, ...): {exc}") from exc
    if info.format in ("WAV", "WAVEX"):
        with open(p, "rb") as f:
            head = f.read(1 << 16)
        declared = _declared_data_bytes(head, p.stat().st_size)
        if declared and 0 < declared[0] < 0xFFFFFFFF and declared[1] < declared[0]:
            raise AudioError(f"{p}: truncated: header declares {declared[0]} data bytes, file holds {declared[1]}")
    if info.frames == 0 or info.channels < 1 or info.samplerate <= 0:
        raise AudioError(f"{p}: holds no samples (empty audio)")
    return str(p), info


def recording_chunks(path, sample_rate: int = SAMPLE_RATE, chunk_seconds: float = 0.1):
    """Yield float32 mono chunks of a recording, converted to ``sample_rate`` as they stream.

    The conversions (see :func:`describe_recording`): channels are averaged to mono; a sample rate
    other than ``sample_rate`` is converted with soxr's streaming resampler (quality HQ), which gives
    the same samples whatever the chunk size; 16-bit PCM is read as ``int16 / 32768`` exactly as
    :func:`read_wav` reads training clips; other sample formats come as float in [-1, 1] from
    libsndfile. A NaN or infinite sample (possible in float WAV) raises :class:`AudioError` with its
    time, as does a file that holds fewer samples than its header says.
    """
    where, info = check_recording(path)
    block = max(1, int(round(info.samplerate * chunk_seconds)))
    resampler = None
    if info.samplerate != sample_rate:
        import soxr  # only when the file needs it

        resampler = soxr.ResampleStream(info.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
    n = 0
    try:
        with sf.SoundFile(where) as f:
            while True:
                if info.subtype == "PCM_16":
                    x = f.read(block, dtype="int16", always_2d=True).astype(np.float32) / 32768.0
                else:
                    x = f.read(block, dtype="float32", always_2d=True)
                last = len(x) < block
                if len(x):
                    if not np.all(np.isfinite(x)):
                        bad = n + int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
                        raise AudioError(f"{where}: non-finite sample (NaN or inf) at {bad / info.samplerate:.3f} s")
                    n += len(x)
                    x = x[:, 0] if info.channels == 1 else x.mean(axis=1, dtype=np.float32)
                if resampler is not None:
                    x = resampler.resample_chunk(x if len(x) else np.zeros(0, np.float32), last=last)
                if len(x):
                    yield np.ascontiguousarray(x, dtype=np.float32)
                if last:
                    break
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{where}: truncated or corrupt audio data ({exc})") from exc
    if info.format in ("WAV", "WAVEX") and n < info.frames:
        raise AudioError(f"{where}: truncated: header says {info.frames} samples, file holds {n}")
