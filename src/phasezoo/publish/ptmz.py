"""Export a zoo to the authors' ray.tune layout ("ptmz"), so their tooling can read our zoos.

One folder per member, as ray.tune writes a trial::

    <member>/params.json                     the config, with ModelZoos-style "section::key" names
                                             plus our full config under "phasezoo::config"
    <member>/result.json                     JSON lines, one per epoch; line 0 = before training
    <member>/checkpoint_000NNN/checkpoints   the model state at epoch NNN, ``torch.save`` format

Their checkpoints are pickled state dicts, so this export writes that format; our own store
keeps safetensors. The export is built in a temporary folder and renamed into place at the end,
so an interrupted export leaves nothing half-written at ``--to``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from phasezoo.data import DATASETS
from phasezoo.errors import PhaseZooError
from phasezoo.spec import MemberSpec, ZooSpec
from phasezoo.zoo import Zoo


def ptmz_params(m: MemberSpec) -> dict:
    """Our member config in the ModelZoos ``section::key`` naming, with the full config kept."""
    info = DATASETS[m.dataset]
    return {
        "model::type": m.arch, "model::width": m.width, "model::channels_in": info.in_channels,
        "model::o_dim": info.num_classes, "model::init_type": m.init,
        "optim::optimizer": m.optimizer, "optim::lr": m.lr, "optim::momentum": m.momentum,
        "optim::wd": m.weight_decay, "optim::scheduler": m.scheduler["name"],
        "training::batchsize": m.batch_size, "training::epochs_train": m.epochs,
        "dataset::name": m.dataset, "seed": m.seed, "phasezoo::config": m.to_dict(),
    }


def export_ptmz(zoo: Zoo | str | Path | ZooSpec, profile: str | None = None, root: str | Path = "data/zoos",
                to: str | Path | None = None) -> int:
    """Write every member that has results to ``to`` in the ptmz layout; returns the count."""
    z = Zoo.of(zoo, profile, root)
    if to is None:
        raise PhaseZooError("export_ptmz needs a destination folder (to=...)")
    to = Path(to)
    if to.exists() and any(to.iterdir()):
        raise PhaseZooError(f"export destination {to} exists and is not empty")
    store = z.store
    members = [m for m in z.members if store.member(m.member).read_results()]
    if not members:
        raise PhaseZooError(f"no trained members of {z.name}/{z.profile} under {z.root}")
    for m in members:  # check every file before writing anything
        store.member(m.member).verify(m.to_dict())
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{to.name}.", dir=to.parent))
    try:
        for m in members:
            ms = store.member(m.member)
            out = tmp / m.member
            out.mkdir()
            (out / "params.json").write_text(json.dumps(ptmz_params(m), indent=1))
            lines = [json.dumps({**r, "training_iteration": r["epoch"] + 1}) for r in ms.read_results()]
            (out / "result.json").write_text("\n".join(lines) + "\n")
            for epoch in ms.checkpoint_epochs():
                ckpt = out / f"checkpoint_{epoch:06d}"
                ckpt.mkdir()
                torch.save(ms.load_checkpoint(epoch)[1], ckpt / "checkpoints")
        if to.exists():
            to.rmdir()
        os.replace(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(members)
