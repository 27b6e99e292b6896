"""Train zoo members: the single training loop every zoo uses.

The loop trains a *pack* of K members at once: the seeds of one grid cell as one packed model
(:mod:`phasezoo.models.packed`, :func:`train_members`), or one member alone (K = 1, the member's
own model, :func:`train_member`). Everything below holds for each member of a pack; a packed
epoch's wall time is shared equally between its seeds (``time_s`` of each results row).

Per member (a :class:`~phasezoo.spec.MemberSpec`):

* epoch 0 is an evaluation at initialisation; each later epoch is one pass over the shuffled,
  augmented training set followed by an evaluation of the full train set (eval mode, no
  augmentation, as the paper reports train loss) and of the test set;
* the learning rate follows the spec's schedule, stepped once per batch;
* with L-BFGS (the PINNs) an epoch is one ``optimizer.step(closure)`` of up to
  ``max_iter`` iterations on each (full) batch, with a strong-Wolfe line search;
* the loss and scores come from the member's task (:mod:`phasezoo.tasks`); datasets with a
  ``max_eval`` (OpenWebText) are evaluated on a fixed subset of that many samples per split;
* a non-finite training loss ends the member with status ``diverged``; the zoo (and the
  member's pack) carries on;
* after every epoch the results line, the checkpoint (if the epoch is a checkpoint epoch) and
  the resume state are written atomically, in that order, so a rerun continues from the last
  finished epoch and reproduces an uninterrupted run bit for bit on the same device.

Randomness: the seed is split (numpy ``SeedSequence``) into an initialisation seed for torch's
global generator and a data seed for a dedicated ``torch.Generator`` that draws the epoch order
and the augmentation; both generator states are part of the resume state.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm  # the text bar: tqdm.auto would want ipywidgets in a notebook kernel and warn on every page

from phasezoo.data import BatchAugment, eval_split, load_dataset, steps_per_epoch, train_batches
from phasezoo.models import model_from_config
from phasezoo.models.packed import (
    STRATEGIES,
    PackedModel,
    default_packing,
    pack_optimizer_state,
    unpack_optimizer_state,
)
from phasezoo.errors import CorruptFileError, PhaseZooError, warn
from phasezoo.executors import processor_name
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


@dataclass(frozen=True)
class DeviceOptions:
    """How the device runs training (none changes what is trained, all change its rounding):

    * ``channels_last``: convolution inputs and weights in NHWC memory order (faster convolution
      kernels on recent GPUs; conv architectures only, ignored by the others);
    * ``autocast``: ``"bf16"`` runs the training forward pass and loss under
      ``torch.autocast`` in bfloat16 (weights, gradients and optimizer state stay float32;
      the per-epoch evaluation stays in full precision);
    * ``compile``: the training module goes through ``torch.compile``.

    They are recorded in every member's ``trained_with`` (a resume with other options warns that
    it is not bit-for-bit reproducible). ``benchmarks/gpu_zoo.py`` measures them."""

    channels_last: bool = False
    autocast: str | None = None
    compile: bool = False

    def __post_init__(self):
        if self.autocast not in (None, "bf16"):
            raise PhaseZooError(f"autocast must be bf16 or none, got {self.autocast!r}")

    def as_dict(self) -> dict[str, Any]:
        """The options that are set (empty by default)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


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
    dtype: torch.dtype = torch.float32,
    options: DeviceOptions | None = None,
) -> MemberResult:
    """Train (or resume) one member into ``member_dir``; returns its :class:`MemberResult`.

    ``stop_after_epoch`` ends the call after that epoch, leaving a resumable partial member
    (what an interruption leaves; the tests use it). ``dtype`` is the precision of the model and
    the data (float64 for exactness checks); ``options`` how the device runs it
    (:class:`DeviceOptions`).

    A resume runs with the torch thread count the member was started with (recorded in its
    resume state and ``status.json``), because the float results of CPU kernels depend on it.
    A resume state or results file that fails its hash is never used: the member restarts from
    scratch, with a warning on stderr and the reason in ``status.json`` (``restarted``).
    """
    return train_members([member], [member_dir], device=device, data_dir=data_dir, progress=progress,
                         stop_after_epoch=stop_after_epoch, pack=False, dtype=dtype, options=options)[0]


