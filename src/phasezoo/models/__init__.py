"""Model architectures, built by name through :func:`build_model`.

Every constructor takes keyword arguments: ``width`` (the load parameter: ResNet channels of the
first stage, transformer ``model_dim``, PINN hidden units) plus what the data fix
(vision: ``in_channels, num_classes, image_size``; text: ``vocab_size, block_size``;
PDE: ``in_channels, num_classes``) and the zoo spec's ``model:`` settings (depth, heads, ...).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from phasezoo.data import DATASETS
from phasezoo.errors import SpecError

#: Architecture name -> (module, constructor name, dataset kind it consumes). Modules are
#: imported on first use.
_REGISTRY = {
    "resnet18": ("phasezoo.models.resnet", "resnet18", "vision"),
    "resnet50": ("phasezoo.models.resnet", "resnet50", "vision"),
    "vit": ("phasezoo.models.vit", "vit", "vision"),
    "gpt": ("phasezoo.models.gpt", "gpt", "text"),
    "pinn": ("phasezoo.models.pinn", "pinn", "pde"),
}
#: Architecture name -> the dataset kind it takes (``vision``, ``text``, ``pde``).
ARCH_DATA_KIND = {name: kind for name, (_, _, kind) in _REGISTRY.items()}
ARCHS = tuple(_REGISTRY)


def constructor(arch: str) -> Callable[..., nn.Module]:
    if arch not in _REGISTRY:
        raise SpecError(f"unknown architecture {arch!r}; known: {', '.join(sorted(_REGISTRY))}")
    module, name, _ = _REGISTRY[arch]
    return getattr(importlib.import_module(module), name)


def build_model(arch: str, *, width: int, **kwargs: Any) -> nn.Module:
    """Build an architecture by name at a given width (its load parameter).

    >>> build_model("resnet18", width=4, in_channels=1, num_classes=10)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise SpecError(f"width must be a positive integer, got {width!r}")
    make = constructor(arch)
    try:
        return make(width=width, **kwargs)
    except (TypeError, ValueError) as e:
        raise SpecError(f"cannot build {arch} at width {width}: {e}") from None


def data_kwargs(arch: str, info) -> dict[str, int]:
    """What a dataset fixes about an architecture (``info``: a DatasetInfo)."""
    kind = ARCH_DATA_KIND[arch]
    if kind == "vision" and arch == "vit":
        return {"in_channels": info.in_channels, "num_classes": info.num_classes, "image_size": info.image_size}
    if kind == "vision":
        return {"in_channels": info.in_channels, "num_classes": info.num_classes}
    if kind == "text":
        return {"vocab_size": info.num_classes, "block_size": info.block_size}
    return {"in_channels": info.in_channels, "num_classes": info.num_classes}


def model_from_config(config) -> nn.Module:
    """The (freshly initialised) architecture of a member config (``config.json`` or
    ``MemberSpec.to_dict()``): arch, width, the dataset's shapes and the ``model`` settings."""
    info = DATASETS[config["dataset"]]
    extra = dict(config.get("model") or {})
    return build_model(config["arch"], width=config["width"], **data_kwargs(config["arch"], info), **extra)


__all__ = ["ARCHS", "ARCH_DATA_KIND", "build_model", "constructor", "data_kwargs", "model_from_config"]
