"""Metrics at several epochs: the spec's metrics.epochs, `phasezoo metrics --epochs`, the table
and exports at each epoch, and the phase map over training (phasezoo.analysis.history)."""

import json

import pytest

from phasezoo import zoo as zoo_ops
from phasezoo.analysis.history import phase_history, phase_history_summary
from phasezoo.analysis.table import zoo_table
from phasezoo.cli import main
from phasezoo.errors import PhaseZooError, SpecError
from phasezoo.landscape.runner import compute_metrics, measured_epochs
from phasezoo.spec import load_spec
from phasezoo.store import read_json
from tests.conftest import TINY_SPEC, write_spec

# two cells x two seeds, 3 epochs, checkpoints at 0, 2 and 3; cheap metric settings; thresholds
# calibrated (not fixed by the spec), so that each epoch's own calibration can differ
SPEC = TINY_SPEC.replace("seed: [0]", "seed: [0, 1]") + """\
metrics:
  hessian: {num_batches: 2, batch_size: 32, max_iter: 20, tol: 1.0e-2, trace_max_iter: 30}
  cka: {batch_size: 64, num_batches: 3}
  mode_connectivity: {epochs: 1, batch_size: 256, min_steps: 0, plateau_tol: 10.0}
"""


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("history")
    spec = write_spec(tmp, SPEC)
    root = tmp / "zoos"
    zoo_ops.train_zoo(spec, "smoke", root, device="cpu", progress=False)
    first = compute_metrics(spec, "smoke", root, epoch=[2], device="cpu", progress=False)
    both = compute_metrics(spec, "smoke", root, epoch=[2, "last"], device="cpu", progress=False)
    return spec, root, first, both


def test_spec_metric_epochs_are_checked(tmp_path):
    ok = write_spec(tmp_path, SPEC.replace("metrics:\n", "metrics:\n  epochs: [last, 2]\n"))
    assert load_spec(ok).profile("smoke").metric_epochs == (2, "last")  # in training order
    assert load_spec(write_spec(tmp_path, SPEC)).profile("smoke").metric_epochs == ("last",)
    for bad, why in (("[1]", "not 'last' or a checkpoint epoch"), ("[3, last]", "twice"),
                     ("[]", "non-empty list"), ("last", "non-empty list")):
        path = write_spec(tmp_path, SPEC.replace("metrics:\n", f"metrics:\n  epochs: {bad}\n"), name="bad.yaml")
        with pytest.raises(SpecError, match=why):
            load_spec(path)


def test_each_epoch_is_measured_and_stored_on_its_own(measured):
    spec, root, first, both = measured
    assert first["epochs"] == [2] and first["tasks"] == 6  # 4 Hessians + 2 seed pairs
    # the second run finds epoch 2 stored and measures only the final epoch
    assert both["epochs"] == [2, 3] and both["tasks"] == 6
    assert set(both["phases_by_epoch"]) == {2, 3}
    zdir = root / "tiny-digits" / "smoke"
    m = read_json(zdir / "w0001_b0256_s0" / "metrics.json")
    assert set(m) == {"2", "3"}
    assert m["2"]["hessian_trace"]["value"] != m["3"]["hessian_trace"]["value"]
    assert set(read_json(zdir / "phases.json")) == {"2", "3"}
    assert set(read_json(zdir / "cells" / "w0001_b0512.json")) == {"2", "3"}
    assert measured_epochs(spec, "smoke", root) == [2, 3]
    assert compute_metrics(spec, "smoke", root, epoch=[2, 3], device="cpu", progress=False)["tasks"] == 0


def test_metrics_command_takes_a_list_of_epochs(measured, capsys):
    spec, root, _, _ = measured
    code, out, _ = _run(["metrics", str(spec), "-p", "smoke", "--root", str(root), "--epochs", "2,last",
                         "--device", "cpu"], capsys)
    assert code == 0 and "epochs 2, 3: computed 0 metric tasks" in out
    assert "  epoch 2: " in out and "  epoch 3: " in out
    for bad, why in (("2,2", "twice"), ("1", "epoch 1 has no checkpoints"), ("2,,last", "separated by commas"),
                     ("x", "non-negative integer")):
        code, out, err = _run(["metrics", str(spec), "-p", "smoke", "--root", str(root), "--epochs", bad,
                               "--device", "cpu"], capsys)
        assert code == 2 and why in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = _run(["metrics", str(spec), "-p", "smoke", "--root", str(root), "--epochs", "2",
                         "--epoch", "2"], capsys)
    assert code == 2 and "not allowed with" in err


