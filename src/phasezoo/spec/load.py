"""Read a zoo spec: YAML files (``extends:`` bases merged key by key), every key and value
validated with a one-line :class:`~phasezoo.errors.SpecError` naming the file and the key,
into the frozen dataclasses of :mod:`phasezoo.spec.schema`."""

from __future__ import annotations

import copy
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from phasezoo.data import DATASETS, BatchAugment
from phasezoo.downstream.finetune import TARGET_TASKS
from phasezoo.errors import SpecError
from phasezoo.landscape.phases import PhaseThresholds
from phasezoo.models import ARCH_DATA_KIND, ARCHS
from phasezoo.store import read_json
from phasezoo.tasks import TASK_DATA_KIND

from .schema import (AXIS_DIRECTIONS, DOWNSTREAM_DEFAULTS, GRID_LABELS, INITS, LBFGS_DEFAULTS, METRIC_DEFAULTS,
                     MIN_BATCH_SIZE, OPTIMIZERS, REAL_GRID_KEYS, SCHEDULERS, TASKS, ZOO_NAME, ProfileSpec,
                     TrainingSpec, ZooSpec, _SCHEDULER_DEFAULTS, _TOP_KEYS, _TRAINING_KEYS, wise_ft_early_epoch)


def zoo_dir() -> Path:
    """The folder of the packaged zoo specs."""
    return Path(str(resources.files("phasezoo") / "zoos"))


def list_zoos() -> list[str]:
    """Names of the packaged zoos (one YAML file each, bases starting with ``_`` excluded)."""
    return sorted(p.stem for p in zoo_dir().glob("*.yaml") if not p.name.startswith("_"))


#: the file an imported zoo's spec is stored in, ``ROOT/<zoo>/spec.json`` (sealed with its sha256
#: like every stored file, :func:`phasezoo.store.atomic_write_json`)
STORED_SPEC = "spec.json"


def stored_spec_path(root: str | Path, zoo: str) -> Path:
    """Where the spec of a zoo kept with its files (an imported zoo) lies under ``root``."""
    return Path(root) / str(zoo) / STORED_SPEC


def load_spec(zoo: str | Path, root: str | Path | None = None) -> ZooSpec:
    """Load and validate a zoo by packaged name (``cifar10-resnet18``), by path to a YAML file,
    or by path to a stored spec (``ROOT/<zoo>/spec.json``, written by ``phasezoo import``).

    A name that is no packaged zoo is looked up under ``root`` (when given): a zoo whose spec is
    stored with its files there (:func:`stored_spec_path`). A stored spec is verified against
    its hash before it is used.
    """
    path = Path(zoo)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise SpecError(f"zoo spec file not found: {path}")
    elif path.suffix == ".json":
        return _load_stored(path)
    else:
        path = zoo_dir() / f"{zoo}.yaml"
        if not path.is_file() or path.name.startswith("_"):
            if root is not None and ZOO_NAME.fullmatch(str(zoo)) and stored_spec_path(root, str(zoo)).is_file():
                return _load_stored(stored_spec_path(root, str(zoo)))
            under = f" (nor a zoo imported under {root})" if root is not None else ""
            raise SpecError(f"unknown zoo {str(zoo)!r}{under}; known zoos: {', '.join(list_zoos())}")
    raw = _read_with_bases(path, seen=())
    return _validate(raw, path)


def _load_stored(path: Path) -> ZooSpec:
    """A spec stored as sealed JSON (an imported zoo's): hash checked, then validated like a
    YAML file (its ``source`` is the JSON file)."""
    if not path.is_file():
        raise SpecError(f"zoo spec file not found: {path}")
    return spec_from_mapping(read_json(path), path)


def spec_from_mapping(raw: Mapping[str, Any], source: str | Path) -> ZooSpec:
    """Validate a spec given as a mapping (what a YAML file holds, ``extends`` excluded);
    ``source`` names it in error messages and becomes :attr:`ZooSpec.source`."""
    raw = copy.deepcopy(dict(raw))
    if "extends" in raw:
        raise SpecError(f"{Path(source).name}: a stored spec cannot extend another")
    return _validate(raw, Path(source))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SpecError(f"{path.name}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot be read ({e.strerror})") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise SpecError(f"{path.name}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path.name}: a zoo spec must be a mapping of keys to values")
    return data


