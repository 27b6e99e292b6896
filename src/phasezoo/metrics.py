"""Compute and store a zoo's loss-landscape metrics, resumably, and join them onto its table.

What is computed (paper §2; settings from the zoo spec's ``metrics`` section):

* per member — the Hessian top eigenvalue and trace of the train loss on a fixed subset of the
  training set (``num_batches × batch_size`` samples, the same for every member);
* per seed pair of a grid cell — the CKA of the two models' outputs on a fixed subset of the
  training set, and Bézier mode connectivity (on error and on loss) trained and evaluated on
  the full training set.

Where it is stored (beside the zoo, see ``data/README.md``)::

    <member>/metrics.json          {"<epoch>": {"hessian_top_eig": {...}, "hessian_trace": {...}}}
    cells/<cell>.json              {"<epoch>": {"<seed_a>-<seed_b>": {"cka": {...}, "mc": {...}}}}

Each value is stored with its settings, iteration counts and (trace) standard error. Only the
main process writes, one atomic write per finished task, so a kill loses at most the tasks in
flight and a rerun computes only what is missing (or what was computed with other settings).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from phasezoo.errors import PhaseZooError
from phasezoo.spec import MemberSpec, ZooSpec, cell_of, load_spec
from phasezoo.store import MemberStore, ZooStore, atomic_write_json, jsonable, read_json

#: seed of the fixed permutation that picks the metric subsets of the training set
SUBSET_SEED = 0


def cell_name(member: MemberSpec) -> str:
    """The grid cell of a member: its folder name without the seed, e.g. ``w0008_b0128``."""
    return cell_of(member.member)


def fixed_indices(total: int, n: int) -> torch.Tensor:
    """The first ``n`` entries of the fixed permutation of ``range(total)`` (seed
    :data:`SUBSET_SEED`) that every metric subset and evaluation subset is cut from."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(SUBSET_SEED))[: min(n, total)]


