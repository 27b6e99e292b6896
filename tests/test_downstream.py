"""Downstream methods (paper §4.2): pruning, ensembles, weight averaging, transfer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from phasezoo.data import load_dataset
from phasezoo.downstream import (
    average_state_dicts, averaging_gain, ensemble_accuracy, ensemble_logits, finetune_model,
    magnitude_prune, permute, prunable_weights, prune_and_finetune, random_permutations,
    rebasin_average, sparsity_of, target_task, wise_ft_average,
)
from phasezoo.landscape.curves import recompute_bn_statistics
from phasezoo.models import build_model
from phasezoo.store import MemberStore
from phasezoo.zoo import load_member
from tests.conftest import TINY_SPEC, write_spec


def make(seed: int, width: int = 2) -> nn.Module:
    """A tiny ResNet-18 with non-trivial BatchNorm parameters and running statistics."""
    torch.manual_seed(seed)
    m = build_model("resnet18", width=width, in_channels=1, num_classes=10)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.3)
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
            elif isinstance(mod, nn.Linear):
                mod.bias.normal_(0, 0.1)
    return m.eval()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


# ------------------------------------------------------------------------------------ pruning


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
def test_magnitude_prune_is_exact_global_and_leaves_the_rest(sparsity):
    model = make(0)
    before = _state(model)
    pruned, masks = magnitude_prune(model, sparsity)
    # the input is untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    weights = prunable_weights(pruned)
    assert set(masks) == set(weights)
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(sparsity * total)
    assert sparsity_of(pruned) == pytest.approx(round(sparsity * total) / total)
    # biases, BN parameters and statistics untouched; kept weights keep their values
    after = pruned.state_dict()
    for k, v in before.items():
        if k in weights:
            assert torch.equal(after[k], v * masks[k])
        else:
            assert torch.equal(after[k], v), k
    # the kept weights are the largest in magnitude (globally, across layers)
    orig = torch.cat([before[k].abs().flatten() for k in weights])
    keep = torch.cat([masks[k].flatten() for k in weights])
    assert int((~keep).sum()) == round(sparsity * total)
    assert orig[keep].min() >= orig[~keep].max()


def test_magnitude_prune_breaks_ties_deterministically():
    model = make(0)
    with torch.no_grad():
        for w in prunable_weights(model).values():
            w.fill_(1.0)
    pruned, masks = magnitude_prune(model, 0.5)
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * total)
    _, masks2 = magnitude_prune(model, 0.5)
    assert all(torch.equal(masks[k], masks2[k]) for k in masks)


def test_prune_and_finetune_keeps_exact_sparsity(digits):
    model = make(1)
    total = sum(w.numel() for w in prunable_weights(model).values())
    ft = prune_and_finetune(model, 0.9, digits.train_x[:256], digits.train_y[:256],
                            epochs=1, lr=0.05, batch_size=128, seed=0)
    pruned, _ = magnitude_prune(model, 0.9)
    zeros = sum(int((w == 0).sum()) for w in prunable_weights(ft).values())
    assert zeros == round(0.9 * total)
    # it did train: the surviving weights moved
    assert not torch.equal(ft.linear.weight, pruned.linear.weight)
    assert torch.equal(ft.linear.weight == 0, pruned.linear.weight == 0)


# ------------------------------------------------------------------------------------ ensembles


def test_ensemble_of_identical_models_is_the_model(digits):
    model = make(0)
    x, y = digits.test_x, digits.test_y
    with torch.no_grad():
        ref = model(x)
    out = ensemble_logits([model, copy.deepcopy(model), model], x, batch_size=100)
    assert torch.allclose(out, ref, atol=1e-6)
    res = ensemble_accuracy([model, copy.deepcopy(model)], x, y)
    acc = float((ref.argmax(1) == y).float().mean())
    assert res["ensemble_acc"] == pytest.approx(acc)
    assert res["member_accs"] == pytest.approx([acc, acc])
    assert res["gain"] == pytest.approx(0.0, abs=1e-12)


def test_ensemble_gain_of_two_different_models(digits):
    a, b = make(0), make(1)
    a.train()  # the mode is restored afterwards
    x, y = digits.test_x, digits.test_y
    res = ensemble_accuracy([a, b], x, y)
    assert a.training and not b.training
    a.eval()
    with torch.no_grad():
        la, lb = a(x), b(x)
    accs = [float((l.argmax(1) == y).float().mean()) for l in (la, lb)]
    ens = float((((la + lb) / 2).argmax(1) == y).float().mean())
    assert res["member_accs"] == pytest.approx(accs)
    assert res["ensemble_acc"] == pytest.approx(ens)
    assert res["mean_member_acc"] == pytest.approx(sum(accs) / 2)
    assert res["gain"] == pytest.approx(ens - sum(accs) / 2)
    assert torch.allclose(ensemble_logits([a, b], x), (la + lb) / 2, atol=1e-5)


# ------------------------------------------------------------------------------------ averaging


def test_average_state_dicts():
    sd = _state(make(0))
    avg = average_state_dicts([sd, sd, sd])
    assert avg.keys() == sd.keys()
    for k, v in sd.items():
        assert avg[k].dtype == v.dtype
        assert torch.allclose(avg[k], v, atol=1e-6, rtol=0) if v.is_floating_point() else torch.equal(avg[k], v)
    sd2 = _state(make(1))
    sd2["bn1.num_batches_tracked"] = sd2["bn1.num_batches_tracked"] + 5
    w = average_state_dicts([sd, sd2], weights=[3, 1])
    assert torch.allclose(w["conv1.weight"], 0.75 * sd["conv1.weight"] + 0.25 * sd2["conv1.weight"])
    assert torch.equal(w["bn1.num_batches_tracked"], sd["bn1.num_batches_tracked"])
    assert averaging_gain(0.9, [0.8, 0.85]) == pytest.approx(0.075)


@pytest.fixture(scope="module")
def member_dir(tmp_path_factory):
    from phasezoo.zoo import train_zoo

    tmp = tmp_path_factory.mktemp("downstream")
    spec = write_spec(tmp, TINY_SPEC.replace("batch_size: [256, 512]", "batch_size: [256]"))
    train_zoo(spec, "smoke", tmp / "zoos", device="cpu", progress=False)
    return tmp / "zoos" / "tiny-digits" / "smoke" / "w0001_b0256_s0"


def test_wise_ft_average(member_dir, digits):
    store = MemberStore(member_dir)
    epochs = store.checkpoint_epochs()
    assert len(epochs) >= 2
    x = digits.train_x
    # k = 1: the last checkpoint itself; only the BN running statistics change (recomputed)
    m1 = wise_ft_average(member_dir, 1, x)
    assert m1.averaging_info == {"k_requested": 1, "k_used": 1, "epochs": epochs[-1:]}
    last, _ = load_member(member_dir, epochs[-1])
    ref = copy.deepcopy(last)
    recompute_bn_statistics(ref, x)
    for k, v in last.state_dict().items():
        got = m1.state_dict()[k]
        if "running_" in k:
            assert torch.allclose(got, ref.state_dict()[k], atol=1e-6), k
        elif k.endswith("num_batches_tracked"):
            continue
        else:
            assert torch.equal(got, v), k
    assert any(not torch.allclose(m1.state_dict()[k], v) for k, v in last.state_dict().items()
               if "running_" in k)
    # k = 2: the mean of the last two checkpoints
    m2 = wise_ft_average(member_dir, 2, x)
    sa, sb = store.load_checkpoint(epochs[-2])[1], store.load_checkpoint(epochs[-1])[1]
    assert torch.allclose(m2.state_dict()["conv1.weight"], (sa["conv1.weight"] + sb["conv1.weight"]) / 2)
    # k larger than available: all checkpoints, recorded
    mall = wise_ft_average(member_dir, 100, x)
    assert mall.averaging_info["k_used"] == len(epochs) and mall.averaging_info["epochs"] == epochs
    assert not mall.training


def test_rebasin_average_of_a_permuted_copy_is_the_model(digits):
    a = make(0, width=4)
    b = permute(a, random_permutations(a, seed=3))
    assert any(not torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    x = digits.train_x[:512]
    avg = rebasin_average(a, b, x)
    ref = copy.deepcopy(a)
    recompute_bn_statistics(ref, x)
    ref.eval()
    with torch.no_grad():
        assert torch.allclose(avg(digits.test_x), ref(digits.test_x), atol=1e-4)
    assert not avg.training


# ------------------------------------------------------------------------------------ transfer


def test_target_task_digits_rot90(digits):
    t = target_task("digits-rot90")
    assert t.num_classes == 10 and len(t) == 5
    assert torch.equal(t.train_x, torch.rot90(digits.train_x, 1, dims=(2, 3)))
    assert torch.equal(t.test_y, digits.test_y)
    with pytest.raises(ValueError):
        target_task("nope")


def test_linear_probe_trains_only_the_head():
    model = make(0)
    before = _state(model)
    res = finetune_model(model, "digits-rot90", mode="linear", epochs=3, return_model=True)
    assert 0.0 <= res["target_test_acc"] <= 1.0 and res["mode"] == "linear"
    ft = res.pop("model")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # input untouched
    for k, v in ft.state_dict().items():
        if k.startswith("linear."):
            assert not torch.equal(v, before[k]), k
        else:
            assert torch.equal(v, before[k]), k
    # the same seed gives the same result
    again = finetune_model(model, "digits-rot90", mode="linear", epochs=3)
    assert again["target_test_acc"] == res["target_test_acc"]


def test_full_finetune_runs():
    model = make(0)
    before = _state(model)
    res = finetune_model(model, "digits-rot90", mode="full", epochs=1, return_model=True)
    assert 0.0 <= res["target_test_acc"] <= 1.0 and 0.0 <= res["target_train_acc"] <= 1.0
    assert res["mode"] == "full" and res["epochs"] == 1 and res["lr"] == 0.01
    ft = res["model"]
    assert not torch.equal(ft.conv1.weight, before["conv1.weight"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError):
        finetune_model(model, "digits-rot90", mode="bogus")
