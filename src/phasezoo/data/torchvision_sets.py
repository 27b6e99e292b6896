"""CIFAR-10, CIFAR-100, SVHN and STL-10 through torchvision's dataset classes.

Folder convention: dataset ``<name>`` is read from ``<root>/<name>`` (``root`` from
:func:`phasezoo.data.resolve_data_dir`), which is the ``root`` handed to torchvision, so inside
it the files sit exactly where torchvision puts them::

    <root>/cifar10/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar100/cifar-100-python/{train, test, meta}
    <root>/svhn/{train_32x32.mat, test_32x32.mat}
    <root>/stl10/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin}

The raw arrays (``.data`` and ``.targets``/``.labels``) are read straight from the dataset
objects, never per sample through ``__getitem__``/PIL.

Integrity checks (why the small subclasses below exist)
-------------------------------------------------------
torchvision refuses to open extracted files whose md5 differs from the official release
(``_check_integrity``; CIFAR also checks ``batches.meta``/``meta`` in ``_load_meta``), and
STL-10 additionally demands the 2.5 GB ``unlabeled_X.bin`` that a labelled-only loader never
reads. The subclasses below replace only that gate with a presence check of the files actually
read: CIFAR by setting the per-file md5 to ``None`` (torchvision's own ``check_integrity``
then tests existence only), SVHN/STL-10 by overriding ``_check_integrity``. Everything else,
parsing included, is torchvision's code, and a *download* is still verified by torchvision
against the archive md5 (``tgz_md5`` / the SVHN url table are untouched). The md5 test is not
dropped: :func:`load_torchvision_set` computes the official md5 of every file it reads and
warns (``UserWarning``) when one differs, so altered or foreign files load visibly rather than
silently. This is what lets the test-suite load tiny files in the exact real formats.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100, STL10, SVHN
from torchvision.datasets.utils import check_md5

from phasezoo.errors import CorruptFileError

from .vision import VisionData, from_arrays, not_found, one_line


def _presence_only(file_list: list[list[str]]) -> list[list[Any]]:
    """torchvision's ``[[filename, md5], ...]`` with md5 None: ``check_integrity`` = exists."""
    return [[filename, None] for filename, _md5 in file_list]


class _CIFAR10(CIFAR10):
    """CIFAR10 whose extracted files are checked for presence, not md5 (module docstring)."""

    train_list = _presence_only(CIFAR10.train_list)
    test_list = _presence_only(CIFAR10.test_list)
    meta = {**CIFAR10.meta, "md5": None}


class _CIFAR100(CIFAR100):
    """CIFAR100 whose extracted files are checked for presence, not md5 (module docstring)."""

    train_list = _presence_only(CIFAR100.train_list)
    test_list = _presence_only(CIFAR100.test_list)
    meta = {**CIFAR100.meta, "md5": None}


class _SVHN(SVHN):
    """SVHN checked for presence of its split's .mat; ``download`` still verifies the md5."""

    def _check_integrity(self) -> bool:
        return Path(self.root, self.filename).is_file()


_STL10_LABELLED = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")


class _STL10(STL10):
    """STL10 needing only the labelled files (no 2.5 GB ``unlabeled_X.bin``), presence-checked."""

    def _check_integrity(self) -> bool:
        return all(Path(self.root, self.base_folder, f).is_file() for f in _STL10_LABELLED)


def _official_md5(name: str) -> dict[str, str]:
    """Relative path -> official md5 of every file the loader reads, from torchvision's tables."""
    if name in ("cifar10", "cifar100"):
        cls = CIFAR10 if name == "cifar10" else CIFAR100
        entries = cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]]
        return {f"{cls.base_folder}/{f}": md5 for f, md5 in entries}
    if name == "svhn":
        return {SVHN.split_list[s][1]: SVHN.split_list[s][2] for s in ("train", "test")}
    table = dict(STL10.train_list + STL10.test_list)
    return {f"{STL10.base_folder}/{f}": table[f] for f in _STL10_LABELLED}


def _cifar_arrays(ds: CIFAR10) -> tuple[np.ndarray, Any]:
    # torchvision stores CIFAR as HWC (for PIL); we want NCHW.
    return ds.data.transpose(0, 3, 1, 2), ds.targets


def _labels_arrays(ds: SVHN | STL10) -> tuple[np.ndarray, Any]:
    # SVHN/STL10 keep NCHW in .data; torchvision already mapped SVHN's label 10 to digit 0 and
    # shifted STL-10's 1..10 labels to 0..9.
    return ds.data, ds.labels


