"""Packed seeds: the K seeds of one grid cell trained as one module.

The seeds of a cell share the architecture, width and training settings and differ only in their
initialisation, data order and augmentation. Trained alone, each pays the per-step overhead of a
tiny model (kernel launches, Python dispatch) that dominates small widths and small batches;
packed, K seeds share each step.

Layout (one for every strategy). The packed module holds every parameter and buffer of the member
model under the member's own name, with a leading seed axis: seed ``k``'s state dict is
``{name: tensor[k]}`` (:meth:`PackedModel.seed_state`). Parameters come in the member model's
order, so optimizer state index ``i`` means the same parameter packed and alone. Because every
optimizer the packed zoos use (SGD with momentum and weight decay, AdamW) updates each element
from that element's gradient and state only, and the learning-rate schedule is the same for the
seeds of a cell, one optimizer over the packed parameters performs exactly the K seeds' own
updates. L-BFGS does not (its line search and curvature history are inner products over all
parameters), so L-BFGS members are never packed.

Inputs are stacked along a new leading axis ``(K, N, ...)`` (seed ``k``'s own batch); outputs come
back as ``(K, N, ...)``. The training loss is the sum of the K seeds' losses: the gradient of the
sum with respect to seed ``k``'s parameters is the gradient of seed ``k``'s loss alone.

Strategies (:data:`STRATEGIES`):

* ``grouped`` (ResNets): the K seeds' activations are stacked along the channel axis,
  ``(N, K·C, H, W)``, seed-major. A convolution becomes one grouped convolution
  (``groups = K·g``, the K weights concatenated), BatchNorm runs over the ``K·C`` channels (its
  statistics are per channel, hence per seed, in train and in eval mode) and the linear head is
  one batched matmul (:class:`PackedLinear`). What lies between them in a ResNet — ReLU, the
  shortcut's addition, average pooling, flatten — acts per channel and needs no change.
  Measured on one CPU thread, a whole digits ResNet-18 training step of 3 packed seeds is
  1.0–2.6× faster than 3 separate steps (2.0–2.6× at batch 8, 1.3–1.9× at 64, 1.0–1.5× at
  512, widths 2–16); ``benchmarks/train_throughput.py`` measures the whole loop.
* ``vmap`` (any model without randomness in its forward pass): ``torch.func.functional_call`` of
  the member module under ``torch.func.vmap`` over the stacked state. Transformer linears become
  batched matmuls. On one CPU thread, 3 packed seeds measured 0.81–1.31× for the digits ViT and
  0.79–1.10× for the text GPT against 3 separate steps (torch has no vmap rule for CPU
  ``scaled_dot_product_attention`` and loops over the seeds there; attention written as
  matmuls and a softmax gave 0.87–1.48× and 0.62–1.19×), so it is not used by default
  (see :func:`default_packing`).

Only the leaf module types in :data:`GROUPED_LEAVES` can be packed by ``grouped``; any other leaf
with parameters or buffers is refused, so a new architecture cannot be packed wrongly in silence.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: packing strategy by architecture (absent: the architecture is not packed)
STRATEGIES = {"resnet18": "grouped", "resnet50": "grouped", "vit": "vmap", "gpt": "vmap"}


def default_packing(arch: str, device: torch.device | str) -> bool:
    """Whether seeds of ``arch`` are packed by default on ``device``: where it was measured to be
    faster. ``grouped`` is faster on the CPU (module docstring); ``vmap`` is not on the CPU, and
    has not been measured on a GPU here, so it stays opt-in (``--pack``) until
    ``benchmarks/gpu_zoo.py`` has measured it."""
    return STRATEGIES.get(arch) == "grouped"


class PackedConv2d(nn.Module):
    """K convolutions as one grouped convolution over seed-major stacked channels."""

    def __init__(self, convs: Sequence[nn.Conv2d]):
        super().__init__()
        c = convs[0]
        if c.padding_mode != "zeros" or isinstance(c.padding, str):
            raise ValueError("PackedConv2d supports numeric zero padding only")
        self.k = len(convs)
        self.stride, self.padding, self.dilation, self.groups = c.stride, c.padding, c.dilation, c.groups
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in convs]).clone())
        self.bias = (nn.Parameter(torch.stack([m.bias.detach() for m in convs]).clone())
                     if c.bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.flatten() if self.bias is not None else None
        return F.conv2d(x, self.weight.flatten(0, 1), bias, self.stride, self.padding, self.dilation,
                        self.groups * self.k)


class PackedBatchNorm2d(nn.Module):
    """K BatchNorm2d layers as one over the K·C stacked channels (statistics per channel).

    Running statistics are updated exactly as :class:`torch.nn.BatchNorm2d` does (exponential
    average with ``momentum``, or the cumulative average when ``momentum`` is None); every seed
    keeps its own ``num_batches_tracked``."""

    def __init__(self, bns: Sequence[nn.BatchNorm2d]):
        super().__init__()
        b = bns[0]
        if not (b.affine and b.track_running_stats):
            raise ValueError("PackedBatchNorm2d supports affine BatchNorm with running statistics")
        self.eps, self.momentum = b.eps, b.momentum
        stack = lambda name: torch.stack([getattr(m, name).detach() for m in bns]).clone()
        self.weight = nn.Parameter(stack("weight"))
        self.bias = nn.Parameter(stack("bias"))
        self.register_buffer("running_mean", stack("running_mean"))
        self.register_buffer("running_var", stack("running_var"))
        self.register_buffer("num_batches_tracked", stack("num_batches_tracked"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked[0])
        # views of the (K, C) buffers: F.batch_norm updates them in place
        return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1),
                            self.weight.flatten(), self.bias.flatten(), self.training, momentum, self.eps)


class PackedLinear(nn.Module):
    """K linear layers on seed-major stacked features ``(..., K·in) -> (..., K·out)``, as one
    batched matmul (``torch.baddbmm``)."""

    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        self.k = len(linears)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]).clone())
        self.bias = (nn.Parameter(torch.stack([m.bias.detach() for m in linears]).clone())
                     if linears[0].bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        xs = x.reshape(-1, self.k, x.shape[-1] // self.k).transpose(0, 1)  # (K, M, in)
        w = self.weight.transpose(1, 2)  # (K, in, out)
        out = torch.baddbmm(self.bias.unsqueeze(1), xs, w) if self.bias is not None else torch.bmm(xs, w)
        return out.transpose(0, 1).reshape(*lead, -1)


#: leaf module types the ``grouped`` strategy packs, and those it passes through unchanged
GROUPED_LEAVES = {nn.Conv2d: PackedConv2d, nn.BatchNorm2d: PackedBatchNorm2d, nn.Linear: PackedLinear}
_PARAMETER_FREE = (nn.ReLU, nn.Identity, nn.Sequential, nn.ModuleList)


def _grouped_copy(models: Sequence[nn.Module]) -> nn.Module:
    """A copy of ``models[0]`` whose conv, BatchNorm and linear leaves hold the K models' weights."""
    net = copy.deepcopy(models[0])
    modules = [dict(m.named_modules()) for m in models]
    for name, module in list(net.named_modules()):
        if name == "":
            if any(True for _ in module.named_parameters(recurse=False)) or any(
                    True for _ in module.named_buffers(recurse=False)):
                raise ValueError(f"{type(module).__name__} holds tensors of its own; use the vmap strategy")
            continue
        kind = type(module)
        if kind in GROUPED_LEAVES:
            packed = GROUPED_LEAVES[kind]([mods[name] for mods in modules])
            parent_name, _, attr = name.rpartition(".")
            setattr(net.get_submodule(parent_name), attr, packed)
        elif not isinstance(module, _PARAMETER_FREE) and (
                any(True for _ in module.named_parameters(recurse=False))
                or any(True for _ in module.named_buffers(recurse=False))):
            raise ValueError(f"cannot pack {kind.__name__} ({name}) by grouped convolution")
    return net


