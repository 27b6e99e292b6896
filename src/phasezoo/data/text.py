"""Language-modelling data for the GPT-2 zoos: an embedded corpus, and nanoGPT-style OpenWebText.

A :class:`TextData` holds both splits of one token stream cut into non-overlapping blocks of
``block_size`` tokens: row ``i`` of ``x`` is ``tokens[i*T : i*T+T]`` and row ``i`` of ``y`` is the
same window shifted by one token, ``tokens[i*T+1 : i*T+T+1]`` (the next-token targets); a partial
last block is dropped. Both are views of one flat token tensor, so they cost no extra memory.

Two datasets are built from this module (see :data:`phasezoo.data.DATASETS`):

``stdlib-text``
    Needs no files: the docstrings of the installed Python standard library
    (:func:`phasezoo.data.corpus.stdlib_docstrings`), read with :mod:`ast` (no module is imported), as UTF-8 bytes.
    Byte-level tokens (vocabulary 256), ``block_size`` 64; the first :data:`STDLIB_TEXT_BYTES`
    bytes are used, the first 90 % as train, the rest as test. The corpus is deterministic for a
    given Python installation; ``TextData.source`` records its size, sha256 and the Python version,
    because another Python version gives different text.

``openwebtext``
    nanoGPT's ``train.bin``/``val.bin`` (flat ``uint16`` GPT-2 BPE token ids, every document
    followed by the end-of-text token 50256) in ``<root>/openwebtext``, written once by
    :func:`phasezoo.data.prepare_openwebtext.prepare_openwebtext`
    (``python -m phasezoo.data.prepare_openwebtext --help``), which needs the Hugging Face hub,
    ``datasets`` and ``tiktoken`` (``pip install 'phasezoo[text]'``). Loading maps the files into
    memory (:func:`load_openwebtext`): nothing is read until a batch is indexed.

Token tensors are integer tensors: ``int64`` for ``stdlib-text``; ``uint16`` views of the memory
map for ``openwebtext``. torch supports ``uint16`` only partly: indexing (``x[idx]``) and
conversion (``.long()``) work, arithmetic and comparisons do not, so convert each *batch* with
``.long()`` before it reaches an embedding or a loss.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phasezoo.errors import CorruptFileError, PhaseZooError

from .vision import TensorSplits, not_found, one_line

from .corpus import corpus_info, stdlib_dir, stdlib_docstrings

# --------------------------------------------------------------------------- the in-memory form


@dataclass(frozen=True)
class TextData(TensorSplits):
    """Both splits of one next-token-prediction dataset, as (N, block_size) integer tensors.

    ``train_x[i]`` is the ``i``-th block of ``block_size`` tokens of the train stream and
    ``train_y[i]`` the same block shifted one token on (so ``train_y[i, -1] == train_x[i+1, 0]``);
    likewise for ``test_*``. ``vocab_size`` bounds every token id. ``source`` is metadata about
    where the tokens came from (sizes, checksums, versions: JSON-able). ``max_eval`` is how many
    blocks of each split the per-epoch evaluation uses (a fixed random subset,
    :func:`phasezoo.data.batches.eval_split`; ``None`` = all).

    Loaded instances are shared through an in-process cache: treat the tensors as read-only.
    Moving memory-mapped data (``openwebtext``: about 9 GB for x and y) off the CPU with ``to``
    copies the whole stream into device memory.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    vocab_size: int
    block_size: int
    source: dict
    max_eval: int | None = None

    @property
    def num_classes(self) -> int:
        """The number of possible targets of one prediction: the vocabulary size."""
        return self.vocab_size


