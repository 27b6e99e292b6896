"""Points for the 1D convection PINNs (paper §3, Table 4; Krishnapriyan et al. 2021).

The problem ``u_t + β u_x = 0`` on ``x ∈ [0, 2π)``, ``t ∈ [0, 1]`` with ``u(x, 0) = sin x``
and a periodic boundary has the exact solution ``sin(x − β t)`` (:class:`phasezoo.tasks.
ConvectionTask`). Nothing is downloaded: the data are points of the space-time grid of
Krishnapriyan et al. (256 values of x, 100 of t), and which point serves which loss term is
coded in ``y[:, 0]``:

* ``0`` initial: the 256 grid points at ``t = 0``, target ``y[:, 1] = sin x``;
* ``1`` boundary: the points ``(0, t)`` at the 100 grid times (the task compares them with
  ``(2π, t)``);
* ``2`` residual: :data:`NUM_COLLOCATION` collocation points drawn without replacement from the
  grid with a fixed seed (the same for every member, as the data of a zoo are fixed);
* ``3`` evaluation: the test split, the full 256 × 100 grid (the "dense grid" of the relative
  L2 error).

The points do not depend on β: β belongs to the member (it is the zoo's load axis) and enters
through the task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .vision import TensorSplits

NUM_X, NUM_T = 256, 100
#: residual (collocation) points; Krishnapriyan et al. sample theirs from the same grid
NUM_COLLOCATION = 1000
COLLOCATION_SEED = 0
INITIAL, BOUNDARY, RESIDUAL, EVAL = 0, 1, 2, 3


@dataclass(frozen=True)
class PDEData(TensorSplits):
    """Train points (initial, boundary, residual) and test points (the dense grid)."""

    name: str
    train_x: torch.Tensor  # (N, 2) float32 rows (x, t)
    train_y: torch.Tensor  # (N, 2) float32 rows (kind, target)
    test_x: torch.Tensor
    test_y: torch.Tensor
    in_channels: int = 2
    num_classes: int = 1
    max_eval: int | None = None


def grid(num_x: int = NUM_X, num_t: int = NUM_T) -> tuple[np.ndarray, np.ndarray]:
    """The x values (``[0, 2π)``, periodic, so 2π itself is excluded) and t values (``[0, 1]``)."""
    return np.linspace(0.0, 2 * math.pi, num_x, endpoint=False), np.linspace(0.0, 1.0, num_t)


def load_convection(num_collocation: int = NUM_COLLOCATION, seed: int = COLLOCATION_SEED) -> PDEData:
    """The convection points: 256 initial + 100 boundary + ``num_collocation`` residual rows for
    training, the 25 600 grid points for testing."""
    xs, ts = grid()
    X, T = np.meshgrid(xs, ts, indexing="ij")
    full = np.stack([X.ravel(), T.ravel()], axis=1)
    init = np.stack([xs, np.zeros_like(xs)], axis=1)
    bound = np.stack([np.zeros_like(ts), ts], axis=1)
    pick = np.random.default_rng(seed).choice(len(full), size=num_collocation, replace=False)
    res = full[np.sort(pick)]
    x = np.concatenate([init, bound, res])
    y = np.zeros((len(x), 2))
    y[: len(init)] = np.stack([np.full(len(xs), INITIAL), np.sin(xs)], axis=1)
    y[len(init): len(init) + len(bound), 0] = BOUNDARY
    y[len(init) + len(bound):, 0] = RESIDUAL
    test_y = np.zeros((len(full), 2))
    test_y[:, 0] = EVAL
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return PDEData("convection", f32(x), f32(y), f32(full), f32(test_y))
