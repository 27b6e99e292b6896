"""Batched augmentation and batch iteration: exact semantics on known images, seeded determinism.

The kernels are kornia's; the references here are written from torchvision's / PIL's formulas
(closed forms on constructed images), so they check kornia and our glue (op table, signs,
factor ranges, standardisation) together."""

from __future__ import annotations

import pytest
import torch

from phasezoo.data import BatchAugment, iterate_batches
from phasezoo.data.augment import RANDAUGMENT_OPS, rand_augment, randaugment_draws, randaugment_magnitudes
from phasezoo.errors import PhaseZooError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pattern(n: int = 64, c: int = 2, h: int = 6, w: int = 7) -> torch.Tensor:
    """Every pixel distinct and non-zero, so any shift/flip is identifiable (zeros = padding)."""
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).view(n, c, h, w)


def shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """img translated by (dy, dx): out[i, j] = img[i - dy, j - dx], zeros where uncovered."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


# --------------------------------------------------------------------------- spec


@pytest.mark.parametrize("spec", [None, {}, {"hflip": False, "rotation": 0, "random_crop": {"padding": 0}}])
def test_identity_returns_input_and_draws_nothing(spec):
    aug = BatchAugment.from_spec(spec)
    assert aug.is_identity and aug.to_spec() == {}
    g = gen(0)
    state = g.get_state()
    x = pattern()
    assert aug(x, g) is x
    assert torch.equal(g.get_state(), state)


def test_spec_round_trip_and_fields():
    spec = {"random_crop": {"padding": 4}, "hflip": True, "rotation": 20}
    aug = BatchAugment.from_spec(spec)
    assert (aug.crop_padding, aug.hflip, aug.rotation_degrees) == (4, True, 20.0)
    assert aug.to_spec() == {"random_crop": {"padding": 4}, "hflip": True, "rotation": 20.0}
    assert BatchAugment.from_spec(aug.to_spec()) == aug
    assert BatchAugment.from_spec({"random_crop": 2}).crop_padding == 2


@pytest.mark.parametrize(
    "spec",
    [
        {"cutout": 8},
        {"random_crop": {"padding": 4, "size": 32}},
        {"random_crop": {"padding": -1}},
        {"random_crop": {"padding": 2.5}},
        {"hflip": "yes"},
        {"rotation": -5},
        {"rotation": 270},
        {"rotation": True},
        ["hflip"],
    ],
)
def test_bad_spec_is_one_line_phasezoo_error(spec):
    with pytest.raises(PhaseZooError) as err:
        BatchAugment.from_spec(spec)
    assert "\n" not in str(err.value) and "augmentation spec" in str(err.value)


def test_unknown_key_names_valid_keys():
    with pytest.raises(PhaseZooError, match="cutout.*random_crop, hflip, rotation"):
        BatchAugment.from_spec({"cutout": 8})


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_output_other_seed_differs():
    aug = BatchAugment.from_spec({"random_crop": {"padding": 2}, "hflip": True, "rotation": 15})
    x = torch.rand(32, 3, 8, 8, generator=gen(123))
    a, b, c = aug(x, gen(7)), aug(x, gen(7)), aug(x, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_generator_must_be_a_cpu_generator():
    with pytest.raises(ValueError):
        BatchAugment(hflip=True)(pattern(), None)


# --------------------------------------------------------------------------- crop


def test_random_crop_output_is_a_shifted_copy():
    p = 2
    x = pattern()
    out = BatchAugment.from_spec({"random_crop": {"padding": p}})(x, gen(0))
    shifts = []
    for n in range(x.shape[0]):
        matches = [
            (dy, dx)
            for dy in range(-p, p + 1)
            for dx in range(-p, p + 1)
            if torch.equal(out[n], shifted(x[n], dy, dx))
        ]
        assert len(matches) == 1, f"sample {n} is not a translated copy of its input"
        shifts.append(matches[0])
    assert len(set(shifts)) >= 10  # 25 possible shifts, 64 samples: offsets really vary


# --------------------------------------------------------------------------- flip


def test_hflip_samples_are_original_or_mirrored():
    x = pattern()
    out = BatchAugment(hflip=True)(x, gen(3))
    same = [torch.equal(out[n], x[n]) for n in range(len(x))]
    flipped = [torch.equal(out[n], x[n].flip(-1)) for n in range(len(x))]
    assert all(s != f for s, f in zip(same, flipped))  # exactly one of the two
    assert 10 < sum(flipped) < 54  # p = 0.5 over 64 samples


# --------------------------------------------------------------------------- rotation


def test_rotation_by_a_tiny_angle_is_nearly_identity():
    x = torch.rand(4, 3, 9, 9, generator=gen(2))
    out = BatchAugment(rotation_degrees=1e-4)(x, gen(0))
    torch.testing.assert_close(out, x, atol=1e-4, rtol=0)


def test_random_rotation_preserves_shape_and_centre():
    x = torch.ones(16, 3, 9, 9)
    out = BatchAugment(rotation_degrees=30)(x, gen(6))
    assert out.shape == x.shape
    torch.testing.assert_close(out[:, :, 4, 4], torch.ones(16, 3))  # centre pixel is fixed
    # corners leave the image for non-zero angles and are filled with zeros (partly)
    assert float(out[:, :, 0, 0].min()) < 0.9
    # the angles vary from sample to sample: the corner pixel takes many values
    assert len(set(out[:, 0, 0, 0].tolist())) > 8


# --------------------------------------------------------------------------- batches


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (9, 3), (5, 8), (1, 1)])
def test_iterate_batches_covers_each_index_once(n, batch_size):
    x, y = torch.arange(n).float().view(n, 1), torch.arange(n) * 10
    batches = list(iterate_batches(x, y, batch_size, generator=gen(0)))
    sizes = [len(xb) for xb, _ in batches]
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    seen = torch.cat([xb.view(-1) for xb, _ in batches]).long()
    assert sorted(seen.tolist()) == list(range(n))
    for xb, yb in batches:
        assert torch.equal(yb, xb.view(-1).long() * 10)  # x and y stay paired


def test_iterate_batches_order_depends_on_seed_only():
    x, y = torch.arange(100).view(100, 1), torch.arange(100)

    def order(seed):
        return torch.cat([yb for _, yb in iterate_batches(x, y, 16, generator=gen(seed))]).tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1) != list(range(100))


def test_iterate_batches_without_shuffle_is_in_order():
    x, y = torch.arange(7).view(7, 1), torch.arange(7)
    batches = list(iterate_batches(x, y, 3, shuffle=False))
    assert [yb.tolist() for _, yb in batches] == [[0, 1, 2], [3, 4, 5], [6]]


def test_iterate_batches_checks_arguments_when_called():
    x, y = torch.zeros(4, 1), torch.zeros(4)
    with pytest.raises(ValueError):
        iterate_batches(x, y, 0)
    with pytest.raises(ValueError):
        iterate_batches(x, torch.zeros(3), 2)


# --------------------------------------------------------------------------- stronger recipe: spec

STRONG = {
    "randaugment": {"num_ops": 2, "magnitude": 9},
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4},
    "random_erasing": {"p": 0.25, "scale": [0.02, 0.33], "ratio": [0.3, 3.3], "value": 0},
}
CIFAR_MEAN, CIFAR_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)


def pixels(n: int = 32, c: int = 3, h: int = 8, w: int = 8, lo: float = 0.0, hi: float = 1.0, seed: int = 0):
    return lo + (hi - lo) * torch.rand(n, c, h, w, generator=gen(seed))


def test_new_keys_round_trip_and_fields():
    aug = BatchAugment.from_spec({"random_crop": {"padding": 4}, "hflip": True, **STRONG})
    assert (aug.randaugment_num_ops, aug.randaugment_magnitude) == (2, 9)
    assert (aug.jitter_brightness, aug.jitter_contrast, aug.jitter_saturation) == (0.4, 0.4, 0.4)
    assert (aug.erasing_p, aug.erasing_scale, aug.erasing_ratio, aug.erasing_value) == (
        0.25, (0.02, 0.33), (0.3, 3.3), 0.0)
    assert aug.to_spec() == {"random_crop": {"padding": 4}, "hflip": True, **STRONG}
    assert BatchAugment.from_spec(aug.to_spec()) == aug
    # missing sub-keys take torchvision's defaults; the canonical spec spells them out
    short = BatchAugment.from_spec({"randaugment": {}, "color_jitter": {"contrast": 0.2}, "random_erasing": {}})
    assert short.to_spec() == {
        "randaugment": {"num_ops": 2, "magnitude": 9},
        "color_jitter": {"brightness": 0.0, "contrast": 0.2, "saturation": 0.0},
        "random_erasing": {"p": 0.5, "scale": [0.02, 0.33], "ratio": [0.3, 3.3], "value": 0.0},
    }
    assert BatchAugment.from_spec(short.to_spec()) == short


def test_from_spec_takes_dataset_statistics():
    aug = BatchAugment.from_spec(STRONG, mean=CIFAR_MEAN, std=list(CIFAR_STD))
    assert (aug.mean, aug.std) == (CIFAR_MEAN, CIFAR_STD)
    assert "mean" not in aug.to_spec()
    assert BatchAugment.from_spec(aug.to_spec(), mean=CIFAR_MEAN, std=CIFAR_STD) == aug
    assert BatchAugment.from_spec(None, mean=(0.5,), std=(0.2,)).is_identity
    with pytest.raises(ValueError):
        BatchAugment.from_spec(STRONG, mean=CIFAR_MEAN)  # std missing
    with pytest.raises(ValueError):
        BatchAugment.from_spec(STRONG, mean=CIFAR_MEAN, std=(0.2, 0.2))
    with pytest.raises(ValueError):
        BatchAugment.from_spec(STRONG, mean=CIFAR_MEAN, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="channels"):
        BatchAugment.from_spec(STRONG, mean=(0.5,), std=(0.2,))(pixels(), gen(0))


@pytest.mark.parametrize(
    "spec",
    [
        {"randaugment": {"num_ops": 0, "magnitude": 20}},
        {"randaugment": None},
        {"color_jitter": {"brightness": 0, "contrast": 0.0, "saturation": 0}},
        {"color_jitter": {}},
        {"random_erasing": {"p": 0, "scale": [0.1, 0.2], "value": 3}},
        {"random_erasing": False},
    ],
)
def test_new_steps_off_are_identity_and_canonical(spec):
    aug = BatchAugment.from_spec(spec)
    assert aug.is_identity and aug.to_spec() == {} and aug == BatchAugment()
    g, x = gen(0), pixels()
    state = g.get_state()
    assert aug(x, g) is x
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize(
    "spec",
    [
        {"randaugment": 2},
        {"randaugment": {"num_ops": 2, "magnitude": 9, "bins": 31}},
        {"randaugment": {"num_ops": -1}},
        {"randaugment": {"num_ops": 1.5}},
        {"randaugment": {"num_ops": True}},
        {"randaugment": {"magnitude": 31}},
        {"randaugment": {"magnitude": -1}},
        {"randaugment": {"magnitude": 9.5}},
        {"color_jitter": 0.4},
        {"color_jitter": {"hue": 0.1}},
        {"color_jitter": {"brightness": -0.1}},
        {"color_jitter": {"contrast": "0.4"}},
        {"color_jitter": {"saturation": True}},
        {"color_jitter": {"brightness": float("inf")}},
        {"random_erasing": [0.25]},
        {"random_erasing": {"prob": 0.25}},
        {"random_erasing": {"p": 1.5}},
        {"random_erasing": {"p": -0.1}},
        {"random_erasing": {"scale": [0.5, 0.2]}},
        {"random_erasing": {"scale": [0.1, 2.0]}},
        {"random_erasing": {"scale": 0.3}},
        {"random_erasing": {"scale": "ab"}},
        {"random_erasing": {"scale": [0.1, 0.2, 0.3]}},
        {"random_erasing": {"ratio": [0.0, 1.0]}},
        {"random_erasing": {"ratio": [3.0, 1.0]}},
        {"random_erasing": {"value": "random"}},
        {"random_erasing": {"value": float("nan")}},
    ],
)
def test_bad_new_spec_is_one_line_phasezoo_error(spec):
    with pytest.raises(PhaseZooError) as err:
        BatchAugment.from_spec(spec)
    assert "\n" not in str(err.value) and "augmentation spec" in str(err.value)


def test_unknown_sub_key_names_valid_keys():
    with pytest.raises(PhaseZooError, match="random_erasing: unknown key.*prob.*p, scale, ratio, value"):
        BatchAugment.from_spec({"random_erasing": {"prob": 0.5}})
    with pytest.raises(PhaseZooError, match="hue.*brightness, contrast, saturation.*hue is not implemented"):
        BatchAugment.from_spec({"color_jitter": {"hue": 0.1}})


# --------------------------------------------------------------------------- stronger recipe: determinism


@pytest.mark.parametrize("spec", [{k: v} for k, v in STRONG.items()] + [STRONG], ids=[*STRONG, "all"])
def test_new_steps_are_seeded_and_use_only_the_given_generator(spec):
    aug = BatchAugment.from_spec(spec, mean=CIFAR_MEAN, std=CIFAR_STD)
    x = torch.randn(48, 3, 8, 8, generator=gen(123))
    rng_state = torch.get_rng_state()
    a, b, c = aug(x, gen(7)), aug(x, gen(7)), aug(x, gen(8))
    assert torch.equal(torch.get_rng_state(), rng_state)  # torch's global generator untouched
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert aug(x.double(), gen(7)).dtype == torch.float64
    # the draws depend on N, H, W and the settings only, never on the data: the generator ends
    # in the same state for another batch, so the decisions cannot depend on the device either
    g1, g2 = gen(7), gen(7)
    aug(x, g1)
    aug(torch.randn(48, 3, 8, 8, generator=gen(5)) * 3, g2)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_colour_steps_need_one_or_three_channels():
    for spec in ({"randaugment": {}}, {"color_jitter": {"brightness": 0.4}}):
        with pytest.raises(ValueError, match="1 or 3 channels"):
            BatchAugment.from_spec(spec)(pattern(c=2), gen(0))


# --------------------------------------------------------------------------- random erasing


def erased_mask(out: torch.Tensor, value: float) -> torch.Tensor:
    """(N, H, W) True where every channel equals ``value`` (inputs never contain it)."""
    return (out == value).all(dim=1)


def test_erasing_probability_matches_p():
    x = pixels(2000, 3, 16, 16, lo=1.0, hi=2.0)
    out = BatchAugment.from_spec({"random_erasing": {"p": 0.25}})(x, gen(1))
    erased = erased_mask(out, 0.0).flatten(1).any(dim=1)
    assert abs(erased.float().mean().item() - 0.25) < 0.05
    assert torch.equal(out[~erased], x[~erased])  # the others are untouched


def test_erased_region_is_one_rectangle_within_scale_and_ratio():
    h = w = 32
    scale, ratio, value = (0.05, 0.25), (0.5, 2.0), -1.5
    x = pixels(300, 3, h, w, lo=1.0, hi=2.0, seed=2)
    aug = BatchAugment.from_spec({"random_erasing": {"p": 1.0, "scale": list(scale), "ratio": list(ratio),
                                                     "value": value}})
    out = aug(x, gen(3))
    mask = erased_mask(out, value)
    assert torch.equal(out.masked_fill(mask[:, None], 0), x.masked_fill(mask[:, None], 0))
    for m in mask:
        rows, cols = m.any(dim=1).nonzero(), m.any(dim=0).nonzero()
        rh, rw = len(rows), len(cols)
        assert int(m.sum()) == rh * rw  # a full rectangle, all channels
        assert rh == int(rows[-1] - rows[0]) + 1 and rw == int(cols[-1] - cols[0]) + 1
        # rh = round(sqrt(A r)), rw = round(sqrt(A / r)) with A / (H W) in scale and r in ratio,
        # so A lies in [(rh - 1/2)(rw - 1/2), (rh + 1/2)(rw + 1/2)]
        # and r in [(rh - 1/2) / (rw + 1/2), (rh + 1/2) / (rw - 1/2)]
        assert (rh + 0.5) * (rw + 0.5) >= scale[0] * h * w and (rh - 0.5) * (rw - 0.5) <= scale[1] * h * w
        assert (rh + 0.5) / (rw - 0.5) >= ratio[0] and (rh - 0.5) / (rw + 0.5) <= ratio[1]
    areas = mask.flatten(1).sum(1).float() / (h * w)
    assert areas.std() > 0.02  # the sizes really vary


# --------------------------------------------------------------------------- colour jitter


# torchvision's float formulas, written out as references (pixels in [0, 1])


def grey(p: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, (N, 1, H, W)."""
    r, g, b = p.unbind(1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def ref_brightness(p, f):
    return (f * p).clamp(0, 1)


def ref_contrast(p, f):
    m = grey(p).mean(dim=(1, 2, 3), keepdim=True)
    return (f * p + (1 - f) * m).clamp(0, 1)


def ref_saturation(p, f):
    return (f * p + (1 - f) * grey(p)).clamp(0, 1)


def ref_sharpness(p, f):
    """Blend with PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13), border kept."""
    c = p.shape[1]
    kernel = torch.full((3, 3), 1 / 13)
    kernel[1, 1] = 5 / 13
    smooth = p.clone()
    smooth[:, :, 1:-1, 1:-1] = torch.nn.functional.conv2d(p, kernel.expand(c, 1, 3, 3), groups=c)
    return (f * p + (1 - f) * smooth).clamp(0, 1)


def ref_posterize(p, bits):
    """PIL's posterize of the image's uint8 levels floor(255 p); 8 bits: the image itself."""
    if bits == 8:
        return p
    return (p * 255).to(torch.uint8).bitwise_and(256 - 2 ** (8 - bits)).float() / 255


def ref_autocontrast(p):
    lo, hi = p.amin(dim=(2, 3), keepdim=True), p.amax(dim=(2, 3), keepdim=True)
    return ((p - lo) / (hi - lo)).clamp(0, 1)


def per_sample_factor(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The per-sample f with out = f x (least squares), checking that out is such a multiple."""
    o, v = out.flatten(1).double(), x.flatten(1).double()
    f = (o * v).sum(1) / (v * v).sum(1)
    torch.testing.assert_close(o, f[:, None] * v, atol=1e-5, rtol=0)
    return f.float()


def test_brightness_factors_are_uniform_in_torchvision_range():
    x = torch.full((2000, 3, 4, 4), 0.5)
    f = per_sample_factor(BatchAugment.from_spec({"color_jitter": {"brightness": 0.4}})(x, gen(5)), x)
    assert 0.6 <= f.min() and f.max() <= 1.4
    # uniform on [0.6, 1.4]: mean 1, std 0.8 / sqrt(12) = 0.231 (2000 samples: SE 0.005)
    assert abs(f.mean() - 1.0) < 0.025 and abs(f.std() - 0.231) < 0.02
    # standardised data: the same pixel-space multiples, x_std = (0.5 f - mean) / std
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    aug = BatchAugment.from_spec({"color_jitter": {"brightness": 0.4}}, mean=CIFAR_MEAN, std=CIFAR_STD)
    g = per_sample_factor(aug((x - mean) / std, gen(5)) * std + mean, x)
    torch.testing.assert_close(g, f, atol=1e-5, rtol=0)  # the same seed, the same draws


def test_contrast_keeps_the_mean_grey_of_a_colour_image():
    x = pixels(64, 3, 8, 8, lo=0.3, hi=0.7, seed=6)
    out = BatchAugment.from_spec({"color_jitter": {"contrast": 0.4}})(x, gen(6))
    m = grey(x).mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(grey(out).mean(dim=(1, 2, 3), keepdim=True), m, atol=1e-5, rtol=0)
    f = per_sample_factor(out - m, x - m)  # (x - m) f + m, one f per sample
    assert 0.6 <= f.min() and f.max() <= 1.4 and f.std() > 0.1


def test_saturation_keeps_grey_and_is_identity_on_one_channel():
    x = pixels(32, 3, 6, 6, lo=0.4, hi=0.6, seed=7)
    out = BatchAugment.from_spec({"color_jitter": {"saturation": 0.4}})(x, gen(7))
    torch.testing.assert_close(grey(out), grey(x), atol=1e-5, rtol=0)
    f = per_sample_factor(out - grey(x), x - grey(x))
    assert 0.6 <= f.min() and f.max() <= 1.4 and f.std() > 0.1
    mono = pixels(32, 1, 6, 6, seed=8)
    assert torch.equal(BatchAugment.from_spec({"color_jitter": {"saturation": 0.9}})(mono, gen(7)), mono)


def test_jitter_with_all_three_steps_stays_in_range_and_varies():
    x = pixels(200, 3, 5, 5, seed=9)
    aug = BatchAugment.from_spec({"color_jitter": {"brightness": 0.5, "contrast": 1.5, "saturation": 0.3}})
    out = aug(x, gen(10))
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, x)
    # every sample is changed, by its own factors
    assert (out != x).flatten(1).any(dim=1).all()
    assert len({round(float(v), 4) for v in (out - x).flatten(1).mean(1)}) > 150


# --------------------------------------------------------------------------- RandAugment


def test_randaugment_magnitudes_follow_torchvision_at_bin_9_and_30():
    m9 = randaugment_magnitudes(9, 32, 32)
    torch.testing.assert_close(torch.tensor(m9, dtype=torch.float64), torch.tensor(
        [0, 0.09, 0.09, 4, 4, 9, 0.27, 0.27, 0.27, 0.27, 7, 0.7, 0, 0], dtype=torch.float64))
    m30 = dict(zip(RANDAUGMENT_OPS, randaugment_magnitudes(30, 32, 64)))
    assert (m30["TranslateX"], m30["TranslateY"], m30["Rotate"], m30["Posterize"]) == (29.0, 14.0, 30.0, 4.0)
    assert m30["Solarize"] == 0.0 and m30["ShearX"] == pytest.approx(0.3) and m30["Color"] == pytest.approx(0.9)


def sheared(img: torch.Tensor, m: float, axis: str) -> torch.Tensor:
    """Nearest-neighbour shear about the top-left pixel (kornia's ``shear``; torchvision shears
    the other way about the corner half a pixel off, which the random sign makes the same
    distribution): ShearX: out[i, j] = img[i, round(j - m i)]; ShearY: out[i, j] = img[round(i - m j), j]."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    for i in range(h):
        for j in range(w):
            si, sj = (i, round(j - m * i)) if axis == "x" else (round(i - m * j), j)
            if 0 <= si < h and 0 <= sj < w:
                out[..., i, j] = img[..., si, sj]
    return out


def test_rand_augment_applies_each_sample_its_own_op():
    img = torch.rand(3, 16, 16, generator=gen(11))  # >= 256 pixels, so Equalize does act
    x = img.expand(14, 3, 16, 16).contiguous()
    # shears of 0.22: j - 0.22 i is never within 0.04 of a rounding tie on 16 x 16
    mags = [0.0, 0.22, -0.22, 2.0, -1.0, 90.0, 0.5, -0.5, 0.3, 0.8, 3.0, 0.5, 0.0, 0.0]
    out = rand_augment(x, torch.arange(14).view(14, 1), torch.tensor(mags, dtype=torch.float64).view(14, 1))
    one = img[None]
    expected = [
        one,
        sheared(one, 0.22, "x"),
        sheared(one, -0.22, "y"),
        shifted(one, 0, 2),  # TranslateX +2: the image moves right
        shifted(one, -1, 0),  # TranslateY -1: up
        torch.rot90(one, 1, dims=(2, 3)),  # Rotate +90: counter-clockwise
        ref_brightness(one, 1.5),
        ref_saturation(one, 0.5),
        ref_contrast(one, 1.3),
        ref_sharpness(one, 1.8),
        ref_posterize(one, 3),
        torch.where(one >= 0.5, 1 - one, one),  # Solarize at threshold 0.5
        ref_autocontrast(one),
        torch.stack([equalize_reference(ch) for ch in img])[None],
    ]
    for k, (got, want) in enumerate(zip(out, expected)):
        # Equalize and Posterize bin to uint8 levels: a pixel on a bin edge may land one level off
        atol = 1 / 255 + 1e-6 if RANDAUGMENT_OPS[k] in ("Equalize", "Posterize") else 1e-5
        torch.testing.assert_close(got[None], want, atol=atol, rtol=0, msg=f"op {RANDAUGMENT_OPS[k]}")
        if atol > 1e-5:
            assert (got[None] - want).abs().gt(1e-5).float().mean() < 0.01, RANDAUGMENT_OPS[k]
    assert torch.equal(out[0], img)  # Identity is bit-exact
    assert len({tuple(o.flatten().tolist()) for o in out}) == 14  # fourteen different results


def test_rand_augment_at_magnitude_zero():
    img = torch.rand(3, 8, 8, generator=gen(12)) * 0.999
    x = img.expand(14, 3, 8, 8).contiguous()
    mags = torch.tensor(randaugment_magnitudes(0, 8, 8), dtype=torch.float64).view(14, 1)
    out = rand_augment(x, torch.arange(14).view(14, 1), mags)
    for k in range(12):  # all but AutoContrast and Equalize have a neutral magnitude 0 ...
        # ... Posterize keeps all 8 bits of the uint8 image, Solarize at threshold 1 inverts nothing
        want = ref_posterize(img[None], 8)[0] if RANDAUGMENT_OPS[k] == "Posterize" else img
        torch.testing.assert_close(out[k], want, atol=1e-5, rtol=0, msg=RANDAUGMENT_OPS[k])


def test_randaugment_draws_follow_torchvision_per_image():
    torch.manual_seed(3)
    ops, mags = randaugment_draws(4000, 2, 9, 32, 32)
    assert ops.shape == mags.shape == (4000, 2) and mags.dtype == torch.float64
    counts = torch.bincount(ops.flatten(), minlength=14).float()
    assert counts.min() > 8000 / 14 * 0.8 and counts.max() < 8000 / 14 * 1.2  # uniform over 14 ops
    table = torch.tensor(randaugment_magnitudes(9, 32, 32), dtype=torch.float64)
    torch.testing.assert_close(mags.abs(), table[ops])
    signed = (ops >= 1) & (ops <= 9)
    assert (mags[~signed] >= 0).all()
    negative = (mags[signed & (table[ops] > 0)] < 0).float().mean()
    assert abs(negative - 0.5) < 0.03  # a fair sign for ShearX .. Sharpness
    # per image: the two slots and the samples differ (kornia's RandAugment would not)
    assert len({tuple(r) for r in ops[:200].tolist()}) > 100


def test_randaugment_batch_mixes_ops_and_keeps_identity_samples_exact():
    img = torch.rand(3, 8, 8, generator=gen(13))
    x = ((img - torch.tensor(CIFAR_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR_STD).view(3, 1, 1)).expand(
        140, 3, 8, 8).contiguous()
    aug = BatchAugment.from_spec({"randaugment": {"num_ops": 1, "magnitude": 9}}, mean=CIFAR_MEAN, std=CIFAR_STD)
    out = aug(x, gen(14))
    # samples that come back bit-for-bit drew Identity (or an op that left this image alone)
    same = (out == x).flatten(1).all(dim=1)
    assert 0 < same.sum() < 30  # Identity is 1 of 14 ops: about 10 of 140
    # one slot: at most 1 + 2 * 9 (signed) + 4 different results; the batch shows most of them
    assert len({tuple(o.flatten().tolist()) for o in out}) >= 18


def test_solarize_and_autocontrast_closed_forms():
    x = torch.rand(4, 3, 5, 5, generator=gen(15))
    ops = torch.full((4, 1), RANDAUGMENT_OPS.index("Solarize"))
    torch.testing.assert_close(rand_augment(x, ops, torch.full((4, 1), 0.6, dtype=torch.float64)),
                               torch.where(x >= 0.6, 1 - x, x), atol=1e-6, rtol=0)
    ops = torch.full((4, 1), RANDAUGMENT_OPS.index("AutoContrast"))
    ac = rand_augment(x * 0.5 + 0.2, ops, torch.zeros(4, 1, dtype=torch.float64))
    torch.testing.assert_close(ac.amin(dim=(2, 3)), torch.zeros(4, 3))
    torch.testing.assert_close(ac.amax(dim=(2, 3)), torch.ones(4, 3), atol=1e-5, rtol=0)
    flat = torch.full((1, 1, 3, 3), 0.4)
    # a constant channel is left alone (torchvision), not set to 0
    assert torch.equal(rand_augment(flat, ops[:1], torch.zeros(1, 1, dtype=torch.float64)), flat)
    sharp = torch.full((1, 1), RANDAUGMENT_OPS.index("Sharpness"))
    # smoothing a constant image changes nothing, up to the rounding of conv2d sums
    torch.testing.assert_close(rand_augment(flat, sharp, torch.ones(1, 1, dtype=torch.float64)),
                               flat, atol=1e-6, rtol=0)


def equalize_reference(ch: torch.Tensor) -> torch.Tensor:
    """PIL's ImageOps.equalize on one channel of [0, 1] floats binned to the uint8 levels
    floor(255 p), as kornia does (torchvision bins floor(255.999 p))."""
    u = (ch * 255).to(torch.int64).flatten()
    hist = torch.bincount(u, minlength=256).tolist()
    used = [v for v in hist if v]
    step = (sum(used) - used[-1]) // 255
    if not step:
        return ch
    lut, acc = [], step // 2
    for count in hist:
        lut.append(min(acc // step, 255))
        acc += count
    return (torch.tensor(lut)[u].float() / 255).view_as(ch)


def test_equalize_matches_pil_scheme():
    x = torch.rand(2, 3, 32, 32, generator=gen(16)) ** 2
    x[1, 2] = 0.25  # a constant channel is left alone
    ops = torch.full((2, 1), RANDAUGMENT_OPS.index("Equalize"))
    out = rand_augment(x, ops, torch.zeros(2, 1, dtype=torch.float64))
    for n in range(2):
        for c in range(3):
            want = equalize_reference(x[n, c])
            torch.testing.assert_close(out[n, c], want, atol=1 / 255 + 1e-6, rtol=0)
            assert (out[n, c] - want).abs().gt(1e-5).float().mean() < 0.01
    torch.testing.assert_close(out[1, 2], x[1, 2], atol=1 / 255, rtol=0)
