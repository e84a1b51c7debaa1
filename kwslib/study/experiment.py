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

from ..config import REPO_ROOT, from_dict
from ..data import DataConfig, load_corpus
from ..data.base import Corpus
from ..evaluation.evaluate import EvalConfig, EvalData, NegativesConfig, prepare_eval
from .replicates import ReplicatesConfig
from ..frontend.features import FeatureConfig
from ..model import KWSNet, ModelConfig, build_model, count_params, load_model, save_model
from ..frontend.features import clip_features
from ..train.loop import BANK_FOLDER, TrainConfig, fit, normalization_stats, set_seed


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    negatives: NegativesConfig = field(default_factory=NegativesConfig)
    replicates: ReplicatesConfig = field(default_factory=ReplicatesConfig)

    def __post_init__(self):
        from ..errors import ConfigError

        if self.model.n_mels != self.features.n_mels:
            raise ConfigError(f"model.n_mels ({self.model.n_mels}) must equal features.n_mels ({self.features.n_mels})")
        from ..data.base import class_names

        n = len(class_names(self.data.keywords))
        if self.model.n_classes != n:  # the output layer follows the data's class list
            if self.model.n_classes != ModelConfig().n_classes:
                raise ConfigError(f"model.n_classes ({self.model.n_classes}) must be the {n} classes of data.keywords "
                                  f"(_silence_, _unknown_ and {n - 2} keyword(s)); leave it out to follow them")
            self.model.n_classes = n
        if self.data.unknown_real_parts and self.negatives.real_speech:
            from ..data.negatives import REAL_PARTS

            tested = set(self.negatives.real_parts or REAL_PARTS)
            both = sorted(tested & set(self.data.unknown_real_parts))
            if both:
                raise ConfigError(f"data.unknown_real_parts trains on the real-negative part(s) {both} that "
                                  f"negatives.real_parts reads as test audio ({self.negatives.real_parts!r}); "
                                  "set negatives.real_parts: [test]")


def experiment_config(data=None, features=None, model=None, train=None, eval=None, negatives=None,
                      replicates=None) -> ExperimentConfig:
    """Build the config from the notebook's parameter dicts (papermill injects them from params YAML)."""
    return from_dict(ExperimentConfig, {"data": data or {}, "features": features or {}, "model": model or {},
                                        "train": train or {}, "eval": eval or {}, "negatives": negatives or {},
                                        "replicates": replicates or {}}, where="params")


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
SCRATCH = REPO_ROOT / "results" / "scratch"


def paths(results_dir=None, cache_dir=None) -> Paths:
    """The run's folders (created); ConfigError naming the folder when it cannot be made.

    ``results_dir=None`` is :data:`SCRATCH` (``results/scratch/`` of the repository, whatever the
    working directory: Lab runs a notebook in ``notebooks/``); a relative path is taken from the
    working directory (``make reproduce`` runs the notebooks in the repository root).
    """
    from ..errors import ConfigError

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


def prepare(cfg: ExperimentConfig, p: Paths, keyword_stream: bool = False) -> tuple[Corpus, EvalData]:
    """Load (or build and cache) the corpus and prepare the test features and negative streams once."""
    corpus = load_corpus(cfg.data, cache_dir=p.cache / "corpus")
    data = prepare_eval(corpus, cfg.features, cfg.model.context_frames, cfg.model.step_frames, cfg.eval,
                        cfg.negatives, cache_dir=p.cache / "negatives", keyword_stream=keyword_stream)
    return corpus, data


def config_key(cfg) -> str:
    """A digest of a config dataclass (records and checks name the run they came from by it)."""
    import dataclasses
    import hashlib
    import json

    return hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Replicate:
    """One replicate of a profile: its index, config, folders, corpus and prepared test data."""

    k: int
    cfg: ExperimentConfig
    paths: Paths
    corpus: Corpus
    data: EvalData


def replicate_runs(cfg: ExperimentConfig, p: Paths, keyword_stream: bool = False, only=None):
    """Yield every replicate of ``cfg.replicates`` (or those in ``only``), prepared, one at a time."""
    from .replicates import replicate_config, replicate_paths

    for k in range(cfg.replicates.n):
        if only is not None and k not in only:
            continue
        rc = replicate_config(cfg, cfg.replicates, k)
        rp = replicate_paths(p, k)
        corpus, data = prepare(rc, rp, keyword_stream=keyword_stream and k == 0)
        yield Replicate(k, rc, rp, corpus, data)


