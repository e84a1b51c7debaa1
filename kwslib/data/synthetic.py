"""An offline keyword corpus spoken by espeak-ng.

Why synthetic speech: the real Speech Commands archive is 2.3 GB and needs
the network. espeak-ng ships inside the ``espeakng-loader`` wheel (library
and voice data), so ``pip install`` alone gives every machine a corpus with
the same 12 classes, the same clip format and a speaker-disjoint split. It is
a stand-in for development and for ``make reproduce`` offline: formant speech
is far more uniform than real speech, so absolute accuracies on it say little
about Speech Commands; relative comparisons (float vs. quantized models) are
what it is for.

What a "speaker" is here: a *voice* = an English base voice (en-us, en-gb-x-rp,
...) + a voice variant from ``voices/!v`` (m3, f2, klatt, whisper, ...) + a
speaking rate, pitch and pitch range drawn once. Every clip of a voice gets a
small random jitter of rate/pitch/range around these settings, so its clips
are not identical, much like repeated takes of one person. Voices, not clips,
are assigned to train/val/test, so no voice crosses splits.

Clips: the word is trimmed of leading/trailing silence, placed at a random
offset in the 1 s window, peak-normalised to a random level and mixed with
generated noise (white, pink, brown, mains hum, band-limited "fan" noise or
reversed-speech babble) at a random SNR. ``_silence_`` clips are noise only
(down to very quiet), ``_unknown_`` clips are other words.

Determinism: libespeak-ng keeps static state between utterances (pitch
flutter phase, gain control, random seed) that no API call resets, so the
samples of one utterance depend on everything synthesized before it in the
process. We therefore load a *private copy* of the library for each corpus
(and each :func:`synthesize` call): a copy of the .so file has its own static
data, starts from the state of a fresh process, and costs about 3 ms. The
library paths and the resampling filter are found once per process, lazily.
All randomness comes from ``np.random.default_rng`` streams derived from the
seed, so the same config and seed give bit-identical arrays.
"""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..errors import ConfigError, KwsError
from .base import (CLASS_INDEX, CLIP_SAMPLES, FIRST_KEYWORD, KEYWORDS, SAMPLE_RATE, SILENCE, UNKNOWN, ClipSet,
                   Corpus, check_keywords, class_names, split_noise_by_time)


class EspeakError(KwsError, RuntimeError):
    """The espeak-ng library or its voice data cannot be loaded or fails to synthesize."""


# English base voices of espeak-ng 1.52 (identifiers of lang/gmw/en*).
BASE_VOICES = ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
               "en-029", "en-us-nyc"]
# Variants (voices/!v) that still sound like a person: the robot, echo and
# "demonic" ones are left out, they would teach the model nothing useful.
VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "croak", "whisper",
    "klatt", "klatt2", "klatt3", "klatt4", "Alex", "Andy", "Denis", "Gene", "Jacky", "Mike",
    "adam", "benjamin", "david", "ed", "edward", "grandpa", "ian", "john", "marcelo", "michel",
    "norbert", "paul", "quincy", "rob", "robert", "travis", "victor",
    "f1", "f2", "f3", "f4", "f5", "Annie", "anika", "aunty", "belinda", "grandma", "linda",
    "shelby", "steph", "whisperf",
]
NOISE_KINDS = ["white", "pink", "brown", "hum", "band", "babble"]
# Babble talkers say these (time-reversed, so nothing intelligible remains).
BABBLE_WORDS = ["water", "morning", "people", "little", "window", "picture", "number", "table",
                "orange", "basket", "garden", "paper", "music", "station", "evening", "yellow",
                "simple", "market", "doctor", "coffee"]
# The 20 non-keyword words of Speech Commands v0.01.
DEFAULT_UNKNOWN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                   "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow"]

# espeak-ng API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # without it a bad data path calls exit(1) in the library
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK, _EE_NOT_FOUND = 0, 2
_RATE, _PITCH, _RANGE = 1, 3, 4
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_LOCK = threading.RLock()  # one espeak engine at a time in this process


