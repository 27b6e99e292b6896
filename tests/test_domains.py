"""The ViT, GPT and PINN zoos: paper grids (Tables 2-4), the PDE task against its exact
solution, the tasks through the one training loop, and the Tables 5-7 summary."""

from __future__ import annotations

import math

import pytest
import torch

from phasezoo.errors import SpecError
from phasezoo.spec import list_zoos, load_spec
from phasezoo.tasks import ConvectionTask, LanguageModelTask, task_for

from tests.conftest import write_spec

PAPER_ZOOS = {
    "cifar10-resnet18", "cifar10-resnet50", "cifar100-resnet18", "cifar100-resnet50",
    "svhn-resnet18", "svhn-resnet50", "tinyimagenet-resnet18", "tinyimagenet-resnet50",
    "cifar10-vit", "cifar100-vit", "openwebtext-gpt2", "convection-pinn",
}


def test_all_twelve_paper_zoos_and_the_embedded_ones_are_listed():
    zoos = set(list_zoos())
    assert PAPER_ZOOS <= zoos
    assert {"digits-resnet18", "digits-vit", "text-gpt"} <= zoos


@pytest.mark.parametrize("name,wd", [("cifar10-vit", 5e-4), ("cifar100-vit", 5e-2)])
def test_vit_paper_profile_is_table_2(name, wd):
    members = load_spec(name).members("paper")
    assert len(members) == 147
    assert sorted({m.width for m in members}) == [6, 12, 24, 48, 60, 96, 192]
    assert sorted({m.batch_size for m in members}) == [8, 16, 32, 64, 128, 256, 512]
    assert sorted({m.seed for m in members}) == [0, 1, 2]
    m = members[0]
    assert (m.arch, m.optimizer, m.lr, m.weight_decay, m.scheduler["name"]) == ("vit", "adamw", 6e-3, wd,
                                                                                "onecycle_cosine")
    assert m.load_axis == "model_dim" and m.member.startswith("d0006_b0008")
    if name == "cifar100-vit":  # the stronger augmentation of appendix A.2
        assert {"random_crop", "random_erasing", "color_jitter", "randaugment"} <= set(m.augmentation)


def test_gpt_paper_profile_is_table_3():
    members = load_spec("openwebtext-gpt2").members("paper")
    assert len(members) == 192
    assert sorted({m.width for m in members}) == [192, 276, 384, 540, 768, 1092, 1536, 2172]
    assert sorted({m.batch_size for m in members}) == [32, 64, 128, 256, 512, 1024, 2048, 4096]
    assert sorted({m.seed for m in members}) == [1, 2, 3]
    m = members[0]
    assert (m.task, m.arch, m.dataset, m.optimizer, m.lr, m.weight_decay) == (
        "language_modelling", "gpt", "openwebtext", "adamw", 6e-4, 0.1)
    assert all(w % m.model["heads"] == 0 for w in {x.width for x in members})


def test_pinn_paper_profile_is_table_4():
    spec = load_spec("convection-pinn")
    members = spec.members("paper")
    assert len(members) == 420
    assert sorted({m.seed for m in members}) == [0, 123, 2023, 54321, 123456]
    assert {m.width for m in members} == {50} and members[0].model == {"depth": 4}
    assert {m.optimizer for m in members} == {"lbfgs"}
    assert members[0].optimizer_options["line_search"] == "strong_wolfe"
    assert members[0].optimizer_options["history_size"] == 50
    assert {m.batch_size for m in members} == {1356}  # full batch
    assert max(m.lr for m in members) == 1.0  # Table 4's rate is the grid's largest
    assert (spec.load_axis, spec.temperature_axis) == ("beta", "lr")
    assert members[0].member == "beta1_lr0.01_s0"


def test_spec_rejects_mismatched_task_arch_and_data(tmp_path):
    text = """\
    arch: gpt
    dataset: digits
    profiles: {smoke: {grid: {width: [8], batch_size: [8], seed: [0]}}}
    training: {optimizer: adamw, lr: 0.001, epochs: 1}
    """
    with pytest.raises(SpecError, match="do not fit together"):
        load_spec(write_spec(tmp_path, text))


def test_exact_convection_solution_has_zero_residual():
    """u*(x, t) = sin(x − βt) solves u_t + β u_x = 0: the task's autograd residual vanishes, and
    the exact solution has zero PDE loss and zero relative error on every kind of point."""
    from phasezoo.data import load_dataset

    beta = 30.0
    task = ConvectionTask(beta)
    data = load_dataset("convection")
    exact = lambda x: torch.sin(x[:, :1] - beta * x[:, 1:2])  # noqa: E731
    res = task.residual(exact, data.train_x.double())
    assert res.abs().max() < 1e-10
    # float32 targets sin(x) limit this to ~1e-15
    assert float(task.batch_loss(exact, data.train_x.double(), data.train_y.double()).detach()) < 1e-12
    # a wrong solution (wrong beta) has a residual of order beta
    wrong = lambda x: torch.sin(x[:, :1] - 0.5 * beta * x[:, 1:2])  # noqa: E731
    assert task.residual(wrong, data.train_x.double()).abs().max() > 1.0


