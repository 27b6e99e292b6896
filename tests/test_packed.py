"""Packed seeds: K seeds trained as one module train exactly as they do alone.

The exactness tests run in float64, where the only differences between packed and separate
training are the rounding of different (grouped / batched) kernels: after several optimizer
steps the weights agree to 1e-9. In float32 the same rounding differences are amplified by
training, so float32 runs are compared loosely, and only bit-exact where the same path runs twice
(a resumed packed cell against an uninterrupted one).
"""

import json

import pytest
import torch

from phasezoo import zoo as zoo_ops
from phasezoo.data import steps_per_epoch
from phasezoo.models import build_model
from phasezoo.models.packed import PackedModel, pack_optimizer_state, unpack_optimizer_state
from phasezoo.spec import load_spec
from phasezoo.store import MemberStore
from phasezoo.tasks import ClassificationTask
from phasezoo.train import train_member, train_members

from tests.conftest import TINY_SPEC, write_spec

#: the largest difference allowed between packed and separate float64 training
EXACT = 1e-9

#: three seeds of one cell of the tests' tiny digits zoo, a checkpoint every epoch
RESNET_SPEC = (TINY_SPEC.replace("name: tiny-digits", "name: pack-resnet")
               .replace("checkpoints: {every: 2}", "checkpoints: {every: 1}")
               .replace("grid: {width: [1], batch_size: [256, 512], seed: [0]}",
                        "grid: {width: [2], batch_size: [128], seed: [0, 1, 2]}"))
assert "pack-resnet" in RESNET_SPEC and "seed: [0, 1, 2]" in RESNET_SPEC and "every: 1" in RESNET_SPEC

VIT_SPEC = """\
name: pack-vit
description: two seeds of a ViT cell trained with AdamW, for the packing tests
arch: vit
dataset: digits
model: {depth: 1, heads: 2, patch_size: 4, mlp_ratio: 2.0}
axes: {load: model_dim, temperature: batch_size}
training:
  optimizer: adamw
  lr: 6.0e-3
  weight_decay: 5.0e-4
  scheduler: {name: onecycle_cosine}
  epochs: 3
  augmentation: {random_crop: {padding: 1}}
  checkpoints: {every: 1}
profiles:
  smoke:
    grid: {model_dim: [4], batch_size: [256], seed: [0, 1]}
"""


def _members(tmp_path, text, name):
    return load_spec(write_spec(tmp_path, text, f"{name}.yaml")).members("smoke")


def _max_diff(dir_a, dir_b, epoch):
    a = MemberStore(dir_a).load_checkpoint(epoch)[1]
    b = MemberStore(dir_b).load_checkpoint(epoch)[1]
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def _trained_apart_and_packed(tmp_path, members, **kw):
    for m in members:
        assert train_member(m, tmp_path / "apart" / m.member, dtype=torch.float64).status == "done"
    results = train_members(members, [tmp_path / "packed" / m.member for m in members], pack=True,
                            dtype=torch.float64, **kw)
    return results


# ----------------------------------------------------------------------------- the module


@pytest.mark.parametrize("arch,kw,x", [
    ("resnet18", dict(width=2, in_channels=1, num_classes=10), lambda: torch.randn(3, 5, 1, 8, 8)),
    ("resnet50", dict(width=1, in_channels=3, num_classes=4), lambda: torch.randn(3, 4, 3, 8, 8)),
    ("vit", dict(width=4, in_channels=1, num_classes=10, image_size=8, depth=1, heads=2, patch_size=4,
                 mlp_ratio=2.0), lambda: torch.randn(3, 5, 1, 8, 8)),
    ("gpt", dict(width=4, vocab_size=11, block_size=6, depth=1, heads=2, mlp_ratio=2.0),
     lambda: torch.randint(0, 11, (3, 5, 6))),
])
def test_packed_forward_and_state_equal_the_seeds_own(arch, kw, x):
    from phasezoo.models.packed import STRATEGIES

    torch.manual_seed(0)
    models = [build_model(arch, **kw).double() for _ in range(3)]
    xs = x()
    xs = xs.double() if xs.is_floating_point() else xs
    packed = PackedModel(models, STRATEGIES[arch])
    for k, m in enumerate(models):  # the packed state is the seeds' own, under the same names
        own, got = m.state_dict(), packed.seed_state(k)
        assert list(own) == list(got)
        assert all(torch.equal(own[n], got[n]) for n in own)
    for mode in ("train", "eval"):
        for m in (*models, packed):
            m.train(mode == "train")
        out = packed(xs)
        for k, m in enumerate(models):
            assert (out[k] - m(xs[k])).abs().max() < EXACT, (arch, mode, k)
    for k, m in enumerate(models):  # BatchNorm running statistics moved as the seeds' own did
        got = packed.seed_state(k)
        for n, t in m.state_dict().items():
            assert (got[n].double() - t.double()).abs().max() < EXACT, n


