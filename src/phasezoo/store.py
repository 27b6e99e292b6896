"""The on-disk zoo format: one folder per member, every write atomic, nothing pickled.

Layout under ``ROOT/<zoo>/<profile>/`` (documented for users in ``data/README.md``)::

    zoo.json                        the zoo spec the members were planned from
    <member>/                       named from the grid coordinates, e.g. w0008_b0128_s0
      config.json                   the MemberSpec: everything needed to rebuild and retrain it
      results.jsonl                 one JSON object per epoch; line 0 is the evaluation at init
      status.json                   {"status": "running" | "done" | "diverged", "epoch": N, ...}
      checkpoints/epoch_NNNN.safetensors   model state (parameters and BatchNorm buffers)
      resume.safetensors            optimizer, scheduler and RNG state of the last finished
                                    epoch; deleted once the member is done

Every file is written to a temporary name in the same folder and renamed over the target
(``os.replace`` is atomic on POSIX), so a kill at any moment leaves either the old or the new
file, never a torn one. The per-epoch order (results, then checkpoint, then resume state) means a
rerun resumes from the last epoch whose resume state exists and drops result lines past it, so
each epoch is recorded exactly once.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from phasezoo.errors import CorruptFileError, SpecError

FORMAT_VERSION = 1
STATES = ("pending", "partial", "done", "diverged")


# ----------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(_finite(obj), indent=1) + "\n").encode())


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: store non-finite floats as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def jsonable(obj: Any) -> Any:
    """A JSON-ready copy of metric results: tensors and numpy values become numbers or lists."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # torch tensors, numpy arrays and numpy scalars
        return obj.tolist()
    return obj


def _as_json(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, NaN becomes None)."""
    return json.loads(json.dumps(_finite(obj)))


_REQUIRED = object()


def read_json(path: Path, default: Any = _REQUIRED) -> Any:
    """Parse a JSON file; a missing file returns ``default`` when one is given."""
    path = Path(path)
    if default is not _REQUIRED and not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CorruptFileError(f"corrupt JSON file: {path}") from None


# ----------------------------------------------------------------------------- tensors


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None) -> None:
    """Save tensors as safetensors (atomically); ``metadata`` values are stored as JSON strings."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {k: json.dumps(_finite(v)) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, st_save(flat, metadata=meta))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file written by :func:`save_tensors`; no pickle is involved."""
    path = Path(path)
    header = check_tensors_file(path)
    try:
        tensors = st_load(path.read_bytes())
        meta = header.get("__metadata__") or {}
        return tensors, {k: json.loads(v) for k, v in meta.items()}
    except (SafetensorError, json.JSONDecodeError, ValueError):
        raise CorruptFileError(f"corrupt checkpoint file: {path}") from None