def test_convection_points_cover_the_domain():
    from phasezoo.data import DATASETS, load_dataset

    d = load_dataset("convection")
    kinds = d.train_y[:, 0]
    assert (d.num_train, d.num_test) == (DATASETS["convection"].num_train, DATASETS["convection"].num_test)
    assert int((kinds == 0).sum()) == 256 and int((kinds == 1).sum()) == 100 and int((kinds == 2).sum()) == 1000
    assert torch.allclose(d.train_y[kinds == 0, 1], torch.sin(d.train_x[kinds == 0, 0]), atol=1e-6)
    assert float(d.train_x[:, 0].max()) < 2 * math.pi and float(d.train_x[:, 1].max()) == 1.0


def test_language_model_task_scores():
    task = LanguageModelTask()
    logits = torch.full((2, 3, 5), -1e4)
    y = torch.tensor([[1, 2, 3], [4, 0, 1]])
    logits.scatter_(2, y[..., None], 0.0)  # certain and right: loss 0, perplexity 1
    model = lambda x: logits  # noqa: E731
    model.eval = lambda: None  # a bare function stands in for a module
    model.train = lambda mode=True: None
    model.training = False
    out = task.evaluate(model, torch.zeros(2, 3, dtype=torch.long), y)
    assert out["loss"] < 1e-6 and abs(out["perplexity"] - 1.0) < 1e-6 and out["accuracy"] == 1.0
    uniform = torch.zeros(1, 4, 5)
    assert abs(float(task.loss(uniform, torch.zeros(1, 4, dtype=torch.long))) - math.log(5)) < 1e-6


PINN_SPEC = """\
name: tiny-pinn
task: pde_convection
arch: pinn
dataset: convection
model: {width: 8, depth: 2}
axes: {load: beta, temperature: lr}
training:
  optimizer: lbfgs
  batch_size: full
  scheduler: constant
  epochs: 3
  lbfgs: {max_iter: 5}
  checkpoints: {every: 1}
profiles:
  smoke:
    grid: {beta: [1, 30], lr: [1.0], seed: [0]}
"""


def test_pinn_trains_with_lbfgs_and_resumes_bit_identically(tmp_path):
    from phasezoo.store import MemberStore
    from phasezoo.train import train_member

    spec = load_spec(write_spec(tmp_path, PINN_SPEC, "tiny-pinn.yaml"))
    member = spec.members("smoke")[0]
    assert task_for(member.to_dict()).beta == 1.0
    full = train_member(member, tmp_path / "full")
    assert full.status == "done" and full.last_epoch == 3
    part = train_member(member, tmp_path / "resumed", stop_after_epoch=1)
    assert part.status == "partial"
    resumed = train_member(member, tmp_path / "resumed")
    assert resumed.status == "done"
    a = MemberStore(tmp_path / "full").read_results()
    b = MemberStore(tmp_path / "resumed").read_results()
    keys = ("train_loss", "test_loss", "train_error", "test_error")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert a[-1]["train_loss"] < a[0]["train_loss"]
    _, wa = MemberStore(tmp_path / "full").load_checkpoint(3)
    _, wb = MemberStore(tmp_path / "resumed").load_checkpoint(3)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_summary_table_gives_mean_std_min_max(tmp_path):
    from phasezoo.analysis.report import summary_table
    from phasezoo.zoo import train_zoo

    spec = load_spec(write_spec(tmp_path, PINN_SPEC, "tiny-pinn.yaml"))
    train_zoo(spec, "smoke", tmp_path / "zoos")
    table = summary_table([spec], "smoke", tmp_path / "zoos")
    row = table.iloc[0]
    assert row["members"] == 2 and set(table.columns) >= {"train_loss", "test_error"}
    mean, rest = row["test_error"].split(" ± ")
    lo, hi = rest.split("[")[1].rstrip("]").split(", ")
    assert float(lo) <= float(mean) <= float(hi)
    from phasezoo.zoo import zoo_history

    hist = zoo_history(spec, "smoke", tmp_path / "zoos")
    assert len(hist) == 2 * 4  # two members, epochs 0..3
    assert {"beta", "lr", "seed", "epoch", "train_loss", "test_error"} <= set(hist.columns)
    assert sorted(hist["beta"].unique()) == [1.0, 30.0]


