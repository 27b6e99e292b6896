"""The authors' ray.tune layout ("ptmz"): what their code reads of an export, field by field, and
the import of zoos written in their format (files written here, no network).

Their expectations (ModelZoos/PhaseTransitionModelZoo) are restated here as checks, each with
the file and function it comes from; see :mod:`phasezoo.publish.ptmz`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from phasezoo.analysis.table import zoo_table
from phasezoo.models import build_model
from phasezoo.publish.ptmz import (IMPORTED_PROFILE, MODEL_TYPES, export_ptmz, from_ptmz_state, import_ptmz,
                                   to_ptmz_state)
from phasezoo.spec import load_spec
from phasezoo.store import MemberStore, atomic_write_json, load_member
from phasezoo.zoo import Zoo, train_zoo
from tests.conftest import TINY_SPEC, write_spec
from tests.test_cli import run_cli, snapshot

# two seeds, so that a cell has a seed pair (CKA, mode connectivity, re-basin)
PAIR_SPEC = TINY_SPEC.replace("seed: [0]", "seed: [0, 1]")

#: the config keys their ``NNmodule_width.__init__`` (``src/ptmz/models/def_net_width.py``) reads
#: for ``Resnet18_width`` / ``Resnet50_width``, and ``set_optimizer`` / ``set_scheduler``
THEIR_MODEL_KEYS = ("model::type", "model::channels_in", "model::o_dim", "model::nlin", "model::dropout",
                    "model::init_type", "model::width", "optim::optimizer", "optim::lr", "optim::momentum",
                    "optim::wd", "optim::scheduler", "training::epochs_train")
#: the keys their phase plot reads per model (``visualize_phases.ipynb``, the plotting cell's
#: second ``fig_list``; ``ggap`` is computed there from ``train_acc - test_acc``)
THEIR_PLOT_KEYS = ("test_acc", "train_acc", "train_loss", "representation_similarity", "log_hessian_trace_train",
                   "curve_mc_train_error", "wiseft_acc_test_delta", "gitrebasin_acc_test_delta")


def their_compile_configs(root: Path, line_number: int) -> pd.DataFrame:
    """What their loader does (``visualize_phases.ipynb``, ``compile_configs``): line
    ``line_number`` of every model's ``result.json``, its ``config`` entry unrolled into it."""
    rows = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        result = json.loads((d / "result.json").read_text().splitlines()[line_number])
        result.update(result.pop("config", {}))
        result["file_path"] = str(d)
        rows.append(result)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Zoo:
    """A 4-member digits zoo (width 1, batch sizes 256 and 512, seeds 0 and 1, 3 epochs)."""
    base = tmp_path_factory.mktemp("ptmz")
    z = Zoo.of(write_spec(base, PAIR_SPEC), "smoke", base / "zoos")
    train_zoo(z, device="cpu", progress=False)
    return z


def _copy(z: Zoo, tmp_path: Path) -> Zoo:
    """The trained zoo under a root of its own (a test that writes to it leaves the others alone)."""
    shutil.copytree(z.root, tmp_path / "zoos")
    return Zoo.of(z.spec, z.profile, tmp_path / "zoos")


def _write_metrics(z: Zoo, epoch: int) -> dict:
    """Stored metric and downstream records in our format at ``epoch`` (known values); returns them."""
    values = {"trace": 150.0, "eig": 12.0, "cka": 0.9, "cka_paper": 0.8, "mc_error": -0.25, "mc_loss": -0.5,
              "wise": 0.03, "rebasin": -0.1}
    key = str(epoch)
    for m in z.members:
        atomic_write_json(z.member_dir(m) / "metrics.json", {key: {
            "hessian_top_eig": {"value": values["eig"]}, "hessian_trace": {"value": values["trace"], "stderr": 1.0}}})
        atomic_write_json(z.member_dir(m) / "downstream.json", {key: {
            "prune": {"acc": {"0.5": 0.5}, "finetuned_acc": {"0.5": 0.6}},
            "wise_ft": {"gain": values["wise"], "best_alpha": 0.5}}})
    for cell in z.cells:
        atomic_write_json(z.store.dir / "cells" / f"{cell}.json", {key: {"0-1": {
            "cka": {"value": values["cka"], "paper": values["cka_paper"]},
            "mc": {"mc_error": values["mc_error"], "mc_loss": values["mc_loss"]}}}})
        atomic_write_json(z.store.dir / "cells" / f"{cell}.downstream.json", {key: {
            "ensemble": {"ensemble_acc": 0.7, "gain": 0.01},
            "rebasin": {"0-1": {"gain": values["rebasin"], "naive_gain": -0.3}}}})
    return values


