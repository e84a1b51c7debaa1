"""`make reproduce` runner: order, skipping unchanged notebooks, failure handling, params checks."""
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from kwslib.study import reproduce
from kwslib.errors import ConfigError


def _nb(path, params_src, body):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params_src)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params" / "demo").mkdir(parents=True)
    (tmp_path / "kwslib").mkdir()
    (tmp_path / "kwslib" / "x.py").write_text("A = 1\n")
    body = ("from pathlib import Path\nPath(results_dir).mkdir(parents=True, exist_ok=True)\n"
            "assert value != 'boom', 'exploded on purpose'\n"
            "(Path(results_dir) / (name + '.txt')).write_text(str(value))\n")
    _nb(tmp_path / "notebooks" / "01_a.ipynb", "profile = 'x'\nresults_dir = 'r'\nname = 'a'\nvalue = 0", body)
    _nb(tmp_path / "notebooks" / "02_b.ipynb", "profile = 'x'\nresults_dir = 'r'\nname = 'b'\nvalue = 0", body)
    (tmp_path / "params" / "demo" / "01_a.yaml").write_text("value: 1\n")
    (tmp_path / "params" / "demo" / "02_b.yaml").write_text("value: 2\n")
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    monkeypatch.setattr(reproduce, "NOTEBOOKS", [("01_a", "01_a"), ("02_b", "02_b")])
    return tmp_path


def test_runs_in_order_then_skips_then_reruns_downstream(tree, capsys):
    res = tree / "results" / "demo"
    assert reproduce.run("demo") == 0
    assert (res / "a.txt").read_text() == "1" and (res / "b.txt").read_text() == "2"
    assert (res / "01_a.ipynb").exists() and (res / "02_b.ipynb").exists()
    capsys.readouterr()
    assert reproduce.run("demo") == 0
    assert capsys.readouterr().out.count("inputs unchanged, skipped") == 2
    # a changed upstream params file re-runs that notebook and everything after it
    (tree / "params" / "demo" / "01_a.yaml").write_text("value: 5\n")
    assert reproduce.run("demo") == 0
    assert (res / "a.txt").read_text() == "5"
    assert "skipped" not in capsys.readouterr().out
    # a changed library source re-runs everything
    (tree / "kwslib" / "x.py").write_text("A = 2\n")
    reproduce.run("demo")
    assert "skipped" not in capsys.readouterr().out


def test_failure_stops_and_keeps_earlier_results(tree, capsys):
    res = tree / "results" / "demo"
    assert reproduce.run("demo") == 0
    before = (res / "02_b.ipynb").read_bytes()
    (tree / "params" / "demo" / "01_a.yaml").write_text("value: boom\n")
    assert reproduce.run("demo") == 1
    err = capsys.readouterr().err
    assert "FAILED 01_a.ipynb" in err and "exploded on purpose" in err
    assert (res / "failed" / "01_a.ipynb").exists()
    assert (res / "a.txt").read_text() == "1"  # the earlier result is untouched
    assert (res / "02_b.ipynb").read_bytes() == before  # the downstream notebook did not run
    assert not list(res.glob(".*.tmp*"))


