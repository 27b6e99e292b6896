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
    quality = quality_column(cells)
    cols = [load, temp, "train_loss", quality, "hessian_top_eig", "hessian_trace", "cka",
            "mc_error", "mc_loss", "phase"]
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        out += ["cell metrics (seed means)", cells[cols].to_string(index=False), ""]
        out += ["thresholds: " + ", ".join(f"{k}={v}" for k, v in thresholds.to_dict().items()), ""]
        by_phase = cells.groupby("phase")[quality].agg(["count", "mean", "min", "max"])
        out += [f"{quality} by phase", by_phase.to_string(), ""]
        sens = threshold_sensitivity(cells, thresholds)
        out += ["sensitivity (each threshold alone scaled)", sens.to_string(index=False)]
    return "\n".join(out)


def quality_column(df: pd.DataFrame) -> str:
    """``test_acc`` where the task reports an accuracy, else ``test_error`` (PINNs)."""
    return "test_acc" if "test_acc" in df and df["test_acc"].notna().any() else "test_error"


#: the columns of the paper's Tables 5-7, per task
SUMMARY_COLUMNS = {
    "classification": ("train_loss", "test_loss", "train_acc", "test_acc", "gen_gap"),   # Table 5
    "language_modelling": ("train_loss", "test_loss", "train_ppl", "test_ppl"),          # Table 6
    "pde_convection": ("train_loss", "test_error"),                                      # Table 7
}


def summary_table(specs: list[ZooSpec], profile: str, root: str | Path, *, digits: int = 2) -> pd.DataFrame:
    """The paper's Tables 5-7 for trained zoos: per zoo, ``mean ± std [min, max]`` of each final
    metric over its done members (std with ddof 1, as pandas). One row per zoo; the columns are
    the union of the zoos' tasks' columns (empty where a task has no such metric)."""
    from phasezoo.zoo import zoo_table

    rows = []
    for spec in specs:
        df = zoo_table(spec, profile, root)
        done = df[df["status"] == "done"]
        row = {"zoo": spec.name, "arch": spec.arch, "dataset": spec.dataset, "members": len(done)}
        def num(x: float) -> str:  # 2 decimals; values that would print as 0.00 keep 2 digits
            return f"{x:.{digits}f}" if x == 0 or abs(x) >= 10 ** -digits else f"{x:.{digits}g}"

        for col in SUMMARY_COLUMNS[spec.task]:
            v = done[col].astype(float).dropna() if col in done else pd.Series(dtype=float)
            sd = v.std() if len(v) > 1 else 0.0
            row[col] = f"{num(v.mean())} ± {num(sd)} [{num(v.min())}, {num(v.max())}]" if len(v) else ""
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


#: the downstream columns of ``zoo_table`` (where computed), in the order the book shows them
DOWNSTREAM_COLUMNS = ("prune_acc_0.5", "prune_acc_0.9", "prune_ft_acc_0.9", "wise_ft_gain",
                      "ensemble_acc", "ensemble_gain", "rebasin_gain", "naive_avg_gain",
                      "finetune_linear_acc", "finetune_full_acc")


def downstream_by_phase(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each downstream column (:data:`DOWNSTREAM_COLUMNS`) per phase over the finished
    members of a ``zoo_table``; one row per phase, with the member count."""
    done = table[(table["status"] == "done") & table["phase"].notna()]
    cols = [c for c in DOWNSTREAM_COLUMNS if c in done and done[c].notna().any()]
    out = done.groupby("phase")[cols].mean()
    out.insert(0, "members", done.groupby("phase").size())
    return out

