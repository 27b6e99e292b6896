"""Batched augmentation and batch iteration: exact semantics on known images, seeded determinism."""

from __future__ import annotations

import pytest
import torch

from phasezoo.data import BatchAugment, iterate_batches
from phasezoo.data.augment import random_crop, rotate
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


def test_random_crop_matches_pad_then_slice():
    p = 3
    x = torch.rand(5, 3, 8, 8, generator=gen(1))
    offsets = torch.tensor([[0, 0], [6, 6], [0, 6], [3, 3], [2, 5]])
    out = random_crop(x, p, offsets)
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    for n, (oy, ox) in enumerate(offsets.tolist()):
        assert torch.equal(out[n], padded[n, :, oy : oy + 8, ox : ox + 8])


# --------------------------------------------------------------------------- flip


def test_hflip_samples_are_original_or_mirrored():
    x = pattern()
    out = BatchAugment(hflip=True)(x, gen(3))
    same = [torch.equal(out[n], x[n]) for n in range(len(x))]
    flipped = [torch.equal(out[n], x[n].flip(-1)) for n in range(len(x))]
    assert all(s != f for s, f in zip(same, flipped))  # exactly one of the two
    assert 10 < sum(flipped) < 54  # p = 0.5 over 64 samples


# --------------------------------------------------------------------------- rotation


def test_rotation_by_zero_is_identity():
    x = torch.rand(4, 3, 9, 9, generator=gen(2))
    torch.testing.assert_close(rotate(x, torch.zeros(4)), x, atol=1e-5, rtol=0)


def test_rotation_by_90_matches_rot90_counter_clockwise():
    x = torch.rand(2, 1, 6, 6, generator=gen(4))
    torch.testing.assert_close(rotate(x, torch.full((2,), 90.0)), torch.rot90(x, 1, dims=(2, 3)),
                               atol=1e-5, rtol=0)


def test_rotation_180_on_non_square_is_a_double_flip():
    x = torch.rand(1, 2, 4, 10, generator=gen(5))
    torch.testing.assert_close(rotate(x, torch.tensor([180.0])), x.flip(2, 3), atol=1e-5, rtol=0)


def test_random_rotation_preserves_shape_and_centre():
    x = torch.ones(16, 3, 9, 9)
    out = BatchAugment(rotation_degrees=30)(x, gen(6))
    assert out.shape == x.shape
    torch.testing.assert_close(out[:, :, 4, 4], torch.ones(16, 3))  # centre pixel is fixed
    # corners leave the image for non-zero angles and are filled with zeros (partly)
    assert float(out[:, :, 0, 0].min()) < 0.9


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