def _banks(p: Paths) -> Path:
    """Where a replicate's training runs keep their augmentation banks on disk (kwslib.train.loop): the float
    run writes its bank, stage 1 and stage 2 (separate notebooks) read it instead of building it again."""
    return Path(p.checkpoints) / BANK_FOLDER


def read_model(rep: Replicate, name: str, fn, op: float, model_file=None, float_record: dict | None = None,
               key_extra=None):
    """Evaluate posterior function ``fn`` on replicate ``rep`` and store its record (kwslib.study.replicates).

    Returns ``(EvalResult, record)``. The record is saved under ``records/<name>.npz`` of the
    replicate with the digest of ``model_file`` (when given), so a later run can reuse it.
    """
    from ..evaluation import evaluate
    from .replicates import file_digest, model_record, record_path, save_record

    t0 = time.time()
    res = evaluate.evaluate(fn, rep.data, rep.cfg.eval)
    rec = model_record(res, rep.data, rep.cfg.eval, op, float_record)
    rec["eval_seconds"] = round(time.time() - t0, 2)  # what kwslib.study.power prices more negative audio with
    rec["config_key"] = _record_key(rep, key_extra)
    save_record(record_path(rep.paths, name), rec, file_digest(model_file) if model_file else None)
    return res, rec


def _record_key(rep: Replicate, key_extra=None) -> str:
    import json

    return config_key(rep.cfg) + ("" if key_extra is None else ":" + json.dumps(key_extra, sort_keys=True, default=str))


def cached_record(rep: Replicate, name: str, model_file, key_extra=None) -> dict | None:
    """The saved record of ``name`` when it was made from this very model file and config (else None)."""
    from pathlib import Path

    from .replicates import file_digest, load_record, record_path

    if not Path(model_file).is_file():
        return None
    rec = load_record(record_path(rep.paths, name), file_digest(model_file))
    return rec if rec is not None and rec.get("config_key") == _record_key(rep, key_extra) else None


def float_record(rep: Replicate) -> dict:
    """The float model's record of ``rep`` (notebook 1 writes it); ConfigError when it is missing or stale."""
    from ..errors import ConfigError

    rec = cached_record(rep, "float", rep.paths.models / "float.pt")
    if rec is None:
        raise ConfigError(f"replicate {rep.k}: no float model record for this config in {rep.paths.results}: "
                          "run notebook 1 (01_float_baseline) first, with the same data/model/train/eval/negatives")
    return rec


def stage1_replicate(rep: Replicate, op: float, plan, stage_cfg, log=None, on_model=None) -> dict:
    """Stage-1 QAT and its baselines for one replicate: ``plan`` is a list of (method, bits, per_channel).

    Every QAT model is saved as ``models/<summary key>.pt`` (``stage1_w4.pt``, ``linear_w2.pt``, ...);
    PTQ is a function of the float model file. A model whose file and record exist (same config and
    schedule) is not trained or read again. Returns key -> {"record", "seconds", "history"}.
    ``on_model(key, entry)``, when given, is called as each model is done (a progress line, say); an
    entry whose ``seconds`` is None was reused or needed no training (PTQ).
    """
    import dataclasses

    from ..model import torch_posterior_fn
    from ..quant.qat import ptq_quantize, save_qat_model, summary_key, train_stage1
    from ..quant.weights import WeightQuantConfig

    f_rec = float_record(rep)
    float_file = rep.paths.models / "float.pt"
    net = load_model(float_file)
    schedule = dataclasses.asdict(stage_cfg)
    out = {}
    for method, bits, pc in plan:
        key = summary_key(method, bits, pc)
        if method == "ptq":
            rec = cached_record(rep, key, float_file)
            if rec is None:
                q = ptq_quantize(net, WeightQuantConfig(bits, "linear", pc))
                rec = read_model(rep, key, torch_posterior_fn(q), op, float_file, f_rec)[1]
            out[key] = {"record": rec, "seconds": None, "history": None}
            _done(on_model, key, out[key])
            continue
        f = rep.paths.models / f"{key}.pt"
        rec = cached_record(rep, key, f, key_extra=schedule)
        if rec is not None:
            out[key] = {"record": rec, "seconds": None, "history": None}
            _done(on_model, key, out[key])
            continue
        wcfg = WeightQuantConfig(bits, method, pc)
        t0 = time.time()
        qmodel, hist = train_stage1(net, rep.corpus, rep.cfg.features, rep.cfg.train, stage_cfg, wcfg,
                                    ckpt_dir=rep.paths.checkpoints / "stage1" / wcfg.name, log=log,
                                    bank_dir=_banks(rep.paths))
        seconds = time.time() - t0
        save_qat_model(f, qmodel, kind="stage1", extra={"history": hist, "schedule": schedule})
        rec = read_model(rep, key, torch_posterior_fn(qmodel), op, f, f_rec, key_extra=schedule)[1]
        out[key] = {"record": rec, "seconds": seconds, "history": hist}
        _done(on_model, key, out[key])
    return out


