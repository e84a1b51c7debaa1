"""Your own recordings of the keywords: a folder ``ROOT/<keyword>/*`` of any common audio format.

:func:`load_recordings` reads every file below ``ROOT/<keyword>/`` (one level; the folder name is the keyword,
spaces in a phrase written as spaces or underscores) with :func:`kwslib.frontend.audio.recording_chunks`, the
reader ``kwslib detect`` uses: any format libsndfile reads (WAV, FLAC, OGG, MP3 ...), channels averaged, any
sample rate converted to 16 kHz. Each file becomes one 1-s training clip of its keyword.

Assumptions (each one a choice a reader may want to change):

- **One utterance per file.** A file longer than 1 s keeps the 1-s window of most energy (the keyword, if
  the rest is quiet); a shorter one is zero-padded, centred. Its level is not changed.
- **Speakers.** A file name ``<speaker>_<anything>`` names its speaker (Speech Commands' convention); a name
  without ``_`` is a speaker of its own. Recordings join the *train* split only: the held-out test clips come
  from the profile's main source, so no recording is both trained on and tested on.
- **Bad input** stops the load with one line naming the file: a keyword with no folder, a folder with no
  audio file, an unreadable or empty file. Nothing is written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AudioError, ConfigError, DatasetError
from .base import CLIP_SAMPLES, ClipSet, class_names

#: File endings read as audio (the formats libsndfile reads); other files (a README, .DS_Store) are skipped.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".caf", ".w64")


def keyword_folder(root: Path, keyword: str) -> Path | None:
    """The folder of ``keyword`` below ``root`` (a phrase's spaces may be written as underscores)."""
    for name in (keyword, keyword.replace(" ", "_")):
        if (root / name).is_dir():
            return root / name
    return None


def loudest_second(audio: np.ndarray, n: int = CLIP_SAMPLES, hop: int = 160) -> np.ndarray:
    """The ``n``-sample window of most energy (searched on a ``hop``-sample grid), or the signal zero-padded
    (centred) to ``n`` when it is shorter."""
    from ..frontend.audio import fit_to_clip

    audio = np.asarray(audio, np.float32)
    if len(audio) <= n:
        return fit_to_clip(audio, n)
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    starts = np.arange(0, len(audio) - n + 1, hop)
    best = int(starts[np.argmax(energy[starts + n] - energy[starts])])
    return audio[best:best + n].copy()


def load_recordings(root, keywords, where: str = "data.recordings") -> ClipSet:
    """Every recording of every keyword as 1-s clips, labelled by the class list of ``keywords``."""
    from ..frontend.audio import recording_chunks

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{where}: recordings folder {root} does not exist")
    classes = class_names(keywords)
    audio, labels, speakers, origins = [], [], [], []
    for k, word in enumerate(classes[2:], start=2):
        folder = keyword_folder(root, word)
        if folder is None:
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise DatasetError(f"{where}: {folder} holds no audio file (endings read: {', '.join(AUDIO_SUFFIXES)})")
        for f in files:
            try:
                x = np.concatenate(list(recording_chunks(f)) or [np.zeros(0, np.float32)])
            except AudioError as exc:
                raise DatasetError(f"{where}: {exc}") from exc
            if len(x) == 0 or not np.any(x):
                raise DatasetError(f"{where}: {f} holds no sound (empty or all zeros)")
            audio.append(loudest_second(x))
            labels.append(k)
            stem = f.stem
            speakers.append(f"rec:{stem.split('_', 1)[0]}" if "_" in stem else f"rec:{folder.name}/{stem}")
            origins.append(str(f.relative_to(root)))
    if not audio:
        raise DatasetError(f"{where}: {root} has no folder of any keyword ({', '.join(classes[2:])}); "
                           "lay the recordings out as ROOT/<keyword>/<files>")
    return ClipSet(np.stack(audio), labels, speakers, origins)


def missing_keywords(root, keywords) -> list[str]:
    """The keywords with no folder below ``root``."""
    root = Path(root)
    return [k for k in class_names(keywords)[2:] if keyword_folder(root, k) is None]


def check_sources(keywords, spoken_by_source: set, recordings=None, where: str = "data.keywords") -> None:
    """ConfigError when a keyword has no source at all: not spoken by the main source (``spoken_by_source``:
    the keywords it has clips of) and no folder of recordings."""
    have = set(spoken_by_source)
    if recordings is not None and Path(recordings).is_dir():
        have |= set(class_names(keywords)[2:]) - set(missing_keywords(recordings, keywords))
    lost = [k for k in class_names(keywords)[2:] if k not in have]
    if lost:
        raise ConfigError(f"{where}: no source for {lost}: neither the data source has clips of them nor "
                          f"{'the recordings folder ' + str(recordings) if recordings else 'a recordings folder'} "
                          "a folder of them")
