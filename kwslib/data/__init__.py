"""Data sources behind one interface: :func:`load_corpus` returns a :class:`Corpus`.

Sources (``DataConfig.source``):
- ``synthetic``: offline espeak-ng keyword corpus (the default, no data needed)
- ``speech_commands_test_set``: the official v0.02 12-class test-set archive,
  re-split by speaker (the ``sc12`` profile)
- ``speech_commands``: the full v0.01/v0.02 archive with its official lists
- ``hub``: the ``google/speech_commands`` dataset on the Hugging Face hub (online only)

Prepared corpora are cached as Arrow (``datasets``) under ``cache_dir`` keyed
by a hash of the config, so the notebooks of one profile prepare data once.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from ..errors import ConfigError
from .base import CLASSES, CLIP_SAMPLES, KEYWORDS, SAMPLE_RATE, ClipSet, Corpus  # noqa: F401
from .synthetic import SyntheticConfig

SOURCES = ("synthetic", "speech_commands_test_set", "speech_commands", "hub")


@dataclass
class DataConfig:
    source: str = "synthetic"
    root: str | None = None  # dataset folder; when None, read from the environment variable root_env
    root_env: str = "KWS_SC12_ROOT"
    noise_root: str | None = None  # folder of the background-noise WAVs; None: from noise_env (may be unset)
    noise_env: str = "KWS_SC_NOISE_ROOT"
    version: str = "v0.02"  # full archive version (speech_commands) or hub config
    split_seed: int = 0  # speaker re-split of the test-set layout: fixed once chosen
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    noise_test_fraction: float = 0.2  # trailing share of each noise recording kept for testing
    silence_fraction: float = 0.1  # full archive: share of _silence_ clips cut from noise
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    synthetic_seed: int = 0
    mix_synthetic_train: bool = False  # add the synthetic corpus's train split to a real train split
    # Rejection training: this many hours of espeak-ng non-keyword speech (the "train" half of the
    # vocabulary; kwslib.data.negatives.unknown_training_clips), cut into 1-s _unknown_ clips, join the train split.
    unknown_speech_hours: float = 0.0
    unknown_speech_seed: int = 2000
    # Rejection training on real speech: these parts (kwslib.data.negatives.REAL_PARTS: "train", "val") of the real
    # non-keyword speech (split by source folder, kwslib.data.negatives.real_negative_parts), cut into 1-s _unknown_
    # clips, join the train split. The folder: real_root, else $real_env. The "test" part is held out for the
    # per-hour axis (negatives.real_parts); ExperimentConfig refuses a run that would test on what it trained on.
    unknown_real_parts: list[str] = field(default_factory=list)
    real_root: str | None = None
    real_env: str = "KWS_REAL_NEGATIVES_ROOT"
    # speech_commands_test_set only: replicate `fold` of a speaker k-fold design (None: the split above)
    fold: int | None = None
    n_folds: int = 5
    val_fraction: float = 0.125  # of the clips outside the test fold, by speaker
    # The keywords: one or more words or short phrases; the classes are _silence_, _unknown_, then these.
    # None: the 10 of Speech Commands' 12-class task (yes, no, up, ...).
    keywords: list[str] | None = None
    # Your own recordings of the keywords (kwslib.data.recordings): a folder ROOT/<keyword>/<files> of any common
    # audio format; every file joins the train split as a 1-s clip. None: none.
    recordings: str | None = None
    # At most this many clips of each keyword stay in the real source's train split (None: all; 0: none, so the
    # keywords are learnt from synthetic speech or recordings alone). The clips kept are those of the first
    # speakers in a seeded order (real_keyword_seed), so a few clips come from a few people, as a user's would.
    # _unknown_, _silence_, validation and test clips are not touched.
    real_keyword_clips: int | None = None
    real_keyword_seed: int = 0

    def __post_init__(self):
        if isinstance(self.synthetic, dict):
            from ..config import from_dict

            self.synthetic = from_dict(SyntheticConfig, self.synthetic, where="data.synthetic")
        if self.source not in SOURCES:
            raise ConfigError(f"data.source: unknown source {self.source!r}; choose one of {list(SOURCES)}")
        if len(self.split_fractions) != 3 or abs(sum(self.split_fractions) - 1) > 1e-6 or min(self.split_fractions) <= 0:
            raise ConfigError(f"data.split_fractions must be three positive numbers summing to 1, got {self.split_fractions}")
        if self.unknown_speech_hours < 0:
            raise ConfigError(f"data.unknown_speech_hours must be >= 0, got {self.unknown_speech_hours!r}")
        from .negatives import REAL_PARTS

        trainable = [p for p in REAL_PARTS if p != "test"]
        bad = sorted(set(self.unknown_real_parts) - set(trainable))
        if bad:
            raise ConfigError(f"data.unknown_real_parts: {bad} cannot be trained on; choose from {trainable} "
                              "(the 'test' part of the real negatives is held out)")
        if self.keywords is not None:
            from .base import check_keywords

            from .base import ALL_WORDS_V1, ALL_WORDS_V2

            self.keywords = check_keywords(self.keywords, "data.keywords")
            if self.source == "hub":
                raise ConfigError("data.keywords: the hub source reads Speech Commands' 12 classes only; use "
                                  "speech_commands or speech_commands_test_set for other words of the archive")
        if self.recordings is not None:
            if not isinstance(self.recordings, str) or not self.recordings.strip():
                raise ConfigError(f"data.recordings must be a folder path, got {self.recordings!r}")
            from pathlib import Path

            if not Path(self.recordings).is_dir():
                raise ConfigError(f"data.recordings: folder {self.recordings} does not exist")
        if self.real_keyword_clips is not None:
            if not isinstance(self.real_keyword_clips, int) or isinstance(self.real_keyword_clips, bool) \
                    or self.real_keyword_clips < 0:
                raise ConfigError(f"data.real_keyword_clips must be None or an integer >= 0, got {self.real_keyword_clips!r}")
            if self.source == "synthetic":
                raise ConfigError("data.real_keyword_clips caps a real source's keyword clips; source is synthetic")
        if self.keywords is not None:
            from .recordings import check_sources

            if self.source == "synthetic" or self.mix_synthetic_train:
                spoken = set(self.keywords)  # espeak-ng speaks any text
            else:
                words = ALL_WORDS_V1 if (self.source == "speech_commands" and self.version == "v0.01") else ALL_WORDS_V2
                spoken = set(self.keywords) & set(words)
            check_sources(self.keywords, spoken, self.recordings)
        if self.fold is not None and not (isinstance(self.fold, int) and 0 <= self.fold < self.n_folds):
            raise ConfigError(f"data.fold must be an integer in [0, data.n_folds={self.n_folds}), got {self.fold!r}")


def _noise_root(cfg: DataConfig):
    from .speech_commands import resolve_root

    if cfg.noise_root is None and not os.environ.get(cfg.noise_env):
        return None
    return resolve_root(cfg.noise_root, cfg.noise_env, "background noise folder")


def cap_keyword_clips(clips: ClipSet, n: int, seed: int, n_classes: int) -> tuple[ClipSet, dict]:
    """``clips`` with at most ``n`` clips of each keyword class (indices 2..``n_classes`` - 1): those of the first
    speakers in a permutation seeded by ``seed`` (within a speaker, in clip order). Other classes stay whole.
    Returns the clips (in their original order) and {keyword index: clips kept}."""
    import numpy as np

    speakers = sorted(set(clips.speakers.tolist()))
    rank = {s: r for r, s in enumerate(np.asarray(speakers, object)[np.random.default_rng([seed, 11]).permutation(len(speakers))])}
    keep = np.ones(len(clips), bool)
    kept = {}
    for k in range(2, n_classes):
        idx = np.flatnonzero(clips.labels == k)
        order = idx[np.argsort([rank[s] for s in clips.speakers[idx]], kind="stable")]
        keep[order[n:]] = False
        kept[int(k)] = int(min(n, len(idx)))
    return clips.subset(np.flatnonzero(keep)), kept


def build_corpus(cfg: DataConfig) -> Corpus:
    """Build the corpus the config describes (no caching)."""
    from . import synthetic

    if cfg.source == "synthetic":
        corpus = synthetic.generate_corpus(cfg.synthetic, seed=cfg.synthetic_seed, keywords=cfg.keywords)
    elif cfg.source == "hub":
        from .hub import load_hub

        corpus = load_hub(cfg.version)
    else:
        from . import speech_commands as sc

        root = sc.resolve_root(cfg.root, cfg.root_env, "Speech Commands")
        if cfg.source == "speech_commands_test_set":
            corpus = sc.load_test_set(root, noise_root=_noise_root(cfg), split_seed=cfg.split_seed,
                                      fractions=tuple(cfg.split_fractions), noise_test_fraction=cfg.noise_test_fraction,
                                      fold=cfg.fold, n_folds=cfg.n_folds, val_fraction=cfg.val_fraction,
                                      keywords=cfg.keywords)
        else:
            corpus = sc.load_full(root, version=cfg.version, silence_fraction=cfg.silence_fraction,
                                  seed=cfg.split_seed, noise_test_fraction=cfg.noise_test_fraction,
                                  keywords=cfg.keywords)
    if cfg.real_keyword_clips is not None:
        corpus.train, kept = cap_keyword_clips(corpus.train, cfg.real_keyword_clips, cfg.real_keyword_seed,
                                               len(corpus.classes))
        corpus.notes["real_keyword_train_clips"] = kept
    if cfg.recordings is not None:
        from .recordings import load_recordings

        rec = load_recordings(cfg.recordings, corpus.keywords if cfg.keywords is not None else None)
        corpus.train = ClipSet.concat([corpus.train, rec])
        corpus.notes["recordings_train_clips"] = len(rec)
    if cfg.unknown_speech_hours > 0:
        from .negatives import unknown_training_clips

        extra = unknown_training_clips(cfg.unknown_speech_hours, seed=cfg.unknown_speech_seed, keywords=cfg.keywords)
        corpus.train = ClipSet.concat([corpus.train, extra])
        corpus.notes["unknown_speech_train_clips"] = len(extra)
    if cfg.unknown_real_parts:
        from .negatives import real_unknown_training_clips

        extra = real_unknown_training_clips(cfg.unknown_real_parts, cfg.real_root, cfg.real_env)
        corpus.train = ClipSet.concat([corpus.train, extra])
        corpus.notes["unknown_real_train_clips"] = len(extra)
    if cfg.mix_synthetic_train and cfg.source != "synthetic":
        synth = synthetic.generate_corpus(cfg.synthetic, seed=cfg.synthetic_seed, keywords=cfg.keywords)
        corpus.train = ClipSet.concat([corpus.train, synth.train])
        corpus.notes["mixed_synthetic_train_clips"] = len(synth.train)
    return corpus


def load_corpus(cfg: DataConfig, cache_dir=None) -> Corpus:
    """Build the corpus, or load it from the Arrow cache under ``cache_dir`` when prepared before."""
    if cache_dir is None:
        return build_corpus(cfg)
    from .cache import cached

    key = dataclasses.asdict(cfg)
    for name in ("keywords", "recordings", "real_keyword_clips"):  # unset: the key of caches written before them
        if key[name] is None:
            del key[name]
            if name == "real_keyword_clips":
                del key["real_keyword_seed"]
    if cfg.recordings is not None:  # the recordings' files, so a changed folder makes a new corpus
        from pathlib import Path

        key["_recordings"] = sorted((str(f.relative_to(cfg.recordings)), f.stat().st_size, f.stat().st_mtime_ns)
                                    for f in Path(cfg.recordings).rglob("*") if f.is_file())
    # the data location is part of the key only through what is read; resolve it for the key
    key["_root"] = os.environ.get(cfg.root_env) if cfg.root is None else cfg.root
    key["_noise_root"] = os.environ.get(cfg.noise_env) if cfg.noise_root is None else cfg.noise_root
    key["_schema"] = 2  # 2: unknown_speech_hours applies to every source
    if cfg.unknown_real_parts:
        key["_real_root"] = os.environ.get(cfg.real_env) if cfg.real_root is None else cfg.real_root
    return cached(lambda: build_corpus(cfg), key, cache_dir)