def _done(on_model, key, entry) -> None:
    if on_model is not None:
        on_model(key, entry)


def stage2_replicate(rep: Replicate, op: float, widths, s2cfg, log=None, on_model=None) -> dict:
    """Stage 2 for one replicate from its ``models/stage1_w<b>.pt``: train, convert to the integer model,
    read it in integer mode. Saves ``models/stage2_w<b>.pt`` and ``.int.npz``; a width whose files and
    record exist is reused. Returns b -> {"record", "seconds", "history", "net", "int_model"} (the last
    two only when trained in this call). ``on_model(f"stage2_w{b}", entry)`` as each width is done."""
    import dataclasses

    from ..errors import ConfigError
    from ..quant import stage2 as s2, stage2_int as s2int
    from ..quant.qat import load_qat_model
    from .replicates import file_digest

    f_rec = float_record(rep)
    key_extra = dataclasses.asdict(s2cfg)
    out = {}
    for b in widths:
        s1_file = rep.paths.models / f"stage1_w{b}.pt"
        if not s1_file.is_file():
            raise ConfigError(f"replicate {rep.k}: no stage-1 model {s1_file}: run notebook 2 first")
        int_file = rep.paths.models / f"stage2_w{b}.int.npz"
        run_key = {**key_extra, "stage1": file_digest(s1_file)}  # a new stage-1 model makes a new stage-2 run
        rec = cached_record(rep, f"stage2_w{b}", int_file, key_extra=run_key)
        if rec is not None:
            out[b] = {"record": rec, "seconds": None, "history": None, "net": None, "int_model": None}
            _done(on_model, f"stage2_w{b}", out[b])
            continue
        t0 = time.time()
        s1 = load_qat_model(s1_file)
        net, hist = s2.train_stage2(s1, rep.corpus, rep.cfg.features, rep.cfg.train, s2cfg,
                                    ckpt_dir=rep.paths.checkpoints / f"stage2_w{b}", log=log,
                                    bank_dir=_banks(rep.paths))
        im = s2int.to_int_model(net, rep.cfg.features, class_names=rep.corpus.classes)
        s2.save_stage2_model(rep.paths.models / f"stage2_w{b}.pt", net, extra={"history": hist})
        s2.save_int_model(int_file, im)
        seconds = time.time() - t0
        rec = read_model(rep, f"stage2_w{b}", s2int.int_posterior_fn(im), op, int_file, f_rec, key_extra=run_key)[1]
        out[b] = {"record": rec, "seconds": seconds, "history": hist, "net": net, "int_model": im}
        _done(on_model, f"stage2_w{b}", out[b])
    return out


