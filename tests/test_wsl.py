"""Weight-space probe (phasezoo.wsl): features, ridge probe, phase probe. Synthetic and fast."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from phasezoo.errors import PhaseZooError
from phasezoo.wsl import cell_of, fit_probe, probe_phase, probe_properties, weight_statistics, zoo_features
from tests.conftest import TINY_SPEC, write_spec

FAST = {"Cs": (0.1, 1.0, 10.0), "n_folds": 3}  # a small C grid keeps the phase tests quick


# -- features ---------------------------------------------------------------------------------

def _state_dict() -> dict[str, torch.Tensor]:
    return {
        "conv.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),  # 6 values, 1..6
        "bn.weight": torch.tensor([2.0, 2.0]),
        "bn.bias": torch.tensor([-1.0, 1.0]),
        "bn.running_mean": torch.tensor([10.0, 20.0]),
        "bn.running_var": torch.tensor([1.0, 3.0]),
        "bn.num_batches_tracked": torch.tensor(7),
        "fc.bias": torch.tensor([0.5]),
        "mask.weight": torch.tensor([1, 0], dtype=torch.int64),  # not floating: skipped
    }


def test_weight_statistics_exact_values_and_names():
    f = weight_statistics(_state_dict())
    # tensors sorted by name, then mean, var, quantiles
    assert list(f) == [f"{t}.{s}" for t in ("bn.bias", "bn.weight", "conv.weight", "fc.bias")
                       for s in ("mean", "var", "q0", "q25", "q50", "q75", "q100")]
    assert f["conv.weight.mean"] == pytest.approx(3.5)
    assert f["conv.weight.var"] == pytest.approx(17.5 / 6)  # population variance of 1..6
    # linear interpolation: h = p (n - 1) = 1.25, 2.5, 3.75 over 1..6
    for q, v in {"q0": 1.0, "q25": 2.25, "q50": 3.5, "q75": 4.75, "q100": 6.0}.items():
        assert f[f"conv.weight.{q}"] == pytest.approx(v)
    assert f["bn.weight.var"] == 0.0 and f["bn.bias.mean"] == 0.0 and f["bn.bias.q100"] == 1.0
    assert f["fc.bias.var"] == 0.0 and f["fc.bias.q50"] == 0.5  # one element: var 0, not NaN
    assert not any("running" in k or "num_batches" in k or k.startswith("mask.") for k in f)


def test_weight_statistics_custom_quantiles_and_numpy_input():
    f = weight_statistics({"w.weight": np.arange(5.0)}, quantiles=(0.1, 0.5))
    assert list(f) == ["w.weight.mean", "w.weight.var", "w.weight.q10", "w.weight.q50"]
    assert f["w.weight.q10"] == pytest.approx(0.4)
    with pytest.raises(PhaseZooError):
        weight_statistics({"w.weight": np.zeros(3)}, quantiles=(1.5,))


def test_feature_columns_align_across_widths():
    from phasezoo import build_model

    cols = [list(weight_statistics(build_model("resnet18", width=w, in_channels=1,
                                               num_classes=10).state_dict())) for w in (1, 3)]
    assert cols[0] == cols[1] and len(cols[0]) > 0


def test_zoo_features_take_every_trained_tensor_of_a_vit_from_its_config(tmp_path):
    """A ViT's class token and position embedding are parameters with other names than
    weight/bias: the member's config names them, so they get features; a bare state dict falls
    back to the suffix rule, which misses them."""
    from phasezoo.models import model_from_config
    from phasezoo.spec import load_spec
    from phasezoo.store import MemberStore
    from phasezoo.wsl.features import forward_order

    config = load_spec("digits-vit").members("smoke")[0].to_dict()
    model = model_from_config(config)
    trained = {n for n, _ in model.named_parameters()}
    store = MemberStore(tmp_path / "m")
    store.write_config(config)
    store.save_checkpoint(0, model.state_dict())
    feats = zoo_features([tmp_path / "m"])
    names = {c.rsplit(".", 1)[0] for c in feats.columns}
    assert names == trained and {"cls", "pos"} <= names
    assert feats.loc["m", "pos.mean"] == pytest.approx(float(model.pos.detach().double().mean()), rel=1e-12)
    bare = weight_statistics(model.state_dict())
    assert not any(c.startswith(("cls.", "pos.")) for c in bare) and set(bare) < set(feats.columns)
    assert [n for n, k in forward_order(config).items() if k == "parameter"] == [n for n, _ in model.named_parameters()]


def test_zoo_features_on_tiny_zoo(tmp_path):
    from phasezoo import train_zoo, zoo_table

    spec = write_spec(tmp_path, TINY_SPEC.replace("epochs: 3", "epochs: 1"))  # checkpoints 0, 1
    root = tmp_path / "zoos"
    train_zoo(spec, "smoke", root, device="cpu", progress=False)
    table = zoo_table(spec, "smoke", root)
    zoo_dir = root / "tiny-digits" / "smoke"
    dirs = [zoo_dir / m for m in table["member"]]
    feats = zoo_features(dirs)
    assert list(feats.index) == list(table["member"])
    assert feats.shape[1] > 0 and np.isfinite(feats.to_numpy()).all()
    assert not any("running" in c for c in feats.columns)
    assert feats.equals(zoo_features(dirs, epoch="last"))
    assert zoo_features(dirs, epoch=0).shape == feats.shape
    # a pending member has no checkpoint: an error, or skipped on request
    with pytest.raises(PhaseZooError):
        zoo_features([*dirs, zoo_dir / "w0001_b9999_s0"])
    assert len(zoo_features([*dirs, zoo_dir / "w0001_b9999_s0"], skip_missing=True)) == len(dirs)
    # two cells are too few to split and cross-validate: noted, not raised
    res = probe_properties(feats, table, properties=("test_acc", "no_such_column"))
    assert res["r2_test"].isna().all() and (res["note"] != "").all()


# -- ridge probe ------------------------------------------------------------------------------

def _synthetic(n_groups=40, per_group=3, n_features=20, seed=0):
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    index = [f"w{g:04d}_b0032_s{s}" for g in range(n_groups) for s in range(per_group)]
    X = pd.DataFrame(rng.normal(size=(n, n_features)), index=index,
                     columns=[f"f{i}" for i in range(n_features)])
    groups = pd.Series([cell_of(m) for m in index], index=index)
    return X, groups, rng


def test_fit_probe_recovers_planted_linear_relation():
    X, groups, rng = _synthetic()
    w = rng.normal(size=X.shape[1])
    y = pd.Series(X.to_numpy() @ w + 0.01 * rng.normal(size=len(X)), index=X.index)
    res = fit_probe(X, y, groups)
    assert res["r2_test"] > 0.99 and res["r2_train"] > 0.99 and res["kendall_tau_test"] > 0.9
    assert res["n_train"] + res["n_test"] == 120 and res["n_features"] == 20
    assert res["split"] == "group (grid cell)" and res["alpha"] in np.logspace(-3, 3, 13)


def test_fit_probe_on_noise_scores_near_zero():
    X, groups, rng = _synthetic()
    y = pd.Series(rng.normal(size=len(X)), index=X.index)
    assert fit_probe(X, y, groups)["r2_test"] < 0.2


def test_fit_probe_split_keeps_groups_together_and_drops_nan():
    X, groups, rng = _synthetic()
    X["const"] = 1.0  # a constant feature is harmless (StandardScaler scale 1)
    y = pd.Series(X["f0"].to_numpy() * 2.0, index=X.index)
    y.iloc[[0, 5]] = np.nan
    X.iloc[7, 3] = np.inf
    for seed in range(3):
        res = fit_probe(X, y, groups, seed=seed)
        train, test = set(res["train_members"]), set(res["test_members"])
        assert not train & test and len(train) == res["n_train"] and len(test) == res["n_test"]
        assert not {groups[m] for m in train} & {groups[m] for m in test}
        assert res["n_groups_test"] == pytest.approx(0.3 * 40, abs=1)
        assert res["n_dropped_nan_y"] == 2 and res["n_dropped_nonfinite_x"] == 1
        assert res["n_train"] + res["n_test"] == 117 and res["r2_test"] > 0.99
    with pytest.raises(PhaseZooError):
        fit_probe(X.iloc[:6], y, groups)  # two groups only


def test_probe_properties_table_one():
    X, groups, rng = _synthetic()
    members = list(X.index)
    trace = np.exp(X["f1"].to_numpy() + 0.01 * rng.normal(size=len(X)))
    trace[0] = -1.0  # trace <= 0: log is NaN, row dropped
    table = pd.DataFrame({
        "member": members[::-1],  # matched by name, not by position
        "test_acc": (0.5 + 0.1 * X["f0"]).to_numpy()[::-1],
        "hessian_trace": trace[::-1],
        "cka": np.nan,
    })
    res = probe_properties(X, table, properties=("test_acc", "log_hessian_trace", "cka", "mc_error"))
    assert list(res.index) == ["test_acc", "log_hessian_trace", "cka", "mc_error"]
    assert res.loc["test_acc", "r2_test"] > 0.99 and res.loc["test_acc", "note"] == ""
    assert res.loc["log_hessian_trace", "r2_test"] > 0.99
    assert res.loc["log_hessian_trace", "n_dropped_nan_y"] == 1
    assert math.isnan(res.loc["cka", "r2_test"]) and res.loc["cka", "note"]
    assert "mc_error" in res.loc["mc_error", "note"]


# -- phase probe ------------------------------------------------------------------------------

def test_probe_phase_beats_majority_baseline():
    X, groups, rng = _synthetic(n_groups=60)
    # one label per cell, a linear function of the cell's mean features
    score = X.groupby(groups)[["f0", "f1"]].transform("mean")
    cell_score = score["f0"] + 0.5 * score["f1"]
    labels = pd.Series(np.where(cell_score > 0.4, "I", np.where(cell_score < -0.4, "III", "II")),
                       index=X.index)
    X[["f0", "f1"]] = score  # features shared within a cell, like a cell-level signal
    res = probe_phase(X, labels, groups, **FAST)
    assert res["accuracy_test"] > res["baseline_accuracy"] + 0.2
    assert res["accuracy_test"] >= 0.8
    test = set(res["test_members"])
    assert not {groups[m] for m in res["train_members"]} & {groups[m] for m in test}
    assert sum(res["class_counts_train"].values()) == res["n_train"]
    assert sum(res["class_counts_test"].values()) == res["n_test"]


def test_probe_phase_majority_baseline_is_from_training_split():
    X, groups, _ = _synthetic(n_groups=10, n_features=3)
    # fix the split first, then plant labels: train all "I" except one cell "II", test all "II"
    split = probe_phase(X, pd.Series("I", index=X.index), groups, **FAST)
    train, test = split["train_members"], split["test_members"]
    labels = pd.Series("II", index=X.index)
    labels[train] = "I"
    labels[[m for m in train if groups[m] == groups[train[0]]]] = "II"
    res = probe_phase(X, labels, groups, **FAST)
    assert res["test_members"] == test
    assert res["majority_class"] == "I"
    assert res["baseline_accuracy"] == 0.0  # the training majority is wrong on every test row
    assert res["class_counts_test"] == {"II": len(test)}
    assert res["class_counts_train"] == {"I": len(train) - 3, "II": 3}
    # single class in training: predicts it, no model
    assert split["model"] is None and split["accuracy_test"] == split["baseline_accuracy"] == 1.0
    # missing labels are dropped and counted
    labels2 = labels.astype(object)
    labels2.iloc[0] = None
    assert probe_phase(X, labels2, groups, **FAST)["n_dropped_nan_y"] == 1


def test_probe_phase_falls_back_to_default_C_when_no_fold_can_be_fitted(monkeypatch):
    """Tiny zoos: every cross-validation fold may see one class; the probe must still answer."""
    import sklearn.model_selection

    from phasezoo.wsl.probe import probe_phase

    def all_folds_fail(self, *a, **k):
        raise ValueError("All the fits failed.")

    monkeypatch.setattr(sklearn.model_selection.GridSearchCV, "fit", all_folds_fail)
    rng = np.random.default_rng(0)
    groups = pd.Series([f"c{i // 3}" for i in range(24)])
    labels = pd.Series(["I" if i // 3 < 4 else "II" for i in range(24)])
    X = pd.DataFrame(rng.normal(size=(24, 3)) + (labels == "II").to_numpy()[:, None] * 3.0)
    res = probe_phase(X, labels, groups, seed=0)
    assert res["C"] == 1.0 and res["model"] is not None
    assert 0.0 <= res["accuracy_test"] <= 1.0


def test_the_svd_ridge_is_sklearns_standard_scaler_ridge_and_grid_search():
    """The hand-written ridge (fast enough for 20 repeated splits) against the sklearn pipeline
    it replaces: same alpha chosen by group K-fold, same predictions."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from phasezoo.wsl.probe import DEFAULT_ALPHAS, _choose_alpha, _StandardRidge

    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 25)) * rng.uniform(0.1, 10, 25)
    X[:, 3] = 1.0  # a constant feature
    y = X[:, 0] * 0.5 - X[:, 1] + rng.normal(0, 2.0, 40)
    groups = np.repeat(np.arange(10), 4)
    search = GridSearchCV(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": DEFAULT_ALPHAS},
                          cv=GroupKFold(n_splits=5), scoring="neg_mean_squared_error").fit(X, y, groups=groups)
    alpha = _choose_alpha(X, y, groups, DEFAULT_ALPHAS, 5)
    assert alpha == pytest.approx(search.best_params_["ridge__alpha"])
    ours = _StandardRidge(X, y)
    Xn = rng.normal(size=(7, 25))
    np.testing.assert_allclose(ours.predict(Xn, alpha), search.best_estimator_.predict(Xn), rtol=1e-6, atol=1e-8)