def train_members(
    members: Sequence[MemberSpec],
    member_dirs: Sequence[str | Path],
    *,
    device: str | torch.device = "cpu",
    data_dir: str | Path | None = None,
    progress: bool = False,
    stop_after_epoch: int | None = None,
    pack: bool | None = None,
    dtype: torch.dtype = torch.float32,
    options: DeviceOptions | None = None,
) -> list[MemberResult]:
    """Train (or resume) ``members`` into ``member_dirs``; one :class:`MemberResult` each, in order.

    Seeds that may train together (:func:`pack_groups`: same settings but the seed, an
    architecture with a packing strategy, not L-BFGS, resuming from the same epoch with the same
    thread count) train as one packed model (:mod:`phasezoo.models.packed`) when ``pack`` is
    True, or when it is None and packing measured faster for the architecture on ``device``
    (:func:`~phasezoo.models.packed.default_packing`); ``pack=False`` trains them one by one. Each
    seed keeps exactly its own initialisation, data order, augmentation and optimizer state, and
    writes the same files as when trained alone (see :func:`train_member`).
    """
    if len(members) != len(member_dirs):
        raise ValueError("one member directory per member")
    threads = torch.get_num_threads()
    device = torch.device(device) if not isinstance(device, torch.device) else device
    try:
        results: dict[str, MemberResult] = {}
        runs = []
        for member, member_dir in zip(members, member_dirs):
            opened = _open_member(member, Path(member_dir))
            if isinstance(opened, MemberResult):
                results[member.member] = opened
            else:
                runs.append(opened)
        for group, strategy in pack_groups(runs, device, pack):
            torch.set_num_threads(group[0].threads)
            for res in _train_group(group, strategy, device=device, data_dir=data_dir, progress=progress,
                                    stop_after_epoch=stop_after_epoch, dtype=dtype,
                                    options=options or DeviceOptions()):
                results[res.member] = res
        return [results[m.member] for m in members]
    finally:
        torch.set_num_threads(threads)


def training_environment(device: torch.device) -> dict[str, Any]:
    """What decides the bits of a trained member besides its config: torch version, device, the
    processor that runs its kernels (:func:`~phasezoo.executors.processor_name`: another CPU
    model rounds differently) and torch's intra-op thread count (CPU kernels split reductions by
    thread). Packed training adds ``packing`` (its strategy) and ``packed`` (how many seeds
    started together)."""
    return {"torch": torch.__version__, "device": str(device), "processor": processor_name(device),
            "threads": torch.get_num_threads()}


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


@dataclass
class _Run:
    """One member in a training call: what its store holds and where it goes on from."""

    member: MemberSpec
    store: MemberStore
    resume: Any  # (tensors, metadata) or None
    rows: list[dict]
    restart_reason: str | None
    threads: int  # the thread count it trains with (recorded at its start)
    start: int  # first epoch to train (0: not started, epoch 0 still to evaluate)
    # set by _train_group
    info: dict[str, Any] = field(default_factory=dict)
    generator: torch.Generator | None = None
    torch_rng: torch.Tensor | None = None
    elapsed: float = 0.0
    epochs_run: int = 0
    status: str = "partial"


