"""Run the downstream methods of paper §4.2 over a trained zoo, resumably, and tabulate them.

Per member (done members, weights of the final epoch):

* pruning — global magnitude pruning of every weight matrix (embeddings included: a GPT's token
  embedding is its tied head) at each sparsity, test accuracy without and with a short
  fine-tune, and for models with embeddings the same with the embeddings left out
  (:mod:`.prune`);
* Wise-FT — ``θ(α) = (1 − α) θ_early + α θ_final`` for α = 0, 0.1, …, 1 between the checkpoint
  at half of training (:data:`phasezoo.spec.WISE_FT_EARLY_FRACTION`) and the final model,
  BatchNorm recomputed; α chosen on the train loss; the test score at that α minus the final
  model's, and the whole curve (:func:`.average.wise_ft_curve`);
* fine-tuning — the target task's test accuracy after a linear probe on frozen features and
  after full fine-tuning (:mod:`.finetune`; image classification zoos only, as transfer to
  another image task has no counterpart for the language and PDE zoos).

Scores are ``1 − error`` of the member's task (:mod:`phasezoo.tasks`): accuracy for
classification, next-token accuracy for language models, ``1 −`` relative L2 error for PINNs;
they are stored under ``acc`` keys for every domain. Ensembles average the members' outputs.
Re-basin alignment is exact for every architecture (ResNet, ViT and GPT residual streams and
MLP units, PINN hidden units; attention heads are left in place).

Per grid cell (its done seeds):

* ensembling — logit average of the seeds; accuracy and gain over the mean member
  (:mod:`.ensemble`);
* re-basin averaging — every seed pair aligned by weight matching, averaged 50/50, BatchNorm
  recomputed; accuracy minus the mean of its endpoints, and the same for the naive (unaligned)
  average for comparison (:mod:`.rebasin`, :mod:`.average`).

Results go to ``<member>/downstream.json`` and ``cells/<cell>.downstream.json`` keyed by epoch,
each with its settings; only the main process writes, so a rerun computes only what is missing.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pandas as pd

from phasezoo.data import DATASETS, load_dataset
from phasezoo.data.batches import eval_split
from phasezoo.downstream.average import averaging_gain, rebasin_average, wise_ft_curve
from phasezoo.downstream.ensemble import ensemble_accuracy, ensemble_scores
from phasezoo.downstream.finetune import finetune
from phasezoo.downstream.prune import has_embeddings, magnitude_prune, prunable_weights, prune_and_finetune
from phasezoo.downstream.rebasin import interpolate
from phasezoo.executors import Job, check_executor, run_zoo_jobs, settings_key, task_device
from phasezoo.models.utils import recompute_bn_statistics
from phasezoo.spec import WISE_FT_EARLY_FRACTION, ZooSpec, by_cell, cell_of, wise_ft_early_epoch
from phasezoo.store import MemberStore, atomic_write_json, jsonable, load_member, read_json
from phasezoo.tasks import score, task_for  # score: 1 − error, stored under ``acc`` keys in every domain
from phasezoo.zoo import DEFAULT_ROOT, Zoo


def _member_task(member_dir: str, epoch: int, settings: dict, device: str, data_dir) -> dict:
    """Pruning, Wise-FT and (image zoos) transfer of one member (runs in a worker)."""
    model, config = load_member(member_dir, epoch)
    model.to(device)
    task = task_for(config)
    data = load_dataset(config["dataset"], data_dir).to(device)
    test_x, test_y = eval_split(data, "test")
    base = score(task, model, test_x, test_y)
    prune = _prune(model, config, task, data, settings["prune"], test_x, test_y, base)
    wise = _wise_ft(member_dir, config, model, task, data)
    out = {"prune": prune, "wise_ft": wise}
    if task.name == "classification":
        f = settings["finetune"]

        # target images are resized to the source dataset's size (STL-10 96 -> 32 for CIFAR, 64
        # for TinyImageNet), as the paper's transfer experiments do
        size = DATASETS[config["dataset"]].image_size
        out["finetune"] = jsonable({
            mode: finetune(model, f["target"], mode=mode, epochs=f["epochs"], batch_size=f["batch_size"],
                           seed=config["seed"], data_dir=data_dir, image_size=size)
            for mode in ("linear", "full")})
    # transfer to another image task has no counterpart for the language and PDE zoos
    return out


def _prune(model, config: dict, task, data, p: dict, test_x, test_y, base: float) -> dict:
    """Global magnitude pruning at each sparsity, scored as is and after the short fine-tune.

    ``acc`` / ``finetuned_acc`` prune every weight matrix, embeddings included (a GPT's token
    embedding is its tied output head); for models with embedding tables the same without them
    go to ``acc_without_embeddings`` / ``finetuned_acc_without_embeddings``
    (:mod:`phasezoo.downstream.prune`). ``prunable`` counts the entries each variant ranks."""
    variants = {"": True, "_without_embeddings": False} if has_embeddings(model) else {"": True}
    out: dict[str, Any] = {"settings": p, "base_acc": base, "prunable": {}}
    train_x, train_y = eval_split(data, "train")
    for suffix, emb in variants.items():
        out["prunable"]["all" if emb else "without_embeddings"] = sum(
            w.numel() for w in prunable_weights(model, embeddings=emb).values())
        acc, tuned_acc = out.setdefault(f"acc{suffix}", {}), out.setdefault(f"finetuned_acc{suffix}", {})
        for s in p["sparsities"]:
            pruned, _ = magnitude_prune(model, s, embeddings=emb)
            acc[str(s)] = score(task, pruned, test_x, test_y)
            tuned = prune_and_finetune(model, s, train_x, train_y, epochs=p["finetune_epochs"], lr=p["lr"],
                                       batch_size=p["batch_size"], seed=config["seed"], task=task, embeddings=emb)
            tuned_acc[str(s)] = score(task, tuned, test_x, test_y)
    return out


def _wise_ft(member_dir: str, config: dict, model, task, data) -> dict:
    """Wise-FT of one member between its early checkpoint and its final model
    (:func:`phasezoo.downstream.average.wise_ft_curve`), or ``{"skipped": reason}`` where the run
    has no early epoch (one epoch of training) or its checkpoint was not stored (a zoo trained
    with another checkpoint schedule)."""
    epochs = int(config["epochs"])
    early = wise_ft_early_epoch(epochs)
    head = {"early_fraction": WISE_FT_EARLY_FRACTION, "early_epoch": early, "final_epoch": epochs}
    if early is None:
        return {**head, "skipped": f"{epochs} epoch(s) of training have no checkpoint at "
                                   f"{WISE_FT_EARLY_FRACTION:g} of training other than the initialisation"}
    store = MemberStore(Path(member_dir))
    stored = store.checkpoint_epochs()
    if early not in stored:
        return {**head, "skipped": f"epoch {early} was not stored (stored: {', '.join(map(str, stored))})"}
    _, early_state = store.load_checkpoint(early)
    device = next(model.parameters()).device
    early_state = {k: v.to(device) for k, v in early_state.items()}
    return {**head, **wise_ft_curve(model, early_state, task, eval_split(data, "train"),
                                    eval_split(data, "test"), data.train_x)}


def _cell_task(dirs: list[str], epoch: int, device: str, data_dir) -> dict:
    """Ensembles and re-basin averages of one cell's seeds (runs in a worker)."""
    loaded = [load_member(d, epoch) for d in dirs]
    models = [m.to(device) for m, _ in loaded]
    task = task_for(loaded[0][1])
    data = load_dataset(loaded[0][1]["dataset"], data_dir).to(device)
    test_x, test_y = eval_split(data, "test")
    if task.name == "classification":
        ens = ensemble_accuracy(models, test_x, test_y)
    else:
        ens = ensemble_scores(models, task, test_x, test_y)
    accs = ens["member_accs"]
    pairs = {}
    for (i, a), (j, b) in itertools.combinations(enumerate(models), 2):
        aligned = rebasin_average(a, b, data.train_x).to(device)
        naive = interpolate(a, b, 0.5).to(device)
        recompute_bn_statistics(naive, data.train_x)
        acc_aligned = score(task, aligned, test_x, test_y)
        acc_naive = score(task, naive, test_x, test_y)
        seeds = f"{loaded[i][1]['seed']}-{loaded[j][1]['seed']}"
        pairs[seeds] = {"acc": acc_aligned, "gain": averaging_gain(acc_aligned, [accs[i], accs[j]]),
                        "naive_acc": acc_naive,
                        "naive_gain": averaging_gain(acc_naive, [accs[i], accs[j]])}
    return {"ensemble": jsonable(ens), "rebasin": pairs}


