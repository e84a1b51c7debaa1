"""``make reproduce``: run the notebooks of a profile in order, headless, with papermill.

For each notebook ``notebooks/NN_name.ipynb`` with a params file
``params/<profile>/<file>.yaml`` (merged over the profile's ``shared.yaml``) the executed copy goes to
``results/<profile>/NN_name.ipynb``. A notebook is skipped when its inputs
(notebook, params file, kwslib sources, data-location variables and every
upstream notebook's stamp) did not change since its last successful run on this machine
(stamps live in the ignored results/<profile>/.stamps/, so a fresh clone runs everything).
A failing notebook stops the run, shows the cell and error, and is kept as
``results/<profile>/failed/NN_name.ipynb``; earlier results stay untouched
(each executed notebook is written to a temp file and renamed on success).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from .config import load_yaml, profile_dir
from .errors import ConfigError
from .io import atomic_path, atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
# notebook stem -> params file stem, in run order
NOTEBOOKS = [
    ("01_float_baseline", "01_float"),
    ("02_stage1_tanh_qat", "02_stage1"),
    ("03_stage2_linear_qat", "03_stage2"),
    ("04_integer_inference", "04_integer"),
    ("05_accelerator_memory", "05_memory"),
    ("06_report", "06_report"),
]
DATA_ENV = ("KWS_SC12_ROOT", "KWS_SC_NOISE_ROOT", "KWS_SC_FULL_ROOT")


def _hash_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(Path(p).relative_to(ROOT)).encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def source_hash() -> str:
    files = [p for p in (ROOT / "kwslib").rglob("*") if p.is_file() and p.suffix in (".py", ".c", ".h")]
    return _hash_files(files)


def notebook_parameters(nb_path: Path) -> set:
    import papermill

    return set(papermill.inspect_notebook(str(nb_path)).keys())


SHARED = "shared.yaml"


def check_params(nb_path: Path, params_path: Path) -> dict:
    """The notebook's parameters: ``shared.yaml`` of the profile (the keys the notebook takes), then its own file.

    ``params/<profile>/shared.yaml`` holds what every notebook of a profile must agree on
    (data, features, model, train, eval), written once. ConfigError if the notebook's own file
    has a key that is not a parameter of the notebook.
    """
    own = load_yaml(params_path)
    known = notebook_parameters(nb_path)
    unknown = sorted(set(own) - known)
    if unknown:
        raise ConfigError(f"{params_path}: unknown parameter(s) {unknown} for {nb_path.name}; known: {sorted(known)}")
    shared_path = params_path.parent / SHARED
    shared = load_yaml(shared_path) if shared_path.exists() else {}
    params = {k: v for k, v in shared.items() if k in known}
    params.update(own)
    return params


def run(profile: str, force: bool = False, only: list[str] | None = None, results_root=None) -> int:
    pdir = profile_dir(profile, ROOT / "params")
    results = Path(results_root) if results_root else ROOT / "results" / profile
    results.mkdir(parents=True, exist_ok=True)
    stamps = results / ".stamps"
    src = source_hash()
    upstream = ""
    env = {k: os.environ.get(k) for k in DATA_ENV}
    ran = 0
    for nb_stem, params_stem in NOTEBOOKS:
        nb = ROOT / "notebooks" / f"{nb_stem}.ipynb"
        params_path = pdir / f"{params_stem}.yaml"
        if not nb.exists():
            continue
        if not params_path.exists():
            raise ConfigError(f"{params_path}: params file missing for notebook {nb.name} (profile {profile})")
        if only and nb_stem not in only and params_stem not in only:
            continue
        params = check_params(nb, params_path)
        stamp_key = hashlib.sha256(json.dumps(
            [_hash_files([nb, params_path]), params, src, upstream, env], sort_keys=True, default=str).encode()).hexdigest()
        out = results / f"{nb_stem}.ipynb"
        stamp_file = stamps / f"{nb_stem}.json"
        upstream = stamp_key
        if not force and out.exists() and stamp_file.exists():
            try:
                if json.loads(stamp_file.read_text()).get("key") == stamp_key:
                    print(f"[reproduce] {profile}/{nb_stem}: inputs unchanged, skipped")
                    continue
            except json.JSONDecodeError:
                pass
        print(f"[reproduce] {profile}/{nb_stem}: running ...", flush=True)
        t0 = time.time()
        ok = _execute(nb, out, results, profile, params)
        seconds = time.time() - t0
        if not ok:
            return 1
        atomic_write_json(stamp_file, {"key": stamp_key, "seconds": round(seconds, 1),
                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        print(f"[reproduce] {profile}/{nb_stem}: done in {seconds:.0f} s", flush=True)
        ran += 1
    print(f"[reproduce] {profile}: {ran} notebook(s) run, results in {results}")
    return 0


def _execute(nb: Path, out: Path, results: Path, profile: str, params: dict) -> bool:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    parameters = dict(params, profile=profile, results_dir=str(results))
    failed = results / "failed" / nb.name
    try:
        with atomic_path(out, suffix=".tmp.ipynb") as tmp:
            try:
                papermill.execute_notebook(str(nb), tmp, parameters=parameters, cwd=str(ROOT),
                                           kernel_name="python3", progress_bar=False, log_output=False,
                                           request_save_on_cell_execute=False)
            except BaseException:
                failed.parent.mkdir(parents=True, exist_ok=True)
                if Path(tmp).exists() and Path(tmp).stat().st_size:
                    os.replace(tmp, failed)
                raise
    except PapermillExecutionError as exc:
        print(f"[reproduce] FAILED {nb.name}: cell {exc.exec_count}: {exc.ename}: {exc.evalue}", file=sys.stderr)
        print("".join(exc.traceback[-3:]) if exc.traceback else "", file=sys.stderr)
        print(f"[reproduce] the failed notebook is kept at {failed}", file=sys.stderr)
        return False
    if failed.exists():
        failed.unlink()
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kwslib.reproduce", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--force", action="store_true", help="run every notebook even if its inputs did not change")
    ap.add_argument("--only", nargs="*", help="run only these notebooks (stems)")
    args = ap.parse_args(argv)
    try:
        return run(args.profile, force=args.force, only=args.only)
    except ConfigError as exc:
        print(f"[reproduce] error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
