"""Tests of the espeak-ng synthetic corpus (kwslib.data.synthetic), on a tiny config."""
import numpy as np
import pytest

from kwslib.data import synthetic as S
from kwslib.data.base import CLASS_INDEX, CLASSES, CLIP_SAMPLES, KEYWORDS, SAMPLE_RATE, SILENCE
from kwslib.errors import ConfigError, KwsError

TINY = dict(n_voices=4, clips_per_class_per_voice=2, noise_seconds=30.0)


@pytest.fixture(scope="module")
def corpus():
    return S.generate_corpus(S.SyntheticConfig(**TINY), seed=0)


def _frame_db(x, frame=320):
    n = len(x) // frame
    return 10 * np.log10(np.mean(x[:n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)


def test_clips_shape_dtype_range(corpus):
    assert corpus.source == "synthetic"
    assert len(corpus.train) + len(corpus.val) + len(corpus.test) == 4 * 12 * 2
    for split in corpus.splits().values():
        assert split.audio.dtype == np.float32 and split.audio.shape[1] == CLIP_SAMPLES
        assert np.isfinite(split.audio).all() and np.abs(split.audio).max() <= 1.0
        assert all(o.startswith("synthetic:") for o in split.origins)


def test_every_class_in_every_split(corpus):
    for name, split in corpus.splits().items():
        counts = split.class_counts()
        assert all(counts[c] > 0 for c in CLASSES), (name, counts)


def test_speaker_disjoint(corpus):
    corpus.check_speaker_disjoint()
    voices = corpus.notes["voices"]
    assert sorted(voices) == ["synth_v00", "synth_v01", "synth_v02", "synth_v03"]
    for name, split in corpus.splits().items():
        assert len(split) and {voices[s]["split"] for s in split.speakers} == {name}


def test_utterances_of_a_voice_vary(corpus):
    # Same voice, same word, two takes: the jittered rate/pitch and the audio differ.
    tr = corpus.train
    yes = np.flatnonzero((tr.labels == CLASS_INDEX["yes"]) & (tr.speakers == tr.speakers[0]))
    assert len(yes) == 2
    assert not np.array_equal(tr.audio[yes[0]], tr.audio[yes[1]])
    assert "word=yes:n=0" in tr.origins[yes[0]] and "word=yes:n=1" in tr.origins[yes[1]]


def test_deterministic(corpus):
    again = S.generate_corpus(S.SyntheticConfig(**TINY), seed=0)
    for name, split in corpus.splits().items():
        other = again.splits()[name]
        assert split.audio.tobytes() == other.audio.tobytes(), name
        assert split.labels.tolist() == other.labels.tolist()
        assert split.speakers.tolist() == other.speakers.tolist()
        assert split.origins.tolist() == other.origins.tolist()
    for a, b in zip(corpus.noise_train + corpus.noise_test, again.noise_train + again.noise_test):
        assert a.tobytes() == b.tobytes()
    different = S.generate_corpus(S.SyntheticConfig(**TINY), seed=1)
    assert different.train.audio.tobytes() != corpus.train.audio.tobytes()


def test_mixed_speech_is_at_the_chosen_snr():
    word = S._fit_word(S.synthesize("yes", "en-us+m3", 175, 50))
    noise = S.generated_noise(CLIP_SAMPLES, "pink", np.random.default_rng(0))
    offset = 3000
    for snr in (5.0, 20.0):
        clip, speech, noise_part = S._mix(word, noise, offset, peak=0.5, snr_db=snr)
        np.testing.assert_allclose(clip, speech + noise_part, atol=1e-6)
        active = speech[offset:offset + len(word)]
        measured = 10 * np.log10(np.mean(active.astype(np.float64) ** 2) / np.mean(noise_part.astype(np.float64) ** 2))
        assert abs(measured - snr) < 0.05
        # In the mixed clip, the loudest frame of the word stands well above the noise-only part.
        fr = _frame_db(clip)
        noise_floor = np.median(_frame_db(clip[:offset]))
        assert fr.max() - noise_floor > snr + 3


def test_corpus_keyword_clips_rise_above_noise(corpus):
    # Loudest 20 ms frame against the quietest tenth (noise only; a word fills at most ~60 %).
    # SNRs are >= 5 dB over the word and speech peaks above its mean, so this rise is large.
    rise = [np.ptp(np.percentile(_frame_db(x), [10, 100]))
            for x, y in zip(corpus.train.audio, corpus.train.labels) if CLASSES[y] in KEYWORDS]
    assert np.median(rise) > 15 and min(rise) > 6


def test_silence_clips_are_noise_only(corpus):
    sil = corpus.train.labels == CLASS_INDEX[SILENCE]
    rms = np.sqrt(np.mean(corpus.train.audio[sil] ** 2, axis=1))
    assert (rms > 0).all() and (rms < 0.2).all()
    assert all(":silence:" in o for o in corpus.train.origins[sil])


def test_synthesize_rate_and_duration():
    x = S.synthesize("yes", "en-us", 175, 50)
    assert x.dtype == np.float32 and x.ndim == 1 and np.abs(x).max() <= 1.0
    assert 0.2 <= len(x) / SAMPLE_RATE <= 1.5
    assert 0.2 <= len(S._trim(x)) / SAMPLE_RATE <= 1.5
    # 16 kHz output holds as many seconds as espeak's native-rate output.
    with S._Engine() as engine:
        raw = engine.synth("yes", "en-us", 175, 50, 50)
        assert abs(len(x) - len(raw) * SAMPLE_RATE / engine.sample_rate) <= 1
    slow = S._trim(S.synthesize("yes", "en-us", 100, 50))
    assert len(slow) > 1.3 * len(S._trim(x))
    # A fresh engine per call: the same call gives the same samples.
    assert np.array_equal(x, S.synthesize("yes", "en-us", 175, 50))


def test_unknown_voice_is_a_config_error():
    with pytest.raises(ConfigError, match="xx-nosuch"):
        S.synthesize("yes", "xx-nosuch", 175, 50)
    with pytest.raises(ConfigError, match="nosuchvariant"):
        S.synthesize("yes", "en-us+nosuchvariant", 175, 50)


def test_missing_library_is_a_kws_error(monkeypatch):
    import espeakng_loader

    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: "/nonexistent/libespeak-ng.so")
    S._paths.cache_clear()
    try:
        with pytest.raises(KwsError, match="/nonexistent/libespeak-ng.so"):
            S.synthesize("yes", "en-us", 175, 50)
    finally:
        S._paths.cache_clear()


@pytest.mark.parametrize("change, name", [
    (dict(val_fraction=0.0), "val_fraction"),
    (dict(test_fraction=1.5), "test_fraction"),
    (dict(val_fraction=0.5, test_fraction=0.5), "test_fraction"),
    (dict(n_voices=2), "n_voices"),
    (dict(n_voices=0), "n_voices"),
    (dict(clips_per_class_per_voice=0), "clips_per_class_per_voice"),
    (dict(snr_db_min=20.0, snr_db_max=10.0), "snr_db_min"),
    (dict(unknown_words=[]), "unknown_words"),
    (dict(unknown_words=["cat", "yes"]), "unknown_words"),
    (dict(noise_seconds=5.0), "noise_seconds"),
    (dict(noise_test_fraction=1.0), "noise_test_fraction"),
    (dict(snr_db_max="loud"), "snr_db_max"),
    (dict(variants=[]), "variants"),
    (dict(variants=["m3", "robot"]), "variants"),
    (dict(variants=["m3", "m3"]), "variants"),
    (dict(offset_spread=1.5), "offset_spread"),
    (dict(offset_spread=-0.1), "offset_spread"),
])
def test_bad_config(change, name):
    with pytest.raises(ConfigError, match=name):
        S.generate_corpus(S.SyntheticConfig(**{**TINY, **change}))


def test_variants_restrict_the_voice_pool():
    cfg = S.SyntheticConfig(**{**TINY, "variants": ["m3", "f2"]})
    voices = S.generate_corpus(cfg, seed=0).notes["voices"]
    used = {v["voice"].partition("+")[2] for v in voices.values()}
    assert used == {"m3", "f2"}  # every listed variant is used before any repeats
    # The default (None) draws from all of VARIANTS: listing them all gives the same corpus.
    default = S.generate_corpus(S.SyntheticConfig(**TINY), seed=0)
    listed = S.generate_corpus(S.SyntheticConfig(**{**TINY, "variants": list(S.VARIANTS)}), seed=0)
    assert default.notes["voices"] == listed.notes["voices"]
    assert default.train.audio.tobytes() == listed.train.audio.tobytes()


@pytest.mark.parametrize("spread", [0.0, 0.3, 1.0])
def test_offset_spread_places_words(monkeypatch, spread):
    placed = []
    real_mix = S._mix

    def spy(word, noise, offset, peak, snr_db):
        placed.append((offset, CLIP_SAMPLES - len(word)))
        return real_mix(word, noise, offset, peak, snr_db)

    monkeypatch.setattr(S, "_mix", spy)
    S.generate_corpus(S.SyntheticConfig(**{**TINY, "n_voices": 3, "offset_spread": spread}), seed=0)
    assert len(placed) == 3 * 11 * 2  # every word clip (not _silence_)
    for offset, room in placed:
        lo = np.floor(room * (1 - spread) / 2)
        assert lo <= offset <= room - lo
    centre_dev = np.array([abs(o - r / 2) / max(r, 1) for o, r in placed])  # 0: centred, 0.5: at an edge
    if spread == 0.0:
        assert centre_dev.max() <= 0.5 / min(r for _, r in placed) + 1e-9
    else:
        assert centre_dev.max() <= spread / 2 + 1e-9 and centre_dev.max() > spread / 4


def test_config_from_dict_rejects_unknown_keys():
    assert S.SyntheticConfig.from_dict({"n_voices": 10}).n_voices == 10
    with pytest.raises(ConfigError, match="n_voice"):
        S.SyntheticConfig.from_dict({"n_voice": 10})


def _low_share(x, hz=500):
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return p[f < hz].sum() / p.sum()


def test_noise_kinds_spectra():
    rng = np.random.default_rng(0)
    n = 2 * SAMPLE_RATE
    noise = {k: S.generated_noise(n, k, rng) for k in S.NOISE_KINDS}
    for k, x in noise.items():
        assert x.dtype == np.float32 and x.shape == (n,), k
        assert abs(np.sqrt(np.mean(x ** 2)) - 0.1) < 0.01, k
    white, pink, brown = (_low_share(noise[k]) for k in ("white", "pink", "brown"))
    assert abs(white - 500 / 8000) < 0.02  # flat spectrum: share = bandwidth share
    assert pink > 3 * white and brown > pink
    # Mains hum: the strongest bin is a harmonic of 50 or 60 Hz.
    p = np.abs(np.fft.rfft(noise["hum"]))
    f_peak = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)[p.argmax()]
    assert min(abs(f_peak / 50 - round(f_peak / 50)), abs(f_peak / 60 - round(f_peak / 60))) < 0.05
    with pytest.raises(ConfigError, match="rain"):
        S.generated_noise(n, "rain", rng)


def test_noise_train_and_test_parts_are_disjoint(corpus):
    assert len(corpus.noise_train) == len(corpus.noise_test) == len(S.NOISE_KINDS)
    per_kind = int(30.0 * SAMPLE_RATE) // len(S.NOISE_KINDS)
    for tr, te in zip(corpus.noise_train, corpus.noise_test):
        assert len(tr) + len(te) == per_kind and len(te) >= CLIP_SAMPLES
        assert abs(len(te) / per_kind - 0.2) < 0.01
        # No stretch of test audio occurs anywhere in the training audio.
        for start in range(0, len(te) - 32, 2000):
            probe = te[start:start + 32]
            hits = np.flatnonzero(tr[:len(tr) - 31] == probe[0])
            assert not any(np.array_equal(tr[h:h + 32], probe) for h in hits)