def test_metrics_command_measures_the_profiles_epochs_by_default(measured, tmp_path, capsys):
    spec, root, _, _ = measured
    listed = write_spec(tmp_path, SPEC.replace("metrics:\n", "metrics:\n  epochs: [0, 2, last]\n"),
                        name="tiny-digits.yaml")
    code, out, _ = _run(["metrics", str(listed), "-p", "smoke", "--root", str(root), "--device", "cpu"], capsys)
    # epochs 2 and 3 are stored: only epoch 0 is measured (4 Hessians, 2 pairs)
    assert code == 0 and "epochs 0, 2, 3: computed 6 metric tasks" in out
    assert measured_epochs(spec, "smoke", root) == [0, 2, 3]


def test_table_carries_the_metrics_of_each_epoch(measured, capsys, tmp_path):
    spec, root, _, _ = measured
    code, _, _ = _run(["table", str(spec), "-p", "smoke", "--root", str(root), "--epochs", "2,last",
                       "--csv", str(tmp_path / "t.csv")], capsys)
    assert code == 0
    import pandas as pd

    df = pd.read_csv(tmp_path / "t.csv")
    assert len(df) == 8 and sorted(df["table_epoch"].unique()) == [2, 3]
    for e in (2, 3):
        expected = zoo_table(spec, "smoke", root, epoch=e)
        got = df[df["table_epoch"] == e].set_index("member")
        for _, r in expected.iterrows():
            assert got.loc[r["member"], "hessian_trace"] == pytest.approx(r["hessian_trace"], rel=1e-9)
            assert got.loc[r["member"], "train_loss"] == pytest.approx(r["train_loss"], rel=1e-9)
            assert got.loc[r["member"], "phase"] == r["phase"]


def test_phase_history_holds_the_final_thresholds_fixed(measured):
    spec, root, _, _ = measured
    h = phase_history(spec, "smoke", root, epochs=[2, "last"])
    assert sorted(h["epoch"].unique()) == [2, 3] and len(h) == 4
    assert h.attrs["reference"] == 3
    # at the reference epoch the two readings are the same map, and it is the stored map
    final = h[h["epoch"] == 3]
    assert (final["phase"] == final["phase_fixed"]).all()
    stored = read_json(root / "tiny-digits" / "smoke" / "phases.json")["3"]
    assert sorted(c["phase"] for c in stored["cells"]) == sorted(final["phase"])
    # epoch 2 under the final thresholds: the decision rule applied by hand to its cell means
    t = h.attrs["reference_thresholds"]
    for _, c in h[h["epoch"] == 2].iterrows():
        rugged = c["train_loss"] >= t["train_loss"] or c["hessian_trace"] >= t["hessian_trace"]
        mc = c["mc_error_chord"]
        want = ("I" if mc < -t["mc"] else "II" if mc > t["mc"] else "unassigned") if rugged else \
            ("III" if mc < -t["mc"] else "unassigned" if mc > t["mc"] else
             ("IV-B" if c["cka"] >= t["cka"] else "IV-A"))
        assert c["phase_fixed"] == want
    # each epoch's own thresholds were calibrated on its own grid
    assert h.attrs["thresholds"][2]["train_loss"] != h.attrs["thresholds"][3]["train_loss"]
    s = phase_history_summary(h)
    assert list(s["epoch"]) == [2, 3] and s.loc[s["epoch"] == 3, "moved"].item() == 0
    fixed_cols = [c for c in s if c.startswith("fixed: ")]
    assert (s[fixed_cols].sum(axis=1) == 2).all()  # every cell counted once per epoch


