"""Zoo specs: the paper's Table 2 exactly, and one-line errors for invalid values."""

import json

import pytest

from phasezoo.errors import SpecError
from phasezoo.spec import list_zoos, load_spec, plan_json
from tests.conftest import TINY_SPEC, write_spec

RESNET_ZOOS = [f"{d}-{a}" for d in ("svhn", "cifar10", "cifar100", "tinyimagenet")
               for a in ("resnet18", "resnet50")]

# Paper appendix A.2, Table 2 (ResNet column).
TABLE2_WIDTHS = (2, 4, 8, 16, 32, 64, 128, 256)
TABLE2_BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)


def test_all_resnet_zoos_and_the_embedded_one_are_listed():
    zoos = list_zoos()
    assert set(RESNET_ZOOS) <= set(zoos)
    assert "digits-resnet18" in zoos
    for z in zoos:
        assert set(load_spec(z).profiles) >= {"paper", "mini", "smoke"}


@pytest.mark.parametrize("name", RESNET_ZOOS)
def test_paper_profile_is_table_2(name):
    spec = load_spec(name)
    dataset, arch = name.split("-")
    assert (spec.arch, spec.dataset) == (arch, dataset)
    paper = spec.profile("paper")
    assert paper.grid["width"] == TABLE2_WIDTHS
    assert paper.grid["batch_size"] == TABLE2_BATCH_SIZES
    assert paper.grid["seed"] == (0, 1, 2)
    t = paper.training
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay) == ("sgd", 0.1, 0.9, 5e-4)
    assert t.scheduler["name"] == "onecycle_cosine"
    assert t.scheduler["final_div_factor"] == 1e4  # the paper's "decay by 1e4"
    assert t.init == "kaiming_uniform"
    assert t.augmentation == {"random_crop": {"padding": 4}, "hflip": True, "rotation": 20.0}
    assert t.epochs == 150
    assert len(t.checkpoint_epochs) == 31 and t.checkpoint_epochs[-1] == 150
    members = spec.members("paper")
    assert len(members) == 192
    assert len({m.member for m in members}) == 192


def test_plan_json_has_the_documented_keys():
    plan = json.loads(plan_json(load_spec("cifar10-resnet18"), "paper"))
    assert len(plan) == 192
    keys = {"member", "zoo", "arch", "dataset", "width", "batch_size", "seed", "optimizer", "lr",
            "momentum", "weight_decay", "epochs"}
    assert keys <= set(plan[0])
    assert {(p["width"], p["batch_size"], p["seed"]) for p in plan} == {
        (w, b, s) for w in TABLE2_WIDTHS for b in TABLE2_BATCH_SIZES for s in (0, 1, 2)}


def test_member_names_sort_by_grid_coordinates():
    names = [m.member for m in load_spec("cifar10-resnet18").members("paper")]
    assert names == sorted(names)
    assert names[0] == "w0002_b0008_s0"


def test_digits_mini_profile_fits_the_train_set():
    spec = load_spec("digits-resnet18")
    assert max(spec.profile("mini").grid["batch_size"]) <= 1437
    assert spec.profile("smoke").size == 8


def test_digits_paper_profile_rejects_nothing_it_lists():
    # batch size 1024 fits the 1437 digits, so the paper grid is valid on digits too
    assert load_spec("digits-resnet18").profile("paper").size == 192


@pytest.mark.parametrize("old,new,message", [
    ("width: [1]", "width: [-2]", "grid.width contains -2"),
    ("width: [1]", "width: [1.5]", "grid.width contains 1.5"),
    ("optimizer: sgd", "optimizer: rmsprop", "unknown value 'rmsprop'"),
    ("batch_size: [256, 512]", "batch_size: [256, 4096]", "batch size 4096 is larger than the 1437"),
    ("lr: 0.1", "lr: -0.1", "training.lr must be > 0"),
    ("epochs: 3", "epochs: 0", "training.epochs must be a positive integer"),
    ("dataset: digits", "dataset: mnist", "unknown value 'mnist'"),
    ("momentum: 0.9", "momentum: 1.5", "momentum must lie in"),
    ("augmentation: {random_crop: {padding: 1}}", "augmentation: {mixup: 1}", "augmentation"),
    ("checkpoints: {every: 2}", "checkpoints: {every: 0}", "checkpoints.every"),
    ("  smoke:", "  smoke:\n    bogus: 1", "unknown key 'bogus'"),
])
def test_invalid_values_give_one_line_errors(tmp_path, old, new, message):
    assert old in TINY_SPEC
    path = write_spec(tmp_path, TINY_SPEC.replace(old, new))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_zoo_and_profile():
    with pytest.raises(SpecError, match="unknown zoo 'cifar11-resnet18'"):
        load_spec("cifar11-resnet18")
    with pytest.raises(SpecError, match="no profile 'huge'"):
        load_spec("digits-resnet18").members("huge")