def fixed_subset(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of a fixed permutation of the training set (same for every model)."""
    perm = fixed_indices(len(x), n).to(x.device)
    return x[perm], y[perm]


def resolve_epoch(spec: ZooSpec, profile: str, epoch: int | str) -> int:
    """``"last"`` is the profile's final epoch; an int must be one of its checkpoint epochs."""
    t = spec.profile(profile).training
    if epoch == "last":
        return t.epochs
    if epoch not in t.checkpoint_epochs:
        raise PhaseZooError(f"epoch {epoch} has no checkpoints in {spec.name}/{profile}; "
                            f"checkpoint epochs: {', '.join(map(str, t.checkpoint_epochs))}")
    return int(epoch)


#: what CKA compares, per task (stored beside each value)
OUTPUT_NAMES = {"classification": "logits", "language_modelling": "next-token logits at the last position",
                "pde_convection": "predicted solution u(x, t)"}


def task_outputs(task, model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``task.outputs`` over ``x`` in batches, model in eval mode (mode restored)."""
    from phasezoo.tasks import eval_mode

    with eval_mode(model):
        return torch.cat([task.outputs(model, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


# ----------------------------------------------------------------------------- worker tasks


def _hessian_task(args: tuple) -> tuple[str, str, dict]:
    """Hessian top eigenvalue and trace of one member at one epoch (runs in a worker)."""
    from phasezoo.data import load_dataset
    from phasezoo.landscape.hessian import DEFAULT_CHUNK_SIZE, top_eigenvalue, trace
    from phasezoo.tasks import task_for
    from phasezoo.zoo import load_member

    member_dir, epoch, settings, device, data_dir = args
    model, config = load_member(member_dir, epoch)
    model.to(device)
    data = load_dataset(config["dataset"], data_dir).to(device)
    bs, nb = settings["batch_size"], settings["num_batches"]
    x, y = fixed_subset(data.train_x, data.train_y, bs * nb)
    batches = [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)]
    task = task_for(config)
    loss_fn = task.batch_loss
    # A loss that is not a per-sample mean (the PDE loss: a sum of per-kind means) must be
    # evaluated on the batches as given, never regrouped.
    kw = {"max_iter": settings["max_iter"], "tol": settings["tol"], "seed": settings["seed"],
          "chunk_size": DEFAULT_CHUNK_SIZE if task.per_sample_mean else None}
    t0 = time.perf_counter()
    eig = top_eigenvalue(model, loss_fn, batches, **kw).to_dict()
    eig["time_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = trace(model, loss_fn, batches, **kw).to_dict()
    tr["time_s"] = time.perf_counter() - t0
    return "hessian", str(member_dir), {"hessian_top_eig": eig, "hessian_trace": tr}


def _pair_task(args: tuple) -> tuple[str, str, dict]:
    """CKA and mode connectivity of two seeds of one cell (runs in a worker)."""
    from phasezoo.data import load_dataset
    from phasezoo.landscape.cka import output_cka
    from phasezoo.landscape.curves import bezier_mode_connectivity
    from phasezoo.tasks import task_for
    from phasezoo.train import eval_split
    from phasezoo.zoo import load_member

    dir_a, dir_b, pair, epoch, settings, device, data_dir = args
    model_a, config = load_member(dir_a, epoch)
    model_b, _ = load_member(dir_b, epoch)
    model_a.to(device)
    model_b.to(device)
    data = load_dataset(config["dataset"], data_dir).to(device)
    task = task_for(config)

    c = settings["cka"]
    x, _ = fixed_subset(data.train_x, data.train_y, c["batch_size"] * c["num_batches"])
    t0 = time.perf_counter()
    cka = output_cka(task_outputs(task, model_a, x), task_outputs(task, model_b, x), method=c["method"],
                     batch_size=c["batch_size"], num_batches=c["num_batches"])
    cka_rec = {"value": cka, **c, "num_samples": len(x), "outputs": OUTPUT_NAMES.get(task.name, "outputs"),
               "data": "train subset", "time_s": time.perf_counter() - t0}

    m = settings["mode_connectivity"]
    t0 = time.perf_counter()
    mc = bezier_mode_connectivity(
        model_a, model_b, *eval_split(data, "train"), loss_fn=task.batch_loss, evaluate=task.evaluate,
        epochs=m["epochs"], lr=m["lr"], momentum=m["momentum"], weight_decay=m["weight_decay"],
        batch_size=m["batch_size"], num_t=m["num_t"], seed=m["seed"], optimizer=m["optimizer"],
        device=device,
    )
    mc["time_s"] = time.perf_counter() - t0
    mc["data"] = "train set"
    return "pair", pair, {"cka": cka_rec, "mc": jsonable(mc)}


def _dispatch(args: tuple) -> tuple[str, str, dict]:
    return _hessian_task(args[1:]) if args[0] == "hessian" else _pair_task(args[1:])


# ----------------------------------------------------------------------------- runner


def compute_metrics(
    zoo: str | Path | ZooSpec,
    profile: str,
    root: str | Path,
    *,
    epoch: int | str = "last",
    device: str = "auto",
    workers: int = 1,
    data_dir: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Compute the missing metrics of a trained zoo; returns counts and wall time per stage.

    Only members that are ``done`` take part. A cell needs at least two done seeds for its
    pair metrics. Already stored values computed with the same settings are kept.
    """
    from phasezoo.executors import run_zoo_jobs
    from phasezoo.train import resolve_device

    spec = zoo if isinstance(zoo, ZooSpec) else load_spec(zoo)
    prof = spec.profile(profile)
    ep = resolve_epoch(spec, profile, epoch)
    dev = str(resolve_device(device))
    store = ZooStore(root, spec.name, profile)
    members = spec.members(profile)
    done = store.finished(members)
    settings = {k: dict(v) for k, v in prof.metrics.items()}
    pair_settings = {"cka": settings["cka"], "mode_connectivity": settings["mode_connectivity"]}
    key = str(ep)

    def plan() -> tuple[list[tuple], list[str]]:
        tasks, names = [], []
        for m in done:
            stored = _read_member_metrics(store.member(m.member)).get(key, {})
            if stored.get("hessian_trace", {}).get("settings_key") != _settings_key(settings["hessian"]):
                tasks.append(("hessian", str(store.member(m.member).dir), ep, settings["hessian"], dev, data_dir))
                names.append(f"hessian {m.member}")
        by_cell: dict[str, list[MemberSpec]] = defaultdict(list)
        for m in done:
            by_cell[cell_name(m)].append(m)
        for cell, ms in by_cell.items():
            stored = _read_cell(store, cell).get(key, {})
            for a, b in itertools.combinations(sorted(ms, key=lambda m: m.seed), 2):
                pair = f"{cell}/{a.seed}-{b.seed}"
                if stored.get(f"{a.seed}-{b.seed}", {}).get("settings_key") != _settings_key(pair_settings):
                    tasks.append(("pair", str(store.member(a.member).dir), str(store.member(b.member).dir),
                                  pair, ep, pair_settings, dev, data_dir))
                    names.append(f"pair {pair}")
        return tasks, names

    t0 = time.perf_counter()
    times = {"hessian": 0.0, "pair": 0.0}
    ran = 0

    jobs = run_zoo_jobs(store, "metrics", plan, _dispatch, check=lambda: store.verify_members(done),
                        workers=workers, progress=progress)
    for kind, target, result in jobs:
        ran += 1
        if kind == "hessian":
            ms = MemberStore(Path(target))
            data = _read_member_metrics(ms)
            for rec in result.values():
                rec["settings_key"] = _settings_key(settings["hessian"])
            data[key] = result
            atomic_write_json(ms.dir / "metrics.json", data)
            times["hessian"] += sum(r["time_s"] for r in result.values())
        else:
            cell, pair = target.split("/")
            data = _read_cell(store, cell)
            result["settings_key"] = _settings_key(pair_settings)
            data.setdefault(key, {})[pair] = result
            atomic_write_json(store.dir / "cells" / f"{cell}.json", data)
            times["pair"] += result["cka"]["time_s"] + result["mc"]["time_s"]
    return {"epoch": ep, "tasks": ran, "wall_s": time.perf_counter() - t0,
            "hessian_task_s": times["hessian"], "pair_task_s": times["pair"]}


def _settings_key(settings: dict) -> str:
    """A canonical string of metric settings: stored values with another key are recomputed."""
    import json

    return json.dumps(settings, sort_keys=True)


def _read_member_metrics(ms: MemberStore) -> dict:
    return read_json(ms.dir / "metrics.json", {})


def _read_cell(store: ZooStore, cell: str) -> dict:
    return read_json(store.dir / "cells" / f"{cell}.json", {})


# ----------------------------------------------------------------------------- table


METRIC_COLUMNS = ("hessian_top_eig", "hessian_trace", "cka", "mc_error", "mc_loss", "mc_error_chord",
                  "mc_loss_chord", "phase")


def attach_metrics(df: pd.DataFrame, spec: ZooSpec, profile: str, root: str | Path,
                   epoch: int | str = "last") -> pd.DataFrame:
    """Add the metric columns to a member table (NaN where not computed) and the cell's phase.

    Member columns: ``hessian_top_eig``, ``hessian_trace``. Cell columns, repeated on each
    member of the cell: ``cka``, ``mc_error``, ``mc_loss`` (means over the cell's seed pairs;
    the paper's mc, referenced to the endpoints' mean), ``mc_error_chord``, ``mc_loss_chord``
    (referenced to the chord between the endpoints)
    and ``phase`` (from the seed-averaged train loss and Hessian trace of the cell's done members
    plus its cka and mc, with the profile's thresholds).
    """
    from phasezoo.landscape.phases import classify_cell

    store = ZooStore(root, spec.name, profile)
    prof = spec.profile(profile)
    try:
        key = str(resolve_epoch(spec, profile, epoch))
    except PhaseZooError:
        key = None  # an epoch without checkpoints has no metrics
    df = df.copy()
    members = {m.member: m for m in spec.members(profile)}
    eig, tr = [], []
    for name in df["member"]:
        rec = _read_member_metrics(store.member(name)).get(key, {}) if key else {}
        eig.append(rec.get("hessian_top_eig", {}).get("value", math.nan))
        tr.append(rec.get("hessian_trace", {}).get("value", math.nan))
    df["hessian_top_eig"] = pd.array(eig, dtype=float)
    df["hessian_trace"] = pd.array(tr, dtype=float)
    cells = [cell_name(members[n]) for n in df["member"]]
    df["_cell"] = cells
    for col in ("cka", "mc_error", "mc_loss", "mc_error_chord", "mc_loss_chord"):
        df[col] = math.nan
    df["phase"] = None
    for cell, idx in df.groupby("_cell").groups.items():
        pairs = list(_read_cell(store, cell).get(key, {}).values()) if key else []
        if pairs:
            df.loc[idx, "cka"] = _mean([p["cka"]["value"] for p in pairs])
            df.loc[idx, "mc_error"] = _mean([p["mc"]["mc_error"] for p in pairs])
            df.loc[idx, "mc_loss"] = _mean([p["mc"]["mc_loss"] for p in pairs])
            # pairs measured before the chord-referenced values were stored have none (NaN)
            df.loc[idx, "mc_error_chord"] = _mean([p["mc"].get("mc_error_chord", math.nan) for p in pairs])
            df.loc[idx, "mc_loss_chord"] = _mean([p["mc"].get("mc_loss_chord", math.nan) for p in pairs])
        sub = df.loc[idx]
        ok = sub[sub["status"] == "done"]
        row = sub.iloc[0]
        mc = row[prof.phases.mc_metric]
        df.loc[idx, "phase"] = classify_cell(
            float(ok["train_loss"].mean()) if len(ok) else math.nan,
            float(ok["hessian_trace"].mean()) if len(ok) else math.nan,
            float(mc), float(row["cka"]), prof.phases)
    return df.drop(columns="_cell")


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else math.nan
