"""The float-training command line: ``python -m kwslib.train`` (and ``torchrun ... -m kwslib.train``).

It lives apart from :mod:`kwslib.train.loop` (the training loop) because it builds its config with the
notebook glue (:mod:`kwslib.study.experiment`), which itself imports the training loop: the loop must not
import the glue. ``kwslib/train/__main__.py`` (the entry point) hands over to :func:`main` here.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ..train.loop import BANK_FOLDER, fit, normalization_stats, set_seed


# --- command line: python -m kwslib.train (or torchrun ... -m kwslib.train) -------------------------

#: Keys of a notebook-1 params file that only the notebook uses (ignored here).
_NOTEBOOK_ONLY_KEYS = {"profile", "results_dir"}
#: The sections of a params file that build an ExperimentConfig (kwslib.study.tuning reads them too).
EXPERIMENT_KEYS = ("data", "features", "model", "train", "eval", "negatives", "replicates")
_EXPERIMENT_KEYS = set(EXPERIMENT_KEYS)


def merged_params(params_path) -> dict:
    """A notebook-1 params file's keys merged (one level) over the experiment sections and ``cache_dir`` of the
    ``shared.yaml`` next to it, as ``make reproduce`` merges them."""
    from ..config import load_yaml

    params_path = Path(params_path)
    own = load_yaml(params_path)
    shared_path = params_path.parent / "shared.yaml"  # the profile's common keys, as kwslib.study.reproduce merges them
    shared = load_yaml(shared_path) if shared_path.is_file() and shared_path != params_path else {}
    params = {k: v for k, v in shared.items() if k in _EXPERIMENT_KEYS | {"cache_dir"}}
    params.update(own)
    return params


def _params_config(params_path, epochs: int | None):
    """ExperimentConfig of a notebook-1 params file (strict), with ``--epochs`` applied.

    As ``make reproduce`` does, the file's keys are merged (one level) over the
    data/features/model/train/eval/cache_dir of ``shared.yaml`` next to it.
    """
    from ..errors import ConfigError
    from .experiment import experiment_config

    params_path = Path(params_path)
    params = merged_params(params_path)
    unknown = sorted(set(params) - _EXPERIMENT_KEYS - _NOTEBOOK_ONLY_KEYS - {"cache_dir"})
    if unknown:
        raise ConfigError(f"{params_path}: unknown parameter(s) {unknown}; a float-training params file has "
                          f"{sorted(_EXPERIMENT_KEYS | {'cache_dir'})}")
    sections = {k: params.get(k) for k in _EXPERIMENT_KEYS}
    for k, v in sections.items():
        if v is not None and not isinstance(v, dict):
            raise ConfigError(f"{params_path}: '{k}' must be a mapping of parameters, got {type(v).__name__} {v!r}")
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {epochs}")
        sections["train"] = dict(sections["train"] or {}, epochs=epochs)
    cache_dir = params.get("cache_dir")
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise ConfigError(f"{params_path}: cache_dir must be a path string, got {cache_dir!r}")
    cfg = experiment_config(**sections)
    # a profile with replicates: this command trains replicate 0 (the model notebook 1 resumes from and
    # the notebooks after it inspect); notebook 1 trains the others
    from .replicates import replicate_config

    cfg = replicate_config(cfg, cfg.replicates, 0)
    if cfg.data.source == "synthetic":
        cfg.data.synthetic.validate()  # fail before any output is written, not when the corpus is built
    return cfg, cache_dir


def _output_paths(out, cache_dir):
    """experiment.paths(out), with an unusable output folder reported as a ConfigError naming it."""
    from ..errors import ConfigError
    from .experiment import paths

    out = Path(out)
    for parent in [out, *out.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {out}: cannot create the output folder: {parent} is a file, not a folder")
            break
    try:
        return paths(out, cache_dir)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the output folder ({exc.strerror or exc})") from exc


def main(argv=None) -> int:
    """Train the float model of a params file; under ``torchrun`` with DistributedDataParallel.

    Writes ``OUT/models/float.pt``, ``OUT/checkpoints/float/{last.pt,history.json}``
    (the layout of notebook 1, so the notebook resumes from a finished run)
    and caches the corpus and the training features under ``OUT/cache``.
    """
    from ..train import distributed
    from ..errors import KwsError

    ap = argparse.ArgumentParser(prog="python -m kwslib.train", description=main.__doc__.splitlines()[0])
    ap.add_argument("--params", required=True, help="params/<profile>/01_float.yaml")
    ap.add_argument("--out", required=True, help="results folder (e.g. results/<profile>)")
    ap.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--num-proc", type=int, default=None,
                    help="processes that compute the training features (default: CPU count / ranks)")
    args = ap.parse_args(argv)
    env = None
    try:
        cfg, cache_dir = _params_config(args.params, args.epochs)
        env = distributed.init(args.device)
        p = _output_paths(args.out, cache_dir)
        result = _train_main(cfg, p, env, args)
    except KwsError as exc:
        print(f"kwslib.train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return result


def _train_main(cfg, p, env, args) -> int:
    import os

    from ..train import distributed
    from ..data import load_corpus
    from ..model import build_model, save_model
    from ..data.prepare import split_features

    log = print if env.is_main else None
    if log:
        log(f"kwslib.train: {env.world_size} rank(s) on {env.device} "
            f"({'DistributedDataParallel, ' + ('nccl' if env.device.type == 'cuda' else 'gloo') if env.distributed else 'single process'}), "
            f"global batch {cfg.train.batch_size}, {cfg.train.epochs} epochs, results in {p.results}")
    num_proc = args.num_proc or max(1, (os.cpu_count() or 1) // env.world_size)
    with distributed.main_first(env):  # rank 0 prepares and caches the corpus and features, the others read them
        corpus = load_corpus(cfg.data, cache_dir=p.cache / "corpus")
        train_feats = split_features(corpus.train, cfg.features, p.cache / "features", name="train", num_proc=num_proc)
    set_seed(cfg.train.seed)
    model = build_model(cfg.model)
    mean, std = normalization_stats(torch.from_numpy(train_feats))
    model.set_normalization(mean, std)
    del train_feats
    t0 = time.time()
    hist = fit(model, corpus.train, corpus.val, cfg.features, cfg.train, noise_train=corpus.noise_train,
               ckpt_dir=p.checkpoints / "float", log=log, progress=False, dist_env=env,
               bank_dir=p.checkpoints / BANK_FOLDER)
    if env.is_main:
        model.cpu()
        save_model(p.models / "float.pt", model, kind="float",
                   extra={"history": hist.epochs, "world_size": env.world_size, "device": str(env.device)})
        best = hist.best()
        log(f"kwslib.train: done in {time.time() - t0:.0f} s; best val_acc "
            f"{best['val_acc'] if best else float('nan'):.3f}; model {p.models / 'float.pt'}")
    distributed.barrier(env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
