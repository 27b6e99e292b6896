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

Integrity checks: no pickle is opened unless it is the official file
-----------------------------------------------------------------------
The CIFAR-10/100 files are Python pickles, and unpickling runs whatever code the file names
(a planted ``data_batch_1`` executes on load). So before torchvision opens any of them,
:func:`_refuse_unofficial_pickles` computes the md5 (:mod:`hashlib`, in 1 MiB chunks) of every
file the CIFAR loaders unpickle -- the train batches, the test batch and the meta file
(``batches.meta`` / ``meta``) -- and compares it with the md5 torchvision publishes for the
official release (``CIFAR10.train_list``, ``test_list``, ``meta``; likewise ``CIFAR100``). Any
mismatch raises :class:`~phasezoo.errors.CorruptFileError` naming the files, and none of them
is opened. A missing CIFAR file is downloaded first (``download=True``: torchvision's
``download_and_extract_archive``, which verifies the archive's ``tgz_md5``) and then goes
through the same check. md5 is broken for collisions, not for second preimages: a file that
hashes to the published md5 of the official release is the official file. (Each file is read
twice, once to hash and once by torchvision to parse; whoever can rewrite files in the data
folder in between is not stopped by this check.)

SVHN (``.mat``, read by ``scipy.io.loadmat``) and STL-10 (raw ``uint8`` binaries, read by
``numpy.fromfile``) contain no pickle and run no code when read, so they are still loaded when
their md5 differs from the official one, with a ``UserWarning`` naming the differing files
(:func:`_warn_on_md5_mismatch`); altered or foreign files load visibly, not silently.

The small subclasses below exist because torchvision's own gates do not fit: STL-10 demands
the 2.5 GB ``unlabeled_X.bin`` that a labelled-only loader never reads, and the md5 of the
extracted files is checked here instead of in torchvision (the CIFAR subclasses set the per-file
md5 to ``None``, so torchvision's ``check_integrity`` only tests existence; SVHN/STL-10 override
``_check_integrity`` with a presence check). Everything else, parsing included, is torchvision's
code, and a *download* is still verified by torchvision against the archive md5 (``tgz_md5`` /
the SVHN url table are untouched).

Every check compares against one table, :data:`_OFFICIAL_MD5`, built once from torchvision's
tables at import. It is also the only hook the test-suite uses: tests that load tiny CIFAR
files in the exact real format register the md5s of those files there (``monkeypatch.setitem``
for the duration of one test). There is no environment variable, option or argument that skips
the check.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100, STL10, SVHN
from torchvision.datasets.utils import download_and_extract_archive

from phasezoo.errors import CorruptFileError

from .vision import VisionData, from_arrays, not_found, one_line


def _presence_only(file_list: list[list[str]]) -> list[list[Any]]:
    """torchvision's ``[[filename, md5], ...]`` with md5 None: ``check_integrity`` = exists."""
    return [[filename, None] for filename, _md5 in file_list]


class _CIFAR10(CIFAR10):
    """CIFAR10 checking only presence: the md5 gate runs before it is built (module docstring)."""

    train_list = _presence_only(CIFAR10.train_list)
    test_list = _presence_only(CIFAR10.test_list)
    meta = {**CIFAR10.meta, "md5": None}


class _CIFAR100(CIFAR100):
    """CIFAR100 checking only presence: the md5 gate runs before it is built (module docstring)."""

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


#: Datasets whose files are pickles: every one is md5-checked before anything is unpickled.
_PICKLED = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def _torchvision_md5_table(name: str) -> dict[str, str]:
    """Relative path -> official md5 of every file the loader reads, from torchvision's tables."""
    if name in _PICKLED:
        cls = _PICKLED[name]
        entries = cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]]
        return {f"{cls.base_folder}/{f}": md5 for f, md5 in entries}
    if name == "svhn":
        return {SVHN.split_list[s][1]: SVHN.split_list[s][2] for s in ("train", "test")}
    table = dict(STL10.train_list + STL10.test_list)
    return {f"{STL10.base_folder}/{f}": table[f] for f in _STL10_LABELLED}


#: dataset -> {path relative to ``<root>/<name>``: md5 of the official release}, the one table
#: every md5 check of this module compares against (module docstring). Built once from
#: torchvision's tables. Test hook: tests register the md5s of their own tiny files here with
#: ``monkeypatch.setitem``; nothing outside the test-suite is meant to change it.
_OFFICIAL_MD5: dict[str, dict[str, str]] = {
    name: _torchvision_md5_table(name) for name in ("cifar10", "cifar100", "svhn", "stl10")
}


def _official_md5(name: str) -> dict[str, str]:
    """Relative path -> official md5 of every file the loader of ``name`` reads."""
    return dict(_OFFICIAL_MD5[name])


