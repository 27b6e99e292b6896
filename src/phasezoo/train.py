"""Train one zoo member: the single training loop every zoo uses.

Per member (a :class:`~phasezoo.spec.MemberSpec`):

* epoch 0 is an evaluation at initialisation; each later epoch is one pass over the shuffled,
  augmented training set followed by an evaluation of the full train set (eval mode, no
  augmentation, as the paper reports train loss) and of the test set;
* the learning rate follows the spec's schedule, stepped once per batch;
* with L-BFGS (the PINNs) an epoch is one ``optimizer.step(closure)`` of up to
  ``max_iter`` iterations on each (full) batch, with a strong-Wolfe line search;
* the loss and scores come from the member's task (:mod:`phasezoo.tasks`); datasets with a
  ``max_eval`` (OpenWebText) are evaluated on a fixed subset of that many samples per split;
* a non-finite training loss ends the member with status ``diverged``; the zoo carries on;
* after every epoch the results line, the checkpoint (if the epoch is a checkpoint epoch) and
  the resume state are written atomically, in that order, so a rerun continues from the last
  finished epoch and reproduces an uninterrupted run bit for bit on the same device.

Randomness: the seed is split (numpy ``SeedSequence``) into an initialisation seed for torch's
global generator and a data seed for a dedicated ``torch.Generator`` that draws the epoch order
and the augmentation; both generator states are part of the resume state.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from phasezoo.data import BatchAugment, eval_split, load_dataset, steps_per_epoch, train_batches
from phasezoo.models import model_from_config
from phasezoo.errors import CorruptFileError, PhaseZooError, warn
from phasezoo.spec import MemberSpec
from phasezoo.store import MemberStore
from phasezoo.tasks import row_scores, task_for

#: evaluation batch size; BatchNorm is in eval mode, so it changes speed, never values
EVAL_BATCH_SIZE = 1024


@dataclass
class MemberResult:
    """What training one member produced (also what executors send back to the runner)."""

    member: str
    status: str  # done | diverged | partial
    epochs_run: int  # epochs trained in this call
    last_epoch: int  # last recorded epoch
    wall_s: float
    final: dict[str, Any] = field(default_factory=dict)


def training_bytes_estimate(member: MemberSpec) -> int:
    """A lower bound on the memory training ``member`` needs: its parameters and buffers (built
    on the meta device, so nothing is allocated) times the copies training keeps — weights,
    gradients, optimizer state (one buffer for SGD momentum, two for AdamW, ``history_size``
    pairs for L-BFGS), the resume state and the serialised checkpoint. Activations come on top."""
    with torch.device("meta"):
        model = model_from_config(member.to_dict())
    n_param = sum(p.numel() * p.element_size() for p in model.parameters())
    n_buf = sum(b.numel() * b.element_size() for b in model.buffers())
    optim = {"sgd": 1 if member.momentum else 0, "adamw": 2}.get(
        member.optimizer, 2 * int(member.optimizer_options.get("history_size", 0)) + 2)
    return n_param * (2 + optim + 2) + n_buf * 3


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (CUDA: free device memory; CPU: ``MemAvailable``), or None."""
    if device.type == "cuda":  # None on a machine without CUDA (a Ray driver, its GPUs on the workers)
        return int(torch.cuda.mem_get_info(device)[0]) if torch.cuda.is_available() else None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits_memory(members: list[MemberSpec], device: torch.device, workers: int = 1) -> None:
    """Refuse, before anything is written, a member whose model alone cannot fit (``workers``
    members train at once on a CPU)."""
    free = available_bytes(device)
    if free is None:
        return
    seen: dict[tuple, int] = {}
    for m in members:
        key = (m.arch, m.width, m.dataset, m.optimizer, str(sorted(m.model.items())))
        if key not in seen:
            seen[key] = training_bytes_estimate(m)
        need = seen[key] * (workers if device.type == "cpu" else 1)
        if need > free:
            raise PhaseZooError(
                f"{m.member}: training needs at least {need / 2**30:.1f} GiB (parameters, gradients, "
                f"optimizer and resume state{f' for {workers} workers' if workers > 1 else ''}), "
                f"but {free / 2**30:.1f} GiB are free on {device}; choose a smaller width")


def member_seeds(seed: int) -> tuple[int, int]:
    """(init seed, data seed): independent streams derived from the member's seed."""
    init_seed, data_seed = np.random.SeedSequence(seed).generate_state(2)
    return int(init_seed), int(data_seed)


def build_member_model(member: MemberSpec) -> nn.Module:
    """The member's architecture, freshly initialised from its seed (no weights loaded)."""
    torch.manual_seed(member_seeds(member.seed)[0])
    return model_from_config(member.to_dict())