# ----------------------------------------------------------------------------- state dicts


@pytest.mark.parametrize("arch,blocks", [("resnet18", "basic"), ("resnet50", "bottleneck")])
def test_their_resnet_class_loads_our_exported_state_dict(arch, blocks):
    """Their ``ResNet18_width`` / ``ResNet50_width`` (``def_resnet_width.py``, ``ResNet_width``)
    at width 64 is torchvision's ResNet with the stem of their ``ResNetBase_width`` (3×3 stride-1
    conv, no max-pool): it loads our exported keys strictly and computes the same logits."""
    import torchvision.models.resnet as tv

    torch.manual_seed(0)
    ours = build_model(arch, width=64, in_channels=1, num_classes=10).eval()
    block, layers = (tv.BasicBlock, [2, 2, 2, 2]) if blocks == "basic" else (tv.Bottleneck, [3, 4, 6, 3])
    theirs = tv.ResNet(block, layers, num_classes=10)
    theirs.conv1 = torch.nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
    theirs.maxpool = torch.nn.Identity()
    exported = to_ptmz_state(ours.state_dict(), arch)
    assert any(".downsample." in k for k in exported) and "fc.weight" in exported
    theirs.load_state_dict(exported, strict=True)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(x), ours(x))
    back = from_ptmz_state({f"module.{k}": v for k, v in exported.items()}, arch)  # DataParallel's prefix
    assert back.keys() == ours.state_dict().keys()


def test_other_architectures_keep_our_keys():
    state = {"blocks.0.fc1.weight": torch.zeros(1), "linear.weight": torch.zeros(1)}
    assert to_ptmz_state(state, "vit") == state and from_ptmz_state(state, "vit") == state


# ----------------------------------------------------------------------------- export


