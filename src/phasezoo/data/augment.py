"""Batched, seeded data augmentation on whole (N, C, H, W) tensors: a thin layer over kornia.

The kernels and most random draws are kornia's (``kornia.augmentation``, ``kornia.enhance``,
``kornia.geometry.transform``): batched, per-sample random, on whatever device the batch lives
on. This module holds what kornia does not decide for us: the zoo-spec recipe
(:meth:`BatchAugment.from_spec`), the order of the steps, the standardisation around the colour
steps, torchvision's RandAugment (op list, per-image op choice, magnitude table), and the
seeding that makes a member's augmentation reproducible and resumable.

Seeding. kornia draws from torch's global CPU generator. Each call of :class:`BatchAugment`
draws one 63-bit seed from the member's own CPU ``torch.Generator`` (the one that also shuffles
its batches, whose state is in the member's resume state) and runs the pipeline inside
``torch.random.fork_rng(devices=[])`` with the global CPU generator seeded from it: the global
state outside is untouched, the same generator state gives the same batch, and a resumed run
continues the same stream. kornia samples its parameters on the CPU (its modules are never
moved to a device here), so the random decisions are the same on CPU and GPU; interpolation and
reductions may still differ in the last float bits.

Steps, in this fixed order: random crop, horizontal flip, rotation (the paper's ResNet recipe,
appendix A.2), then RandAugment, colour jitter and random erasing (the "stronger" ViT recipe;
Cubuk et al. 2019 for RandAugment). RandAugment and colour jitter are defined on [0, 1] pixels,
as torchvision's float kernels are; the batches arriving here are standardised
``(pixel - mean[c]) / std[c]``, so :class:`BatchAugment` takes the dataset's ``mean``/``std``
and runs those two steps on ``x * std + mean``, standardising again after (``mean``/``std``
None: the data are taken to be [0, 1] pixels already). Random erasing, like torchvision's
``RandomErasing`` placed after ``Normalize``, works on the standardised values (fill 0 = the
train-mean colour).

Where the result differs from torchvision's per-image transforms (all in distribution only;
nothing matches sample for sample, since the draws are batched):

* RandAugment: kornia's own ``RandAugment`` draws its ops once per *batch* from a different op
  list (with Invert, without Identity) and other magnitude ranges; torchvision draws them per
  *image* from 14 ops. :func:`rand_augment` keeps torchvision's scheme (ops per image, the
  magnitude table of :func:`randaugment_magnitudes`, a random sign per signed op) and applies
  kornia's kernels to the samples that drew each op. Geometric ops use nearest interpolation
  and black fill (torchvision's defaults); shears turn about the top-left pixel (torchvision:
  the top-left corner, half a pixel away); AutoContrast leaves a constant channel as it is.
* Colour jitter: kornia's ``ColorJitter`` (torchvision's formulas and factor ranges, a random
  order of the steps per batch where torchvision draws one per image); no hue. Grey is kornia's
  ``0.299 R + 0.587 G + 0.114 B``.
* Random erasing: kornia's ``RandomErasing`` draws one rectangle per sample, its aspect ratio
  uniform on ``[r0, 1]`` or ``[1, r1]`` with probability 1/2 each, clamped to the image;
  torchvision draws a log-uniform ratio and retries up to 10 times for a rectangle that fits.
* Rotation: kornia's ``RandomRotation`` (bilinear, zeros outside, ``align_corners=True``).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import kornia.augmentation as K
import kornia.enhance as KE
import kornia.geometry.transform as KT
import torch
from torch import nn

from phasezoo.errors import SpecError

from .batches import check_cpu_generator

SPEC_KEYS = ("random_crop", "hflip", "rotation", "randaugment", "color_jitter", "random_erasing")

#: RandAugment's op list, in torchvision's order (``RandAugment._augmentation_space``): an op
#: index drawn uniformly from ``range(14)`` means the same op here and there.
RANDAUGMENT_OPS = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
    "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize",
    "AutoContrast", "Equalize",
)
_SIGNED = frozenset(range(1, 10))  # ShearX .. Sharpness take a random sign
RANDAUGMENT_BINS = 31  # torchvision's num_magnitude_bins default; magnitude in [0, 30]

ERASING_DEFAULTS = {"p": 0.5, "scale": (0.02, 0.33), "ratio": (0.3, 3.3), "value": 0.0}
JITTER_KEYS = ("brightness", "contrast", "saturation")
RANDAUGMENT_DEFAULTS = {"num_ops": 2, "magnitude": 9}

#: Upper bound (exclusive) of the per-call seed drawn from the member's generator.
_SEED_BOUND = 2**63 - 1


@contextlib.contextmanager
def seeded_global_rng(generator: torch.Generator) -> Iterator[None]:
    """Run the block with torch's global CPU generator seeded from one draw of ``generator``.

    The global state is saved and restored around the block (``fork_rng`` over no CUDA
    device: kornia samples on the CPU, and the CUDA generators, which dropout on a GPU uses,
    stay untouched). One ``randint`` is drawn from ``generator`` per call, so its state (kept
    in a member's resume state) determines everything drawn inside.
    """
    seed = int(torch.randint(0, _SEED_BOUND, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def _check_colour_channels(x: torch.Tensor) -> None:
    if x.shape[1] not in (1, 3):
        raise ValueError(f"colour augmentations need 1 or 3 channels (grey or RGB), got {x.shape[1]}")


# --------------------------------------------------------------------------- RandAugment


def randaugment_magnitudes(magnitude: int, height: int, width: int) -> tuple[float, ...]:
    """The unsigned magnitude of each op of :data:`RANDAUGMENT_OPS` at bin ``magnitude`` of 31.

    torchvision's ``_augmentation_space(31, ...)`` read at ``m = magnitude`` (here in float64,
    torchvision in float32), in the units :func:`rand_augment` takes, with ``t = m / 30``:
    Shear 0.3 t (the shear factor, tan of the angle); TranslateX ``int(150/331 W t)`` pixels,
    TranslateY ``int(150/331 H t)`` (truncated as torchvision's ``int(magnitude)``, which
    commutes with the sign); Rotate 30 t degrees; Brightness, Color, Contrast, Sharpness
    0.9 t (the factor is ``1 + signed magnitude``); Posterize ``8 - round(m / 7.5)`` bits;
    Solarize the threshold ``1 - t`` on [0, 1] pixels (torchvision v2's ``bound * magnitude``);
    Identity, AutoContrast, Equalize 0 (no magnitude).
    """
    t = magnitude / (RANDAUGMENT_BINS - 1)
    shear, enhance = 0.3 * t, 0.9 * t
    return (
        0.0, shear, shear,
        float(int(150.0 / 331.0 * width * t)), float(int(150.0 / 331.0 * height * t)),
        30.0 * t, enhance, enhance, enhance, enhance,
        float(8 - round(magnitude / 7.5)), 1.0 - t, 0.0, 0.0,
    )


def _autocontrast(p: torch.Tensor) -> torch.Tensor:
    """kornia's per-channel min-max stretch, with a constant channel left as it is (torchvision;
    kornia's ``normalize_min_max`` would make it 0)."""
    flat = p.amax(dim=(2, 3), keepdim=True) == p.amin(dim=(2, 3), keepdim=True)
    return torch.where(flat, p, KE.normalize_min_max(p).clamp(0.0, 1.0))


def _zeros_beside(m: torch.Tensor, first: bool) -> torch.Tensor:
    """(N, 2) with ``m`` in column 0 (``first``) or 1 and zeros in the other."""
    z = torch.zeros_like(m)
    return torch.stack([m, z] if first else [z, m], dim=1)


# index into RANDAUGMENT_OPS -> kornia kernel(p, signed magnitudes (N,) float64 on the CPU)
_NEAREST = {"mode": "nearest", "padding_mode": "zeros"}
_RANDAUGMENT_KERNELS = {
    1: lambda p, m: KT.shear(p, _zeros_beside(m, True).to(p), **_NEAREST),
    2: lambda p, m: KT.shear(p, _zeros_beside(m, False).to(p), **_NEAREST),
    3: lambda p, m: KT.translate(p, _zeros_beside(m, True).to(p), **_NEAREST),
    4: lambda p, m: KT.translate(p, _zeros_beside(m, False).to(p), **_NEAREST),
    5: lambda p, m: KT.rotate(p, m.to(p), **_NEAREST),
    6: lambda p, m: KE.adjust_brightness_accumulative(p, (1.0 + m).to(p)),
    7: lambda p, m: KE.adjust_saturation_with_gray_subtraction(p, (1.0 + m).to(p)),
    8: lambda p, m: KE.adjust_contrast_with_mean_subtraction(p, (1.0 + m).to(p)),
    9: lambda p, m: KE.sharpness(p, (1.0 + m).to(p)),
    10: lambda p, m: KE.posterize(p, m.to(device=p.device, dtype=torch.int64)),
    11: lambda p, m: KE.solarize(p, m.to(p)),
    12: lambda p, m: _autocontrast(p),
    13: lambda p, m: KE.equalize(p),
}


def randaugment_draws(n: int, num_ops: int, magnitude: int, height: int, width: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's per-image RandAugment draws for a batch, from torch's global generator.

    ``ops`` (N, num_ops) uniform over the 14 ops (with replacement, as torchvision), then sign
    bits (N, num_ops) (1 = negative, used by signed ops only; drawn for every slot so the count
    is fixed); returns ``ops`` and the signed magnitudes (N, num_ops) float64.
    """
    ops = torch.randint(0, len(RANDAUGMENT_OPS), (n, num_ops))
    negative = torch.randint(0, 2, (n, num_ops)) == 1
    table = torch.tensor(randaugment_magnitudes(magnitude, height, width), dtype=torch.float64)
    signed = torch.tensor([i in _SIGNED for i in range(len(RANDAUGMENT_OPS))])
    return ops, torch.where(signed[ops] & negative, -table[ops], table[ops])


def rand_augment(p: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """Apply RandAugment op slots to [0, 1] pixels ``p`` (N, C, H, W), C = 1 or 3.

    ``ops`` (N, S) int64 and ``magnitudes`` (N, S) float64, both on the CPU: sample ``n`` gets
    op ``ops[n, 0]`` with signed magnitude ``magnitudes[n, 0]`` (units of
    :func:`randaugment_magnitudes`), then ``ops[n, 1]``, ... Per slot, each op's kornia kernel
    runs once on the samples that drew it (``index_select`` -> kernel -> ``index_copy``; the
    indices come from the CPU, so no device synchronisation). Identity and ops no sample drew
    cost nothing; a sample that drew only Identity comes back bit-for-bit.
    """
    _check_colour_channels(p)
    dev = p.device
    out = p
    for s in range(ops.shape[1]):
        op, mag = ops[:, s], magnitudes[:, s].to(torch.float64)
        for k, kernel in _RANDAUGMENT_KERNELS.items():
            idx = (op == k).nonzero().squeeze(1)  # CPU
            if len(idx):
                if out is p:
                    out = p.clone()  # written in place below; never the caller's tensor
                idx_dev = idx.to(dev)
                out.index_copy_(0, idx_dev, kernel(out.index_select(0, idx_dev), mag[idx]))
    return out


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


def _sub_mapping(key: str, value: Any, valid: Sequence[str], hint: str = "") -> Mapping | None:
    # Accepted: a mapping with some of `valid` (missing ones take their defaults); None/False = off.
    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        raise _spec_error(f"{key} takes a mapping with keys {', '.join(valid)}, got {value!r}")
    unknown = [str(k) for k in value if k not in valid]
    if unknown:
        raise _spec_error(f"{key}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}{hint}")
    return value


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(float(value))


def _pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2 or not all(
        _is_number(v) for v in value
    ):
        raise _spec_error(f"{what} must be a pair [low, high] of numbers, got {value!r}")
    return float(value[0]), float(value[1])


def _stats(value: Any, what: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value or not all(
        _is_number(v) for v in value
    ):
        raise ValueError(f"{what} must be a non-empty sequence of finite numbers (one per channel), "
                         f"got {value!r}")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class BatchAugment:
    """A fixed augmentation pipeline: random crop, horizontal flip, rotation, RandAugment,
    colour jitter, random erasing (in that order; each off at its default).

    ``crop_padding``: zero-pad by this many pixels and take a random crop of the original size
    (0 = off; kornia's ``RandomCrop``). ``hflip``: mirror each sample with probability 1/2
    (``RandomHorizontalFlip``). ``rotation_degrees``: rotate each sample by an angle uniform in
    ``[-deg, deg]`` (0 = off; ``RandomRotation``). The data are already standardised, so "zero"
    padding (crop, and the corners a rotation uncovers) is the train-mean colour rather than
    black; that is the usual, accepted convention.

    ``randaugment_num_ops`` (0 = off) ops per sample, each drawn uniformly from the 14 of
    :data:`RANDAUGMENT_OPS` (all of torchvision's RandAugment ops) at bin
    ``randaugment_magnitude`` of 31 (:func:`rand_augment`; geometric ops fill black pixels,
    torchvision's default, not the mean colour). ``jitter_brightness``/``_contrast``/
    ``_saturation`` = ``b``: per-sample factors uniform in ``[max(0, 1 - b), 1 + b]``
    (kornia's ``ColorJitter``; 0 = that step off; hue is not offered; saturation on a
    one-channel image does nothing). These two steps work on [0, 1] pixels: with
    ``mean``/``std`` (the dataset's per-channel statistics) the batch is mapped to
    ``x * std + mean``, augmented, and standardised back; without, the batch is taken to be
    [0, 1] pixels. ``erasing_p`` (0 = off): with this probability a sample gets one rectangle
    of area fraction in ``erasing_scale`` and aspect ratio (height / width) in
    ``erasing_ratio`` filled with ``erasing_value`` in the batch's own (standardised) units, so
    0 is the mean colour (kornia's ``RandomErasing``).

    Settings of a step that is off are reset to their defaults, so two instances that augment
    alike compare equal and ``from_spec(a.to_spec()) == a`` (for ``mean``/``std`` None; those
    are data statistics, not part of the spec).
    """

    crop_padding: int = 0
    hflip: bool = False
    rotation_degrees: float = 0.0
    randaugment_num_ops: int = 0
    randaugment_magnitude: int = RANDAUGMENT_DEFAULTS["magnitude"]
    jitter_brightness: float = 0.0
    jitter_contrast: float = 0.0
    jitter_saturation: float = 0.0
    erasing_p: float = 0.0
    erasing_scale: tuple[float, float] = ERASING_DEFAULTS["scale"]
    erasing_ratio: tuple[float, float] = ERASING_DEFAULTS["ratio"]
    erasing_value: float = ERASING_DEFAULTS["value"]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

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
        self._check_randaugment()
        self._check_jitter()
        self._check_erasing()
        mean, std = _stats(self.mean, "mean"), _stats(self.std, "std")
        if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
            raise ValueError(f"mean and std must both be given, one value per channel; got {mean} and {std}")
        if std is not None and min(std) <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def _check_randaugment(self) -> None:
        num_ops, mag = self.randaugment_num_ops, self.randaugment_magnitude
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
            raise _spec_error(f"randaugment num_ops must be an integer >= 0, got {num_ops!r}")
        if isinstance(mag, bool) or not isinstance(mag, int) or not 0 <= mag < RANDAUGMENT_BINS:
            top = RANDAUGMENT_BINS - 1
            raise _spec_error(f"randaugment magnitude must be an integer in [0, {top}], got {mag!r}")
        if not num_ops:
            object.__setattr__(self, "randaugment_magnitude", RANDAUGMENT_DEFAULTS["magnitude"])

    def _check_jitter(self) -> None:
        for key in JITTER_KEYS:
            value = getattr(self, f"jitter_{key}")
            if not _is_number(value) or value < 0:
                raise _spec_error(f"color_jitter {key} must be a number >= 0, got {value!r}")
            object.__setattr__(self, f"jitter_{key}", float(value))

    def _check_erasing(self) -> None:
        p = self.erasing_p
        if not _is_number(p) or not 0 <= p <= 1:
            raise _spec_error(f"random_erasing p must be a probability in [0, 1], got {p!r}")
        s0, s1 = _pair(self.erasing_scale, "random_erasing scale")
        if not 0 <= s0 <= s1 <= 1:
            raise _spec_error(f"random_erasing scale must satisfy 0 <= low <= high <= 1, got {[s0, s1]}")
        r0, r1 = _pair(self.erasing_ratio, "random_erasing ratio")
        if not 0 < r0 <= r1:
            raise _spec_error(f"random_erasing ratio must satisfy 0 < low <= high, got {[r0, r1]}")
        if not _is_number(self.erasing_value):
            raise _spec_error(f"random_erasing value must be a finite number, got {self.erasing_value!r}")
        if p:
            object.__setattr__(self, "erasing_p", float(p))
            object.__setattr__(self, "erasing_scale", (s0, s1))
            object.__setattr__(self, "erasing_ratio", (r0, r1))
            object.__setattr__(self, "erasing_value", float(self.erasing_value))
        else:
            object.__setattr__(self, "erasing_p", 0.0)
            for key in ("scale", "ratio", "value"):
                object.__setattr__(self, f"erasing_{key}", ERASING_DEFAULTS[key])

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any] | None,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> BatchAugment:
        """Build from a zoo-spec mapping such as
        ``{"random_crop": {"padding": 4}, "hflip": True, "rotation": 20}``; ``None``/``{}`` = identity.

        The stronger recipe adds ``randaugment: {num_ops: 2, magnitude: 9}``,
        ``color_jitter: {brightness: 0.4, contrast: 0.4, saturation: 0.4}`` and
        ``random_erasing: {p: 0.25, scale: [0.02, 0.33], ratio: [0.3, 3.3], value: 0}``; a
        missing sub-key takes torchvision's default (num_ops 2, magnitude 9; jitter 0; p 0.5,
        scale [0.02, 0.33], ratio [0.3, 3.3], value 0). ``mean``/``std``: the per-channel
        statistics the batches were standardised with (see the class docstring).
        """
        if spec is None:
            return cls(mean=mean, std=std)
        if not isinstance(spec, Mapping):
            raise _spec_error(f"expected a mapping with keys {', '.join(SPEC_KEYS)}, got {spec!r}")
        unknown = [str(k) for k in spec if k not in SPEC_KEYS]
        if unknown:
            raise _spec_error(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(SPEC_KEYS)}")
        kwargs: dict[str, Any] = {}
        ra = _sub_mapping("randaugment", spec.get("randaugment"), tuple(RANDAUGMENT_DEFAULTS))
        if ra is not None:
            kwargs["randaugment_num_ops"] = ra.get("num_ops", RANDAUGMENT_DEFAULTS["num_ops"])
            kwargs["randaugment_magnitude"] = ra.get("magnitude", RANDAUGMENT_DEFAULTS["magnitude"])
        cj = _sub_mapping("color_jitter", spec.get("color_jitter"), JITTER_KEYS, " (hue is not implemented)")
        if cj is not None:
            kwargs.update({f"jitter_{k}": cj.get(k, 0.0) for k in JITTER_KEYS})
        er = _sub_mapping("random_erasing", spec.get("random_erasing"), tuple(ERASING_DEFAULTS))
        if er is not None:
            kwargs.update({f"erasing_{k}": er.get(k, v) for k, v in ERASING_DEFAULTS.items()})
        return cls(
            crop_padding=_parse_padding(spec.get("random_crop")),
            hflip=spec.get("hflip", False),
            rotation_degrees=spec.get("rotation", 0.0),
            mean=mean,
            std=std,
            **kwargs,
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
        if self.randaugment_num_ops:
            spec["randaugment"] = {
                "num_ops": self.randaugment_num_ops,
                "magnitude": self.randaugment_magnitude,
            }
        if self._jitter_on:
            spec["color_jitter"] = {k: getattr(self, f"jitter_{k}") for k in JITTER_KEYS}
        if self.erasing_p:
            spec["random_erasing"] = {
                "p": self.erasing_p,
                "scale": list(self.erasing_scale),
                "ratio": list(self.erasing_ratio),
                "value": self.erasing_value,
            }
        return spec

    @property
    def _jitter_on(self) -> bool:
        return bool(self.jitter_brightness or self.jitter_contrast or self.jitter_saturation)

    @property
    def is_identity(self) -> bool:
        return not (
            self.crop_padding or self.hflip or self.rotation_degrees or self.randaugment_num_ops
            or self._jitter_on or self.erasing_p
        )

    def _standardisation(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.mean is None:
            return None
        c = x.shape[1]
        if len(self.mean) != c:
            raise ValueError(f"mean/std have {len(self.mean)} channels but the batch has {c}")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
        return mean, std

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment the batch ``x`` (N, C, H, W); identity returns ``x`` itself, drawing nothing.

        Otherwise one seed is drawn from ``generator`` (CPU) and every random decision of the
        enabled steps comes from it (:func:`seeded_global_rng`), in the fixed step order; no
        draw depends on the data, only on N, C, H, W and the settings.
        """
        if self.is_identity:
            return x
        check_cpu_generator(generator)
        n, c, h, w = x.shape
        geometric, jitter, erasing = _kornia_steps(self, c, h, w)
        with seeded_global_rng(generator):
            for step in geometric:
                x = step(x)
            if self.randaugment_num_ops or jitter is not None:
                x = self._colour_steps(x, jitter)
            if erasing is not None:
                # kornia fills only values in [0, 1]; its rectangles are read off a ones mask and
                # filled with the spec's value in standardised units (pixels outside stay exact)
                kept = erasing(torch.ones(n, 1, h, w, dtype=x.dtype, device=x.device))
                x = x.masked_fill(kept == 0, self.erasing_value)
        return x

    def _colour_steps(self, x: torch.Tensor, jitter: nn.Module | None) -> torch.Tensor:
        """RandAugment then colour jitter on ``x * std + mean``, standardised back after.

        Samples left untouched (RandAugment drew Identity only, no jitter) are returned
        bit-for-bit rather than through the unstandardise/standardise round trip.
        """
        _check_colour_channels(x)
        n, _, h, w = x.shape
        touched = torch.ones(n, dtype=torch.bool)
        stats = self._standardisation(x)
        # [0, 1] pixels, as torchvision's float kernels take them (kornia's Equalize refuses
        # others); the clamp only removes the round trip's last-bit overshoot for real images
        p = (x if stats is None else x * stats[1] + stats[0]).clamp(0.0, 1.0)
        if self.randaugment_num_ops:
            ops, mags = randaugment_draws(n, self.randaugment_num_ops, self.randaugment_magnitude, h, w)
            p = rand_augment(p, ops, mags)
            touched = (ops != 0).any(dim=1)
        if jitter is not None:
            p = jitter(p)
            touched = torch.ones(n, dtype=torch.bool)
        out = p if stats is None else (p - stats[0]) / stats[1]
        if bool(touched.all()):
            return out
        return torch.where(touched.to(x.device)[:, None, None, None], out, x)


@functools.lru_cache(maxsize=64)
def _kornia_steps(aug: BatchAugment, channels: int, height: int, width: int
                  ) -> tuple[tuple[nn.Module, ...], nn.Module | None, nn.Module | None]:
    """kornia modules for one pipeline and image shape: (crop, flip, rotation), jitter, erasing.

    Built once per (pipeline, shape): kornia modules hold no learnt state, only their settings
    (and the parameters of their last call). Saturation is dropped for one-channel images.
    """
    geometric: list[nn.Module] = []
    if aug.crop_padding:
        geometric.append(K.RandomCrop((height, width), padding=aug.crop_padding, fill=0.0,
                                      padding_mode="constant", p=1.0))
    if aug.hflip:
        geometric.append(K.RandomHorizontalFlip(p=0.5))
    if aug.rotation_degrees:
        geometric.append(K.RandomRotation(aug.rotation_degrees, p=1.0))
    jitter = None
    saturation = aug.jitter_saturation if channels == 3 else 0.0
    if aug.jitter_brightness or aug.jitter_contrast or saturation:
        jitter = K.ColorJitter(brightness=aug.jitter_brightness, contrast=aug.jitter_contrast,
                               saturation=saturation, hue=0.0, p=1.0)
    erasing = None
    if aug.erasing_p:
        erasing = K.RandomErasing(scale=aug.erasing_scale, ratio=aug.erasing_ratio, value=0.0,
                                  p=aug.erasing_p)
    return tuple(geometric), jitter, erasing
