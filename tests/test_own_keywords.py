"""Your own keywords (issue 25): a keyword list is data, through both QAT stages to the C detector."""
import numpy as np
import pytest

from kwslib.data import DataConfig, build_corpus
from kwslib.data.base import CLASSES, check_keywords, class_names, keyword_indices
from kwslib.deploy import export
from kwslib.deploy.ckernels import availability
from kwslib.deploy.pipeline import CPipeline, NumpyPipeline
from kwslib.errors import ConfigError
from kwslib.evaluation import evaluate
from kwslib.quant.qat import Stage1Config
from kwslib.quant.stage2 import Stage2Config
from kwslib.study import experiment

C_OK = availability()[0]
TWENTY = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "marvin", "sheila", "happy", "house", "bird", "tree", "forward", "backward", "follow", "learn"]


def test_class_names_follow_the_keyword_list():
    assert class_names() == CLASSES
    assert class_names(["Marvin"]) == ["_silence_", "_unknown_", "marvin"]
    assert class_names(["hey  jarvis", "stop"]) == ["_silence_", "_unknown_", "hey jarvis", "stop"]
    assert keyword_indices(3) == [2] and keyword_indices(12) == list(range(2, 12))
    with pytest.raises(ValueError):
        keyword_indices(2)


@pytest.mark.parametrize("bad, message", [
    ([], "non-empty list"), ("marvin", "non-empty list"), (["yes", "Yes"], "listed twice"),
    (["_silence_"], "reserved"), (["_unknown_", "go"], "reserved"), (["no!"], "characters"), ([""], "not a word"),
    ([3], "not a word")])
def test_bad_keyword_lists_are_refused_with_one_clear_line(bad, message):
    with pytest.raises(ConfigError, match=message):
        check_keywords(bad)
    with pytest.raises(ConfigError, match="data.keywords"):
        DataConfig(keywords=bad)


def test_keywords_need_a_source_that_can_speak_them():
    with pytest.raises(ConfigError, match="synthetic"):
        DataConfig(source="speech_commands_test_set", keywords=["marvin"])


def test_the_default_corpus_is_unchanged_by_an_explicit_keyword_list_of_the_same_words():
    """Speech Commands' 10 keywords given explicitly draw the very same corpus as the default (no list)."""
    from kwslib.data.base import KEYWORDS

    cfg = {"n_voices": 4, "clips_per_class_per_voice": 1}
    a = build_corpus(DataConfig(synthetic=cfg))
    b = build_corpus(DataConfig(synthetic=cfg, keywords=list(KEYWORDS)))
    assert a.classes == b.classes == CLASSES
    assert np.array_equal(a.train.audio, b.train.audio) and np.array_equal(a.train.labels, b.train.labels)


def _chain(keywords, tmp_path):
    cfg = experiment.experiment_config(
        data={"source": "synthetic", "keywords": keywords,
              "synthetic": {"n_voices": 6, "clips_per_class_per_voice": 1}},
        train={"epochs": 1}, eval={"n_boot": 20, "min_events": 2}, negatives={"synthetic_hours": 0.01})
    assert cfg.model.n_classes == len(keywords) + 2  # the output layer follows the class list
    p = experiment.paths(tmp_path / "results")
    rep = next(experiment.replicate_runs(cfg, p))
    assert rep.corpus.classes == class_names(keywords) and rep.data.classes == rep.corpus.classes
    op = evaluate.operating_point(rep.data, cfg.eval)
    _, _, _, _, frec = experiment.float_replicate(rep, op)
    assert frec["labels"].max() < len(keywords) + 2
    experiment.stage1_replicate(rep, op, [("tanh", 4, True)], Stage1Config(epochs=1))
    out = experiment.stage2_replicate(rep, op, [4], Stage2Config(epochs=1))
    im = out[4]["int_model"]
    assert im.class_names == class_names(keywords)
    return rep, im


@pytest.mark.parametrize("keywords", [["marvin"], ["marvin", "sheila"], TWENTY], ids=["1", "2", "20"])
def test_whole_chain_with_1_2_and_20_keywords(keywords, tmp_path):
    rep, im = _chain(keywords, tmp_path)
    blob = export.to_bytes(im)
    art = export.from_bytes(blob)
    assert art.model.class_names == class_names(keywords)  # class names survive export and load
    # the numpy specification and the C detector agree on a stream of the test clips (threshold low: detections)
    pcm = np.clip(np.concatenate(list(rep.corpus.test.audio[:12])) * 32767, -32768, 32767).astype(np.int16)
    def run(pipe):
        out = []
        for i in range(0, len(pcm), 1600):
            out += pipe.push(pcm[i:i + 1600])
        return out
    ref = run(NumpyPipeline(art, 0.02, 3, 25))
    assert ref and all(name in keywords for _, name, _ in ref)  # detections, and only of the profile's keywords
    if C_OK:
        assert run(CPipeline(art, 0.02, 3, 25)) == ref