def _read_with_bases(path: Path, seen: tuple[Path, ...]) -> dict:
    if path in seen:
        raise SpecError(f"{path.name}: circular 'extends'")
    data = _read_yaml(path)
    base = data.pop("extends", None)
    data.setdefault("name", path.stem)
    if base is None:
        return data
    base_path = path.parent / str(base)
    if not base_path.is_file():
        raise SpecError(f"{path.name}: extends {base!r}, which does not exist beside it")
    merged = _read_with_bases(base_path, seen + (path,))
    merged.pop("name", None)
    return _deep_merge(merged, data)


def _deep_merge(base: Mapping, over: Mapping) -> dict:
    """Merge mappings key by key; ``over`` wins; lists and scalars are replaced, not merged."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _validate(raw: dict, path: Path) -> ZooSpec:
    where = path.name
    _no_unknown(raw, _TOP_KEYS, where)
    name = _require(raw, "name", str, where)
    if not ZOO_NAME.fullmatch(name):
        raise SpecError(f"{where}: zoo name {name!r} must match {ZOO_NAME.pattern} "
                        "(it names a folder under --root)")
    task = _choice(raw.get("task", "classification"), TASKS, f"{where}: task")
    arch = _choice(_require(raw, "arch", str, where), tuple(ARCHS), f"{where}: arch")
    dataset = _choice(_require(raw, "dataset", str, where), tuple(DATASETS), f"{where}: dataset")
    kind = DATASETS[dataset].kind
    if TASK_DATA_KIND[task] != kind or ARCH_DATA_KIND[arch] != kind:
        raise SpecError(f"{where}: task {task}, arch {arch} and dataset {dataset} do not fit together "
                        f"(they take {TASK_DATA_KIND[task]}, {ARCH_DATA_KIND[arch]} and {kind} data)")
    model = raw.get("model") or {}
    if not isinstance(model, Mapping) or not all(isinstance(k, str) for k in model):
        raise SpecError(f"{where}: model must be a mapping of architecture settings")
    axes = raw.get("axes", {"load": "width", "temperature": "batch_size"})
    if not isinstance(axes, Mapping) or set(axes) != {"load", "temperature"}:
        raise SpecError(f"{where}: axes must be a mapping with keys 'load' and 'temperature'")
    for a in axes.values():
        _choice(a, tuple(k for k in GRID_LABELS if k != "seed"), f"{where}: axes")
    if axes["load"] == axes["temperature"]:
        raise SpecError(f"{where}: axes load and temperature must differ")
    if "width" not in axes.values() and "model_dim" not in axes.values() and "width" not in model:
        raise SpecError(f"{where}: the width is neither a grid axis nor given as model.width")
    if (task == "pde_convection") != ("beta" in axes.values()):
        raise SpecError(f"{where}: beta is the load axis of a pde_convection zoo, and of no other")
    directions = raw.get("axis_directions") or {}
    if not isinstance(directions, Mapping) or not set(directions) <= {"load", "temperature"}:
        raise SpecError(f"{where}: axis_directions must be a mapping with keys 'load' and/or 'temperature'")
    directions = {role: _choice(directions.get(role, AXIS_DIRECTIONS[axes[role]]), ("increasing", "decreasing"),
                                f"{where}: axis_directions.{role}") for role in ("load", "temperature")}
    training = raw.get("training") or {}
    profiles_raw = _require(raw, "profiles", dict, where)
    if not profiles_raw:
        raise SpecError(f"{where}: no profiles")
    num_train = DATASETS[dataset].num_train
    profiles = {}
    for pname, praw in profiles_raw.items():
        pwhere = f"{where}: profile {pname!r}"
        if not isinstance(pname, str) or not ZOO_NAME.fullmatch(pname):
            raise SpecError(f"{pwhere}: profile names must match {ZOO_NAME.pattern} (they name folders)")
        if not isinstance(praw, Mapping):
            raise SpecError(f"{pwhere}: must be a mapping with 'grid' and optional 'training'")
        _no_unknown(praw, {"grid", "training", "description", "metrics", "phases", "downstream"}, pwhere)
        t = _training(_deep_merge(training, praw.get("training") or {}), pwhere, num_train)
        grid = _grid(_require(praw, "grid", dict, pwhere), axes, pwhere)
        for key, fixed in (("lr", t.lr), ("batch_size", t.batch_size)):
            if key not in grid and fixed is None:
                raise SpecError(f"{pwhere}: training.{key} is needed ({key} is not a grid axis)")
        sizes = grid.get("batch_size", (t.batch_size,))
        if min(sizes) < MIN_BATCH_SIZE:
            raise SpecError(f"{pwhere}: batch size {min(sizes)} is below {MIN_BATCH_SIZE} (BatchNorm "
                            "cannot normalise one sample, and 1-sample batches are dropped)")
        too_big = [b for b in sizes if b > num_train]
        if too_big:
            raise SpecError(
                f"{pwhere}: batch size {too_big[0]} is larger than the {num_train} training "
                f"samples of {dataset}"
            )
        metrics_raw = _deep_merge(raw.get("metrics") or {}, praw.get("metrics") or {})
        metric_epochs = _metric_epochs(metrics_raw.pop("epochs", ["last"]), t, pwhere)
        metrics = _metrics(metrics_raw, pwhere)
        phases = _phases(_deep_merge(raw.get("phases") or {}, praw.get("phases") or {}), pwhere)
        downstream = _downstream(_deep_merge(raw.get("downstream") or {}, praw.get("downstream") or {}), pwhere)
        profiles[pname] = ProfileSpec(
            name=pname, grid=grid, training=t, description=str(praw.get("description", "")),
            metrics=metrics, phases=phases, downstream=downstream, metric_epochs=metric_epochs,
        )
    return ZooSpec(
        name=name, description=str(raw.get("description", "")), task=task, arch=arch,
        dataset=dataset, load_axis=axes["load"], temperature_axis=axes["temperature"],
        profiles=profiles, source=str(path), model=dict(model),
        load_direction=directions["load"], temperature_direction=directions["temperature"],
    )


def _training(t: Mapping, where: str, num_train: int) -> TrainingSpec:
    _no_unknown(t, _TRAINING_KEYS, f"{where}: training")
    optimizer = _choice(t.get("optimizer"), OPTIMIZERS, f"{where}: training.optimizer")
    lr = None if t.get("lr") is None else _number(t.get("lr"), f"{where}: training.lr", positive=True)
    batch_size = t.get("batch_size")
    if batch_size == "full":  # full batch (the PINNs): the whole training set in one step
        batch_size = num_train
    elif batch_size is not None:
        batch_size = _int_at_least(batch_size, 1, f"{where}: training.batch_size")
    options: dict[str, Any] = {}
    if optimizer == "lbfgs":
        options = {**LBFGS_DEFAULTS, **(t.get("lbfgs") or {})}
        _no_unknown(options, set(LBFGS_DEFAULTS), f"{where}: training.lbfgs")
        for k in ("max_iter", "history_size"):
            _int_at_least(options[k], 1, f"{where}: training.lbfgs.{k}")
        for k in ("tolerance_grad", "tolerance_change"):
            _number(options[k], f"{where}: training.lbfgs.{k}", positive=True)
        _choice(options["line_search"], ("strong_wolfe", "none"), f"{where}: training.lbfgs.line_search")
    elif t.get("lbfgs") is not None:
        raise SpecError(f"{where}: training.lbfgs applies to the lbfgs optimizer only")
    momentum = _momentum(t.get("momentum", 0.0), f"{where}: training.momentum")
    if optimizer != "sgd" and momentum:
        raise SpecError(f"{where}: training.momentum applies to sgd only")
    wd = _weight_decay(t.get("weight_decay", 0.0), f"{where}: training.weight_decay")
    epochs = t.get("epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise SpecError(f"{where}: training.epochs must be a positive integer, got {epochs!r}")
    sched = t.get("scheduler", {"name": "constant"})
    if isinstance(sched, str):
        sched = {"name": sched}
    if not isinstance(sched, Mapping):
        raise SpecError(f"{where}: training.scheduler must be a name or a mapping")
    sname = _choice(sched.get("name"), SCHEDULERS, f"{where}: training.scheduler.name")
    if sname == "onecycle_cosine":
        _no_unknown(sched, {"name", *_SCHEDULER_DEFAULTS}, f"{where}: training.scheduler")
        sched = {"name": sname, **{k: _number(sched.get(k, v), f"{where}: training.scheduler.{k}", positive=True)
                                   for k, v in _SCHEDULER_DEFAULTS.items()}}
        if not 0.0 < sched["pct_start"] < 1.0:
            raise SpecError(f"{where}: training.scheduler.pct_start must lie in (0, 1), got {sched['pct_start']}")
    else:
        _no_unknown(sched, {"name"}, f"{where}: training.scheduler")
        sched = {"name": sname}
    if optimizer == "lbfgs" and sname != "constant":
        raise SpecError(f"{where}: training.scheduler must be constant with lbfgs (its line search sets the step)")
    init = _choice(t.get("init", "kaiming_uniform"), INITS, f"{where}: training.init")
    aug = t.get("augmentation") or {}
    try:
        aug = BatchAugment.from_spec(aug).to_spec()
    except Exception as e:  # one line naming the zoo and the bad key
        raise SpecError(f"{where}: training.augmentation: {e}") from None
    return TrainingSpec(
        optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=wd, scheduler=sched,
        epochs=epochs, init=init, augmentation=aug,
        checkpoint_epochs=_checkpoint_epochs(t.get("checkpoints", {"every": 1}), epochs, where),
        batch_size=batch_size, optimizer_options=options,
    )


def _settings(given: Mapping, defaults: Mapping[str, Mapping[str, Any]], where: str,
              check) -> dict[str, dict[str, Any]]:
    """Sections of settings: ``defaults`` overridden key by key by ``given``; unknown sections
    or keys fail, and ``check(key, value, name)`` validates (and may convert) each value."""
    _no_unknown(given, set(defaults), where)
    out = {}
    for section, section_defaults in defaults.items():
        over = given.get(section) or {}
        _no_unknown(over, set(section_defaults), f"{where}.{section}")
        merged = {**section_defaults, **over}
        out[section] = {k: check(k, v, f"{where}.{section}.{k}") for k, v in merged.items()}
    return out


def _int_at_least(value: Any, lowest: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(lowest, f"an integer >= {lowest}")
        raise SpecError(f"{name} must be {kind}, got {value!r}")
    return value


def _metric_epochs(value: Any, t: Any, where: str) -> tuple:
    """``metrics.epochs``: a non-empty list of checkpoint epochs and/or ``"last"`` (the final
    epoch), without repeats; returned in training order, ``"last"`` as the final epoch's place."""
    name = f"{where}: metrics.epochs"
    if not isinstance(value, list) or not value:
        raise SpecError(f"{name} must be a non-empty list of checkpoint epochs or 'last', got {value!r}")
    seen = set()
    for v in value:
        if v != "last" and (not isinstance(v, int) or isinstance(v, bool) or v not in t.checkpoint_epochs):
            raise SpecError(f"{name}: {v!r} is not 'last' or a checkpoint epoch "
                            f"({', '.join(map(str, t.checkpoint_epochs))})")
        key = t.epochs if v == "last" else v
        if key in seen:
            raise SpecError(f"{name} lists epoch {key} twice")
        seen.add(key)
    return tuple(sorted(value, key=lambda v: t.epochs if v == "last" else v))


