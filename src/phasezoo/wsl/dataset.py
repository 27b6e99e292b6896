"""A zoo as a PyTorch dataset: one item per member, its weights and its properties.

For users' own weight-space methods (paper §5): filter a stored zoo by epoch, width, cell, phase
and status, then iterate over ``{"member", "weights", "layout", "properties"}`` items. Weights
load lazily from the member's safetensors checkpoint, so a large zoo does not have to fit in
memory.

* **Forward order.** Layers come in the order of the member model's ``state_dict`` (the order in
  which its modules are built and run: stem, stages, head), not in alphabetical order.
* **Layout.** ``item["layout"]`` lists ``(name, shape, offset, kind)`` per tensor, ``kind``
  ``"parameter"`` or ``"buffer"``; ``weights[offset : offset + prod(shape)].view(shape)``
  unflattens a tensor of a flat vector.
* **Properties.** Every name in :data:`PROPERTIES` (``phase``: the cell's phase at ``epoch``,
  ``phase_final``: at the final epoch, the target for predicting the final phase from early
  weights) and, at the final epoch, the downstream columns (:data:`phasezoo.downstream.runner.DOWNSTREAM_COLUMNS`) are present in every item:
  NaN where not computed (numbers), ``"none"`` for a phase not assigned at that epoch.
* **Mixed widths.** :func:`collate_zoo` batches items of different sizes: flat vectors padded
  with zeros plus a boolean ``mask``, per-layer dicts as lists, numeric properties as float64
  tensors, the others as lists.

Example::

    from torch.utils.data import DataLoader
    from phasezoo.wsl import ZooDataset, collate_zoo
    ds = ZooDataset("digits-resnet18", "mini", "data/zoos", phases=["IV-A", "IV-B"], widths=[8, 16])
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate_zoo)))
    batch["weights"].shape, batch["mask"].sum(1), batch["properties"]["test_acc"]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from phasezoo.analysis.table import zoo_table
from phasezoo.downstream.runner import DOWNSTREAM_COLUMNS
from phasezoo.errors import PhaseZooError
from phasezoo.spec import ZooSpec, cell_of
from phasezoo.zoo import Zoo
from phasezoo.wsl.features import _is_parameter, forward_order

#: properties attached to each item (NaN where not computed)
PROPERTIES = ("width", "model_dim", "beta", "batch_size", "lr", "seed", "epoch", "train_loss",
              "train_acc", "train_error", "train_ppl", "test_loss", "test_acc", "test_error",
              "test_ppl", "gen_gap", "hessian_top_eig", "hessian_trace", "cka", "mc_error",
              "mc_loss", "phase", "phase_final", "status")
#: properties that are text; every other property is a number (NaN where missing)
TEXT_PROPERTIES = ("phase", "phase_final", "status")


class ZooDataset(Dataset):
    """Members of one zoo profile with their weights at ``epoch`` and their table properties.

    ``epoch``: ``"last"`` (each member's latest checkpoint) or a checkpoint epoch.
    ``widths`` / ``cells`` / ``phases`` / ``status``: keep only members of these widths (the
    load parameter: ResNet width, ``model_dim``), grid cells (``"w0004_b0064"``), phases (of their
    cell at ``epoch``) and statuses (default: done members only). ``flat``: weights as one
    vector of every parameter tensor (conv/linear/norm weights and biases, a ViT's class token and
    position embedding) in forward order,
    else a dict of tensors; ``include_buffers`` adds BatchNorm running statistics to either.
    """

    def __init__(
        self,
        zoo: Zoo | str | Path | ZooSpec,
        profile: str | None = None,
        root: str | Path = "data/zoos",
        *,
        epoch: int | str = "last",
        widths: Sequence[int] | None = None,
        cells: Sequence[str] | None = None,
        phases: Sequence[str] | None = None,
        status: Sequence[str] = ("done",),
        flat: bool = True,
        include_buffers: bool = False,
    ):
        self.zoo = Zoo.of(zoo, profile, root)
        self.spec, self.store = self.zoo.spec, self.zoo.store
        self.epoch, self.flat, self.include_buffers = epoch, flat, include_buffers
        self._configs = {m.member: m.to_dict() for m in self.zoo.members}
        table = zoo_table(self.zoo, epoch=epoch)
        # the cell's phase at the final epoch beside the phase at `epoch`: the label of "predict
        # the final phase from early weights"
        final = table if epoch in ("last", self.zoo.final_epoch) else zoo_table(self.zoo, epoch="last")
        table["phase_final"] = table["member"].map(dict(zip(final["member"], final["phase"])))
        keep = table["status"].isin(list(status))
        if widths is not None:
            keep &= table["member"].map(lambda m: self._configs[m]["width"]).isin(list(widths))
        if cells is not None:
            keep &= table["member"].map(cell_of).isin(list(cells))
        if phases is not None:
            keep &= table["phase"].isin(list(phases))
        self.table = table[keep].reset_index(drop=True)
        if epoch != "last":
            have = [epoch in self.store.member(m).checkpoint_epochs() for m in self.table["member"]]
            self.table = self.table[have].reset_index(drop=True)
        if self.table.empty:
            raise PhaseZooError(f"no members of {self.spec.name}/{self.zoo.profile} under {self.zoo.root} match "
                                f"epoch={epoch}, widths={widths}, cells={cells}, phases={phases}, "
                                f"status={list(status)}")
        self.properties = (*PROPERTIES, *DOWNSTREAM_COLUMNS)

    def __len__(self) -> int:
        return len(self.table)

    def _names(self, member: str) -> dict[str, str]:
        return forward_order(self._configs[member])

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.table.iloc[i]
        member = row["member"]
        _, state = self.store.member(member).load_checkpoint(self.epoch)
        kinds = self._names(member)
        names = [n for n in kinds if n in state]
        names += sorted(set(state) - set(names))  # (none for our models; kept rather than dropped)
        kind = {n: kinds.get(n) or ("parameter" if _is_parameter(n) else "buffer") for n in names}
        tensors = {k: state[k] for k in names
                   if state[k].is_floating_point() and (self.include_buffers or kind[k] == "parameter")}
        layout, offset = [], 0
        for name, t in tensors.items():
            layout.append((name, tuple(t.shape), offset, kind[name]))
            offset += t.numel()
        weights = torch.cat([v.flatten() for v in tensors.values()]) if self.flat else tensors
        props = {k: _property(row, k) for k in self.properties}
        return {"member": member, "weights": weights, "layout": layout, "properties": props}


def _property(row, key: str) -> Any:
    """A table value as a plain Python value: NaN (numbers) or ``"none"`` (text) where missing."""
    value = row[key] if key in row.index else None
    if hasattr(value, "item"):
        value = value.item()
    if key in TEXT_PROPERTIES:
        return "none" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    try:
        return float("nan") if value is None else float(value)
    except (TypeError, ValueError):
        return float("nan")


def collate_zoo(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`ZooDataset` items of any widths (``DataLoader(..., collate_fn=collate_zoo)``).

    Flat weights: ``weights`` (B, max length) zero-padded, ``mask`` (B, max length) True on real
    entries, ``lengths`` (B,). Per-layer weights: a list of dicts. ``layout``: a list per item.
    Properties: float64 tensors (B,) for numbers, lists for text."""
    out: dict[str, Any] = {"member": [it["member"] for it in items], "layout": [it["layout"] for it in items]}
    if isinstance(items[0]["weights"], torch.Tensor):
        lengths = torch.tensor([len(it["weights"]) for it in items])
        weights = torch.zeros(len(items), int(lengths.max()), dtype=items[0]["weights"].dtype)
        mask = torch.zeros(len(items), int(lengths.max()), dtype=torch.bool)
        for b, it in enumerate(items):
            weights[b, : lengths[b]] = it["weights"]
            mask[b, : lengths[b]] = True
        out.update(weights=weights, mask=mask, lengths=lengths)
    else:
        out["weights"] = [it["weights"] for it in items]
    props = items[0]["properties"]
    out["properties"] = {k: ([it["properties"][k] for it in items] if k in TEXT_PROPERTIES else
                             torch.tensor([it["properties"][k] for it in items], dtype=torch.float64))
                         for k in props}
    return out
