"""Weight-space features of zoo members: per-tensor statistics of the weights.

Following Unterthiner et al. (2020), "Predicting Neural Network Accuracy from Weights"
(arXiv:2002.11448), and the paper's §5 / Table 1, every parameter tensor ``W`` of a model is
summarised by a handful of order-free statistics of its flattened values ``w_1..w_n``:

* mean      ``mu = (1/n) sum_i w_i``
* variance  ``var = (1/n) sum_i (w_i - mu)^2``  (population variance, ``ddof=0``, so a
  one-element tensor has variance 0 rather than NaN)
* quantiles ``q_p`` for ``p`` in ``(0, 0.25, 0.5, 0.75, 1)`` (min, quartiles, max), with
  linear interpolation between order statistics (``numpy.quantile``'s default): for sorted
  values ``w_(0) <= ... <= w_(n-1)`` and ``h = p (n - 1)``,
  ``q_p = w_(floor h) + (h - floor h) (w_(floor h + 1) - w_(floor h))``.

The features of all tensors are concatenated into one vector per model; a linear probe on top
(:mod:`phasezoo.wsl.probe`) predicts model properties from it.

Statistics are invariant to permutations of a tensor's entries, and they do not depend on the
tensor's shape. A zoo whose members differ in width (ResNet-18 at widths 1, 2, 4, ...) therefore
yields aligned feature columns: width scaling changes the shapes of the tensors, never their
names, so ``layer1.0.conv1.weight.mean`` means the same thing for every member.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from phasezoo.errors import PhaseZooError
from phasezoo.models import model_from_config
from phasezoo.store import MemberStore

DEFAULT_QUANTILES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Last component of a state-dict key that marks a trainable parameter, for a bare state dict
#: without its model's config (with one, :func:`forward_order` says which tensors are trained).
PARAMETER_SUFFIXES: tuple[str, ...] = ("weight", "bias")
#: forward_order per architecture (arch, width, model settings, task, dataset), built once
_ORDERS: dict[str, dict[str, str]] = {}


def _quantile_names(quantiles: Sequence[float]) -> list[str]:
    names = []
    for q in quantiles:
        q = float(q)
        if not 0.0 <= q <= 1.0 or math.isnan(q):
            raise PhaseZooError(f"quantiles must lie in [0, 1], got {q}")
        names.append(f"q{100 * q:g}")  # 0.25 -> q25, 0.025 -> q2.5
    if len(set(names)) != len(names):
        raise PhaseZooError(f"duplicate quantiles: {list(quantiles)}")
    return names


def _is_parameter(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in PARAMETER_SUFFIXES


def forward_order(config: Mapping[str, Any]) -> dict[str, str]:
    """The state-dict names of a member config's model in the model's own order, each with its
    kind, ``"parameter"`` (trainable: weights, biases, a ViT's class token and position
    embedding) or ``"buffer"`` (BatchNorm statistics); built on the meta device, so nothing is
    allocated, and once per architecture."""
    key = json.dumps({k: config.get(k) for k in ("arch", "width", "model", "task", "dataset")}, sort_keys=True,
                     default=str)
    if key not in _ORDERS:
        with torch.device("meta"):
            model = model_from_config(config)
        params = {name for name, _ in model.named_parameters()}
        _ORDERS[key] = {name: "parameter" if name in params else "buffer" for name in model.state_dict()}
    return dict(_ORDERS[key])


def _as_float64(value: Any) -> np.ndarray | None:
    """Flattened float64 values of a floating-point tensor/array; None for other dtypes."""
    if isinstance(value, torch.Tensor):
        if not torch.is_floating_point(value):
            return None
        return value.detach().to("cpu", torch.float64).reshape(-1).numpy()
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.floating):
        return None
    return arr.astype(np.float64).reshape(-1)


def weight_statistics(
    state_dict: Mapping[str, Any], *, quantiles: Sequence[float] = DEFAULT_QUANTILES,
    parameters: Collection[str] | None = None,
) -> dict[str, float]:
    """Per-tensor weight statistics of one model (Unterthiner et al. 2020; the paper's Table 1).

    For every floating-point entry of ``state_dict`` that is a trained parameter, the features
    ``<name>.mean``, ``<name>.var`` (population variance) and ``<name>.q<100 p>`` for each ``p``
    in ``quantiles`` (``q0``, ``q25``, ``q50``, ``q75``, ``q100`` by default) are computed from
    the flattened values; see the module docstring for the formulas. Computation is in float64.

    ``parameters``: the names of the model's trained tensors (``named_parameters``, as
    :func:`forward_order` gives them); without it, a name counts as a parameter when its last
    dotted component is ``weight`` or ``bias`` (:data:`PARAMETER_SUFFIXES`), which misses
    parameters named otherwise, such as a ViT's class token ``cls`` and position embedding ``pos``.

    Included: convolution and linear weights and biases, BatchNorm's ``weight``/``bias``
    (the affine scale and shift, which are trained parameters), and with ``parameters`` every
    other trained tensor (a ViT's class token and position embedding). Excluded: BatchNorm's
    ``running_mean``/``running_var`` and ``num_batches_tracked``: they are buffers, statistics
    of the training data's activations accumulated during training, not weights found by the
    optimiser (and ``num_batches_tracked`` is an integer step counter). Non-float entries are
    skipped too.

    Ordering is deterministic: tensors sorted by name, then ``mean``, ``var`` and the quantiles
    in the order given. An empty tensor gives NaN features; non-finite weights (a diverged
    model) give non-finite features, which :func:`phasezoo.wsl.probe.fit_probe` drops.
    """
    qnames = _quantile_names(quantiles)
    qs = np.asarray([float(q) for q in quantiles], dtype=np.float64)
    out: dict[str, float] = {}
    is_parameter = _is_parameter if parameters is None else set(parameters).__contains__
    for name in sorted(state_dict):
        if not is_parameter(name):
            continue
        values = _as_float64(state_dict[name])
        if values is None:
            continue
        if values.size == 0:
            stats = [math.nan] * (2 + len(qs))
        else:
            stats = [float(values.mean()), float(values.var())]
            stats += [float(v) for v in np.quantile(values, qs)] if len(qs) else []
        for stat, v in zip(["mean", "var", *qnames], stats):
            out[f"{name}.{stat}"] = v
    return out


def zoo_features(
    member_dirs: Iterable[str | Path],
    epoch: int | str = "last",
    *,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    skip_missing: bool = False,
) -> pd.DataFrame:
    """Weight statistics of many zoo members: one row per member, one column per feature.

    Each member's checkpoint at ``epoch`` (an int, or ``"last"``: its latest stored checkpoint)
    is read with :meth:`phasezoo.store.MemberStore.load_checkpoint`; its ``config.json`` names the
    trained tensors (:func:`forward_order`, a model on the meta device, so nothing is allocated).
    Members of different widths are read alike, and their columns align (same tensor names,
    different shapes). The index is the member name (the folder name, e.g. ``w0008_b0128_s0``),
    matching the ``member`` column of :func:`phasezoo.zoo_table`.

    ``skip_missing=True`` leaves out members without the checkpoint (pending ones, or an epoch a
    member never reached); otherwise their error is raised. Members whose feature names differ
    (different architectures in one list) raise :class:`~phasezoo.errors.PhaseZooError`.
    """
    rows: dict[str, dict[str, float]] = {}
    columns: list[str] | None = None
    first = None
    for d in member_dirs:
        d = Path(d)
        store = MemberStore(d)
        try:
            _, state = store.load_checkpoint(epoch)
        except PhaseZooError:
            if skip_missing:
                continue
            raise
        config = store.read_config()
        params = None if config is None else [n for n, k in forward_order(config).items() if k == "parameter"]
        feats = weight_statistics(state, quantiles=quantiles, parameters=params)
        if columns is None:
            columns, first = list(feats), d.name
        elif list(feats) != columns:
            diff = sorted(set(feats) ^ set(columns))[:5]
            raise PhaseZooError(
                f"{d.name} has other parameter tensors than {first} (e.g. {diff}); "
                "weight features need one architecture")
        if d.name in rows:
            raise PhaseZooError(f"member {d.name} given twice")
        rows[d.name] = feats
    df = pd.DataFrame.from_dict(rows, orient="index", columns=columns or [], dtype=float)
    df.index.name = "member"
    return df
