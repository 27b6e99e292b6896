"""Language-modelling data for the GPT-2 zoos: an embedded corpus, and nanoGPT-style OpenWebText.

A :class:`TextData` holds both splits of one token stream cut into non-overlapping blocks of
``block_size`` tokens: row ``i`` of ``x`` is ``tokens[i*T : i*T+T]`` and row ``i`` of ``y`` is the
same window shifted by one token, ``tokens[i*T+1 : i*T+T+1]`` (the next-token targets); a partial
last block is dropped. Both are views of one flat token tensor, so they cost no extra memory.

Two datasets are built from this module (see :data:`phasezoo.data.DATASETS`):

``stdlib-text``
    Needs no files: the docstrings of the installed Python standard library
    (:func:`stdlib_docstrings`), read with :mod:`ast` (no module is imported), as UTF-8 bytes.
    Byte-level tokens (vocabulary 256), ``block_size`` 64; the first :data:`STDLIB_TEXT_BYTES`
    bytes are used, the first 90 % as train, the rest as test. The corpus is deterministic for a
    given Python installation; ``TextData.source`` records its size, sha256 and the Python version,
    because another Python version gives different text.

``openwebtext``
    nanoGPT's ``train.bin``/``val.bin`` (flat ``uint16`` GPT-2 BPE token ids, every document
    followed by the end-of-text token 50256) in ``<root>/openwebtext``, written once by
    :func:`prepare_openwebtext` (``python -m phasezoo.data.text --help``), which needs the Hugging
    Face hub, ``datasets`` and ``tiktoken`` (``pip install 'phasezoo[text]'``). Loading maps the
    files into memory (:func:`load_openwebtext`): nothing is read until a batch is indexed.

Token tensors are integer tensors: ``int64`` for ``stdlib-text``; ``uint16`` views of the memory
map for ``openwebtext``. torch supports ``uint16`` only partly: indexing (``x[idx]``) and
conversion (``.long()``) work, arithmetic and comparisons do not, so convert each *batch* with
``.long()`` before it reaches an embedding or a loss.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import sys
import sysconfig
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phasezoo.errors import CorruptFileError, PhaseZooError

from .vision import TensorSplits, not_found, one_line

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


# --------------------------------------------------------------------------- embedded corpus

#: Directory names never entered when collecting standard-library docstrings: third-party
#: packages, the test suites (their docstrings are mostly test descriptions, and lib2to3's test
#: data holds deliberately broken files), IDLE, and byte-code caches.
_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "idle_test", "lib2to3",
     "__pycache__"}
)
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
# Nodes that can contain a class or function definition: statements and the two non-statement
# nodes with statement bodies. Expressions cannot (a lambda has no docstring).
_STATEMENT_NODES = (ast.Module, ast.stmt, ast.excepthandler, ast.match_case)


@dataclass(frozen=True)
class _Corpus:
    data: bytes
    files: int  # .py files whose docstrings were collected (those that parsed)
    skipped: int  # .py files that failed to parse or decode
    docstrings: int
    stdlib_dir: str


_corpus: _Corpus | None = None
_corpus_lock = threading.Lock()


def _stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files(root: Path) -> list[Path]:
    """Every ``*.py`` file below ``root`` outside :data:`_SKIP_DIRS`, sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked directories are not followed
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        found.extend(Path(dirpath, f) for f in filenames if f.endswith(".py"))
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _walk_statements(tree: ast.AST) -> Iterator[ast.AST]:
    """The statement-level nodes of ``tree`` in exactly the order ``ast.walk`` yields them.

    ``ast.walk`` is breadth-first over ``ast.iter_child_nodes``; pruning the expression subtrees
    (which hold no definitions) keeps every definition's depth and the relative order within each
    level, so the definitions come out in ``ast.walk`` order at a fifth of the cost. Statement
    children only ever sit in list fields (``body``, ``orelse``, ``handlers``, ``cases``, ...).
    """
    todo = deque([tree])
    while todo:
        node = todo.popleft()
        yield node
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                todo.extend(child for child in value if isinstance(child, _STATEMENT_NODES))


def _file_docstrings(path: Path) -> list[str] | None:
    """Docstrings of the module and each class/function in ``ast.walk`` order; None: unparsable."""
    try:
        source = path.read_bytes()
        with warnings.catch_warnings():  # invalid escape sequences etc. in old modules
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=str(path))  # bytes: honours PEP 263 coding cookies
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        return None
    docs = []
    for node in _walk_statements(tree):
        if isinstance(node, _DOC_NODES):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                docs.append(doc)
    return docs


