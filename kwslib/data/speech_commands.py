"""Google Speech Commands in its official folder layouts.

Two layouts are read, both from a folder the caller names (parameter or
environment variable, see :func:`resolve_root`; nothing here knows where a
particular machine keeps the data):

* the 12-class **test-set archive** (``speech_commands_test_set_v0.02``):
  folders ``yes .. go``, ``_unknown_`` (files ``WORD_SPEAKER_nohash_N.wav``)
  and ``_silence_`` (numbered noise clips). It has no list files, so
  :func:`load_test_set` re-splits it by speaker (see :func:`speaker_split`).
* the **full archive** (v0.01: 30 words, v0.02: 35 words) with
  ``validation_list.txt``, ``testing_list.txt`` and ``_background_noise_/``:
  :func:`load_full` keeps the official split.

Clips are decoded with :func:`kwslib.frontend.audio.read_wav` (16 kHz mono 16-bit PCM
only) and centre-padded/cropped to 1 s. Unreadable clips are skipped with one
counted warning, unless more than :data:`MAX_BAD_FRACTION` of them are bad,
which means the folder is not the dataset we think it is.

:func:`download` fetches the official archives when the network is there and
raises :class:`~kwslib.errors.OfflineError` when it is not.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..frontend.audio import fit_to_clip, read_wav
from ..errors import AudioError, ConfigError, DatasetError, OfflineError
from .base import (
    ALL_WORDS_V1, ALL_WORDS_V2, CLASS_INDEX, CLIP_SAMPLES, KEYWORDS, SILENCE, UNKNOWN,
    ClipSet, Corpus, class_names, split_noise_by_time, word_to_class,
)

#: More unreadable clips than this fraction means a damaged or wrong folder: DatasetError.
MAX_BAD_FRACTION = 0.05

BASE_URL = "http://download.tensorflow.org/data/"
BACKGROUND = "_background_noise_"
TEST_SET_FOLDERS = KEYWORDS + [UNKNOWN, SILENCE]

#: Clip counts of the official archives; :func:`download` refuses fewer.
MIN_CLIPS = {
    ("v0.02", False): 105_829,
    ("v0.01", False): 64_727,
    ("v0.02", True): 4_890,
    ("v0.01", True): 3_081,
}

# SPEAKER_nohash_N.wav (keyword folders, full layout) or WORD_SPEAKER_nohash_N.wav (_unknown_).
_NAME_RE = re.compile(r"^(?:(?P<word>[a-z]+)_)?(?P<speaker>[0-9a-fA-F]{8})_nohash_(?P<n>\d+)\.wav$")


# --------------------------------------------------------------------------- paths

def resolve_root(path: str | os.PathLike | None, env_var: str, what: str) -> Path:
    """Return the dataset folder: ``path`` if given, else the environment variable ``env_var``.

    Raises :class:`DatasetError` naming both the parameter and the variable
    when neither is set, or naming the folder (and where it came from) when it
    does not exist or is not a folder.
    """
    if path is not None and str(path) != "":
        where = "the path given"
    else:
        path = os.environ.get(env_var, "")
        where = f"${env_var}"
        if not path:
            raise DatasetError(
                f"no {what} folder given: pass its path as a parameter or set the environment "
                f"variable {env_var} to the folder")
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"{what} folder {root} (from {where}) does not exist")
    if not root.is_dir():
        raise DatasetError(f"{what} folder {root} (from {where}) is not a folder")
    return root


def _folder_wavs(root: Path, folders) -> list[str]:
    """``folder/name.wav`` of every WAV in each folder (sorted); DatasetError for a folder with none."""
    rels = []
    for folder in folders:
        names = _wav_names(root / folder)
        if not names:
            raise DatasetError(f"{root / folder} has no .wav files")
        rels += [f"{folder}/{n}" for n in names]
    return rels


def _wav_names(folder: Path) -> list[str]:
    """Sorted ``*.wav`` file names of a folder (sorted: independent of listing order)."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".wav") and not p.name.startswith("."))


def _require_folders(root: Path, names: list[str], what: str) -> None:
    missing = [n for n in names if not (root / n).is_dir()]
    if missing:
        raise DatasetError(f"{root} is not a {what} folder: missing sub-folder(s) {', '.join(missing)}")


