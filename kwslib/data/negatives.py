"""Negative audio for false detections per hour: speech and noise that hold no keyword.

Three sources, each reported apart:

* **real non-keyword speech** and **real background noise**: the clips of a
  folder laid out like ``real_negatives`` (``manifest.csv`` + ``speech/`` and
  ``noises/``), read by :func:`load_real_negatives` from a folder given as a
  parameter or by the environment variable ``KWS_REAL_NEGATIVES_ROOT``;
* **synthetic non-keyword speech**: random word sequences from a frequency
  list of English words with every keyword and keyword homophone removed
  (:func:`kwslib.data.vocabulary.negative_vocabulary`), spoken by espeak-ng
  (:func:`synthetic_negative_speech`). Needs no data and no network.

:mod:`kwslib.data.vocabulary` makes the non-keyword vocabulary; :mod:`kwslib.data.negative_streams`
turns clips into streams cut into units, so detections are counted per unit and per source.

Assumptions (each one is a choice a reader may want to change):

- **Real data layout.** ``<root>/manifest.csv`` has at least the columns
  ``file`` (path relative to the root) and ``kind`` (``speech`` or ``noise``);
  ``text`` is used when present. The file name is
  ``<source-folder>__<name>.wav``; the part before the first ``__`` is the
  clip's *source* (its upstream folder). A file name without ``__`` is a
  :class:`~kwslib.errors.DatasetError`. Clips keep manifest order. WAVs must
  be 16 kHz mono (anything else is an AudioError naming the file; nothing is
  resampled or down-mixed). ``duration_s`` of a clip is measured from its
  samples, not copied from the manifest. Real audio is only read, never copied.
- **Speakers.** Upstream does not record which speaker made which clip, so the
  source folder is the unit that keeps speakers apart: :func:`split_by_source`
  puts every source folder wholly into train or test. Folders may still share
  speakers (one submitter recorded several folders); that cannot be undone here.
- **Default split.** Source folders (sorted by name, then in a permutation
  seeded by ``seed``) go to test one by one until test holds at least
  ``test_fraction`` of the total duration (so it may hold much more: the
  folders are few and of very unequal size). Train must keep at least one folder.
- **Synthetic utterances.** Each utterance is 3-12 (``words_per_utterance``)
  words drawn uniformly with replacement from the vocabulary, joined by spaces
  (no punctuation), spoken by one of ``voices`` voices (default 48, as the
  keyword corpus's ``SyntheticConfig.n_voices``) designed exactly as
  :mod:`kwslib.data.synthetic` designs its speakers (base voice + variant +
  rate/pitch/range, with the same per-utterance jitter), but from a random
  stream of their own, so they are not the keyword corpus's voices at the same
  seed. As a second guard, an utterance whose espeak phonemes (running text, in
  its voice's base language) hold a keyword's phoneme token is drawn again.
  The audio is trimmed of leading/trailing silence and peak-normalised to a
  random level of -26 to -1 dBFS, like the keyword clips; no noise is mixed in
  (streams add noise between clips). Clips are generated until their total
  duration reaches ``hours``, so the total exceeds it by less than one utterance.
  Source = ``"synthetic:<base+variant>"``.
- **espeak-ng.** Phonemes come from ``espeak_TextToPhonemes`` (ASCII phoneme
  names, one clause per call) of a private engine of
  :mod:`kwslib.data.synthetic` (``_Engine``, used under its ``_LOCK``; nothing
  there is changed). Every call of :func:`synthetic_negative_speech` starts
  fresh engines, so its output does not depend on earlier calls. Synthesis and
  resampling are :mod:`kwslib.data.synthetic`'s own (22.05 kHz to 16 kHz with
  its polyphase filter), about 14 CPU seconds per generated hour.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import synthetic as _syn
from .base import SAMPLE_RATE
from ..errors import AudioError, ConfigError, DatasetError
from .vocabulary import _keyword_tokens, _keywords, _phonemize, _tokens, negative_vocabulary, vocabulary_part

ENV_VAR = "KWS_REAL_NEGATIVES_ROOT"
KINDS = ("speech", "noise")
N_SYNTH_VOICES = 48  # SyntheticConfig().n_voices
_VOICE_STREAM = 100  # seed stream of the negative voices (the keyword corpus uses [seed, 0])


@dataclass
class NegativeClip:
    """One clip of negative audio."""

    audio: np.ndarray  # float32, 16 kHz mono
    source: str  # the upstream folder (real) or "synthetic:<voice>"
    file: str  # path relative to the data root (real) or "synthetic/<seed>/<n>" (synthetic)
    duration_s: float
    text: str = ""  # transcript, wake word, noise description or the synthetic words


# --------------------------------------------------------------------------- real negatives

def _root(root, env_var: str) -> Path:
    from .speech_commands import resolve_root  # lazily: the inference path must not import it

    try:
        return resolve_root(root, env_var, "real negatives")
    except DatasetError as exc:
        if env_var in str(exc):
            raise
        raise DatasetError(f"{exc}; pass the real-negatives folder as root= or set ${env_var}") from exc


def _read_clip(path: Path) -> np.ndarray:
    import soundfile as sf

    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: not a readable WAV file ({exc})") from exc
    if sr != SAMPLE_RATE:
        raise AudioError(f"{path}: sample rate {sr} Hz, expected {SAMPLE_RATE} Hz (it is not resampled)")
    if x.shape[1] != 1:
        raise AudioError(f"{path}: {x.shape[1]} channels, expected mono (it is not down-mixed)")
    return np.ascontiguousarray(x[:, 0])


def load_real_negatives(root=None, env_var: str = ENV_VAR, kind: str = "speech") -> list[NegativeClip]:
    """The ``kind`` ("speech" or "noise") clips of a real-negatives folder, in manifest order.

    ``root``: the folder; if None, the environment variable ``env_var``.
    Raises DatasetError naming the variable when neither is set, the folder
    or ``manifest.csv`` is missing, or the manifest is not as expected;
    AudioError naming the file for a WAV that is unreadable, not 16 kHz or not mono.
    """
    if kind not in KINDS:
        raise ConfigError(f"load_real_negatives: kind = {kind!r}; expected one of {list(KINDS)}")
    folder = _root(root, env_var)
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise DatasetError(f"{manifest} does not exist: {folder} is not a real-negatives folder "
                           f"(pass the right folder as root= or set ${env_var})")
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = sorted({"file", "kind"} - set(reader.fieldnames or []))
        if missing:
            raise DatasetError(f"{manifest}: missing column(s) {missing} (has {reader.fieldnames})")
        rows = [r for r in reader if r["kind"] == kind]
    if not rows:
        raise DatasetError(f"{manifest}: no rows of kind {kind!r}")
    clips = []
    for r in rows:
        rel = r["file"]
        name = Path(rel).name
        if "__" not in name:
            raise DatasetError(f"{manifest}: file {rel!r} is not named <source-folder>__<name>.wav, "
                               "so its source folder is unknown")
        path = folder / rel
        if not path.is_file():
            raise DatasetError(f"{path} (listed in {manifest}) does not exist")
        audio = _read_clip(path)
        clips.append(NegativeClip(audio, name.split("__", 1)[0], rel, len(audio) / SAMPLE_RATE,
                                  r.get("text") or ""))
    return clips


def split_by_source(clips: list[NegativeClip], test_sources=None, test_fraction: float = 0.5,
                    seed: int = 0) -> tuple[list[NegativeClip], list[NegativeClip]]:
    """(train, test): every source wholly in one part, clips in their given order in each.

    ``test_sources`` (names) overrides the default seeded assignment, which
    moves sources to test until it holds >= ``test_fraction`` of the duration.
    """
    sources = sorted({c.source for c in clips})
    if test_sources is not None:
        if isinstance(test_sources, str):
            test_sources = [test_sources]
        test = set(test_sources)
        unknown = sorted(test - set(sources))
        if unknown:
            raise ConfigError(f"split_by_source: test_sources {unknown} not among the clips' sources {sources}")
    else:
        if (not isinstance(test_fraction, (int, float)) or isinstance(test_fraction, bool)
                or not 0.0 < test_fraction < 1.0):
            raise ConfigError(f"split_by_source: test_fraction = {test_fraction!r} must be in (0, 1)")
        if len(sources) < 2:
            raise ConfigError(f"split_by_source: needs at least 2 sources to split by source, got {sources}")
        samples = {s: 0 for s in sources}
        for c in clips:
            samples[c.source] += len(c.audio)
        total = sum(samples.values())
        test, acc = set(), 0
        for i in np.random.default_rng(seed).permutation(len(sources)):
            if acc >= test_fraction * total:
                break
            test.add(sources[i])
            acc += samples[sources[i]]
        if len(test) == len(sources):
            raise ConfigError(f"split_by_source: test_fraction = {test_fraction} puts every source in test "
                              f"(sources {sources}); lower it or pass test_sources")
    return [c for c in clips if c.source not in test], [c for c in clips if c.source in test]


# --------------------------------------------------------------------------- synthetic negative speech

def _positive_number(name: str, v, allow_zero: bool = False) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and (v >= 0 if allow_zero
                                                                                          else v > 0)
    if not ok:
        raise ConfigError(f"{name} = {v!r} must be a finite number {'>= 0' if allow_zero else '> 0'}")
    return float(v)


def _negative_voices(voices, rng: np.random.Generator) -> list:
    if voices is None:
        voices = N_SYNTH_VOICES
    if isinstance(voices, int) and not isinstance(voices, bool):
        if voices < 1:
            raise ConfigError(f"synthetic_negative_speech: voices = {voices} must be >= 1")
        return _syn._design_voices(voices, rng)
    if (not isinstance(voices, (list, tuple)) or not voices
            or not all(isinstance(v, str) and v for v in voices)):
        raise ConfigError("synthetic_negative_speech: voices must be None, a number of voices or a "
                          f"non-empty list of espeak voice names ('en-us+m3', ...), got {voices!r}")
    # The named voices with rate/pitch/range drawn as _design_voices draws them.
    return [_syn._Voice(f"synth_neg{i:02d}", v, int(rng.integers(120, 221)), int(rng.integers(25, 76)),
                        int(rng.integers(20, 81))) for i, v in enumerate(voices)]


def synthetic_negative_speech(hours: float, seed: int = 0, voices=None, words_per_utterance=(3, 12),
                              vocabulary=None, keywords=None) -> list[NegativeClip]:
    """Utterances of random non-keyword words spoken by espeak-ng, ``hours`` in total (a little more).

    ``voices``: None (48 designed voices), a number of designed voices, or a
    list of espeak voice names ("en-us+m3"). ``vocabulary``: the words to draw
    from (default :func:`negative_vocabulary`); it must hold no keyword (``keywords``, None: the 10 of
    Speech Commands). Bit-identical for the same arguments.
    """
    hours = _positive_number("synthetic_negative_speech: hours", hours)
    try:
        lo, hi = (int(x) for x in words_per_utterance)
        bad = not 1 <= lo <= hi
    except (TypeError, ValueError):
        bad = True
    if bad:
        raise ConfigError(f"synthetic_negative_speech: words_per_utterance = {words_per_utterance!r} must be "
                          "(min, max) with 1 <= min <= max")
    keywords = _keywords(keywords)
    vocab = negative_vocabulary(keywords=keywords) if vocabulary is None else list(vocabulary)
    if not vocab or not all(isinstance(w, str) and w.strip() for w in vocab):
        raise ConfigError("synthetic_negative_speech: vocabulary must be a non-empty list of words")
    clash = sorted({t for w in vocab for t in re.findall(r"[a-z]+", w.lower())} & set(keywords))
    if clash:
        raise ConfigError(f"synthetic_negative_speech: vocabulary contains keyword(s) {clash}")
    designs = _negative_voices(voices, np.random.default_rng([seed, _VOICE_STREAM]))
    rng = np.random.default_rng([seed, _VOICE_STREAM + 1])
    want = int(np.ceil(hours * 3600 * SAMPLE_RATE))
    kw_tokens = _keyword_tokens(keywords)
    clips, total = [], 0
    with _syn._LOCK, _syn._Engine() as engine, _syn._Engine() as phonemizer:
        for v in designs:
            engine.set_voice(v.voice)  # fail early on a bad voice
        while total < want:
            v = designs[int(rng.integers(len(designs)))]
            base = v.voice.partition("+")[0]
            if base not in kw_tokens:
                raise ConfigError(f"synthetic_negative_speech: voice {v.voice!r}: base voice {base!r} is not "
                                  f"one of the English base voices {_syn.BASE_VOICES}")
            for _ in range(100):
                n = int(rng.integers(lo, hi + 1))
                text = " ".join(str(w) for w in rng.choice(vocab, n))
                if not _tokens(_phonemize(phonemizer, text, base)) & kw_tokens[base].keys():
                    break
            else:
                raise ConfigError("synthetic_negative_speech: 100 utterances in a row sound like a keyword; "
                                  "the vocabulary is not a negative one")
            rate = int(np.clip(round(v.rate * rng.uniform(0.92, 1.08)), 80, 450))
            pitch = int(np.clip(v.pitch + rng.integers(-6, 7), 0, 99))
            prange = int(np.clip(v.pitch_range + rng.integers(-10, 11), 0, 99))
            x = _syn._trim(_syn._speak(engine, text, v.voice, rate, pitch, prange))
            if len(x) == 0:
                raise _syn.EspeakError(f"espeak-ng produced no audio for {text!r} with voice {v.voice!r}")
            peak = 10 ** (rng.uniform(-26.0, -1.0) / 20)
            x = (x * (peak / (np.abs(x).max() + 1e-12))).astype(np.float32)
            clips.append(NegativeClip(x, f"synthetic:{v.voice}", f"synthetic/{seed}/{len(clips):06d}",
                                      len(x) / SAMPLE_RATE, text))
            total += len(x)
    return clips


# --------------------------------------------------------------------------- rejection training

def unknown_training_clips(hours: float, seed: int, vocabulary=None, keywords=None):
    """Synthetic non-keyword speech cut into 1-s clips, as ``_unknown_`` training clips (a ClipSet).

    Each utterance of :func:`synthetic_negative_speech` (``vocabulary`` default: the ``"train"``
    half of the vocabulary without ``keywords``, None: Speech Commands' 10) gives its consecutive 1-s pieces
    (:func:`one_second_clips`). The speaker of a clip is its voice (``negspeech:<voice>``), so splits by
    speaker stay apart.
    """
    vocab = vocabulary_part("train", keywords=keywords) if vocabulary is None else vocabulary
    clips = synthetic_negative_speech(hours, seed=seed, vocabulary=vocab, keywords=keywords)
    return one_second_clips(clips, lambda c: f"negspeech:{c.source.removeprefix('synthetic:')}")


def one_second_clips(clips: list[NegativeClip], speaker_of):
    """Negative clips cut into 1-s ``_unknown_`` clips (a ClipSet), the speaker of each ``speaker_of(clip)``.

    Each clip gives its consecutive 1-s pieces; a last piece of at least 0.5 s is zero-padded at the end,
    shorter ones are dropped, and a clip under 1 s is centred in zeros.
    """
    from .base import CLASS_INDEX, CLIP_SAMPLES, UNKNOWN, ClipSet

    audio, speakers, origins = [], [], []
    for c in clips:
        x = np.asarray(c.audio, np.float32)
        if len(x) < CLIP_SAMPLES:
            pad = CLIP_SAMPLES - len(x)
            pieces = [np.pad(x, (pad // 2, pad - pad // 2))]
        else:
            pieces = [x[i:i + CLIP_SAMPLES] for i in range(0, len(x), CLIP_SAMPLES)]
            pieces = [np.pad(p, (0, CLIP_SAMPLES - len(p))) for p in pieces if len(p) >= CLIP_SAMPLES // 2]
        for k, piece in enumerate(pieces):
            audio.append(piece)
            speakers.append(speaker_of(c))
            origins.append(f"{c.file}#{k}")
    if not audio:
        return ClipSet.empty()
    return ClipSet(np.stack(audio), [CLASS_INDEX[UNKNOWN]] * len(audio), speakers, origins)


#: The three parts of the real non-keyword speech (:func:`real_negative_parts`).
REAL_PARTS = ("train", "val", "test")


def real_negative_parts(clips: list[NegativeClip], seed: int = 0, test_fraction: float = 0.5,
                        val_fraction: float = 1 / 3) -> dict[str, list[NegativeClip]]:
    """The real non-keyword speech in three parts by source folder: ``{"train", "val", "test"}``.

    ``test``: :func:`split_by_source` with ``test_fraction`` and ``seed`` (the held-out audio the
    per-hour axis reads when a model trains on real negatives); of the rest, ``val``: the same split with
    ``val_fraction`` and ``seed + 1`` (validation negatives for choosing settings, kwslib.study.tuning);
    ``train``: what remains. Every source folder lies in exactly one part. Assumption: with the
    ``real_negatives`` folder of 10 speech sources and seed 0 this puts 4 sources (~21 min) in test.
    """
    rest, test = split_by_source(clips, test_fraction=test_fraction, seed=seed)
    train, val = split_by_source(rest, test_fraction=val_fraction, seed=seed + 1)
    return {"train": train, "val": val, "test": test}


def real_part_clips(parts, root=None, env_var: str = ENV_VAR, seed: int = 0) -> list[NegativeClip]:
    """The real speech clips of the listed ``parts`` (names from :data:`REAL_PARTS`), in manifest order."""
    bad = sorted(set(parts) - set(REAL_PARTS))
    if bad:
        raise ConfigError(f"real negatives: unknown part(s) {bad}; the parts are {list(REAL_PARTS)}")
    clips = load_real_negatives(root, env_var, kind="speech")
    split = real_negative_parts(clips, seed=seed)
    keep = {id(c) for part in parts for c in split[part]}
    return [c for c in clips if id(c) in keep]


def real_unknown_training_clips(parts, root=None, env_var: str = ENV_VAR, seed: int = 0):
    """The real speech of ``parts`` cut into 1-s ``_unknown_`` training clips (speaker ``realneg:<source>``)."""
    return one_second_clips(real_part_clips(parts, root, env_var, seed), lambda c: f"realneg:{c.source}")
