"""Notebook tables (kwslib.study.tables): compact configs, rounded values, wide tables split to fit a page."""
import dataclasses

import pandas as pd
import pytest

from kwslib.study import tables
from kwslib.errors import ConfigError


@dataclasses.dataclass
class Inner:
    a: int = 1
    words: list = dataclasses.field(default_factory=lambda: [f"w{i}" for i in range(10)])
    off: object = None


@dataclasses.dataclass
class Outer:
    data: Inner = dataclasses.field(default_factory=Inner)
    train: dict = dataclasses.field(default_factory=lambda: {"lr": 0.00123456, "sched": {"warmup": 2}})


def test_short_rounds_and_cuts():
    assert tables.short(0.123456789) == "0.1235" and tables.short(2.0) == "2"
    assert tables.short([1, 2, 3]) == "[1, 2, 3]"
    assert tables.short(list(range(10))) == "[0, 1, 2, 3, 4, 5, ... (10)]"
    assert tables.short({"a": 0.5, "b": [1.23456]}) == "{a: 0.5, b: [1.235]}"
    assert tables.short(None) == "None" and tables.short(True) == "True"


def test_config_rows_one_row_per_section():
    rows = tables.config_rows(Outer())
    assert [r["section"] for r in rows] == ["data", "train"]
    assert rows[0]["settings"] == "a=1, words=[w0, w1, w2, w3, w4, w5, ... (10)]"  # None left out
    assert rows[1]["settings"] == "lr=0.001235, sched.warmup=2"
    flat = tables.config_rows(Inner(), skip_none=False)
    assert flat == [{"section": "Inner", "settings": "a=1, words=[w0, w1, w2, w3, w4, w5, ... (10)], off=None"}]
    with pytest.raises(ConfigError, match="expected a dataclass instance or a dict"):
        tables.config_rows(3)


def test_split_columns_fits_and_keeps_every_column_once():
    df = pd.DataFrame({f"column_{i}": [123.456789, 1.0] for i in range(12)}, index=["stage2_w8", "float"])
    parts = tables.split_columns(df, max_chars=60)
    assert len(parts) > 1
    assert [c for p in parts for c in p.columns] == list(df.columns)
    for p in parts:
        assert list(p.index) == list(df.index)
        assert len(p.to_string().splitlines()[0]) <= 60 + 2  # header row within the page (to_string pads 1-2)
    assert len(tables.split_columns(df, max_chars=10_000)) == 1
    with pytest.raises(ConfigError):
        tables.split_columns(df, max_chars=5)


def test_rounded_rounds_floats_and_intervals():
    df = pd.DataFrame({"x": [0.123456], "ci": [[-0.0428123, 0.1]], "v": ["better"]})
    out = tables.rounded(df, 3)
    assert out["x"][0] == 0.123 and out["ci"][0] == "[-0.043, 0.100]" and out["v"][0] == "better"
    assert df["x"][0] == 0.123456  # a copy


def test_text_table_wraps():
    html = tables.config_table(Outer()).to_html()
    assert "white-space: normal" in html and "sched.warmup=2" in html