def make_optimizer(model: nn.Module, member: MemberSpec) -> torch.optim.Optimizer:
    if member.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=member.lr, momentum=member.momentum,
            weight_decay=member.weight_decay,
        )
    if member.optimizer == "lbfgs":
        o = member.optimizer_options
        return torch.optim.LBFGS(
            model.parameters(), lr=member.lr, max_iter=o["max_iter"], history_size=o["history_size"],
            tolerance_grad=o["tolerance_grad"], tolerance_change=o["tolerance_change"],
            line_search_fn=None if o["line_search"] == "none" else o["line_search"],
        )
    return torch.optim.AdamW(model.parameters(), lr=member.lr, weight_decay=member.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, member: MemberSpec, total_steps: int):
    """OneCycleLR with cosine annealing (stepped per batch), or None for a constant rate."""
    s = member.scheduler
    if s["name"] == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=member.lr, total_steps=total_steps, pct_start=s["pct_start"],
        anneal_strategy="cos", cycle_momentum=False, div_factor=s["div_factor"],
        final_div_factor=s["final_div_factor"],
    )


def train_member(
    member: MemberSpec,
    member_dir: Path,
    *,
    device: str | torch.device = "cpu",
    data_dir: str | Path | None = None,
    progress: bool = False,
    stop_after_epoch: int | None = None,
) -> MemberResult:
    """Train (or resume) one member into ``member_dir``; returns its :class:`MemberResult`.

    ``stop_after_epoch`` ends the call after that epoch, leaving a resumable partial member
    (what an interruption leaves; the tests use it).

    A resume runs with the torch thread count the member was started with (recorded in its
    resume state and ``status.json``), because the float results of CPU kernels depend on it.
    A resume state or results file that fails its hash is never used: the member restarts from
    scratch, with a warning on stderr and the reason in ``status.json`` (``restarted``).
    """
    threads = torch.get_num_threads()
    try:
        return _train_member(member, Path(member_dir), device=device, data_dir=data_dir,
                             progress=progress, stop_after_epoch=stop_after_epoch)
    finally:
        torch.set_num_threads(threads)


def training_environment(device: torch.device) -> dict[str, Any]:
    """What decides the bits of a trained member besides its config: torch version, device and
    torch's intra-op thread count (CPU kernels split reductions by thread)."""
    return {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads()}


def _load_resume_state(store: MemberStore) -> tuple[Any, list[dict], str | None]:
    """(resume state or None, the result lines before the resumed epoch, why it restarts)."""
    try:
        resume = store.load_resume()
        if resume is None:
            return None, [], None
        start = int(resume[1]["epoch"]) + 1
        rows = [r for r in store.read_results() if r["epoch"] < start]
        if len(rows) != start:
            raise CorruptFileError(f"{store.results_path} lacks epochs before {start}")
        return resume, rows, None
    except CorruptFileError as e:
        return None, [], str(e)