def _metrics(m: Mapping, where: str) -> dict[str, dict[str, Any]]:
    """Metric settings (:data:`METRIC_DEFAULTS` overridden key by key)."""

    def check(key: str, value: Any, name: str) -> Any:
        if key == "eig_method":
            return _choice(value, ("lanczos", "power"), name)
        if key == "trace_method":
            return _choice(value, ("hutchpp", "hutchinson"), name)
        if key == "optimizer":
            return _choice(value, ("sgd", "adam"), name)
        if key in ("seed", "epochs", "chance_seed", "min_steps"):
            return _int_at_least(value, 0, name)
        if key == "batch_size":
            return _int_at_least(value, MIN_BATCH_SIZE, name)
        if key in ("num_batches", "max_iter", "num_t", "min_probes", "trace_max_iter"):
            return _int_at_least(value, 1, name)
        if key == "momentum":
            return _momentum(value, name)
        if key == "weight_decay":
            return _weight_decay(value, name)
        return _number(value, name, positive=True)  # tol, lr

    out = _settings(m, METRIC_DEFAULTS, f"{where}: metrics", check)
    if out["mode_connectivity"]["num_t"] < 5:
        raise SpecError(f"{where}: metrics.mode_connectivity.num_t must be at least 5")
    return out


def _downstream(d: Mapping, where: str) -> dict[str, dict[str, Any]]:
    """Downstream settings (:data:`DOWNSTREAM_DEFAULTS` overridden key by key)."""

    def check(key: str, value: Any, name: str) -> Any:
        if key == "sparsities":
            if not isinstance(value, list) or not value or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1 for v in value):
                raise SpecError(f"{name} must be a non-empty list of numbers in (0, 1)")
            return value
        if key == "target":
            return _choice(value, TARGET_TASKS, name)
        if key == "lr":
            return _number(value, name, positive=True)
        if key == "batch_size":
            return _int_at_least(value, MIN_BATCH_SIZE, name)
        return _int_at_least(value, 0 if key == "finetune_epochs" else 1, name)

    return _settings(d, DOWNSTREAM_DEFAULTS, f"{where}: downstream", check)


