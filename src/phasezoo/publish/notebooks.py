"""Run the book's notebooks with other parameters (``phasezoo notebook NAME -p key value``).

The notebooks live in ``notebooks/`` as jupytext ``py:percent`` files, each with one cell tagged
``parameters``. papermill executes only ``.ipynb`` files, so a run converts the source with
jupytext first, then executes it with papermill, which injects the given parameters in a cell
after the ``parameters`` cell. The same by hand::

    jupytext --to ipynb notebooks/02_phases.py -o /tmp/02_phases.ipynb
    papermill /tmp/02_phases.ipynb out.ipynb -p zoo digits-vit -p profile mini

Each source carries its kernelspec (``python3``) in its jupytext header, so neither command needs
a kernel flag. The kernel talks to papermill over IPC sockets (:class:`IPCKernelManager`), not
local TCP, which ipykernel warns about on every start.
"""

from __future__ import annotations

import ast
import keyword
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Mapping

import yaml

from phasezoo.errors import PhaseZooError

def _ipc_kernel_manager():
    """A jupyter_client kernel manager whose kernels listen on IPC (Unix) sockets: the kernel
    and papermill share the machine, and over TCP without CurveZMQ keys ipykernel prints a
    plain-text-transport warning at every start."""
    from jupyter_client.manager import AsyncKernelManager  # lazy: optional extra "book"

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            # the sockets are files named <ip>-<port>: each kernel gets its own prefix (the
            # default, "kernel-ipc" in the working directory, is shared by kernels run side by side)
            kwargs.setdefault("ip", os.path.join(tempfile.gettempdir(), f"phasezoo-kernel-{uuid.uuid4().hex[:12]}"))
            super().__init__(**kwargs)

    return IPCKernelManager


#: where ``phasezoo notebook`` looks for notebooks (relative to the working directory)
NOTEBOOK_DIR = Path("notebooks")


def find_notebook(name: str, notebook_dir: str | Path = NOTEBOOK_DIR) -> Path:
    """``notebooks/<name>.py`` (``name`` may carry the ``.py``, or be a path to a file)."""
    path = Path(name)
    if path.suffix == ".py" and path.is_file():
        return path
    folder = Path(notebook_dir)
    candidate = folder / (name if name.endswith(".py") else f"{name}.py")
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in folder.glob("*.py")) if folder.is_dir() else []
    raise PhaseZooError(f"no notebook {name!r} in {folder}/" + (f"; notebooks: {', '.join(known)}" if known
                                                                 else " (run from the repository root)"))


def parse_parameters(pairs: list[list[str]] | None) -> dict[str, Any]:
    """``[["zoo", "digits-vit"], ["epochs", "3"]]`` -> ``{"zoo": "digits-vit", "epochs": 3}``:
    each value is read as YAML, so numbers, booleans and lists get their types."""
    out: dict[str, Any] = {}
    for key, value in pairs or []:
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key] = value
    return out


def declared_parameters(source: str | Path) -> list[str]:
    """The names the ``parameters`` cell of a jupytext notebook assigns (its tunable values)."""
    import jupytext  # lazy: optional extra "book"

    nb = jupytext.read(Path(source))
    names: list[str] = []
    for cell in nb.cells:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            raise PhaseZooError(f"{source}: its parameters cell is not valid Python") from None
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else [])
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def check_parameters(source: str | Path, parameters: Mapping[str, Any]) -> None:
    """Every given name must be an identifier that the notebook's parameters cell declares
    (papermill would otherwise inject it as new code, or run on the defaults unnoticed)."""
    declared = declared_parameters(source)
    for name in parameters:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise PhaseZooError(f"parameter name {name!r} is not a Python identifier")
        if name not in declared:
            raise PhaseZooError(f"{Path(source).name} has no parameter {name!r}; its parameters: "
                                f"{', '.join(declared) or 'none'}")


def run_notebook(source: str | Path, output: str | Path, parameters: Mapping[str, Any] | None = None,
                 *, kernel: str = "python3", cwd: str | Path | None = None, timeout: int | None = None) -> Path:
    """Convert a jupytext notebook to ``.ipynb`` and execute it with papermill into ``output``.

    ``parameters`` override the values of the cell tagged ``parameters``; the notebook runs in
    ``cwd`` (default: the working directory). A failing cell raises a one-line PhaseZooError
    naming the notebook; the executed notebook, with the error in it, is still written to
    ``output`` for inspection.
    """
    import jupytext  # lazy: optional extra "book"
    import papermill as pm  # lazy: optional extra "book"

    source, output = Path(source), Path(output)
    nb = jupytext.read(source)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise PhaseZooError(f"{source}: no cell tagged 'parameters'")
    check_parameters(source, parameters or {})
    # the sources carry their kernelspec; a run with another kernel names it instead
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ipynb = Path(tmp) / f"{source.stem}.ipynb"
        jupytext.write(nb, ipynb)
        try:
            pm.execute_notebook(str(ipynb), str(output), parameters=dict(parameters or {}),
                                kernel_name=kernel, language="python", cwd=str(cwd) if cwd else None, progress_bar=False,
                                execution_timeout=timeout, kernel_manager_class=_ipc_kernel_manager())
        except pm.PapermillExecutionError as e:
            raise PhaseZooError(f"{source.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}"
                                .replace("\n", " ")) from None
    return output
