"""The :class:`Zoo` handle (one zoo spec at one profile under one root) and the zoo-level
operations on it: train a grid resumably, verify it, count states, list members' results.

Every operation on a stored zoo takes a :class:`Zoo`, or what :meth:`Zoo.of` makes one from
(a zoo name, a YAML path or a spec, then the profile and the root). These are the plain-Python
faces of the ``phasezoo`` commands. Everything that can be checked
before training starts (spec, dataset files, existing members' files) is checked first, so a bad
request fails with one line and writes nothing.
"""

from __future__ import annotations

import sys
from collections import Counter
import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from phasezoo.data import DATASETS, load_dataset, steps_per_epoch
from phasezoo.errors import PhaseZooError
from phasezoo.executors import Job, check_executor, run_zoo_jobs, task_device
from phasezoo.spec import MemberSpec, ProfileSpec, ZooSpec, by_cell, cell_of, load_spec
from phasezoo.store import STATES, ZooStore, read_json
from phasezoo.train import DeviceOptions, check_fits_memory, packing_strategy, train_members

DEFAULT_ROOT = Path("data/zoos")


@dataclass(frozen=True)
class Zoo:
    """One zoo at one profile under one root: its spec, the profile's settings, its store, its
    planned members and their grid cells. Build it with :meth:`of`."""

    spec: ZooSpec
    profile: str
    root: Path

    @classmethod
    def of(cls, zoo: "Zoo | str | Path | ZooSpec", profile: str | None = None,
           root: str | Path = DEFAULT_ROOT) -> "Zoo":
        """``zoo`` itself if it is a :class:`Zoo` (then ``profile``, if given, must be its
        profile); else the spec of ``zoo`` (a name, a YAML path or a :class:`ZooSpec`) at
        ``profile`` under ``root`` (a name that is no packaged zoo is looked up among the zoos
        imported under ``root``). An unknown zoo or profile is a one-line error."""
        if isinstance(zoo, Zoo):
            if profile is not None and profile != zoo.profile:
                raise PhaseZooError(f"{zoo.name}/{zoo.profile} was given with profile {profile!r}")
            return zoo
        if profile is None:
            raise PhaseZooError("a profile is needed (paper, mini or smoke)")
        spec = zoo if isinstance(zoo, ZooSpec) else load_spec(zoo, root=root)
        spec.profile(profile)  # an unknown profile fails here, naming the ones there are
        return cls(spec, profile, Path(root))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def load_axis(self) -> str:
        return self.spec.load_axis

    @property
    def temperature_axis(self) -> str:
        return self.spec.temperature_axis

    @cached_property
    def settings(self) -> ProfileSpec:
        """The profile's grid, training, metric, phase and downstream settings."""
        return self.spec.profile(self.profile)

    @property
    def final_epoch(self) -> int:
        return self.settings.training.epochs

    @cached_property
    def store(self) -> ZooStore:
        return ZooStore(self.root, self.spec.name, self.profile)

    @cached_property
    def members(self) -> tuple[MemberSpec, ...]:
        """The planned members, load-major, then temperature, then seed."""
        return tuple(self.spec.members(self.profile))

    @cached_property
    def cells(self) -> dict[str, tuple[MemberSpec, ...]]:
        """Grid cell (its folder name without the seed) -> its planned members, in plan order."""
        return {c: tuple(ms) for c, ms in by_cell(self.members).items()}

    def member_dir(self, member: str | MemberSpec) -> Path:
        return self.store.member(member if isinstance(member, str) else member.member).dir


def _verify_existing(store: ZooStore, members: list[MemberSpec]) -> None:
    """Every file of every existing member, hashes included: a corrupt finished member stops
    the command (nothing is written); a partial member's corrupt resume state does not (it
    restarts from scratch, :func:`phasezoo.train.train_member`)."""
    for m in members:
        ms = store.member(m.member)
        if not ms.dir.exists():
            continue
        if ms.state() in ("done", "diverged"):
            ms.verify(m.to_dict())  # every file, the config included
        else:
            ms.check_config(m.to_dict())