def run_downstream(
    zoo: Zoo | str | Path | ZooSpec, profile: str | None = None, root: str | Path = DEFAULT_ROOT, *,
    device: str = "auto",
    workers: int = 1, data_dir: str | Path | None = None, progress: bool | None = None,
    settings: dict | None = None,
    executor: str = "local", ray_address: str | None = None,
    cpus_per_task: float = 1.0, gpus_per_task: float = 0.0,
) -> dict[str, Any]:
    """Run the missing downstream methods on the final epoch of every done member / cell, with
    the profile's ``downstream`` settings (or ``settings``, a mapping of the same shape);
    ``executor`` and the Ray options pick where the tasks run (:func:`phasezoo.executors.make_executor`)."""
    check_executor(executor, workers, ray_address, cpus_per_task, gpus_per_task)
    z = Zoo.of(zoo, profile, root)
    epoch = z.final_epoch
    dev = str(task_device(device, executor, gpus_per_task))
    settings = settings or {k: dict(v) for k, v in z.settings.downstream.items()}
    store = z.store
    done = store.finished(list(z.members))
    key, skey = str(epoch), settings_key(settings)

    def plan() -> list[Job]:
        jobs = []
        for m in done:
            d = str(z.member_dir(m))
            if _read(Path(d) / "downstream.json").get(key, {}).get("settings_key") != skey:
                jobs.append(Job("member", f"member {m.member}", d, (d, epoch, settings, dev, data_dir)))
        for cell, ms in by_cell(done).items():
            if len(ms) >= 2 and key not in _read(store.dir / "cells" / f"{cell}.downstream.json"):
                jobs.append(Job("cell", f"cell {cell}", cell, ([str(z.member_dir(m)) for m in ms], epoch, dev, data_dir)))
        return jobs

    t0 = time.perf_counter()
    ran = 0

    finished = run_zoo_jobs(store, "downstream", plan, {"member": _member_task, "cell": _cell_task},
                            check=lambda: store.verify_members(done), workers=workers, progress=progress,
                            executor=executor, ray_address=ray_address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task)
    for job, result in finished:
        ran += 1
        if job.kind == "member":
            path = Path(job.key) / "downstream.json"
            data = _read(path)
            data[key] = {**result, "settings_key": skey}
        else:
            path = store.dir / "cells" / f"{job.key}.downstream.json"
            data = _read(path)
            data[key] = result
        atomic_write_json(path, data)
    return {"epoch": epoch, "tasks": ran, "wall_s": time.perf_counter() - t0}