def test_phase_history_plot_has_a_panel_per_epoch_and_reading(measured):
    import matplotlib

    matplotlib.use("Agg")
    from phasezoo.analysis.plots import phase_history_plot

    spec, root, _, _ = measured
    fig = phase_history_plot(phase_history(spec, "smoke", root, epochs=[2, "last"]))
    labels = sorted(ax.get_label() for ax in fig.axes if ax.get_label().startswith("panel:"))
    assert labels == ["panel:phase@2", "panel:phase@3", "panel:phase_fixed@2", "panel:phase_fixed@3"]


def test_phase_history_without_metrics_is_an_error(tmp_path):
    spec = write_spec(tmp_path, SPEC)
    with pytest.raises(PhaseZooError, match="run `phasezoo train` first"):
        phase_history(spec, "smoke", tmp_path / "none")


def test_zoo_dataset_at_an_early_epoch_carries_the_final_phase(measured):
    from phasezoo.wsl import ZooDataset

    spec, root, _, _ = measured
    ds = ZooDataset(spec, "smoke", root, epoch=2)
    final = zoo_table(spec, "smoke", root).set_index("member")["phase"]
    early = zoo_table(spec, "smoke", root, epoch=2).set_index("member")["phase"]
    for item in ds:
        assert item["properties"]["epoch"] == 2
        assert item["properties"]["phase_final"] == final[item["member"]]
        assert item["properties"]["phase"] == early[item["member"]]
        assert item["properties"]["hessian_trace"] == pytest.approx(
            zoo_table(spec, "smoke", root, epoch=2).set_index("member").loc[item["member"], "hessian_trace"])


def test_ptmz_export_carries_the_metrics_of_each_epoch(measured, tmp_path):
    from phasezoo.publish.ptmz import export_ptmz

    spec, root, _, _ = measured
    export_ptmz(spec, "smoke", root, to=tmp_path / "out")
    lines = [json.loads(x) for x in (tmp_path / "out" / "w0001_b0256_s0" / "result.json").read_text().splitlines()]
    assert "log_hessian_trace_train" in lines[2] and "log_hessian_trace_train" in lines[3]
    assert "log_hessian_trace_train" not in lines[1]  # epoch 1 has no checkpoint, so no metrics
    assert lines[2]["log_hessian_trace_train"] != lines[3]["log_hessian_trace_train"]


def test_the_reproduce_chapters_training_example_runs(measured, capsys):
    """The "Train a model on a zoo" example of book/reproduce.md, run as written on the test zoo."""
    import re
    from pathlib import Path

    spec, root, _, _ = measured
    text = Path(__file__).parents[1].joinpath("book", "reproduce.md").read_text()
    section = text.split("## Train a model on a zoo", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    line = 'zoo, profile, root = "digits-vit", "mini", "data/zoos"'
    assert line in code
    code = code.replace(line, f"zoo, profile, root = {str(spec)!r}, 'smoke', {str(root)!r}")
    scope: dict = {}
    exec(compile(code, "reproduce.md", "exec"), scope)
    out = capsys.readouterr().out
    assert "held-out R² against the mean-accuracy baseline" in out and "(2 train, 2 test members)" in out
    assert scope["loss"].item() < torch_mse_of_mean(scope["y"])  # it fitted its training members


def torch_mse_of_mean(y) -> float:
    return float(((y - y.mean()) ** 2).mean())


def test_a_zoos_phase_plot_comes_in_figures_a_page_shows_unscaled(measured):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from phasezoo.analysis.plots import PANEL_PREFIX, zoo_phase_figures

    spec, root, _, _ = measured
    figures = zoo_phase_figures(spec, "smoke", root)
    assert [t for t, _ in figures] == ["Phases and performance", "Loss landscape"]  # no downstream run
    panels = [[ax.get_label()[len(PANEL_PREFIX):] for ax in f.axes if ax.get_label().startswith(PANEL_PREFIX)]
              for _, f in figures]
    assert panels == [["phase", "test_acc", "train_loss", "gen_gap"],
                      ["hessian_top_eig", "hessian_trace", "cka", "mc_error_chord"]]
    for _, f in figures:
        assert f.get_size_inches()[0] <= 8.6 + 1e-9
        plt.close(f)
