"""The in-memory form every dataset is turned into, and the pieces all loaders share.

A :class:`VisionData` holds both splits of one image-classification dataset as whole tensors
(N, C, H, W), already scaled to [0, 1] and then standardised per channel with the *train*
split's statistics. Zoo members are small models trained many times on the same data, so the
whole dataset lives in memory once and batches are cut from it by index (see
:func:`phasezoo.data.batches.iterate_batches`) instead of going through a per-sample
``DataLoader``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from phasezoo.errors import CorruptFileError, DatasetNotFoundError

#: How the data root is chosen; repeated in every "not found" message so the user can act.
ROOT_HINT = "choose the data root with --data-dir or the PHASEZOO_DATA environment variable"


class TensorSplits:
    """What every dataset dataclass (:class:`VisionData`, ``TextData``, ``PDEData``) shares:
    ``train_x/train_y/test_x/test_y`` tensors, their sizes, and a copy on another device."""

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_x.shape[0])

    def to(self, device: torch.device | str):
        """A copy whose four tensors live on ``device`` (the metadata is unchanged; tensors
        already there are kept, not copied)."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )


@dataclass(frozen=True)
class VisionData(TensorSplits):
    """Both splits of one image-classification dataset, normalised, as whole tensors.

    ``train_x``/``test_x`` are float32 (N, C, H, W) with H == W == ``image_size``; pixel values
    were first scaled to [0, 1] and then standardised as ``(x - mean[c]) / std[c]``, where
    ``mean``/``std`` are the per-channel statistics of the TRAIN split (population std, over
    all train images and pixels). The same statistics are applied to the test split, so no
    test information leaks into the preprocessing. ``train_y``/``test_y`` are int64 class
    indices in ``[0, num_classes)``.

    Loaded instances are shared through an in-process cache: treat the tensors as read-only.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def unnormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of the standardisation: ``x * std[c] + mean[c]``, back to [0, 1] pixels."""
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return x * std + mean


def _to_unit_float(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] (divide by 255); float input must already be in [0, 1]."""
    # One fresh copy (normalisation then works in place without touching the caller's array),
    # in contiguous NCHW memory: loaders hand in transposed views (e.g. CIFAR's HWC -> CHW).
    t = torch.as_tensor(x)
    out = t.to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)
    return out.div_(255.0) if t.dtype == torch.uint8 else out


def from_arrays(
    name: str,
    train_x: np.ndarray | torch.Tensor,
    train_y: np.ndarray | torch.Tensor,
    test_x: np.ndarray | torch.Tensor,
    test_y: np.ndarray | torch.Tensor,
    num_classes: int,
) -> VisionData:
    """Validate raw (N, C, H, W) arrays, scale to [0, 1], standardise with train statistics.

    ``x`` arrays are uint8 pixels (divided by 255) or floats already in [0, 1]. A channel whose
    train std is 0 (a constant channel) keeps std 1, so standardisation only centres it instead
    of dividing by zero. Inconsistent arrays (wrong rank, non-square images, label count or
    range wrong) mean the files were not what the loader expected: :class:`CorruptFileError`.
    """
    splits = {}
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        xt = _to_unit_float(x)
        yt = torch.as_tensor(np.asarray(y)).to(torch.int64).reshape(-1)
        if xt.ndim != 4 or xt.shape[2] != xt.shape[3]:
            raise CorruptFileError(
                f"dataset '{name}': {split} images have shape {tuple(xt.shape)}, "
                "expected (N, C, H, W) with H == W"
            )
        if yt.shape[0] != xt.shape[0]:
            raise CorruptFileError(
                f"dataset '{name}': {split} split has {xt.shape[0]} images but {yt.shape[0]} labels"
            )
        if yt.numel() and (int(yt.min()) < 0 or int(yt.max()) >= num_classes):
            raise CorruptFileError(
                f"dataset '{name}': {split} labels span [{int(yt.min())}, {int(yt.max())}], "
                f"expected [0, {num_classes - 1}]"
            )
        splits[split] = (xt, yt)

    (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
    if xtr.shape[1:] != xte.shape[1:]:
        raise CorruptFileError(
            f"dataset '{name}': train images are {tuple(xtr.shape[1:])} but test images are "
            f"{tuple(xte.shape[1:])}"
        )
    # Population statistics (correction=0) so the normalised train split has std exactly 1.
    std, mean = torch.std_mean(xtr, dim=(0, 2, 3), correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    shape = (1, -1, 1, 1)
    xtr.sub_(mean.view(shape)).div_(std.view(shape))
    xte.sub_(mean.view(shape)).div_(std.view(shape))
    return VisionData(
        name=name,
        train_x=xtr,
        train_y=ytr,
        test_x=xte,
        test_y=yte,
        num_classes=int(num_classes),
        in_channels=int(xtr.shape[1]),
        image_size=int(xtr.shape[2]),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
    )


def one_line(text: object) -> str:
    """Collapse an exception text onto one line (error messages must be single lines)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def not_found(
    name: str, folder: Path, expected: str, *, reason: str | None = None
) -> DatasetNotFoundError:
    """The one-line :class:`DatasetNotFoundError` for ``name``: where we looked, what belongs there.

    ``folder`` is the exact directory searched, ``expected`` names the files/layout that must be
    in it, ``reason`` says why a download did not help (or that there is no download).
    """
    msg = f"dataset '{name}' not found in {folder}: expected {expected}"
    if reason:
        msg += f"; {reason}"
    msg += f"; put the files there, or {ROOT_HINT} (each dataset lives in <root>/{name})"
    return DatasetNotFoundError(one_line(msg))