def _open_member(member: MemberSpec, member_dir: Path) -> "MemberResult | _Run":
    """A finished member's result, or what its store holds to go on from."""
    store = MemberStore(member_dir)
    status = store.read_status()
    if status and status.get("status") in ("done", "diverged"):
        rows = store.read_results()
        return MemberResult(member.member, status["status"], 0, rows[-1]["epoch"] if rows else 0, 0.0,
                            rows[-1] if rows else {})
    resume, rows, restart_reason = _load_resume_state(store)
    threads = torch.get_num_threads()
    start = 0
    if resume is not None:
        start = int(resume[1]["epoch"]) + 1
        threads = int((resume[1].get("environment") or {}).get("threads") or threads)
    return _Run(member, store, resume, rows, restart_reason, threads, start)


def pack_key(member: MemberSpec) -> str:
    """Members with the same key may be packed: everything but the name and the seed agrees."""
    d = member.to_dict()
    for k in ("member", "seed"):
        d.pop(k)
    return json.dumps(d, sort_keys=True)


def packing_strategy(member: MemberSpec, device: torch.device, pack: bool | None) -> str | None:
    """The packing strategy ``member`` trains with (None: alone); see :func:`train_members`."""
    strategy = STRATEGIES.get(member.arch)
    if pack is False or strategy is None or member.optimizer == "lbfgs":
        return None
    if pack is None and not default_packing(member.arch, device):
        return None
    return strategy


def pack_groups(runs: Sequence[_Run], device: torch.device, pack: bool | None) -> list[tuple[list[_Run], str | None]]:
    """``runs`` as groups trained together, each with its packing strategy (None: alone)."""
    groups: dict[tuple, list[_Run]] = {}
    out: list[tuple[list[_Run], str | None]] = []
    for r in runs:
        strategy = packing_strategy(r.member, device, pack)
        if strategy is None:
            out.append(([r], None))
        else:
            groups.setdefault((pack_key(r.member), r.start, r.threads, strategy), []).append(r)
    for (_, _, _, strategy), group in groups.items():
        out.append((group, strategy if len(group) > 1 else None))
    return out


class _Pack:
    """The module, optimizer and learning-rate schedule that train K seeds at once.

    ``models`` are the seeds' own models (the member architecture): with ``strategy`` None
    (K = 1) the one model is trained itself, exactly as a member alone; otherwise a
    :class:`~phasezoo.models.packed.PackedModel` holds the K seeds' weights and ``models`` are
    refreshed from it (:meth:`sync`) for evaluation and checkpoints."""

    def __init__(self, task, member: MemberSpec, models: list[nn.Module], optimizer_states: list,
                 scheduler_state, strategy: str | None, total_steps: int,
                 options: DeviceOptions = DeviceOptions()):
        self.task, self.models, self.strategy, self.options = task, models, strategy, options
        self.module = models[0] if strategy is None else PackedModel(models, strategy)
        self.channels_last = options.channels_last and any(
            isinstance(m, nn.Conv2d) for m in models[0].modules())
        if self.channels_last:  # 4-D weights of a member alone; a pack converts its stacked input
            if strategy is None:
                self.module.to(memory_format=torch.channels_last)
            else:
                self.module.memory_format = torch.channels_last
        self.forward = torch.compile(self.module) if options.compile else self.module
        self.optimizer = make_optimizer(self.module, member)
        self.scheduler = make_scheduler(self.optimizer, member, total_steps)
        if optimizer_states[0] is not None:
            self.optimizer.load_state_dict(
                optimizer_states[0] if strategy is None
                else pack_optimizer_state(optimizer_states, list(self.module.parameters())))
        if self.scheduler is not None and scheduler_state is not None:
            self.scheduler.load_state_dict(scheduler_state)
        self.member, self.total_steps = member, total_steps

    @property
    def lbfgs(self) -> bool:
        return isinstance(self.optimizer, torch.optim.LBFGS)

    def losses(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
        """The K seeds' training losses on their own batches, shape (K,)."""
        if self.channels_last:
            xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
        device_type = xs[0].device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.options.autocast == "bf16"):
            if self.strategy is None:
                return self.task.batch_loss(self.forward, xs[0], ys[0]).reshape(1)
            out = self.forward(torch.stack(xs))
            return torch.stack([self.task.loss(out[k], ys[k]) for k in range(len(ys))])

    def sync(self) -> None:
        """Copy the packed weights into the seeds' own models."""
        if self.strategy is not None:
            for k, model in enumerate(self.models):
                model.load_state_dict(self.module.seed_state(k))

    def model_state(self, k: int) -> dict[str, torch.Tensor]:
        """Seed ``k``'s weights, from its own model (refreshed by :meth:`sync` after every epoch),
        in the standard contiguous layout (a channels-last member alone is stored as any other)."""
        return {n: t.contiguous() for n, t in self.models[k].state_dict().items()}

    def optimizer_state(self, k: int) -> dict:
        state = self.optimizer.state_dict()
        if self.strategy is None:
            return state
        return unpack_optimizer_state(state, list(self.module.parameters()), k)

    def scheduler_state(self):
        return self.scheduler.state_dict() if self.scheduler is not None else None

    def without(self, drop: set[int]) -> "_Pack":
        """The pack of the other seeds (a diverged seed leaves; the others go on unchanged)."""
        keep = [k for k in range(len(self.models)) if k not in drop]
        self.sync()
        states = [self.optimizer_state(k) for k in keep]
        return _Pack(self.task, self.member, [self.models[k] for k in keep], states,
                     self.scheduler_state(), self.strategy if len(keep) > 1 else None, self.total_steps,
                     self.options)