def _phases(p: Mapping, where: str):
    try:
        return PhaseThresholds.from_mapping(p)
    except (ValueError, TypeError) as e:
        raise SpecError(f"{where}: phases: {e}") from None


def _checkpoint_epochs(c: Any, epochs: int, where: str) -> tuple[int, ...]:
    """Epochs whose weights are kept; with ``every`` or ``at``, epoch 0 (initialisation), the last
    and Wise-FT's early epoch (:func:`wise_ft_early_epoch`) are always kept. ``only`` lists
    exactly the epochs a zoo trained elsewhere has (an imported zoo: what was kept is what there
    is; Wise-FT skips a member without its early epoch)."""
    if not isinstance(c, Mapping) or len(c) != 1 or not set(c) <= {"every", "at", "only"}:
        raise SpecError(f"{where}: training.checkpoints must be {{every: N}}, {{at: [epochs]}} "
                        "or {only: [epochs]}")
    if "every" in c:
        every = c["every"]
        if not isinstance(every, int) or every < 1:
            raise SpecError(f"{where}: training.checkpoints.every must be a positive integer")
        chosen = set(range(0, epochs + 1, every))
    else:
        key = "at" if "at" in c else "only"
        at = c[key]
        if not isinstance(at, list) or not all(
                isinstance(e, int) and not isinstance(e, bool) and 0 <= e <= epochs for e in at):
            raise SpecError(f"{where}: training.checkpoints.{key} must list epochs in [0, {epochs}]")
        if key == "only":
            if not at:
                raise SpecError(f"{where}: training.checkpoints.only must list at least one epoch")
            return tuple(sorted(set(at)))
        chosen = set(at)
    early = wise_ft_early_epoch(epochs)
    return tuple(sorted(chosen | {0, epochs} | ({early} if early is not None else set())))