def test_a_seed_holds_its_own_weights_in_a_pack():
    torch.manual_seed(0)
    models = [build_model("resnet18", width=2, in_channels=1, num_classes=10) for _ in range(2)]
    packed = PackedModel(models, "grouped")
    # a different seed gives different outputs: the pack does not share weights between seeds
    x = torch.randn(1, 4, 1, 8, 8).expand(2, 4, 1, 8, 8)
    out = packed(x)
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_unpacking_the_optimizer_state_inverts_packing():
    torch.manual_seed(0)
    models = [build_model("resnet18", width=2, in_channels=1, num_classes=10) for _ in range(2)]
    states = []
    for m in models:
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        m(torch.randn(4, 1, 8, 8)).sum().backward()
        opt.step()
        states.append(opt.state_dict())
    packed = PackedModel(models, "grouped")
    params = list(packed.parameters())
    both = pack_optimizer_state(states, params)
    for k in range(2):
        back = unpack_optimizer_state(both, params, k)
        for idx, entry in states[k]["state"].items():
            for key, v in entry.items():
                assert torch.equal(back["state"][idx][key], v), (idx, key)
    states[1]["state"][0]["step"] = states[1]["state"][0]["step"] + 1
    with pytest.raises(ValueError, match="differs"):
        pack_optimizer_state(states, params)


def test_grouped_packing_refuses_unknown_layers():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.GroupNorm(1, 2)

    with pytest.raises(ValueError, match="cannot pack GroupNorm"):
        PackedModel([Odd(), Odd()], "grouped")


# ----------------------------------------------------------------------------- training


def test_packed_resnet_trains_as_its_seeds_do_alone_sgd_momentum_onecycle(tmp_path):
    members = _members(tmp_path, RESNET_SPEC, "pack-resnet")
    results = _trained_apart_and_packed(tmp_path, members)
    assert [r.status for r in results] == ["done"] * 3
    worst = 0.0
    for m in members:
        for epoch in (1, 2, 3):
            worst = max(worst, _max_diff(tmp_path / "apart" / m.member, tmp_path / "packed" / m.member, epoch))
        apart = MemberStore(tmp_path / "apart" / m.member).read_results()
        packed = MemberStore(tmp_path / "packed" / m.member).read_results()
        for a, b in zip(apart, packed):
            for key in ("train_loss", "test_loss", "train_loss_batches", "lr"):
                if key in a:
                    assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), (m.member, key)
    assert worst < EXACT
    # the seeds are different models: packing kept them apart
    assert _max_diff(tmp_path / "packed" / members[0].member, tmp_path / "packed" / members[1].member, 3) > 1e-3
    env = json.loads(MemberStore(tmp_path / "packed" / members[0].member).status_path.read_text())["trained_with"]
    assert env["packing"] == "grouped" and env["packed"] == 3


def test_packed_vit_trains_as_its_seeds_do_alone_adamw(tmp_path):
    members = _members(tmp_path, VIT_SPEC, "pack-vit")
    results = _trained_apart_and_packed(tmp_path, members)
    assert [r.status for r in results] == ["done"] * 2
    worst = max(_max_diff(tmp_path / "apart" / m.member, tmp_path / "packed" / m.member, e)
                for m in members for e in (1, 2, 3))
    assert worst < EXACT


