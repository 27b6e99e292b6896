"""Notebooks: jupytext sources executed by papermill with injected parameters."""

from __future__ import annotations

import json
import textwrap

import pytest

from phasezoo.errors import PhaseZooError
from phasezoo.notebooks import find_notebook, parse_parameters, run_notebook

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


def test_parameters_are_injected_and_the_notebook_runs(tmp_path):
    src = _write(tmp_path, TINY)
    out = run_notebook(src, tmp_path / "run" / "tiny.ipynb",
                       {"value": 21, "target": str(tmp_path / "result.json")}, timeout=120)
    assert json.loads((tmp_path / "result.json").read_text()) == {"double": 42}
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


@pytest.mark.slow
def test_every_book_notebook_runs_headless_on_a_small_zoo(tmp_path):
    """Each notebook in notebooks/ executes under papermill with a tiny trained and measured zoo
    as its parameters, and draws at least one figure."""
    from pathlib import Path

    from phasezoo.metrics import compute_metrics
    from phasezoo.spec import load_spec
    from phasezoo.zoo import train_zoo
    from tests.conftest import write_spec
    from tests.test_domains import _CHEAP, TINY_DOMAIN_SPECS

    spec_path = write_spec(tmp_path, TINY_DOMAIN_SPECS["pinn"] + _CHEAP, "tiny-pinn.yaml")
    spec = load_spec(spec_path)
    root = tmp_path / "zoos"
    train_zoo(spec, "smoke", root, device="cpu")
    compute_metrics(spec, "smoke", root, device="cpu")
    from phasezoo.downstream.runner import run_downstream

    run_downstream(spec, "smoke", root, device="cpu")
    notebooks = sorted(Path("notebooks").glob("*.py"))
    assert len(notebooks) >= 4
    for source in notebooks:
        out = run_notebook(source, tmp_path / f"{source.stem}.ipynb",
                           {"zoo": str(spec_path), "profile": "smoke", "root": str(root), "device": "cpu"},
                           timeout=300)
        cells = json.loads(out.read_text())["cells"]
        outputs = [o for c in cells for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"]
        if source.stem != "04_probe":  # the probe notebook shows tables
            assert any("image/png" in o.get("data", {}) for o in outputs), f"{source.name} drew no figure"
