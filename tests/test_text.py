"""Text datasets: the embedded stdlib-docstring corpus, and OpenWebText as nanoGPT prepares it.

No network: OpenWebText's preparation runs end to end through ``datasets.load_dataset("text")`` on
a few documents written to ``tmp_path``, with an injected byte-level encoder (or a stand-in
``tiktoken`` module) instead of GPT-2's BPE, whose files tiktoken would have to download.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import sysconfig
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from phasezoo.data import DATASETS, corpus, load_dataset, prepare_openwebtext as prepare, text
from phasezoo.data.corpus import clear_corpus_cache, corpus_info, stdlib_docstrings
from phasezoo.data.prepare_openwebtext import byte_encoder, prepare_openwebtext
from phasezoo.data.text import STDLIB_TEXT_BYTES, TextData, load_openwebtext
from phasezoo.errors import CorruptFileError, DatasetNotFoundError, PhaseZooError

DOCS = [
    "The first document.\nIt has two lines.",
    "Zweites Dokument: Grüße, naïve café — ünïcödé.",
    "third",
    "A fourth, somewhat longer document, so that the train stream holds a few blocks of tokens.",
    "5",
    "The sixth and last document\n\nwith a blank line inside it.",
]


def assert_shifted(x: torch.Tensor, y: torch.Tensor) -> None:
    """y is x shifted one token on, across block boundaries of the flattened stream."""
    x, y = x.long(), y.long()
    assert x.shape == y.shape
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y[:-1, -1], x[1:, 0])


# --------------------------------------------------------------------------- embedded corpus


def test_corpus_is_deterministic_and_holds_stdlib_docstrings():
    first = stdlib_docstrings()
    info = corpus_info()
    clear_corpus_cache()
    second = stdlib_docstrings()
    assert second == first and second is not first  # really rebuilt, same bytes
    assert corpus_info(second)["sha256"] == info["sha256"] == hashlib.sha256(first).hexdigest()
    assert info["bytes"] == len(first) > STDLIB_TEXT_BYTES
    assert info["files"] > 100 and info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert stdlib_docstrings() is second  # cached in-process

    json_init = Path(sysconfig.get_paths()["stdlib"]) / "json" / "__init__.py"
    doc = ast.get_docstring(ast.parse(json_init.read_bytes()), clean=True)
    assert doc.splitlines()[0].encode() in first
    first.decode("utf-8")  # valid UTF-8 throughout


NESTED = '''
"module"
if x:
    def a(): "a"
    class B:
        "B"
        def m(self): "m"
try:
    async def c(): "c"
except ImportError:
    def d():
        "d"
        def inner(): "inner"
        return lambda: 0
else:
    with x:
        for i in x:
            def e(): "e"
match x:
    case 1:
        class F: "F"
@deco(lambda: 1)
def g(): "g"
'''


def test_definitions_come_in_ast_walk_order():
    tree = ast.parse(NESTED)
    walked = [n for n in ast.walk(tree) if isinstance(n, corpus._DOC_NODES)]
    assert [n for n in corpus._walk_statements(tree) if isinstance(n, corpus._DOC_NODES)] == walked
    assert len(walked) == 10  # the module and all nine definitions


def test_stdlib_text_dataset():
    data = load_dataset("stdlib-text")
    info = DATASETS["stdlib-text"]
    assert isinstance(data, TextData) and info.kind == "text"
    assert (data.num_train, data.num_test) == (info.num_train, info.num_test) == (3686, 409)
    assert data.vocab_size == data.num_classes == info.num_classes == 256
    assert data.block_size == info.block_size == 64 and data.max_eval == 1024
    splits = ((data.train_x, data.train_y, data.num_train),
              (data.test_x, data.test_y, data.num_test))
    for x, y, n in splits:
        assert x.shape == y.shape == (n, 64) and x.dtype == y.dtype == torch.int64
        assert int(x.min()) >= 0 and int(x.max()) < 256 and int(y.max()) < 256
        assert_shifted(x, y)

    # The streams are the corpus bytes: train from byte 0, test from the 90 % cut.
    used = stdlib_docstrings()[:STDLIB_TEXT_BYTES]
    cut = int(0.9 * STDLIB_TEXT_BYTES)
    assert bytes(data.train_x.reshape(-1).to(torch.uint8).tolist()) == used[: 3686 * 64]
    test_stream = bytes(data.test_y.reshape(-1).to(torch.uint8).tolist())
    assert test_stream == used[cut + 1 : cut + 1 + 409 * 64]
    assert data.source["used_sha256"] == hashlib.sha256(used).hexdigest()
    assert data.source["corpus"]["sha256"] == corpus_info()["sha256"]
    json.dumps(data.source)  # plain metadata
    assert load_dataset("stdlib-text") is data
    assert data.to("cpu").train_x is data.train_x


def test_stdlib_text_needs_enough_corpus(monkeypatch):
    monkeypatch.setattr(text, "stdlib_docstrings", lambda: b"too short")
    with pytest.raises(PhaseZooError) as err:
        text.load_stdlib_text()
    assert "\n" not in str(err.value) and str(STDLIB_TEXT_BYTES) in str(err.value)


# --------------------------------------------------------------------------- openwebtext


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """Hugging Face libraries must not try the network, nor write to ~/.cache (set before their
    import, and after it for an already imported ``datasets``)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-home" / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    return datasets