def qat_seed_replicate(rep: Replicate, op: float, widths, extra_seeds: int, s2cfg, log=None, on_model=None) -> dict:
    """Stage 1 and stage 2 again on ``rep``'s own float model, with ``extra_seeds`` other QAT seeds (issue 23).

    With the float model, the test speakers and the negative audio held fixed, what still moves between these
    runs is the QAT run itself (its seed: data order, augmentation draws, and the threshold each model's own DET
    curve then gives). Seed j (1..``extra_seeds``) trains with ``train.seed + 1000 j``; the stage-1 schedule is
    the one notebook 2 saved with ``models/stage1_w<b>.pt`` (tanh, per channel), so only the seed differs.
    Models go to ``models/qat_seeds/s<j>/``, records to ``records/qatseed<j>_stage2_w<b>.npz``; a run whose
    files and record exist is reused. Returns b -> [record of seed 1, ..., seed ``extra_seeds``].
    """
    import dataclasses

    from ..config import from_dict
    from ..errors import ConfigError
    from ..model import read_model_file
    from ..quant import stage2 as s2, stage2_int as s2int
    from ..quant.qat import QAT_FORMAT, QAT_VERSION, Stage1Config, save_qat_model, train_stage1
    from ..quant.weights import WeightQuantConfig

    if not isinstance(extra_seeds, int) or isinstance(extra_seeds, bool) or extra_seeds < 1:
        raise ConfigError(f"qat_seeds.extra_seeds must be an integer >= 1, got {extra_seeds!r}")
    f_rec = float_record(rep)
    float_file = rep.paths.models / "float.pt"
    net = load_model(float_file)
    out = {b: [] for b in widths}
    for b in widths:
        s1_main = rep.paths.models / f"stage1_w{b}.pt"
        if not s1_main.is_file():
            raise ConfigError(f"replicate {rep.k}: no stage-1 model {s1_main}: run notebook 2 first")
        schedule = read_model_file(s1_main, QAT_FORMAT, QAT_VERSION, "QAT model").get("extra", {}).get("schedule")
        if not isinstance(schedule, dict):
            raise ConfigError(f"{s1_main}: holds no stage-1 schedule (written before it was saved): rerun notebook 2")
        stage_cfg = from_dict(Stage1Config, schedule, where=f"{s1_main}:extra.schedule")
        for j in range(1, extra_seeds + 1):
            tcfg = dataclasses.replace(rep.cfg.train, seed=rep.cfg.train.seed + 1000 * j)
            folder = rep.paths.models / "qat_seeds" / f"s{j}"
            folder.mkdir(parents=True, exist_ok=True)
            name, int_file = f"qatseed{j}_stage2_w{b}", folder / f"stage2_w{b}.int.npz"
            run_key = {"stage1": schedule, "stage2": dataclasses.asdict(s2cfg), "seed": tcfg.seed}
            rec = cached_record(rep, name, int_file, key_extra=run_key)
            seconds = None
            if rec is None:
                t0 = time.time()
                wcfg = WeightQuantConfig(b, "tanh", True)
                s1, _ = train_stage1(net, rep.corpus, rep.cfg.features, tcfg, stage_cfg, wcfg,
                                     ckpt_dir=rep.paths.checkpoints / "qat_seeds" / f"s{j}" / wcfg.name, log=log,
                                     bank_dir=_banks(rep.paths))
                save_qat_model(folder / f"stage1_w{b}.pt", s1, kind="stage1", extra={"schedule": schedule})
                s2net, _ = s2.train_stage2(s1, rep.corpus, rep.cfg.features, tcfg, s2cfg,
                                           ckpt_dir=rep.paths.checkpoints / "qat_seeds" / f"s{j}" / f"stage2_w{b}", log=log,
                                           bank_dir=_banks(rep.paths))
                im = s2int.to_int_model(s2net, rep.cfg.features, class_names=rep.corpus.classes)
                s2.save_int_model(int_file, im)
                rec = read_model(rep, name, s2int.int_posterior_fn(im), op, int_file, f_rec, key_extra=run_key)[1]
                seconds = time.time() - t0
            out[b].append(rec)
            _done(on_model, name, {"record": rec, "seconds": seconds})
    return out


def train_float(cfg: ExperimentConfig, corpus: Corpus, p: Paths, log=print, resume: bool = True, device="auto"):
    """Train the float baseline; returns (model, history list, seconds). Saved as models/float.pt."""
    set_seed(cfg.train.seed)
    model = build_model(cfg.model)
    mean, std = normalization_stats(clip_features(corpus.train.audio, cfg.features))
    model.set_normalization(mean, std)
    t0 = time.time()
    ckpt_dir = p.checkpoints / "float" if resume else None
    from ..train.distributed import resolve_device

    extra = {}
    if cfg.train.pretrain_epochs > 0:
        pre = pretrain_synthetic(model, cfg, corpus, p, log=log, resume=resume, device=device)
        extra["pretrain_history"] = pre.epochs
    hist = fit(model, corpus.train, corpus.val, cfg.features, cfg.train, noise_train=corpus.noise_train,
               ckpt_dir=ckpt_dir, log=log, progress=False, device=resolve_device(device),
               bank_dir=_banks(p) if resume else None)
    seconds = time.time() - t0
    save_model(p.models / "float.pt", model, kind="float", extra={"history": hist.epochs, **extra})
    return model, hist.epochs, seconds


