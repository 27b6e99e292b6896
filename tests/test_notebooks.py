"""Notebooks: jupytext sources executed by papermill with injected parameters."""

from __future__ import annotations

import json
import textwrap

import pytest

from phasezoo.errors import PhaseZooError
from phasezoo.publish.notebooks import find_notebook, parse_parameters, run_notebook

TINY = """\
# %% tags=["parameters"]
value = 1
target = "out.json"

# %%
import json
json.dump({"double": value * 2}, open(target, "w"))
"""


def _write(tmp_path, text, name="tiny.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_parameters_are_injected_and_the_notebook_runs(tmp_path, capfd):
    src = _write(tmp_path, TINY)
    out = run_notebook(src, tmp_path / "run" / "tiny.ipynb",
                       {"value": 21, "target": str(tmp_path / "result.json")}, timeout=120)
    assert json.loads((tmp_path / "result.json").read_text()) == {"double": 42}
    # the kernel runs over IPC sockets: no plain-TCP transport warning from ipykernel
    assert "without encryption" not in capfd.readouterr().err
    executed = json.loads(out.read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


def test_a_failing_cell_is_one_line_naming_the_notebook(tmp_path):
    src = _write(tmp_path, TINY.replace("value * 2", "value / 0"), "broken.py")
    with pytest.raises(PhaseZooError) as err:
        run_notebook(src, tmp_path / "broken.ipynb", {"target": str(tmp_path / "x.json")}, timeout=120)
    assert "broken.py" in str(err.value) and "ZeroDivisionError" in str(err.value)
    assert "\n" not in str(err.value)
    assert (tmp_path / "broken.ipynb").exists()  # kept for inspection


def test_a_notebook_needs_a_parameters_cell(tmp_path):
    src = _write(tmp_path, "# %%\nx = 1\n", "noparams.py")
    with pytest.raises(PhaseZooError, match="parameters"):
        run_notebook(src, tmp_path / "o.ipynb")


def test_find_notebook_and_parse_parameters(tmp_path):
    _write(tmp_path, TINY, "01_a.py")
    assert find_notebook("01_a", tmp_path) == tmp_path / "01_a.py"
    with pytest.raises(PhaseZooError, match="01_a"):
        find_notebook("nope", tmp_path)
    assert parse_parameters([["zoo", "digits-vit"], ["n", "3"], ["flag", "true"], ["xs", "[1, 2]"]]) == {
        "zoo": "digits-vit", "n": 3, "flag": True, "xs": [1, 2]}

# Every notebook is executed headless on a small trained zoo in tests/test_book.py (the book build).
