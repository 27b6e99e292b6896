"""Model architectures, built by name through :func:`build_model`."""

from __future__ import annotations

from typing import Callable

from torch import nn

from phasezoo.errors import SpecError
from phasezoo.models.resnet import resnet18, resnet50

#: Architecture name -> constructor taking keyword arguments ``width, in_channels, num_classes``.
ARCHS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
}


def build_model(arch: str, *, width: int, in_channels: int, num_classes: int) -> nn.Module:
    """Build an architecture by name at a given width (its load parameter).

    >>> build_model("resnet18", width=4, in_channels=1, num_classes=10)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    if arch not in ARCHS:
        raise SpecError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
    if not isinstance(width, int) or width < 1:
        raise SpecError(f"width must be a positive integer, got {width!r}")
    return ARCHS[arch](width=width, in_channels=in_channels, num_classes=num_classes)


__all__ = ["ARCHS", "build_model"]
