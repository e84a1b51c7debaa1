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

What the terminal shows: every line a running notebook prints (per-epoch training lines, one
line per quantized model, ...), prefixed with the notebook's name, as it is printed.
Executed notebooks hold repository-relative paths (``results/quick``), not this machine's.
A run that starts from the first notebook starts a new ``summary.json``: every value in it is
then measured by this run (a value a run did not measure is absent or null, never left over).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from ..config import REPO_ROOT, load_yaml, profile_dir
from ..errors import ConfigError
from ..io import atomic_path, atomic_write_json

ROOT = REPO_ROOT
# notebook stem -> params file stem, in run order
NOTEBOOKS = [
    ("01_float_baseline", "01_float"),
    ("02_stage1_tanh_qat", "02_stage1"),
    ("03_stage2_linear_qat", "03_stage2"),
    ("04_integer_inference", "04_integer"),
    ("05_accelerator_memory", "05_memory"),
    ("06_report", "06_report"),
]
#: Notebooks a profile runs only when it has their params file (after the six above): your own keywords.
OPTIONAL_NOTEBOOKS = [("07_own_keywords", "07_own_keywords")]
# what a run reads from the environment: the data roots and the replicates' base seed (kwslib.study.replicates)
DATA_ENV = ("KWS_SC12_ROOT", "KWS_SC_NOISE_ROOT", "KWS_SC_FULL_ROOT", "KWS_REAL_NEGATIVES_ROOT", "KWS_REPLICATES_SEED")


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
    optional = [(n, s) for n, s in OPTIONAL_NOTEBOOKS if (pdir / f"{s}.yaml").exists()]
    for nb_stem, params_stem in NOTEBOOKS + optional:
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
        if nb_stem == NOTEBOOKS[0][0]:
            # A run from the first notebook re-measures everything: no key of an earlier run survives.
            (results / "summary.json").unlink(missing_ok=True)
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
    print(f"[reproduce] {profile}: {ran} notebook(s) run, results in {relative_to_root(results)}"
          + ("; `make readme` rebuilds the README results block from them" if ran else ""))
    return 0


class _Prefixed:
    """A text stream that writes each line of a notebook's output to ``out`` with a prefix, as it comes."""

    def __init__(self, out, prefix: str):
        self.out, self.prefix, self._partial = out, prefix, ""

    def write(self, text: str) -> int:
        text = self._partial + text.replace("\r", "\n")
        *lines, self._partial = text.split("\n")
        for line in lines:
            if line.strip():
                self.out.write(f"{self.prefix}{line}\n")
        self.out.flush()
        return len(text)

    def flush(self):
        if self._partial.strip():
            self.out.write(f"{self.prefix}{self._partial}\n")
        self._partial = ""
        self.out.flush()