def _read(path: Path) -> dict:
    return read_json(path, {})


#: the downstream columns of a zoo table (where computed), in the order the book shows them
DOWNSTREAM_COLUMNS = ("prune_acc_0.5", "prune_acc_0.9", "prune_ft_acc_0.9", "prune_noemb_acc_0.9",
                      "prune_noemb_ft_acc_0.9", "wise_ft_gain", "wise_ft_alpha", "ensemble_acc",
                      "ensemble_gain", "rebasin_gain", "naive_avg_gain", "finetune_linear_acc",
                      "finetune_full_acc")


def downstream_columns(df: pd.DataFrame, zoo: Zoo) -> pd.DataFrame:
    """Add the downstream columns (NaN where not run) to a member table:
    ``prune_acc_<s>``, ``prune_ft_acc_<s>`` (embeddings pruned too), ``prune_noemb_acc_<s>``,
    ``prune_noemb_ft_acc_<s>`` (models with embeddings: without them), ``wise_ft_gain``,
    ``wise_ft_alpha``, ``finetune_linear_acc``,
    ``finetune_full_acc`` per member; ``ensemble_acc``, ``ensemble_gain``, ``rebasin_gain``,
    ``naive_avg_gain`` per cell (means over the cell's seed pairs)."""
    store, key = zoo.store, str(zoo.final_epoch)
    rows = []
    for name in df["member"]:
        rec = _read(store.member(name).dir / "downstream.json").get(key)
        cell = _read(store.dir / "cells" / f"{cell_of(name)}.downstream.json").get(key)
        row: dict[str, float] = {}
        if rec:
            for s, v in rec["prune"]["acc"].items():
                row[f"prune_acc_{s}"] = v
            for s, v in rec["prune"]["finetuned_acc"].items():
                row[f"prune_ft_acc_{s}"] = v
            for s, v in rec["prune"].get("acc_without_embeddings", {}).items():  # models with embeddings
                row[f"prune_noemb_acc_{s}"] = v
            for s, v in rec["prune"].get("finetuned_acc_without_embeddings", {}).items():
                row[f"prune_noemb_ft_acc_{s}"] = v
            if "gain" in rec["wise_ft"]:  # absent where skipped (no early checkpoint)
                row["wise_ft_gain"] = rec["wise_ft"]["gain"]
                row["wise_ft_alpha"] = rec["wise_ft"]["best_alpha"]
            if "finetune" in rec:  # vision zoos only
                row["finetune_linear_acc"] = rec["finetune"]["linear"]["target_test_acc"]
                row["finetune_full_acc"] = rec["finetune"]["full"]["target_test_acc"]
        if cell:
            row["ensemble_acc"] = cell["ensemble"]["ensemble_acc"]
            row["ensemble_gain"] = cell["ensemble"]["gain"]
            pairs = list(cell["rebasin"].values())
            row["rebasin_gain"] = sum(p["gain"] for p in pairs) / len(pairs)
            row["naive_avg_gain"] = sum(p["naive_gain"] for p in pairs) / len(pairs)
        rows.append(row)
    extra = pd.DataFrame(rows, index=df.index)
    return pd.concat([df, extra], axis=1) if len(extra.columns) else df