def _train_member(member, member_dir, *, device, data_dir, progress, stop_after_epoch) -> MemberResult:
    t_start = time.perf_counter()
    store = MemberStore(member_dir)
    status = store.read_status()
    if status and status.get("status") in ("done", "diverged"):
        rows = store.read_results()
        return MemberResult(member.member, status["status"], 0, rows[-1]["epoch"] if rows else 0, 0.0,
                            rows[-1] if rows else {})
    device = torch.device(device) if not isinstance(device, torch.device) else device
    resume, rows, restart_reason = _load_resume_state(store)
    env = training_environment(device)
    # what status.json and the resume state record about this run (see training_environment)
    info: dict[str, Any] = {"trained_with": env}
    if restart_reason is not None:
        warn(f"{member.member}: {restart_reason}; training it again from scratch")
        store.clear()
        info["restarted"] = restart_reason
    elif resume is not None:
        recorded = resume[1].get("environment") or env
        if recorded.get("threads") and recorded["threads"] != env["threads"]:
            torch.set_num_threads(int(recorded["threads"]))
        info = {"trained_with": recorded, **{k: v for k, v in resume[1].items() if k in ("restarted", "resumed_with")}}
        if (recorded["torch"], recorded["device"]) != (env["torch"], env["device"]):
            info["resumed_with"] = [*info.get("resumed_with", []),
                                    {**env, "from_epoch": int(resume[1]["epoch"]) + 1}]
            warn(f"{member.member}: started with torch {recorded['torch']} on {recorded['device']}, "
                 f"resumed with torch {env['torch']} on {env['device']}: not bit-for-bit reproducible")
    task = task_for(member.to_dict())
    data = load_dataset(member.dataset, data_dir).to(device)
    # colour augmentations work on pixels: they undo and redo the standardisation
    augment = BatchAugment.from_spec(member.augmentation, mean=getattr(data, "mean", None),
                                     std=getattr(data, "std", None))

    model = build_member_model(member).to(device)
    optimizer = make_optimizer(model, member)
    steps = steps_per_epoch(data.num_train, member.batch_size)
    scheduler = make_scheduler(optimizer, member, member.epochs * steps)
    generator = torch.Generator().manual_seed(member_seeds(member.seed)[1])

    store.write_config(member.to_dict())
    if resume is None:
        rows = [{"epoch": 0, **_evaluate(task, model, data), "lr": _lr(optimizer), "time_s": 0.0}]
        _record_epoch(store, member, model, optimizer, scheduler, generator, rows, 0.0, info)
        start, elapsed = 1, 0.0
    else:
        start, elapsed = _restore(resume, model, optimizer, scheduler, generator, device)
    store.write_status("running", epoch=start - 1, **info)

    bar = _epoch_bar(member, start, progress)
    epochs_run = 0
    final_status = "partial"
    epoch = start - 1
    for epoch in range(start, member.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        seen, last_lr = 0, _lr(optimizer)
        for xb, yb in train_batches(data.train_x, data.train_y, member.batch_size, generator=generator):
            xb = augment(xb, generator)
            if isinstance(optimizer, torch.optim.LBFGS):
                def closure(xb=xb, yb=yb):
                    optimizer.zero_grad(set_to_none=True)
                    closure_loss = task.batch_loss(model, xb, yb)
                    closure_loss.backward()
                    return closure_loss

                loss = optimizer.step(closure)  # the loss at the start of the step
            else:
                loss = task.batch_loss(model, xb, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            last_lr = _lr(optimizer)  # the rate this step used, recorded before the schedule moves
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.detach().double() * len(yb)
            seen += len(yb)
        batch_loss = float(loss_sum) / seen
        row = {"epoch": epoch, **_evaluate(task, model, data), "lr": last_lr,
               "train_loss_batches": batch_loss}
        row["time_s"] = time.perf_counter() - t0
        elapsed += row["time_s"]
        rows.append(row)
        epochs_run += 1
        if not (math.isfinite(batch_loss) and math.isfinite(row["train_loss"])):
            store.write_results(rows)
            store.write_status("diverged", epoch=epoch, reason="non-finite training loss", **info)
            store.clear_resume()
            final_status = "diverged"
            break
        _record_epoch(store, member, model, optimizer, scheduler, generator, rows, elapsed, info)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.3g}", test_err=f"{row['test_error']:.3f}")
        if epoch == member.epochs:
            store.write_status("done", epoch=epoch, train_time_s=elapsed, **info)
            store.clear_resume()
            final_status = "done"
        elif stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    if start > member.epochs:  # resumed after the last epoch was recorded but before "done"
        store.write_status("done", epoch=member.epochs, train_time_s=elapsed, **info)
        store.clear_resume()
        final_status = "done"
    if bar is not None:
        bar.close()
    return MemberResult(member.member, final_status, epochs_run, rows[-1]["epoch"],
                        time.perf_counter() - t_start, rows[-1])


def _evaluate(task, model: nn.Module, data) -> dict[str, float]:
    row: dict[str, float] = {}
    for split in ("train", "test"):
        x, y = eval_split(data, split)
        row.update(row_scores(task, task.evaluate(model, x, y, batch_size=EVAL_BATCH_SIZE), split))
    return row


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _epoch_bar(member: MemberSpec, start: int, progress: bool):
    if not progress:
        return None
    return tqdm(total=member.epochs, initial=start - 1, desc=member.member, unit="ep", leave=False)


# ----------------------------------------------------------------------------- resume state


def _record_epoch(store, member, model, optimizer, scheduler, generator, rows, elapsed, info) -> None:
    """Persist one finished epoch: results, then checkpoint, then resume state (see module doc).
    ``info`` (the training environment, restarts) travels in the resume state's metadata."""
    epoch = rows[-1]["epoch"]
    store.write_results(rows)
    if epoch in member.checkpoint_epochs:
        store.save_checkpoint(epoch, model.state_dict())
    tensors, meta = _training_state(model, optimizer, scheduler, generator)
    store.save_resume(tensors, {**meta, "epoch": epoch, "elapsed_s": elapsed,
                               "environment": info["trained_with"],
                               **{k: v for k, v in info.items() if k != "trained_with"}})


def _training_state(model, optimizer, scheduler, generator) -> tuple[dict, dict]:
    """Everything resuming needs, as tensors plus JSON-able metadata (no pickle)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars = {}
    for idx, state in opt["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            elif isinstance(value, (list, tuple)) and any(torch.is_tensor(v) for v in value):
                # L-BFGS keeps its curvature history as lists of tensors (some entries None)
                for i, v in enumerate(value):
                    if v is not None:
                        tensors[f"optim.{idx}.{key}#{i}"] = v
                scalars[f"{idx}.{key}"] = {"tensor_list": len(value)}
            else:
                scalars[f"{idx}.{key}"] = value
    tensors["rng.data"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {
        "optimizer_groups": opt["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }
    return tensors, meta


def _restore(resume, model, optimizer, scheduler, generator, device) -> tuple[int, float]:
    """Load a resume state; returns (first epoch to train, training seconds so far)."""
    tensors, meta = resume
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v.to(device)
    for k, v in meta["optimizer_scalars"].items():
        idx, key = k.split(".", 1)
        if isinstance(v, dict) and "tensor_list" in v:
            v = [state[int(idx)].pop(f"{key}#{i}", None) for i in range(v["tensor_list"])]
        state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
    if scheduler is not None:
        scheduler.load_state_dict(meta["scheduler"])
    generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(meta["epoch"]) + 1, float(meta["elapsed_s"])