def test_a_diverged_seed_leaves_the_pack_and_the_others_go_on(tmp_path, monkeypatch):
    members = _members(tmp_path, RESNET_SPEC, "pack-resnet")
    for m in members:
        train_member(m, tmp_path / "apart" / m.member, dtype=torch.float64)
    real_loss = ClassificationTask.loss
    calls = {"n": 0}
    epoch_1 = 3 * steps_per_epoch(1437, 128)  # loss calls in epoch 1: seeds 0, 1, 2 at each step

    def nan_for_the_middle_seed(self, outputs, targets):  # from step 6 of epoch 1, seed 1's loss is NaN
        loss = real_loss(self, outputs, targets)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] % 3 == 2 and 3 * 5 < calls["n"] <= epoch_1 else loss

    monkeypatch.setattr(ClassificationTask, "loss", nan_for_the_middle_seed)
    results = train_members(members, [tmp_path / "packed" / m.member for m in members], pack=True,
                            dtype=torch.float64)
    assert [r.status for r in results] == ["done", "diverged", "done"]
    rows = MemberStore(tmp_path / "packed" / members[1].member).read_results()
    assert [r["epoch"] for r in rows] == [0, 1]
    for m in (members[0], members[2]):
        assert _max_diff(tmp_path / "apart" / m.member, tmp_path / "packed" / m.member, 3) < EXACT


def test_a_packed_cell_resumes_exactly(tmp_path):
    members = _members(tmp_path, RESNET_SPEC, "pack-resnet")
    full = [tmp_path / "full" / m.member for m in members]
    part = [tmp_path / "part" / m.member for m in members]
    train_members(members, full, pack=True)
    first = train_members(members, part, stop_after_epoch=1, pack=True)
    assert [r.status for r in first] == ["partial"] * 3
    second = train_members(members, part, pack=True)
    assert [r.status for r in second] == ["done"] * 3 and all(r.epochs_run == 2 for r in second)
    for a, b in zip(full, part):
        wa, wb = MemberStore(a).load_checkpoint(3)[1], MemberStore(b).load_checkpoint(3)[1]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_packed_member_resumes_alone_with_a_warning(tmp_path, capsys):
    members = _members(tmp_path, RESNET_SPEC, "pack-resnet")
    dirs = [tmp_path / m.member for m in members]
    train_members(members, dirs, stop_after_epoch=1, pack=True, dtype=torch.float64)
    capsys.readouterr()
    res = train_member(members[0], dirs[0], dtype=torch.float64)
    assert res.status == "done" and res.epochs_run == 2
    assert "not bit-for-bit reproducible" in capsys.readouterr().err
    status = json.loads(MemberStore(dirs[0]).status_path.read_text())
    assert status["trained_with"]["packing"] == "grouped" and "packing" not in status["resumed_with"][0]
    for m in members:
        train_member(m, tmp_path / "apart" / m.member, dtype=torch.float64)
    assert _max_diff(tmp_path / "apart" / members[0].member, dirs[0], 3) < EXACT


def test_train_zoo_packs_resnet_cells_and_no_pack_trains_one_by_one(tmp_path, capsys):
    spec = write_spec(tmp_path, RESNET_SPEC.replace("epochs: 3", "epochs: 1"), "pack-resnet.yaml")
    lines = []
    packed = zoo_ops.train_zoo(spec, "smoke", tmp_path / "a", device="cpu", progress=None)
    err = capsys.readouterr().err.strip().splitlines()  # not a terminal: one line per job
    assert len(err) == 1 and "w0002_b0128 ×3 done ×3" in err[0] and "[3/3]" in err[0], err
    alone = zoo_ops.train_zoo(spec, "smoke", tmp_path / "b", device="cpu", progress=False, pack=False,
                              on_result=lines.append)
    assert [r.status for r in packed] == [r.status for r in alone] == ["done"] * 3
    assert len(lines) == 3
    root = tmp_path / "a" / "pack-resnet" / "smoke"
    for r in packed:
        assert json.loads((root / r.member / "status.json").read_text())["trained_with"]["packed"] == 3
    root_b = tmp_path / "b" / "pack-resnet" / "smoke"
    assert "packing" not in json.loads((root_b / alone[0].member / "status.json").read_text())["trained_with"]
    assert zoo_ops.verify_zoo(spec, "smoke", tmp_path / "a").problems == []
