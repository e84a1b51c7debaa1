from dataclasses import dataclass, field

import pytest

from kwslib.config import from_dict, load_config, load_yaml, profile_dir
from kwslib.errors import ConfigError
from kwslib.study.experiment import experiment_config


@dataclass
class Inner:
    n: int = 1
    xs: list[float] = field(default_factory=list)


@dataclass
class Outer:
    name: str = "a"
    rate: float = 0.5
    flag: bool = False
    maybe: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_from_dict_builds_nested_and_coerces_int_to_float():
    o = from_dict(Outer, {"rate": 1, "inner": {"n": 3, "xs": [1, 2.5]}, "maybe": None})
    assert o.rate == 1.0 and isinstance(o.rate, float) and o.inner.n == 3 and o.inner.xs == [1.0, 2.5]


@pytest.mark.parametrize("data,match", [
    ({"nmae": "x"}, r"unknown key\(s\) \['nmae'\]"),
    ({"rate": "fast"}, r"params.rate: expected a number"),
    ({"flag": 1}, r"params.flag: expected true/false"),
    ({"inner": {"n": 1.5}}, r"params.inner.n: expected an integer"),
    ({"inner": {"xs": "abc"}}, r"params.inner.xs: expected a list"),
    ({"inner": 3}, r"params.inner: expected a mapping"),
    ({"rate": float("nan")}, r"finite"),
])
def test_from_dict_rejects_with_location(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(Outer, data, where="params")


def test_load_yaml_errors_name_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: malformed YAML"):
        load_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(lst)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: b\nrate: 0.25\n")
    assert load_config(Outer, ok).rate == 0.25


def test_unknown_profile_lists_known(tmp_path):
    (tmp_path / "quick").mkdir()
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*\['quick'\]"):
        profile_dir("nope", root=tmp_path)
    assert profile_dir("quick", root=tmp_path).name == "quick"


def test_experiment_config_validation():
    cfg = experiment_config(model={"hidden": [8, 8]}, train={"epochs": 2})
    assert cfg.model.hidden == [8, 8] and cfg.train.epochs == 2
    with pytest.raises(ConfigError, match="params.train: unknown key"):
        experiment_config(train={"epoch": 2})
    with pytest.raises(ConfigError, match="n_mels"):
        experiment_config(model={"n_mels": 20})
    with pytest.raises(ConfigError, match="data.source: unknown source"):
        experiment_config(data={"source": "tape"})
    with pytest.raises(ConfigError, match="context_frames"):
        experiment_config(model={"context_frames": 97})
