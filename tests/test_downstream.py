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
    rebasin_average, sparsity_of, target_task,
)
from phasezoo.models.utils import recompute_bn_statistics
from phasezoo.models import build_model
from phasezoo.store import MemberStore
from phasezoo.store import load_member
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


def test_gpt_pruning_includes_the_tied_embedding_or_leaves_it_out():
    from phasezoo.downstream import has_embeddings
    from phasezoo.models.gpt import GPT

    torch.manual_seed(0)
    gpt = GPT(width=16, vocab_size=256, block_size=64, depth=2, heads=2, mlp_ratio=4.0).eval()
    assert has_embeddings(gpt) and not has_embeddings(make(0))
    every = prunable_weights(gpt)
    assert {"wte.weight", "wpe.weight"} <= set(every)
    assert set(prunable_weights(gpt, embeddings=False)) == set(every) - {"wte.weight", "wpe.weight"}
    # the embeddings are 5,120 of the 11,264 matrix entries of this small GPT
    assert sum(w.numel() for w in every.values()) == 11264
    assert every["wte.weight"].numel() + every["wpe.weight"].numel() == 5120
    pruned, masks = magnitude_prune(gpt, 0.9)
    assert sparsity_of(pruned) == pytest.approx(0.9, abs=1e-4)
    # the head is tied to the token embedding: pruning one prunes the other (same tensor)
    idx = torch.randint(0, 256, (2, 8))
    h = pruned.features(idx)
    assert torch.equal(pruned.lm_head(h), h @ pruned.wte.weight.T)
    assert int((pruned.wte.weight == 0).sum()) == int((~masks["wte.weight"]).sum()) > 0
    # without embeddings the tables are untouched and the rest is pruned to the same sparsity
    kept, masks2 = magnitude_prune(gpt, 0.9, embeddings=False)
    assert "wte.weight" not in masks2 and torch.equal(kept.wte.weight, gpt.wte.weight)
    assert sparsity_of(kept, embeddings=False) == pytest.approx(0.9, abs=1e-4)
    assert sparsity_of(kept) < 0.9 * 6144 / 11264 + 1e-3


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


