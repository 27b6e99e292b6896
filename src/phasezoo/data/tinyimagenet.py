"""Tiny ImageNet (200 classes, 64x64 RGB) from its standard extracted folder.

Layout read, under ``<root>/tinyimagenet/tiny-imagenet-200/`` (``tiny-imagenet-200.zip``
extracted; torchvision has no class for it, so there is no automatic download)::

    wnids.txt                            one WordNet id per line = the classes
    train/<wnid>/images/*.JPEG           500 training images per class
    val/images/*.JPEG                    10000 labelled validation images
    val/val_annotations.txt              "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>" per line

The labelled ``val`` split is our test split (the official ``test`` images have no labels).
Class index = position of the wnid in ``sorted(wnids)``, the order torchvision's
``ImageFolder(train/)`` would give, so indices agree with that common pipeline whatever the
line order of ``wnids.txt``. Some images are greyscale JPEGs; all are converted to RGB.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from phasezoo.errors import CorruptFileError

from .vision import VisionData, from_arrays, not_found, one_line

FOLDER = "tiny-imagenet-200"
IMAGE_SIZE = 64
_EXPECTED = (
    "wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt "
    "(tiny-imagenet-200.zip from http://cs231n.stanford.edu/tiny-imagenet-200.zip extracted)"
)
_NO_DOWNLOAD = "no automatic download for tinyimagenet"


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except OSError as exc:  # PIL's UnidentifiedImageError / truncated file are OSErrors
        raise CorruptFileError(one_line(f"dataset 'tinyimagenet': cannot read {path} ({exc})")) from exc
    if arr.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise CorruptFileError(
            f"dataset 'tinyimagenet': {path} is {arr.shape[1]}x{arr.shape[0]}, expected 64x64"
        )
    return arr


def _read_images(paths: list[Path]) -> np.ndarray:
    """(N, 3, 64, 64) uint8. Threads: PIL releases the GIL while decoding JPEGs."""
    out = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    with ThreadPoolExecutor() as pool:
        for i, arr in enumerate(pool.map(_read_rgb, paths)):
            out[i] = arr
    return out.transpose(0, 3, 1, 2)


def _val_labels(folder: Path, class_index: dict[str, int]) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    ann = folder / "val" / "val_annotations.txt"
    for lineno, line in enumerate(ann.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in class_index:
            raise CorruptFileError(
                f"dataset 'tinyimagenet': {ann} line {lineno} has no known wnid: {line.strip()!r}"
            )
        paths.append(folder / "val" / "images" / fields[0])
        labels.append(class_index[fields[1]])
    return paths, labels


def load_tinyimagenet(root: Path) -> VisionData:
    """Load from ``root`` = ``<data root>/tinyimagenet``; the data is in ``root/tiny-imagenet-200``.

    Missing or incomplete folder -> :class:`DatasetNotFoundError` (one line: the folder searched
    and the expected layout); unreadable images or annotations -> :class:`CorruptFileError`.
    """
    folder = root / FOLDER
    needed = [folder / "wnids.txt", folder / "val" / "val_annotations.txt", folder / "val" / "images"]
    absent = [str(p.relative_to(folder)) for p in needed if not p.exists()]
    if absent:
        reason = f"missing {', '.join(absent)}; {_NO_DOWNLOAD}"
        raise not_found("tinyimagenet", folder, _EXPECTED, reason=reason)

    wnids = sorted({w.strip() for w in (folder / "wnids.txt").read_text().splitlines() if w.strip()})
    if not wnids:
        raise CorruptFileError(f"dataset 'tinyimagenet': {folder / 'wnids.txt'} lists no classes")
    class_index = {w: i for i, w in enumerate(wnids)}

    train_paths, train_labels = [], []
    for wnid in wnids:
        files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        if not files:
            raise not_found(
                "tinyimagenet", folder, _EXPECTED,
                reason=f"no images in train/{wnid}/images; {_NO_DOWNLOAD}",
            )
        train_paths += files
        train_labels += [class_index[wnid]] * len(files)

    val_paths, val_labels = _val_labels(folder, class_index)
    absent_val = [p.name for p in val_paths if not p.is_file()]
    if absent_val:
        raise not_found(
            "tinyimagenet", folder, _EXPECTED,
            reason=f"{len(absent_val)} images listed in val_annotations.txt are missing "
            f"(first: val/images/{absent_val[0]}); {_NO_DOWNLOAD}",
        )

    return from_arrays(
        "tinyimagenet",
        _read_images(train_paths),
        np.asarray(train_labels, dtype=np.int64),
        _read_images(val_paths),
        np.asarray(val_labels, dtype=np.int64),
        num_classes=len(wnids),
    )
