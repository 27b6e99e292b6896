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
    phases.json                    {"<epoch>": {"thresholds", "calibration", "counts", "cells"}}

Each value is stored with its settings, iteration counts and (trace) standard error. Only the
main process writes, one atomic write per finished task, so a kill loses at most the tasks in
flight and a rerun computes only what is missing (or what was computed with other settings).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from phasezoo.data import load_dataset
from phasezoo.data.batches import eval_split, fixed_subset
from phasezoo.errors import PhaseZooError
from phasezoo.executors import Job, check_executor, run_zoo_jobs, settings_key, task_device
from phasezoo.landscape.cka import linear_cka, output_cka
from phasezoo.landscape.curves import bezier_mode_connectivity, curve_converged
from phasezoo.landscape.hessian import top_eigenvalue, trace
from phasezoo.landscape.hvp import DEFAULT_CHUNK_SIZE
from phasezoo.landscape.phases import phase_map
from phasezoo.spec import MemberSpec, ZooSpec, by_cell, cell_of
from phasezoo.store import MemberStore, ZooStore, as_stored, atomic_write_json, jsonable, load_member, read_json
from phasezoo.models.utils import eval_mode
from phasezoo.tasks import task_for
from phasezoo.zoo import DEFAULT_ROOT, Zoo, member_table


def cell_name(member: MemberSpec) -> str:
    """The grid cell of a member: its folder name without the seed, e.g. ``w0008_b0128``."""
    return cell_of(member.member)


def resolve_epoch(zoo: Zoo, epoch: int | str) -> int:
    """``"last"`` is the profile's final epoch; an int must be one of its checkpoint epochs."""
    t = zoo.settings.training
    if epoch == "last":
        return t.epochs
    if epoch not in t.checkpoint_epochs:
        raise PhaseZooError(f"epoch {epoch} has no checkpoints in {zoo.name}/{zoo.profile}; "
                            f"checkpoint epochs: {', '.join(map(str, t.checkpoint_epochs))}")
    return int(epoch)


#: what CKA compares, per task (stored beside each value)
OUTPUT_NAMES = {"classification": "logits", "language_modelling": "next-token logits at the last position",
                "pde_convection": "predicted solution u(x, t)"}


