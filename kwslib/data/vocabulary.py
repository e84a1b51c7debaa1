"""The non-keyword vocabulary: English words whose phonemes hold no keyword.

:func:`negative_vocabulary` is a frequency list of English words (``wordfreq``) with every keyword and
keyword homophone removed: a word is dropped when espeak-ng's phonemes of it (:func:`phonemes`) hold
the phonemes of a keyword (:func:`keyword_phoneme_hits`); :func:`removed_words` says which and why.
:func:`vocabulary_part` splits it into two disjoint halves, one for the non-keyword speech a model is
trained to reject and one for the speech its false detections are counted on.

Assumption:

- **Vocabulary.** ``wordfreq.top_n_list("en", n_words)`` (wordfreq 3.1.1): the
  ``n_words`` most frequent English words *before* filtering, so the list is
  shorter than ``n_words``. Kept: lower-case ASCII letters only, at least two
  letters (plus "a" and "i"; other single letters are spelled out by espeak).
  Removed: the keywords, and every word whose espeak-ng phonemes, in *any* of
  the English base voices of :mod:`kwslib.data.synthetic`, contain a keyword's
  phonemes (in that voice) as a whole token: the homophones ("know" = "no",
  "write" = "right") and words espeak reads as a phrase holding a keyword
  (an abbreviation or a numeral: "ii" is read "roman two"). Phonemes are compared without stress marks (``'``, ``,``, ``%``,
  ``=``) and pause marks (``_``): in running speech espeak weakens the stress of
  "go" to ``g,oU``, which is still "go". Near misses that are other words
  ("not", "often", "upper", "going", "stopped") stay: they are the hard negatives.

Phonemes come from ``espeak_TextToPhonemes`` (ASCII phoneme names, one clause per call) of a private
engine of :mod:`kwslib.data.synthetic` (``_Engine``, used under its ``_LOCK``).
"""
from __future__ import annotations

import ctypes
import functools
import re

import numpy as np

from . import synthetic as _syn
from .base import KEYWORDS, check_keywords
from ..errors import ConfigError

_STRESS = str.maketrans("", "", "',%=_")
_PHONEME_ASCII = 0  # espeak_TextToPhonemes phonememode: espeak's ASCII phoneme names, space between words


def _norm(token: str) -> str:
    return token.translate(_STRESS)


def _phonemize(engine, text: str, voice: str) -> str:
    """espeak-ng's ASCII phonemes of ``text`` (words separated by spaces, clauses joined by a space)."""
    lib = engine.lib
    if getattr(lib, "_kws_t2p", None) is None:
        fn = lib.espeak_TextToPhonemes
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib._kws_t2p = fn
    engine.set_voice(voice)
    buf = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
    ptr = ctypes.c_void_p(ctypes.addressof(buf))
    out = []
    while ptr.value:  # one clause per call; the library sets ptr to NULL at the end
        r = lib._kws_t2p(ctypes.byref(ptr), _syn._CHARS_UTF8, _PHONEME_ASCII)
        if r:
            out.append(r.decode("utf-8", "replace").strip())
    return " ".join(o for o in out if o)


def phonemes(text, voice: str = "en-us"):
    """espeak-ng's phonemes of ``text`` in ``voice`` (ASCII phoneme names with stress marks, words
    separated by spaces); a list of texts gives a list, phonemized by one engine (fast)."""
    with _syn._LOCK, _syn._Engine() as engine:
        if isinstance(text, str):
            return _phonemize(engine, text, voice)
        return [_phonemize(engine, t, voice) for t in text]


def _tokens(ph: str) -> set[str]:
    return {t for t in (_norm(x) for x in ph.split()) if t}


def _keywords(keywords) -> tuple[str, ...]:
    """A keyword list as a hashable key (None: the 10 of Speech Commands)."""
    return tuple(KEYWORDS) if keywords is None else tuple(check_keywords(keywords))


@functools.cache
def _keyword_tokens(keywords: tuple[str, ...] = tuple(KEYWORDS)) -> dict[str, dict[str, str]]:
    """{base voice: {keyword phoneme token (no stress): keyword}}. A phrase's token is its phonemes without
    the spaces between its words (assumption: a phrase is caught as a whole, not word by word)."""
    with _syn._LOCK, _syn._Engine() as engine:
        return {v: {_norm(_phonemize(engine, k, v).replace(" ", "") if " " in k else _phonemize(engine, k, v)): k
                    for k in keywords} for v in _syn.BASE_VOICES}


