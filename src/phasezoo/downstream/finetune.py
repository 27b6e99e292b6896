"""Transfer learning: fine-tune zoo members on a related target task (paper §4.2).

The paper transfers CIFAR-10 → STL-10 and TinyImageNet → STL-10. Target tasks here
(:func:`target_task`):

* ``"stl10"`` — STL-10's labelled split (5000 train / 8000 test, 10 classes, 96×96, normalised
  with its own train statistics by :func:`phasezoo.data.load_dataset`), resized with
  ``F.interpolate(mode="bilinear", antialias=True)`` to ``image_size``: 32 for CIFAR-10-pretrained
  members (the default), 64 for TinyImageNet-pretrained members.
* ``"digits-rot90"`` — for the embedded digits zoos, which cannot take 3-channel images: the same
  8×8 scikit-learn digits (same train/test split, same labels) rotated by 90° counter-clockwise
  (``torch.rot90(x, 1, dims=(2, 3))``). It is a pure domain shift with the label space unchanged,
  like CIFAR-10 → STL-10 (same kinds of objects, different images). Rotation keeps the per-channel
  mean/std, so the standardisation of the source data still applies.

:func:`finetune` replaces the classifier ``model.linear`` of a (deep-copied) phasezoo ResNet by a
fresh ``nn.Linear(feature_dim, num_classes)`` (Kaiming-uniform weight drawn from a generator seeded
with ``seed``, zero bias — the zoo's own initialisation) and trains either

* ``mode="full"``: every weight, SGD with momentum 0.9, weight decay, a cosine decay of ``lr`` to 0
  over all steps (stepped per batch), BatchNorm in train mode; or
* ``mode="linear"`` (linear probe): only the new head, on frozen features. The penultimate
  representation ``model.features(x)`` is computed ONCE (eval mode, BatchNorm statistics of the
  source run) for the train and test images, then the head is trained on those vectors with the
  same optimiser/schedule — fast; every weight outside ``linear`` is unchanged.

Defaults: ``epochs=5`` (a short fine-tune: the paper's point is the relative transferability of
zoo members, and 5 epochs keep a zoo sweep cheap; raise it for absolute numbers), ``lr=0.01`` for
``full`` and ``0.1`` for ``linear``, ``batch_size=128``, ``weight_decay=5e-4``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from phasezoo.data import load_dataset
from phasezoo.fit import sgd_cosine_fit
from phasezoo.tasks import ClassificationTask

__all__ = ["TARGET_TASKS", "TargetTask", "finetune", "finetune_model", "target_task"]

TARGET_TASKS = ("digits-rot90", "stl10")

_DEFAULT_LR = {"full": 0.01, "linear": 0.1}


class TargetTask(NamedTuple):
    """A target task's tensors: ``(train_x, train_y, test_x, test_y, num_classes)``."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int


def _resize(x: torch.Tensor, size: int, batch: int = 1000) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return torch.cat([F.interpolate(x[i:i + batch], size=(size, size), mode="bilinear",
                                    align_corners=False, antialias=True)
                      for i in range(0, len(x), batch)])


def target_task(name: str, data_dir: str | Path | None = None, *, image_size: int = 32,
                download: bool = True) -> TargetTask:
    """The tensors of target task ``name`` (see the module docstring), as a :class:`TargetTask`.

    ``image_size`` applies to ``"stl10"`` only (32 for CIFAR-pretrained, 64 for
    TinyImageNet-pretrained members); ``data_dir``/``download`` go to
    :func:`phasezoo.data.load_dataset`.
    """
    if name == "digits-rot90":
        d = load_dataset("digits")
        rot = lambda t: torch.rot90(t, 1, dims=(2, 3)).contiguous()  # noqa: E731
        return TargetTask(rot(d.train_x), d.train_y.clone(), rot(d.test_x), d.test_y.clone(),
                          d.num_classes)
    if name == "stl10":
        d = load_dataset("stl10", data_dir, download=download)
        return TargetTask(_resize(d.train_x, image_size), d.train_y, _resize(d.test_x, image_size),
                          d.test_y, d.num_classes)
    raise ValueError(f"unknown target task {name!r}; known: {', '.join(TARGET_TASKS)}")