def pretrain_synthetic(model: KWSNet, cfg: ExperimentConfig, corpus: Corpus, p: Paths, log=print,
                       resume: bool = True, device="auto"):
    """Synthetic pretraining: ``cfg.train.pretrain_epochs`` epochs on the espeak-ng keyword corpus.

    The corpus is ``data.synthetic`` at ``data.synthetic_seed`` (built and cached like any corpus); the
    epochs select on the *real* validation split (``corpus.val``), so pretraining is judged by what it is
    for. The model keeps the real data's input normalisation throughout. Returns the pretraining History;
    ``model`` holds its (best-validation) weights, from which the fine-tuning on the real split starts.
    Assumption: the schedule is the float run's TrainConfig with ``epochs = pretrain_epochs``
    (same lr, warm-up, augmentation and bank; the synthetic clips already carry noise).
    """
    import dataclasses

    from ..data import DataConfig
    from ..train.distributed import resolve_device

    if cfg.data.source == "synthetic":
        from ..errors import ConfigError

        raise ConfigError("train.pretrain_epochs > 0: synthetic pretraining is for a real-speech source; "
                          "data.source is already 'synthetic'")
    synth = load_corpus(DataConfig(source="synthetic", synthetic=cfg.data.synthetic,
                                   synthetic_seed=cfg.data.synthetic_seed), cache_dir=p.cache / "corpus")
    pre_cfg = dataclasses.replace(cfg.train, epochs=cfg.train.pretrain_epochs, pretrain_epochs=0)
    if log:
        log(f"synthetic pretraining: {len(synth.train)} espeak-ng clips, {pre_cfg.epochs} epochs")
    return fit(model, synth.train, corpus.val, cfg.features, pre_cfg, noise_train=corpus.noise_train,
               ckpt_dir=p.checkpoints / "float_pretrain" if resume else None, log=log, progress=False,
               device=resolve_device(device))


def float_replicate(rep: "Replicate", op: float, log=None, device="auto"):
    """The float model of one replicate, trained (resumable) and read; a finished replicate is reused.

    Returns ``(model, history, train_seconds, result, record)``; for a replicate whose model file and
    record already exist (same config, same file) nothing is trained or evaluated again, and
    ``train_seconds`` and ``result`` are None.
    """
    from ..model import read_model_file, torch_posterior_fn

    f = rep.paths.models / "float.pt"
    rec = cached_record(rep, "float", f)
    if rec is not None:
        return load_model(f), read_model_file(f)["extra"].get("history", []), None, None, rec
    net, history, seconds = train_float(rep.cfg, rep.corpus, rep.paths, log=log, device=device)
    res, rec = read_model(rep, "float", torch_posterior_fn(net), op, f)
    return net, history, seconds, res, rec


def load_float(p: Paths) -> KWSNet:
    return load_model(p.models / "float.pt")


def data_summary(corpus: Corpus, data: EvalData) -> dict:
    """The ``data`` part of summary.json: source, classes and keywords, clips per split, negative hours, speakers."""
    from ..data.base import FIRST_KEYWORD

    return {"source": corpus.source, "classes": list(corpus.classes),
            "keywords": list(corpus.classes[FIRST_KEYWORD:]),
            "train_clips": len(corpus.train), "val_clips": len(corpus.val),
            "test_clips": len(corpus.test), "stream_hours": float(data.negative_hours),
            "negative_hours": data.hours_by_source(),
            "speakers": {k: len(set(v.speakers.tolist())) for k, v in corpus.splits().items()}}


__all__ = ["ExperimentConfig", "experiment_config", "paths", "prepare", "train_float", "load_float",
           "data_summary", "count_params", "replicate_runs", "read_model", "cached_record", "float_replicate", "float_record",
           "stage1_replicate", "stage2_replicate", "Replicate", "pretrain_synthetic",
           "config_key", "np", "torch"]
