"""``kwslib new-profile NAME --keywords w1 w2 ... [--recordings DIR] [--from sc|synthetic|both]``.

Writes ``params/NAME/`` (``shared.yaml`` and one YAML per notebook), so that ``make reproduce PROFILE=NAME``
runs the same notebooks on your keywords. The notebooks' settings are those of the ``quick`` profile (its
training schedule, QAT schedules and ablation); ``shared.yaml`` says where the keyword clips come from:

- ``synthetic``: espeak-ng speaks the keywords from their text (no data needed);
- ``sc``: Speech Commands clips of the keywords (each must be one of its 35 words), from the test-set archive
  at ``$KWS_SC12_ROOT``, split by speaker into 3 folds' replicates;
- ``both``: the Speech Commands clips, with the synthetic corpus of the same keywords added to training.

``--recordings DIR`` adds your own recordings (``DIR/<keyword>/*``, any common audio format) to training.
Every check runs before anything is written: a bad keyword list, a keyword no source has, a recordings folder
with no audio or an unreadable file each stop with one line, and ``params/NAME`` is written whole (a
temporary folder renamed) or not at all.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from ..config import PROFILES_DIR
from ..errors import ConfigError

SOURCES = ("synthetic", "sc", "both")
TEMPLATE = "quick"
TEMPLATE_DIR = PROFILES_DIR / TEMPLATE  # the notebooks' settings come from here; new profiles go to PROFILES_DIR
NOTEBOOK_PARAMS = ("01_float.yaml", "02_stage1.yaml", "03_stage2.yaml", "04_integer.yaml", "05_memory.yaml",
                   "06_report.yaml")


def shared_params(keywords: list[str], source: str, recordings: str | None) -> dict:
    """``shared.yaml`` of a new profile: quick's training settings, the keywords and their sources."""
    template = yaml.safe_load((TEMPLATE_DIR / "shared.yaml").read_text())
    data = dict(template["data"]) if source == "synthetic" else {
        "source": "speech_commands_test_set", "split_seed": 0, "val_fraction": 0.125, "noise_test_fraction": 0.2,
        "unknown_speech_hours": template["data"].get("unknown_speech_hours", 0.0)}
    data["keywords"] = list(keywords)
    if source == "both":
        data["mix_synthetic_train"] = True
        data["synthetic"] = template["data"].get("synthetic", {})
    if recordings is not None:
        data["recordings"] = str(Path(recordings).resolve())
    out = {k: v for k, v in template.items() if k != "data"}
    out["data"] = data
    out["model"] = {}  # the output layer follows the keywords
    out["replicates"] = {"n": 3, "kind": "seeds" if source == "synthetic" else "speaker_folds"}
    return out


def check_new_profile(name: str, keywords, source: str = "synthetic", recordings=None, params_dir=None) -> list[str]:
    """Every check of :func:`new_profile`, nothing written; returns the keywords as the profile will hold them."""
    from ..data import DataConfig
    from ..data.base import check_keywords

    params_dir = Path(params_dir) if params_dir is not None else PROFILES_DIR
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name or ""):
        raise ConfigError(f"new-profile: name {name!r} must be lower-case letters, digits, '-' or '_'")
    if (params_dir / name).exists():
        raise ConfigError(f"new-profile: {params_dir / name} exists already; choose another name or remove it")
    if source not in SOURCES:
        raise ConfigError(f"new-profile: --from must be one of {list(SOURCES)}, got {source!r}")
    keywords = check_keywords(keywords, "new-profile --keywords")
    if recordings is not None:
        from ..data.recordings import load_recordings

        load_recordings(recordings, keywords, where="new-profile --recordings")  # readable, not empty
    data = shared_params(keywords, source, recordings)["data"]
    if source != "synthetic" and not os.environ.get("KWS_SC12_ROOT"):
        raise ConfigError("new-profile: --from sc/both reads the Speech Commands test-set archive: set KWS_SC12_ROOT")
    DataConfig(**{k: v for k, v in data.items() if k != "synthetic"})  # no source for a keyword, and the rest
    return keywords


def new_profile(name: str, keywords, source: str = "synthetic", recordings=None, params_dir=None) -> Path:
    """Write ``params/<name>/`` for ``keywords`` (see the module docstring); returns the folder."""
    params_dir = Path(params_dir) if params_dir is not None else PROFILES_DIR
    keywords = check_new_profile(name, keywords, source, recordings, params_dir)
    shared = shared_params(keywords, source, recordings)
    params_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=params_dir))
    try:
        head = (f"# Profile `{name}` ({', '.join(keywords)}; keyword clips from {source}"
                + (f" and your recordings in {shared['data']['recordings']}" if recordings else "")
                + "), written by `kwslib new-profile`.\n")
        (tmp / "shared.yaml").write_text(head + "# Settings from the quick profile; the classes are _silence_, "
                                         "_unknown_, then the keywords.\n" + yaml.safe_dump(shared, sort_keys=False))
        for f in NOTEBOOK_PARAMS:
            text = (TEMPLATE_DIR / f).read_text()
            body = "\n".join(line for line in text.splitlines() if not line.startswith("# Profile `"))
            (tmp / f).write_text(f"# Profile `{name}`, from the quick profile's {f}.\n" + body.lstrip("\n") + "\n")
        os.replace(tmp, params_dir / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return params_dir / name
