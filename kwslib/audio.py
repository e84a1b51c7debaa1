"""Reading and checking audio: 16 kHz mono 16-bit PCM WAV, as Speech Commands ships it.

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

from .errors import AudioError
from .data.base import SAMPLE_RATE

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
        p = Path(src)
        if not p.exists():
            raise AudioError(f"{where}: file does not exist")
        if p.is_dir():
            raise AudioError(f"{where}: is a directory, not a WAV file")
        if p.stat().st_size == 0:
            raise AudioError(f"{where}: file is empty (0 bytes)")
        src = os.fspath(p)
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
    from .io import atomic_path

    audio = np.clip(np.asarray(audio, np.float32), -1.0, 32767 / 32768)
    with atomic_path(path) as tmp:
        sf.write(tmp, (audio * 32768.0).round().astype(np.int16), sample_rate, subtype="PCM_16", format="WAV")
