"""A zoo as a PyTorch dataset: one item per member, its weights and its properties.

For users' own weight-space methods (paper §5): filter a stored zoo by epoch, phase and status,
then iterate over ``{"member", "weights", "properties"}`` items. Weights load lazily from the
member's safetensors checkpoint, so a large zoo does not have to fit in memory.

Example::

    from phasezoo.wsl import ZooDataset
    ds = ZooDataset("digits-resnet18", "mini", "data/zoos", phases=["IV-A", "IV-B"])
    item = ds[0]; item["weights"].shape, item["properties"]["test_acc"]
    loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=True)

Flat weight vectors of members of different widths have different lengths; use
``flat=False`` (a dict of per-layer tensors) or filter by width when a fixed size is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from phasezoo.analysis.table import zoo_table
from phasezoo.errors import PhaseZooError
from phasezoo.spec import ZooSpec
from phasezoo.zoo import Zoo
from phasezoo.wsl.features import _is_parameter

#: properties attached to each item (NaN where not computed)
PROPERTIES = ("width", "model_dim", "beta", "batch_size", "lr", "seed", "epoch", "train_loss",
              "train_acc", "train_error", "train_ppl", "test_loss", "test_acc", "test_error",
              "test_ppl", "gen_gap", "hessian_top_eig", "hessian_trace", "cka", "mc_error",
              "mc_loss", "phase", "status")


class ZooDataset(Dataset):
    """Members of one zoo profile with their weights at ``epoch`` and their table properties.

    ``epoch``: ``"last"`` (each member's latest checkpoint) or a checkpoint epoch.
    ``phases`` / ``status``: keep only members whose cell has one of these phases / whose status
    is one of these (default: done members only). ``flat``: weights as one vector of every
    parameter tensor (conv/linear/BatchNorm weights and biases, sorted by name), else a dict of
    tensors; ``include_buffers`` adds BatchNorm running statistics to either.
    """

    def __init__(
        self,
        zoo: Zoo | str | Path | ZooSpec,
        profile: str | None = None,
        root: str | Path = "data/zoos",
        *,
        epoch: int | str = "last",
        phases: Sequence[str] | None = None,
        status: Sequence[str] = ("done",),
        flat: bool = True,
        include_buffers: bool = False,
    ):
        self.zoo = Zoo.of(zoo, profile, root)
        self.spec, self.store = self.zoo.spec, self.zoo.store
        self.epoch, self.flat, self.include_buffers = epoch, flat, include_buffers
        table = zoo_table(self.zoo, epoch=epoch)
        keep = table["status"].isin(list(status))
        if phases is not None:
            keep &= table["phase"].isin(list(phases))
        self.table = table[keep].reset_index(drop=True)
        if epoch != "last":
            have = [epoch in self.store.member(m).checkpoint_epochs() for m in self.table["member"]]
            self.table = self.table[have].reset_index(drop=True)
        if self.table.empty:
            raise PhaseZooError(f"no members of {self.spec.name}/{self.zoo.profile} under {self.zoo.root} match "
                                f"epoch={epoch}, phases={phases}, status={list(status)}")

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.table.iloc[i]
        _, state = self.store.member(row["member"]).load_checkpoint(self.epoch)
        tensors = {k: v for k, v in sorted(state.items())
                   if v.is_floating_point() and (self.include_buffers or _is_parameter(k))}
        weights = torch.cat([v.flatten() for v in tensors.values()]) if self.flat else tensors
        props = {k: (row[k].item() if hasattr(row[k], "item") else row[k])
                 for k in PROPERTIES if k in row.index}
        return {"member": row["member"], "weights": weights, "properties": props}