def _parse_speaker(name: str, rel: str) -> str:
    """Speaker id (8 hex digits, lower case) from a clip file name.

    A name that does not follow ``[WORD_]SPEAKER_nohash_N.wav`` gets a speaker
    of its own (``file:<relative path>``), which keeps splits speaker-disjoint.
    """
    m = _NAME_RE.match(name)
    return m.group("speaker").lower() if m else f"file:{rel}"


# --------------------------------------------------------------------------- reading

def _read_clips(root: Path, rels: list[str], workers: int | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """Read ``root/rel`` for every rel into a float32 [N, CLIP_SAMPLES] array.

    Returns (audio, ok mask, [(rel, reason), ...] of unreadable files). Uses a
    thread pool: libsndfile releases the GIL while it reads.
    """
    audio = np.zeros((len(rels), CLIP_SAMPLES), np.float32)
    ok = np.zeros(len(rels), bool)
    bad: list = [None] * len(rels)

    def one(i: int) -> None:
        try:
            audio[i] = fit_to_clip(read_wav(root / rels[i]), CLIP_SAMPLES)
            ok[i] = True
        except AudioError as exc:
            bad[i] = (rels[i], str(exc).removeprefix(f"{root / rels[i]}: "))

    workers = workers or min(8, os.cpu_count() or 1)
    if len(rels) < 64 or workers == 1:
        for i in range(len(rels)):
            one(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(len(rels)), chunksize=64))
    return audio, ok, [b for b in bad if b is not None]


def _report_bad(root: Path, bad: list, total: int) -> int:
    """Warn once about unreadable clips; raise DatasetError above MAX_BAD_FRACTION. Returns the count."""
    if not bad:
        return 0
    if len(bad) > MAX_BAD_FRACTION * total:
        raise DatasetError(
            f"{len(bad)} of {total} clips in {root} are unreadable (more than {MAX_BAD_FRACTION:.0%}): "
            f"is this the right folder? first: {bad[0][0]}: {bad[0][1]}")
    warnings.warn(f"skipped {len(bad)} unreadable clips in {root}, first: {bad[0][0]}: {bad[0][1]}",
                  stacklevel=3)
    return len(bad)


def _read_noise(folder: Path) -> tuple[list[str], list[np.ndarray]]:
    """Read every ``*.wav`` background recording of ``folder`` (sorted by name).

    There are only six of them, so a bad one is an error, not a warning.
    """
    names = _wav_names(folder)
    if not names:
        raise DatasetError(f"noise folder {folder} has no .wav files (expected the six background recordings)")
    recs = []
    for name in names:
        try:
            recs.append(read_wav(folder / name))
        except AudioError as exc:
            raise DatasetError(f"background recording unreadable: {exc}") from exc
    return names, recs


# --------------------------------------------------------------------------- splitting

