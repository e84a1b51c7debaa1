"""``results/<profile>/summary.json``: the machine-readable record of a run.

Each notebook merges its part into the summary (see docs/DESIGN.md section 8 for
the contract). Writes are atomic; a value not measured in a run is ``null``.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import subprocess
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .io import atomic_write_json


def git_commit(root=None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root or Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except Exception:
        return None


def _plain(obj):
    """Convert numpy scalars/arrays and NaN to JSON-able values (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    return obj


def _merge(base: dict, patch: dict) -> dict:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def load_summary(results_dir) -> dict:
    path = Path(results_dir) / "summary.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: damaged summary.json ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: summary.json must hold a JSON object")
    return data


def with_views(summary: dict) -> dict:
    """``summary`` with the contract's derived keys set from what it holds (no value is computed anew):
    ``negatives.fdph_by_source[<model>]`` is ``models.<model>.fdph_by_source`` (false detections per hour at
    the operating point on each negative source), for every model that has it."""
    by_model = {name: e["fdph_by_source"] for name, e in (summary.get("models") or {}).items()
                if isinstance(e, dict) and isinstance(e.get("fdph_by_source"), dict)}
    if by_model:
        negatives = summary.setdefault("negatives", {})
        if not isinstance(negatives, dict):
            raise ConfigError(f"summary 'negatives' must be a mapping, got {type(negatives).__name__}")
        negatives["fdph_by_source"] = by_model
    return summary


def update_summary(results_dir, profile: str, patch: dict) -> dict:
    """Deep-merge ``patch`` into ``results_dir/summary.json`` (atomic) and return the result."""
    summary = load_summary(results_dir)
    summary = with_views(_merge(summary, _plain(patch)))
    summary["profile"] = profile
    summary["created"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    summary["git_commit"] = git_commit()
    atomic_write_json(Path(results_dir) / "summary.json", summary)
    return summary