def check_tensors_file(path: Path) -> dict:
    """Cheap integrity check that reads only the header: it must parse, and the file must have
    exactly the size the header announces (detects truncation). Returns the header."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CorruptFileError(f"corrupt checkpoint file: {path}")
            (n,) = struct.unpack("<Q", head)
            if n > 100_000_000:  # a garbage length, not a header
                raise CorruptFileError(f"corrupt checkpoint file: {path}")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        raise CorruptFileError(f"corrupt checkpoint file: {path}") from None
    if 8 + n + end != path.stat().st_size:
        raise CorruptFileError(f"corrupt checkpoint file (truncated or padded): {path}")
    return header


# ----------------------------------------------------------------------------- one member


class MemberStore:
    """The files of one zoo member (one training run)."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)

    config_path = property(lambda self: self.dir / "config.json")
    results_path = property(lambda self: self.dir / "results.jsonl")
    status_path = property(lambda self: self.dir / "status.json")
    resume_path = property(lambda self: self.dir / "resume.safetensors")
    checkpoints_dir = property(lambda self: self.dir / "checkpoints")

    def checkpoint_path(self, epoch: int) -> Path:
        return self.checkpoints_dir / f"epoch_{epoch:04d}.safetensors"

    # -- config and status
    def read_config(self) -> dict | None:
        return read_json(self.config_path, None)

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.config_path, {**config, "format_version": FORMAT_VERSION})

    def read_status(self) -> dict | None:
        return read_json(self.status_path, None)

    def write_status(self, status: str, **info: Any) -> None:
        atomic_write_json(self.status_path, {"status": status, **info})

    def state(self) -> str:
        """pending (nothing on disk), partial (started), done or diverged."""
        status = self.read_status()
        if status is not None and status.get("status") in ("done", "diverged"):
            return status["status"]
        return "partial" if self.dir.exists() and any(self.dir.iterdir()) else "pending"

    # -- results
    def read_results(self) -> list[dict]:
        if not self.results_path.exists():
            return []
        rows = []
        for i, line in enumerate(self.results_path.read_text().splitlines()):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise CorruptFileError(f"corrupt line {i + 1} in {self.results_path}") from None
        return rows

    def write_results(self, rows: Iterable[Mapping[str, Any]]) -> None:
        text = "".join(json.dumps(_finite(dict(r))) + "\n" for r in rows)
        atomic_write_bytes(self.results_path, text.encode())

    # -- checkpoints
    def checkpoint_epochs(self) -> list[int]:
        if not self.checkpoints_dir.exists():
            return []
        return sorted(int(p.stem.split("_")[1]) for p in self.checkpoints_dir.glob("epoch_*.safetensors"))

    def save_checkpoint(self, epoch: int, state_dict: Mapping[str, torch.Tensor]) -> None:
        save_tensors(self.checkpoint_path(epoch), state_dict, {"epoch": epoch})

    def load_checkpoint(self, epoch: int | str = "last") -> tuple[int, dict[str, torch.Tensor]]:
        """Model state at ``epoch`` (an int, or ``"last"`` for the latest stored checkpoint)."""
        epochs = self.checkpoint_epochs()
        if epoch == "last":
            if not epochs:
                raise CorruptFileError(f"no checkpoint in {self.checkpoints_dir}")
            epoch = epochs[-1]
        if epoch not in epochs:
            raise SpecError(
                f"{self.dir.name} has no checkpoint for epoch {epoch}; stored: "
                f"{', '.join(map(str, epochs)) or 'none'}"
            )
        tensors, _ = load_tensors(self.checkpoint_path(int(epoch)))
        return int(epoch), tensors

    # -- resume state
    def save_resume(self, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> None:
        save_tensors(self.resume_path, tensors, metadata)

    def load_resume(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        return load_tensors(self.resume_path) if self.resume_path.exists() else None

    def clear_resume(self) -> None:
        self.resume_path.unlink(missing_ok=True)

    # -- integrity
    def verify(self, expected_config: Mapping[str, Any] | None = None) -> None:
        """Raise a one-line error if any file of this member is unreadable, or if it was trained
        with another config than ``expected_config`` (the spec changed under an existing zoo)."""
        config = self.read_config()
        if expected_config is not None and config is not None:
            stored = {k: v for k, v in config.items() if k != "format_version"}
            expected = _as_json(expected_config)
            if stored != expected:
                diff = sorted(k for k in stored.keys() | expected.keys() if stored.get(k) != expected.get(k))
                raise SpecError(
                    f"{self.dir} was trained with another config ({', '.join(diff)} differ); "
                    "use another --root or remove it"
                )
        self.read_status()
        self.read_results()
        for e in self.checkpoint_epochs():
            check_tensors_file(self.checkpoint_path(e))
        if self.resume_path.exists():
            check_tensors_file(self.resume_path)


class ZooStore:
    """All members of one zoo profile under ``root/<zoo>/<profile>``."""

    def __init__(self, root: Path, zoo: str, profile: str):
        self.root = Path(root)
        self.dir = self.root / zoo / profile

    def member(self, name: str) -> MemberStore:
        return MemberStore(self.dir / name)

    def write_spec(self, spec_dict: Mapping[str, Any]) -> None:
        atomic_write_json(self.dir / "zoo.json", spec_dict)
