"""Batched, seeded data augmentation on whole (N, C, H, W) tensors, and mini-batch iteration.

Augmentations run on the batch at once (gather / ``torch.where`` / ``grid_sample``), on
whatever device the batch lives on, with no per-sample Python loop. All random numbers are
drawn from a caller-supplied CPU ``torch.Generator`` *on the CPU* and only then moved to the
batch's device: the random decisions (crop offsets, flips, angles) are therefore identical on
CPU and GPU for the same generator state, and the same seed reproduces the same batch.
(Bilinear rotation may still differ between devices in the last float bits.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

import torch
import torch.nn.functional as F

from phasezoo.errors import SpecError

SPEC_KEYS = ("random_crop", "hflip", "rotation")


def _check_cpu_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError("augmentation needs a CPU torch.Generator (random numbers are drawn on the CPU)")


def random_crop(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``padding`` on all sides, then cut an H x W window at per-sample ``offsets``.

    ``offsets`` is (N, 2) int64 (row, column) in ``[0, 2*padding]`` on ``x.device``; this is
    torchvision's ``RandomCrop(size, padding)`` done for the whole batch. Sample ``n`` comes out
    as ``out[n, :, i, j] = x[n, :, i - dy, j - dx]`` with ``(dy, dx) = padding - offsets[n]``,
    zero where that index falls outside the image. Two gathers (rows, then columns) do the
    per-sample window selection without a loop.
    """
    n, c, h, w = x.shape
    p = int(padding)
    padded = F.pad(x, (p, p, p, p))
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (N, H) rows of `padded`
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (N, W) columns of `padded`
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * p))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where the (N,) bool ``flip`` is True, keep the others."""
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each sample by ``degrees[n]`` about the image centre (positive = counter-clockwise).

    Uses ``F.affine_grid`` + ``F.grid_sample`` (bilinear, zeros outside, align_corners=False,
    i.e. pixel-centre coordinates, so angle 0 reproduces the input exactly). The grid maps each
    output location to its input location with the inverse rotation; in normalised coordinates
    the off-diagonal terms carry H/W factors so non-square images rotate rigidly in pixels:
    ``theta = [[cos a, -sin a * H/W, 0], [sin a * W/H, cos a, 0]]`` (x right, y down).
    """
    n, _, h, w = x.shape
    rad = degrees.to(device=x.device, dtype=x.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(rad)
    theta = torch.stack(
        [
            torch.stack([cos, -sin * (h / w), zero], dim=1),
            torch.stack([sin * (w / h), cos, zero], dim=1),
        ],
        dim=1,
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _spec_error(msg: str) -> SpecError:
    return SpecError(f"augmentation spec: {msg}")


def _parse_padding(value: Any) -> int:
    # Accepted: {"padding": p} (the documented form) or a bare int p; None/False/0 = off.
    if value is None or value is False:
        return 0
    if isinstance(value, Mapping):
        extra = set(value) - {"padding"}
        if extra or "padding" not in value:
            raise _spec_error(f"random_crop takes {{padding: <int>}}, got keys {sorted(map(str, value))}")
        value = value["padding"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _spec_error(f"random_crop padding must be an integer >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class BatchAugment:
    """A fixed augmentation pipeline: random crop, then horizontal flip, then rotation.

    ``crop_padding``: zero-pad by this many pixels and take a random crop of the original size
    (0 = off). ``hflip``: mirror each sample with probability 1/2. ``rotation_degrees``: rotate
    each sample by an angle uniform in ``[-deg, deg]`` (0 = off). The data are already
    standardised, so "zero" padding (crop, and the corners a rotation uncovers) is the
    train-mean colour rather than black; that is the usual, accepted convention.
    """

    crop_padding: int = 0
    hflip: bool = False
    rotation_degrees: float = 0.0

    def __post_init__(self) -> None:
        pad = self.crop_padding
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            raise _spec_error(f"random_crop padding must be an integer >= 0, got {self.crop_padding!r}")
        if not isinstance(self.hflip, bool):
            raise _spec_error(f"hflip must be true or false, got {self.hflip!r}")
        deg = self.rotation_degrees
        if isinstance(deg, bool) or not isinstance(deg, Real) or not 0 <= float(deg) <= 180:
            raise _spec_error(f"rotation must be a number of degrees in [0, 180], got {deg!r}")
        object.__setattr__(self, "rotation_degrees", float(deg))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> BatchAugment:
        """Build from a zoo-spec mapping such as
        ``{"random_crop": {"padding": 4}, "hflip": True, "rotation": 20}``; ``None``/``{}`` = identity.
        """
        if spec is None:
            return cls()
        if not isinstance(spec, Mapping):
            raise _spec_error(f"expected a mapping with keys {', '.join(SPEC_KEYS)}, got {spec!r}")
        unknown = [str(k) for k in spec if k not in SPEC_KEYS]
        if unknown:
            raise _spec_error(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(SPEC_KEYS)}")
        return cls(
            crop_padding=_parse_padding(spec.get("random_crop")),
            hflip=spec.get("hflip", False),
            rotation_degrees=spec.get("rotation", 0.0),
        )

    def to_spec(self) -> dict[str, Any]:
        """The canonical spec mapping (only the enabled steps; identity -> ``{}``)."""
        spec: dict[str, Any] = {}
        if self.crop_padding:
            spec["random_crop"] = {"padding": self.crop_padding}
        if self.hflip:
            spec["hflip"] = True
        if self.rotation_degrees:
            spec["rotation"] = self.rotation_degrees
        return spec

    @property
    def is_identity(self) -> bool:
        return not (self.crop_padding or self.hflip or self.rotation_degrees)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment the batch ``x`` (N, C, H, W); identity returns ``x`` itself, drawing nothing.

        Draw order from ``generator`` (CPU), only for enabled steps: crop offsets
        ``randint(0, 2p+1, (N, 2))``, flip coins ``rand(N) < 0.5``, angles
        ``(2 rand(N) - 1) * deg``. Keeping this order fixed is what makes a seed reproducible.
        """
        if self.is_identity:
            return x
        _check_cpu_generator(generator)
        n = x.shape[0]
        if self.crop_padding:
            p = self.crop_padding
            offsets = torch.randint(0, 2 * p + 1, (n, 2), generator=generator)
            x = random_crop(x, p, offsets.to(x.device))
        if self.hflip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = hflip(x, flip.to(x.device))
        if self.rotation_degrees:
            angles = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * self.rotation_degrees
            x = rotate(x, angles.to(x.device))
        return x


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x[idx], y[idx])`` mini-batches covering every sample exactly once.

    ``shuffle=True``: the order is ``torch.randperm(N, generator=generator)`` drawn on the CPU
    (``generator`` a CPU generator, or None for torch's global one) and moved to the data's
    device. ``shuffle=False``: in order, as views (for evaluation). The last batch may be
    smaller than ``batch_size`` (no drop_last). Arguments are checked when called, not at the
    first ``next()``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {y.shape[0]}")
    if shuffle and generator is not None:
        _check_cpu_generator(generator)
    return _batches(x, y, batch_size, generator, shuffle)


def _batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None, shuffle: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = x.shape[0]
    if not shuffle:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    perm = torch.randperm(n, generator=generator)
    perm_x = perm.to(x.device)
    perm_y = perm_x if y.device == x.device else perm.to(y.device)
    for start in range(0, n, batch_size):
        yield x[perm_x[start : start + batch_size]], y[perm_y[start : start + batch_size]]
