"""The authors' ray.tune zoo layout ("ptmz"), both ways: :func:`export_ptmz` writes a zoo so that
their own code reads it unchanged, :func:`import_ptmz` reads a zoo in their layout into our store.

The layout, one folder per model as ray.tune writes a trial::

    <model>/params.json                     the trial config, ``section::key`` names
    <model>/result.json                     JSON lines, one per epoch; line i = epoch i, line 0 the
                                            evaluation before training
    <model>/checkpoint_NNNNNN/checkpoints   the model's state dict at epoch NNNNNN, ``torch.save``d

What their code expects of it (ModelZoos/PhaseTransitionModelZoo), and where:

* ``visualize_phases.ipynb``, ``compile_configs(root_dir, line_number)``: reads line
  ``line_number`` (= the epoch) of every ``result.json``, pops its ``config`` entry (ray.tune
  writes the trial config into every line) and merges it into the line; the phase plot then
  pivots on ``training::batchsize`` × ``model::width`` and reads ``train_loss``, ``train_acc``,
  ``test_acc`` and the metric keys of :data:`METRICS`.
* ``src/ptmz/models/def_NN_experiment.py``, ``NN_tune_trainable.setup`` sets ``_iteration = -1``
  so that the first ``step`` (evaluation only) is reported as ``training_iteration`` 0: the
  iteration equals the epoch, and ray names a checkpoint ``checkpoint_{iteration:06d}``.
  ``save_checkpoint`` writes ``torch.save(model.state_dict())`` to ``<dir>/checkpoints``.
* ``src/ptmz/models/def_net_width.py``, ``NNmodule_width.__init__``: dispatches on
  ``model::type`` (:data:`MODEL_TYPES`) and reads ``model::channels_in``, ``model::o_dim``,
  ``model::nlin``, ``model::dropout``, ``model::init_type``, ``model::width``;
  ``set_optimizer`` reads ``optim::optimizer`` (``sgd``), ``optim::lr``, ``optim::momentum``,
  ``optim::wd``; ``set_scheduler`` knows ``optim::scheduler`` = ``None`` or ``"OneCycleLR"``
  (torch's ``OneCycleLR`` over ``training::epochs_train`` epochs).
* ``src/ptmz/models/def_resnet_width.py``, ``ResNet_width``: torchvision's ResNet names, the
  projection shortcut ``downsample`` and the head ``fc`` (ours: ``shortcut``, ``linear``; the
  architecture is the same, :data:`RESNET_KEY_RENAMES`).
* ``scripts/*/compute_*.py``, ``compile_configs`` / ``create_experiment_list``: read every
  ``params.json`` and group the models on ``training::batchsize`` and ``model::width``, varying
  ``seed``.

Per-epoch results keep their names, which are theirs too: ``train_loss``, ``train_acc``,
``test_loss``, ``test_acc`` (mean cross-entropy in nats, their ``NLLLoss`` of ``log_softmax``;
accuracy as a fraction, as their ``test_epoch`` returns). One difference in meaning: from epoch 1
on, their ``train_loss`` / ``train_acc`` are running means over the epoch's training batches
(train mode, augmented inputs: ``NN_tune_trainable.step`` calls ``train_epoch``), ours an
eval-mode pass over the train set after the epoch; our running mean is ``train_loss_batches``
(exported too). An imported zoo keeps their values under their names, so its ``train_loss`` is
their running mean.

Their code has no classes for our ViT, GPT and PINN zoos; those export the same layout with our
architecture names and state-dict keys. Their checkpoints are pickled state dicts, so the
export writes that format (plain tensors only: ``torch.load(weights_only=True)`` reads them);
the import loads them with ``weights_only=True`` (no code is unpickled) and stores safetensors.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from phasezoo.data import DATASETS
from phasezoo.errors import PhaseZooError
from phasezoo.models import model_from_config
from phasezoo.analysis.table import zoo_table
from phasezoo.spec import STORED_SPEC, ZOO_NAME, MemberSpec, ZooSpec, list_zoos, spec_from_mapping
from phasezoo.publish.staging import members_to_export, staged_folder
from phasezoo.store import MemberStore, ZooStore, atomic_write_json
from phasezoo.zoo import DEFAULT_ROOT, Zoo

#: the profile an imported zoo is stored under
IMPORTED_PROFILE = "imported"

#: our architecture -> their ``model::type`` (``def_net_width.py``, ``NNmodule_width.__init__``:
#: ``"Resnet18_width"`` builds ``ResNet18_width``, ``"Resnet50_width"`` ``ResNet50_width``); the
#: other architectures keep our names (their code has no class for them)
MODEL_TYPES = {"resnet18": "Resnet18_width", "resnet50": "Resnet50_width"}
#: the nonlinearity of each architecture, for ``model::nlin`` (their ResNets take the key and
#: ignore it: "doesn't yet do anything", ``ResNetBase_width``)
NONLINEARITIES = {"resnet18": "relu", "resnet50": "relu", "vit": "gelu", "gpt": "gelu", "pinn": "tanh"}
#: our scheduler name -> theirs (``NNmodule_width.set_scheduler``: ``None`` is no scheduler)
SCHEDULER_NAMES = {"onecycle_cosine": "OneCycleLR", "constant": None}
#: the settings torch's ``OneCycleLR`` takes by default, which their ``set_scheduler`` uses:
#: what ``"OneCycleLR"`` means in our spec (cosine annealing is torch's default too)
ONECYCLE_DEFAULTS = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1.0e4}
#: our ResNet state-dict key -> theirs (torchvision's names, ``def_resnet_width.py``,
#: ``ResNet_width._make_layer`` / ``__init__``): ``layer2.0.shortcut.0.weight`` ->
#: ``layer2.0.downsample.0.weight`` (the 1×1 conv, then BatchNorm, in both), ``linear.*`` -> ``fc.*``
RESNET_KEY_RENAMES = ((r"\.shortcut\.", ".downsample."), (r"^linear\.", "fc."))


def _ln_abs(v: float) -> float:
    """``ln |v|`` (NaN for 0, which has no logarithm)."""
    return math.log(abs(v)) if v else math.nan


#: our zoo-table column -> (their ``result.json`` key, conversion, what it is). Their plot
#: (``visualize_phases.ipynb``) reads the first five of their names; the Hessian's raw values go
#: under the names of their ``src/ptmz/loss_landscape/hessian_metric.py`` (``compute_hessian``).
#: Units:
#:
#: * ``log_hessian_*``: natural log of the absolute value; their plot's title is
#:   "log (|Tr ∇²L|) - Train" and its colour scale (4 to 8.5 for ResNet-18 on CIFAR-10) fits
#:   ln of traces of 55 to 5000, not log10.
#: * ``curve_mc_train_error``: percentage points. Their ``curve_fitting.py`` takes the error in
#:   percent (``tr_err = 100 - accuracy``, accuracy in percent, ``utils.test_acc_loss``) and
#:   ``compute_mc(mode="min") = (v0 + v1)/2 − v(t*)``: negative is a barrier, as ours; ours is
#:   an error fraction, so ×100. Our ``t*`` ranges over the interior points only (theirs
#:   includes the endpoints, whose deviation is ``|v1 − v0|/2``).
#: * ``curve_mc_train_loss``: the same on the train loss (nats); named as their ``curve_fitting``
#:   names its ``mc`` entries (``train_loss``, ``train_error``).
#: * ``representation_similarity``: their estimator (``CKA.py``, ``compute_cka``): biased linear
#:   CKA of the logits per batch, averaged over batches and a cell's seed pairs; ours on a fixed
#:   train subset (theirs on the test set), our column ``cka_paper``.
#: * ``wiseft_acc_test_delta``, ``gitrebasin_acc_test_delta``: accuracy as a fraction (their
#:   ``test_epoch`` returns correct / n): the Wise-FT model's test accuracy minus the final
#:   model's, and the re-basin average's minus its endpoints' mean (their repository has no code
#:   for the two deltas; these are our ``wise_ft_gain`` and ``rebasin_gain``).
METRICS: tuple[tuple[str, str, Callable[[float], float], str], ...] = (
    ("hessian_trace", "log_hessian_trace_train", _ln_abs, "ln |Hessian trace| of the train loss"),
    ("hessian_top_eig", "log_hessian_top_ev_train", _ln_abs, "ln |top Hessian eigenvalue| of the train loss"),
    ("cka_paper", "representation_similarity", float, "biased linear CKA of the logits, mean over batches and seed pairs"),
    ("mc_error", "curve_mc_train_error", lambda v: 100.0 * v, "mode connectivity of the train error, percentage points"),
    ("mc_loss", "curve_mc_train_loss", float, "mode connectivity of the train loss"),
    ("wise_ft_gain", "wiseft_acc_test_delta", float, "Wise-FT test accuracy minus the final model's (fraction)"),
    ("rebasin_gain", "gitrebasin_acc_test_delta", float, "re-basin average's test accuracy minus its endpoints' mean (fraction)"),
    ("hessian_trace", "hessian_trace_train_mean", float, "Hessian trace of the train loss"),
    ("hessian_top_eig", "hessian_top_eigenvalues_train_mean", float, "top Hessian eigenvalue of the train loss"),
)

#: the keys ray.tune adds to every ``result.json`` line (bookkeeping, not results): the import
#: drops them, the export writes the three their loader needs
RAY_KEYS = frozenset({
    "config", "training_iteration", "done", "timestamp", "date", "time_this_iter_s", "time_total_s",
    "time_since_restore", "iterations_since_restore", "timesteps_since_restore", "timesteps_total",
    "episodes_total", "pid", "hostname", "node_ip", "trial_id", "experiment_id", "experiment_tag",
    "checkpoint_dir_name", "should_checkpoint", "warmup_time",
})
#: member-table columns an imported result line may not overwrite (:func:`phasezoo.zoo.member_table`)
_RESERVED = frozenset({"member", "arch", "dataset", "width", "batch_size", "seed", "status", "train_loss_init"})
_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)")


# ----------------------------------------------------------------------------- state dicts


def to_ptmz_state(state: Mapping[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Our state-dict keys -> theirs (ResNets: :data:`RESNET_KEY_RENAMES`; others unchanged)."""
    if arch not in MODEL_TYPES:
        return dict(state)
    out = {}
    for key, value in state.items():
        for ours, theirs in RESNET_KEY_RENAMES:
            key = re.sub(ours, theirs, key)
        out[key] = value
    return out