def test_export_is_what_their_loader_and_model_class_read(trained, tmp_path):
    z = _copy(trained, tmp_path)
    values = _write_metrics(z, z.final_epoch)
    dest = tmp_path / "ptmz"
    assert export_ptmz(z, to=dest) == 4
    last = z.final_epoch
    for m in z.members:
        d = dest / m.member
        params = json.loads((d / "params.json").read_text())
        assert set(THEIR_MODEL_KEYS) <= set(params)
        assert params["model::type"] == "Resnet18_width"  # NNmodule_width's dispatch
        assert params["model::channels_in"] == 1 and params["model::o_dim"] == 10 and params["model::width"] == 1
        assert params["model::nlin"] == "relu" and params["model::dropout"] == 0.0
        assert params["optim::optimizer"] == "sgd" and params["optim::scheduler"] == "OneCycleLR"  # set_scheduler
        assert params["training::batchsize"] == m.batch_size and params["seed"] == m.seed
        assert params["training::epochs_train"] == last
        lines = [json.loads(line) for line in (d / "result.json").read_text().splitlines()]
        assert len(lines) == last + 1
        # NN_tune_trainable.setup: _iteration = -1, so line i is training_iteration i = epoch i
        assert [r["training_iteration"] for r in lines] == list(range(last + 1))
        assert [r["done"] for r in lines] == [False] * last + [True]
        assert all(r["config"]["training::batchsize"] == m.batch_size for r in lines)
        rows = MemberStore(z.member_dir(m)).read_results()
        assert [r["train_loss"] for r in lines] == [r["train_loss"] for r in rows]  # as recorded
        # metrics at the line of the epoch they were measured at, nowhere else
        assert "log_hessian_trace_train" not in lines[0]
        final = lines[last]
        assert final["log_hessian_trace_train"] == pytest.approx(math.log(values["trace"]))  # natural log
        assert final["log_hessian_top_ev_train"] == pytest.approx(math.log(values["eig"]))
        assert final["hessian_trace_train_mean"] == values["trace"]
        assert final["representation_similarity"] == values["cka_paper"]  # their (biased, per-batch) CKA
        assert final["curve_mc_train_error"] == pytest.approx(100 * values["mc_error"])  # percentage points
        assert final["curve_mc_train_loss"] == values["mc_loss"]
        assert final["wiseft_acc_test_delta"] == values["wise"]
        assert final["gitrebasin_acc_test_delta"] == values["rebasin"]
        # CheckpointConfig names checkpoint_{iteration:06d}; save_checkpoint writes `checkpoints`
        ckpts = sorted(p.name for p in d.iterdir() if p.name.startswith("checkpoint_"))
        assert ckpts == [f"checkpoint_{e:06d}" for e in m.checkpoint_epochs]
        state = torch.load(d / f"checkpoint_{last:06d}" / "checkpoints", weights_only=True)
        assert "fc.weight" in state and not any("shortcut" in k or k.startswith("linear.") for k in state)
        ours, _ = load_member(z.member_dir(m), last)
        assert from_ptmz_state(state, "resnet18").keys() == ours.state_dict().keys()
        for k, v in ours.state_dict().items():
            assert torch.equal(from_ptmz_state(state, "resnet18")[k], v)

    # their notebook: the line of an epoch, config unrolled, pivoted on batch size x width
    df = their_compile_configs(dest, last)
    df["ggap"] = df["train_acc"] - df["test_acc"]
    for key in (*THEIR_PLOT_KEYS, "ggap"):
        pivot = df.pivot_table(index="training::batchsize", columns="model::width", values=key)
        assert pivot.shape == (2, 1) and pivot.notna().all().all(), key
    # their scripts/*/compute_*.py: every params.json, grouped on batch size and width, seeds varying
    configs = pd.DataFrame([json.loads((d / "params.json").read_text()) for d in sorted(dest.iterdir())])
    groups = configs.groupby(["training::batchsize", "model::width"])["seed"].apply(sorted)
    assert groups.tolist() == [[0, 1], [0, 1]]


def test_export_of_other_architectures_uses_our_class_names(tmp_path):
    from phasezoo.publish.ptmz import ptmz_params

    spec = load_spec("digits-vit")
    m = spec.members("smoke")[0]
    params = ptmz_params(m)
    assert params["model::type"] == "vit" and "vit" not in MODEL_TYPES
    assert params["model::nlin"] == "gelu"
    assert all(params[f"model::{k}"] == v for k, v in m.model.items())


# ----------------------------------------------------------------------------- import


def test_round_trip_export_import_gives_the_same_table(trained, tmp_path, capsys):
    dest = tmp_path / "ptmz"
    export_ptmz(trained, to=dest)
    root = tmp_path / "imported"
    code, out, err = run_cli(["import", dest, "--format", "ptmz", "--name", "tiny-back", "--dataset", "digits",
                              "--root", root], capsys)
    assert code == 0, err
    assert "imported 4 members" in out
    back = Zoo.of(root / "tiny-back" / "spec.json", IMPORTED_PROFILE, root)
    by_name = Zoo.of("tiny-back", IMPORTED_PROFILE, root)  # the Python API resolves the name too
    assert by_name.spec == back.spec and by_name.store.dir == back.store.dir
    ours, theirs = zoo_table(trained), zoo_table(back)
    pd.testing.assert_frame_equal(ours, theirs)
    for m in trained.members:
        a, _ = load_member(trained.member_dir(m))
        b, _ = load_member(back.member_dir(m))
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    # the name resolves under its root like a packaged zoo
    for cmd in (["verify"], ["status"], ["table", "--csv", "-"]):
        code, out, err = run_cli([cmd[0], "tiny-back", "-p", IMPORTED_PROFILE, "--root", root, *cmd[1:]], capsys)
        assert code == 0, err
    assert "done=4" in run_cli(["status", "tiny-back", "-p", IMPORTED_PROFILE, "--root", root], capsys)[1]