def _blocks(tokens: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) views of a flat token tensor: non-overlapping blocks, y shifted by one token."""
    n = max(int(tokens.shape[0]) - 1, 0) // block_size
    x = tokens[: n * block_size].view(n, block_size)
    y = tokens[1 : n * block_size + 1].view(n, block_size)
    return x, y


# --------------------------------------------------------------------------- stdlib-text

#: Bytes of the embedded corpus used by ``stdlib-text`` (256 KiB: a 2-layer model of width 64
#: takes ~23 ms a step of 16 x 64 tokens on one CPU thread, so an epoch over 1 MiB would cost
#: minutes per member). The whole corpus is larger:
#: with CPython 3.11.7 on Linux it is 1,646,688 bytes (7,683 docstrings from 601 files, sha256
#: c60ef28882defd0d6d7d69bdd91c1c79b9faf1c2851e136d3dc687ab8745f2fc), built in about 6 s (mostly
#: ``ast.parse`` of 11 MB of source). Fixing the size makes the dataset the same size on every
#: Python whose corpus is large enough; its bytes still follow the installed docstrings.
STDLIB_TEXT_BYTES = 2**18
STDLIB_TEXT_BLOCK = 64
#: blocks of each split used by the per-epoch evaluation and the mode-connectivity curves (a
#: fixed subset of the 3686 train blocks; all 409 test blocks): evaluating every train block
#: five times per curve would cost more than training the curve
STDLIB_TEXT_MAX_EVAL = 1024
STDLIB_TEXT_VOCAB = 256
#: Fraction of the used bytes that forms the train split (the rest is the test split).
STDLIB_TEXT_TRAIN_FRACTION = 0.9


def load_stdlib_text() -> TextData:
    """``stdlib-text``: byte-level blocks of the first :data:`STDLIB_TEXT_BYTES` corpus bytes.

    The used bytes are split at byte ``int(0.9 * STDLIB_TEXT_BYTES)`` into train and test
    *before* either is cut into blocks, so no block straddles the two. Tokens are ``int64``.
    A corpus shorter than ``STDLIB_TEXT_BYTES`` (an unusually stripped Python installation)
    raises :class:`PhaseZooError`.
    """
    corpus = stdlib_docstrings()
    if len(corpus) < STDLIB_TEXT_BYTES:
        raise PhaseZooError(
            f"dataset 'stdlib-text': the standard library docstrings of this Python "
            f"({platform.python_version()}, {stdlib_dir()}) total {len(corpus)} bytes, fewer than "
            f"the {STDLIB_TEXT_BYTES} the dataset needs; use a full Python installation"
        )
    used = corpus[:STDLIB_TEXT_BYTES]
    cut = int(STDLIB_TEXT_TRAIN_FRACTION * STDLIB_TEXT_BYTES)
    tokens = torch.frombuffer(bytearray(used), dtype=torch.uint8).to(torch.int64)
    train_x, train_y = _blocks(tokens[:cut], STDLIB_TEXT_BLOCK)
    test_x, test_y = _blocks(tokens[cut:], STDLIB_TEXT_BLOCK)
    source = {
        "corpus": corpus_info(corpus),
        "used_bytes": len(used),
        "used_sha256": hashlib.sha256(used).hexdigest(),
        "train_bytes": cut,
        "test_bytes": len(used) - cut,
        "tokenizer": "bytes",
    }
    return TextData(
        name="stdlib-text",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        vocab_size=STDLIB_TEXT_VOCAB,
        block_size=STDLIB_TEXT_BLOCK,
        source=source,
        max_eval=STDLIB_TEXT_MAX_EVAL,
    )


# --------------------------------------------------------------------------- openwebtext

#: nanoGPT's GPT-2 vocabulary (50257 ids) padded to a multiple of 64, the model's output size.
OWT_VOCAB = 50304
OWT_BLOCK = 1024
#: Train tokens used: the paper trains on 2.29B tokens (Chinchilla-optimal for its model size).
OWT_TRAIN_TOKENS = 2_290_000_000
#: Blocks of each split evaluated per epoch (nanoGPT likewise estimates losses on a few batches).
OWT_MAX_EVAL = 200
GPT2_EOT = 50256
_OWT_FILES = ("train.bin", "val.bin")
_META = "meta.json"
_INSTALL_HINT = "pip install 'phasezoo[text]'"
_PREPARE_HINT = (
    "no automatic download; prepare it once (needs the Hugging Face hub and "
    f"{_INSTALL_HINT}) with: python -m phasezoo.data.prepare_openwebtext --data-dir <root> "
    "(or phasezoo.data.prepare_openwebtext.prepare_openwebtext(<root>/openwebtext))"
)


def _read_meta(folder: Path) -> dict | None:
    path = folder / _META
    if not path.is_file():
        return None  # files from nanoGPT itself have no meta.json: accepted, not cross-checked
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise CorruptFileError(
            one_line(f"dataset 'openwebtext': cannot read {path} ({exc})")
        ) from exc
    return meta


def _map_tokens(path: Path, expected: Any) -> np.ndarray:
    """A copy-on-write memory map of a flat uint16 token file, after size checks."""
    size = path.stat().st_size
    if size == 0 or size % 2:
        raise CorruptFileError(
            f"dataset 'openwebtext': {path} has {size} bytes, expected a non-empty flat uint16 "
            "array (an even byte count); re-run the preparation"
        )
    if isinstance(expected, int) and size != 2 * expected:
        raise CorruptFileError(
            f"dataset 'openwebtext': {path} has {size // 2} tokens but {_META} records {expected} "
            "(truncated or replaced file); re-run the preparation"
        )
    # mode "c" (copy-on-write) rather than "r": the file is never written either way, but a
    # writable array gives torch a tensor without its non-writable warning, and an accidental
    # in-place write changes private memory instead of crashing on a read-only page.
    return np.memmap(path, dtype=np.uint16, mode="c")


def load_openwebtext(
    folder: str | Path, *, block_size: int = OWT_BLOCK, max_train_tokens: int = OWT_TRAIN_TOKENS
) -> TextData:
    """``openwebtext`` from ``folder`` (``<root>/openwebtext``): memory-mapped train/val.bin.

    At most ``max_train_tokens`` train tokens are used (the paper's 2.29B), the whole val split
    as test. ``x``/``y`` are ``uint16`` (N, block_size) views of the memory maps: nothing is copied
    or read until indexed (index a batch, then ``.long()`` it). ``vocab_size`` is 50304, nanoGPT's
    padded GPT-2 vocabulary; ``max_eval`` is 200 blocks. Missing files ->
    :class:`DatasetNotFoundError` (saying how to prepare them); an empty, odd-sized or truncated
    file (against ``meta.json`` when present), or a split shorter than one block ->
    :class:`CorruptFileError`.
    """
    folder = Path(folder).expanduser().absolute()
    missing = [f for f in _OWT_FILES if not (folder / f).is_file()]
    if missing:
        raise not_found(
            "openwebtext",
            folder,
            "train.bin and val.bin (flat uint16 GPT-2 token ids, as nanoGPT's "
            f"data/openwebtext/prepare.py writes them; missing: {', '.join(missing)})",
            reason=_PREPARE_HINT,
        )
    meta = _read_meta(folder) or {}
    if int(meta.get("vocab_size", 0) or 0) > OWT_VOCAB:
        raise CorruptFileError(
            f"dataset 'openwebtext': {folder / _META} records a {meta['vocab_size']}-token "
            f"vocabulary, more than the model's {OWT_VOCAB}"
        )
    splits = {}
    for split, fname in (("train", "train.bin"), ("test", "val.bin")):
        arr = _map_tokens(folder / fname, meta.get(f"{fname[:-4]}_tokens"))
        if split == "train":
            arr = arr[:max_train_tokens]
        n = (arr.shape[0] - 1) // block_size
        if n < 1:
            raise CorruptFileError(
                f"dataset 'openwebtext': {folder / fname} has {arr.shape[0]} tokens, fewer than "
                f"one block of {block_size} plus its shifted target"
            )
        x = torch.from_numpy(arr[: n * block_size].reshape(n, block_size))
        y = torch.from_numpy(arr[1 : n * block_size + 1].reshape(n, block_size))
        splits[split] = (x, y, int(arr.shape[0]))
    source = {
        "folder": str(folder),
        "train_tokens_used": splits["train"][2],
        "val_tokens": splits["test"][2],
        "meta": meta,
        "tokenizer": meta.get("tokenizer", "tiktoken-gpt2"),
    }
    return TextData(
        name="openwebtext",
        train_x=splits["train"][0],
        train_y=splits["train"][1],
        test_x=splits["test"][0],
        test_y=splits["test"][1],
        vocab_size=OWT_VOCAB,
        block_size=block_size,
        source=source,
        max_eval=OWT_MAX_EVAL,
    )