def _cast(data, dtype: torch.dtype):
    """``data`` with its floating-point tensors in ``dtype``."""
    if dtype == torch.float32:
        return data
    names = ("train_x", "train_y", "test_x", "test_y")
    return dataclasses.replace(data, **{n: getattr(data, n).to(dtype) for n in names
                                        if torch.is_floating_point(getattr(data, n))})


def _environment_info(run: _Run, env: dict[str, Any]) -> dict[str, Any]:
    """What ``status.json`` and the resume state record about this run of ``run``'s member
    (see :func:`training_environment`); warns when a resume cannot be bit-for-bit."""
    if run.restart_reason is not None:
        warn(f"{run.member.member}: {run.restart_reason}; training it again from scratch")
        run.store.clear()
        return {"trained_with": env, "restarted": run.restart_reason}
    if run.resume is None:
        return {"trained_with": env}
    meta = run.resume[1]
    recorded = meta.get("environment") or env
    info = {"trained_with": recorded, **{k: v for k, v in meta.items() if k in ("restarted", "resumed_with")}}
    # a member started before the processor was recorded has none: that alone is no change
    keys = ("torch", "device", "packing", "device_options") + (("processor",) if "processor" in recorded else ())
    if tuple(recorded.get(k) for k in keys) != tuple(env.get(k) for k in keys):
        info["resumed_with"] = [*info.get("resumed_with", []), {**env, "from_epoch": run.start}]
        how = lambda e: (f"torch {e['torch']} on {e['device']}" + (f" ({e['processor']})" if "processor" in recorded else "")
                         + (f", packed ({e['packing']})" if e.get("packing") else ""))
        warn(f"{run.member.member}: started with {how(recorded)}, resumed with {how(env)}: "
             "not bit-for-bit reproducible")
    return info