def keyword_phoneme_hits(ph: str, voice: str = "en-us", keywords=None) -> list[str]:
    """The keywords (None: Speech Commands' 10) whose phoneme token (in ``voice``'s base) is a whole token of
    the phonemes ``ph``."""
    table = _keyword_tokens(_keywords(keywords))[voice.partition("+")[0]]
    return sorted({table[t] for t in _tokens(ph) if t in table})


_WORD_RE = re.compile(r"[a-z]+")


def filter_words(words, keywords=None) -> tuple[list[str], dict[str, str]]:
    """(kept, {removed word: reason}) of ``words`` by the rules of :func:`negative_vocabulary`, for
    ``keywords`` (None: the 10 of Speech Commands).

    Words are lower-cased; one that is not lower-case ASCII letters (or a single
    letter other than "a"/"i") is removed as "not a plain word".
    """
    keywords = _keywords(keywords)
    kw_tokens = _keyword_tokens(keywords)
    words = [str(w).strip().lower() for w in words]
    plain = [w for w in dict.fromkeys(words) if _WORD_RE.fullmatch(w) and (len(w) >= 2 or w in ("a", "i"))
             and w not in keywords]
    why: dict[str, str] = {}
    with _syn._LOCK, _syn._Engine() as engine:
        for v in _syn.BASE_VOICES:  # voices outer: switching voices costs more than a word
            for w in plain:
                if w in why:
                    continue
                ph = _phonemize(engine, w, v)
                hits = sorted({kw_tokens[v][t] for t in _tokens(ph) if t in kw_tokens[v]})
                if hits:
                    same = _norm(ph.replace(" ", "")) in kw_tokens[v]
                    why[w] = f"{'homophone of' if same else 'says'} {'/'.join(hits)} ({v}: {ph})"
    kept, removed = [], {}
    for w in words:
        if w in keywords:
            removed[w] = "keyword"
        elif not (_WORD_RE.fullmatch(w) and (len(w) >= 2 or w in ("a", "i"))):
            removed[w] = "not a plain word"
        elif w in why:
            removed[w] = why[w]
        elif w not in kept:
            kept.append(w)
    return kept, removed


@functools.cache
def _vocabulary(n_words: int, keywords: tuple[str, ...] = tuple(KEYWORDS)) -> tuple[tuple[str, ...], dict[str, str]]:
    import wordfreq

    kept, removed = filter_words(wordfreq.top_n_list("en", n_words), keywords)
    return tuple(kept), {w: r for w, r in removed.items() if r != "not a plain word"}


def negative_vocabulary(n_words: int = 5000, keywords=None) -> list[str]:
    """Frequent English words that are no keyword (None: Speech Commands' 10) and sound like none (see the
    module docstring)."""
    if not isinstance(n_words, int) or isinstance(n_words, bool) or n_words < 1:
        raise ConfigError(f"negative_vocabulary: n_words = {n_words!r} must be a positive integer")
    return list(_vocabulary(n_words, _keywords(keywords))[0])


def removed_words(n_words: int = 5000, keywords=None) -> dict[str, str]:
    """The words of the top ``n_words`` that :func:`negative_vocabulary` drops, with the reason."""
    negative_vocabulary(n_words, keywords)  # validates
    return dict(_vocabulary(n_words, _keywords(keywords))[1])


PARTS = ("train", "test")


def vocabulary_part(part: str, n_words: int = 5000, seed: int = 0, keywords=None) -> list[str]:
    """One of two disjoint halves of :func:`negative_vocabulary` (a seeded shuffle, then split):
    ``"train"`` for the non-keyword speech a model learns to reject, ``"test"`` for the speech its
    false detections are counted on, so that no word is both trained on and tested on."""
    if part not in PARTS:
        raise ConfigError(f"vocabulary_part: part must be one of {PARTS}, got {part!r}")
    words = negative_vocabulary(n_words, keywords)
    order = np.random.default_rng([seed, 7]).permutation(len(words))
    half = order[: len(words) // 2] if part == "train" else order[len(words) // 2:]
    return [words[i] for i in sorted(half)]
