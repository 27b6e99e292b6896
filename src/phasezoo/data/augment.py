"""Batched, seeded data augmentation on whole (N, C, H, W) tensors (mini-batches come from
:mod:`phasezoo.data.batches`).

Augmentations run on the batch at once (gather / ``torch.where`` / ``grid_sample``), on
whatever device the batch lives on, with no per-sample Python loop. All random numbers are
drawn from a caller-supplied CPU ``torch.Generator`` *on the CPU* and only then moved to the
batch's device: the random decisions (crop offsets, flips, angles, RandAugment ops, jitter
factors, erasing rectangles) are therefore identical on CPU and GPU for the same generator
state, and the same seed reproduces the same batch. (Interpolation and reductions may still
differ between devices in the last float bits.)

Steps, in this fixed order: random crop, horizontal flip, rotation (the original three), then
RandAugment, colour jitter and random erasing (the "stronger" ViT recipe of the paper's
appendix A.2, Cubuk et al. 2019 for RandAugment). RandAugment and colour jitter are defined on
[0, 1] pixels, as torchvision's float-tensor kernels are; the batches arriving here are
standardised ``(pixel - mean[c]) / std[c]``, so :class:`BatchAugment` takes the dataset's
``mean``/``std`` and runs those two steps on ``x * std + mean``, standardising again after
(``mean``/``std`` None: the data are taken to be [0, 1] pixels already). Random erasing, like
torchvision's ``RandomErasing`` placed after ``Normalize``, works on the standardised values
(fill 0 = the train-mean colour).

Where the new steps differ from torchvision (details at each function): the random numbers are
drawn batched, so outputs match torchvision in distribution, not sample for sample; colour
jitter applies brightness, contrast, saturation in a fixed order (torchvision: a random order
per call) and has no hue; grey is ``0.299 R + 0.587 G + 0.114 B`` (PIL's weights; torchvision's
tensor kernel uses 0.2989); random erasing draws its 10 candidate rectangles at once and takes
the first that fits (torchvision: a retry loop, the same distribution) and fills a constant
only (no ``value="random"``); RandAugment has all 14 of torchvision's ops, run as float
kernels (no uint8 rounding as on PIL images), magnitudes computed in float64, a sign bit drawn
for every op slot, nearest interpolation (torchvision's default; the plain ``rotation`` step
stays bilinear), black fill, and Equalize leaves a nearly constant channel as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import torch
import torch.nn.functional as F

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
_GEOMETRIC = range(1, 6)  # ShearX .. Rotate: one grid_sample per op slot
_SIGNED = frozenset(range(1, 10))  # ShearX .. Sharpness take a random sign
RANDAUGMENT_BINS = 31  # torchvision's num_magnitude_bins default; magnitude in [0, 30]

ERASING_TRIES = 10  # candidate rectangles per sample, as torchvision's retry loop
ERASING_DEFAULTS = {"p": 0.5, "scale": (0.02, 0.33), "ratio": (0.3, 3.3), "value": 0.0}
JITTER_KEYS = ("brightness", "contrast", "saturation")
RANDAUGMENT_DEFAULTS = {"num_ops": 2, "magnitude": 9}

#: ITU-R BT.601 luma weights (what PIL's ``convert("L")`` uses; torchvision's tensor kernel
#: uses 0.2989 for red).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


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


# --------------------------------------------------------------------------- random erasing


def random_erasing_params(
    n: int,
    height: int,
    width: int,
    p: float,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample erasing rectangles ``(top, left, rect_h, rect_w)``, each (N,) int64 on the CPU.

    torchvision's ``RandomErasing.get_params`` for the whole batch. Draws, all float64
    ``rand`` from ``generator`` in this order: the coins (N,), then for ``ERASING_TRIES`` = 10
    candidates per sample the area (N, 10), the log aspect ratio (N, 10), the row (N, 10) and
    the column (N, 10). Candidate ``k`` has area ``A = H W (s0 + (s1 - s0) u)`` and aspect
    ``r = exp(log r0 + (log r1 - log r0) v)``, so ``rect_h = round(sqrt(A r))``,
    ``rect_w = round(sqrt(A / r))`` (half to even, like Python's ``round``); it fits when
    ``rect_h < H`` and ``rect_w < W`` (strict, as torchvision). torchvision retries up to 10
    times; here all 10 candidates are drawn at once and the *first that fits* is taken, which
    is the same distribution. Its corner is ``top = floor(u_row (H - rect_h + 1))``,
    ``left = floor(u_col (W - rect_w + 1))`` (uniform, torchvision's ``randint``). A sample is
    erased iff ``coin < p`` and some candidate fits (none fits: left as is, as torchvision);
    samples not erased get ``rect_h = rect_w = 0``.
    """
    s0, s1 = scale
    lr0, lr1 = math.log(ratio[0]), math.log(ratio[1])
    coin = torch.rand(n, generator=generator, dtype=torch.float64)
    u_area, u_ratio, u_top, u_left = (
        torch.rand(n, ERASING_TRIES, generator=generator, dtype=torch.float64) for _ in range(4)
    )
    area = height * width * (s0 + (s1 - s0) * u_area)
    aspect = torch.exp(lr0 + (lr1 - lr0) * u_ratio)
    rect_h = torch.round(torch.sqrt(area * aspect))
    rect_w = torch.round(torch.sqrt(area / aspect))
    fits = (rect_h < height) & (rect_w < width)
    first = fits.to(torch.int64).argmax(dim=1, keepdim=True)  # first True (0 when none fits)
    erased = (coin < p) & fits.any(dim=1)

    def pick(v: torch.Tensor) -> torch.Tensor:
        return torch.where(erased, v.gather(1, first).squeeze(1), 0.0).to(torch.int64)

    top = pick(torch.floor(u_top * (height - rect_h + 1)))
    left = pick(torch.floor(u_left * (width - rect_w + 1)))
    return top, left, pick(rect_h), pick(rect_w)


