"""Zoo-level operations: train a grid resumably, count states, tabulate, load members.

These are the plain-Python faces of the ``phasezoo`` commands. Everything that can be checked
before training starts (spec, dataset files, existing members' files) is checked first, so a bad
request fails with one line and writes nothing.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from phasezoo.errors import CorruptFileError, PhaseZooError
from phasezoo.spec import MemberSpec, ZooSpec, load_spec
from phasezoo.store import STATES, MemberStore, ZooStore

DEFAULT_ROOT = Path("data/zoos")


def _as_spec(zoo: str | Path | ZooSpec) -> ZooSpec:
    return zoo if isinstance(zoo, ZooSpec) else load_spec(zoo)


def _verify_existing(store: ZooStore, members: list[MemberSpec]) -> None:
    for m in members:
        ms = store.member(m.member)
        if ms.dir.exists():
            ms.verify(m.to_dict())


def _train_task(args: tuple) -> Any:
    """Top-level (picklable) entry point that executors run once per member."""
    from phasezoo.train import train_member

    member_dict, member_dir, device, data_dir, progress = args
    return train_member(MemberSpec.from_dict(member_dict), Path(member_dir), device=device,
                        data_dir=data_dir, progress=progress)


def train_zoo(
    zoo: str | Path | ZooSpec,
    profile: str,
    root: str | Path = DEFAULT_ROOT,
    *,
    device: str = "auto",
    workers: int = 1,
    data_dir: str | Path | None = None,
    progress: bool | None = None,
    on_result: Callable[[Any], None] | None = None,
) -> list:
    """Train every member of ``zoo``/``profile`` under ``root``; finished members are skipped and
    partial ones resumed. Returns the list of :class:`~phasezoo.train.MemberResult`."""
    from phasezoo.data import load_dataset
    from phasezoo.executors import make_executor
    from phasezoo.train import resolve_device

    spec = _as_spec(zoo)
    members = spec.members(profile)
    dev = str(resolve_device(device))
    load_dataset(spec.dataset, data_dir)  # missing files fail here, before anything is written
    store = ZooStore(root, spec.name, profile)
    _verify_existing(store, members)
    if workers < 1:
        raise PhaseZooError(f"--workers must be at least 1, got {workers}")

    progress = sys.stderr.isatty() if progress is None else progress
    todo = [m for m in members if store.member(m.member).state() not in ("done", "diverged")]
    store.write_spec({"zoo": spec.name, "profile": profile, "source": Path(spec.source).name,
                      "members": [m.member for m in members]})
    tasks = [(m.to_dict(), str(store.member(m.member).dir), dev, data_dir, progress and workers == 1)
             for m in todo]
    results = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(members), initial=len(members) - len(todo), desc=f"{spec.name}/{profile}",
                   unit="model")
    for res in make_executor(workers).map_unordered(_train_task, tasks):
        results.append(res)
        if on_result is not None:
            on_result(res)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(last=f"{res.member} {res.status}")
    if bar is not None:
        bar.close()
    return results


def zoo_status(zoo: str | Path | ZooSpec, profile: str, root: str | Path = DEFAULT_ROOT) -> dict[str, int]:
    """Counts of members that are done, partial, pending and diverged."""
    spec = _as_spec(zoo)
    store = ZooStore(root, spec.name, profile)
    counts = Counter(store.member(m.member).state() for m in spec.members(profile))
    return {s: counts.get(s, 0) for s in STATES}


#: the columns of a member's config that ``zoo_table`` shows (the rest stays in config.json)
TABLE_CONFIG_COLUMNS = ("member", "arch", "dataset", "width", "batch_size", "lr", "seed")
#: result columns every table has (NaN where a task does not report them: PINNs have no accuracy)
TABLE_RESULT_COLUMNS = ("train_loss", "train_acc", "train_error", "test_loss", "test_acc", "test_error")


def zoo_table(
    zoo: str | Path | ZooSpec, profile: str, root: str | Path = DEFAULT_ROOT, *, epoch: int | str = "last"
) -> pd.DataFrame:
    """One row per planned member: its grid coordinates, status and results at ``epoch``
    (``"last"``: each member's last recorded epoch). Missing values are NaN.

    ``lr`` is the configured learning rate; ``lr_last`` the scheduled rate at the epoch's last
    step. ``gen_gap`` is test error minus train error at that epoch (for classification: train
    accuracy minus test accuracy; for PINNs: the gap of relative L2 errors). The grid axes of
    the zoo (e.g. ``model_dim``, ``beta``) are columns too. The loss-landscape
    columns (``hessian_top_eig``, ``hessian_trace``, ``cka``, ``mc_error``, ``mc_loss``,
    ``phase``) are filled where ``phasezoo metrics`` has computed them
    (:func:`phasezoo.metrics.attach_metrics`).
    """
    spec = _as_spec(zoo)
    store = ZooStore(root, spec.name, profile)
    rows = []
    for m in spec.members(profile):
        ms = store.member(m.member)
        row: dict[str, Any] = {k: getattr(m, k) for k in TABLE_CONFIG_COLUMNS}
        row.update({k: m.axis_value(k) for k in (spec.load_axis, spec.temperature_axis)})
        row["status"] = ms.state()
        results = ms.read_results()
        chosen = results[-1] if (results and epoch == "last") else next(
            (r for r in results if r["epoch"] == epoch), None)
        if chosen is not None:
            # the record's "lr" is the schedule's rate at the last step; the table's "lr" stays
            # the configured rate (a grid axis for PINNs), the record's goes to "lr_last"
            row.update({("lr_last" if k == "lr" else k): v for k, v in chosen.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("epoch", *TABLE_RESULT_COLUMNS):
        if col not in df:
            df[col] = float("nan")
    df = df.astype({c: float for c in TABLE_RESULT_COLUMNS})
    for split in ("train", "test"):  # results written before errors were recorded
        df[f"{split}_error"] = df[f"{split}_error"].fillna(1.0 - df[f"{split}_acc"])
    df["gen_gap"] = df["test_error"] - df["train_error"]
    df["epoch"] = df["epoch"].astype("Int64")
    from phasezoo.downstream.runner import downstream_columns
    from phasezoo.metrics import attach_metrics

    df = attach_metrics(df, spec, profile, root, epoch)
    return downstream_columns(df, spec, profile, root) if epoch in ("last", spec.profile(profile).training.epochs) else df


def zoo_history(zoo: str | Path | ZooSpec, profile: str, root: str | Path = DEFAULT_ROOT) -> pd.DataFrame:
    """Every recorded epoch of every member: one row per (member, epoch) with the member's grid
    coordinates (the zoo's axis names, e.g. ``model_dim``, ``beta``), ``seed``, ``status`` and the
    results line (``train_loss``, ``test_acc`` / ``test_error`` / ``test_ppl``, ``lr``, ...).
    The learning curves of the book are drawn from it."""
    spec = _as_spec(zoo)
    store = ZooStore(root, spec.name, profile)
    rows = []
    for m in spec.members(profile):
        ms = store.member(m.member)
        base = {"member": m.member, "seed": m.seed, "status": ms.state(),
                **{k: m.axis_value(k) for k in (spec.load_axis, spec.temperature_axis)}}
        rows += [{**base, **r} for r in ms.read_results()]
    return pd.DataFrame(rows)


def load_member(member_dir: str | Path, epoch: int | str = "last"):
    """Rebuild a stored member: returns ``(model, config)`` with the weights of ``epoch``
    (an int or ``"last"``, the latest checkpoint) loaded and the model in eval mode."""
    from phasezoo.models import model_from_config

    ms = MemberStore(Path(member_dir))
    config = ms.read_config()
    if config is None:
        raise CorruptFileError(f"no config.json in {member_dir}; is this a zoo member folder?")
    model = model_from_config(config)
    _, state = ms.load_checkpoint(epoch)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CorruptFileError(f"checkpoint does not match the model of {member_dir}") from None
    model.eval()
    return model, config