def speaker_split(speakers, seed: int = 0, fractions=(0.7, 0.1, 0.2)) -> np.ndarray:
    """Assign every clip to split 0 (train), 1 (val) or 2 (test) by speaker.

    Procedure (stable: depends only on the multiset of speaker ids and the seed):

    1. take the distinct speaker ids, sorted, and count each one's clips;
    2. permute them with ``np.random.default_rng(seed).permutation``;
    3. walk the permuted speakers, keeping a running clip count; a speaker
       goes to the split whose cumulative target range
       ``[0, f0*N), [f0*N, (f0+f1)*N), [.., N]`` contains the middle of its
       own clip range. So clip fractions are within about half a speaker's
       clips of the targets and no speaker is in two splits.
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or f.sum() <= 0:
        raise ConfigError(f"fractions must be three non-negative numbers (train, val, test), got {fractions}")
    speakers = np.asarray(speakers, dtype=object)
    uniq, inverse, counts = np.unique(speakers.astype(str), return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    bounds = np.cumsum(f / f.sum()) * len(speakers)
    split_of = np.zeros(len(uniq), np.int64)
    done = 0
    for k in order:
        middle = done + counts[k] / 2.0
        split_of[k] = min(int(np.searchsorted(bounds, middle, side="right")), 2)
        done += counts[k]
    return split_of[inverse]


def speaker_folds(speakers, n_folds: int, seed: int = 0) -> np.ndarray:
    """Assign every clip to one of ``n_folds`` test folds by speaker (fold index per clip).

    The same walk as :func:`speaker_split` with ``n_folds`` equal shares: the distinct
    speaker ids (sorted) are permuted with ``seed`` and each goes, with all its clips, to the
    fold whose cumulative range holds the middle of its clip range. So every speaker is in
    exactly one fold, folds hold about ``N / n_folds`` clips each, and the union of the folds
    is every clip once.
    """
    if int(n_folds) != n_folds or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    speakers = np.asarray(speakers, dtype=object)
    uniq, inverse, counts = np.unique(speakers.astype(str), return_inverse=True, return_counts=True)
    if len(uniq) < n_folds:
        raise ConfigError(f"cannot make {n_folds} speaker folds from {len(uniq)} speakers")
    order = np.random.default_rng(seed).permutation(len(uniq))
    bounds = np.arange(1, n_folds + 1) * (len(speakers) / n_folds)
    fold_of = np.zeros(len(uniq), np.int64)
    done = 0
    for k in order:
        fold_of[k] = min(int(np.searchsorted(bounds, done + counts[k] / 2.0, side="right")), n_folds - 1)
        done += counts[k]
    return fold_of[inverse]


def fold_split(speakers, fold: int, n_folds: int, seed: int = 0, val_fraction: float = 0.125) -> np.ndarray:
    """Split 0/1/2 (train/val/test) per clip for replicate ``fold`` of a speaker k-fold design.

    Test: the clips of fold ``fold`` of :func:`speaker_folds` (``seed``). Validation: a share
    ``val_fraction`` of the remaining clips, again by speaker (:func:`speaker_split` with seed
    ``seed + 1 + fold``, so every replicate draws its own validation speakers); the rest trains.
    No speaker is in two splits of a replicate, and over the ``n_folds`` replicates every clip
    is a test clip exactly once.
    """
    if not 0 <= int(fold) < n_folds:
        raise ConfigError(f"fold must be in [0, {n_folds}), got {fold!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    speakers = np.asarray(speakers, dtype=object)
    folds = speaker_folds(speakers, n_folds, seed)
    split = np.full(len(speakers), 2, np.int64)
    rest = np.flatnonzero(folds != fold)
    split[rest] = speaker_split(speakers[rest], seed + 1 + int(fold), (1.0 - val_fraction, val_fraction, 0.0))
    return split


def cut_silence(parts: list[tuple[str, int, np.ndarray]], n: int, rng: np.random.Generator, tag: str) -> ClipSet:
    """Cut ``n`` random 1-s ``_silence_`` clips from noise ``parts``.

    ``parts`` are (recording name, start sample of the part in the recording,
    samples). A recording is drawn with probability proportional to the
    number of 1-s windows it has, then a uniform offset. Each clip is its own
    pseudo-speaker ``silence_<tag>_<i>``; its origin is
    ``<name>@<absolute start sample>`` so the time it came from can be checked.
    """
    usable = [p for p in parts if len(p[2]) >= CLIP_SAMPLES]
    if n <= 0:
        return ClipSet.empty()
    if not usable:
        raise DatasetError(f"no background recording part is 1 s long: cannot cut {n} {tag} silence clips")
    windows = np.array([len(p[2]) - CLIP_SAMPLES + 1 for p in usable], float)
    which = rng.choice(len(usable), size=n, p=windows / windows.sum())
    audio, origins = [], []
    for k in which:
        name, start, samples = usable[k]
        off = int(rng.integers(0, len(samples) - CLIP_SAMPLES + 1))
        audio.append(samples[off:off + CLIP_SAMPLES])
        origins.append(f"{name}@{start + off}")
    return ClipSet(np.stack(audio), [CLASS_INDEX[SILENCE]] * n,
                   [f"silence_{tag}_{i}" for i in range(n)], origins)


# --------------------------------------------------------------------------- 12-class test-set layout

def check_test_set_layout(root) -> list[str]:
    """Validate the 12-class test-set layout; return the sorted relative clip paths.

    Raises DatasetError when the folder, a class folder or its clips are missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Speech Commands test-set folder {root} does not exist")
    _require_folders(root, TEST_SET_FOLDERS, "Speech Commands 12-class test-set")
    return _folder_wavs(root, TEST_SET_FOLDERS)