def wise_ft_curves(zoo: Zoo | str | Path | ZooSpec, profile: str | None = None,
                   root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """The stored Wise-FT curves of a zoo's members, one row per member and α: ``member``,
    ``alpha``, ``train_loss``, ``train_acc``, ``test_acc``, ``gain_vs_final`` (test score minus
    the final model's), ``chosen`` (the α picked on the train loss). Members without a curve
    (not run, or skipped: no early checkpoint) are absent."""
    z = Zoo.of(zoo, profile, root)
    store, key = z.store, str(z.final_epoch)
    rows = []
    for m in z.members:
        w = _read(store.member(m.member).dir / "downstream.json").get(key, {}).get("wise_ft", {})
        if "alphas" not in w:
            continue
        for i, a in enumerate(w["alphas"]):
            rows.append({"member": m.member, "alpha": a, "train_loss": w["train_loss"][i],
                         "train_acc": w["train_acc"][i], "test_acc": w["test_acc"][i],
                         "gain_vs_final": w["test_acc"][i] - w["final_acc"], "chosen": a == w["best_alpha"]})
    return pd.DataFrame(rows, columns=["member", "alpha", "train_loss", "train_acc", "test_acc",
                                       "gain_vs_final", "chosen"])


__all__ = ["DOWNSTREAM_COLUMNS", "run_downstream", "downstream_columns", "wise_ft_curves"]