def _train_task(member_dicts: list[dict], member_dirs: list[str], device: str, data_dir, progress: bool,
                pack: bool | None, options: dict) -> list:
    """Top-level (picklable) entry point that executors run once per job: one member, or the
    seeds of one grid cell trained packed (:func:`phasezoo.train.train_members`)."""
    return train_members([MemberSpec.from_dict(d) for d in member_dicts], [Path(d) for d in member_dirs],
                         device=device, data_dir=data_dir, progress=progress, pack=pack,
                         options=DeviceOptions(**options))


def _train_jobs(members: list[MemberSpec], device, pack: bool | None) -> list[list[MemberSpec]]:
    """The members of each training job: the seeds of a cell together where they pack
    (:func:`phasezoo.train.packing_strategy`), every other member alone."""
    jobs: list[list[MemberSpec]] = []
    for cell in by_cell(members).values():
        if packing_strategy(cell[0], device, pack) is not None:
            jobs.append(list(cell))
        else:
            jobs.extend([m] for m in cell)
    # the longest jobs first (most optimizer steps, then the widest), so that no worker starts a
    # long job while the others run out of work: the order changes nothing that is trained
    def steps(m: MemberSpec) -> int:
        return m.epochs * steps_per_epoch(DATASETS[m.dataset].num_train, m.batch_size)

    return sorted(jobs, key=lambda job: (-steps(job[0]) * len(job), -job[0].width))


def train_zoo(
    zoo: "Zoo | str | Path | ZooSpec",
    profile: str | None = None,
    root: str | Path = DEFAULT_ROOT,
    *,
    device: str = "auto",
    workers: int = 1,
    data_dir: str | Path | None = None,
    progress: bool | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
    pack: bool | None = None,
    options: DeviceOptions | None = None,
    on_result: Callable[[Any], None] | None = None,
) -> list:
    """Train every member of ``zoo``/``profile`` under ``root``; finished members are skipped and
    partial ones resumed. Returns the list of :class:`~phasezoo.train.MemberResult`.

    Before anything is written: the spec, the device, the dataset files, the memory a model
    needs and every existing member's files (hashes, config, results against status) are
    checked. A zoo with nothing left to train is only read (it may sit on a read-only file
    system); otherwise the zoo's lock is taken (:class:`phasezoo.store.ZooLock`) and the
    temporary files of killed writes are removed. ``executor="ray"`` runs the members as Ray
    tasks (:class:`phasezoo.executors.RayExecutor`) with these resources per task.

    ``pack``: the seeds of a grid cell train as one packed model where that measured faster
    (None, the default), always where the architecture can (True), or one by one (False); see
    :func:`phasezoo.train.train_members`. A packed cell is one job. ``options``: channels-last,
    bf16 autocast, ``torch.compile`` (:class:`phasezoo.train.DeviceOptions`).
    """
    options = options or DeviceOptions()
    check_executor(executor, workers, ray_address, cpus_per_task, gpus_per_task)
    z = Zoo.of(zoo, profile, root)
    spec, members, store = z.spec, list(z.members), z.store
    dev = task_device(device, executor, gpus_per_task)
    bars = progress is not False and (progress or sys.stderr.isatty()) and executor == "local"

    def plan() -> list[Job]:
        todo = [m for m in members if store.member(m.member).state() not in ("done", "diverged")]
        return [Job("train", job[0].member if len(job) == 1 else f"{cell_of(job[0].member)} ×{len(job)}",
                    ",".join(m.member for m in job),
                    ([m.to_dict() for m in job], [str(z.member_dir(m)) for m in job], str(dev), data_dir,
                     bool(bars and workers == 1), pack, dataclasses.asdict(options)), items=len(job))
                for job in _train_jobs(todo, dev, pack)]

    def prepare(jobs: list[Job]) -> None:
        load_dataset(spec.dataset, data_dir)  # missing files fail here, before anything is written
        # a packed job holds all its seeds at once
        check_fits_memory([MemberSpec.from_dict(d) for j in jobs for d in j.args[0]], dev,
                          workers * max(len(j.args[0]) for j in jobs))

    def begin() -> None:
        store.write_spec({"zoo": spec.name, "profile": z.profile, "source": Path(spec.source).name,
                          "members": [m.member for m in members]})

    executor_options = dict(executor=executor, ray_address=ray_address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task)
    results = []
    for _, res in run_zoo_jobs(store, "train", plan, {"train": _train_task},
                               check=lambda: _verify_existing(store, members), prepare=prepare,
                               begin=begin, total=len(members), workers=workers, unit="model",
                               progress=progress, status=_statuses, **executor_options):
        for r in res:
            results.append(r)
            if on_result is not None:
                on_result(r)
    return results