def load_test_set(root=None, noise_root=None, split_seed: int = 0, fractions=(0.7, 0.1, 0.2),
                  noise_test_fraction: float = 0.2, fold: int | None = None, n_folds: int = 5,
                  val_fraction: float = 0.125, keywords=None) -> Corpus:
    """Load the official 12-class test set and re-split it by speaker.

    ``root``: the extracted ``speech_commands_test_set_v0.02`` folder (or
    ``$KWS_SC12_ROOT`` when None). Labels: the folder name (``_unknown_`` and
    ``_silence_`` are classes). Speaker: the 8-hex-digit id in the file name;
    each ``_silence_`` clip is its own pseudo-speaker ``silence_<number>``.

    The split is :func:`speaker_split` with ``split_seed`` and ``fractions``
    (default 70/10/20 by clip count), run separately on the speech clips and
    on the ``_silence_`` clips (so every split gets its share of silence). It
    depends only on the file names and the seed, not on listing order. Clips
    in each split are in relative-path order.

    ``noise_root``: a folder of background recordings (``*.wav``), split by
    time with :func:`split_noise_by_time`; None gives empty noise lists.

    ``fold``: when given, the split is replicate ``fold`` of a speaker k-fold design instead
    (:func:`fold_split` with ``split_seed``, ``n_folds`` and ``val_fraction``; ``fractions`` is
    not used), again run separately on speech and on ``_silence_``.

    ``keywords`` (None: the 12-class task's 10): other words of the archive as keywords. A clip's word is
    its folder, or for ``_unknown_/<word>_<speaker>_nohash_<n>.wav`` the first part of its name; words that
    are no keyword stay ``_unknown_``. The speakers, and so the split, do not depend on the keywords.
    """
    root = resolve_root(root, "KWS_SC12_ROOT", "Speech Commands 12-class test-set")
    rels = check_test_set_layout(root)
    labels, speakers = [], []
    for rel in rels:
        folder, name = rel.split("/", 1)
        word = name.split("_", 1)[0] if folder == UNKNOWN else folder
        labels.append(CLASS_INDEX[SILENCE] if folder == SILENCE else word_to_class(word, keywords))
        speakers.append(f"silence_{name[:-4]}" if folder == SILENCE else _parse_speaker(name, rel))
    audio, ok, bad = _read_clips(root, rels)
    skipped = _report_bad(root, bad, len(rels))
    clips = ClipSet(audio[ok], np.asarray(labels)[ok], np.asarray(speakers, object)[ok], np.asarray(rels, object)[ok])
    # speech and silence clips are split separately so each split gets its share of _silence_
    split = np.zeros(len(clips), np.int64)
    is_sil = clips.labels == CLASS_INDEX[SILENCE]
    for group in (~is_sil, is_sil):
        if fold is None:
            split[group] = speaker_split(clips.speakers[group], split_seed, fractions)
        else:
            split[group] = fold_split(clips.speakers[group], fold, n_folds, split_seed, val_fraction)
    noise_train, noise_test = [], []
    if noise_root is not None:
        noise_root = resolve_root(noise_root, "KWS_SC_NOISE_ROOT", "background-noise")
        noise_train, noise_test = split_noise_by_time(_read_noise(noise_root)[1], noise_test_fraction)
    return Corpus(
        source="speech_commands_test_set_v0.02", classes=class_names(keywords),
        train=clips.subset(np.flatnonzero(split == 0)),
        val=clips.subset(np.flatnonzero(split == 1)),
        test=clips.subset(np.flatnonzero(split == 2)),
        noise_train=noise_train, noise_test=noise_test,
        notes={"root": str(root), "split_seed": split_seed,
               **({"fractions": list(fractions), "split": "by speaker, see kwslib.data.speech_commands.speaker_split"}
                  if fold is None else
                  {"fold": int(fold), "n_folds": int(n_folds), "val_fraction": val_fraction,
                   "split": "speaker fold, see kwslib.data.speech_commands.fold_split"}),
               "noise_test_fraction": noise_test_fraction, "skipped": skipped},
    )


# --------------------------------------------------------------------------- full layout

def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        raise DatasetError(f"list file {path} is missing (the full Speech Commands layout has it)")
    return {line.strip().removeprefix("./") for line in path.read_text().splitlines() if line.strip()}


