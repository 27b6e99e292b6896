"""ViT and GPT: shapes, validation, causality, exact permutation symmetries, store round trip."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from phasezoo.downstream import align, permutation_groups, permute, random_permutations
from phasezoo.models.gpt import GPT, gpt
from phasezoo.models.vit import ViT, vit
from phasezoo.store import MemberStore
from tests.test_rebasin import assert_state_equal, state

VOCAB, BLOCK = 17, 10     # neither equals the width (12) nor the MLP hidden size (24)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def make_vit(seed=0, width=12, image_size=8, patch_size=2, in_channels=3, depth=2):
    """A ViT with non-trivial LayerNorm affine parameters and biases (init sets them to 1/0)."""
    torch.manual_seed(seed)
    m = vit(width=width, in_channels=in_channels, num_classes=5, image_size=image_size,
            depth=depth, heads=3, patch_size=patch_size)
    return _randomise_affine(m).eval()


def make_gpt(seed=0, width=12, depth=2, heads=3):
    torch.manual_seed(seed)
    m = gpt(width=width, vocab_size=VOCAB, block_size=BLOCK, depth=depth, heads=heads)
    return _randomise_affine(m).eval()


def _randomise_affine(m):
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.3)
            elif isinstance(mod, (nn.Linear, nn.Conv2d)) and mod.bias is not None:
                mod.bias.normal_(0, 0.1)
    return m


def assert_close(a, b, atol=1e-6):
    """Max-abs comparison (``torch.testing.assert_close`` imports torch.distributed: +3 s)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= atol, f"max abs difference {err:.3g} > {atol:g}"


def vit_input(image_size=8, in_channels=3):
    return torch.randn(4, in_channels, image_size, image_size, generator=torch.Generator().manual_seed(123))


def gpt_input(t=BLOCK):
    return torch.randint(0, VOCAB, (3, t), generator=torch.Generator().manual_seed(123))


def outputs(m, x):
    """Eval-mode outputs in float64 on a copy (a correct permutation then agrees to ~1e-13)."""
    with torch.no_grad():
        m = copy.deepcopy(m).double().eval()
        return m(x.double() if x.is_floating_point() else x)


# ----------------------------------------------------------------------------- ViT