def _statuses(results: list) -> str:
    """``done`` for one member, ``done ×3`` or ``done ×2, diverged`` for a packed cell."""
    counts = Counter(r.status for r in results)
    return ", ".join(s if n == 1 else f"{s} ×{n}" for s, n in counts.items())


@dataclass
class VerifyReport:
    """What :func:`verify_zoo` found: one line per problem, and how much it checked."""

    problems: list[str]
    members: int
    files: int


def verify_zoo(zoo: "Zoo | str | Path | ZooSpec", profile: str | None = None,
               root: str | Path = DEFAULT_ROOT) -> VerifyReport:
    """Check every stored file of a zoo without changing anything (``phasezoo verify``).

    Per member: every file's sha256, the config against the spec, results epochs 0..N each
    exactly once, ``done`` meaning the planned last epoch with every planned checkpoint present
    (:meth:`phasezoo.store.MemberStore.problems`); per zoo: ``zoo.json`` and the cell files of
    the metrics and downstream runs. Folders that the plan does not name are reported too. A
    zoo with no member folder at all is an error (not trained)."""
    z = Zoo.of(zoo, profile, root)
    spec, store, members = z.spec, z.store, z.members
    present = [m for m in members if store.member(m.member).dir.exists()]
    if not present:
        raise PhaseZooError(f"{spec.name}/{z.profile} is not trained under {z.root}: no member folder; "
                            "run `phasezoo train` first")
    problems: list[str] = []
    files = 0
    for m in present:
        ms = store.member(m.member)
        problems += ms.problems(m.to_dict())
        files += sum(1 for p in ms.dir.rglob("*") if p.is_file())
    planned = {m.member for m in members}
    for extra in (store.dir / "zoo.json", store.dir / "phases.json", *sorted((store.dir / "cells").glob("*.json"))):
        if extra.exists():
            files += 1
            try:
                read_json(extra)
            except PhaseZooError as e:
                problems.append(str(e))
    for d in sorted(p for p in store.dir.iterdir() if p.is_dir() and p.name != "cells"):
        if d.name not in planned:
            problems.append(f"{d}: a member folder the plan of {spec.name}/{z.profile} does not name")
    return VerifyReport(problems, len(present), files)


def zoo_status(zoo: "Zoo | str | Path | ZooSpec", profile: str | None = None,
               root: str | Path = DEFAULT_ROOT) -> dict[str, int]:
    """Counts of members that are done, partial, pending and diverged."""
    z = Zoo.of(zoo, profile, root)
    counts = Counter(z.store.member(m.member).state() for m in z.members)
    return {s: counts.get(s, 0) for s in STATES}


#: the columns of a member's config that ``member_table`` shows (the rest stays in config.json)
TABLE_CONFIG_COLUMNS = ("member", "arch", "dataset", "width", "batch_size", "lr", "seed")
#: result columns every table has (NaN where a task does not report them: PINNs have no accuracy)
TABLE_RESULT_COLUMNS = ("train_loss", "train_acc", "train_error", "test_loss", "test_acc", "test_error")


