"""The package layout: imports run one way, down the pipeline, and no module imports itself in a circle.

Levels, lowest first (a module may import its own level and the levels below it, never one above):

    0  errors, io, config, progress, summary     the basics
    1  frontend                                  audio, log-mel features, the integer front end, windows
    2  data                                      corpora, negatives, test streams
    3  model
    4  train
    5  quant                                     stage 1, stage 2, the integer specification
    6  deploy                                    artifact, engine, detection rule, C kernels, pipeline
    7  evaluation
    8  study                                     glue, replicates, verdicts, reports, benchmarks
    9  entry points                              cli, python -m shims

Every import counts, at module level or inside a function, except those under ``if TYPE_CHECKING:``
(types only, nothing runs).
"""
import ast
from pathlib import Path

import pytest

import kwslib

PACKAGE = Path(kwslib.__file__).resolve().parent

LEVELS = {"errors": 0, "io": 0, "config": 0, "progress": 0, "summary": 0,
          "frontend": 1, "data": 2, "model": 3, "train": 4, "quant": 5, "deploy": 6, "evaluation": 7, "study": 8,
          "cli": 9}
#: Entry points: commands, not library code. They may import from any level; nothing imports them.
ENTRY_POINTS = {"kwslib.cli", "kwslib.train.__main__", "kwslib.bench", "kwslib.report", "kwslib.reproduce",
                "kwslib.tuning", "kwslib.replicates"}
TOP = max(LEVELS.values())


def module_name(path: Path) -> str:
    parts = ("kwslib",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree) -> set:
    """The import nodes inside ``if TYPE_CHECKING:`` blocks."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for sub in node.body:
                out.update(id(n) for n in ast.walk(sub))
    return out


def imports_of(name: str, source: str, is_package: bool, modules: set) -> set:
    """The kwslib modules ``name`` imports (a name imported from a package resolves to its submodule when it is one)."""
    tree = ast.parse(source)
    skip = _type_checking_nodes(tree)
    pkg = name if is_package else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for t in targets:
            if t == "kwslib" or not t.startswith("kwslib."):
                continue
            while t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            if t != name and t != "kwslib":
                out.add(t)
    return out


def import_graph() -> dict:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {m: imports_of(m, p.read_text(), p.name == "__init__.py", modules) for m, p in files.items()}


def level_of(module: str) -> int | None:
    if module == "kwslib" or module in ENTRY_POINTS:
        return TOP
    return LEVELS.get(module.split(".")[1])


def upward_imports(graph: dict) -> list[str]:
    bad = []
    for m, deps in graph.items():
        for d in deps:
            if d in ENTRY_POINTS:
                bad.append(f"{m} imports the entry point {d}")
            elif level_of(d) is not None and level_of(m) is not None and level_of(d) > level_of(m):
                bad.append(f"{m} (level {level_of(m)}) imports {d} (level {level_of(d)})")
    return sorted(bad)


def circles(graph: dict) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), plus self-loops."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_level():
    missing = sorted(m for m in import_graph() if level_of(m) is None)
    assert not missing, f"modules outside every level (add them to LEVELS or move them): {missing}"


def test_imports_run_one_way_down_the_pipeline():
    bad = upward_imports(import_graph())
    assert not bad, "imports against the pipeline's direction:\n" + "\n".join(bad)


def test_no_import_circle():
    found = circles(import_graph())
    assert not found, f"import circles: {found}"


def test_the_checks_catch_a_circle_and_an_upward_import():
    graph = {"kwslib.deploy.a": {"kwslib.study.b"}, "kwslib.study.b": {"kwslib.study.c"},
             "kwslib.study.c": {"kwslib.study.b"}, "kwslib.frontend.d": {"kwslib.cli"}}
    assert upward_imports(graph) == ["kwslib.deploy.a (level 6) imports kwslib.study.b (level 8)",
                                     "kwslib.frontend.d imports the entry point kwslib.cli"]
    assert circles(graph) == [["kwslib.study.b", "kwslib.study.c"]]


def test_imports_resolve_relative_lazy_and_type_only_forms():
    modules = {"kwslib.quant.stage2", "kwslib.quant.intspec", "kwslib.deploy.engine", "kwslib.quant",
               "kwslib.errors", "kwslib.deploy"}
    src = ("from typing import TYPE_CHECKING\nfrom . import intspec\nfrom ..errors import E\n"
           "def f():\n    from ..deploy import engine\n"
           "if TYPE_CHECKING:\n    from ..deploy.engine import Engine\n")
    assert imports_of("kwslib.quant.stage2", src, False, modules) == {
        "kwslib.quant.intspec", "kwslib.errors", "kwslib.deploy.engine"}
    src_typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..deploy.engine import Engine\n"
    assert imports_of("kwslib.quant.stage2", src_typed, False, modules) == set()


@pytest.mark.parametrize("shim", sorted(ENTRY_POINTS - {"kwslib.cli", "kwslib.train.__main__"}))
def test_old_python_m_entry_points_are_thin_shims(shim):
    """``python -m kwslib.<old>`` still runs: each shim imports one ``main`` and calls it, nothing else."""
    path = PACKAGE / (shim.split(".", 1)[1] + ".py")
    tree = ast.parse(path.read_text())
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("study.")]
    assert len(imports) == 1 and [a.name for a in imports[0].names] == ["main"]
    assert len(path.read_text().splitlines()) <= 10


@pytest.mark.parametrize("old, new", [("kwslib.replicates", "kwslib.study.rerun"), ("kwslib.bench", "kwslib.study.bench"),
                                      ("kwslib.train", "kwslib.study.train_cli")])
def test_old_and_new_commands_print_the_same_help(old, new):
    import subprocess
    import sys

    a = subprocess.run([sys.executable, "-m", old, "--help"], capture_output=True, text=True, timeout=120)
    b = subprocess.run([sys.executable, "-m", new, "--help"], capture_output=True, text=True, timeout=120)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and "usage:" in a.stdout
