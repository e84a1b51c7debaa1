"""Typed configuration: dataclasses built from YAML with strict checking.

Every params file is YAML whose top-level sections map onto config
dataclasses. Unknown keys, wrong types and unreadable files raise
:class:`ConfigError` naming the file and the key, so a typo in a params file
fails loudly instead of silently using a default.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml

from .errors import ConfigError

#: The repository (or source tree) root: params/, results/ and notebooks/ are found from it.
REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "params"


def _check_type(value, tp, where: str):
    """Coerce/validate ``value`` against the annotation ``tp``; returns the value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else typing.Any
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        out = [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls, data, where: str = "config"):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError, ArithmeticError) as exc:  # e.g. a zero divisor in a __post_init__ check
        raise ConfigError(f"{where}: {exc}") from exc
    return obj


def to_dict(obj) -> dict:
    """A dataclass as a plain JSON/YAML-able dict."""
    return dataclasses.asdict(obj)


def load_yaml(path) -> dict:
    """Read a params YAML file: a mapping at the top level, or ConfigError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file does not exist")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a params file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the params file ({exc.strerror or exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of parameters, got {type(data).__name__}")
    return data


def load_config(cls, path):
    """Load ``path`` (YAML) into dataclass ``cls`` with strict checking."""
    return from_dict(cls, load_yaml(path), where=str(path))


def profile_dir(profile: str, root=None) -> Path:
    """``params/<profile>/``, or ConfigError listing the profiles that exist."""
    root = Path(root) if root is not None else PROFILES_DIR
    valid_name = isinstance(profile, str) and profile and "/" not in profile and "\\" not in profile \
        and not profile.startswith(".")
    d = root / profile if valid_name else None
    if d is None or not d.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        where = f"no folder {d}" if d is not None else "a profile is the name of a folder of params/"
        raise ConfigError(f"unknown profile {profile!r}: {where}; known profiles: {known}")
    return d