def _stacked_copy(models: Sequence[nn.Module]) -> nn.Module:
    """A copy of ``models[0]`` in which every parameter and buffer is the stack of the K models'."""
    net = copy.deepcopy(models[0])
    modules = [dict(m.named_modules()) for m in models]
    for name, module in net.named_modules():
        for pname, p in list(module._parameters.items()):
            if p is not None:
                module._parameters[pname] = nn.Parameter(
                    torch.stack([mods[name]._parameters[pname].detach() for mods in modules]).clone())
        for bname, b in list(module._buffers.items()):
            if b is not None:
                module._buffers[bname] = torch.stack([mods[name]._buffers[bname] for mods in modules]).clone()
    return net


class PackedModel(nn.Module):
    """K models of one architecture as one module; see the module docstring.

    ``forward(x)`` takes ``(K, N, ...)`` (seed ``k``'s batch at ``x[k]``) and returns
    ``(K, N, ...)``. The K source models are copied, not shared."""

    def __init__(self, models: Sequence[nn.Module], strategy: str):
        super().__init__()
        if len(models) < 1:
            raise ValueError("nothing to pack")
        names = [list(m.state_dict()) for m in models]
        if any(n != names[0] for n in names):
            raise ValueError("packed models must have the same architecture")
        self.k = len(models)
        self.strategy = strategy
        #: memory format of the grouped strategy's stacked input (``torch.channels_last`` on GPUs)
        self.memory_format = torch.contiguous_format
        if strategy == "grouped":
            self.net = _grouped_copy(models)
        elif strategy == "vmap":
            self.net = _stacked_copy(models)
        else:
            raise ValueError(f"unknown packing strategy {strategy!r}; known: grouped, vmap")
        if list(self.net.state_dict()) != names[0]:
            raise AssertionError("packing changed the state dict's names or order")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.k:
            raise ValueError(f"expected inputs of shape (K={self.k}, N, ...), got {tuple(x.shape)}")
        if self.strategy == "grouped":
            n = x.shape[1]
            stacked = x.transpose(0, 1).flatten(1, 2).contiguous(memory_format=self.memory_format)
            out = self.net(stacked)  # (N, K·C, H, W) -> (N, K·out)
            return out.reshape(n, self.k, -1).transpose(0, 1)
        params = dict(self.net.named_parameters())
        buffers = dict(self.net.named_buffers())

        def one(p, b, xk):
            return torch.func.functional_call(self.net, (p, b), (xk,))

        return torch.func.vmap(one, randomness="error")(params, buffers, x)

    def seed_state(self, k: int) -> dict[str, torch.Tensor]:
        """Seed ``k``'s state dict, under the member model's names (copies)."""
        return {name: t[k].detach().clone() for name, t in self.net.state_dict().items()}


