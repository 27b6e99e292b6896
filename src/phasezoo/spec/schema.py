"""The zoo-spec schema: allowed values, defaults (metric and downstream settings, Wise-FT's
early fraction, the axes' directions) and the frozen dataclasses a validated spec is made of
(:class:`ZooSpec`, :class:`ProfileSpec`, :class:`TrainingSpec`, :class:`MemberSpec`), with
the grid expansion and member names. :mod:`phasezoo.spec.load` reads and validates YAML into
them; :mod:`phasezoo.spec` documents the YAML schema."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping


from phasezoo.errors import SpecError

PROFILES = ("paper", "mini", "smoke")
TASKS = ("classification", "language_modelling", "pde_convection")
OPTIMIZERS = ("sgd", "adamw", "lbfgs")
SCHEDULERS = ("onecycle_cosine", "constant")
INITS = ("kaiming_uniform",)
#: grid parameters a zoo may vary, with the short label used in member folder names
#: how the quantity an axis stands for changes as the axis value grows (paper §2, Yang et al.
#: 2021): a wider model lowers the load and a larger batch the temperature; a larger convection
#: coefficient β raises the load (a harder PDE) and a larger learning rate the temperature
AXIS_DIRECTIONS = {"width": "decreasing", "model_dim": "decreasing", "beta": "increasing",
                   "batch_size": "decreasing", "lr": "increasing"}
GRID_LABELS = {"width": "w", "model_dim": "d", "beta": "beta", "batch_size": "b", "lr": "lr", "seed": "s"}
#: grid keys that take real numbers (the others are integers)
REAL_GRID_KEYS = ("beta", "lr")
#: L-BFGS settings where a spec gives none (torch.optim.LBFGS; Krishnapriyan et al.'s choices)
LBFGS_DEFAULTS = {"max_iter": 1000, "history_size": 50, "line_search": "strong_wolfe",
                  "tolerance_grad": 1.0e-7, "tolerance_change": 1.0e-9}

#: zoo names become folder names under --root: no separators, no leading dot
ZOO_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
#: the smallest batch a training step takes: BatchNorm cannot normalise a single sample, and
#: the training loop drops 1-sample batches: phasezoo.data.batches.MIN_TRAIN_BATCH (a literal here,
#: tested equal, so that validating a spec does not import torch)
MIN_BATCH_SIZE = 2

_TOP_KEYS = {"name", "description", "extends", "task", "arch", "dataset", "model", "axes", "axis_directions",
             "training", "metrics", "phases", "downstream", "profiles"}
#: downstream-method settings used where a spec gives none (paper §4.2)
DOWNSTREAM_DEFAULTS: dict[str, dict[str, Any]] = {
    # global magnitude pruning; short fine-tune with the mask re-applied after every step
    "prune": {"sparsities": [0.5, 0.7, 0.9, 0.95, 0.99], "finetune_epochs": 1, "lr": 0.01,
              "batch_size": 128},
    # transfer: linear probe and full fine-tuning on a target task (phasezoo.downstream.finetune)
    "finetune": {"target": "digits-rot90", "epochs": 3, "batch_size": 128},
}
#: Wise-FT's early end point θ_early, as a fraction of training, one value for every zoo: the
#: checkpoint of epoch ``round(f · T)`` (halfway; never the initialisation), which every zoo
#: stores (:func:`_checkpoint_epochs`; :mod:`phasezoo.downstream.average`)
WISE_FT_EARLY_FRACTION = 0.5


def wise_ft_early_epoch(epochs: int) -> int | None:
    """Wise-FT's early epoch ``⌊f · T + ½⌋`` (``f`` = :data:`WISE_FT_EARLY_FRACTION`, ``T`` =
    ``epochs``) when it lies in ``[1, T − 1]``; ``None`` for a run too short to have one (``T = 1``:
    halfway is no stored epoch, and epoch 0 is the initialisation)."""
    e = math.floor(WISE_FT_EARLY_FRACTION * epochs + 0.5)
    return e if 1 <= e < epochs else None


#: loss-landscape metric settings used where a spec gives none (DESIGN.md §3: PTMZ's choices)
METRIC_DEFAULTS: dict[str, dict[str, Any]] = {
    # on PTMZ's 10 batches x 64 train samples; the top eigenvalue to tol 1e-3 in at most 100
    # products, the trace until its standard error is at most 5% (>= 10 probes, <= 300 products)
    "hessian": {"num_batches": 10, "batch_size": 64, "seed": 0,
                "eig_method": "lanczos", "max_iter": 100, "tol": 1.0e-3,
                "trace_method": "hutchpp", "rel_stderr": 0.05, "min_probes": 10, "trace_max_iter": 300},
    # CKA of outputs on a fixed subset of batch_size x num_batches train samples: unbiased, pooled
    # (the phases' value), the authors' biased per batch, and both with one side permuted (chance)
    "cka": {"batch_size": 128, "num_batches": 10, "chance_seed": 0},
    # quadratic Bezier curve trained with SGD (PTMZ: 10 epochs, lr 0.1, here on a schedule that
    # does not compound) on the whole train set, evaluated at 5 values of t; converged when at
    # least min_steps steps were taken and at most plateau_tol of the loss's fall came in the
    # last fifth of them (judged when read: changing these two re-judges, it does not retrain)
    "mode_connectivity": {"optimizer": "sgd", "epochs": 10, "lr": 0.1, "momentum": 0.9,
                          "weight_decay": 0.0, "batch_size": 128, "num_t": 5, "seed": 0,
                          "plateau_tol": 0.1, "min_steps": 200},
}
_TRAINING_KEYS = {
    "optimizer", "lr", "batch_size", "momentum", "weight_decay", "lbfgs", "scheduler", "epochs",
    "init", "augmentation", "checkpoints",
}
_SCHEDULER_DEFAULTS = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1.0e4}


@dataclass(frozen=True)
class TrainingSpec:
    """Settings shared by every member of a profile (paper Table 2 for the ResNet zoos)."""

    optimizer: str
    lr: float | None
    momentum: float
    weight_decay: float
    scheduler: Mapping[str, Any]
    epochs: int
    init: str
    augmentation: Mapping[str, Any]
    checkpoint_epochs: tuple[int, ...]
    batch_size: int | None = None
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)


#: MemberSpec fields added after the first zoos were written, with the value older config.json
#: files imply
_MEMBER_FIELD_DEFAULTS = {"beta": None, "model": {}, "optimizer_options": {}}


@dataclass(frozen=True)
class MemberSpec:
    """The complete configuration of one training run: what ``config.json`` holds.

    ``width`` is the model's width whatever the zoo calls it (ResNet channels, transformer
    ``model_dim``, PINN hidden units); ``beta`` is the PDE coefficient (None outside PDEs);
    ``model`` holds further architecture settings (depth, heads, ...);
    ``optimizer_options`` the L-BFGS settings (empty for SGD / AdamW).
    """

    zoo: str
    profile: str
    member: str
    task: str
    arch: str
    dataset: str
    width: int
    batch_size: int
    seed: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    scheduler: Mapping[str, Any]
    epochs: int
    init: str
    augmentation: Mapping[str, Any]
    checkpoint_epochs: tuple[int, ...]
    load_axis: str
    temperature_axis: str
    beta: float | None = None
    model: Mapping[str, Any] = field(default_factory=dict)
    optimizer_options: Mapping[str, Any] = field(default_factory=dict)

    def axis_value(self, key: str) -> Any:
        """The value of a grid key (``model_dim`` is the width of a transformer)."""
        return self.width if key == "model_dim" else getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scheduler"] = dict(self.scheduler)
        d["augmentation"] = copy.deepcopy(dict(self.augmentation))
        d["checkpoint_epochs"] = list(self.checkpoint_epochs)
        d["model"] = dict(self.model)
        d["optimizer_options"] = dict(self.optimizer_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MemberSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {**copy.deepcopy(_MEMBER_FIELD_DEFAULTS), **d}
        missing = names - set(d)
        if missing:
            raise SpecError(f"member config lacks {', '.join(sorted(missing))}")
        kw = {k: d[k] for k in names}
        kw["checkpoint_epochs"] = tuple(kw["checkpoint_epochs"])
        return cls(**kw)


@dataclass(frozen=True)
class ProfileSpec:
    """One profile: the grid axes (ordered load, temperature, seed) and its training settings."""

    name: str
    grid: Mapping[str, tuple]
    training: TrainingSpec
    description: str = ""
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: copy.deepcopy(METRIC_DEFAULTS))
    downstream: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: copy.deepcopy(DOWNSTREAM_DEFAULTS))
    phases: Any = None  # phasezoo.landscape.phases.PhaseThresholds
    #: the epochs ``phasezoo metrics`` measures by default (YAML ``metrics: {epochs: [...]}``):
    #: checkpoint epochs and/or ``"last"``; more than one shows how the phase map moves in training
    metric_epochs: tuple = ("last",)

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.grid.values())


@dataclass(frozen=True)
class ZooSpec:
    """A validated zoo: fixed settings plus its profiles."""

    name: str
    description: str
    task: str
    arch: str
    dataset: str
    load_axis: str
    temperature_axis: str
    profiles: Mapping[str, ProfileSpec]
    source: str = field(default="", compare=False)
    model: Mapping[str, Any] = field(default_factory=dict)
    #: ``"increasing"`` or ``"decreasing"``: how the load / the temperature changes as the
    #: axis value grows (:data:`AXIS_DIRECTIONS`)
    load_direction: str = "decreasing"
    temperature_direction: str = "decreasing"

    def profile(self, name: str) -> ProfileSpec:
        if name not in self.profiles:
            raise SpecError(
                f"zoo {self.name!r} has no profile {name!r}; profiles: {', '.join(self.profiles)}"
            )
        return self.profiles[name]

    def members(self, profile: str) -> list[MemberSpec]:
        """Expand a profile's grid, load-major, then temperature, then seed."""
        prof = self.profile(profile)
        t = prof.training
        out = []
        model = {k: v for k, v in self.model.items() if k != "width"}
        for values in _product(prof.grid):
            width = values.get("width", values.get("model_dim", self.model.get("width")))
            out.append(
                MemberSpec(
                    zoo=self.name, profile=profile, member=member_name(values), task=self.task,
                    arch=self.arch, dataset=self.dataset, width=width,
                    batch_size=values.get("batch_size", t.batch_size), seed=values["seed"],
                    optimizer=t.optimizer, lr=values.get("lr", t.lr), momentum=t.momentum,
                    weight_decay=t.weight_decay, scheduler=t.scheduler, epochs=t.epochs,
                    init=t.init, augmentation=t.augmentation,
                    checkpoint_epochs=t.checkpoint_epochs, load_axis=self.load_axis,
                    temperature_axis=self.temperature_axis, beta=values.get("beta"),
                    model=dict(model), optimizer_options=dict(t.optimizer_options),
                )
            )
        return out


