"""Prepare OpenWebText as nanoGPT does, once, on a machine with network access:
``python -m phasezoo.data.prepare_openwebtext --data-dir <root>`` tokenises it with the GPT-2
BPE (tiktoken) into ``<root>/openwebtext/{train,val}.bin`` (flat ``uint16`` token ids, every
document followed by the end-of-text token) and ``meta.json``, which
:func:`phasezoo.data.text.load_openwebtext` then maps into memory. Needs the Hugging Face hub,
``datasets`` and ``tiktoken`` (``pip install 'phasezoo[text]'``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phasezoo.errors import PhaseZooError

from .base import resolve_data_dir
from .vision import one_line

from .text import _INSTALL_HINT, _META


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


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m phasezoo.data.prepare_openwebtext``: :func:`prepare_openwebtext` into ``<root>/openwebtext``."""
    parser = argparse.ArgumentParser(
        prog="python -m phasezoo.data.prepare_openwebtext",
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