def _their_params(width: int, batch_size: int, seed: int, epochs: int = 2) -> dict:
    """A params.json as their train script writes it (``scripts/*/train_zoo_*.py``, ``main``)."""
    return {"model::type": "Resnet18_width", "model::channels_in": 1, "model::o_dim": 10, "model::nlin": "relu",
            "model::dropout": 0.0, "model::init_type": "kaiming_uniform", "model::use_bias": False,
            "model::width": width, "optim::optimizer": "sgd", "optim::lr": 0.1, "optim::wd": 5e-4,
            "optim::momentum": 0.9, "optim::scheduler": "OneCycleLR", "training::loss": "crossentropy",
            "training::dataloader": "normal", "seed": seed, "training::batchsize": batch_size,
            "training::epochs_train": epochs, "training::output_epoch": 1, "training::data_path": "/ds2/x",
            "cuda": True}


def write_their_zoo(src: Path, widths=(1, 2), batch_sizes=(64,), seeds=(0,), epochs: int = 2,
                    checkpoints=(0, 2)) -> dict[str, dict]:
    """A zoo in their layout, as ray.tune and their trainable write it: one folder per trial
    (ray's long trial names), ``params.json``, ``result.json`` lines with ray's keys and the
    config, ``checkpoint_NNNNNN/checkpoints`` (their key names; one model saved through
    DataParallel, ``module.`` prefixed) beside the optimizer state. Returns folder -> what was
    written (params, result lines, state dicts)."""
    written = {}
    for i, (w, b, s) in enumerate((w, b, s) for w in widths for b in batch_sizes for s in seeds):
        params = _their_params(w, b, s, epochs)
        d = src / f"NN_tune_trainable_bf0b6_{i:05d}_{i}_model_width={w},seed={s},training_batchsize={b}_2024-05-22"
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps(params))
        g = torch.Generator().manual_seed(i)
        lines = []
        for e in range(epochs + 1):
            lines.append({"train_loss": 2.3 - 0.1 * e + 0.01 * i, "train_acc": 0.1 + 0.2 * e, "test_loss": 2.4 - 0.1 * e,
                          "test_acc": 0.1 + 0.15 * e, "timestamp": 1716370000 + e, "done": e == epochs,
                          "training_iteration": e, "trial_id": f"bf0b6_{i:05d}", "date": "2024-05-22_11-30-52",
                          "time_this_iter_s": 1.5, "time_total_s": 1.5 * (e + 1), "pid": 4242,
                          "hostname": "node", "node_ip": "10.0.0.1", "config": params,
                          "time_since_restore": 1.5 * (e + 1), "iterations_since_restore": e + 1})
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
        states = {}
        for e in checkpoints:
            model = build_model("resnet18", width=w, in_channels=1, num_classes=10)
            for p in model.parameters():
                p.data = torch.randn(p.shape, generator=g)
            state = to_ptmz_state(model.state_dict(), "resnet18")
            if i == 1:
                state = {f"module.{k}": v for k, v in state.items()}
            (d / f"checkpoint_{e:06d}").mkdir()
            torch.save(state, d / f"checkpoint_{e:06d}" / "checkpoints")
            torch.save({"state": {}, "param_groups": []}, d / f"checkpoint_{e:06d}" / "optimizer")
            states[e] = model.state_dict()
        written[d.name] = {"params": params, "lines": lines, "states": states}
    return written