def pack_optimizer_state(states: Sequence[dict], packed_params: Sequence[torch.Tensor]) -> dict:
    """The state dict of one optimizer over the packed parameters, from the K seeds' optimizer
    state dicts (:meth:`torch.optim.Optimizer.state_dict` of the member models' optimizers).

    Per-element state (momentum, Adam moments) is stacked; shared scalars (Adam's ``step``) must
    agree between the seeds and are kept once."""
    packed: dict[int, dict] = {}
    for idx in states[0]["state"]:
        entry = {}
        for key, v in states[0]["state"][idx].items():
            vs = [s["state"][idx][key] for s in states]
            if torch.is_tensor(v) and v.dim() > 0 and tuple(v.shape) == tuple(packed_params[idx].shape[1:]):
                entry[key] = torch.stack(vs)
            else:
                if any((not torch.equal(u, v)) if torch.is_tensor(v) else u != v for u in vs[1:]):
                    raise ValueError(f"optimizer state {key!r} differs between the seeds of a pack")
                entry[key] = v
        packed[idx] = entry
    return {"state": packed, "param_groups": copy.deepcopy(states[0]["param_groups"])}


def unpack_optimizer_state(state: dict, packed_params: Sequence[torch.Tensor], k: int) -> dict:
    """Seed ``k``'s optimizer state dict out of the packed optimizer's (the inverse of
    :func:`pack_optimizer_state`)."""
    seed: dict[int, dict] = {}
    for idx, entry in state["state"].items():
        shape = tuple(packed_params[idx].shape)
        seed[idx] = {key: (v[k].clone() if torch.is_tensor(v) and tuple(v.shape) == shape else
                           (v.clone() if torch.is_tensor(v) else copy.deepcopy(v)))
                     for key, v in entry.items()}
    return {"state": seed, "param_groups": copy.deepcopy(state["param_groups"])}
