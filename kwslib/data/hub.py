"""The ``google/speech_commands`` dataset of the Hugging Face hub, in the common schema.

Record schema of that dataset (configs ``v0.01`` / ``v0.02``):
``file`` (str), ``audio`` (``Audio``: ``{"path", "bytes"}`` undecoded or
``{"path", "array", "sampling_rate"}`` decoded), ``label`` (``ClassLabel``:
the 10 keywords, the other 20/25 words, ``_unknown_`` and ``_silence_``),
``is_unknown`` (bool), ``speaker_id`` (str or None), ``utterance_id`` (int).
Its train/validation splits hold the six background-noise recordings whole as
``_silence_`` records (``speaker_id`` None); its test split is the 12-class
test-set archive (1-s ``_silence_`` clips, unknown words by their own label).

Audio is decoded here with soundfile (:func:`kwslib.frontend.audio.read_wav`): the
column is cast to ``Audio(decode=False)`` so ``datasets`` never loads its
ffmpeg/torchcodec-based decoder.
"""
from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
from pathlib import PurePosixPath

import numpy as np

from ..frontend.audio import check_audio, fit_to_clip, read_wav
from ..errors import DatasetError, AudioError, OfflineError
from .base import (
    ALL_WORDS_V1, ALL_WORDS_V2, CLASS_INDEX, CLIP_SAMPLES, SAMPLE_RATE, SILENCE, UNKNOWN,
    ClipSet, Corpus, split_noise_by_time, word_to_class,
)
from .speech_commands import _report_bad, cut_silence

HUB_ID = "google/speech_commands"
#: Label names of the hub dataset's ``label`` ClassLabel, used when ``ds`` has no ClassLabel.
LABELS_V1 = ALL_WORDS_V1 + [UNKNOWN, SILENCE]
LABELS_V2 = ALL_WORDS_V2 + [UNKNOWN, SILENCE]


def _label_names(ds, label_names):
    if label_names is not None:
        return list(label_names)
    names = getattr(ds.features.get("label"), "names", None)
    return list(names) if names is not None else LABELS_V2