def _build_corpus() -> _Corpus:
    root = _stdlib_dir()
    docs: list[str] = []
    files = skipped = 0
    for path in _stdlib_files(root):
        found = _file_docstrings(path)
        if found is None:
            skipped += 1
            continue
        files += 1
        docs.extend(found)
    # backslashreplace: a docstring may hold a lone surrogate ("\ud800"), which UTF-8 cannot encode.
    data = "\n\n".join(docs).encode("utf-8", errors="backslashreplace")
    return _Corpus(data, files, skipped, len(docs), str(root))


def _get_corpus() -> _Corpus:
    global _corpus
    with _corpus_lock:
        if _corpus is None:
            _corpus = _build_corpus()
        return _corpus


def stdlib_docstrings() -> bytes:
    """The embedded language corpus: the installed standard library's docstrings, as UTF-8.

    Walks ``sysconfig.get_paths()["stdlib"]`` (not ``site-packages``/``dist-packages``, the test
    suites, ``idlelib`` or ``lib2to3``), parses each ``*.py`` file in sorted path order with
    :mod:`ast` (files that fail to decode or parse are skipped; nothing is imported), collects
    ``ast.get_docstring(node, clean=True)`` of the module and of every class, function and async
    function in ``ast.walk`` order, and joins them with blank lines (``"\\n\\n"``). The result is
    deterministic for one Python installation and cached in-process
    (:func:`clear_corpus_cache` forgets it).
    """
    return _get_corpus().data


def clear_corpus_cache() -> None:
    """Forget the cached corpus, so the next :func:`stdlib_docstrings` rebuilds it."""
    global _corpus
    with _corpus_lock:
        _corpus = None


def corpus_info(data: bytes | None = None) -> dict:
    """Metadata identifying a corpus: size in bytes, sha256 (hex), Python version and build.

    ``data`` defaults to :func:`stdlib_docstrings`. When ``data`` is the embedded corpus, the
    number of source files it was collected from (``files``; ``skipped_files`` did not parse), of
    docstrings and the standard-library directory are included too.
    """
    corpus = _get_corpus() if data is None else _corpus
    if data is None:
        data = corpus.data
    info: dict[str, Any] = {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
    }
    if corpus is not None and (corpus.data is data or corpus.data == data):
        info.update(
            files=corpus.files,
            skipped_files=corpus.skipped,
            docstrings=corpus.docstrings,
            stdlib_dir=corpus.stdlib_dir,
        )
    return info


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
            f"({platform.python_version()}, {_stdlib_dir()}) total {len(corpus)} bytes, fewer than "
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
    f"{_INSTALL_HINT}) with: python -m phasezoo.data.text --data-dir <root> "
    "(or phasezoo.data.text.prepare_openwebtext(<root>/openwebtext))"
)


@dataclass(frozen=True)
class Encoder:
    """A tokeniser for :func:`prepare_openwebtext`: ``encode(text) -> ids`` and the end-of-text id.

    ``encode`` must not add special tokens itself (the end-of-text id is appended by the
    preparation after every document) and must be picklable for ``num_proc > 1``.
    ``vocab_size`` bounds every id (``encode``'s and ``eot``); it must be at most 65536 so ids fit
    the ``uint16`` files, and at most 50304 for the files to load as ``openwebtext``.
    """

    name: str
    encode: Callable[[str], Sequence[int]]
    eot: int
    vocab_size: int