def _md5(path: Path, chunk: int = 1 << 20) -> str:
    """md5 of a file, read in 1 MiB chunks (the CIFAR batches are 30 MB each, SVHN's 180 MB)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _differing(name: str, root: Path) -> list[str]:
    """The files (relative paths) whose md5 is not the official one."""
    differing = []
    for rel, md5 in _official_md5(name).items():
        try:
            actual = _md5(root / rel)
        except OSError as exc:  # unreadable (permissions, I/O error): one line, not a traceback
            raise CorruptFileError(
                one_line(f"dataset '{name}': cannot read {root / rel} ({exc})")
            ) from exc
        if actual != md5:
            differing.append(rel)
    return differing


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


def _check_present(name: str, root: Path, download: bool) -> list[str]:
    """The missing files; raises the "not found" error when some are missing and not download."""
    missing = _missing(name, root)
    if missing and not download:
        reason = f"{_describe_missing(name, missing)}; download=False"
        raise not_found(name, root, _SOURCES[name].expected, reason=reason)
    return missing


def _third_party(name: str, root: Path, call: Callable[[], Any]) -> Any:
    """Run torchvision download/parse code, turning its failures into one-line errors."""
    try:
        return call()
    # Broad on purpose: this wraps third-party download + parse code whose failures (URLError,
    # socket errors, md5 RuntimeError, tarfile errors, unpickling, reshape ValueError, ...)
    # must reach the user as one actionable line, with the original chained as __cause__.
    except Exception as exc:
        reason = f"{type(exc).__name__}: {one_line(exc)}"
        still_missing = _missing(name, root)
        if still_missing:
            raise not_found(
                name, root, _SOURCES[name].expected,
                reason=f"{_describe_missing(name, still_missing)}; download failed ({reason})",
            ) from exc
        raise CorruptFileError(
            one_line(f"dataset '{name}': files in {root} could not be read ({reason}); "
                     "delete them and download again")
        ) from exc


def _fetch_pickled(name: str, root: Path, download: bool) -> None:
    """Make the CIFAR files present: download and extract the archive if one is missing.

    Only downloads here, never in the dataset constructor, so that every file -- downloaded or
    not -- passes :func:`_refuse_unofficial_pickles` before torchvision unpickles it.
    """
    if not _check_present(name, root, download):
        return
    cls = _PICKLED[name]
    # torchvision's own CIFAR download: fetch the archive, verify its tgz_md5, extract.
    _third_party(name, root, lambda: download_and_extract_archive(
        cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5))
    still_missing = _missing(name, root)
    if still_missing:
        raise not_found(
            name, root, _SOURCES[name].expected,
            reason=f"{_describe_missing(name, still_missing)} after downloading {cls.filename}",
        )


def _refuse_unofficial_pickles(name: str, root: Path) -> None:
    """Raise CorruptFileError, before anything is unpickled, if a CIFAR file is not official."""
    differing = _differing(name, root)
    if differing:
        files = ", ".join(str(root / rel) for rel in differing)
        it, was, pickles = (("it", "it was", "it is a pickle") if len(differing) == 1
                            else ("them", "they were", "they are pickles"))
        raise CorruptFileError(
            f"dataset '{name}': {files}: md5 differs from the official release, so {was} not "
            f"opened ({pickles}, and unpickling a file that is not the official one can run "
            f"arbitrary code); delete {it} and download again"
        )


def _open_split(name: str, root: Path, train: bool, download: bool) -> Any:
    """Construct the torchvision dataset for one split, downloading only if files are missing.

    Download is requested only when a file is absent: with files present (possibly not the
    official bytes) torchvision's SVHN would otherwise re-download over them. CIFAR is never
    downloaded here (:func:`_fetch_pickled` did that before the md5 gate), only parsed.
    """
    src = _SOURCES[name]
    missing = _check_present(name, root, download)
    fetch = bool(missing) and name not in _PICKLED
    kwargs = src.split_kwargs(train)
    return _third_party(name, root, lambda: src.cls(str(root), download=fetch, **kwargs))


def _warn_on_md5_mismatch(name: str, root: Path) -> None:
    """Warn if an SVHN/STL-10 file differs from the official release (module docstring)."""
    differing = _differing(name, root)
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
    A CIFAR file whose md5 is not the official one -> :class:`CorruptFileError`, before any
    file is unpickled; an SVHN/STL-10 one -> ``UserWarning`` (module docstring).
    """
    if name in _PICKLED:  # pickles: only the official files are ever opened
        _fetch_pickled(name, root, download)
        _refuse_unofficial_pickles(name, root)
    train = _open_split(name, root, True, download)
    test = _open_split(name, root, False, download)
    if name not in _PICKLED:  # no code runs from these files: loaded, but never silently
        _warn_on_md5_mismatch(name, root)
    src = _SOURCES[name]
    x_tr, y_tr = src.arrays(train)
    x_te, y_te = src.arrays(test)
    return from_arrays(name, x_tr, y_tr, x_te, y_te, num_classes=src.num_classes)
