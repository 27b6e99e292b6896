"""The metrics runner: every value stored with its settings, resumable, joined onto the table."""

import json
import math

import pytest

from phasezoo import zoo as zoo_ops
from phasezoo.analysis.table import zoo_table
from phasezoo.cli import main
from phasezoo.landscape.runner import compute_metrics
from phasezoo.store import load_member
from tests.conftest import TINY_SPEC, write_spec

# two seeds so the cell has a pair; cheap metric settings
SPEC = TINY_SPEC.replace("seed: [0]", "seed: [0, 1]").replace("batch_size: [256, 512]", "batch_size: [256]") + """\
metrics:
  hessian: {num_batches: 2, batch_size: 32, max_iter: 20, tol: 1.0e-2, trace_max_iter: 30}
  cka: {batch_size: 64, num_batches: 3}
  mode_connectivity: {epochs: 1, batch_size: 256, min_steps: 0, plateau_tol: 10.0}
phases: {train_loss: 0.5, hessian_trace: 1000, mc: 0.05, cka: 0.5}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    spec = write_spec(tmp, SPEC)
    root = tmp / "zoos"
    zoo_ops.train_zoo(spec, "smoke", root, device="cpu", progress=False)
    info = compute_metrics(spec, "smoke", root, device="cpu", progress=False)
    return spec, root, info


def test_every_metric_is_stored_with_its_settings(trained):
    spec, root, info = trained
    assert info["tasks"] == 3  # two members' Hessians, one seed pair
    zdir = root / "tiny-digits" / "smoke"
    m = json.loads((zdir / "w0001_b0256_s0" / "metrics.json").read_text())["3"]
    assert m["hessian_trace"]["settings"]["max_iter"] == 30
    assert m["hessian_trace"]["settings"]["rel_stderr"] == 0.05
    assert m["hessian_trace"]["stderr"] is not None and 10 <= m["hessian_trace"]["iterations"] <= 30
    assert math.isfinite(m["hessian_top_eig"]["value"])
    cell = json.loads((zdir / "cells" / "w0001_b0256.json").read_text())["3"]["0-1"]
    assert cell["cka"]["num_samples"] == 192 and cell["cka"]["batch_size"] == 64
    assert "unbiased" in cell["cka"]["estimator"] and "per batch of 64" in cell["cka"]["paper_estimator"]
    # the unbiased estimator's chance value is near 0 (its ground truth: tests/test_cka.py)
    assert abs(cell["cka"]["chance"]) < 0.1 and 0.0 <= cell["cka"]["paper_chance"] <= 1.0
    # these width-1 models train 3 epochs and test at 10-17% accuracy (chance: 10%), so their CKA
    # sits at chance, above or below it by the draw; that the estimator separates shared signal
    # from chance is tested on constructed data (tests/test_cka.py)
    assert -1.0 <= cell["cka"]["value"] <= 1.0 and abs(cell["cka"]["value"] - cell["cka"]["chance"]) < 0.2
    assert cell["mc"]["settings"]["epochs"] == 1 and len(cell["mc"]["t"]) == 5
    diag = cell["mc"]["diagnostics"]
    assert isinstance(diag["converged"], bool) and diag["convergence"] and len(diag["loss_endpoints"]) == 2
    assert diag["loss_mid_after"] == cell["mc"]["loss"][2]
    phases = json.loads((zdir / "phases.json").read_text())["3"]
    assert phases["thresholds"]["train_loss"] == 0.5 and phases["calibration"]["cka"]["source"] == "spec"


def test_rerun_computes_nothing_new(trained):
    spec, root, _ = trained
    assert compute_metrics(spec, "smoke", root, device="cpu", progress=False)["tasks"] == 0


def test_table_gains_metric_columns_and_phase(trained):
    spec, root, _ = trained
    df = zoo_table(spec, "smoke", root)
    for col in ("hessian_top_eig", "hessian_trace", "hessian_trace_stderr", "cka", "cka_paper", "cka_chance",
                "mc_error", "mc_loss", "mc_error_chord", "curve_converged", "phase_confidence"):
        assert df[col].notna().all(), col
    assert df["cka"].nunique() == 1  # a cell value, repeated on each member of the cell
    assert df["phase"].iloc[0] in ("I", "II", "III", "IV-A", "IV-B", "unassigned")
    assert df["phase"].nunique() == 1
    # the configured rate, not the one-cycle schedule's rate at the last step
    assert (df["lr"] == 0.1).all() and (df["lr_last"] < 1e-4).all()


def test_changed_settings_are_recomputed(trained, tmp_path):
    spec, root, _ = trained
    text = spec.read_text().replace("num_batches: 3}", "num_batches: 2}")
    spec2 = write_spec(spec.parent, text, name="tiny-digits.yaml")
    assert compute_metrics(spec2, "smoke", root, device="cpu", progress=False)["tasks"] == 1
    spec.write_text(SPEC)


def test_phases_command_prints_map_and_sensitivity(trained, capsys):
    spec, root, _ = trained
    with pytest.raises(SystemExit) as e:
        main(["phases", str(spec), "-p", "smoke", "--root", str(root)])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "phase map" in out and "sensitivity" in out and "label confidence" in out
    assert "train_loss = 0.5  [spec" in out and "phase counts" in out


def test_metrics_before_training_is_an_error(tmp_path, capsys):
    spec = write_spec(tmp_path, SPEC)
    with pytest.raises(SystemExit) as e:
        main(["metrics", str(spec), "-p", "smoke", "--root", str(tmp_path / "none")])
    assert e.value.code == 2 and "run `phasezoo train` first" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_zoo_dataset_yields_weights_and_properties(trained):
    import torch

    from phasezoo.wsl import ZooDataset

    spec, root, _ = trained
    ds = ZooDataset(spec, "smoke", root)
    assert len(ds) == 2
    item = ds[0]
    n_params = sum(p.numel() for p in load_member(root / "tiny-digits" / "smoke" / item["member"])[0].parameters())
    assert item["weights"].shape == (n_params,)  # every parameter, no BatchNorm buffers
    assert item["properties"]["phase"] in ("I", "II", "III", "IV-A", "IV-B", "unassigned")
    per_layer = ZooDataset(spec, "smoke", root, epoch=0, flat=False)[0]["weights"]
    assert "linear.weight" in per_layer and "bn1.running_mean" not in per_layer
    assert torch.equal(per_layer["linear.bias"], torch.zeros(10))  # epoch 0: initial weights
    with pytest.raises(Exception, match="no members"):
        ZooDataset(spec, "smoke", root, phases=["nonexistent"])
    # layers in the model's own order, with a layout that unflattens the vector
    model, _ = load_member(root / "tiny-digits" / "smoke" / item["member"])
    names = [n for n in model.state_dict() if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert [e[0] for e in item["layout"]] == names
    assert names[0] == "conv1.weight" and names[-1] == "linear.bias"  # stem first, head last
    for name, shape, offset, kind in item["layout"]:
        n = int(torch.tensor(shape).prod()) if shape else 1
        assert torch.equal(item["weights"][offset: offset + n].view(shape), model.state_dict()[name]), name
        assert kind == "parameter"
    assert len(ZooDataset(spec, "smoke", root, cells=[item["member"].rsplit("_", 1)[0]])) == 2
    assert {"ensemble_acc", "prune_acc_0.9", "hessian_trace"} <= set(item["properties"])


def test_zoo_dataset_batches_mixed_widths_and_early_epochs(tmp_path):
    import math

    import torch
    from torch.utils.data import DataLoader

    from phasezoo.wsl import ZooDataset, collate_zoo

    spec = write_spec(tmp_path, TINY_SPEC.replace("width: [1]", "width: [1, 2]").replace(
        "batch_size: [256, 512]", "batch_size: [512]").replace("epochs: 3", "epochs: 1"))
    root = tmp_path / "zoos"
    zoo_ops.train_zoo(spec, "smoke", root, device="cpu", progress=False)
    ds = ZooDataset(spec, "smoke", root, epoch=0)  # no metrics, no phases at epoch 0
    item = ds[0]
    assert item["properties"]["phase"] == "none" and math.isnan(item["properties"]["hessian_trace"])
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate_zoo)))
    lengths = [len(ds[i]["weights"]) for i in range(2)]
    assert lengths[0] != lengths[1] and batch["weights"].shape == (2, max(lengths))
    assert batch["lengths"].tolist() == lengths and batch["mask"].sum(1).tolist() == lengths
    short = lengths.index(min(lengths))
    assert torch.equal(batch["weights"][short, : lengths[short]], ds[short]["weights"])
    assert not batch["weights"][short, lengths[short]:].any()
    assert batch["properties"]["width"].tolist() == [1.0, 2.0] and batch["properties"]["phase"] == ["none", "none"]
    assert len(ZooDataset(spec, "smoke", root, epoch=0, widths=[2])) == 1
    per_layer = next(iter(DataLoader(ZooDataset(spec, "smoke", root, epoch=0, flat=False), batch_size=2,
                                     collate_fn=collate_zoo)))
    assert isinstance(per_layer["weights"], list) and len(per_layer["weights"]) == 2


def test_probe_command_on_a_zoo_too_small_to_split(trained, capsys):
    spec, root, _ = trained
    with pytest.raises(SystemExit) as e:
        main(["probe", str(spec), "-p", "smoke", "--root", str(root)])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "test_acc" in out and "cells" in out  # each property carries a note instead of an R²


def test_downstream_runs_resumably_and_fills_the_table(trained):
    from phasezoo.downstream.runner import run_downstream

    spec, root, _ = trained
    settings = {"prune": {"sparsities": [0.5, 0.9], "finetune_epochs": 1, "lr": 0.01, "batch_size": 256},
                "finetune": {"target": "digits-rot90", "epochs": 1, "batch_size": 256}}
    info = run_downstream(spec, "smoke", root, device="cpu", progress=False, settings=settings)
    assert info["tasks"] == 3  # two members, one cell
    assert run_downstream(spec, "smoke", root, device="cpu", progress=False, settings=settings)["tasks"] == 0
    df = zoo_table(spec, "smoke", root)
    for col in ("prune_acc_0.5", "prune_ft_acc_0.9", "wise_ft_gain", "finetune_linear_acc",
                "finetune_full_acc", "ensemble_acc", "ensemble_gain", "rebasin_gain", "naive_avg_gain"):
        assert df[col].notna().all(), col
    assert ((df["finetune_full_acc"] >= 0) & (df["finetune_full_acc"] <= 1)).all()
    assert df["ensemble_acc"].nunique() == 1  # a cell value


def test_forward_order_names_every_parameter_of_a_vit():
    from phasezoo.spec import load_spec
    from phasezoo.wsl.dataset import forward_order

    config = load_spec("digits-vit").members("smoke")[0].to_dict()
    kinds = forward_order(config)
    assert list(kinds)[:3] == ["cls", "pos", "patch.weight"]  # the class token is trained: a parameter
    assert set(kinds.values()) == {"parameter"} and list(kinds)[-1] == "linear.bias"
