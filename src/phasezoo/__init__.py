"""Phase Zoo: model zoos on phase transitions in neural networks.

Public API (everything the ``phasezoo`` command does is a function here too):

* :func:`build_model` — a width-scalable architecture by name;
* :func:`load_spec`, :func:`list_zoos` — validated zoo specs;
* :class:`Zoo` — one zoo spec at one profile under one root (``Zoo.of(name, profile, root)``);
* :func:`train_zoo`, :func:`zoo_status`, :func:`zoo_table` — train and inspect a zoo;
* :func:`load_member` — a stored member's model and config at an epoch;
* :func:`export_ptmz`, :func:`import_ptmz` — the authors' ray.tune layout, out and in.

Heavy modules (torch, pandas) load on first use, so ``import phasezoo`` is cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "build_model": "phasezoo.models",
    "load_spec": "phasezoo.spec",
    "list_zoos": "phasezoo.spec",
    "Zoo": "phasezoo.zoo",
    "train_zoo": "phasezoo.zoo",
    "zoo_status": "phasezoo.zoo",
    "zoo_table": "phasezoo.analysis.table",
    "load_member": "phasezoo.store",
    "train_member": "phasezoo.train",
    "export_ptmz": "phasezoo.publish.ptmz",
    "import_ptmz": "phasezoo.publish.ptmz",
    "PhaseZooError": "phasezoo.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # lazy: `import phasezoo`, and so the CLI, starts without importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'phasezoo' has no attribute {name!r}")