def _decode(audio: dict, where: str) -> np.ndarray:
    """float32 samples of one ``audio`` cell: WAV bytes, a local path, or an already decoded array."""
    if audio is None:
        raise AudioError(f"{where}: no audio")
    if audio.get("bytes") is not None:
        return read_wav(audio["bytes"])
    if audio.get("array") is not None:
        if audio.get("sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise AudioError(f"{where}: sample rate {audio['sampling_rate']} Hz, expected {SAMPLE_RATE} Hz")
        return check_audio(audio["array"], where)
    if audio.get("path") and os.path.isfile(audio["path"]):
        return read_wav(audio["path"])
    raise AudioError(f"{where}: audio has neither bytes, array nor a readable path")


def _convert(ds, label_names=None):
    """Decode every record; return (1-s clips, [(name, long silence recording)], bad list, total)."""
    from datasets import Audio

    names = _label_names(ds, label_names)
    ds = ds.with_format(None)
    if isinstance(ds.features.get("audio"), Audio) and ds.features["audio"].decode:
        ds = ds.cast_column("audio", Audio(decode=False))
    audio, labels, speakers, origins, long_silence, bad = [], [], [], [], [], []
    total = 0
    for batch in ds.iter(batch_size=256):
        for i in range(len(batch["audio"])):
            total += 1
            file = batch["file"][i] if "file" in batch else f"record {total - 1}"
            label = batch["label"][i]
            if isinstance(label, (int, np.integer)) and not 0 <= label < len(names):
                raise DatasetError(f"{file}: label index {label} outside the dataset's {len(names)} label names")
            word = names[label] if isinstance(label, (int, np.integer)) else str(label)
            try:
                samples = _decode(batch["audio"][i], file)
            except AudioError as exc:
                bad.append((file, str(exc)))
                continue
            if word == SILENCE and len(samples) > CLIP_SAMPLES:
                long_silence.append((file, samples))
                continue
            spk = batch["speaker_id"][i] if "speaker_id" in batch else None
            if not spk:
                spk = f"silence_{PurePosixPath(file).stem}" if word == SILENCE else f"file:{file}"
            audio.append(fit_to_clip(samples, CLIP_SAMPLES))
            labels.append(word_to_class(word))
            speakers.append(str(spk))
            origins.append(file)
    clips = ClipSet(np.stack(audio) if audio else np.zeros((0, CLIP_SAMPLES), np.float32), labels, speakers, origins)
    return clips, long_silence, bad, total


def records_to_clipset(ds, label_names: list[str] | None = None) -> ClipSet:
    """Convert a ``datasets.Dataset`` with the hub schema to a :class:`ClipSet`.

    Labels map to the 12 classes by word (``label_names`` default: the
    dataset's ClassLabel names, else :data:`LABELS_V2`). ``_silence_``
    recordings longer than 1 s are cut into consecutive non-overlapping 1-s
    clips (the tail shorter than 1 s is dropped), all with the pseudo-speaker
    ``silence_<file stem>`` and origin ``<file>@<start sample>``; a 1-s
    ``_silence_`` clip without speaker gets its own pseudo-speaker. Other
    clips are centre-padded/cropped to 1 s. Unreadable records are skipped
    with one counted warning (DatasetError above 5%).
    """
    clips, long_silence, bad, total = _convert(ds, label_names)
    _report_bad("the dataset", bad, total)
    cuts = []
    for file, rec in long_silence:
        starts = range(0, len(rec) - CLIP_SAMPLES + 1, CLIP_SAMPLES)
        stem = PurePosixPath(file).stem
        cuts.append(ClipSet(np.stack([rec[s:s + CLIP_SAMPLES] for s in starts]), [CLASS_INDEX[SILENCE]] * len(starts),
                            [f"silence_{stem}"] * len(starts), [f"{file}@{s}" for s in starts]))
    return ClipSet.concat([clips] + cuts)


# --------------------------------------------------------------------------- hub access

def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _reachable(url: str, timeout: float = 5.0) -> str | None:
    """None if a TCP connection to the host of ``url`` opens, else the reason it did not."""
    u = urllib.parse.urlparse(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{u.hostname}:{port}: {exc}"


@contextlib.contextmanager
def _offline_mode():
    """Force the hub libraries into offline mode (cache only), whatever the environment said at import."""
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _env_offline() -> bool:
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _load_dataset_dict(config: str, cache_dir):
    """``datasets.load_dataset`` of the hub dataset; OfflineError when neither hub nor cache has it.

    Offline (``HF_HUB_OFFLINE`` set, or the hub host unreachable within 5 s)
    it reads only the local ``datasets`` cache. Online, a repo that still
    holds a loading script (unsupported by ``datasets`` >= 4) is read from
    the hub's parquet conversion branch ``refs/convert/parquet``.
    """
    import datasets

    why = "HF_HUB_OFFLINE is set" if (_env_offline() or datasets.config.HF_HUB_OFFLINE) else _reachable(_hub_endpoint())
    if why is not None:
        try:
            with _offline_mode():
                return datasets.load_dataset(HUB_ID, config, cache_dir=cache_dir)
        except Exception as exc:
            raise OfflineError(
                f"cannot reach the Hugging Face hub ({why}) and {HUB_ID} ({config}) is not in the local cache "
                f"{cache_dir or datasets.config.HF_DATASETS_CACHE} ({type(exc).__name__}: {exc}). Load it once "
                f"on a machine with network access, or use the official archives: download "
                f"speech_commands_{config}.tar.gz and load it with kwslib.data.speech_commands.load_full") from exc
    try:
        try:
            return datasets.load_dataset(HUB_ID, config, cache_dir=cache_dir)
        except RuntimeError as exc:
            if "script" not in str(exc).lower():
                raise
            return datasets.load_dataset(HUB_ID, config, cache_dir=cache_dir, revision="refs/convert/parquet")
    except ConnectionError as exc:
        raise OfflineError(f"lost the connection to the Hugging Face hub while loading {HUB_ID} ({config}): {exc}") from exc


def load_hub(config: str = "v0.02", cache_dir=None, seed: int = 0, silence_fraction: float = 0.1,
             noise_test_fraction: float = 0.2) -> Corpus:
    """Load ``google/speech_commands`` (``config``) from the hub as a :class:`Corpus`.

    Splits are the hub's train/validation/test (the official lists; test is
    the 12-class test-set archive). The long ``_silence_`` recordings of
    train+validation become the noise, split by time: ``noise_train`` /
    ``noise_test``; train gets ``round(silence_fraction * len(train))``
    seeded 1-s silence cuts of the training parts, validation as many (of its
    size) cut from the test parts, as in
    :func:`kwslib.data.speech_commands.load_full`. The test split keeps its
    own 1-s ``_silence_`` clips. Raises OfflineError when the hub cannot be
    reached and the dataset is not cached.
    """
    dsd = _load_dataset_dict(config, cache_dir)
    splits, recordings, skipped = {}, {}, 0
    for name, hub_name in (("train", "train"), ("val", "validation"), ("test", "test")):
        clips, long_silence, bad, total = _convert(dsd[hub_name])
        skipped += _report_bad(f"{HUB_ID} ({config}) {hub_name}", bad, total)
        splits[name] = clips
        for file, rec in long_silence:
            recordings.setdefault(PurePosixPath(file).name, rec)
    names = sorted(recordings)
    noise_train, noise_test = split_noise_by_time([recordings[n] for n in names], noise_test_fraction)
    rng = np.random.default_rng(seed)
    if names:
        train_parts = [(n, 0, a) for n, a in zip(names, noise_train)]
        test_parts = [(n, len(tr), a) for n, tr, a in zip(names, noise_train, noise_test)]
        for name, parts in (("train", train_parts), ("val", test_parts)):
            n_sil = int(round(silence_fraction * len(splits[name])))
            splits[name] = ClipSet.concat([splits[name], cut_silence(parts, n_sil, rng, name)])
    return Corpus(source="hub", train=splits["train"], val=splits["val"], test=splits["test"],
                  noise_train=noise_train, noise_test=noise_test,
                  notes={"hub_id": HUB_ID, "config": config, "seed": seed, "silence_fraction": silence_fraction,
                         "noise_test_fraction": noise_test_fraction, "skipped": skipped,
                         "noise_recordings": names})