def test_import_of_their_layout_keeps_their_results_and_weights(tmp_path, capsys):
    src = tmp_path / "their_zoo"
    written = write_their_zoo(src)
    root = tmp_path / "zoos"
    z = import_ptmz(src, "their-digits", "digits", root)
    assert [m.member for m in z.members] == ["w0001_b0064_s0", "w0002_b0064_s0"]
    assert z.settings.training.checkpoint_epochs == (0, 2)
    assert z.spec.profile(IMPORTED_PROFILE).training.scheduler["name"] == "onecycle_cosine"
    for m, their in zip(z.members, written.values()):
        rows = MemberStore(z.member_dir(m)).read_results()
        assert len(rows) == 3
        for row, line in zip(rows, their["lines"]):
            # recorded values kept as they are; ray's bookkeeping and the config dropped
            assert {k: row[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")} == \
                {k: line[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
            assert "config" not in row and "hostname" not in row and "training_iteration" not in row
        for e, state in their["states"].items():
            model, _ = load_member(z.member_dir(m), e)
            for k, v in state.items():
                assert torch.equal(model.state_dict()[k], v), k
    table = zoo_table(z)
    assert table["status"].tolist() == ["done", "done"]
    assert table["test_acc"].tolist() == pytest.approx([0.4, 0.4])
    # the stored spec travels with the zoo; the name resolves under --root
    assert load_spec("their-digits", root).name == "their-digits"
    code, out, err = run_cli(["metrics", "their-digits", "-p", IMPORTED_PROFILE, "--root", root, "--device", "cpu"],
                             capsys)
    assert code == 0, err
    assert zoo_table(z)["hessian_trace"].notna().all()


def _break(how: str, src: Path) -> None:
    """Spoil one file of a zoo in their layout in one way."""
    first = sorted(src.iterdir())[0]
    if how == "missing key":
        params = json.loads((first / "params.json").read_text())
        del params["training::batchsize"]
        (first / "params.json").write_text(json.dumps(params))
    elif how == "unknown class":
        params = json.loads((first / "params.json").read_text())
        params["model::type"] = "MiniAlexNet"
        (first / "params.json").write_text(json.dumps(params))
    elif how == "iteration":
        lines = (first / "result.json").read_text().splitlines()
        (first / "result.json").write_text("\n".join(lines[1:]) + "\n")  # ray's default: first line is iteration 1
    elif how == "partial":
        lines = (first / "result.json").read_text().splitlines()
        (first / "result.json").write_text("\n".join(lines[:-1]) + "\n")
    elif how == "truncated checkpoint":
        p = first / "checkpoint_000002" / "checkpoints"
        p.write_bytes(p.read_bytes()[:200])
    elif how == "pickled code":
        torch.save({"fc.weight": torch.zeros(1), "hook": Path("/")}, first / "checkpoint_000002" / "checkpoints")
    elif how == "wrong width":
        params = json.loads((first / "params.json").read_text())
        params["model::width"] = 4
        (first / "params.json").write_text(json.dumps(params))
    elif how == "incomplete grid":
        shutil.rmtree(first)
        write_their_zoo(src / "more", widths=(1,), batch_sizes=(128,))
        for d in (src / "more").iterdir():
            d.rename(src / f"x{d.name}")
        (src / "more").rmdir()
    elif how == "other dataset":
        params = json.loads((first / "params.json").read_text())
        params["model::channels_in"] = 3
        (first / "params.json").write_text(json.dumps(params))


@pytest.mark.parametrize("how,message", [
    ("missing key", "missing 'training::batchsize'"),
    ("unknown class", "model::type must be one of"),
    ("iteration", "holds training_iteration 1, expected 0"),
    ("partial", "holds 2 lines, expected 3"),
    ("truncated checkpoint", "torch.load(weights_only=True)"),
    ("pickled code", "torch.load(weights_only=True)"),
    ("wrong width", "does not fit a resnet18 of width 4"),
    ("incomplete grid", "do not fill a width × batch size × seed grid"),
    ("other dataset", "model::channels_in is 3, but digits has 1"),
])
def test_bad_input_is_one_line_and_writes_nothing(how, message, tmp_path, capsys):
    src = tmp_path / "their_zoo"
    write_their_zoo(src)
    _break(how, src)
    root = tmp_path / "zoos"
    code, out, err = run_cli(["import", src, "--name", "bad", "--dataset", "digits", "--root", root], capsys)
    assert code == 2 and err.startswith("phasezoo: error:") and err.count("\n") == 1, err
    assert message in err, err
    assert not root.exists()


@pytest.mark.parametrize("args,message", [
    (["--name", "digits-resnet18", "--dataset", "digits"], "is a packaged zoo"),
    (["--name", "Bad Name", "--dataset", "digits"], "must match"),
    (["--name", "ok", "--dataset", "nope"], "image classification"),
])
def test_bad_import_arguments(args, message, tmp_path, capsys):
    src = tmp_path / "their_zoo"
    write_their_zoo(src, widths=(1,))
    root = tmp_path / "zoos"
    code, _, err = run_cli(["import", src, *args, "--root", root], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not root.exists()


def test_import_refuses_an_existing_name_and_a_changed_spec(tmp_path, capsys):
    src = tmp_path / "their_zoo"
    write_their_zoo(src, widths=(1,))
    root = tmp_path / "zoos"
    import_ptmz(src, "mine", "digits", root)
    before = snapshot(root)
    code, _, err = run_cli(["import", src, "--name", "mine", "--dataset", "digits", "--root", root], capsys)
    assert code == 2 and "exists" in err and snapshot(root) == before
    # the stored spec is verified: a hand edit is refused, not used
    spec = root / "mine" / "spec.json"
    spec.write_text(spec.read_text().replace('"lr": 0.1', '"lr": 0.2'))
    code, _, err = run_cli(["table", "mine", "-p", IMPORTED_PROFILE, "--root", root], capsys)
    assert code == 2 and "sha256 mismatch" in err and err.count("\n") == 1


def test_checkpoints_only_lists_exactly_the_epochs_a_zoo_has(tmp_path):
    """An imported zoo plans the checkpoints it has; ``at`` still adds 0, the last and Wise-FT's."""
    only = load_spec(write_spec(tmp_path, TINY_SPEC.replace("checkpoints: {every: 2}", "checkpoints: {only: [1]}")))
    at = load_spec(write_spec(tmp_path, TINY_SPEC.replace("checkpoints: {every: 2}", "checkpoints: {at: [1]}"),
                              name="at.yaml"))
    assert only.profile("smoke").training.checkpoint_epochs == (1,)
    assert at.profile("smoke").training.checkpoint_epochs == (0, 1, 2, 3)


def test_a_stored_spec_names_its_book_pages_by_its_folder():
    from phasezoo.publish.book import zoo_slug

    assert zoo_slug("data/zoos/their-r18/spec.json") == "their-r18"


@pytest.mark.parametrize("arch", ["vit", "gpt", "pinn"])
def test_zoos_their_code_has_no_class_for_export_with_our_names(arch, tmp_path):
    """ViT, GPT and PINN zoos: the same layout, our class names and our state-dict keys."""
    from tests.test_domains import TINY_DOMAIN_SPECS

    z = Zoo.of(write_spec(tmp_path, TINY_DOMAIN_SPECS[arch], f"tiny-{arch}.yaml"), "smoke", tmp_path / "zoos")
    train_zoo(z, device="cpu", progress=False)
    dest = tmp_path / "ptmz"
    assert export_ptmz(z, to=dest) == len(z.members)
    for m in z.members:
        d = dest / m.member
        params = json.loads((d / "params.json").read_text())
        assert params["model::type"] == arch and params["model::width"] == m.width
        assert all(params[f"model::{k}"] == v for k, v in m.model.items())
        lines = [json.loads(line) for line in (d / "result.json").read_text().splitlines()]
        assert [r["training_iteration"] for r in lines] == list(range(m.epochs + 1))
        assert all(r["config"]["model::type"] == arch for r in lines)
        state = torch.load(d / f"checkpoint_{m.epochs:06d}" / "checkpoints", weights_only=True)
        _, ours = MemberStore(z.member_dir(m)).load_checkpoint(m.epochs)
        assert state.keys() == ours.keys() and all(torch.equal(state[k], ours[k]) for k in ours)