def _train_group(runs: list[_Run], strategy: str | None, *, device, data_dir, progress,
                 stop_after_epoch, dtype, options: DeviceOptions) -> list[MemberResult]:
    """Train the members of ``runs`` together (one pack; alone when ``strategy`` is None)."""
    t_start = time.perf_counter()
    env = training_environment(device)
    if strategy is not None:
        env = {**env, "packing": strategy, "packed": len(runs)}
    if options.as_dict():
        env = {**env, "device_options": options.as_dict()}
    for r in runs:  # (a member restarting from scratch was opened with no resume state, at epoch 0)
        r.info = _environment_info(r, env)
    member = runs[0].member
    task = task_for(member.to_dict())
    data = _cast(load_dataset(member.dataset, data_dir).to(device), dtype)
    # colour augmentations work on pixels: they undo and redo the standardisation
    augment = BatchAugment.from_spec(member.augmentation, mean=getattr(data, "mean", None),
                                     std=getattr(data, "std", None))
    models, optimizer_states = [], []
    scheduler_state = None
    for r in runs:
        model = build_member_model(r.member).to(device=device, dtype=dtype)
        r.generator = torch.Generator().manual_seed(member_seeds(r.member.seed)[1])
        r.torch_rng = None if strategy is None else torch.get_rng_state()  # None: the live global state
        state = None
        if r.resume is not None:
            state, scheduler_state = _restore(r.resume, model, r.generator, device)
            rng = r.resume[0]["rng.torch"]
            if strategy is None:
                torch.set_rng_state(rng)  # a member alone trains from its own global state
            else:
                r.torch_rng = rng
            r.elapsed = float(r.resume[1]["elapsed_s"])
        models.append(model)
        optimizer_states.append(state)
    steps = steps_per_epoch(data.num_train, member.batch_size)
    pack = _Pack(task, member, models, optimizer_states, scheduler_state, strategy, member.epochs * steps,
                 options)
    if strategy is None and runs[0].resume is not None and "rng.cuda" in runs[0].resume[0] \
            and torch.cuda.is_available():
        torch.cuda.set_rng_state(runs[0].resume[0]["rng.cuda"])

    for r in runs:
        r.store.write_config(r.member.to_dict())
    if runs[0].start == 0:
        for k, r in enumerate(runs):
            r.rows = [{"epoch": 0, **_evaluate(task, pack.models[k], data), "lr": _lr(pack.optimizer),
                       "time_s": 0.0}]
            _record_epoch(r, pack, k)
        start = 1
    else:
        start = runs[0].start
    for r in runs:
        r.store.write_status("running", epoch=start - 1, **r.info)

    active = list(runs)
    bar = _epoch_bar(member, start, progress, len(runs))
    for epoch in range(start, member.epochs + 1):
        t0 = time.perf_counter()
        pack.module.train()
        loss_sum = torch.zeros(len(active), dtype=torch.float64, device=device)
        seen, last_lr = 0, _lr(pack.optimizer)
        streams = [train_batches(data.train_x, data.train_y, member.batch_size, generator=r.generator)
                   for r in active]
        for batches in zip(*streams):
            xs = [augment(xb, r.generator) for (xb, _), r in zip(batches, active)]
            ys = [yb for _, yb in batches]
            if pack.lbfgs:
                def closure(xs=xs, ys=ys):
                    pack.optimizer.zero_grad(set_to_none=True)
                    closure_loss = pack.losses(xs, ys).sum()
                    closure_loss.backward()
                    return closure_loss

                losses = pack.optimizer.step(closure).reshape(1)  # the loss at the start of the step
            else:
                losses = pack.losses(xs, ys)
                pack.optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()  # seed k's parameters get the gradient of seed k's loss
                pack.optimizer.step()
            last_lr = _lr(pack.optimizer)  # the rate this step used, recorded before the schedule moves
            if pack.scheduler is not None:
                pack.scheduler.step()
            loss_sum += losses.detach().double() * len(ys[0])
            seen += len(ys[0])
        pack.sync()
        # a packed epoch's wall time is shared by its seeds: each row carries its share
        share = (time.perf_counter() - t0) / len(active)
        diverged: set[int] = set()
        for k, r in enumerate(active):
            batch_loss = float(loss_sum[k]) / seen
            row = {"epoch": epoch, **_evaluate(task, pack.models[k], data), "lr": last_lr,
                   "train_loss_batches": batch_loss}
            row["time_s"] = share
            r.elapsed += row["time_s"]
            r.rows.append(row)
            r.epochs_run += 1
            if not (math.isfinite(batch_loss) and math.isfinite(row["train_loss"])):
                r.store.write_results(r.rows)
                r.store.write_status("diverged", epoch=epoch, reason="non-finite training loss", **r.info)
                r.store.clear_resume()
                r.status = "diverged"
                diverged.add(k)
                continue
            _record_epoch(r, pack, k)
            if epoch == member.epochs:
                r.store.write_status("done", epoch=epoch, train_time_s=r.elapsed, **r.info)
                r.store.clear_resume()
                r.status = "done"
        if bar is not None:
            bar.update(1)
            last = active[0].rows[-1]
            bar.set_postfix(loss=f"{last['train_loss']:.3g}", test_err=f"{last['test_error']:.3f}")
        if diverged:
            active = [r for k, r in enumerate(active) if k not in diverged]
            if not active:
                break
            pack = pack.without(diverged)
        if epoch == member.epochs or (stop_after_epoch is not None and epoch >= stop_after_epoch):
            break
    if start > member.epochs:  # resumed after the last epoch was recorded but before "done"
        for r in runs:
            r.store.write_status("done", epoch=member.epochs, train_time_s=r.elapsed, **r.info)
            r.store.clear_resume()
            r.status = "done"
    if bar is not None:
        bar.close()
    wall = (time.perf_counter() - t_start) / len(runs)
    return [MemberResult(r.member.member, r.status, r.epochs_run, r.rows[-1]["epoch"], wall, r.rows[-1])
            for r in runs]


