"""Log-mel features of a whole corpus split, computed in parallel processes and cached.

    feats = split_features(corpus.train, FeatureConfig(), cache_dir, num_proc=8)   # [N, frames, n_mels]

The clips go into an Arrow table (``datasets.Dataset``) and
``Dataset.map(num_proc=N, batched=True)`` computes their features with
:func:`kwslib.frontend.features.clip_features` in N worker processes (one torch thread
each), shard by shard. The result is cached by
:func:`kwslib.data.cache.cached_features` under a key made of the feature
config and a sha256 of the clips' samples, so a second call (another
notebook, another rank of a ``torchrun`` job) reads the ``.npy`` file.

Features of a clip do not depend on the other clips of its batch: the
numbers equal ``clip_features(clips.audio, feat_cfg)`` (tested).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from .base import ClipSet
from ..errors import AudioError
from ..frontend.features import FeatureConfig, num_frames

#: Clips per ``map`` batch (each worker computes one batch at a time: ~60 MB of float64 spectra at 1 s clips).
MAP_BATCH = 256


def audio_digest(audio: np.ndarray) -> str:
    """sha256 of a float32 audio array (its shape included): the cache key of its features."""
    a = np.ascontiguousarray(audio, np.float32)
    h = hashlib.sha256(repr(a.shape).encode())
    step = 1 << 12  # rows per update: bounded memory for a large corpus
    for i in range(0, len(a), step):
        h.update(a[i:i + step].tobytes())
    return h.hexdigest()


def _features_batch(batch: dict, feat_cfg: dict) -> dict:
    """``Dataset.map`` worker: a batch of clips -> their log-mel features (one torch thread per worker)."""
    import torch

    from ..frontend.features import clip_features

    torch.set_num_threads(1)
    audio = np.asarray(batch["audio"], np.float32)
    return {"features": clip_features(audio, FeatureConfig(**feat_cfg)).numpy()}


def compute_features(audio: np.ndarray, feat_cfg: FeatureConfig, num_proc: int | None = None) -> np.ndarray:
    """Log-mel features [N, frames, n_mels] of clips [N, samples], through ``datasets.map(num_proc=...)``.

    ``num_proc``: worker processes (None: the CPU count; 1: no worker processes).
    """
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    from .cache import _quiet

    audio = np.ascontiguousarray(audio, np.float32)
    if audio.ndim != 2:
        raise ValueError(f"compute_features: expected clips [N, samples], got shape {audio.shape}")
    n, samples = audio.shape
    for i in range(0, n, 4096):  # name the first bad clip (a worker's error could not say which)
        bad = np.flatnonzero(~np.isfinite(audio[i:i + 4096]).all(axis=1))
        if len(bad):
            raise AudioError(f"compute_features: clip {i + int(bad[0])} contains NaN or infinite samples")
    frames = num_frames(samples, feat_cfg)
    if n == 0 or frames == 0:
        return np.zeros((n, frames, feat_cfg.n_mels), np.float32)
    num_proc = max(1, min(int(num_proc or os.cpu_count() or 1), -(-n // MAP_BATCH)))
    column = pa.FixedSizeListArray.from_arrays(pa.array(audio.reshape(-1), pa.float32()), samples)
    ds = datasets.Dataset(InMemoryTable(pa.table({"audio": column})))
    out_features = datasets.Features({"features": datasets.Array2D((frames, feat_cfg.n_mels), "float32")})
    with _quiet():
        mapped = ds.map(_features_batch, batched=True, batch_size=MAP_BATCH, num_proc=num_proc if num_proc > 1 else None,
                        remove_columns=["audio"], features=out_features,
                        fn_kwargs={"feat_cfg": dataclasses.asdict(feat_cfg)}, keep_in_memory=True,
                        load_from_cache_file=False, desc="log-mel features")
    return np.asarray(mapped.with_format("numpy")["features"], np.float32).reshape(n, frames, feat_cfg.n_mels)


def split_features(clips: ClipSet | np.ndarray, feat_cfg: FeatureConfig, cache_dir, name: str = "features",
                   num_proc: int | None = None) -> np.ndarray:
    """Cached :func:`compute_features` of a split (a ClipSet or a clip array), as float32 [N, frames, n_mels].

    The cache file is ``cache_dir/<name>-<hash>.npy`` (written atomically);
    the hash covers the feature config and the clips' samples.
    """
    from .cache import cached_features

    audio = clips.audio if isinstance(clips, ClipSet) else np.asarray(clips, np.float32)
    key = {"kind": "logmel-clips", "version": 1, "features": dataclasses.asdict(feat_cfg),
           "audio_sha256": audio_digest(audio)}
    return cached_features(name, key, cache_dir, lambda: compute_features(audio, feat_cfg, num_proc))