def check_full_layout(root, version: str = "v0.02") -> tuple[list[str], set[str], set[str]]:
    """Validate the full-archive layout; return (sorted relative clip paths, val list, test list).

    Only the folders of ``version``'s words are read (a v0.02 folder loaded as
    v0.01 ignores the five newer words).
    """
    if version not in ("v0.01", "v0.02"):
        raise ConfigError(f"version must be 'v0.01' or 'v0.02', got {version!r}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Speech Commands {version} folder {root} does not exist")
    words = ALL_WORDS_V2 if version == "v0.02" else ALL_WORDS_V1
    if (root / UNKNOWN).is_dir() and (root / SILENCE).is_dir() and not (root / "testing_list.txt").exists():
        raise DatasetError(f"{root} looks like the 12-class test-set archive, not the full Speech Commands "
                           f"{version} archive (no testing_list.txt, has _unknown_/_silence_): use load_test_set")
    _require_folders(root, words + [BACKGROUND], f"full Speech Commands {version}")
    val, test = _read_list(root / "validation_list.txt"), _read_list(root / "testing_list.txt")
    return _folder_wavs(root, words), val, test


def load_full(root=None, version: str = "v0.02", silence_fraction: float = 0.1,
              unknown_fraction: float | None = None, seed: int = 0,
              noise_test_fraction: float = 0.2, keywords=None) -> Corpus:
    """Load the full Speech Commands archive with its official split.

    ``root``: the extracted archive (or ``$KWS_SC_FULL_ROOT`` when None).
    Clips listed in ``validation_list.txt`` / ``testing_list.txt`` are val /
    test, every other clip of the version's words is train; the 10 keywords
    are their own classes, the other words ``_unknown_``.

    ``unknown_fraction`` (None: keep all): per split, keep a seeded random
    ``round(unknown_fraction * number of keyword clips)`` unknown clips (as in
    TensorFlow's ``input_data.py``). ``_silence_``: per split,
    ``round(silence_fraction * number of word clips)`` random 1-s cuts of the
    background recordings: train from the leading ``1 - noise_test_fraction``
    of each recording, val and test from the trailing part (the same parts
    as ``noise_train`` / ``noise_test``), so no noise audio is both trained
    and tested on. Memory: the full v0.02 set is about 6.8 GB as float32.
    """
    root = resolve_root(root, "KWS_SC_FULL_ROOT", f"Speech Commands {version}")
    rels, val_list, test_list = check_full_layout(root, version)
    words = set(ALL_WORDS_V2 if version == "v0.02" else ALL_WORDS_V1)
    missing = len({r for r in val_list | test_list if r.split("/", 1)[0] in words} - set(rels))
    if missing:
        warnings.warn(f"{missing} clips named in the list files of {root} are not in its word folders", stacklevel=2)
    split = np.array([2 if r in test_list else 1 if r in val_list else 0 for r in rels])
    labels = np.array([word_to_class(r.split("/", 1)[0], keywords) for r in rels])
    rng = np.random.default_rng(seed)
    if unknown_fraction is not None:
        keep = labels != CLASS_INDEX[UNKNOWN]
        for s in range(3):
            unk = np.flatnonzero((split == s) & ~keep)
            n_kw = int(np.sum((split == s) & keep))
            n = min(len(unk), int(round(unknown_fraction * n_kw)))
            keep[np.sort(rng.choice(unk, size=n, replace=False))] = True
        rels, split, labels = [r for r, k in zip(rels, keep) if k], split[keep], labels[keep]
    speakers = np.array([_parse_speaker(r.split("/", 1)[1], r) for r in rels], object)
    audio, ok, bad = _read_clips(root, rels)
    skipped = _report_bad(root, bad, len(rels))
    clips = ClipSet(audio[ok], labels[ok], speakers[ok], np.asarray(rels, object)[ok])
    del audio
    split = split[ok]

    names, recs = _read_noise(root / BACKGROUND)
    noise_train, noise_test = split_noise_by_time(recs, noise_test_fraction)
    names = [f"{BACKGROUND}/{n}" for n in names]
    train_parts = [(n, 0, a) for n, a in zip(names, noise_train)]
    test_parts = [(n, len(tr), a) for n, tr, a in zip(names, noise_train, noise_test)]
    out = {}
    for s, tag in enumerate(("train", "val", "test")):
        words = clips.subset(np.flatnonzero(split == s))
        n_sil = int(round(silence_fraction * len(words)))
        sil = cut_silence(train_parts if s == 0 else test_parts, n_sil, rng, tag)
        out[tag] = ClipSet.concat([words, sil])
    return Corpus(
        source=f"speech_commands_{version}", classes=class_names(keywords), train=out["train"], val=out["val"], test=out["test"],
        noise_train=noise_train, noise_test=noise_test,
        notes={"root": str(root), "version": version, "seed": seed, "silence_fraction": silence_fraction,
               "unknown_fraction": unknown_fraction, "noise_test_fraction": noise_test_fraction,
               "split": "official validation_list.txt / testing_list.txt",
               "skipped": skipped, "listed_but_missing": missing},
    )