@dataclass
class SyntheticConfig:
    n_voices: int = 48  # speaker-like groups (base voice + variant + rate + pitch + range)
    clips_per_class_per_voice: int = 6  # each keyword, and _unknown_ / _silence_, per voice
    unknown_words: list[str] = field(default_factory=lambda: list(DEFAULT_UNKNOWN))
    val_fraction: float = 0.15  # fractions of VOICES (speaker-disjoint split)
    test_fraction: float = 0.2
    snr_db_min: float = 5.0
    snr_db_max: float = 30.0
    # Voice variants (names from VARIANTS) the voices are drawn from; None: all of VARIANTS.
    variants: list[str] | None = None
    # Where a word sits in its 1 s clip: uniformly within the central `offset_spread` share of the
    # free room (1.0: anywhere in the clip; 0.0: always centred).
    offset_spread: float = 1.0
    noise_seconds: float = 120.0  # total length of the background-noise "recordings"
    noise_test_fraction: float = 0.2

    @classmethod
    def from_dict(cls, d: dict) -> "SyntheticConfig":
        """Build from a params mapping; unknown keys are an error (a typo would be silently ignored)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"synthetic: unknown config key(s) {unknown}; known: {sorted(names)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def split_sizes(self) -> tuple[int, int, int]:
        """Number of (train, val, test) voices."""
        n_test = max(1, int(round(self.n_voices * self.test_fraction)))
        n_val = max(1, int(round(self.n_voices * self.val_fraction)))
        return self.n_voices - n_val - n_test, n_val, n_test

    def validate(self) -> None:
        def bad(name, why):
            raise ConfigError(f"synthetic.{name} = {getattr(self, name)!r}: {why}")

        for name in ("n_voices", "clips_per_class_per_voice"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "must be a positive integer")
        for name in ("val_fraction", "test_fraction", "snr_db_min", "snr_db_max", "noise_seconds",
                     "noise_test_fraction"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
                bad(name, "must be a finite number")
        for name in ("val_fraction", "test_fraction", "noise_test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                bad(name, "must be in (0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            bad("test_fraction", f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction} "
                                 "must be < 1")
        if self.split_sizes()[0] < 1:
            bad("n_voices", f"too few voices for a split by voice (train/val/test sizes {self.split_sizes()})")
        if self.snr_db_min > self.snr_db_max:
            bad("snr_db_min", f"must be <= snr_db_max ({self.snr_db_max})")
        if not 0.0 <= self.offset_spread <= 1.0:
            bad("offset_spread", "must be in [0, 1]")
        if self.variants is not None:
            v = self.variants
            if (not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) for x in v)):
                bad("variants", "must be None (all) or a non-empty list of variant names")
            unknown_v = sorted(set(v) - set(VARIANTS))
            if unknown_v:
                bad("variants", f"unknown variant(s) {unknown_v}; known: {VARIANTS}")
            if len(set(v)) != len(v):
                bad("variants", "lists a variant twice")
        words = self.unknown_words
        if (not isinstance(words, (list, tuple)) or not words
                or not all(isinstance(w, str) and w.strip() for w in words)):
            bad("unknown_words", "must be a non-empty list of words")
        clash = sorted(set(w.strip().lower() for w in words) & set(KEYWORDS))
        if clash:
            bad("unknown_words", f"contains keyword(s) {clash}")
        # Each noise kind gets an equal share; its test part must hold at least one 1 s clip.
        per_kind_test = self.noise_seconds * self.noise_test_fraction / len(NOISE_KINDS)
        if per_kind_test * SAMPLE_RATE < CLIP_SAMPLES:
            bad("noise_seconds", f"too short: each of the {len(NOISE_KINDS)} noise kinds needs >= 1 s "
                                 f"in the test part (noise_test_fraction={self.noise_test_fraction})")


# ----------------------------------------------------------------------------
# espeak-ng through ctypes

@functools.cache
def _paths() -> tuple[str, str]:
    """(library path, data dir) of the espeakng-loader wheel, checked once per process."""
    try:
        import espeakng_loader
        lib_path, data_path = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except Exception as exc:
        raise EspeakError(f"espeak-ng is not available: the espeakng-loader package failed ({exc}); "
                          "install it with `pip install espeakng-loader`") from exc
    if not os.path.isfile(lib_path):
        raise EspeakError(f"espeak-ng library not found at {lib_path}")
    if not os.path.isfile(os.path.join(data_path, "phontab")):
        raise EspeakError(f"espeak-ng data dir {data_path} has no phontab (incomplete install)")
    return lib_path, data_path


class _Engine:
    """A private instance of libespeak-ng: a fresh copy of the .so has its own static state."""

    def __init__(self):
        lib_path, data_path = _paths()
        tmp = tempfile.mkdtemp(prefix="kwslib-espeak-")
        try:
            copy = os.path.join(tmp, os.path.basename(lib_path))
            shutil.copyfile(lib_path, copy)
            lib = ctypes.CDLL(copy)  # RTLD_LOCAL: its symbols bind to this copy only
        except OSError as exc:
            raise EspeakError(f"cannot load the espeak-ng library {lib_path}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the mapping stays valid after unlinking
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Info.restype = ctypes.c_char_p
        self.lib, self.data_path = lib, data_path
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(),
                                                 _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed with data dir {data_path} (returned {self.sample_rate})")
        self.version = lib.espeak_Info(None).decode()
        self._chunks: list[np.ndarray] = []

        def collect(wav, n, events):
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
            return 0  # 0 = go on

        self._callback = _SYNTH_CALLBACK(collect)  # keep a reference: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_ng_SetRandSeed(1)  # espeak's own noise (breath, klatt aspiration)
        self._voice = None

    def set_voice(self, voice: str) -> None:
        if voice == self._voice:
            return
        base, _, variant = voice.partition("+")
        # espeak ignores an unknown variant silently, so check its file ourselves.
        if variant and not os.path.isfile(os.path.join(self.data_path, "voices", "!v", variant)):
            raise ConfigError(f"espeak-ng voice {voice!r}: no variant {variant!r} in "
                              f"{os.path.join(self.data_path, 'voices', '!v')}")
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ConfigError(f"espeak-ng voice {voice!r}: unknown base voice {base!r} "
                              f"(data dir {self.data_path}); English ones: {BASE_VOICES}")
        self._voice = voice

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
        """Speak ``text``; int16 samples at ``self.sample_rate``."""
        self.set_voice(voice)
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks = []
        buf = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if err != _EE_OK:
            raise EspeakError(f"espeak_Synth failed (error {err}) for {text!r} with voice {voice!r}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def close(self) -> None:
        self.lib.espeak_Terminate()
        try:
            import _ctypes
            _ctypes.dlclose(self.lib._handle)
        except Exception:  # unloading is an optimisation only
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@functools.cache
def _resample_filter(up: int, down: int) -> np.ndarray:
    """resample_poly's own default low-pass, designed once instead of at every call."""
    max_rate = max(up, down)
    from scipy.signal import firwin  # lazily: importing kwslib.data must not load scipy (inference path)

    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def _to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    x = x.astype(np.float32) / 32768.0
    if rate == SAMPLE_RATE or len(x) == 0:
        return x
    g = np.gcd(SAMPLE_RATE, rate)
    up, down = SAMPLE_RATE // g, rate // g
    from scipy.signal import resample_poly

    y = resample_poly(x, up, down, window=_resample_filter(up, down))
    return np.clip(y, -1.0, 1.0).astype(np.float32)  # the low-pass can overshoot full scale slightly