def test_params_checks(tree):
    (tree / "params" / "demo" / "02_b.yaml").write_text("valeu: 2\n")
    with pytest.raises(ConfigError, match=r"02_b.yaml: unknown parameter\(s\) \['valeu'\]"):
        reproduce.run("demo")
    (tree / "params" / "demo" / "02_b.yaml").write_text("value: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        reproduce.run("demo")
    (tree / "params" / "demo" / "02_b.yaml").unlink()
    with pytest.raises(ConfigError, match="params file missing"):
        reproduce.run("demo")
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        reproduce.run("nope")
    assert reproduce.main(["--profile", "nope"]) == 2


def test_shared_params_merge_under_the_notebooks_own(tree):
    (tree / "params" / "demo" / "shared.yaml").write_text("value: 7\nname: shared\nunrelated: 1\n")
    (tree / "params" / "demo" / "01_a.yaml").write_text("{}\n")
    params = reproduce.check_params(tree / "notebooks" / "01_a.ipynb", tree / "params" / "demo" / "01_a.yaml")
    assert params == {"value": 7, "name": "shared"}  # keys the notebook does not take are dropped
    params = reproduce.check_params(tree / "notebooks" / "02_b.ipynb", tree / "params" / "demo" / "02_b.yaml")
    assert params == {"value": 2, "name": "shared"}  # the notebook's own file wins
    assert reproduce.run("demo") == 0
    assert (tree / "results" / "demo" / "shared.txt").read_text() == "2"  # 02_b ran last with name=shared


def test_every_real_notebook_has_params_for_each_profile():
    root = Path(reproduce.__file__).resolve().parents[2]  # kwslib/study/reproduce.py -> the repository
    for nb_stem, params_stem in reproduce.NOTEBOOKS:
        nb = root / "notebooks" / f"{nb_stem}.ipynb"
        if not nb.exists():
            continue
        for profile in ("quick", "sc12"):
            reproduce.check_params(nb, root / "params" / profile / f"{params_stem}.yaml")


def test_output_is_streamed_with_the_notebook_name_and_paths_are_relative(tree, capsys):
    body = ("from pathlib import Path\nimport sys\nPath(results_dir).mkdir(parents=True, exist_ok=True)\n"
            "print('epoch 1/2 loss 0.5'); print('epoch 2/2 loss 0.4')\n"
            "print('wrote', Path(results_dir).resolve() / 'x.txt')\n"
            "print('a warning', file=sys.stderr)\n")
    _nb(tree / "notebooks" / "01_a.ipynb", "profile = 'x'\nresults_dir = 'r'\nname = 'a'\nvalue = 0", body)
    assert reproduce.run("demo") == 0
    out = capsys.readouterr().out
    assert "  [01_a] epoch 1/2 loss 0.5\n  [01_a] epoch 2/2 loss 0.4\n" in out
    assert "  [01_a] a warning" in out
    assert "without encryption" not in out
    executed = (tree / "results" / "demo" / "01_a.ipynb").read_text()
    assert str(tree) not in executed  # no absolute path of this machine anywhere in the executed notebook
    nb = nbformat.read(tree / "results" / "demo" / "01_a.ipynb", as_version=4)
    assert nb.metadata.papermill.input_path == "notebooks/01_a.ipynb"
    assert nb.metadata.papermill.output_path == "results/demo/01_a.ipynb"
    assert nb.metadata.papermill.parameters["results_dir"] == "results/demo"
    assert "wrote results/demo/x.txt" in executed


def test_a_run_from_the_first_notebook_starts_a_new_summary(tree):
    res = tree / "results" / "demo"
    res.mkdir(parents=True)
    (res / "summary.json").write_text(json.dumps({"cpu": {"int8_neon_v80": 83438}}))
    assert reproduce.run("demo") == 0
    assert not (res / "summary.json").exists()  # the stale key did not survive (these notebooks write none)
    (res / "summary.json").write_text(json.dumps({"kept": 1}))
    (tree / "params" / "demo" / "02_b.yaml").write_text("value: 3\n")
    assert reproduce.run("demo") == 0  # only 02_b re-runs: notebook 1's part of the summary stays
    assert json.loads((res / "summary.json").read_text()) == {"kept": 1}


def test_a_successful_run_logs_no_error_line(tree, capfd):
    """jupyter_client sends the kernel SIGINT before every shutdown request; an idle ipykernel logs that as
    ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.`` on its own stderr (issue 26 item 4). A run
    that succeeded must print no ERROR line: the kernel of a finished notebook is shut down without it."""
    made, real = [], reproduce.kernel_manager_class

    def recording():
        class Recording(real()):
            async def _async_interrupt_kernel(self):
                made.append(self.shutting_down)
                return await super()._async_interrupt_kernel()
        return Recording

    reproduce.kernel_manager_class, orig = recording, reproduce.kernel_manager_class
    try:
        assert reproduce.run("demo") == 0
    finally:
        reproduce.kernel_manager_class = orig
    out, err = capfd.readouterr()
    assert "done in" in out
    assert made == [True, True]  # papermill used it: each kernel's shutdown asked for the interrupt, which is dropped
    assert "ERROR" not in out + err and "KeyboardInterrupt" not in out + err, err


def test_the_shutdown_kernel_manager_still_interrupts_a_running_kernel():
    """Only the interrupt that comes with a shutdown is dropped: a timeout's interrupt (nbclient calls
    interrupt_kernel outside a shutdown) still reaches the kernel."""
    import asyncio

    km = reproduce.kernel_manager_class()(kernel_name="python3")
    sent = []

    async def fake_super(self):
        sent.append(self.shutting_down)

    base = km.__class__.__mro__[1]
    orig = base._async_interrupt_kernel
    base._async_interrupt_kernel = fake_super
    try:
        km.shutting_down = False
        asyncio.run(km._async_interrupt_kernel())
        km.shutting_down = True
        asyncio.run(km._async_interrupt_kernel())
    finally:
        base._async_interrupt_kernel = orig
    assert sent == [False]


def test_injected_parameters_are_wrapped_and_execute_to_the_same_values():
    params = {"profile": "quick", "data": {"source": "synthetic", "synthetic": {
        "unknown_words": [f"word{i}" for i in range(40)], "n_voices": 48}}, "train": {"epochs": 60, "lr": 0.0006},
        "widths": [8, 5, 4, 1], "neon": None, "flag": True}
    src = reproduce.injected_parameters_source(params)
    assert src.startswith("# Parameters\n")
    assert max(len(line) for line in src.splitlines()) <= reproduce.PARAM_LINE_CHARS
    ns = {}
    exec(src, ns)
    assert {k: ns[k] for k in params} == params
    with pytest.raises(ConfigError, match="non-finite"):
        reproduce.injected_parameters_source({"x": [float("nan")]})


def test_conclusion_cells_become_markdown_cells():
    nb = nbformat.v4.new_notebook()
    done = nbformat.v4.new_code_cell("Markdown(...)")
    done.metadata["tags"] = ["conclusion"]
    done.outputs = [nbformat.v4.new_output("execute_result", data={"text/markdown": "## What this run shows\n\nx",
                                                                    "text/plain": "<Markdown>"}, execution_count=1)]
    failed = nbformat.v4.new_code_cell("Markdown(...)")
    failed.metadata["tags"] = ["conclusion"]
    plain = nbformat.v4.new_code_cell("1")
    plain.outputs = [nbformat.v4.new_output("execute_result", data={"text/markdown": "not a conclusion"},
                                            execution_count=2)]
    nb.cells = [plain, failed, done]
    assert reproduce.promote_conclusions(nb) == 1
    assert [c.cell_type for c in nb.cells] == ["code", "code", "markdown"]
    assert nb.cells[-1].source == "## What this run shows\n\nx" and nb.cells[-1].id == done.id
    nbformat.validate(nb)


def test_a_run_injects_wrapped_parameters_and_promotes_the_conclusion(tree):
    nb = nbformat.read(tree / "notebooks" / "02_b.ipynb", as_version=4)
    c = nbformat.v4.new_code_cell("from IPython.display import Markdown\nMarkdown(f'## What this run shows\\n\\nvalue {value}')")
    c.metadata["tags"] = ["conclusion"]
    nb.cells.append(c)
    nbformat.write(nb, tree / "notebooks" / "02_b.ipynb")
    (tree / "params" / "demo" / "02_b.yaml").write_text("value: 2\nname: " + "b" * 150 + "\n")
    assert reproduce.run("demo") == 0
    out = nbformat.read(tree / "results" / "demo" / "02_b.ipynb", as_version=4)
    assert out.cells[-1].cell_type == "markdown" and out.cells[-1].source == "## What this run shows\n\nvalue 2"
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])][0]
    assert "value = 2" in injected.source
