"""The embedded text corpus of the ``stdlib-text`` zoo: the docstrings of the installed Python
standard library, read with :mod:`ast` (no module is imported), as UTF-8 bytes.

Deterministic for a given Python installation; :func:`corpus_info` gives its size, sha256 and
the Python version, which every loaded dataset records (another Python gives other text).
"""

from __future__ import annotations

import ast
import hashlib
import os
import platform
import sys
import sysconfig
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any




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


def stdlib_dir() -> Path:
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
    root = stdlib_dir()
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