@dataclass(frozen=True)
class _Source:
    cls: type
    split_kwargs: Callable[[bool], dict[str, Any]]  # train? -> constructor kwargs
    arrays: Callable[[Any], tuple[np.ndarray, Any]]
    num_classes: int
    expected: str  # what must be inside <root>/<name>, for the "not found" message


_SOURCES: dict[str, _Source] = {
    "cifar10": _Source(
        _CIFAR10,
        lambda train: {"train": train},
        _cifar_arrays,
        10,
        "cifar-10-batches-py/ with data_batch_1..data_batch_5, test_batch, batches.meta "
        "(cifar-10-python.tar.gz extracted)",
    ),
    "cifar100": _Source(
        _CIFAR100,
        lambda train: {"train": train},
        _cifar_arrays,
        100,
        "cifar-100-python/ with train, test, meta (cifar-100-python.tar.gz extracted)",
    ),
    "svhn": _Source(
        _SVHN,
        lambda train: {"split": "train" if train else "test"},
        _labels_arrays,
        10,
        "train_32x32.mat and test_32x32.mat (SVHN cropped digits, format 2)",
    ),
    "stl10": _Source(
        _STL10,
        lambda train: {"split": "train" if train else "test"},
        _labels_arrays,
        10,
        "stl10_binary/ with train_X.bin, train_y.bin, test_X.bin, test_y.bin "
        "(stl10_binary.tar.gz extracted)",
    ),
}


def _missing(name: str, root: Path) -> list[str]:
    return [rel for rel in _official_md5(name) if not (root / rel).is_file()]


def _describe_missing(name: str, missing: list[str]) -> str:
    if len(missing) == len(_official_md5(name)):
        return "none of these files is there"
    return f"missing {', '.join(missing)}"


def _open_split(name: str, root: Path, train: bool, download: bool) -> Any:
    """Construct the torchvision dataset for one split, downloading only if files are missing.

    Download is requested only when a file is absent: with files present (possibly not the
    official bytes) torchvision's SVHN would otherwise re-download over them.
    """
    src = _SOURCES[name]
    missing = _missing(name, root)
    if missing and not download:
        reason = f"{_describe_missing(name, missing)}; download=False"
        raise not_found(name, root, src.expected, reason=reason)
    try:
        return src.cls(str(root), download=bool(missing), **src.split_kwargs(train))
    # Broad on purpose: this wraps third-party download + parse code whose failures (URLError,
    # socket errors, md5 RuntimeError, tarfile errors, unpickling, reshape ValueError, ...)
    # must reach the user as one actionable line, with the original chained as __cause__.
    except Exception as exc:
        reason = f"{type(exc).__name__}: {one_line(exc)}"
        still_missing = _missing(name, root)
        if still_missing:
            raise not_found(
                name, root, src.expected,
                reason=f"{_describe_missing(name, still_missing)}; download failed ({reason})",
            ) from exc
        raise CorruptFileError(
            one_line(f"dataset '{name}': files in {root} could not be read ({reason}); "
                     "delete them and download again")
        ) from exc


def _warn_on_md5_mismatch(name: str, root: Path) -> None:
    """Warn if any file read differs from the official release (see module docstring)."""
    differing = [rel for rel, md5 in _official_md5(name).items() if not check_md5(root / rel, md5)]
    if differing:
        warnings.warn(
            f"dataset '{name}': {', '.join(differing)} in {root} differ from the official "
            "release (md5 mismatch); loaded anyway",
            UserWarning,
            stacklevel=5,  # report at the caller of load_dataset
        )


def load_torchvision_set(name: str, root: Path, download: bool) -> VisionData:
    """Load ``name`` (cifar10/cifar100/svhn/stl10) from ``root`` = ``<data root>/<name>``.

    Train is torchvision's train split, test its test split (STL-10: the 5000 labelled train
    images, no unlabeled ones, no folds). Pixels uint8 -> [0, 1] -> train-standardised.
    """
    train = _open_split(name, root, True, download)
    test = _open_split(name, root, False, download)
    _warn_on_md5_mismatch(name, root)
    src = _SOURCES[name]
    x_tr, y_tr = src.arrays(train)
    x_te, y_te = src.arrays(test)
    return from_arrays(name, x_tr, y_tr, x_te, y_te, num_classes=src.num_classes)