def _import_optional(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PhaseZooError(
            f"the '{module}' package is needed to prepare text datasets: {_INSTALL_HINT} ({exc})"
        ) from exc


def _require_scriptless_datasets(datasets: Any) -> None:
    """Refuse a ``datasets`` older than 4.0: those can run a dataset's Python loading script.

    A hub dataset (or a local folder) may come with a loading script, which ``datasets`` < 4.0
    executes: unasked before 2.16, and from 2.16 on whenever ``trust_remote_code`` resolves true
    (``HF_DATASETS_TRUST_REMOTE_CODE``, true by default in 2.x); 2.x also re-imports a script
    it finds in its modules cache from an earlier load without asking again. Passing
    ``trust_remote_code=False`` therefore does not close this on old versions. ``datasets`` 4.0
    removed loading scripts (it refuses them), so no code from the hub or a data folder runs.
    """
    version = str(getattr(datasets, "__version__", "unknown"))
    head = version.split(".")[0]
    if not (head.isdigit() and int(head) >= 4):
        raise PhaseZooError(
            f"datasets {version} can run a dataset's loading script (code from the hub or a data "
            "folder); install datasets 4.0 or newer, which never does: pip install -U 'datasets>=4'"
        )


def gpt2_encoder() -> Encoder:
    """GPT-2's BPE via ``tiktoken.get_encoding("gpt2").encode_ordinary``; end-of-text 50256.

    tiktoken fetches its BPE files on first use (then caches them), so this needs the network once.
    """
    tiktoken = _import_optional("tiktoken")
    try:
        enc = tiktoken.get_encoding("gpt2")
    except Exception as exc:  # tiktoken raises plain requests/OS errors when it cannot fetch
        raise PhaseZooError(
            one_line(f"cannot load tiktoken's 'gpt2' encoding (its files are fetched on first use; "
                     f"is the network reachable?): {type(exc).__name__}: {exc}")
        ) from exc
    return Encoder("tiktoken-gpt2", enc.encode_ordinary, int(enc.eot_token), int(enc.n_vocab))


def _utf8_bytes(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def byte_encoder() -> Encoder:
    """UTF-8 bytes as token ids (0..255) and end-of-text 256: offline, for tests and small runs."""
    return Encoder("utf8-bytes", _utf8_bytes, 256, 257)


def _tokenise(example: dict, encoder: Encoder) -> dict:
    ids = list(encoder.encode(example["text"]))
    ids.append(encoder.eot)
    arr = np.asarray(ids, dtype=np.int64)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= min(encoder.vocab_size, 2**16)):
        raise PhaseZooError(
            f"encoder '{encoder.name}' produced token ids outside [0, {encoder.vocab_size}) "
            "or beyond uint16"
        )
    return {"ids": arr.astype(np.uint16), "len": int(arr.size)}


def _write_tokens(split: Any, path: Path) -> int:
    """Concatenate the ``ids`` column of ``split`` into ``path`` + ``.tmp`` (flat uint16).

    Returns the token count; the caller renames the file once every split is written, so an
    interrupted run leaves no partial file under the real name.
    """
    total = int(np.sum(split["len"], dtype=np.int64)) if len(split) else 0
    if total == 0:
        raise PhaseZooError(f"no tokens to write to {path}: the split is empty")
    tmp = path.with_name(path.name + ".tmp")
    arr = np.memmap(tmp, dtype=np.uint16, mode="w+", shape=(total,))
    pos = 0
    numpy_split = split.select_columns(["ids"]).with_format("numpy")
    for batch in numpy_split.iter(batch_size=1024):
        chunk = np.concatenate([np.asarray(row, dtype=np.uint16) for row in batch["ids"]])
        arr[pos : pos + chunk.size] = chunk
        pos += chunk.size
    if pos != total:
        raise PhaseZooError(f"token count mismatch writing {path}: {pos} written, {total} expected")
    arr.flush()
    del arr
    return total


def prepare_openwebtext(
    out_dir: str | Path,
    *,
    source: str = "openwebtext",
    data_files: str | Sequence[str] | None = None,
    encode: Encoder | None = None,
    num_proc: int = 1,
    test_size: float = 0.0005,
    seed: int = 2357,
    sample_by: str = "document",
    cache_dir: str | Path | None = None,
) -> dict:
    """Tokenise OpenWebText into ``out_dir/train.bin`` and ``out_dir/val.bin``, as nanoGPT does.

    Steps (those of nanoGPT's ``data/openwebtext/prepare.py``): ``datasets.load_dataset(source)``
    (the Hugging Face hub's ``openwebtext``, ~8M documents, ~54 GB of cache), or, when
    ``data_files`` is given, ``load_dataset("text", data_files=...)`` on local text files (one
    document per file with ``sample_by="document"``, per line with ``"line"``); a shuffled
    ``train_test_split(test_size, seed)`` whose ``test`` part becomes ``val``; every document
    tokenised by ``encode`` (default :func:`gpt2_encoder`, GPT-2 BPE through tiktoken) followed by
    the end-of-text id; each split written as one flat ``uint16`` array through ``np.memmap``
    (to a temporary name, then renamed). ``meta.json`` (token counts, tokeniser, split
    parameters) is written last. ``num_proc`` processes load and tokenise; ``cache_dir`` is the
    Hugging Face datasets cache (default: theirs). Returns the metadata written to ``meta.json``.
    Missing ``datasets``/``tiktoken`` -> :class:`PhaseZooError` naming the install command.
    No dataset loading script is ever run: ``datasets`` older than 4.0 (which can run them) is
    refused with a :class:`PhaseZooError`, and 4.0+ refuses datasets that need one.
    """
    datasets = _import_optional("datasets")
    _require_scriptless_datasets(datasets)  # no loading script (code) from the hub ever runs
    encoder = encode if encode is not None else gpt2_encoder()
    if encoder.vocab_size > 2**16:
        raise PhaseZooError(
            f"encoder '{encoder.name}' has {encoder.vocab_size} ids, more than uint16 holds"
        )
    out = Path(out_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    procs = num_proc if num_proc > 1 else None
    kwargs: dict[str, Any] = {"num_proc": procs}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    files = None
    if data_files is not None:
        many = not isinstance(data_files, (str, Path))
        files = [str(f) for f in data_files] if many else [str(data_files)]
    try:
        if files is not None:
            dataset = datasets.load_dataset(
                "text", data_files={"train": files}, sample_by=sample_by, **kwargs
            )
        else:
            dataset = datasets.load_dataset(source, **kwargs)
    except Exception as exc:  # hub/network/file errors of any kind: report them on one line
        what = f"{len(files)} local text file(s) ({files[0]}, ...)" if files else f"'{source}'"
        raise PhaseZooError(
            one_line(f"cannot load {what} with datasets: {type(exc).__name__}: {exc}")
        ) from exc

    split = dataset["train"].train_test_split(test_size=test_size, seed=seed, shuffle=True)
    split["val"] = split.pop("test")
    tokenised = split.map(
        _tokenise,
        fn_kwargs={"encoder": encoder},
        remove_columns=["text"],
        desc="tokenising",
        num_proc=procs,
    )
    counts = {name: _write_tokens(tokenised[name], out / f"{name}.bin")
              for name in ("train", "val")}
    # Publish together: the old meta.json goes first, the new one (written last) vouches for the
    # pair, so files of two different runs never pass its size check.
    (out / _META).unlink(missing_ok=True)
    for name in ("train", "val"):
        os.replace(out / f"{name}.bin.tmp", out / f"{name}.bin")
    meta = {
        "source": source if data_files is None else "text files",
        "tokenizer": encoder.name,
        "eot": encoder.eot,
        "vocab_size": encoder.vocab_size,
        "dtype": "uint16",
        "train_tokens": counts["train"],
        "val_tokens": counts["val"],
        "train_documents": len(split["train"]),
        "val_documents": len(split["val"]),
        "test_size": test_size,
        "seed": seed,
        "datasets_version": getattr(datasets, "__version__", "unknown"),
    }
    tmp = out / (_META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, out / _META)
    return meta


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


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m phasezoo.data.text``: :func:`prepare_openwebtext` into ``<root>/openwebtext``."""
    from .base import resolve_data_dir

    parser = argparse.ArgumentParser(
        prog="python -m phasezoo.data.text",
        description="Tokenise OpenWebText (GPT-2 BPE) into <root>/openwebtext/{train,val}.bin, "
        f"as nanoGPT does. Needs the Hugging Face hub and {_INSTALL_HINT}.",
    )
    parser.add_argument(
        "--data-dir", help="data root (default: $PHASEZOO_DATA or ~/.cache/phasezoo/datasets)"
    )
    parser.add_argument("--source", default="openwebtext", help="Hugging Face dataset name")
    parser.add_argument("--data-files", nargs="+", help="local text files instead of --source")
    parser.add_argument("--num-proc", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument(
        "--cache-dir", help="Hugging Face datasets cache (OpenWebText needs ~54 GB there)"
    )
    args = parser.parse_args(argv)
    out = resolve_data_dir(args.data_dir) / "openwebtext"
    try:
        meta = prepare_openwebtext(
            out, source=args.source, data_files=args.data_files, num_proc=args.num_proc,
            cache_dir=args.cache_dir,
        )
    except PhaseZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {meta['train_tokens']} train and {meta['val_tokens']} val tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
