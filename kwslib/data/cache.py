"""Arrow caching of prepared corpora and features: prepare once, reuse in every notebook.

A cached corpus is a folder::

    <path>/train/ val/ test/   datasets.Dataset.save_to_disk of the split
                                (audio: fixed-size list of float32, label, speaker, origin);
                                absent for an empty split
    <path>/noise/              one row per noise recording part (part, index, audio); absent if none
    <path>/meta.json           written last: format, source, notes, row counts

It is written into a temporary sibling folder and renamed into place, so a
crash while saving leaves either the old cache or none, never half of one.
A folder without a readable ``meta.json`` or whose splits do not match it is
*damaged*: :func:`load_corpus_cache` raises :class:`DatasetError`, and
:func:`cached` warns and rebuilds it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path, PurePath
from typing import Callable

import numpy as np

from ..errors import ConfigError, DatasetError
from ..io import atomic_path, atomic_write_json
from .base import CLASSES, CLIP_SAMPLES, ClipSet, Corpus

FORMAT = 1
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- keys

def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise ConfigError(f"config_hash: cannot hash a {type(obj).__name__} ({obj!r}); use JSON-able values")


def config_hash(obj) -> str:
    """First 16 hex digits of the sha256 of ``obj`` as canonical JSON (sorted keys).

    ``obj``: a dict or dataclass of JSON-able values (paths, tuples and numpy
    scalars are converted); equal configs give equal hashes in any process.
    """
    text = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- corpus <-> Arrow

@contextlib.contextmanager
def _quiet():
    """Silence datasets' progress bars for a moment."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


def _clips_to_dataset(clips: ClipSet):
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    audio = pa.FixedSizeListArray.from_arrays(pa.array(clips.audio.reshape(-1), pa.float32()), CLIP_SAMPLES)
    table = pa.table({"audio": audio, "label": pa.array(clips.labels, pa.int64()),
                      "speaker": pa.array([str(s) for s in clips.speakers], pa.string()),
                      "origin": pa.array([str(s) for s in clips.origins], pa.string())})
    return datasets.Dataset(InMemoryTable(table))


def _dataset_to_clips(ds) -> ClipSet:
    flat = ds.data.column("audio").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return ClipSet(np.array(flat, np.float32).reshape(-1, CLIP_SAMPLES),
                   ds.data.column("label").to_numpy(),
                   np.array(ds.data.column("speaker").to_pylist(), object),
                   np.array(ds.data.column("origin").to_pylist(), object))


def _noise_to_dataset(corpus: Corpus):
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    parts = [(part, i, np.asarray(a, np.float32)) for part, recs in (("train", corpus.noise_train),
                                                                      ("test", corpus.noise_test))
             for i, a in enumerate(recs)]
    offsets = np.cumsum([0] + [len(a) for _, _, a in parts]).astype(np.int64)
    values = np.concatenate([a for _, _, a in parts]) if parts else np.zeros(0, np.float32)
    table = pa.table({"part": pa.array([p for p, _, _ in parts], pa.string()),
                      "index": pa.array([i for _, i, _ in parts], pa.int32()),
                      "audio": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()))})
    return datasets.Dataset(InMemoryTable(table))


def save_corpus(corpus: Corpus, path) -> None:
    """Save ``corpus`` as Arrow under ``path`` (replacing what is there), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        with _quiet():
            # an empty split is not written (datasets cannot load back a 0-row save): meta.json says 0 rows
            for name, clips in corpus.splits().items():
                if len(clips):
                    _clips_to_dataset(clips).save_to_disk(str(tmp / name))
            if corpus.noise_train or corpus.noise_test:
                _noise_to_dataset(corpus).save_to_disk(str(tmp / "noise"))
        atomic_write_json(tmp / "meta.json", {
            "format": FORMAT, "source": corpus.source, "notes": _jsonable(corpus.notes), "classes": list(corpus.classes),
            "rows": {name: len(clips) for name, clips in corpus.splits().items()},
            "noise": [len(corpus.noise_train), len(corpus.noise_test)]})
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_corpus_cache(path) -> Corpus:
    """Load a corpus saved by :func:`save_corpus`; DatasetError if it is missing or damaged."""
    import datasets

    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise DatasetError(f"no corpus cache at {path} (no meta.json: missing or never finished)")
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, this kwslib reads format {FORMAT}")
        splits = {name: _dataset_to_clips(datasets.load_from_disk(str(path / name))) if meta["rows"][name]
                  else ClipSet.empty() for name in SPLITS}
        for name in SPLITS:
            if len(splits[name]) != meta["rows"][name]:
                raise ValueError(f"split {name} has {len(splits[name])} rows, meta.json says {meta['rows'][name]}")
        noise_parts = {"train": [], "test": []}
        if sum(meta["noise"]):
            noise = datasets.load_from_disk(str(path / "noise"))
            audio = noise.data.column("audio").combine_chunks()
            for k, (part, index) in enumerate(zip(noise["part"], noise["index"])):
                noise_parts[part].append((index, np.array(audio[k].values.to_numpy(zero_copy_only=False), np.float32)))
        noise_train, noise_test = ([a for _, a in sorted(noise_parts[p], key=lambda t: t[0])] for p in ("train", "test"))
        if [len(noise_train), len(noise_test)] != meta["noise"]:
            raise ValueError("noise recordings do not match meta.json")
    except Exception as exc:
        raise DatasetError(f"corpus cache at {path} is damaged ({type(exc).__name__}: {exc}); delete it to rebuild") from exc
    return Corpus(source=meta["source"], train=splits["train"], val=splits["val"], test=splits["test"],
                  noise_train=noise_train, noise_test=noise_test, notes=meta["notes"],
                  classes=list(meta.get("classes") or CLASSES))  # caches written before class lists: the 12 classes


def cached(builder: Callable[[], Corpus], key: dict, cache_dir) -> Corpus:
    """Return the corpus cached under ``cache_dir/<config_hash(key)>/``, building and saving it on a miss.

    A damaged cache is rebuilt with a warning (not an error: the builder can
    always make it again). ``key`` must describe everything the builder's
    output depends on; it is saved next to the data as ``key.json``.
    """
    folder = Path(cache_dir) / config_hash(key)
    if (folder / "meta.json").is_file():
        try:
            return load_corpus_cache(folder)
        except DatasetError as exc:
            warnings.warn(f"{exc}; rebuilding it", stacklevel=2)
    elif folder.exists():
        warnings.warn(f"corpus cache at {folder} is incomplete (no meta.json); rebuilding it", stacklevel=2)
    corpus = builder()
    save_corpus(corpus, folder)
    atomic_write_json(folder / "key.json", _jsonable(key))
    return corpus


def cached_features(name: str, key: dict, cache_dir, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """A float32 feature array cached as ``cache_dir/<name>-<config_hash(key)>.npy``.

    ``compute()`` runs on a miss (its result is cast to float32) and the file
    is written atomically. A damaged file is recomputed with a warning.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"cached_features: name {name!r} must be letters, digits, '_', '-' or '.'")
    path = Path(cache_dir) / f"{name}-{config_hash(key)}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except Exception as exc:
            warnings.warn(f"feature cache {path} is damaged ({exc}); recomputing it", stacklevel=2)
    arr = np.ascontiguousarray(compute(), dtype=np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)
    return arr
