"""Width-scalable Vision Transformer for small images (paper Table 2).

The *width* is the model dimension ``d`` of the residual stream (paper Table 2: ``model_dim`` in
6, 12, 24, 48, 60, 96, 192; activation ReLU, Kaiming-uniform initialisation, AdamW). The network
is the pre-LayerNorm ViT of Dosovitskiy et al. (2021) without dropout and without BatchNorm:

* patch embedding: ``patch = Conv2d(in_channels, d, patch_size, stride=patch_size)``, flattened
  to ``(image_size / patch_size)²`` tokens, a learned class token ``cls`` (1, 1, d) prepended and a
  learned position embedding ``pos`` (1, 1 + num_patches, d) added;
* ``depth`` blocks ``x = x + attn(ln1(x)); x = x + mlp(ln2(x))`` (:class:`Block`): multi-head
  self-attention with SEPARATE ``q``, ``k``, ``v`` and ``proj`` linears (``d -> d``, with bias;
  separate layers so that weight matching can address each of them), and an MLP
  ``fc2(relu(fc1(x)))`` with ``round(mlp_ratio · d)`` hidden units;
* a final LayerNorm ``ln_f``, the class token as the representation (:meth:`ViT.features`,
  shape (B, d)) and a linear head ``linear`` (``d -> num_classes``).

Defaults: ``depth=6``, ``heads=3`` (divides every width of the paper's grid), ``patch_size=4``,
``mlp_ratio=2``.

Initialisation (deterministic given ``torch.manual_seed``): Kaiming-uniform (fan-in, ReLU gain
√2) for every Linear and Conv weight, zero biases, LayerNorm weight 1 and bias 0 (paper: "Kaiming
Uniform"); ``cls`` and ``pos`` are not weights of a layer and have no fan-in, so they get the usual
ViT initialisation, a normal with std 0.02 truncated at ±2 std (timm, Dosovitskiy et al.).

Permutation symmetries (:meth:`ViT.permutation_groups`, used by
:mod:`phasezoo.downstream.rebasin`): the residual stream (one permutation of the ``d`` features
for the whole network; LayerNorm is equivariant to it because its mean and variance are
permutation invariant) and each block's MLP hidden units. The per-head symmetries of attention
are left unpermuted (see :func:`transformer_groups`).

The building blocks (:class:`Attention`, :class:`MLP`, :class:`Block`, :func:`init_transformer`,
:func:`transformer_groups`) are shared with the GPT decoder of :mod:`phasezoo.models.gpt`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: An axis of a tensor: (state_dict key, dimension).
Axis = tuple[str, int]


class Attention(nn.Module):
    """Multi-head self-attention with separate ``q``, ``k``, ``v`` and ``proj`` linears (with bias)."""

    def __init__(self, width: int, heads: int, *, causal: bool = False):
        super().__init__()
        if heads < 1 or width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        self.heads = heads
        self.causal = causal
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:      # (B, T, d) -> (B, heads, T, d/heads)
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                           is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    """``fc2(activation(fc1(x)))`` with ``hidden`` units."""

    def __init__(self, width: int, hidden: int, activation: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, heads: int, hidden: int,
                 activation: Callable[[torch.Tensor], torch.Tensor], *, causal: bool = False):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, causal=causal)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width, hidden, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def check_sizes(width: int, heads: int, mlp_ratio: float, **sizes: int) -> int:
    """Check a transformer's sizes (each a positive integer, ``heads`` dividing ``width``);
    returns the MLP hidden width ``round(mlp_ratio * width)``. Raises a one-line ValueError."""
    for name, value in (("width", width), ("heads", heads), *sizes.items()):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if width % heads:
        raise ValueError(f"heads ({heads}) must divide width ({width})")
    hidden = round(mlp_ratio * width)
    if hidden < 1:
        raise ValueError(f"mlp_ratio ({mlp_ratio}) gives no MLP hidden units at width {width}")
    return hidden


def init_transformer(model: nn.Module) -> None:
    """Kaiming-uniform (fan-in, ReLU gain √2) Linear/Conv weights, zero biases, LayerNorm to identity.

    Embedding tables (``nn.Embedding``) get a normal with std 0.02 (GPT-2 / nanoGPT).
    """
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)


def ln_axes(prefix: str) -> list[Axis]:
    """The two axes of a LayerNorm ``prefix``: weight and bias, dim 0."""
    return [(f"{prefix}.weight", 0), (f"{prefix}.bias", 0)]


def transformer_groups(blocks: nn.ModuleList, prefix: str = "blocks") -> tuple[list[Axis], dict[str, list[Axis]]]:
    """The permutation axes of a stack of :class:`Block`\\ s.

    Returns ``(stream_axes, mlp_groups)``: the axes of the blocks that belong to the residual
    stream (``ln1``/``ln2`` weight and bias, ``q``/``k``/``v``/``fc1`` weight dim 1 — they read
    the stream —, ``proj``/``fc2`` weight dim 0 and bias — they write into it) and, for each
    block ``i``, a group ``{prefix}.{i}.mlp`` of its MLP hidden units (``fc1`` weight dim 0 and
    bias, ``fc2`` weight dim 1).

    Attention heads are NOT permuted. The exact symmetries of attention are a permutation of the
    heads, a permutation within each head of the ``q``/``k`` features (the same for ``q`` and
    ``k``) and one within each head of the ``v`` features (with ``proj``'s input columns): all are
    permutations of the ``d`` axis of ``q``/``k``/``v``/``proj`` that map heads to heads, i.e.
    block-structured. The generic machinery of :mod:`phasezoo.downstream.rebasin` draws and
    matches unconstrained permutations of a whole axis, which would mix features across heads and
    change the function, so the head axes are left out (kept in place).
    """
    stream: list[Axis] = []
    mlp: dict[str, list[Axis]] = {}
    for i, block in enumerate(blocks):
        if not isinstance(block, Block):
            raise TypeError(f"{prefix}.{i} is {type(block).__name__}, expected a transformer Block")
        p = f"{prefix}.{i}"
        stream += ln_axes(f"{p}.ln1")
        stream += [(f"{p}.attn.{n}.weight", 1) for n in ("q", "k", "v")]
        stream += [(f"{p}.attn.proj.weight", 0), (f"{p}.attn.proj.bias", 0)]
        stream += ln_axes(f"{p}.ln2")
        stream += [(f"{p}.mlp.fc1.weight", 1), (f"{p}.mlp.fc2.weight", 0), (f"{p}.mlp.fc2.bias", 0)]
        mlp[f"{p}.mlp"] = [(f"{p}.mlp.fc1.weight", 0), (f"{p}.mlp.fc1.bias", 0), (f"{p}.mlp.fc2.weight", 1)]
    return stream, mlp


class ViT(nn.Module):
    """Pre-LN Vision Transformer with a class token; see the module docstring."""

    def __init__(self, *, width: int, in_channels: int, num_classes: int, image_size: int,
                 depth: int, heads: int, patch_size: int, mlp_ratio: float):
        super().__init__()
        hidden = check_sizes(width, heads, mlp_ratio, in_channels=in_channels, num_classes=num_classes,
                             image_size=image_size, depth=depth, patch_size=patch_size)
        if image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch_size ({patch_size})")
        self.width = width
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_patches = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.zeros(1, 1 + self.num_patches, width))
        self.blocks = nn.ModuleList(Block(width, heads, hidden, F.relu) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.linear = nn.Linear(width, num_classes)
        init_transformer(self)
        nn.init.trunc_normal_(self.cls, std=0.02, a=-0.04, b=0.04)
        nn.init.trunc_normal_(self.pos, std=0.02, a=-0.04, b=0.04)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The final-LayerNorm class token, shape (B, width)."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected {self.image_size}x{self.image_size} images, got "
                             f"{tuple(x.shape[-2:])}")
        t = self.patch(x).flatten(2).transpose(1, 2)                 # (B, num_patches, width)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        for block in self.blocks:
            t = block(t)
        return self.ln_f(t[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))

    def permutation_groups(self) -> dict[str, list[Axis]]:
        """Exact permutation symmetries: group name -> list of ``(state_dict key, dim)``.

        ``stream``: the residual stream — ``patch`` weight dim 0 and bias, ``cls`` and ``pos``
        dim 2, every block's stream axes (:func:`transformer_groups`), ``ln_f`` weight and bias,
        ``linear`` weight dim 1. ``blocks.{i}.mlp``: block ``i``'s MLP hidden units. Attention
        heads are not permuted (see :func:`transformer_groups`).
        """
        stream: list[Axis] = [("patch.weight", 0), ("patch.bias", 0), ("cls", 2), ("pos", 2)]
        block_stream, mlp = transformer_groups(self.blocks)
        stream += block_stream + ln_axes("ln_f") + [("linear.weight", 1)]
        return {"stream": stream, **mlp}


def vit(*, width: int, in_channels: int, num_classes: int, image_size: int, depth: int = 6,
        heads: int = 3, patch_size: int = 4, mlp_ratio: float = 2.0) -> ViT:
    """ViT of model dimension ``width`` on ``image_size``² images cut into ``patch_size``² patches."""
    return ViT(width=width, in_channels=in_channels, num_classes=num_classes, image_size=image_size,
               depth=depth, heads=heads, patch_size=patch_size, mlp_ratio=mlp_ratio)