def test_summary_tables_are_one_per_domain_with_its_own_columns(tmp_path):
    from phasezoo.analysis.report import SUMMARY_COLUMNS, summary_tables
    from phasezoo.zoo import train_zoo
    from tests.conftest import TINY_SPEC

    pinn = load_spec(write_spec(tmp_path, PINN_SPEC, "tiny-pinn.yaml"))
    digits = load_spec(write_spec(tmp_path, TINY_SPEC))
    for spec in (pinn, digits):
        train_zoo(spec, "smoke", tmp_path / "zoos", progress=False)
    tables = summary_tables([pinn, digits], "smoke", tmp_path / "zoos")
    assert list(tables) == ["Table 5: vision", "Table 7: SciML"]  # in the paper's order, language absent
    fixed = ["zoo", "arch", "dataset", "members"]
    assert list(tables["Table 5: vision"].columns) == fixed + list(SUMMARY_COLUMNS["classification"])
    assert list(tables["Table 7: SciML"].columns) == fixed + list(SUMMARY_COLUMNS["pde_convection"])
    assert list(tables["Table 7: SciML"]["zoo"]) == ["tiny-pinn"]
    assert all(v for t in tables.values() for v in t.to_numpy().ravel())  # no empty cell in any table


_CHEAP = """\
metrics:
  hessian: {num_batches: 1, batch_size: 32, max_iter: 5, tol: 1.0e-2}
  cka: {batch_size: 64, num_batches: 2}
  mode_connectivity: {epochs: 1, lr: 0.001, batch_size: 128}
downstream:
  prune: {sparsities: [0.5], finetune_epochs: 1, batch_size: 128}
  finetune: {epochs: 1}
"""
TINY_DOMAIN_SPECS = {
    "vit": """\
name: tiny-vit
arch: vit
dataset: digits
model: {depth: 1, heads: 3, patch_size: 2}
axes: {load: model_dim, temperature: batch_size}
training: {optimizer: adamw, lr: 0.003, epochs: 2, checkpoints: {every: 1}}
profiles: {smoke: {grid: {model_dim: [6], batch_size: [256], seed: [0, 1]}}}
""",
    "gpt": """\
name: tiny-gpt
task: language_modelling
arch: gpt
dataset: stdlib-text
model: {depth: 1, heads: 2}
axes: {load: model_dim, temperature: batch_size}
training: {optimizer: adamw, lr: 0.003, epochs: 2, checkpoints: {every: 1}}
phases: {mc_metric: mc_loss}
profiles: {smoke: {grid: {model_dim: [8], batch_size: [512], seed: [1, 2]}}}
""",
    "pinn": PINN_SPEC.replace("grid: {beta: [1, 30], lr: [1.0], seed: [0]}",
                              "grid: {beta: [1], lr: [1.0], seed: [0, 1]}").replace("epochs: 3", "epochs: 2"),
}


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(TINY_DOMAIN_SPECS))
def test_metrics_and_downstream_run_for_every_domain(tmp_path, arch):
    """Each domain goes through training, the landscape metrics and the downstream methods via
    its task: every metric and downstream column is filled and finite."""
    from phasezoo.downstream.runner import run_downstream
    from phasezoo.landscape.runner import compute_metrics
    from phasezoo.analysis.table import zoo_table
    from phasezoo.zoo import train_zoo

    spec = load_spec(write_spec(tmp_path, TINY_DOMAIN_SPECS[arch] + _CHEAP, f"tiny-{arch}.yaml"))
    root = tmp_path / "zoos"
    train_zoo(spec, "smoke", root, device="cpu")
    compute_metrics(spec, "smoke", root, device="cpu")
    run_downstream(spec, "smoke", root, device="cpu")
    df = zoo_table(spec, "smoke", root)
    cols = ["hessian_top_eig", "hessian_trace", "cka", "mc_error", "mc_loss", "prune_acc_0.5",
            "prune_ft_acc_0.5", "wise_ft_gain", "wise_ft_alpha", "ensemble_acc", "rebasin_gain", "naive_avg_gain"]
    if arch == "gpt":  # pruning with and without the (tied) embeddings
        cols += ["prune_noemb_acc_0.5", "prune_noemb_ft_acc_0.5"]
    assert (df["status"] == "done").all()
    values = df[cols].astype(float)
    assert values.notna().all().all() and torch.isfinite(torch.tensor(values.to_numpy())).all()
    assert ((df["cka"] >= -1e-6) & (df["cka"] <= 1 + 1e-6)).all()
    assert ("finetune_full_acc" in df) == (arch == "vit")  # transfer: image zoos only
    assert ("prune_noemb_acc_0.5" in df) == (arch == "gpt")  # only the GPT has embedding tables
