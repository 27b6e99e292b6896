"""Which datasets exist, where their files live, and the cached entry point ``load_dataset``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from phasezoo.errors import PhaseZooError

from .base import resolve_data_dir
from .convection import load_convection
from .text import load_openwebtext, load_stdlib_text
from .tinyimagenet import load_tinyimagenet
from .vision import VisionData

@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset without loading it (used to validate zoo specs).

    ``num_train``/``num_test`` are the sizes of the official splits as this package uses them
    (digits: its fixed 80/20 split; tinyimagenet: train / labelled val), in samples: images,
    blocks of ``block_size`` tokens (text), or points (PDE).

    ``kind`` says which task family the data serves: ``vision`` (images, ``num_classes``
    labels), ``text`` (next-token prediction: ``num_classes`` is the vocabulary size,
    ``block_size`` the context length) or ``pde`` (``in_channels`` input coordinates, one
    output).
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    num_train: int
    num_test: int
    description: str
    kind: str = "vision"
    block_size: int = 0


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", 10, 1, 8, 1437, 360,
                    "scikit-learn handwritten digits, 8x8 grey, bundled (no files needed)"),
        DatasetInfo("cifar10", 10, 3, 32, 50000, 10000,
                    "CIFAR-10, 32x32 colour objects, 10 classes (torchvision)"),
        DatasetInfo("cifar100", 100, 3, 32, 50000, 10000,
                    "CIFAR-100, 32x32 colour objects, 100 fine classes (torchvision)"),
        DatasetInfo("svhn", 10, 3, 32, 73257, 26032,
                    "SVHN cropped house-number digits, 32x32 colour (torchvision, no 'extra')"),
        DatasetInfo("stl10", 10, 3, 96, 5000, 8000,
                    "STL-10 labelled images, 96x96 colour (torchvision, no unlabeled split)"),
        DatasetInfo("tinyimagenet", 200, 3, 64, 100000, 10000,
                    "Tiny ImageNet, 64x64 colour, 200 classes (test = labelled val split)"),
        DatasetInfo("convection", 1, 2, 0, 256 + 100 + 1000, 256 * 100,
                    "1D convection points: initial, boundary and 1000 collocation points for "
                    "training, the 256 x 100 grid for testing (generated, no files)", kind="pde"),
        # 256 KiB of byte tokens: train = the first 235929 bytes -> (235929 - 1) // 64 = 3686
        # blocks, test = the other 26215 bytes -> 409 blocks (phasezoo.data.text).
        DatasetInfo("stdlib-text", 256, 0, 0, 3686, 409,
                    "docstrings of the installed Python standard library as byte tokens, 256 KiB "
                    "(embedded, no files)", kind="text", block_size=64),
        # train: the paper's 2.29B tokens // 1024; test: nanoGPT's val.bin has 4,434,897 tokens
        # (test_size=0.0005 of ~8M documents) -> (4434897 - 1) // 1024 = 4330 blocks.
        DatasetInfo("openwebtext", 50304, 0, 0, 2_290_000_000 // 1024, 4330,
                    "OpenWebText as GPT-2 BPE tokens prepared like nanoGPT's, first 2.29B train "
                    "tokens (prepare with python -m phasezoo.data.prepare_openwebtext)",
                    kind="text", block_size=1024),
    )
}


# Small in-process cache: a zoo trains many members from one load. Keyed by (name, root), not by
# `download`, since a successful load is the same data either way. Failures are not cached.
_CACHE_SIZE = 2  # whole datasets are large (tinyimagenet as float32 is ~5 GB)
_cache: OrderedDict[tuple[str, Path], VisionData] = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached dataset (e.g. after files in a data root changed)."""
    with _cache_lock:
        _cache.clear()


def _load_uncached(name: str, root: Path, download: bool) -> VisionData:
    if name == "stdlib-text":
        return load_stdlib_text()
    if name == "openwebtext":  # no download: preparing it is an explicit step (Hugging Face hub)
        return load_openwebtext(root / name)
    if name == "digits":
        # lazy: scikit-learn takes seconds to import, and reading a spec (DATASETS) must not pay it
        from .digits import load_digits

        return load_digits()
    if name == "convection":
        return load_convection()
    if name == "tinyimagenet":
        return load_tinyimagenet(root / name)
    # lazy: torchvision takes seconds to import, and reading a spec (DATASETS) must not pay it
    from .torchvision_sets import load_torchvision_set

    return load_torchvision_set(name, root / name, download)


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = True) -> VisionData:
    """Load dataset ``name`` (a key of :data:`DATASETS`) as a normalised :class:`VisionData` on CPU.

    Files are looked up in ``resolve_data_dir(data_dir) / name`` (see
    :mod:`phasezoo.data.torchvision_sets` and :mod:`phasezoo.data.tinyimagenet` for the
    layout inside). ``download`` lets torchvision fetch missing CIFAR/SVHN/STL-10 files;
    digits needs no files and tinyimagenet has no download. Absent files ->
    :class:`~phasezoo.errors.DatasetNotFoundError`; unknown name -> ``PhaseZooError``.
    The result is cached in-process and shared: do not modify its tensors in place.
    """
    if name not in DATASETS:
        raise PhaseZooError(f"unknown dataset '{name}'; valid names: {', '.join(DATASETS)}")
    root = resolve_data_dir(data_dir)
    key = (name, root)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    data = _load_uncached(name, root, download)
    with _cache_lock:
        _cache[key] = data
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return data