@pytest.mark.parametrize("width", [6, 12, 24])
@pytest.mark.parametrize("image_size,patch_size,c", [(8, 2, 1), (32, 4, 3)])
def test_vit_shapes(width, image_size, patch_size, c):
    torch.manual_seed(0)
    m = vit(width=width, in_channels=c, num_classes=7, image_size=image_size, patch_size=patch_size, depth=2)
    x = torch.randn(2, c, image_size, image_size)
    assert m(x).shape == (2, 7)
    assert m.features(x).shape == (2, width)
    n = (image_size // patch_size) ** 2
    assert m.pos.shape == (1, 1 + n, width) and m.cls.shape == (1, 1, width)
    assert m.blocks[0].mlp.fc1.out_features == 2 * width
    assert len(m.blocks) == 2 and isinstance(m.linear, nn.Linear)
    assert not any(isinstance(mod, (nn.BatchNorm2d, nn.Dropout)) for mod in m.modules())


def test_vit_defaults_and_parameter_count_grows_with_width():
    m = vit(width=12, in_channels=3, num_classes=10, image_size=32)
    assert len(m.blocks) == 6 and m.blocks[0].attn.heads == 3 and m.patch.kernel_size == (4, 4)
    counts = [n_params(vit(width=w, in_channels=3, num_classes=10, image_size=32)) for w in (6, 12, 24, 48)]
    assert counts == sorted(counts) and len(set(counts)) == 4
    assert 3.0 < counts[3] / counts[2] < 4.0        # blocks dominate: ~ width^2


def test_vit_bad_arguments():
    with pytest.raises(ValueError, match="patch_size"):
        vit(width=12, in_channels=3, num_classes=10, image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="heads"):
        vit(width=10, in_channels=3, num_classes=10, image_size=32, heads=3)
    m = vit(width=6, in_channels=3, num_classes=10, image_size=8, patch_size=2, depth=1)
    with pytest.raises(ValueError, match="8x8"):
        m(torch.zeros(1, 3, 16, 16))


def test_vit_init_is_kaiming_uniform_and_deterministic():
    torch.manual_seed(0)
    a = vit(width=48, in_channels=3, num_classes=10, image_size=32)
    torch.manual_seed(0)
    b = vit(width=48, in_channels=3, num_classes=10, image_size=32)
    assert_state_equal(state(a), state(b))
    w = a.blocks[1].mlp.fc2.weight                   # fan_in = 96
    bound = (2.0 ** 0.5) * (3.0 / 96) ** 0.5
    assert bound * 0.95 < w.abs().max() <= bound + 1e-6
    assert torch.equal(a.blocks[0].attn.q.bias, torch.zeros(48))
    assert torch.equal(a.ln_f.weight, torch.ones(48))
    assert a.pos.abs().max() <= 0.04 and 0.015 < a.pos.std() < 0.025


# ----------------------------------------------------------------------------- GPT


def test_gpt_shapes_and_dtypes():
    m = make_gpt()
    for dtype in (torch.long, torch.int32, torch.int16):
        idx = gpt_input(7).to(dtype)
        assert m(idx).shape == (3, 7, VOCAB)
    assert m.features(gpt_input()).shape == (3, BLOCK, 12)
    with pytest.raises(ValueError, match="block size"):
        m(torch.zeros(1, BLOCK + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="heads"):
        gpt(width=20, vocab_size=VOCAB, block_size=BLOCK, heads=3)
    assert not any(isinstance(mod, nn.Dropout) for mod in m.modules())


def test_gpt_head_is_tied_and_parameter_count():
    m = make_gpt()
    assert "lm_head.weight" not in m.state_dict()
    h = m.features(gpt_input())
    assert_close(m(gpt_input()), h @ m.wte.weight.T)
    counts = [n_params(gpt(width=w, vocab_size=VOCAB, block_size=BLOCK, depth=2, heads=3)) for w in (6, 12, 24)]
    assert counts == sorted(counts) and len(set(counts)) == 3
    # the nanoGPT count (tied head counted once); at GPT-2 small (d=768, L=12, V=50257, block
    # 1024) the formula gives 124,439,808, i.e. nanoGPT's 123.65M without the position embedding
    def expected(d, L, V, B, h):
        return V * d + B * d + L * (4 * d + 4 * (d * d + d) + 2 * h * d + h + d) + 2 * d
    assert expected(768, 12, 50257, 1024, 3072) - 1024 * 768 == 123_653_376
    for d, L, heads, ratio in ((12, 2, 3, 4.0), (24, 3, 4, 2.5)):
        m = gpt(width=d, vocab_size=VOCAB, block_size=BLOCK, depth=L, heads=heads, mlp_ratio=ratio)
        assert n_params(m) == expected(d, L, VOCAB, BLOCK, round(ratio * d))


def test_gpt_init():
    torch.manual_seed(0)
    m = gpt(width=48, vocab_size=VOCAB, block_size=BLOCK, depth=2, heads=12)
    w = m.blocks[0].mlp.fc2.weight                   # fan_in = 4 * 48
    bound = (2.0 ** 0.5) * (3.0 / 192) ** 0.5
    assert bound * 0.95 < w.abs().max() <= bound + 1e-6
    assert 0.015 < m.wte.weight.std() < 0.025 and 0.015 < m.wpe.weight.std() < 0.025
    assert torch.equal(m.blocks[1].attn.proj.bias, torch.zeros(48))


@pytest.mark.parametrize("j", [0, 5, BLOCK - 1])
def test_causal_mask_no_future_leak(j):
    m = make_gpt()
    idx = gpt_input()
    idx2 = idx.clone()
    idx2[:, j] = (idx[:, j] + 1) % VOCAB
    with torch.no_grad():
        a, b = m(idx), m(idx2)
    assert_close(a[:, :j], b[:, :j], atol=1e-6)
    assert (a[:, j] - b[:, j]).abs().max() > 1e-3
    if j + 1 < BLOCK:                                # and the future does see it
        assert (a[:, j + 1:] - b[:, j + 1:]).abs().max() > 1e-3


# ----------------------------------------------------------------------------- permutations


CASES = {"vit": (make_vit, vit_input), "gpt": (make_gpt, gpt_input)}


@pytest.mark.parametrize("arch", CASES)
def test_groups_cover_every_hidden_axis_exactly_once(arch):
    m = CASES[arch][0]()
    groups = permutation_groups(m)
    assert groups == m.permutation_groups()
    assert list(groups) == ["stream", "blocks.0.mlp", "blocks.1.mlp"]
    seen = [ax for axes in groups.values() for ax in axes]
    assert len(seen) == len(set(seen))
    # every axis of size width (12) or MLP hidden (24 ViT, 48 GPT) but the attention heads
    sd = m.state_dict()
    head_axes = {(f"blocks.{i}.attn.{n}.{p}", 0) for i in range(2) for n in "qkv" for p in ("weight", "bias")}
    head_axes |= {(f"blocks.{i}.attn.proj.weight", 1) for i in range(2)}
    sizes = (12, m.blocks[0].mlp.fc1.out_features)
    expected = {(k, d) for k, v in sd.items() for d, n in enumerate(v.shape) if n in sizes}
    expected -= head_axes
    assert set(seen) == expected
    for k, d in groups["stream"]:
        assert sd[k].shape[d] == 12, (k, d)


@pytest.mark.parametrize("arch", CASES)
def test_random_permutation_preserves_the_function(arch):
    make, inp = CASES[arch]
    m = make()
    before = state(m)
    perms = random_permutations(m, seed=1)
    assert all(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    p = permute(m, perms)
    assert_state_equal(state(m), before)
    assert not torch.equal(p.blocks[0].attn.q.weight, m.blocks[0].attn.q.weight)
    assert_close(outputs(p, inp()), outputs(m, inp()), atol=1e-5)


@pytest.mark.parametrize("arch", CASES)
def test_permuting_only_part_of_the_stream_breaks_the_function(arch):
    # sanity check that the function test above is sensitive to a wrong group
    make, inp = CASES[arch]
    m = make()
    sd = m.state_dict()
    perm = torch.roll(torch.arange(12), 1)
    for k, d in permutation_groups(m)["stream"]:
        if not k.startswith("blocks.1.attn"):             # forget one attention layer
            sd[k] = sd[k].index_select(d, perm)
    bad = make()
    bad.load_state_dict(sd)
    assert (outputs(bad, inp()) - outputs(m, inp())).abs().max() > 1e-3


def test_permuting_within_a_head_is_not_a_symmetry_of_the_whole_axis():
    # why heads are left out: an unconstrained permutation of q/k rows (jointly) changes the function
    m = make_vit()
    sd = m.state_dict()
    perm = torch.roll(torch.arange(12), 2)                # moves features across heads of size 4
    for n in ("q", "k"):
        for p in ("weight", "bias"):
            key = f"blocks.0.attn.{n}.{p}"
            sd[key] = sd[key].index_select(0, perm)
    bad = make_vit()
    bad.load_state_dict(sd)
    assert (outputs(bad, vit_input()) - outputs(m, vit_input())).abs().max() > 1e-3


@pytest.mark.parametrize("arch", CASES)
def test_align_recovers_a_permuted_copy_exactly(arch):
    make, inp = CASES[arch]
    a = make()
    b = permute(a, random_permutations(a, seed=5))
    sa, sb = state(a), state(b)
    b2 = align(a, b, seed=3)
    assert_state_equal(state(b2), sa)
    assert_state_equal(state(a), sa)
    assert_state_equal(state(b), sb)
    assert_close(outputs(b2, inp()), outputs(a, inp()), atol=1e-5)


@pytest.mark.parametrize("arch", CASES)
def test_align_two_independent_models(arch):
    make, inp = CASES[arch]
    a, b = make(0), make(1)
    b2 = align(a, b, seed=0)
    assert_close(outputs(b2, inp()), outputs(b, inp()), atol=1e-5)
    pa, pb, pb2 = dict(a.named_parameters()), dict(b.named_parameters()), dict(b2.named_parameters())

    def dist(q):
        return sum(((pa[k] - q[k]) ** 2).sum().item() for k in pa)

    assert dist(pb2) < dist(pb) - 1e-6


# ----------------------------------------------------------------------------- store


@pytest.mark.parametrize("arch", CASES)
def test_checkpoint_round_trip_through_the_store(arch, tmp_path):
    make, inp = CASES[arch]
    m = make()
    store = MemberStore(tmp_path / arch)
    store.save_checkpoint(3, m.state_dict())
    epoch, loaded = store.load_checkpoint("last")
    assert epoch == 3
    assert_state_equal(loaded, state(m))
    fresh = make(seed=9)
    fresh.load_state_dict(loaded)
    assert_state_equal(state(fresh), state(m))
    with torch.no_grad():
        # the weights are bit-equal (above); the forward passes are compared with a tolerance:
        # matmul/softmax kernels vectorise and block differently per CPU and thread count, and
        # on some CPUs even with the memory alignment of two separately allocated models
        assert_close(fresh(inp()), m(inp()), atol=1e-5)
    if arch == "gpt":                                     # the tie survives loading
        assert isinstance(fresh, GPT)
        assert_close(fresh(inp()), fresh.features(inp()) @ fresh.wte.weight.T)
    else:
        assert isinstance(fresh, ViT)