def from_ptmz_state(state: Mapping[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Their state-dict keys -> ours: the inverse of :func:`to_ptmz_state`, after dropping the
    ``module.`` prefix ``torch.nn.DataParallel`` adds (their ``clean_state_dict``)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if arch in MODEL_TYPES:
            key = re.sub(r"\.downsample\.", ".shortcut.", key)
            key = re.sub(r"^fc\.", "linear.", key)
        out[key] = value
    return out


# ----------------------------------------------------------------------------- export


def ptmz_params(m: MemberSpec) -> dict:
    """The ``params.json`` of a member: their names and values (module docstring) for what their
    code reads, our remaining settings as ``model::<key>`` (architecture settings) and
    ``dataset::name``, and our full config under ``phasezoo::config``."""
    info = DATASETS[m.dataset]
    scheduler = m.scheduler["name"]
    return {
        "model::type": MODEL_TYPES.get(m.arch, m.arch), "model::width": m.width,
        "model::channels_in": info.in_channels, "model::o_dim": info.num_classes,
        "model::nlin": NONLINEARITIES[m.arch],
        "model::dropout": 0.0,  # none of our architectures has dropout
        "model::init_type": m.init,
        **{f"model::{k}": v for k, v in m.model.items()},
        "optim::optimizer": m.optimizer, "optim::lr": m.lr, "optim::momentum": m.momentum,
        "optim::wd": m.weight_decay, "optim::scheduler": SCHEDULER_NAMES.get(scheduler, scheduler),
        "training::batchsize": m.batch_size, "training::epochs_train": m.epochs,
        "dataset::name": m.dataset, "seed": m.seed, "phasezoo::config": m.to_dict(),
    }


def ptmz_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The :data:`METRICS` of one zoo-table row in their names and units (absent where ours is
    not computed: their plot then has no such column rather than a made-up value)."""
    out = {}
    for ours, theirs, convert, _ in METRICS:
        v = row.get(ours)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        v = convert(float(v))
        if math.isfinite(v):
            out[theirs] = v
    return out


def _metric_rows(z: Zoo, epochs: list[int]) -> dict[int, dict[str, dict]]:
    """epoch -> member -> the member's metrics in their names, at every checkpoint epoch
    (downstream results are in the final epoch's table, :func:`phasezoo.analysis.table.zoo_table`)."""
    out = {}
    for e in epochs:
        df = zoo_table(z, epoch=e, phases=False)
        out[e] = {r["member"]: ptmz_metrics(r) for r in df.to_dict("records")}
    return out


def export_ptmz(zoo: Zoo | str | Path | ZooSpec, profile: str | None = None, root: str | Path = DEFAULT_ROOT,
                to: str | Path | None = None) -> int:
    """Write every member that has results to ``to`` in their layout; returns the count.

    Per member: ``params.json`` (:func:`ptmz_params`); ``result.json`` with our result line of
    each epoch plus ``training_iteration`` (= the epoch), ``done`` (on the last line) and
    ``config`` (the params without ``phasezoo::config``), and at each checkpoint epoch the
    metrics computed there (:func:`ptmz_metrics`); ``checkpoint_NNNNNN/checkpoints`` with their
    state-dict keys (:func:`to_ptmz_state`). Every file is verified before anything is written;
    the export is built in a temporary folder renamed into place at the end, so an interrupted
    export leaves nothing half-written at ``to``.
    """
    z = Zoo.of(zoo, profile, root)
    to, members = members_to_export(z, to, "export_ptmz")
    store = z.store
    recorded = {len(store.member(m.member).read_results()) - 1 for m in members}
    metrics = _metric_rows(z, [e for e in z.settings.training.checkpoint_epochs if e <= max(recorded)])
    with staged_folder(to) as tmp:
        for m in members:
            ms = store.member(m.member)
            out = tmp / m.member
            out.mkdir()
            params = ptmz_params(m)
            (out / "params.json").write_text(json.dumps(params, indent=1))
            config = {k: v for k, v in params.items() if k != "phasezoo::config"}
            rows = ms.read_results()
            lines = [json.dumps({**r, **metrics.get(r["epoch"], {}).get(m.member, {}),
                                 "training_iteration": r["epoch"], "done": i == len(rows) - 1, "config": config})
                     for i, r in enumerate(rows)]
            (out / "result.json").write_text("\n".join(lines) + "\n")
            for epoch in ms.checkpoint_epochs():
                ckpt = out / f"checkpoint_{epoch:06d}"
                ckpt.mkdir()
                torch.save(to_ptmz_state(ms.load_checkpoint(epoch)[1], m.arch), ckpt / "checkpoints")
    return len(members)


# ----------------------------------------------------------------------------- import


def _read_plain_json(path: Path) -> dict:
    """A JSON object from their layout (no hash: it was not written by us)."""
    try:
        obj = json.loads(path.read_bytes().decode())
    except FileNotFoundError:
        raise PhaseZooError(f"{path} is missing (not a model folder of the ptmz layout)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PhaseZooError(f"{path} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise PhaseZooError(f"{path}: expected a JSON object")
    return obj


def _param(params: Mapping, key: str, where: Path, check: Callable[[Any], bool], what: str, default: Any = ...) -> Any:
    if key not in params:
        if default is ...:
            raise PhaseZooError(f"{where}: missing {key!r}")
        return default
    value = params[key]
    if not check(value):
        raise PhaseZooError(f"{where}: {key} must be {what}, got {value!r}")
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _member_settings(params: Mapping, path: Path, dataset: str) -> dict:
    """Our settings of one model from its ``params.json`` (their names, module docstring)."""
    types = {v: k for k, v in MODEL_TYPES.items()}
    mtype = _param(params, "model::type", path, lambda v: v in types or v in MODEL_TYPES,
                   f"one of {', '.join(sorted(types))} (their ResNet classes; the import reads ResNet zoos)")
    info = DATASETS[dataset]
    for key, expected in (("model::channels_in", info.in_channels), ("model::o_dim", info.num_classes)):
        if key in params and params[key] != expected:
            raise PhaseZooError(f"{path}: {key} is {params[key]!r}, but {dataset} has {expected}")
    optimizer = _param(params, "optim::optimizer", path, lambda v: v == "sgd", "'sgd' (the optimizer of their zoos)")
    scheduler = _param(params, "optim::scheduler", path, lambda v: v in (None, "OneCycleLR"),
                       "null or 'OneCycleLR'", default=None)
    return {
        "arch": types.get(mtype, mtype),
        "width": _param(params, "model::width", path, lambda v: _is_int(v) and v > 0, "a positive integer"),
        "batch_size": _param(params, "training::batchsize", path, lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
        "seed": _param(params, "seed", path, lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
        "optimizer": optimizer,
        "lr": _param(params, "optim::lr", path, lambda v: _is_number(v) and v > 0, "a positive number"),
        "momentum": _param(params, "optim::momentum", path, lambda v: _is_number(v) and 0 <= v < 1, "in [0, 1)", 0.0),
        "weight_decay": _param(params, "optim::wd", path, lambda v: _is_number(v) and v >= 0, "a number >= 0", 0.0),
        "scheduler": ({"name": "onecycle_cosine", **ONECYCLE_DEFAULTS} if scheduler == "OneCycleLR"
                      else {"name": "constant"}),
        "epochs": _param(params, "training::epochs_train", path, lambda v: _is_int(v) and v >= 1, "a positive integer"),
    }


def _result_rows(path: Path, epochs: int) -> list[dict]:
    """Our result rows from their ``result.json``: line i is epoch i (checked against its
    ``training_iteration``), every recorded value kept as it is, ray.tune's bookkeeping
    (:data:`RAY_KEYS`) dropped. It must hold epochs 0 to ``epochs``, each once."""
    try:
        lines = [line for line in path.read_bytes().decode().splitlines() if line.strip()]
    except FileNotFoundError:
        raise PhaseZooError(f"{path} is missing") from None
    except UnicodeDecodeError:
        raise PhaseZooError(f"{path} is not UTF-8 text") from None
    rows = []
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise PhaseZooError(f"{path} line {i + 1} is not valid JSON") from None
        if not isinstance(obj, dict):
            raise PhaseZooError(f"{path} line {i + 1}: expected a JSON object")
        for key in ("training_iteration", "epoch"):
            if key in obj and obj[key] != i:
                raise PhaseZooError(f"{path} line {i + 1} holds {key} {obj[key]!r}, expected {i} "
                                    "(line 0 is the evaluation before training, line i epoch i)")
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            if key not in obj:
                raise PhaseZooError(f"{path} line {i + 1} has no {key}")
            value = obj[key]
            # NaN and null (a diverged run) are recorded values too
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
                raise PhaseZooError(f"{path} line {i + 1}: {key} must be a number, got {value!r}")
        clash = sorted(_RESERVED & set(obj))
        if clash:
            raise PhaseZooError(f"{path} line {i + 1} has a key {clash[0]!r}, which names a member setting")
        rows.append({"epoch": i, **{k: v for k, v in obj.items() if k not in RAY_KEYS and k != "epoch"}})
    if len(rows) != epochs + 1:
        raise PhaseZooError(f"{path} holds {len(rows)} lines, expected {epochs + 1} (epochs 0 to {epochs}; "
                            "a partially trained model is not imported)")
    return rows


def _checkpoint_dirs(model_dir: Path, epochs: int) -> dict[int, Path]:
    """epoch -> checkpoint file of one model folder."""
    out = {}
    for d in sorted(model_dir.iterdir()):
        match = _CHECKPOINT_DIR.fullmatch(d.name)
        if not (d.is_dir() and match):
            continue
        epoch = int(match.group(1))
        if epoch > epochs:
            raise PhaseZooError(f"{d}: epoch {epoch} is past the last epoch {epochs}")
        if not (d / "checkpoints").is_file():
            raise PhaseZooError(f"{d} has no 'checkpoints' file")
        out[epoch] = d / "checkpoints"
    return out


def _load_checkpoint(path: Path, config: Mapping) -> dict[str, torch.Tensor]:
    """A checkpoint of their layout as our state dict, checked to fit the member's model."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError, AttributeError):
        raise PhaseZooError(f"{path}: not a state dict that torch.load(weights_only=True) reads "
                            "(corrupt, truncated, or pickled code)") from None
    if not (isinstance(state, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in state.items())):
        raise PhaseZooError(f"{path}: not a state dict (a mapping of names to tensors)")
    model = model_from_config(config)
    try:
        model.load_state_dict(from_ptmz_state(state, config["arch"]))
    except RuntimeError:
        raise PhaseZooError(f"{path} does not fit a {config['arch']} of width {config['width']} "
                            f"on {config['dataset']} (other keys or shapes)") from None
    return model.state_dict()


def _common(settings: dict[Path, dict], key: str) -> Any:
    values = {json.dumps(s[key], sort_keys=True): p for p, s in settings.items()}
    if len(values) > 1:
        (a, pa), (b, pb) = list(values.items())[:2]
        raise PhaseZooError(f"the models differ in {key} ({a} in {pa.name}, {b} in {pb.name}); "
                            "a zoo shares every setting but width, batch size and seed")
    return next(iter(settings.values()))[key]


def import_spec(name: str, dataset: str, settings: dict[Path, dict], checkpoints: list[int], source: Path) -> dict:
    """The spec (as a mapping, :func:`phasezoo.spec.spec_from_mapping`) of an imported zoo: the
    shared settings of its models, the grid width × batch size × seed they fill, profile
    :data:`IMPORTED_PROFILE`, and the checkpoint epochs every model has."""
    shared = {k: _common(settings, k) for k in ("arch", "optimizer", "lr", "momentum", "weight_decay",
                                                "scheduler", "epochs")}
    grid = {k: sorted({s[k] for s in settings.values()}) for k in ("width", "batch_size", "seed")}
    coords = [(s["width"], s["batch_size"], s["seed"]) for s in settings.values()]
    if len(set(coords)) != len(coords):
        raise PhaseZooError("two models have the same width, batch size and seed")
    if len(coords) != math.prod(len(v) for v in grid.values()):
        have = set(coords)
        missing = next((w, b, s) for w in grid["width"] for b in grid["batch_size"] for s in grid["seed"]
                       if (w, b, s) not in have)
        raise PhaseZooError(f"the models do not fill a width × batch size × seed grid: none has width "
                            f"{missing[0]}, batch size {missing[1]}, seed {missing[2]}")
    training = {k: shared[k] for k in ("optimizer", "lr", "momentum", "weight_decay", "scheduler", "epochs")}
    # their params.json records no augmentation (their transforms live in the dataset dump)
    training.update(init="kaiming_uniform", augmentation={}, checkpoints={"only": checkpoints})
    return {"name": name, "description": f"imported from {source} (the ptmz ray.tune layout)",
            "task": "classification", "arch": shared["arch"], "dataset": dataset,
            "axes": {"load": "width", "temperature": "batch_size"}, "training": training,
            "profiles": {IMPORTED_PROFILE: {"description": f"the {len(coords)} models of {source}", "grid": grid}}}


def import_ptmz(src: str | Path, name: str, dataset: str, root: str | Path = DEFAULT_ROOT) -> Zoo:
    """Read a zoo in their layout (module docstring) into our store as ``root/<name>/imported``.

    Each model folder (a subfolder of ``src`` with a ``params.json``) becomes a member named
    from its grid coordinates: its settings from their keys (:func:`_member_settings`), its
    results from ``result.json`` as recorded (:func:`_result_rows`), every checkpoint loaded with
    ``weights_only=True``, renamed to our keys and checked to fit the model before it is stored.
    The zoo's spec (:func:`import_spec`) is stored beside it (``root/<name>/spec.json``), so
    ``NAME --profile imported --root ROOT`` names it like a packaged zoo. Anything bad or missing
    is a one-line error and leaves nothing behind: the zoo is built in a temporary folder and
    renamed into place at the end.
    """
    src, root = Path(src), Path(root)
    if not ZOO_NAME.fullmatch(name):
        raise PhaseZooError(f"--name {name!r} must match {ZOO_NAME.pattern} (it names a folder)")
    if name in list_zoos():
        raise PhaseZooError(f"--name {name} is a packaged zoo; choose another name")
    if dataset not in DATASETS or DATASETS[dataset].kind != "vision":
        vision = ", ".join(sorted(k for k, v in DATASETS.items() if v.kind == "vision"))
        raise PhaseZooError(f"--dataset {dataset!r}: the import reads image classification zoos; one of {vision}")
    if not src.is_dir():
        raise PhaseZooError(f"{src} is not a folder")
    if root.exists() and not root.is_dir():
        raise PhaseZooError(f"--root {root} is a file, not a folder")
    if (root / name).exists():
        raise PhaseZooError(f"{root / name} exists; choose another --name or remove it")
    dirs = sorted(d for d in src.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise PhaseZooError(f"{src} holds no model folders")
    settings = {d: _member_settings(_read_plain_json(d / "params.json"), d / "params.json", dataset) for d in dirs}
    epochs = _common(settings, "epochs")
    rows = {d: _result_rows(d / "result.json", epochs) for d in dirs}
    ckpts = {d: _checkpoint_dirs(d, epochs) for d in dirs}
    common = sorted(set.intersection(*(set(c) for c in ckpts.values())))
    if not common:
        raise PhaseZooError(f"no checkpoint epoch is common to every model of {src}")
    raw = import_spec(name, dataset, settings, common, src)
    spec = spec_from_mapping(raw, root / name / STORED_SPEC)
    members = {(m.width, m.batch_size, m.seed): m for m in spec.members(IMPORTED_PROFILE)}

    created_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        for d in dirs:
            s = settings[d]
            m = members[(s["width"], s["batch_size"], s["seed"])]
            ms = MemberStore(tmp / IMPORTED_PROFILE / m.member)
            config = m.to_dict()
            ms.write_config(config)
            ms.write_results(rows[d])
            for epoch, path in ckpts[d].items():
                ms.save_checkpoint(epoch, _load_checkpoint(path, config))
            ms.write_status("done", epoch=epochs, imported_from=str(d))
        ZooStore(tmp.parent, tmp.name, IMPORTED_PROFILE).write_spec(
            {"zoo": name, "profile": IMPORTED_PROFILE, "source": STORED_SPEC,
             "members": [m.member for m in spec.members(IMPORTED_PROFILE)]})
        atomic_write_json(tmp / STORED_SPEC, raw)
        os.replace(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_root:
            try:
                root.rmdir()  # only if nothing else was written there meanwhile
            except OSError:
                pass
        raise
    return Zoo.of(spec, IMPORTED_PROFILE, root)


__all__ = ["IMPORTED_PROFILE", "METRICS", "MODEL_TYPES", "export_ptmz", "from_ptmz_state", "import_ptmz",
           "import_spec", "ptmz_metrics", "ptmz_params", "to_ptmz_state"]