def _product(grid: Mapping[str, tuple]) -> Iterator[dict[str, Any]]:
    keys = list(grid)
    if not keys:
        yield {}
        return
    first, rest = keys[0], {k: grid[k] for k in keys[1:]}
    for v in grid[first]:
        for tail in _product(rest):
            yield {first: v, **tail}


def member_name(values: Mapping[str, Any]) -> str:
    """Folder name from grid coordinates, sortable: ``{'width': 8, 'batch_size': 128, 'seed': 0}``
    -> ``w0008_b0128_s0``."""
    parts = []
    for key, value in values.items():
        label = GRID_LABELS[key]
        if key == "seed":
            parts.append(f"{label}{value}")
        elif key in REAL_GRID_KEYS:
            parts.append(f"{label}{value:g}")  # beta30, lr0.01
        else:
            parts.append(f"{label}{value:04d}")
    return "_".join(parts)


def cell_of(member: str) -> str:
    """The grid cell of a member name: the name without its seed (``w0008_b0128_s0`` ->
    ``w0008_b0128``). Seed pairs of a cell give CKA and mode connectivity; probe splits keep a
    cell's seeds together."""
    return str(member).rsplit("_s", 1)[0]


def by_cell(members: Iterable[MemberSpec]) -> dict[str, list[MemberSpec]]:
    """``members`` grouped by grid cell (:func:`cell_of`), cells and members in the order given."""
    out: dict[str, list[MemberSpec]] = {}
    for m in members:
        out.setdefault(cell_of(m.member), []).append(m)
    return out


# ----------------------------------------------------------------------------- loading


def plan_json(spec: ZooSpec, profile: str) -> str:
    """The member configs of a profile as one JSON list (``phasezoo plan --json``)."""
    return json.dumps([m.to_dict() for m in spec.members(profile)], indent=1)
