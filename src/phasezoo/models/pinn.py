"""The physics-informed MLP of the convection zoo (paper Table 4; Krishnapriyan et al. 2021).

Layers ``2 → width → … → width → 1`` with ``depth`` hidden layers of ``width`` tanh units
(Table 4: 50, 50, 50, 50, 1). The inputs ``(x, t)`` are first mapped affinely from the domain
``[0, 2π] × [0, 1]`` to ``[−1, 1]²`` (fixed buffers, not trained), which keeps tanh out of
saturation at the start; derivatives with respect to the raw inputs, which the PDE residual
needs, are taken through this map by autograd.

Initialisation (Table 4: "Kaiming Uniform"): Kaiming-uniform weights with fan-in and the tanh
gain (5/3), zero biases.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PINN(nn.Module):
    def __init__(self, width: int = 50, depth: int = 4, in_channels: int = 2, out_features: int = 1,
                 lower: tuple[float, ...] = (0.0, 0.0), upper: tuple[float, ...] = (2 * math.pi, 1.0)):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"PINN needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        self.register_buffer("lower", torch.tensor(lower, dtype=torch.float32))
        self.register_buffer("upper", torch.tensor(upper, dtype=torch.float32))
        sizes = [in_channels] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.linear = nn.Linear(width, out_features)
        gain = nn.init.calculate_gain("tanh")
        for layer in [*self.hidden, self.linear]:
            bound = gain * math.sqrt(3.0 / layer.in_features)
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.zeros_(layer.bias)

    def permutation_groups(self) -> dict[str, list[tuple[str, int]]]:
        """The exact symmetries for re-basin: the units of each hidden layer (rows of its weight
        and bias, columns of the next layer's weight); see :mod:`phasezoo.downstream.rebasin`."""
        groups = {}
        for i in range(len(self.hidden)):
            nxt = f"hidden.{i + 1}" if i + 1 < len(self.hidden) else "linear"
            groups[f"hidden.{i}"] = [(f"hidden.{i}.weight", 0), (f"hidden.{i}.bias", 0), (f"{nxt}.weight", 1)]
        return groups

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = 2.0 * (x - self.lower) / (self.upper - self.lower) - 1.0
        for layer in self.hidden:
            h = torch.tanh(layer(h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def pinn(*, width: int = 50, depth: int = 4, in_channels: int = 2, num_classes: int = 1) -> PINN:
    """A PINN with ``depth`` hidden tanh layers of ``width`` units and ``num_classes`` outputs."""
    return PINN(width=width, depth=depth, in_channels=in_channels, out_features=num_classes)