def _new_head(in_features: int, num_classes: int, seed: int) -> nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(in_features, num_classes)
    with torch.no_grad():
        nn.init.kaiming_uniform_(head.weight, mode="fan_in", nonlinearity="relu", generator=gen)
        head.bias.zero_()
    return head


@torch.no_grad()
def _features(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    return torch.cat([model.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def finetune(
    model: nn.Module,
    target: str | TargetTask | tuple,
    *,
    mode: str = "full",
    epochs: int = 5,
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    seed: int = 0,
    data_dir: str | Path | None = None,
    image_size: int = 32,
    return_model: bool = False,
) -> dict:
    """Fine-tune a copy of ``model`` on ``target`` with a fresh classifier head; returns a dict.

    ``target`` is a task name (:func:`target_task`, with ``data_dir``/``image_size``) or a
    ``(train_x, train_y, test_x, test_y, num_classes)`` tuple. ``mode`` is ``"full"`` or
    ``"linear"`` (module docstring); ``lr`` defaults to 0.01 (full) / 0.1 (linear). The data
    order comes from a CPU generator seeded with ``seed``, which also seeds the new head.
    ``model`` itself is never modified.

    Returns ``{"target_test_acc", "target_test_loss", "target_train_acc", "mode", "target",
    "epochs", "lr", "momentum", "weight_decay", "batch_size", "seed", "num_classes"}``, plus
    ``"model"`` (the fine-tuned copy, eval mode) when ``return_model``.
    """
    if mode not in _DEFAULT_LR:
        raise ValueError(f"mode must be 'full' or 'linear', got {mode!r}")
    if not (hasattr(model, "linear") and hasattr(model, "features")
            and isinstance(model.linear, nn.Linear)):
        raise TypeError(f"{type(model).__name__} has no `linear` head and `features`: not a phasezoo ResNet")
    target_name = target if isinstance(target, str) else "custom"
    if isinstance(target, str):
        target = target_task(target, data_dir, image_size=image_size)
    train_x, train_y, test_x, test_y, num_classes = target
    lr = _DEFAULT_LR[mode] if lr is None else float(lr)
    task = ClassificationTask()

    ft = copy.deepcopy(model)
    device = next(ft.parameters()).device
    ft.linear = _new_head(ft.linear.in_features, int(num_classes), seed).to(device)
    train_x, train_y = train_x.to(device), train_y.to(device)
    test_x, test_y = test_x.to(device), test_y.to(device)
    generator = torch.Generator().manual_seed(seed)
    hp = dict(epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
              batch_size=batch_size, generator=generator)

    if mode == "linear":
        ft.eval()
        for p in ft.parameters():
            p.requires_grad_(False)
        for p in ft.linear.parameters():
            p.requires_grad_(True)
        f_train, f_test = _features(ft, train_x), _features(ft, test_x)
        sgd_cosine_fit(ft.linear.parameters(), lambda xb, yb: task.loss(ft.linear(xb), yb), f_train, train_y, **hp)
        for p in ft.parameters():
            p.requires_grad_(True)
        test = task.evaluate(ft.linear, f_test, test_y)
        train = task.evaluate(ft.linear, f_train, train_y)
    else:
        sgd_cosine_fit(ft.parameters(), lambda xb, yb: task.loss(ft(xb), yb), train_x, train_y,
                       on_epoch_start=ft.train, **hp)
        ft.eval()
        test = task.evaluate(ft, test_x, test_y)
        train = task.evaluate(ft, train_x, train_y)

    out = {"target_test_acc": test["accuracy"], "target_test_loss": test["loss"],
           "target_train_acc": train["accuracy"], "mode": mode, "target": target_name,
           "epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
           "batch_size": batch_size, "seed": seed, "num_classes": int(num_classes)}
    if return_model:
        out["model"] = ft.eval()
    return out


#: Alias exported by :mod:`phasezoo.downstream` (where ``finetune`` names this submodule).
finetune_model = finetune