def write_docs(folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    paths = []
    for i, doc in enumerate(DOCS):
        path = folder / f"doc{i}.txt"
        path.write_text(doc, encoding="utf-8")
        paths.append(str(path))
    return paths


def decode_documents(path: Path, eot: int) -> list[str]:
    tokens = np.fromfile(path, dtype=np.uint16)
    assert tokens.size and tokens[-1] == eot  # every document ends with the end-of-text token
    ends = np.flatnonzero(tokens == eot)
    starts = np.concatenate([[0], ends[:-1] + 1])
    pieces = (tokens[s:e].astype(np.uint8) for s, e in zip(starts, ends, strict=True))
    return [bytes(piece).decode("utf-8") for piece in pieces]


def test_prepare_and_load_openwebtext(tmp_path, hf_offline):
    files = write_docs(tmp_path / "docs")
    out = tmp_path / "openwebtext"
    meta = prepare_openwebtext(out, data_files=files, encode=byte_encoder(), test_size=0.25,
                               cache_dir=tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]  # no .tmp
    train_docs = decode_documents(out / "train.bin", 256)
    val_docs = decode_documents(out / "val.bin", 256)
    assert len(val_docs) == 2 and len(train_docs) == 4  # ceil(0.25 * 6) documents held out
    assert sorted(train_docs + val_docs) == sorted(DOCS)
    assert meta == json.loads((out / "meta.json").read_text())
    assert meta["train_tokens"] == (out / "train.bin").stat().st_size // 2
    assert meta["val_tokens"] == sum(len(d.encode()) + 1 for d in val_docs)

    # The same seed gives the same split; the tokens read back are the files' contents.
    data = load_openwebtext(out, block_size=8)
    stream = np.fromfile(out / "train.bin", dtype=np.uint16)
    n = (stream.size - 1) // 8
    assert data.train_x.shape == data.train_y.shape == (n, 8) and data.train_x.dtype == torch.uint16
    assert data.test_x.shape == ((meta["val_tokens"] - 1) // 8, 8)
    assert np.array_equal(data.train_x.reshape(-1).numpy(), stream[: n * 8])
    assert_shifted(data.train_x, data.train_y)
    assert_shifted(data.test_x, data.test_y)
    assert (data.vocab_size, data.block_size, data.max_eval) == (50304, 8, 200)

    # Views of one memory map, not copies: x and y overlap, y starts one uint16 later.
    xs, ys = data.train_x.numpy(), data.train_y.numpy()
    assert np.shares_memory(xs, ys) and data.train_y.data_ptr() == data.train_x.data_ptr() + 2
    assert data.train_x[torch.tensor([0, n - 1])].long().shape == (2, 8)  # uint16 indexing works

    short = load_openwebtext(out, block_size=8, max_train_tokens=50)
    assert short.num_train == (50 - 1) // 8 and short.source["train_tokens_used"] == 50

    # Preparing again (same seed) replaces the files with identical ones.
    before = (out / "train.bin").read_bytes(), (out / "val.bin").read_bytes()
    del data, short, xs, ys
    assert prepare_openwebtext(out, data_files=files, encode=byte_encoder(), test_size=0.25,
                               cache_dir=tmp_path / "hf") == meta
    assert ((out / "train.bin").read_bytes(), (out / "val.bin").read_bytes()) == before
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]


def test_prepare_defaults_to_tiktoken_gpt2(tmp_path, hf_offline, monkeypatch, capsys):
    """The default encoder is tiktoken's gpt2 ``encode_ordinary`` + its eot (a stand-in module here,
    since the real one downloads its BPE files), reached through the command line."""
    calls = []

    class FakeEncoding:
        eot_token, n_vocab = 50256, 50257

        def encode_ordinary(self, s):
            return [ord(c) for c in s]

    def get_encoding(name):
        calls.append(name)
        return FakeEncoding()

    fake = types.ModuleType("tiktoken")
    fake.Encoding, fake.get_encoding = FakeEncoding, get_encoding  # datasets looks for .Encoding
    monkeypatch.setitem(sys.modules, "tiktoken", fake)
    files = write_docs(tmp_path / "docs")
    rc = prepare.main(["--data-dir", str(tmp_path / "root"), "--data-files", *files, "--num-proc", "1",
                    "--cache-dir", str(tmp_path / "hf")])
    assert rc == 0 and calls == ["gpt2"]
    out = tmp_path / "root" / "openwebtext"
    assert "wrote" in capsys.readouterr().out
    tokens = np.concatenate([np.fromfile(out / f, np.uint16) for f in ("train.bin", "val.bin")])
    assert (tokens == 50256).sum() == len(DOCS)
    assert json.loads((out / "meta.json").read_text())["tokenizer"] == "tiktoken-gpt2"


def test_optional_dependencies_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    for call in (lambda: prepare_openwebtext(tmp_path, encode=byte_encoder()), prepare.gpt2_encoder):
        with pytest.raises(PhaseZooError) as err:
            call()
        assert "\n" not in str(err.value) and "pip install 'phasezoo[text]'" in str(err.value)


def test_openwebtext_not_found(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_openwebtext(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg and "train.bin" in msg
    assert "python -m phasezoo.data.prepare_openwebtext" in msg

    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("openwebtext", data_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "openwebtext") in msg


def write_bins(folder: Path, train: np.ndarray, val: np.ndarray, meta: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.bin").write_bytes(train.tobytes())
    (folder / "val.bin").write_bytes(val.tobytes())
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))


def test_openwebtext_corrupt_files(tmp_path):
    tokens = np.arange(100, dtype=np.uint16)
    write_bins(tmp_path / "ok", tokens, tokens)  # nanoGPT's own files: no meta.json, accepted
    assert load_openwebtext(tmp_path / "ok", block_size=8).num_train == 12

    cases = {
        "odd": lambda f: (f / "train.bin").write_bytes(tokens.tobytes()[:-1]),
        "empty": lambda f: (f / "val.bin").write_bytes(b""),
        "truncated": lambda f: (f / "meta.json").write_text(json.dumps({"train_tokens": 200})),
        "badmeta": lambda f: (f / "meta.json").write_text("{not json"),
        "short": lambda f: (f / "val.bin").write_bytes(tokens[:8].tobytes()),  # < one block + 1
    }
    for name, damage in cases.items():
        folder = tmp_path / name
        write_bins(folder, tokens, tokens)
        damage(folder)
        with pytest.raises(CorruptFileError) as err:
            load_openwebtext(folder, block_size=8)
        assert "\n" not in str(err.value), name
