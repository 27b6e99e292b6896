"""Text reports of a zoo's phases: the phase map, the cell metrics, and threshold sensitivity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from phasezoo.landscape.phases import cell_table, classify_cells, phase_grid, threshold_sensitivity
from phasezoo.spec import ZooSpec


def zoo_cells(spec: ZooSpec, profile: str, root: str | Path, epoch: int | str = "last") -> pd.DataFrame:
    """One row per grid cell: seed-averaged results and metrics of its done members, and its phase."""
    from phasezoo.zoo import zoo_table

    members = zoo_table(spec, profile, root, epoch=epoch)
    done = members[members["status"] == "done"]
    cells = cell_table(done.drop(columns=["phase"]), spec.load_axis, spec.temperature_axis)
    cells["phase"] = classify_cells(cells, spec.profile(profile).phases)
    return cells


def phase_report(spec: ZooSpec, profile: str, root: str | Path, epoch: int | str = "last") -> str:
    """The phase map (rows: load, columns: temperature), the cell metrics, the thresholds, test
    accuracy per phase, and which cells change phase when each threshold moves by ±25%."""
    cells = zoo_cells(spec, profile, root, epoch)
    thresholds = spec.profile(profile).phases
    load, temp = spec.load_axis, spec.temperature_axis
    out = [f"{spec.name}/{profile}: phase map ({load} down, {temp} across)",
           phase_grid(cells, load, temp).fillna("-").to_string(), ""]
    cols = [load, temp, "train_loss", "test_acc", "hessian_top_eig", "hessian_trace", "cka",
            "mc_error", "mc_loss", "phase"]
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        out += ["cell metrics (seed means)", cells[cols].to_string(index=False), ""]
        out += ["thresholds: " + ", ".join(f"{k}={v}" for k, v in thresholds.to_dict().items()), ""]
        by_phase = cells.groupby("phase")["test_acc"].agg(["count", "mean", "min", "max"])
        out += ["test accuracy by phase", by_phase.to_string(), ""]
        sens = threshold_sensitivity(cells, thresholds)
        out += ["sensitivity (each threshold alone scaled)", sens.to_string(index=False)]
    return "\n".join(out)