def relative_to_root(path) -> str:
    """``path`` relative to the repository when it lies inside it (what executed notebooks record)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


CONCLUSION_TAG = "conclusion"


def promote_conclusions(nb) -> int:
    """Replace each executed code cell tagged ``conclusion`` by a markdown cell holding its markdown output.

    A notebook ends in a cell that writes "What this run shows" from this run's numbers
    (:mod:`kwslib.study.conclusions`); in the executed copy that text becomes the notebook's last markdown cell,
    so the notebook reads as ending in its conclusion. A tagged cell without markdown output (it failed,
    or did not run) is left as it is. Returns how many cells were promoted.
    """
    import nbformat

    promoted = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or CONCLUSION_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        texts = [o["data"]["text/markdown"] for o in cell.get("outputs", [])
                 if o.get("output_type") in ("execute_result", "display_data") and "text/markdown" in o.get("data", {})]
        if not texts:
            continue
        md = nbformat.v4.new_markdown_cell("\n\n".join("".join(t) if isinstance(t, list) else t for t in texts))
        md.metadata["tags"] = [CONCLUSION_TAG]
        if "id" in cell:
            md["id"] = cell["id"]
        nb.cells[i] = md
        promoted += 1
    return promoted


def scrub_paths(nb_file: Path, input_rel: str, output_rel: str) -> None:
    """Rewrite an executed notebook so that it records no absolute path of this machine (and promote its
    conclusion cell, :func:`promote_conclusions`).

    papermill's metadata (input/output path) becomes repository-relative, and the repository's
    absolute prefix is removed from every text output (printed paths, warnings).
    """
    import nbformat

    nb = nbformat.read(str(nb_file), as_version=4)
    prefix = str(ROOT) + os.sep
    pm = nb.metadata.get("papermill", {})
    pm["input_path"], pm["output_path"] = input_rel, output_rel

    def clean(v):
        if isinstance(v, str):
            return v.replace(prefix, "").replace(str(ROOT), ".")
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    promote_conclusions(nb)
    if isinstance(pm.get("parameters"), dict):
        pm["parameters"] = {k: clean(v) for k, v in pm["parameters"].items()}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = clean(out["text"])
            for mime, val in out.get("data", {}).items():
                if mime.startswith("text/"):
                    out["data"][mime] = clean(val)
            if "traceback" in out:
                out["traceback"] = clean(out["traceback"])
    nbformat.write(nb, str(nb_file))


# The kernel warns at every start that it talks over TCP without encryption (papermill's local kernel);
# its log level ERROR keeps that out of the terminal and still shows kernel errors.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


PARAM_LINE_CHARS = 100


def _finite_values(v) -> bool:
    if isinstance(v, float):
        return v == v and v not in (float("inf"), float("-inf"))
    if isinstance(v, dict):
        return all(_finite_values(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return all(_finite_values(x) for x in v)
    return True


def injected_parameters_source(parameters: dict, comment: str = "Parameters") -> str:
    """The cell papermill injects, with each value wrapped at :data:`PARAM_LINE_CHARS` (pprint).

    papermill writes every parameter on one line (it formats them only when ``black`` is installed), and
    a notebook's dicts of settings then run off the right edge of a rendered page. The values come from
    YAML (dicts, lists, strings, numbers, booleans, None), whose ``repr`` is Python; the continuation
    lines are indented under the value. Executing the text gives back ``parameters``.
    """
    import pprint

    lines = [f"# {comment}"]
    for name, value in parameters.items():
        if not _finite_values(value):
            raise ConfigError(f"parameter {name}: non-finite numbers cannot be injected ({value!r})")
        lead = f"{name} = "
        text = pprint.pformat(value, width=max(40, PARAM_LINE_CHARS - len(lead)), sort_dicts=False, compact=True)
        lines.append(lead + text.replace("\n", "\n" + " " * len(lead)))
    return "\n".join(lines) + "\n"


def _register_translator() -> None:
    """Make papermill inject parameters with :func:`injected_parameters_source` for the ``python3`` kernel."""
    from papermill.translators import PythonTranslator, papermill_translators

    class WrappedPython(PythonTranslator):
        @classmethod
        def codify(cls, parameters, comment="Parameters"):
            return injected_parameters_source(parameters, comment)

    papermill_translators.register("python3", WrappedPython)


def kernel_manager_class():
    """nbclient's kernel manager, less the SIGINT that jupyter_client (>= 7) sends before every shutdown request.

    ``KernelManager.shutdown_kernel`` interrupts the kernel first, to stop a cell that is still running;
    a kernel that receives it while handling a message logs ``[IPKernelApp] ERROR | KeyboardInterrupt
    caught in kernel.`` on its stderr, which is this terminal: an ERROR line in a run that succeeded. A
    notebook that ran to its end (or stopped at a failing cell) has nothing to interrupt, so the shutdown
    goes without it; an interrupt outside a shutdown (nbclient's on a cell timeout) is sent as before, and
    a kernel that does not answer the shutdown request is still killed by jupyter_client.
    """
    from jupyter_client.manager import AsyncKernelManager

    class ShutdownWithoutInterrupt(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return ShutdownWithoutInterrupt


def _execute(nb: Path, out: Path, results: Path, profile: str, params: dict) -> bool:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    parameters = dict(params, profile=profile, results_dir=relative_to_root(results))
    _register_translator()
    failed = results / "failed" / nb.name
    stream = _Prefixed(sys.stdout, f"  [{nb.stem}] ")
    try:
        with atomic_path(out, suffix=".tmp.ipynb") as tmp:
            try:
                papermill.execute_notebook(str(nb), tmp, parameters=parameters, cwd=str(ROOT),
                                           kernel_name="python3", progress_bar=False, log_output=False,
                                           stdout_file=stream, stderr_file=stream, extra_arguments=KERNEL_ARGS,
                                           request_save_on_cell_execute=False,
                                           kernel_manager_class=kernel_manager_class())
            except BaseException:
                failed.parent.mkdir(parents=True, exist_ok=True)
                if Path(tmp).exists() and Path(tmp).stat().st_size:
                    scrub_paths(Path(tmp), relative_to_root(nb), relative_to_root(failed))
                    os.replace(tmp, failed)
                raise
            finally:
                stream.flush()
            scrub_paths(Path(tmp), relative_to_root(nb), relative_to_root(out))
    except PapermillExecutionError as exc:
        print(f"[reproduce] FAILED {nb.name}: cell {exc.exec_count}: {exc.ename}: {exc.evalue}", file=sys.stderr)
        print("".join(exc.traceback[-3:]) if exc.traceback else "", file=sys.stderr)
        print(f"[reproduce] the failed notebook is kept at {relative_to_root(failed)}", file=sys.stderr)
        return False
    if failed.exists():
        failed.unlink()
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kwslib.study.reproduce", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--force", action="store_true", help="run every notebook even if its inputs did not change")
    ap.add_argument("--only", nargs="*", help="run only these notebooks (stems)")
    ap.add_argument("--results-root", default=None,
                    help="write the run here instead of results/<profile>/ (a rehearsal that leaves the tracked "
                         "results alone)")
    args = ap.parse_args(argv)
    try:
        return run(args.profile, force=args.force, only=args.only, results_root=args.results_root)
    except ConfigError as exc:
        print(f"[reproduce] error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
