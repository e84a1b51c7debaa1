"""Glue for the notebooks: one typed config per notebook, data preparation, the float baseline.

The notebooks stay thin: each builds an :class:`ExperimentConfig` from its
papermill parameters (strictly checked: an unknown key or a wrong type is a
:class:`ConfigError` naming it), then calls a few functions here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import from_dict
from .data import DataConfig, load_corpus
from .data.base import Corpus
from .evaluate import EvalConfig, EvalData, prepare_eval
from .features import FeatureConfig
from .model import KWSNet, ModelConfig, build_model, count_params, load_model, save_model
from .train import TrainConfig, clip_features, fit, normalization_stats, set_seed


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        from .errors import ConfigError

        if self.model.n_mels != self.features.n_mels:
            raise ConfigError(f"model.n_mels ({self.model.n_mels}) must equal features.n_mels ({self.features.n_mels})")


def experiment_config(data=None, features=None, model=None, train=None, eval=None) -> ExperimentConfig:
    """Build the config from the notebook's parameter dicts (papermill injects them from params YAML)."""
    return from_dict(ExperimentConfig, {"data": data or {}, "features": features or {}, "model": model or {},
                                        "train": train or {}, "eval": eval or {}}, where="params")


@dataclass
class Paths:
    results: Path
    cache: Path

    @property
    def figures(self) -> Path:
        return self.results / "figures"

    @property
    def models(self) -> Path:
        return self.results / "models"

    @property
    def checkpoints(self) -> Path:
        return self.results / "checkpoints"


#: Where a notebook run with its default parameters writes (in Lab, say): ignored by git.
SCRATCH = Path(__file__).resolve().parent.parent / "results" / "scratch"


def paths(results_dir=None, cache_dir=None) -> Paths:
    """The run's folders (created); ConfigError naming the folder when it cannot be made.

    ``results_dir=None`` is :data:`SCRATCH` (``results/scratch/`` of the repository, whatever the
    working directory: Lab runs a notebook in ``notebooks/``); a relative path is taken from the
    working directory (``make reproduce`` runs the notebooks in the repository root).
    """
    from .errors import ConfigError

    results = Path(results_dir) if results_dir is not None else SCRATCH
    cache = Path(cache_dir) if cache_dir else results / "cache"
    p = Paths(results, cache)
    for d in (p.results, p.figures, p.models, p.cache):
        for parent in [d, *d.parents]:
            if parent.exists() and not parent.is_dir():
                raise ConfigError(f"cannot use {d} as a results folder: {parent} is a file")
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create results folder {d}: {exc.strerror}") from exc
    return p


def prepare(cfg: ExperimentConfig, p: Paths) -> tuple[Corpus, EvalData]:
    """Load (or build and cache) the corpus and prepare the test features once."""
    corpus = load_corpus(cfg.data, cache_dir=p.cache / "corpus")
    data = prepare_eval(corpus, cfg.features, cfg.model.context_frames, cfg.model.step_frames, cfg.eval)
    return corpus, data


def train_float(cfg: ExperimentConfig, corpus: Corpus, p: Paths, log=print, resume: bool = True, device="auto"):
    """Train the float baseline; returns (model, history list, seconds). Saved as models/float.pt."""
    set_seed(cfg.train.seed)
    model = build_model(cfg.model)
    mean, std = normalization_stats(clip_features(corpus.train.audio, cfg.features))
    model.set_normalization(mean, std)
    t0 = time.time()
    ckpt_dir = p.checkpoints / "float" if resume else None
    from .distributed import resolve_device

    hist = fit(model, corpus.train, corpus.val, cfg.features, cfg.train, noise_train=corpus.noise_train,
               ckpt_dir=ckpt_dir, log=log, progress=False, device=resolve_device(device))
    seconds = time.time() - t0
    save_model(p.models / "float.pt", model, kind="float", extra={"history": hist.epochs})
    return model, hist.epochs, seconds


def load_float(p: Paths) -> KWSNet:
    return load_model(p.models / "float.pt")


def data_summary(corpus: Corpus, data: EvalData) -> dict:
    return {"source": corpus.source, "train_clips": len(corpus.train), "val_clips": len(corpus.val),
            "test_clips": len(corpus.test), "stream_hours": float(data.stream_hours),
            "speakers": {k: len(set(v.speakers.tolist())) for k, v in corpus.splits().items()}}


__all__ = ["ExperimentConfig", "experiment_config", "paths", "prepare", "train_float", "load_float",
           "data_summary", "count_params", "np", "torch"]