def member_table(
    zoo: "Zoo | str | Path | ZooSpec", profile: str | None = None, root: str | Path = DEFAULT_ROOT, *,
    epoch: int | str = "last",
) -> pd.DataFrame:
    """One row per planned member: its grid coordinates, status and results at ``epoch``
    (``"last"``: each member's last recorded epoch), from the store alone. Missing values are
    NaN. :func:`phasezoo.analysis.table.zoo_table` adds the metric, phase and downstream columns.

    ``lr`` is the configured learning rate; ``lr_last`` the scheduled rate at the epoch's last
    step. ``gen_gap`` is test error minus train error at that epoch (for classification: train
    accuracy minus test accuracy; for PINNs: the gap of relative L2 errors). The grid axes of
    the zoo (e.g. ``model_dim``, ``beta``) are columns too. ``train_loss_init`` is the train
    loss before training (epoch 0).
    """
    z = Zoo.of(zoo, profile, root)
    spec, store = z.spec, z.store
    rows = []
    recorded: set[int] = set()
    for m in z.members:
        ms = store.member(m.member)
        row: dict[str, Any] = {k: getattr(m, k) for k in TABLE_CONFIG_COLUMNS}
        row.update({k: m.axis_value(k) for k in (spec.load_axis, spec.temperature_axis)})
        row["status"] = ms.state()
        results = ms.read_results(planned_last=m.epochs)
        recorded.update(r["epoch"] for r in results)
        # the evaluation before training: the reference of the calibrated train-loss threshold
        row["train_loss_init"] = results[0].get("train_loss", float("nan")) if results else float("nan")
        chosen = results[-1] if (results and epoch == "last") else next(
            (r for r in results if r["epoch"] == epoch), None)
        if chosen is not None:
            # the record's "lr" is the schedule's rate at the last step; the table's "lr" stays
            # the configured rate (a grid axis for PINNs), the record's goes to "lr_last"
            row.update({("lr_last" if k == "lr" else k): v for k, v in chosen.items()})
        rows.append(row)
    check_recorded(z, recorded, epoch)
    df = pd.DataFrame(rows)
    for col in ("epoch", "train_loss_init", *TABLE_RESULT_COLUMNS):
        if col not in df:
            df[col] = float("nan")
    df = df.astype({c: float for c in ("train_loss_init", *TABLE_RESULT_COLUMNS)})
    for split in ("train", "test"):  # results written before errors were recorded
        df[f"{split}_error"] = df[f"{split}_error"].fillna(1.0 - df[f"{split}_acc"])
    df["gen_gap"] = df["test_error"] - df["train_error"]
    df["epoch"] = df["epoch"].astype("Int64")
    return df


def check_recorded(zoo: Zoo, recorded: set[int], epoch: int | str = "last") -> None:
    """Raise a one-line error when no member of the zoo has results (not trained under its
    root) or when no member recorded ``epoch``."""
    if not recorded:
        raise PhaseZooError(f"{zoo.name}/{zoo.profile} is not trained under {zoo.root}: no member has "
                            "results; run `phasezoo train` first")
    if epoch != "last" and epoch not in recorded:
        raise PhaseZooError(f"epoch {epoch} was not recorded in {zoo.name}/{zoo.profile}; recorded "
                            f"epochs: {min(recorded)}..{max(recorded)}")


def zoo_history(zoo: "Zoo | str | Path | ZooSpec", profile: str | None = None,
                root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """Every recorded epoch of every member: one row per (member, epoch) with the member's grid
    coordinates (the zoo's axis names, e.g. ``model_dim``, ``beta``), ``seed``, ``status`` and the
    results line (``train_loss``, ``test_acc`` / ``test_error`` / ``test_ppl``, ``lr``, ...).
    The learning curves of the book are drawn from it."""
    z = Zoo.of(zoo, profile, root)
    spec, store = z.spec, z.store
    rows = []
    for m in z.members:
        ms = store.member(m.member)
        base = {"member": m.member, "seed": m.seed, "status": ms.state(),
                **{k: m.axis_value(k) for k in (spec.load_axis, spec.temperature_axis)}}
        rows += [{**base, **r} for r in ms.read_results(planned_last=m.epochs)]
    return pd.DataFrame(rows)