def erase(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, rect_h: torch.Tensor, rect_w: torch.Tensor,
    value: float,
) -> torch.Tensor:
    """Fill one rectangle per sample with ``value`` (all channels), via a mask, no loop.

    ``top``, ``left``, ``rect_h``, ``rect_w`` are (N,) int64 on ``x.device``:
    ``out[n, :, i, j] = value`` where ``top[n] <= i < top[n] + rect_h[n]`` and
    ``left[n] <= j < left[n] + rect_w[n]``, else ``x[n, :, i, j]``; a zero height or width
    leaves the sample unchanged.
    """
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + rect_h)[:, None])  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + rect_w)[:, None])  # (N, W)
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (N, 1, H, W)
    return x.masked_fill(mask, value)


# --------------------------------------------------------------------------- colour ops on [0, 1]
#
# These mirror torchvision's float-tensor kernels (transforms.v2.functional): pixels in [0, 1],
# every blend clamped to [0, 1]. A factor is a Python number (same for all samples) or an (N,)
# tensor (one per sample, any device; moved to the batch's device and dtype).


def _per_sample(value: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
    return torch.tensor(float(value), dtype=x.dtype, device=x.device)


def _check_colour_channels(x: torch.Tensor) -> None:
    if x.shape[1] not in (1, 3):
        raise ValueError(f"colour augmentations need 1 or 3 channels (grey or RGB), got {x.shape[1]}")


def grayscale(p: torch.Tensor) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` (ITU-R 601), (N, 1, H, W); a 1-channel image is itself."""
    _check_colour_channels(p)
    if p.shape[1] == 1:
        return p
    r, g, b = p.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(p: torch.Tensor, other: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    f = _per_sample(factor, p)
    return (f * p + (1.0 - f) * other).clamp(0.0, 1.0)


def adjust_brightness(p: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """``clamp(f p, 0, 1)``: a blend with black."""
    return (_per_sample(factor, p) * p).clamp(0.0, 1.0)


def adjust_contrast(p: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """``clamp(f p + (1 - f) m, 0, 1)``, ``m`` the image's mean grey (mean of :func:`grayscale`).

    Without clamping the mean grey is unchanged: ``gray`` is linear with weights summing to 1.
    """
    m = grayscale(p).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(p, m, factor)


def adjust_saturation(p: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """``clamp(f p + (1 - f) gray(p), 0, 1)`` for RGB; a 1-channel image is returned as it is."""
    _check_colour_channels(p)
    if p.shape[1] == 1:
        return p
    return _blend(p, grayscale(p), factor)


def adjust_sharpness(p: torch.Tensor, factor: float | torch.Tensor) -> torch.Tensor:
    """``clamp(f p + (1 - f) s, 0, 1)`` with ``s`` the smoothed image (PIL's SMOOTH filter).

    ``s`` is ``p`` convolved (per channel) with ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` on
    the interior and ``p`` itself on the one-pixel border; images with H or W <= 2 come back
    unchanged (torchvision).
    """
    c, h, w = p.shape[1:]
    if h <= 2 or w <= 2:
        return p
    kernel = torch.full((3, 3), 1.0 / 13.0, dtype=p.dtype, device=p.device)
    kernel[1, 1] = 5.0 / 13.0
    smooth = p.clone()
    smooth[:, :, 1:-1, 1:-1] = F.conv2d(p, kernel.expand(c, 1, 3, 3), groups=c)
    return _blend(p, smooth, factor)


def posterize(p: torch.Tensor, bits: float | torch.Tensor) -> torch.Tensor:
    """Keep ``b`` bits: ``min(floor(p 2^b), 2^b - 1) / 2^b`` (torchvision's float posterize)."""
    levels = torch.pow(2.0, _per_sample(bits, p))
    return torch.minimum((p * levels).floor().clamp(min=0.0), levels - 1.0) / levels


def solarize(p: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Invert the bright pixels: ``where(p >= t, 1 - p, p)``."""
    return torch.where(p >= _per_sample(threshold, p), 1.0 - p, p)


def autocontrast(p: torch.Tensor) -> torch.Tensor:
    """Stretch every channel of every image to [0, 1]: ``(p - lo) / (hi - lo)``.

    ``lo``/``hi`` are that channel's min/max over (H, W); a constant channel (``hi == lo``) is
    left as it is (only clamped to [0, 1]), as torchvision does.
    """
    lo = p.amin(dim=(2, 3), keepdim=True)
    hi = p.amax(dim=(2, 3), keepdim=True)
    flat = hi == lo
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    span = torch.where(flat, torch.ones_like(hi), hi - lo)
    return ((p - lo) / span).clamp(0.0, 1.0)


def equalize(p: torch.Tensor) -> torch.Tensor:
    """Histogram-equalise every channel of every image (PIL's scheme, as torchvision's kernel).

    Pixels are binned as torchvision converts float to uint8, ``u = floor(p * 255.999)`` in
    0..255. With ``cum[k]`` the number of the channel's pixels with ``u <= k`` and
    ``step = floor(#(u < max u) / 255)``: ``lut[0] = 0``,
    ``lut[k] = min(floor((cum[k-1] + floor(step / 2)) / step), 255)``, output ``lut[u] / 255``.
    A channel with ``step == 0`` (nearly constant) is returned unchanged (torchvision returns
    its uint8-quantised copy). The cumulative counts come from a sort and ``searchsorted``
    rather than a scatter-add histogram: no atomics, so deterministic on a GPU too.
    """
    n, c, h, w = p.shape
    u = (p.clamp(0.0, 1.0) * (256.0 - 1e-3)).to(torch.int64).view(n * c, h * w)
    srt = u.sort(dim=1).values
    levels = torch.arange(255, device=p.device).expand(n * c, 255).contiguous()
    cum = torch.searchsorted(srt, levels, right=True)  # cum[k] = #(u <= k), k = 0..254
    step = torch.searchsorted(srt, srt[:, -1:].contiguous()) // 255  # #(u < max u) // 255
    lut = ((cum + step // 2) // step.clamp(min=1)).clamp(max=255)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], dim=1)  # (N*C, 256)
    out = lut.gather(1, u).to(p.dtype).mul(1.0 / 255.0).view(n, c, h, w)
    return torch.where((step > 0).view(n, c, 1, 1), out, p)


def color_jitter(
    p: torch.Tensor,
    brightness: torch.Tensor | None = None,
    contrast: torch.Tensor | None = None,
    saturation: torch.Tensor | None = None,
) -> torch.Tensor:
    """Brightness, then contrast, then saturation (a fixed order), each with per-sample (N,)
    factors; a ``None`` factor skips that step. torchvision's ``ColorJitter`` draws a random
    order of its four steps per call (per image in a per-sample pipeline); the order here is
    always the same."""
    if brightness is not None:
        p = adjust_brightness(p, brightness)
    if contrast is not None:
        p = adjust_contrast(p, contrast)
    if saturation is not None:
        p = adjust_saturation(p, saturation)
    return p


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


def randaugment_theta(ops: torch.Tensor, magnitudes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per-sample ``affine_grid`` matrices (N, 2, 3), float64, for one RandAugment op slot.

    ``ops`` (N,) indices into :data:`RANDAUGMENT_OPS`, ``magnitudes`` (N,) signed. Each
    sample's inverse map (output location -> input location) in centred pixel coordinates
    (x right, y down, origin at the image centre, pixel ``j`` at ``j - (W - 1)/2``) is
    ``in = M out + t``, torchvision's ``F.affine``/``F.rotate`` inverse matrix:
    ShearX m: ``M = [[1, m], [0, 1]]``, ``t = (m H/2, 0)`` (shear about the top-left corner,
    ``center=[0, 0]``); ShearY m: ``M = [[1, 0], [m, 1]]``, ``t = (0, m W/2)``; TranslateX d:
    ``t = (-d, 0)`` (the image moves right for d > 0); TranslateY d: ``t = (0, -d)``; Rotate a
    degrees counter-clockwise: ``M = [[cos a, -sin a], [sin a, cos a]]``, ``t = 0``; any other
    op: the identity. In ``affine_grid``'s normalised coordinates (align_corners=False) this is
    ``theta = [[M00, M01 H/W, 2 tx/W], [M10 W/H, M11, 2 ty/H]]``.
    """
    m = magnitudes.to(torch.float64)
    zero = torch.zeros_like(m)
    rad = torch.where(ops == 5, m, zero) * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    m01 = torch.where(ops == 1, m, -sin)
    m10 = torch.where(ops == 2, m, sin)
    tx = torch.where(ops == 1, m * (height / 2), torch.where(ops == 3, -m, zero))
    ty = torch.where(ops == 2, m * (width / 2), torch.where(ops == 4, -m, zero))
    return torch.stack(
        [
            torch.stack([cos, m01 * (height / width), tx * (2.0 / width)], dim=1),
            torch.stack([m10 * (width / height), cos, ty * (2.0 / height)], dim=1),
        ],
        dim=1,
    )


# Photometric ops: index into RANDAUGMENT_OPS -> kernel(p, per-sample signed magnitudes).
_PHOTOMETRIC = {
    6: lambda p, m: adjust_brightness(p, 1.0 + m),
    7: lambda p, m: adjust_saturation(p, 1.0 + m),
    8: lambda p, m: adjust_contrast(p, 1.0 + m),
    9: lambda p, m: adjust_sharpness(p, 1.0 + m),
    10: posterize,
    11: solarize,
    12: lambda p, m: autocontrast(p),
    13: lambda p, m: equalize(p),
}


def rand_augment(p: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """Apply RandAugment op slots to [0, 1] pixels ``p`` (N, C, H, W), C = 1 or 3.

    ``ops`` (N, S) int64 and ``magnitudes`` (N, S) float64, both on the CPU: sample ``n`` gets
    op ``ops[n, 0]`` with signed magnitude ``magnitudes[n, 0]`` (units of
    :func:`randaugment_magnitudes`), then ``ops[n, 1]``, ... Per slot: one ``affine_grid`` +
    ``grid_sample`` over the whole batch (nearest, torchvision's RandAugment default; zeros =
    black outside, torchvision's ``fill=None``; align_corners=False) with the matrices of
    :func:`randaugment_theta` (identity for samples without a geometric op), kept by
    ``torch.where`` only for the samples that drew a geometric op; then each photometric op on
    the samples that drew it: their indices come from the CPU mask ``ops[:, s] == k``, so
    ``index_select`` -> op -> ``index_copy`` needs no device synchronisation and each sample
    goes through one photometric kernel per slot instead of nine masked whole-batch ones.
    Ops that no sample drew in a slot are skipped. A sample that drew only Identity comes back
    bit-for-bit.
    """
    _check_colour_channels(p)
    n, c, h, w = p.shape
    dev = p.device
    p_in = p
    for s in range(ops.shape[1]):
        op, mag = ops[:, s], magnitudes[:, s].to(torch.float64)
        geo = (op >= _GEOMETRIC.start) & (op < _GEOMETRIC.stop)
        if bool(geo.any()):
            theta = randaugment_theta(op, torch.where(geo, mag, 0.0), h, w).to(device=dev, dtype=p.dtype)
            grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
            warped = F.grid_sample(p, grid, mode="nearest", padding_mode="zeros", align_corners=False)
            p = torch.where(geo.to(dev)[:, None, None, None], warped, p)
        photometric = (op >= min(_PHOTOMETRIC)) & (op <= max(_PHOTOMETRIC))
        if bool(photometric.any()) and p is p_in:
            p = p.clone()  # written in place below; never the caller's tensor
        for k, kernel in _PHOTOMETRIC.items():
            idx = (op == k).nonzero().squeeze(1)  # CPU
            if len(idx):
                idx_dev = idx.to(dev)
                p.index_copy_(0, idx_dev, kernel(p.index_select(0, idx_dev), mag[idx]))
    return p


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
    (0 = off). ``hflip``: mirror each sample with probability 1/2. ``rotation_degrees``: rotate
    each sample by an angle uniform in ``[-deg, deg]`` (0 = off). The data are already
    standardised, so "zero" padding (crop, and the corners a rotation uncovers) is the
    train-mean colour rather than black; that is the usual, accepted convention.

    ``randaugment_num_ops`` (0 = off) ops per sample, each drawn uniformly from the 14 of
    :data:`RANDAUGMENT_OPS` (all of torchvision's RandAugment ops) at bin
    ``randaugment_magnitude`` of 31 (see :func:`rand_augment`; geometric ops fill black pixels,
    torchvision's default, not the mean colour). ``jitter_brightness``/``_contrast``/
    ``_saturation`` = ``b``: per-sample factors uniform in ``[max(0, 1 - b), 1 + b]``, applied
    in that order (:func:`color_jitter`; 0 = that step off; hue is not implemented). These two
    steps work on [0, 1] pixels: with ``mean``/``std`` (the dataset's per-channel statistics)
    the batch is mapped to ``x * std + mean``, augmented, and standardised back; without, the
    batch is taken to be [0, 1] pixels. ``erasing_p`` (0 = off): with this probability a sample
    gets one rectangle of area fraction in ``erasing_scale`` and aspect ratio (height / width)
    in ``erasing_ratio`` filled with ``erasing_value`` in the batch's own (standardised) units,
    so 0 is the mean colour (:func:`random_erasing_params`).

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

        Draw order from ``generator`` (CPU), only for enabled steps: crop offsets
        ``randint(0, 2p+1, (N, 2))``, flip coins ``rand(N) < 0.5``, angles
        ``(2 rand(N) - 1) * deg``; RandAugment ops ``randint(0, 14, (N, num_ops))`` then sign
        bits ``randint(0, 2, (N, num_ops))`` (1 = negative, used by signed ops only; drawn for
        every slot so the count is fixed); jitter factors ``lo + (hi - lo) rand(N)`` for
        brightness, contrast, saturation (only the non-zero ones, in that order); erasing
        draws as in :func:`random_erasing_params`. All ``rand`` here are float64. Keeping this
        order fixed is what makes a seed reproducible. Nothing is drawn from torch's global
        generator, and no draw depends on the data, only on N, H, W and the settings.
        """
        if self.is_identity:
            return x
        check_cpu_generator(generator)
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
        if self.randaugment_num_ops or self._jitter_on:
            x = self._colour_steps(x, generator)
        if self.erasing_p:
            h, w = x.shape[-2:]
            rects = random_erasing_params(
                n, h, w, self.erasing_p, self.erasing_scale, self.erasing_ratio, generator
            )
            x = erase(x, *(r.to(x.device) for r in rects), self.erasing_value)
        return x

    def _colour_steps(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """RandAugment then colour jitter on ``x * std + mean``, standardised back after.

        Samples left untouched (RandAugment drew Identity only, no jitter) are returned
        bit-for-bit rather than through the unstandardise/standardise round trip.
        """
        _check_colour_channels(x)
        n, _, h, w = x.shape
        touched = torch.ones(n, dtype=torch.bool)
        ops = mags = None
        if self.randaugment_num_ops:
            k = self.randaugment_num_ops
            ops = torch.randint(0, len(RANDAUGMENT_OPS), (n, k), generator=generator)
            negative = torch.randint(0, 2, (n, k), generator=generator) == 1
            table = torch.tensor(
                randaugment_magnitudes(self.randaugment_magnitude, h, w), dtype=torch.float64
            )
            signed = torch.tensor([i in _SIGNED for i in range(len(RANDAUGMENT_OPS))])
            mags = torch.where(signed[ops] & negative, -table[ops], table[ops])
            touched = (ops != 0).any(dim=1)
        factors: dict[str, torch.Tensor] = {}
        for key in JITTER_KEYS:
            b = getattr(self, f"jitter_{key}")
            if b:
                lo, hi = max(0.0, 1.0 - b), 1.0 + b
                factors[key] = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
        if factors:
            touched = torch.ones(n, dtype=torch.bool)
        stats = self._standardisation(x)
        p = x if stats is None else x * stats[1] + stats[0]
        if ops is not None:
            p = rand_augment(p, ops, mags)
        p = color_jitter(p, **factors)
        out = p if stats is None else (p - stats[0]) / stats[1]
        if bool(touched.all()):
            return out
        return torch.where(touched.to(x.device)[:, None, None, None], out, x)