def test_broken_yaml(tmp_path):
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(write_spec(tmp_path, "name: [unclosed\n"))


def test_checkpoint_epochs_always_include_first_and_last(tiny_spec):
    t = load_spec(tiny_spec).profile("smoke").training
    assert t.checkpoint_epochs == (0, 2, 3)


def test_wise_ft_early_epoch_is_half_of_training_never_the_initialisation():
    from phasezoo.spec import WISE_FT_EARLY_FRACTION, wise_ft_early_epoch

    assert WISE_FT_EARLY_FRACTION == 0.5
    assert [wise_ft_early_epoch(t) for t in (1, 2, 3, 4, 15, 40, 150)] == [None, 1, 2, 2, 8, 20, 75]


@pytest.mark.parametrize("name", list_zoos())
def test_every_zoo_stores_the_wise_ft_early_checkpoint(name):
    """Wise-FT needs θ_early: every profile of every zoo keeps that epoch's weights (or trains a
    single epoch, where there is none and Wise-FT is skipped with the reason)."""
    from phasezoo.spec import wise_ft_early_epoch

    spec = load_spec(name)
    for pname, prof in spec.profiles.items():
        t = prof.training
        early = wise_ft_early_epoch(t.epochs)
        assert early in t.checkpoint_epochs if early is not None else t.epochs == 1, (name, pname)


def test_an_every_schedule_gains_the_wise_ft_epoch(tmp_path):
    spec = load_spec(write_spec(tmp_path, TINY_SPEC.replace("epochs: 3", "epochs: 15").replace(
        "checkpoints: {every: 2}", "checkpoints: {every: 5}")))
    assert spec.profile("smoke").training.checkpoint_epochs == (0, 5, 8, 10, 15)


def test_an_old_wise_ft_setting_is_refused(tmp_path):
    with pytest.raises(SpecError, match="wise_ft"):
        load_spec(write_spec(tmp_path, TINY_SPEC + "downstream: {wise_ft: {k: 3}}\n"))


@pytest.mark.parametrize("section,message", [
    ("downstream: {finetune: {target: imagenet}}", "unknown value 'imagenet'"),
    ("downstream: {prune: {sparsities: [0.5, 1.5]}}", "numbers in (0, 1)"),
    ("metrics: {hessian: {trace_method: xtrace}}", "unknown value 'xtrace'"),
    ("metrics: {mode_connectivity: {num_t: 3}}", "at least 5"),
    ("phases: {cka: -1}", "non-negative"),
])
def test_invalid_metric_downstream_and_phase_settings(tmp_path, section, message):
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(tmp_path, TINY_SPEC + section + "\n"))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_paper_resnet_zoos_transfer_to_stl10_and_digits_to_rotated_digits():
    assert load_spec("cifar10-resnet18").profile("paper").downstream["finetune"]["target"] == "stl10"
    assert load_spec("digits-resnet18").profile("mini").downstream["finetune"]["target"] == "digits-rot90"


def test_every_zoo_says_which_way_its_axes_run(tmp_path):
    """Width and model_dim lower the load, beta raises it; batch size lowers the temperature, the
    PINNs' learning rate raises it (stated in each zoo file; defaults for files that do not)."""
    from pathlib import Path

    import phasezoo
    for f in (Path(phasezoo.__file__).parent / "zoos").glob("*.yaml"):
        text = f.read_text()
        assert ("\naxes:" in text) == ("\naxis_directions:" in text), f.name  # stated where the axes are
    for name in list_zoos():
        spec = load_spec(name)
        want_load = "increasing" if spec.load_axis == "beta" else "decreasing"
        want_temp = "increasing" if spec.temperature_axis == "lr" else "decreasing"
        assert (spec.load_direction, spec.temperature_direction) == (want_load, want_temp), name
    # a file without the key gets the default for its axes; a wrong value is one line
    spec = load_spec(write_spec(tmp_path, TINY_SPEC))
    assert (spec.load_direction, spec.temperature_direction) == ("decreasing", "decreasing")
    bad = TINY_SPEC.replace("dataset: digits", "dataset: digits\naxis_directions: {load: upwards}")
    with pytest.raises(SpecError, match="axis_directions.load: unknown value 'upwards'"):
        load_spec(write_spec(tmp_path, bad))
    flipped = TINY_SPEC.replace("dataset: digits", "dataset: digits\naxis_directions: {temperature: increasing}")
    assert load_spec(write_spec(tmp_path, flipped)).temperature_direction == "increasing"