def _linear_problem(n: int = 400, seed: int = 0):
    """Separable 3-class data labelled by ``argmax(x W*ᵀ)`` and the bias-free linear model."""
    g = torch.Generator().manual_seed(seed)
    w_star = torch.randn(3, 5, generator=g)
    x = torch.randn(n, 5, generator=g)
    y = (x @ w_star.T).argmax(1)
    return w_star, (x[: n // 2], y[: n // 2]), (x[n // 2:], y[n // 2:])


def _linear(w: torch.Tensor) -> nn.Module:
    m = nn.Linear(5, 3, bias=False)
    with torch.no_grad():
        m.weight.copy_(w)
    return m.eval()


def test_wise_ft_curve_chooses_alpha_on_the_train_loss():
    from phasezoo.downstream import WISE_FT_ALPHAS, wise_ft_curve
    from phasezoo.tasks import ClassificationTask

    w_star, train, test = _linear_problem()
    task = ClassificationTask()
    # θ_early = 10 W* (near-zero loss), θ_final = −W* (every label wrong): along
    # θ(α) = (10 − 11α) W* the train loss is lowest at α = 0, so Wise-FT picks the early model
    out = wise_ft_curve(_linear(-w_star), {"weight": 10 * w_star}, task, train, test, train[0])
    assert out["alphas"] == list(WISE_FT_ALPHAS) and len(out["test_acc"]) == 11
    assert out["best_alpha"] == 0.0
    assert out["final_acc"] == pytest.approx(0.0) and out["acc"] == pytest.approx(1.0)
    assert out["gain"] == pytest.approx(1.0)
    # the curve is the interpolation: at α = 10/11 the weights vanish (chance); at α = 0.5 the
    # model is 4.5 W*, which classifies like W*
    assert out["test_acc"][5] == pytest.approx(1.0)
    assert out["train_loss"] == sorted(out["train_loss"][:10]) + out["train_loss"][10:]
    # the reverse: the final model is the good one, α* = 1 and the gain is exactly 0 (θ(1) is the
    # final model itself, not a re-evaluated copy)
    back = wise_ft_curve(_linear(10 * w_star), {"weight": -w_star}, task, train, test, train[0])
    assert back["best_alpha"] == 1.0 and back["gain"] == 0.0
    # equal end points: every α ties, and ties go to the final model
    same = wise_ft_curve(_linear(w_star), {"weight": w_star.clone()}, task, train, test, train[0])
    assert same["best_alpha"] == 1.0 and same["gain"] == 0.0
    assert max(same["train_loss"]) - min(same["train_loss"]) < 1e-6


def test_wise_ft_curve_picks_the_midpoint_when_training_is_noisy():
    """Two end points on either side of a good model (noise ± ε): the midpoint is best on train,
    and the gain is its test score minus the final model's."""
    from phasezoo.downstream import wise_ft_curve
    from phasezoo.tasks import ClassificationTask

    w_star, train, test = _linear_problem(seed=1)
    noise = 3.0 * torch.randn(3, 5, generator=torch.Generator().manual_seed(7))
    out = wise_ft_curve(_linear(3 * w_star + noise), {"weight": 3 * w_star - noise}, ClassificationTask(),
                        train, test, train[0])
    assert 0.3 <= out["best_alpha"] <= 0.7
    assert out["gain"] == pytest.approx(out["test_acc"][out["alphas"].index(out["best_alpha"])] - out["final_acc"])
    assert out["gain"] > 0


def test_wise_ft_curve_recomputes_batchnorm_between_the_end_points(digits):
    from phasezoo.downstream import wise_ft_curve
    from phasezoo.tasks import ClassificationTask, score

    final, early = make(0), make(1)
    x, y = digits.train_x[:256], digits.train_y[:256]
    test = (digits.test_x[:128], digits.test_y[:128])
    out = wise_ft_curve(final, _state(early), ClassificationTask(), (x, y), test, x, alphas=(0.0, 0.5, 1.0))
    # α = 1 is the final model as stored (its own BN statistics)
    assert out["test_acc"][2] == score(ClassificationTask(), final, *test)
    # α = 0 is the early weights with BN statistics recomputed on x
    ref = copy.deepcopy(early)
    recompute_bn_statistics(ref, x)
    assert out["test_acc"][0] == pytest.approx(score(ClassificationTask(), ref.eval(), *test), abs=1 / 128)
    with pytest.raises(ValueError, match="include 1"):
        wise_ft_curve(final, _state(early), ClassificationTask(), (x, y), test, x, alphas=(0.0, 0.5))


def test_wise_ft_of_a_member_uses_its_early_checkpoint(member_dir, digits):
    from phasezoo.downstream.runner import _wise_ft
    from phasezoo.spec import WISE_FT_EARLY_FRACTION
    from phasezoo.tasks import score, task_for

    store = MemberStore(member_dir)
    assert store.checkpoint_epochs() == [0, 2, 3]  # every 2 of 3 epochs: 2 = round(0.5 · 3) anyway
    model, config = load_member(member_dir, 3)
    task = task_for(config)
    out = _wise_ft(str(member_dir), config, model, task, digits)
    assert (out["early_fraction"], out["early_epoch"], out["final_epoch"]) == (WISE_FT_EARLY_FRACTION, 2, 3)
    assert out["final_acc"] == score(task, model, digits.test_x, digits.test_y)
    assert 0.0 <= out["best_alpha"] <= 1.0 and len(out["train_loss"]) == 11
    # a one-epoch run has no early checkpoint (epoch 0 is the initialisation): skipped, with why
    short = _wise_ft(str(member_dir), {**config, "epochs": 1}, model, task, digits)
    assert short["early_epoch"] is None and "initialisation" in short["skipped"]
    # a checkpoint that a zoo trained with another schedule did not store: skipped, with why
    (store.checkpoints_dir / "epoch_0002.safetensors").rename(store.checkpoints_dir / "hidden")
    try:
        missing = _wise_ft(str(member_dir), config, model, task, digits)
    finally:
        (store.checkpoints_dir / "hidden").rename(store.checkpoints_dir / "epoch_0002.safetensors")
    assert "epoch 2 was not stored (stored: 0, 3)" == missing["skipped"]


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
