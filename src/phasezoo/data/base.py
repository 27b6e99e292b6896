"""Where datasets live on disk: the data root every loader reads from."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "DEFAULT_DATA_DIR", "resolve_data_dir"]

#: Environment variable naming the data root when ``--data-dir``/``data_dir`` is not given.
DATA_ENV = "PHASEZOO_DATA"
#: Data root when neither the argument nor the environment variable is set.
DEFAULT_DATA_DIR = Path("~/.cache/phasezoo/datasets")


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data root: ``data_dir`` if given, else ``$PHASEZOO_DATA``, else ``~/.cache/phasezoo/datasets``.

    ``~`` is expanded and the path made absolute (symlinks are kept as written), so error
    messages show the exact directory that was searched. An empty env var counts as unset.
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser().absolute()
