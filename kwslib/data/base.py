"""The one record schema every data source yields.

A corpus is three :class:`ClipSet` splits (train, val, test) plus background
noise recordings cut by time into a training part and a test part, so that no
noise audio is both trained on and tested on.

Schema of one clip (one row of a ClipSet):
    audio    float32, 16 kHz mono, exactly ``CLIP_SAMPLES`` samples, in [-1, 1]
    label    int index into ``CLASSES`` (the Speech Commands 12-class task)
    speaker  str, a speaker id (real data) or a voice-settings group (synthetic);
             speakers never cross splits
    origin   str, where the clip came from (file path relative to the dataset
             root, or a synthetic recipe string)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..frontend.audio import SAMPLE_RATE  # noqa: F401  (re-exported: the data schema's rate)
CLIP_SAMPLES = 16000  # Speech Commands clips are 1 s

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
CLASSES = [SILENCE, UNKNOWN] + KEYWORDS
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
#: Every class list starts with _silence_ and _unknown_; the keywords follow from this index on.
FIRST_KEYWORD = 2


def check_keywords(keywords, where: str = "data.keywords") -> list[str]:
    """A profile's keyword list, checked: one or more distinct words or short phrases (lower-case, single
    spaces). ConfigError naming ``where`` for an empty list, a duplicate, ``_silence_``/``_unknown_`` or a
    word that is not a plain string of letters, digits, apostrophes and spaces."""
    import re

    from ..errors import ConfigError

    if isinstance(keywords, str) or not isinstance(keywords, (list, tuple)) or not keywords:
        raise ConfigError(f"{where}: needs a non-empty list of keywords, got {keywords!r}")
    out = []
    for k in keywords:
        if not isinstance(k, str) or not k.strip():
            raise ConfigError(f"{where}: {k!r} is not a word or phrase")
        word = " ".join(k.strip().lower().split())
        if word in (SILENCE, UNKNOWN):
            raise ConfigError(f"{where}: {word!r} is a reserved class name, not a keyword")
        if not re.fullmatch(r"[a-z0-9' ]+", word):
            raise ConfigError(f"{where}: {k!r} holds characters other than letters, digits, apostrophes and spaces")
        if word in out:
            raise ConfigError(f"{where}: {word!r} is listed twice")
        out.append(word)
    return out


def class_names(keywords=None) -> list[str]:
    """The classes of a keyword list: ``_silence_``, ``_unknown_``, then the keywords (None: the 10 of
    Speech Commands' 12-class task, :data:`CLASSES`)."""
    return list(CLASSES) if keywords is None else [SILENCE, UNKNOWN] + check_keywords(keywords)


def keyword_indices(n_classes: int) -> list[int]:
    """The class indices of the keywords among ``n_classes`` classes (all but the first two)."""
    if not isinstance(n_classes, int) or n_classes <= FIRST_KEYWORD:
        raise ValueError(f"keyword_indices: need more than {FIRST_KEYWORD} classes, got {n_classes!r}")
    return list(range(FIRST_KEYWORD, n_classes))

# The 35 words of Speech Commands v0.02 (v0.01 has the first 30).
ALL_WORDS_V1 = KEYWORDS + [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
]
ALL_WORDS_V2 = ALL_WORDS_V1 + ["backward", "forward", "follow", "learn", "visual"]


def word_to_class(word: str, keywords=None) -> int:
    """Map a Speech Commands word (or ``_silence_``/``_unknown_``) to its class index.

    The keywords (None: the 10 of the 12-class task) map to themselves, every other word to ``_unknown_``.
    """
    index = CLASS_INDEX if keywords is None else {name: i for i, name in enumerate(class_names(keywords))}
    if word in index:
        return index[word]
    if word == "_background_noise_":
        return CLASS_INDEX[SILENCE]
    return CLASS_INDEX[UNKNOWN]


@dataclass
class ClipSet:
    """A split of clips in the common schema (columns as numpy arrays)."""

    audio: np.ndarray  # float32 [N, CLIP_SAMPLES]
    labels: np.ndarray  # int64 [N]
    speakers: np.ndarray  # str (object) [N]
    origins: np.ndarray  # str (object) [N]

    def __post_init__(self):
        self.audio = np.asarray(self.audio, dtype=np.float32)
        if self.audio.ndim != 2 or (len(self.audio) and self.audio.shape[1] != CLIP_SAMPLES):
            if not (self.audio.size == 0):
                raise ValueError(f"ClipSet.audio must be [N, {CLIP_SAMPLES}], got {self.audio.shape}")
            self.audio = self.audio.reshape(0, CLIP_SAMPLES)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.speakers = np.asarray(self.speakers, dtype=object)
        self.origins = np.asarray(self.origins, dtype=object)
        n = len(self.audio)
        for name in ("labels", "speakers", "origins"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ClipSet.{name} has {len(getattr(self, name))} rows, audio has {n}")
        if n and self.labels.min() < 0:
            raise ValueError("ClipSet.labels must be class indices >= 0")  # the upper end: Corpus.classes

    def __len__(self) -> int:
        return len(self.audio)

    def subset(self, index) -> "ClipSet":
        index = np.asarray(index)
        return ClipSet(self.audio[index], self.labels[index], self.speakers[index], self.origins[index])

    def class_counts(self, class_names=None) -> dict[str, int]:
        """Clips per class, by name (``class_names`` None: the 12 classes of :data:`CLASSES`)."""
        names = CLASSES if class_names is None else list(class_names)
        counts = np.bincount(self.labels, minlength=len(names))
        return {name: int(c) for name, c in zip(names, counts)}

    @staticmethod
    def concat(sets: list["ClipSet"]) -> "ClipSet":
        sets = [s for s in sets if len(s)]
        if not sets:
            return ClipSet.empty()
        return ClipSet(
            np.concatenate([s.audio for s in sets]),
            np.concatenate([s.labels for s in sets]),
            np.concatenate([s.speakers for s in sets]),
            np.concatenate([s.origins for s in sets]),
        )

    @staticmethod
    def empty() -> "ClipSet":
        return ClipSet(np.zeros((0, CLIP_SAMPLES), np.float32), [], [], [])


@dataclass
class Corpus:
    """Train/val/test splits plus background noise split by time."""

    source: str  # "synthetic" | "speech_commands_v0.02" | "speech_commands_test_set_v0.02" | "hub" | ...
    train: ClipSet
    val: ClipSet
    test: ClipSet
    noise_train: list = field(default_factory=list)  # list of float32 1-D arrays at 16 kHz
    noise_test: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)  # free-form provenance (split seed, skipped files, ...)
    classes: list = field(default_factory=lambda: list(CLASSES))  # class names; labels index into it

    def __post_init__(self):
        self.classes = list(self.classes)
        for name, split in self.splits().items():
            if len(split) and split.labels.max() >= len(self.classes):
                raise ValueError(f"Corpus.{name}: label {int(split.labels.max())} outside its "
                                 f"{len(self.classes)} classes {self.classes}")

    @property
    def keywords(self) -> list[str]:
        return list(self.classes[FIRST_KEYWORD:])

    def splits(self) -> dict[str, ClipSet]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def check_speaker_disjoint(self) -> None:
        """Raise ValueError if a speaker appears in two splits."""
        seen = {}
        for name, split in self.splits().items():
            for spk in set(split.speakers.tolist()):
                if spk in seen and seen[spk] != name:
                    raise ValueError(f"speaker {spk!r} is in both {seen[spk]} and {name}")
                seen[spk] = name


def split_noise_by_time(recordings: list, test_fraction: float = 0.2) -> tuple[list, list]:
    """Cut each noise recording into a leading training part and a trailing test part.

    The ``_silence_`` clips of the Speech Commands test set were probably cut
    from the same six recordings, so training noise and test noise must never
    overlap in time.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train, test = [], []
    for rec in recordings:
        rec = np.asarray(rec, dtype=np.float32)
        cut = int(round(len(rec) * (1.0 - test_fraction)))
        train.append(rec[:cut])
        test.append(rec[cut:])
    return train, test