def _grid_zoo(seed=0):
    """40 cells (8 widths x 5 batch sizes) x 3 seeds; feature f0 = log width + noise (what
    Kaiming initialisation writes into weight variances), f1 a property the grid does not
    fix; the rest noise."""
    rng = np.random.default_rng(seed)
    rows, feats = [], []
    for w in (1, 2, 4, 8, 16, 32, 64, 128):
        for b in (8, 16, 32, 64, 128):
            for s in range(3):
                m = f"w{w:04d}_b{b:04d}_s{s}"
                hidden = rng.normal()
                feats.append({"member": m, "f0": math.log(w) + 0.05 * rng.normal(), "f1": hidden,
                              **{f"n{i}": rng.normal() for i in range(6)}})
                rows.append({"member": m, "width": w, "batch_size": b, "epoch": 10,
                             "by_width": math.log(w) + 0.01 * rng.normal(), "hidden": hidden})
    X = pd.DataFrame(feats).set_index("member")
    return X, pd.DataFrame(rows)


def test_repeated_probe_reports_intervals_and_the_hyperparameter_baseline():
    from phasezoo.wsl.probe import PROBE_CSV_COLUMNS, hparam_features, repeated_probe

    X, table = _grid_zoo()
    hp = hparam_features(table.set_index("member"), "width", "batch_size")
    assert list(hp.columns) == ["log_width", "log_batch_size", "epoch"]
    res = repeated_probe(X, table, ("by_width", "hidden"), "width", "batch_size", repeats=8).set_index("property")
    assert set(PROBE_CSV_COLUMNS) - {"property"} <= set(res.columns)
    # a property the grid coordinates fix: the baseline predicts it as well as the weights do,
    # so the weight probe does not "beat" it
    bw = res.loc["by_width"]
    assert bw["r2_test"] > 0.95 and bw["r2_hparams"] > 0.95 and bw["beats_hparams"] < 0.95
    # a property only the weights carry: the baseline scores <= 0, the probe ~1 on every split
    hid = res.loc["hidden"]
    assert hid["r2_test_ci_low"] > 0.9 and hid["r2_hparams"] < 0.1 and hid["beats_hparams"] == 1.0
    assert hid["r2_test_ci_low"] <= hid["r2_test"] <= hid["r2_test_ci_high"] and hid["splits"] == 8
    assert hid["n_train"] + hid["n_test"] == 120
    assert hid["r2_test_ci_low"] <= hid["r2_test_median"] <= hid["r2_test_ci_high"]


def test_the_median_r2_resists_one_split_with_a_flat_test_side():
    from phasezoo.wsl.probe import _interval, _median

    r2 = [0.6, 0.5, 0.7, 0.55, -4000.0]  # one split's test cells barely vary: R² unbounded below
    assert _interval(r2)[0] < -700 and _median(r2) == 0.55
