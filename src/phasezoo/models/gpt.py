"""Width-scalable GPT-2-style decoder, in the spirit of Karpathy's nanoGPT (paper Table 3).

The *width* is the model dimension ``d`` (paper Table 3: ``model_dim`` in 192, 276, 384, 540,
768, 1092, 1536, 2172 — all divisible by the default 12 heads; GELU; block size 1024;
Kaiming-uniform initialisation; AdamW). The network, without dropout:

* token embedding ``wte`` (vocab_size, d) plus learned position embedding ``wpe`` (block_size, d);
* ``depth`` pre-LayerNorm blocks ``x = x + attn(ln1(x)); x = x + mlp(ln2(x))`` with causal
  multi-head self-attention (separate ``q``, ``k``, ``v``, ``proj`` linears with bias) and an MLP
  ``fc2(gelu(fc1(x)))`` with ``round(mlp_ratio · d)`` hidden units (the blocks of
  :mod:`phasezoo.models.vit`, with ``causal=True`` and exact GELU as ``nn.GELU()`` in nanoGPT);
* a final LayerNorm ``ln_f`` (:meth:`GPT.features`, shape (B, T, d)) and the output head
  :meth:`GPT.lm_head`, logits ``ln_f(x) @ wte.weightᵀ`` (B, T, vocab_size).

Weight tying. As in nanoGPT (and GPT-2) the output head shares its weight with the token
embedding. nanoGPT ties by assigning one ``nn.Parameter`` to two modules, so its state dict holds
``transformer.wte.weight`` and ``lm_head.weight`` as two names of one tensor — and
``safetensors`` refuses to save tensors that share memory, which is how
:meth:`phasezoo.store.MemberStore.save_checkpoint` writes every checkpoint. Here the tie is
kept, but there is no separate head module: :meth:`GPT.lm_head` applies ``F.linear(h,
wte.weight)`` (no bias). The state dict has one key, ``wte.weight``, so checkpoints save and load
through the store unchanged, the tie survives ``load_state_dict``, ``deepcopy``, ``.to()`` and
``.double()``, and the optimiser sees the shared weight once (as with nanoGPT's deduplicated
``parameters()``). A nanoGPT/Hugging Face checkpoint loads after dropping its ``lm_head.weight``
(the same tensor as the token embedding) and renaming the remaining keys.

Initialisation (deterministic given ``torch.manual_seed``): Kaiming-uniform (fan-in) for every
Linear weight, with the ReLU gain √2 also for the GELU MLP (GELU has no gain of its own in
``torch.nn.init``; it behaves like ReLU for large inputs) — the paper specifies Kaiming uniform
rather than nanoGPT's normal(0.02) with a depth-scaled residual projection; zero biases;
LayerNorm weight 1 and bias 0; the embeddings ``wte`` (and so the tied head) and ``wpe`` a
normal with std 0.02, as in GPT-2 / nanoGPT.

Permutation symmetries (:meth:`GPT.permutation_groups`, used by
:mod:`phasezoo.downstream.rebasin`): the residual stream — which includes dim 1 of ``wte``,
consistent for the embedding and the tied head, both indexed by the stream on that axis — and
each block's MLP hidden units; the attention heads are left unpermuted (see
:func:`phasezoo.models.vit.transformer_groups`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from phasezoo.models.vit import (
    Axis,
    Block,
    check_sizes,
    init_transformer,
    ln_axes,
    transformer_groups,
)


class GPT(nn.Module):
    """Pre-LN causal decoder with a head tied to the token embedding; see the module docstring."""

    def __init__(self, *, width: int, vocab_size: int, block_size: int, depth: int, heads: int,
                 mlp_ratio: float):
        super().__init__()
        hidden = check_sizes(width, heads, mlp_ratio, vocab_size=vocab_size, block_size=block_size,
                             depth=depth)
        self.width = width
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, width)
        self.wpe = nn.Embedding(block_size, width)
        self.blocks = nn.ModuleList(Block(width, heads, hidden, F.gelu, causal=True) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        init_transformer(self)

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm hidden states, shape (B, T, width), of token ids ``idx`` (B, T)."""
        if idx.dim() != 2:
            raise ValueError(f"expected token ids of shape (B, T), got {tuple(idx.shape)}")
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence length {t} exceeds the block size {self.block_size}")
        idx = idx.long()
        pos = torch.arange(t, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def lm_head(self, h: torch.Tensor) -> torch.Tensor:
        """The output head, tied to the token embedding: ``h @ wte.weightᵀ`` (no bias)."""
        return F.linear(h, self.wte.weight)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size) for token ids ``idx`` (B, T), any integer dtype."""
        return self.lm_head(self.features(idx))

    def permutation_groups(self) -> dict[str, list[Axis]]:
        """Exact permutation symmetries: group name -> list of ``(state_dict key, dim)``.

        ``stream``: ``wte`` and ``wpe`` weight dim 1 (``wte`` dim 1 is also the tied head's
        input axis), every block's stream axes, ``ln_f`` weight and bias. ``blocks.{i}.mlp``:
        block ``i``'s MLP hidden units. Heads are not permuted.
        """
        block_stream, mlp = transformer_groups(self.blocks)
        stream: list[Axis] = [("wte.weight", 1), ("wpe.weight", 1), *block_stream, *ln_axes("ln_f")]
        return {"stream": stream, **mlp}


def gpt(*, width: int, vocab_size: int, block_size: int, depth: int = 12, heads: int = 12,
        mlp_ratio: float = 4.0) -> GPT:
    """GPT of model dimension ``width`` (GPT-2 small: ``width=768``, 12 layers, 12 heads)."""
    return GPT(width=width, vocab_size=vocab_size, block_size=block_size, depth=depth, heads=heads,
               mlp_ratio=mlp_ratio)