def _grid(g: Mapping, axes: Mapping[str, str], where: str) -> dict[str, tuple]:
    expected = [axes["load"], axes["temperature"], "seed"]
    if set(g) != set(expected):
        raise SpecError(f"{where}: grid must have exactly the keys {', '.join(expected)}")
    out = {}
    for key in expected:
        vals = g[key]
        if not isinstance(vals, list) or not vals:
            raise SpecError(f"{where}: grid.{key} must be a non-empty list")
        for v in vals:
            if key in REAL_GRID_KEYS:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                if not ok:
                    raise SpecError(f"{where}: grid.{key} contains {v!r}; values must be positive numbers")
                continue
            ok = isinstance(v, int) and not isinstance(v, bool) and (v >= 0 if key == "seed" else v > 0)
            if not ok:
                kind = "non-negative" if key == "seed" else "positive"
                raise SpecError(f"{where}: grid.{key} contains {v!r}; values must be {kind} integers")
        if key in REAL_GRID_KEYS:
            vals = [float(v) for v in vals]
        if len(set(vals)) != len(vals):
            raise SpecError(f"{where}: grid.{key} has repeated values")
        out[key] = tuple(vals)
    return out


def _no_unknown(d: Mapping, allowed: set[str], where: str) -> None:
    unknown = set(d) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _require(d: Mapping, key: str, typ: type, where: str) -> Any:
    if key not in d:
        raise SpecError(f"{where}: missing key {key!r}")
    if not isinstance(d[key], typ):
        raise SpecError(f"{where}: {key} must be a {typ.__name__}")
    return d[key]


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise SpecError(f"{where}: unknown value {value!r}; choose one of {', '.join(choices)}")
    return value


#: PyYAML follows YAML 1.1, which reads ``1.0e4`` (no exponent sign) as a string: accept the
#: numbers that YAML 1.2 would read
_NUMBER_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{where} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise SpecError(f"{where} must be > 0, got {value!r}")
    return float(value)


def _momentum(value: Any, where: str) -> float:
    v = _number(value, where)
    if not 0.0 <= v < 1.0:
        raise SpecError(f"{where} must lie in [0, 1), got {v}")
    return v


def _weight_decay(value: Any, where: str) -> float:
    v = _number(value, where)
    if v < 0:
        raise SpecError(f"{where} must be >= 0, got {v}")
    return v