# --------------------------------------------------------------------------- download

def archive_name(version: str, test_set: bool = False) -> str:
    if version not in ("v0.01", "v0.02"):
        raise ConfigError(f"version must be 'v0.01' or 'v0.02', got {version!r}")
    return f"speech_commands_{'test_set_' if test_set else ''}{version}"


def safe_extract(archive, dest) -> None:
    """Extract a tar archive into ``dest``, refusing any member that could escape it.

    Rejected (DatasetError, nothing extracted): absolute names, ``..``
    components, names resolving outside ``dest``, links, devices and fifos.
    The archives only hold folders and regular files.
    """
    dest = Path(dest).resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:
            target = (dest / m.name).resolve()
            if (m.name.startswith(("/", "\\")) or ".." in Path(m.name).parts
                    or (target != dest and dest not in target.parents)):
                raise DatasetError(f"{archive}: member {m.name!r} would be written outside {dest}; refusing to extract")
            if not (m.isfile() or m.isdir()):
                raise DatasetError(f"{archive}: member {m.name!r} is a link or special file; refusing to extract")
        for m in members:
            tar.extract(m, dest, set_attrs=False, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def _fetch(url: str, part: Path, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current size with an HTTP Range request."""
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range past the end: the .part file is already complete
            return
        raise DatasetError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    with resp:
        if have and resp.status != 206:  # server ignored the range: start over
            have = 0
        size = resp.headers.get("Content-Length")
        total = have + int(size) if size is not None else None
        with open(part, "ab" if have else "wb") as f, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=Path(url).name) as bar:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))


def download(version: str, dest, test_set: bool = False, timeout: float = 10.0, url: str | None = None) -> Path:
    """Download and extract an official Speech Commands archive; return its folder ``dest/<name>``.

    ``name`` is ``speech_commands_v0.02`` (full) or ``speech_commands_test_set_v0.02``
    (``test_set=True``). An existing valid folder is returned as is. The
    archive is fetched into ``dest/<name>.tar.gz.part`` (resumed after an
    interruption), extracted into a temporary folder with :func:`safe_extract`,
    checked (layout and at least :data:`MIN_CLIPS` clips) and only then renamed
    to ``dest/<name>``; the archive is deleted afterwards. ``url`` overrides the
    official address (mirrors, tests).

    Raises :class:`OfflineError` when the server cannot be reached.
    """
    name = archive_name(version, test_set)
    url = url or f"{BASE_URL}{name}.tar.gz"
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / name

    def verify(folder: Path) -> None:
        rels = check_test_set_layout(folder) if test_set else check_full_layout(folder, version)[0]
        if len(rels) < MIN_CLIPS[(version, test_set)]:
            raise DatasetError(f"{folder} holds {len(rels)} clips, the official {name} archive has "
                               f"{MIN_CLIPS[(version, test_set)]}: incomplete download or wrong archive")

    if final.is_dir():
        verify(final)
        return final
    part = dest / f"{name}.tar.gz.part"
    try:
        _fetch(url, part, timeout)
    except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        env = "KWS_SC12_ROOT" if test_set else "KWS_SC_FULL_ROOT"
        raise OfflineError(
            f"cannot download {url} ({reason}). Download it on a machine with network access, "
            f"extract it (tar xzf {name}.tar.gz -C {name}) and pass that folder as the root "
            f"parameter or set the environment variable {env} to it") from exc
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest))
    try:
        try:
            safe_extract(part, tmp)
        except tarfile.TarError as exc:
            raise DatasetError(f"downloaded archive {url} is not a valid .tar.gz ({exc})") from exc
        content = tmp
        entries = list(tmp.iterdir())
        if len(entries) == 1 and entries[0].is_dir() and not (tmp / KEYWORDS[0]).exists():
            content = entries[0]  # archive wrapped in one top-level folder
        verify(content)
        os.replace(content, final)
    except DatasetError:
        part.unlink(missing_ok=True)  # a bad archive: the next try downloads afresh instead of resuming onto it
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    part.unlink(missing_ok=True)
    return final
