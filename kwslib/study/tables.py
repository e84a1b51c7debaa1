"""Tables a notebook shows: configs as compact tables, wide tables split to fit a rendered page.

Notebooks print no raw dumps (a dataclass repr, a JSON block): a config becomes one row per section
with its settings as ``key=value`` text (:func:`config_rows`), numbers are rounded to what they
support (:func:`short`), and a table wider than a page is shown as several tables that repeat the
index (:func:`split_columns`).
"""
from __future__ import annotations

import dataclasses
import math

from ..errors import ConfigError

#: Characters of a rendered page row: a notebook's output area in HTML at a common zoom holds ~120
#: monospace-width characters of table before it scrolls (checked by eye on nbconvert's HTML).
PAGE_CHARS = 120
LIST_ITEMS = 6


def short(v, digits: int = 4) -> str:
    """A value as short text: floats to ``digits`` significant digits, long lists cut, nested dicts inline."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        items = [short(x, digits) for x in v[:LIST_ITEMS]]
        more = f", ... ({len(v)})" if len(v) > LIST_ITEMS else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {short(x, digits)}" for k, x in v.items()) + "}"
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return short(dataclasses.asdict(v), digits)
    return str(v)


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def config_rows(cfg, skip_none: bool = True) -> list[dict]:
    """A config as rows ``{"section", "settings"}``: one row per top-level section of a nested dataclass
    (``ExperimentConfig``: data, features, model, ...), or one row for a flat one (``Stage1Config``);
    nested settings as dotted keys, ``None`` values left out unless ``skip_none`` is False."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        d = dataclasses.asdict(cfg)
        name = type(cfg).__name__
    elif isinstance(cfg, dict):
        d, name = cfg, "config"
    else:
        raise ConfigError(f"config_rows: expected a dataclass instance or a dict, got {type(cfg).__name__}")
    nested = bool(d) and all(isinstance(v, dict) for v in d.values())
    sections = d.items() if nested else [(name, d)]
    rows = []
    for sec, body in sections:
        items = [(k, v) for k, v in _flat(body) if not (skip_none and v is None)]
        rows.append({"section": sec, "settings": ", ".join(f"{k}={short(v)}" for k, v in items)})
    return rows


def _width(df, col) -> int:
    cells = [len(str(x)) for x in df[col].tolist()]
    return max([len(str(col)), *cells]) + 2


def split_columns(df, max_chars: int = PAGE_CHARS) -> list:
    """``df`` (a pandas DataFrame) as a list of DataFrames over consecutive column groups, each at most
    ``max_chars`` wide (the index is repeated in each; a single column wider than that stays alone)."""
    if max_chars < 20:
        raise ConfigError(f"split_columns: max_chars must be at least 20, got {max_chars}")
    index_w = max([len(str(x)) for x in df.index.tolist()] + [len(str(df.index.name or ""))]) + 2
    groups, cur, used = [], [], index_w
    for col in df.columns:
        w = _width(df, col)
        if cur and used + w > max_chars:
            groups.append(cur)
            cur, used = [], index_w
        cur.append(col)
        used += w
    if cur:
        groups.append(cur)
    return [df[g] for g in groups]


def text_table(rows: list[dict]):
    """Rows of text (long cells) as a pandas Styler that wraps them: left-aligned, no index."""
    import pandas as pd

    return (pd.DataFrame(rows).style.hide(axis="index")
            .set_properties(**{"text-align": "left", "white-space": "normal"}))


def config_table(cfg):
    """:func:`config_rows` as a :func:`text_table` (a notebook's config cell)."""
    return text_table(config_rows(cfg))


def rounded(df, digits: int = 4):
    """A copy of ``df`` with floats rounded to ``digits`` decimals and list cells (intervals) as short text."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].round(digits)
        elif out[col].dtype == object:
            out[col] = [("[" + ", ".join(f"{x:.{digits}f}" if isinstance(x, float) else str(x) for x in v) + "]")
                        if isinstance(v, (list, tuple)) else v for v in out[col]]
    return out


def display_wide(df, max_chars: int = PAGE_CHARS) -> int:
    """Display ``df`` as :func:`split_columns` parts (in a notebook); returns how many tables were shown."""
    from IPython.display import display

    parts = split_columns(df, max_chars)
    for part in parts:
        display(part)
    return len(parts)


def lookup(d, *keys):
    """Nested lookup through dicts (by key) and lists (by index); None when anything is missing."""
    for k in keys:
        if isinstance(d, dict) and k in d and d[k] is not None:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return None
    return d


def markdown_table(rows: list[dict], cols: list[str]) -> str:
    """``rows`` as a markdown table of columns ``cols`` (floats to 4 decimals, lists in brackets, None empty)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
