"""Git re-basin weight matching: groups (residual stream included), function preservation, recovery."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from phasezoo.downstream import align, interpolate, permutation_groups, permute, random_permutations
from phasezoo.models import build_model

# (arch, width, in_channels, image size): the two architectures, both channel counts, both sizes
CASES = [("resnet18", 4, 1, 8), ("resnet18", 4, 3, 32), ("resnet50", 2, 3, 8), ("resnet50", 2, 1, 32)]
IDS = [f"{a}-w{w}-c{c}-{s}px" for a, w, c, s in CASES]


def make(arch, width, in_channels, seed):
    """A model in eval mode with non-trivial BN affine parameters and running statistics."""
    torch.manual_seed(seed)
    m = build_model(arch, width=width, in_channels=in_channels, num_classes=10)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.3)
                mod.running_mean.normal_(0, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.num_batches_tracked.fill_(7 + n)
            elif isinstance(mod, nn.Linear):
                mod.bias.normal_(0, 0.1)
    return m.eval()


def state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def assert_state_equal(sa, sb):
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def outputs(m, in_channels, size):
    """Eval-mode logits computed in float64 on a copy.

    Kaiming-initialised ResNet-50 logits are O(100) with random BN statistics, so float32
    summation-order noise alone reaches ~1e-4; in float64 a correct permutation agrees to ~1e-13,
    which makes atol=1e-5 a sharp test of the groups.
    """
    x = torch.randn(4, in_channels, size, size, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return copy.deepcopy(m).double().eval()(x.double())


def sq_dist(a, b):
    pb = dict(b.named_parameters())
    return sum(((p - pb[k]) ** 2).sum().item() for k, p in a.named_parameters())


@pytest.mark.parametrize("arch,width", [("resnet18", 4), ("resnet50", 2)])
def test_groups_cover_every_hidden_axis_exactly_once(arch, width):
    m = make(arch, width, 3, 0)
    groups = permutation_groups(m)
    seen = [ax for axes in groups.values() for ax in axes]
    assert len(seen) == len(set(seen))
    expected = set()
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Conv2d):
            expected.add((f"{name}.weight", 0))
            if name != "conv1":                      # the stem reads the image channels
                expected.add((f"{name}.weight", 1))
        elif isinstance(mod, nn.BatchNorm2d):
            expected |= {(f"{name}.{k}", 0) for k in ("weight", "bias", "running_mean", "running_var")}
        elif isinstance(mod, nn.Linear):
            expected.add((f"{name}.weight", 1))      # the logits are not permuted
    assert set(seen) == expected
    streams = sorted(g for g in groups if g.startswith("stream"))
    n_blocks = 8 if arch == "resnet18" else 16
    if arch == "resnet18":   # stem and layer1 share a stream (identity shortcuts in layer1)
        assert streams == ["stream1", "stream2", "stream3", "stream4"]
        assert ("layer1.1.conv2.weight", 0) in groups["stream1"] and ("conv1.weight", 0) in groups["stream1"]
        assert len(groups) == 4 + n_blocks
    else:                    # layer1.0 projects w -> 4w: the stem is a stream of its own
        assert streams == ["stream0", "stream1", "stream2", "stream3", "stream4"]
        assert len(groups) == 5 + 2 * n_blocks
    # a projection shortcut: output in the new stream, input in the previous one
    assert ("layer2.0.shortcut.0.weight", 0) in groups["stream2"]
    assert ("layer2.0.shortcut.0.weight", 1) in groups["stream1"]
    assert ("linear.weight", 1) in groups["stream4"]


@pytest.mark.parametrize("arch,width,c,size", CASES, ids=IDS)
def test_random_permutation_preserves_the_function(arch, width, c, size):
    m = make(arch, width, c, 0)
    before = state(m)
    perms = random_permutations(m, seed=1)
    assert all(not torch.equal(p, torch.arange(len(p))) for p in perms.values() if len(p) > 4)
    p = permute(m, perms)
    assert_state_equal(state(m), before)
    assert not torch.equal(p.layer1[0].conv1.weight, m.layer1[0].conv1.weight)
    torch.testing.assert_close(outputs(p, c, size), outputs(m, c, size), atol=1e-5, rtol=0)


def test_permuting_only_part_of_the_stream_breaks_the_function():
    # sanity check that the function test above is sensitive to a wrong group
    m = make("resnet18", 4, 1, 0)
    g = permutation_groups(m)["stream2"]
    perm = torch.roll(torch.arange(8), 1)
    sd = m.state_dict()
    for k, d in g:
        if not k.startswith("layer2.1"):                 # forget one block
            sd[k] = sd[k].index_select(d, perm)
    bad = make("resnet18", 4, 1, 0)
    bad.load_state_dict(sd)
    assert (outputs(bad, 1, 8) - outputs(m, 1, 8)).abs().max() > 1e-3


def test_permute_rejects_bad_permutations():
    m = make("resnet18", 4, 1, 0)
    with pytest.raises(KeyError):
        permute(m, {"nope": torch.arange(4)})
    with pytest.raises(ValueError):
        permute(m, {"stream1": torch.tensor([0, 0, 1, 2])})


@pytest.mark.parametrize("arch,width,c,size", CASES[1:3], ids=IDS[1:3])
def test_align_recovers_a_permuted_copy_exactly(arch, width, c, size):
    a = make(arch, width, c, 0)
    b = permute(a, random_permutations(a, seed=5))
    sa, sb = state(a), state(b)
    b2 = align(a, b, seed=3)
    assert_state_equal(state(b2), sa)                    # every tensor, buffers included
    assert_state_equal(state(a), sa)                     # inputs untouched
    assert_state_equal(state(b), sb)
    torch.testing.assert_close(outputs(b2, c, size), outputs(b, c, size), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch,width,c,size", [CASES[0], CASES[3]], ids=[IDS[0], IDS[3]])
def test_align_two_independent_models(arch, width, c, size):
    a, b = make(arch, width, c, 0), make(arch, width, c, 1)
    sa, sb = state(a), state(b)
    b2 = align(a, b, seed=0)
    assert_state_equal(state(a), sa)
    assert_state_equal(state(b), sb)
    assert b2 is not b
    # same function as b, closer to a in weight space
    torch.testing.assert_close(outputs(b2, c, size), outputs(b, c, size), atol=1e-5, rtol=0)
    assert sq_dist(a, b2) < sq_dist(a, b) - 1e-6
    # num_batches_tracked is never permuted
    for k, v in b2.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert torch.equal(v, sb[k])
    # deterministic given the seed
    assert_state_equal(state(align(a, b, seed=0)), state(b2))


def test_interpolate_endpoints_and_midpoint():
    a, b = make("resnet18", 4, 1, 0), make("resnet18", 4, 1, 1)
    sa, sb = state(a), state(b)
    assert_state_equal(state(interpolate(a, b, 0.0)), sa)
    one = state(interpolate(a, b, 1.0))
    for k in sa:
        assert torch.equal(one[k], sa[k] if k.endswith("num_batches_tracked") else sb[k]), k
    mid = interpolate(a, b, 0.5)
    torch.testing.assert_close(mid.bn1.running_var, (a.bn1.running_var + b.bn1.running_var) / 2)
    torch.testing.assert_close(mid.linear.weight, (a.linear.weight + b.linear.weight) / 2)
    assert torch.equal(mid.bn1.num_batches_tracked, a.bn1.num_batches_tracked)
    assert_state_equal(state(a), sa)
    assert_state_equal(state(b), sb)