def task_outputs(task, model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``task.outputs`` over ``x`` in batches, model in eval mode (mode restored)."""
    with eval_mode(model):
        return torch.cat([task.outputs(model, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


# ----------------------------------------------------------------------------- worker tasks


def _hessian_task(member_dir: str, epoch: int, settings: dict, device: str, data_dir) -> dict:
    """Hessian top eigenvalue and trace of one member at one epoch (runs in a worker)."""
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
    kw = {"seed": settings["seed"], "chunk_size": DEFAULT_CHUNK_SIZE if task.per_sample_mean else None}
    t0 = time.perf_counter()
    eig = top_eigenvalue(model, loss_fn, batches, max_iter=settings["max_iter"], tol=settings["tol"],
                         method=settings["eig_method"], **kw).to_dict()
    eig["time_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = trace(model, loss_fn, batches, max_iter=settings["trace_max_iter"], method=settings["trace_method"],
               rel_stderr=settings["rel_stderr"], min_probes=settings["min_probes"], **kw).to_dict()
    tr["time_s"] = time.perf_counter() - t0
    return {"hessian_top_eig": eig, "hessian_trace": tr}


def _pair_task(dir_a: str, dir_b: str, epoch: int, settings: dict, device: str, data_dir) -> dict:
    """CKA and mode connectivity of two seeds of one cell (runs in a worker)."""
    model_a, config = load_member(dir_a, epoch)
    model_b, _ = load_member(dir_b, epoch)
    model_a.to(device)
    model_b.to(device)
    data = load_dataset(config["dataset"], data_dir).to(device)
    task = task_for(config)

    c = settings["cka"]
    x, _ = fixed_subset(data.train_x, data.train_y, c["batch_size"] * c["num_batches"])
    t0 = time.perf_counter()
    cka_rec = cka_record(task_outputs(task, model_a, x), task_outputs(task, model_b, x), c)
    cka_rec.update({"outputs": OUTPUT_NAMES.get(task.name, "outputs"), "data": "train subset",
                    "time_s": time.perf_counter() - t0})

    m = settings["mode_connectivity"]
    t0 = time.perf_counter()
    # the curve trains on the whole train set; it is evaluated where the epochs are (the
    # language zoos: a fixed subset of the train set)
    ex, ey = eval_split(data, "train")
    mc = bezier_mode_connectivity(
        model_a, model_b, data.train_x, data.train_y, loss_fn=task.batch_loss, evaluate=task.evaluate,
        epochs=m["epochs"], lr=m["lr"], momentum=m["momentum"], weight_decay=m["weight_decay"],
        batch_size=m["batch_size"], num_t=m["num_t"], seed=m["seed"], optimizer=m["optimizer"],
        device=device, eval_x=ex, eval_y=ey, plateau_tol=m["plateau_tol"], min_steps=m["min_steps"],
    )
    mc["time_s"] = time.perf_counter() - t0
    mc["data"] = "trained on the train set, evaluated on " + (
        "the train set" if len(ex) == len(data.train_x) else f"a fixed subset of {len(ex)} train samples")
    return {"cka": cka_rec, "mc": jsonable(mc)}


def cka_record(out_a: torch.Tensor, out_b: torch.Tensor, settings: dict) -> dict:
    """The CKA values of one seed pair on the same samples (rows in the same order):

    * ``value``: unbiased linear CKA (Song et al. 2012's HSIC), pooled over all rows. Pooled
      because the unbiased estimator has no small-sample bias to average away, and one estimate
      over all rows has less variance than a mean of per-batch ones. The phases use it.
    * ``paper``: the authors' estimator, biased linear CKA per batch of ``batch_size`` rows,
      averaged over ``num_batches`` batches.
    * ``chance`` / ``paper_chance``: both estimators with ``out_b``'s rows permuted (seed
      ``chance_seed``): the value of two unrelated outputs of the same marginal distribution.
    """
    bs, nb = settings["batch_size"], settings["num_batches"]
    perm = torch.randperm(len(out_b), generator=torch.Generator().manual_seed(settings["chance_seed"]))
    shuffled = out_b[perm.to(out_b.device)]

    def paper(b: torch.Tensor) -> float:
        return output_cka(out_a, b, method="per_batch", batch_size=bs, num_batches=nb)

    return {"value": linear_cka(out_a, out_b, unbiased=True), "chance": linear_cka(out_a, shuffled, unbiased=True),
            "paper": paper(out_b), "paper_chance": paper(shuffled),
            "estimator": "unbiased linear CKA (Song et al. 2012 HSIC), pooled",
            "paper_estimator": f"biased linear CKA per batch of {bs}, mean of {nb} batches",
            **settings, "num_samples": len(out_a)}


# ----------------------------------------------------------------------------- runner


def compute_metrics(
    zoo: Zoo | str | Path | ZooSpec,
    profile: str | None = None,
    root: str | Path = DEFAULT_ROOT,
    *,
    epoch: int | str | Sequence[int | str] = "last",
    device: str = "auto",
    workers: int = 1,
    data_dir: str | Path | None = None,
    progress: bool | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
) -> dict[str, Any]:
    """Compute the missing metrics of a trained zoo at one or several checkpoint epochs
    (``epoch``: ``"last"``, an epoch, or a list of them, e.g. ``[5, 10, "last"]``); returns
    counts and wall time per stage, and the phase counts per epoch.

    Only members that are ``done`` take part. A cell needs at least two done seeds for its
    pair metrics. Already stored values computed with the same settings are kept, per epoch, so
    an interrupted run resumes where it stopped and adding an epoch measures only that epoch.
    The tasks of all epochs share one pool. Each epoch's phase map is calibrated on that
    epoch's grid and stored in ``phases.json`` under the epoch. ``executor`` and the Ray options
    pick where the tasks run (:func:`phasezoo.executors.make_executor`).
    """
    check_executor(executor, workers, ray_address, cpus_per_task, gpus_per_task)
    z = Zoo.of(zoo, profile, root)
    requested = list(epoch) if isinstance(epoch, (list, tuple)) else [epoch]
    if not requested:
        raise PhaseZooError("no epoch to measure")
    eps = sorted({resolve_epoch(z, e) for e in requested})
    dev = str(task_device(device, executor, gpus_per_task))
    store = z.store
    done = store.finished(list(z.members))
    settings = {k: dict(v) for k, v in z.settings.metrics.items()}
    pair_settings = {"cka": settings["cka"], "mode_connectivity": settings["mode_connectivity"]}
    # an epoch in a job's name and key only where several are measured (the one-epoch output
    # stays as it was); keys are "<epoch>|<member dir>" and "<epoch>|<cell>/<seed a>-<seed b>"
    at = (lambda ep: f" @{ep}") if len(eps) > 1 else (lambda ep: "")

    def plan() -> list[Job]:
        jobs = []
        for ep in eps:
            key = str(ep)
            for m in done:
                stored = _read_member_metrics(store.member(m.member)).get(key, {})
                if stored.get("hessian_trace", {}).get("settings_key") != _settings_key(settings["hessian"]):
                    d = str(z.member_dir(m))
                    jobs.append(Job("hessian", f"hessian {m.member}{at(ep)}", f"{ep}|{d}",
                                    (d, ep, settings["hessian"], dev, data_dir)))
            for cell, ms in by_cell(done).items():
                stored = _read_cell(store, cell).get(key, {})
                for a, b in itertools.combinations(sorted(ms, key=lambda m: m.seed), 2):
                    pair = f"{cell}/{a.seed}-{b.seed}"
                    if _measured_key(stored.get(f"{a.seed}-{b.seed}", {})) != _settings_key(pair_settings):
                        jobs.append(Job("pair", f"pair {pair}{at(ep)}", f"{ep}|{pair}",
                                        (str(z.member_dir(a)), str(z.member_dir(b)), ep, pair_settings, dev,
                                         data_dir)))
        return jobs

    t0 = time.perf_counter()
    times = {"hessian": 0.0, "pair": 0.0}
    ran = 0

    finished = run_zoo_jobs(store, "metrics", plan, {"hessian": _hessian_task, "pair": _pair_task},
                            check=lambda: store.verify_members(done), workers=workers, progress=progress,
                            executor=executor, ray_address=ray_address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task)
    for job, result in finished:
        ran += 1
        key, where = job.key.split("|", 1)
        if job.kind == "hessian":
            ms = MemberStore(Path(where))
            data = _read_member_metrics(ms)
            for rec in result.values():
                rec["settings_key"] = _settings_key(settings["hessian"])
            data[key] = result
            atomic_write_json(ms.dir / "metrics.json", data)
            times["hessian"] += sum(r["time_s"] for r in result.values())
        else:
            cell, pair = where.split("/")
            data = _read_cell(store, cell)
            result["settings_key"] = _settings_key(pair_settings)
            data.setdefault(key, {})[pair] = result
            atomic_write_json(store.dir / "cells" / f"{cell}.json", data)
            times["pair"] += result["cka"]["time_s"] + result["mc"]["time_s"]
    counts = {ep: write_phase_map(z, ep) if done else {} for ep in eps}
    return {"epoch": eps[-1], "epochs": eps, "tasks": ran, "wall_s": time.perf_counter() - t0,
            "hessian_task_s": times["hessian"], "pair_task_s": times["pair"], "phases": counts[eps[-1]],
            "phases_by_epoch": counts}


def write_phase_map(zoo: Zoo, epoch: int) -> dict[str, int]:
    """Store the phase map of ``epoch`` (thresholds, how each was calibrated, every cell's label
    and confidence) in the zoo's ``phases.json`` under ``"<epoch>"``; returns the phase counts.
    Unchanged maps are not rewritten."""
    pm = zoo_phase_map(zoo, epoch=epoch)
    path = zoo.store.dir / "phases.json"
    data = read_json(path, {})
    record = as_stored(jsonable(pm.to_dict()))
    if data.get(str(epoch)) != record:
        data[str(epoch)] = record
        atomic_write_json(path, data)
    return pm.counts()


#: settings that judge a measurement without changing it (the curve's convergence rule): left out
#: of the settings key, so changing them re-judges the stored curves instead of retraining them
JUDGEMENT_KEYS = ("plateau_tol", "min_steps")


def _settings_key(settings: dict) -> str:
    """The settings key of metric settings (:func:`phasezoo.executors.settings_key`), the
    judgement keys left out: stored values with another key are recomputed."""
    return settings_key(settings, JUDGEMENT_KEYS)


def _measured_key(record: dict) -> str | None:
    """The settings key of a stored pair record, judgement keys left out (records written when
    they were part of the key compare equal)."""
    key = record.get("settings_key")
    return None if key is None else _settings_key(json.loads(key))


def measured_epochs(zoo: Zoo | str | Path | ZooSpec, profile: str | None = None,
                    root: str | Path = DEFAULT_ROOT) -> list[int]:
    """The epochs at which some done member of the zoo has stored metrics (``phasezoo metrics
    --epochs``), ascending."""
    z = Zoo.of(zoo, profile, root)
    found: set[int] = set()
    for m in z.store.finished(list(z.members)):
        found |= {int(k) for k in _read_member_metrics(z.store.member(m.member))}
    return sorted(found)


def _read_member_metrics(ms: MemberStore) -> dict:
    return read_json(ms.dir / "metrics.json", {})


def _read_cell(store: ZooStore, cell: str) -> dict:
    return read_json(store.dir / "cells" / f"{cell}.json", {})


# ----------------------------------------------------------------------------- table


#: per-member metric columns of a zoo table
MEMBER_METRIC_COLUMNS = ("hessian_top_eig", "hessian_trace", "hessian_trace_stderr")
#: per-pair values, averaged over a cell's seed pairs and repeated on each member of the cell
PAIR_COLUMNS = ("cka", "cka_chance", "cka_paper", "cka_paper_chance", "mc_error", "mc_loss",
                "mc_error_chord", "mc_loss_chord")
METRIC_COLUMNS = (*MEMBER_METRIC_COLUMNS, *PAIR_COLUMNS, "curve_converged", "phase", "phase_confidence")


def _metrics_key(zoo: Zoo, epoch: int | str) -> str | None:
    """The key metrics are stored under for ``epoch``; None for an epoch without checkpoints
    (it has no metrics)."""
    try:
        return str(resolve_epoch(zoo, epoch))
    except PhaseZooError:
        return None


def _pair_row(p: dict, rule: dict) -> dict[str, Any]:
    """The table values of one stored seed pair (NaN for values older records lack); the curve's
    convergence is judged here from its stored loss windows by ``rule`` (the spec's
    ``plateau_tol`` and ``min_steps``)."""
    c, mc = p["cka"], p["mc"]
    diag = dict(mc.get("diagnostics", {}))
    if "window_losses" in diag:
        diag["converged"], diag["convergence"] = curve_converged(
            diag["window_losses"], mc["settings"]["steps"], mc.get("diverged_at_step"),
            plateau_tol=rule["plateau_tol"], min_steps=rule["min_steps"])
    return {"cka": c["value"], "cka_chance": c.get("chance", math.nan), "cka_paper": c.get("paper", math.nan),
            "cka_paper_chance": c.get("paper_chance", math.nan),
            **{k: mc.get(k, math.nan) for k in ("mc_error", "mc_loss", "mc_error_chord", "mc_loss_chord")},
            "curve_converged": diag.get("converged", math.nan),
            "curve_convergence": diag.get("convergence", ""),
            "loss_mid_before": diag.get("loss_mid_before", math.nan),
            "loss_mid_after": diag.get("loss_mid_after", math.nan),
            "curve_loss_end": diag.get("curve_loss_end", math.nan),
            "curve_steps": mc.get("settings", {}).get("steps", math.nan)}


def pair_table(zoo: Zoo | str | Path | ZooSpec, profile: str | None = None, root: str | Path = DEFAULT_ROOT,
               *, epoch: int | str = "last") -> pd.DataFrame:
    """One row per measured seed pair: the cell's grid coordinates, ``cell``, ``seed_a``,
    ``seed_b``, the CKA values (:func:`cka_record`), the four mc values and the curve's
    diagnostics (``curve_converged``, ``loss_mid_before`` / ``loss_mid_after``: the loss at
    t = 0.5 before and after curve training, ``curve_loss_end``, ``curve_steps``)."""
    z = Zoo.of(zoo, profile, root)
    store, key = z.store, _metrics_key(z, epoch)
    load, temp = z.load_axis, z.temperature_axis
    coords = {cell_name(m): (m.axis_value(load), m.axis_value(temp)) for m in z.members}
    rule = z.settings.metrics["mode_connectivity"]
    rows = []
    for cell, (lv, tv) in coords.items():
        for name, p in (_read_cell(store, cell).get(key, {}) if key else {}).items():
            a, b = name.split("-")
            rows.append({load: lv, temp: tv, "cell": cell, "seed_a": int(a), "seed_b": int(b), **_pair_row(p, rule)})
    cols = [load, temp, "cell", "seed_a", "seed_b", *PAIR_COLUMNS, "curve_converged", "curve_convergence",
            "loss_mid_before", "loss_mid_after", "curve_loss_end", "curve_steps"]
    return pd.DataFrame(rows, columns=cols)


def zoo_phase_map(zoo: Zoo | str | Path | ZooSpec, profile: str | None = None, root: str | Path = DEFAULT_ROOT,
                  *, epoch: int | str = "last", members: pd.DataFrame | None = None,
                  pairs: pd.DataFrame | None = None, thresholds=None):
    """The :class:`~phasezoo.landscape.phases.PhaseMap` of a stored zoo: thresholds calibrated
    from its done members and seed pairs (the spec's ``phases`` fix any it names), labels and
    their bootstrap confidence. ``members`` (a member table with the metric columns) and
    ``pairs`` (:func:`pair_table`): pass them if already built; otherwise they are read (the
    table without its phase columns, which would be this very map). ``thresholds`` (a
    :class:`~phasezoo.landscape.phases.PhaseThresholds`, e.g. another epoch's map's): use these
    instead of the spec's, calibrating only those it leaves ``None``."""
    z = Zoo.of(zoo, profile, root)
    if members is None:
        members = attach_metrics(member_table(z, epoch=epoch), z, epoch, phases=False)
    if pairs is None:
        pairs = pair_table(z, epoch=epoch)
    done = members[members["status"] == "done"]
    init = done["train_loss_init"].dropna() if "train_loss_init" in done else pd.Series(dtype=float)
    return phase_map(done.drop(columns=[c for c in ("phase", "phase_confidence") if c in done]),
                     pairs, z.load_axis, z.temperature_axis,
                     z.settings.phases if thresholds is None else thresholds,
                     init_loss=float(init.median()) if len(init) else math.nan)


def attach_metrics(df: pd.DataFrame, zoo: Zoo, epoch: int | str = "last", phases: bool = True) -> pd.DataFrame:
    """Add the metric columns to a member table (NaN where not computed) and the cell's phase.

    Member columns: ``hessian_top_eig``, ``hessian_trace``, ``hessian_trace_stderr``. Cell
    columns, repeated on each member of the cell (means over the cell's seed pairs):
    ``cka`` (unbiased, the phases' value), ``cka_paper`` (the authors' biased per-batch value),
    ``cka_chance`` / ``cka_paper_chance`` (the same with one side's samples permuted),
    ``mc_error``, ``mc_loss`` (the paper's mc, referenced to the endpoints' mean),
    ``mc_error_chord``, ``mc_loss_chord`` (referenced to the chord between the endpoints),
    ``curve_converged`` (every pair's curve converged), and ``phase`` / ``phase_confidence`` from
    :func:`zoo_phase_map` (left empty with ``phases=False``).
    """
    store, key = zoo.store, _metrics_key(zoo, epoch)
    df = df.copy()
    members = {m.member: m for m in zoo.members}
    vals = {c: [] for c in MEMBER_METRIC_COLUMNS}
    for name in df["member"]:
        rec = _read_member_metrics(store.member(name)).get(key, {}) if key else {}
        vals["hessian_top_eig"].append(rec.get("hessian_top_eig", {}).get("value", math.nan))
        tr = rec.get("hessian_trace", {})
        vals["hessian_trace"].append(tr.get("value", math.nan))
        vals["hessian_trace_stderr"].append(math.nan if tr.get("stderr") is None else tr["stderr"])
    for c, v in vals.items():
        df[c] = pd.array(v, dtype=float)
    pairs = pair_table(zoo, epoch=epoch)
    df["_cell"] = [cell_name(members[n]) for n in df["member"]]
    for col in PAIR_COLUMNS:
        df[col] = math.nan
    df["curve_converged"] = pd.array([pd.NA] * len(df), dtype="boolean")
    for cell, g in pairs.groupby("cell"):
        idx = df.index[df["_cell"] == cell]
        for col in PAIR_COLUMNS:
            df.loc[idx, col] = _mean(list(g[col]))
        conv = g["curve_converged"].dropna()
        if len(conv):
            df.loc[idx, "curve_converged"] = bool(conv.astype(bool).all())
    df = df.drop(columns="_cell")
    df["phase"] = None
    df["phase_confidence"] = math.nan
    if phases and (df["status"] == "done").any() and len(pairs):
        pm = zoo_phase_map(zoo, epoch=epoch, members=df, pairs=pairs)
        load, temp = zoo.load_axis, zoo.temperature_axis
        lookup = {(r[load], r[temp]): (r["phase"], r["phase_confidence"]) for _, r in pm.cells.iterrows()}
        got = [lookup.get((a, b), (None, math.nan)) for a, b in zip(df[load], df[temp])]
        df["phase"] = [g[0] for g in got]
        df["phase_confidence"] = [g[1] for g in got]
    return df


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else math.nan