def _speak(engine: _Engine, text, voice, rate, pitch, pitch_range) -> np.ndarray:
    return _to_16k(engine.synth(text, voice, rate, pitch, pitch_range), engine.sample_rate)


def synthesize(text: str, voice: str, rate: int, pitch: int, pitch_range: int = 50) -> np.ndarray:
    """Speak ``text`` with an espeak-ng voice ("en-us", "en-us+m3", ...): float32, 16 kHz mono.

    ``rate`` is in words per minute (80-450, espeak's default 175), ``pitch`` and
    ``pitch_range`` are 0-99 (default 50). The audio keeps espeak's own short
    leading/trailing silence. Each call uses a fresh engine, so the result
    does not depend on earlier calls. Raises ConfigError for an unknown voice
    and EspeakError if the library cannot be loaded.
    """
    with _LOCK, _Engine() as engine:
        return _speak(engine, text, voice, rate, pitch, pitch_range)


def _trim(x: np.ndarray, floor_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing silence: 5 ms frames quieter than floor_db below the loudest frame."""
    frame = SAMPLE_RATE // 200
    n = len(x) // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[:n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (floor_db / 20))
    if len(loud) == 0:
        return x[:0]
    return x[loud[0] * frame:(loud[-1] + 1) * frame]


# ----------------------------------------------------------------------------
# Noise

def _shaped(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), above 20 Hz."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec *= np.maximum(f, 20.0) ** (-exponent / 2)  # floor at 20 Hz: no DC blow-up for brown
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def _babble_pool(engine: _Engine, rng: np.random.Generator, n_words: int = 24) -> list[np.ndarray]:
    """Time-reversed words from random talkers: speech-like spectrum, nothing intelligible."""
    pool = []
    for _ in range(n_words):
        voice = f"{rng.choice(BASE_VOICES)}+{rng.choice(VARIANTS)}"
        word = str(rng.choice(BABBLE_WORDS))
        x = _trim(_speak(engine, word, voice, int(rng.integers(130, 230)), int(rng.integers(20, 80)), 50))
        pool.append(x[::-1] / (np.abs(x).max() + 1e-9))
    return pool


def _babble(n: int, rng: np.random.Generator, pool: list[np.ndarray]) -> np.ndarray:
    """3-7 overlapping talkers, each a stream of pool words with short random gaps."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 8))):
        pos = -int(rng.integers(0, SAMPLE_RATE // 2))  # streams start mid-word
        gain = rng.uniform(0.3, 1.0)
        while pos < n:
            w = pool[int(rng.integers(len(pool)))]
            a, b = max(pos, 0), min(pos + len(w), n)
            if b > a:
                out[a:b] += gain * w[a - pos:b - pos]
            pos += len(w) + int(rng.integers(0, SAMPLE_RATE // 10))
    return out


def generated_noise(n_samples: int, kind: str, rng: np.random.Generator,
                    babble_pool: list[np.ndarray] | None = None) -> np.ndarray:
    """``n_samples`` of noise at 16 kHz, float32, RMS 0.1 (-20 dBFS), clipped to [-1, 1].

    kinds: white, pink (1/f), brown (1/f^2), hum (50/60 Hz mains with
    harmonics over a faint hiss), band (band-limited noise with slow level
    changes, like a fan or running water), babble (several talkers of
    reversed synthesized words). ``babble_pool`` (reversed words at 16 kHz)
    avoids synthesizing new words for every babble call.
    """
    if kind not in NOISE_KINDS:
        raise ConfigError(f"noise kind {kind!r} unknown; known: {NOISE_KINDS}")
    n = int(n_samples)
    if n <= 0:
        return np.zeros(0, np.float32)
    t = np.arange(n) / SAMPLE_RATE
    if kind in ("white", "pink", "brown"):
        x = _shaped(n, rng, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
    elif kind == "hum":
        f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
        h = np.arange(1, 9)[:, None]
        amp = rng.uniform(0.2, 1.0, (8, 1)) / h ** rng.uniform(0.3, 1.5)
        x = (amp * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi, (8, 1)))).sum(0)
        x += 0.03 * np.std(x) * rng.standard_normal(n)
    elif kind == "band":
        centre = np.exp(rng.uniform(np.log(150), np.log(4000)))
        width = centre * rng.uniform(0.3, 1.5)
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
        spec *= np.exp(-0.5 * ((f - centre) / (width / 2)) ** 2)
        x = np.fft.irfft(spec, n)
        x *= 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t + rng.uniform(0, 2 * np.pi))
    else:  # babble
        if babble_pool is None:
            with _LOCK, _Engine() as engine:
                babble_pool = _babble_pool(engine, rng, n_words=12)
        x = _babble(n, rng, babble_pool)
    rms = np.sqrt(np.mean(x ** 2))
    x = x * (0.1 / rms) if rms > 0 else x
    return np.clip(x, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------
# Clips

def _mix(word: np.ndarray, noise: np.ndarray, offset: int, peak: float, snr_db: float):
    """Place ``word`` at ``offset``, scale it to ``peak``, add ``noise`` at ``snr_db``.

    SNR is the word's power over its own (trimmed) duration against the noise
    power over the whole clip. Returns (clip, speech part, noise part); if the
    sum would clip, all three are scaled down together, which keeps the SNR.
    """
    word = word[:CLIP_SAMPLES] * (peak / (np.abs(word).max() + 1e-12))
    speech = np.zeros(CLIP_SAMPLES, np.float64)
    speech[offset:offset + len(word)] = word
    p_speech = np.mean(word ** 2)
    p_noise = np.mean(noise.astype(np.float64) ** 2) + 1e-20
    noise = noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    clip = speech + noise
    g = min(1.0, 0.999 / (np.abs(clip).max() + 1e-12))
    return (clip * g).astype(np.float32), (speech * g).astype(np.float32), (noise * g).astype(np.float32)


def _fit_word(x: np.ndarray) -> np.ndarray:
    """Trim silence; centre-crop a word longer than 1 s."""
    x = _trim(x)
    if len(x) > CLIP_SAMPLES:
        start = (len(x) - CLIP_SAMPLES) // 2
        x = x[start:start + CLIP_SAMPLES]
    return x


@dataclass
class _Voice:
    speaker: str
    voice: str  # "base+variant"
    rate: int
    pitch: int
    pitch_range: int


def _design_voices(n: int, rng: np.random.Generator, pool: list[str] | None = None) -> list[_Voice]:
    # Every variant is used before any repeats, so small corpora still differ in timbre.
    pool = list(VARIANTS) if pool is None else list(pool)
    variants = []
    while len(variants) < n:
        variants += list(rng.permutation(pool))
    width = max(2, len(str(n - 1)))
    return [_Voice(f"synth_v{i:0{width}d}", f"{rng.choice(BASE_VOICES)}+{variants[i]}",
                   int(rng.integers(120, 221)), int(rng.integers(25, 76)), int(rng.integers(20, 81)))
            for i in range(n)]


def _voice_clips(engine: _Engine, v: _Voice, cfg: SyntheticConfig, rng: np.random.Generator,
                 babble_pool: list[np.ndarray], keywords=None, unknown_words=None) -> ClipSet:
    """All clips of one voice: every keyword, _unknown_ and _silence_, cfg.clips_per_class_per_voice each.

    ``keywords`` (None: the 10 of Speech Commands) are the classes from index 2 on; ``unknown_words``
    (None: ``cfg.unknown_words``) what an ``_unknown_`` clip says."""
    keywords = KEYWORDS if keywords is None else list(keywords)
    unknown_words = cfg.unknown_words if unknown_words is None else unknown_words
    index = {SILENCE: CLASS_INDEX[SILENCE], UNKNOWN: CLASS_INDEX[UNKNOWN],
             **{w: FIRST_KEYWORD + i for i, w in enumerate(keywords)}}
    audio, labels, origins = [], [], []
    for k in range(cfg.clips_per_class_per_voice):
        for word in keywords + [UNKNOWN, SILENCE]:
            kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
            noise = generated_noise(CLIP_SAMPLES, kind, rng, babble_pool)
            if word == SILENCE:
                level_db = rng.uniform(-70.0, -20.0)  # from near-digital silence to a loud room
                audio.append(noise * np.float32(10 ** (level_db / 20) / 0.1))
                labels.append(CLASS_INDEX[SILENCE])
                origins.append(f"synthetic:silence:noise={kind}:level={level_db:.1f}dB:n={k}")
                continue
            label = index[word]
            text = word if word != UNKNOWN else str(rng.choice(unknown_words)).strip()
            # Per-utterance jitter around the voice's settings (espeak ranges: rate 80-450, 0-99).
            rate = int(np.clip(round(v.rate * rng.uniform(0.92, 1.08)), 80, 450))
            pitch = int(np.clip(v.pitch + rng.integers(-6, 7), 0, 99))
            prange = int(np.clip(v.pitch_range + rng.integers(-10, 11), 0, 99))
            x = _fit_word(_speak(engine, text, v.voice, rate, pitch, prange))
            if len(x) == 0:
                raise EspeakError(f"espeak-ng produced no audio for {text!r} with voice {v.voice!r}")
            room = CLIP_SAMPLES - len(x)
            lo = int(np.floor(room * (1.0 - cfg.offset_spread) / 2))  # 0 at offset_spread 1: today's draw
            offset = int(rng.integers(lo, room - lo + 1))
            peak = 10 ** (rng.uniform(-26.0, -1.0) / 20)
            snr = rng.uniform(cfg.snr_db_min, cfg.snr_db_max)
            audio.append(_mix(x, noise, offset, peak, snr)[0])
            labels.append(label)
            origins.append(f"synthetic:{v.voice}:r{rate}:p{pitch}:g{prange}:word={text}:n={k}"
                           f":noise={kind}:snr={snr:.1f}")
    return ClipSet(np.stack(audio), labels, [v.speaker] * len(labels), origins)


def generate_corpus(cfg: SyntheticConfig | None = None, seed: int = 0, keywords=None) -> Corpus:
    """Generate the synthetic corpus (source="synthetic"); bit-identical for the same cfg, seed and keywords.

    ``keywords`` (None: the 10 of Speech Commands' 12-class task) are spoken from their text alone; the
    ``_unknown_`` clips say ``cfg.unknown_words`` less any word that is a keyword (so a profile whose keyword
    is, say, "marvin" does not train "marvin" as unknown); the words dropped are in ``notes``.
    """
    cfg = cfg if cfg is not None else SyntheticConfig()
    cfg.validate()
    unknown_words, dropped = None, []
    if keywords is not None:
        keywords = check_keywords(keywords)
        dropped = [w for w in cfg.unknown_words if " ".join(w.strip().lower().split()) in keywords]
        unknown_words = [w for w in cfg.unknown_words if w not in dropped]
        if not unknown_words:
            raise ConfigError(f"data.synthetic.unknown_words: every word is a keyword ({dropped}); "
                              "give non-keyword words for the _unknown_ class")
    # Independent named streams, so e.g. a change in noise length does not reshuffle the voices.
    voices = _design_voices(cfg.n_voices, np.random.default_rng([seed, 0]), cfg.variants)
    order = np.random.default_rng([seed, 1]).permutation(cfg.n_voices)
    n_train, n_val, _ = cfg.split_sizes()
    split_of = {}
    for rank, i in enumerate(order):
        split_of[voices[i].speaker] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"

    parts = {"train": [], "val": [], "test": []}
    with _LOCK, _Engine() as engine:
        for v in voices:
            engine.set_voice(v.voice)  # fail early on a bad voice
        # Babble talkers are random voices of their own, a separate set for each split.
        pools = {s: _babble_pool(engine, np.random.default_rng([seed, 2, j]))
                 for j, s in enumerate(("train", "val", "test", "background"))}
        for i, v in enumerate(voices):
            s = split_of[v.speaker]
            parts[s].append(_voice_clips(engine, v, cfg, np.random.default_rng([seed, 3, i]), pools[s],
                                         keywords, unknown_words))
        # Background "recordings": one per noise kind, cut by time into train and test parts.
        rng = np.random.default_rng([seed, 4])
        n_rec = int(cfg.noise_seconds * SAMPLE_RATE) // len(NOISE_KINDS)
        recordings = [generated_noise(n_rec, kind, rng, pools["background"]) for kind in NOISE_KINDS]
        version, espeak_rate = engine.version, engine.sample_rate
    noise_train, noise_test = split_noise_by_time(recordings, cfg.noise_test_fraction)

    notes_extra = {} if keywords is None else {"keywords": keywords, "unknown_words_dropped": dropped}
    return Corpus(
        source="synthetic",
        classes=class_names(keywords),
        train=ClipSet.concat(parts["train"]),
        val=ClipSet.concat(parts["val"]),
        test=ClipSet.concat(parts["test"]),
        noise_train=noise_train,
        noise_test=noise_test,
        notes={
            "generator": "kwslib.data.synthetic", "seed": seed, "config": asdict(cfg),
            "espeak_ng_version": version, "espeak_sample_rate": espeak_rate,
            "noise_kinds": list(NOISE_KINDS),
            "voices": {v.speaker: {"voice": v.voice, "rate": v.rate, "pitch": v.pitch,
                                   "pitch_range": v.pitch_range, "split": split_of[v.speaker]}
                       for v in voices},
            **notes_extra,
        },
    )