def _evaluate(task, model: nn.Module, data) -> dict[str, float]:
    row: dict[str, float] = {}
    for split in ("train", "test"):
        x, y = eval_split(data, split)
        row.update(row_scores(task, task.evaluate(model, x, y, batch_size=EVAL_BATCH_SIZE), split))
    return row


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _epoch_bar(member: MemberSpec, start: int, progress: bool, seeds: int = 1):
    if not progress:
        return None
    desc = member.member if seeds == 1 else f"{member.member} +{seeds - 1} packed"
    return tqdm(total=member.epochs, initial=start - 1, desc=desc, unit="ep", leave=False)


# ----------------------------------------------------------------------------- resume state


def _record_epoch(run: _Run, pack: _Pack, k: int) -> None:
    """Persist seed ``k``'s finished epoch: results, then checkpoint, then resume state (see the
    module doc). ``run.info`` (the training environment, restarts) travels in the resume
    state's metadata."""
    store, rows, info = run.store, run.rows, run.info
    epoch = rows[-1]["epoch"]
    store.write_results(rows)
    model_state = pack.model_state(k)
    if epoch in run.member.checkpoint_epochs:
        store.save_checkpoint(epoch, model_state)
    torch_rng = torch.get_rng_state() if run.torch_rng is None else run.torch_rng
    tensors, meta = _training_state(model_state, pack.optimizer_state(k), pack.scheduler_state(),
                                    run.generator, torch_rng)
    store.save_resume(tensors, {**meta, "epoch": epoch, "elapsed_s": run.elapsed,
                               "environment": info["trained_with"],
                               **{k: v for k, v in info.items() if k != "trained_with"}})


def _training_state(model_state, optimizer_state, scheduler_state, generator, torch_rng) -> tuple[dict, dict]:
    """Everything resuming needs, as tensors plus JSON-able metadata (no pickle)."""
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    opt = optimizer_state
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
    tensors["rng.torch"] = torch_rng
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {
        "optimizer_groups": opt["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": scheduler_state,
    }
    return tensors, meta


def _restore(resume, model, generator, device) -> tuple[dict, Any]:
    """Load a resume state's weights and data generator; returns (the optimizer's state dict,
    the scheduler's state)."""
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
    generator.set_state(tensors["rng.data"])
    return {"state": state, "param_groups": meta["optimizer_groups"]}, meta["scheduler"]
