"""The on-disk zoo format: one folder per member, every write atomic and hashed, nothing pickled.

Layout under ``ROOT/<zoo>/<profile>/`` (documented for users in ``data/README.md``)::

    zoo.json                        the zoo spec the members were planned from
    .lock                           who holds the zoo for writing (pid, host, since)
    <member>/                       named from the grid coordinates, e.g. w0008_b0128_s0
      config.json                   the MemberSpec: everything needed to rebuild and retrain it
      results.jsonl                 one JSON object per epoch; line 0 is the evaluation at init
      status.json                   {"status": "running" | "done" | "diverged", "epoch": N, ...}
      checkpoints/epoch_NNNN.safetensors   model state (parameters and BatchNorm buffers)
      resume.safetensors            optimizer, scheduler and RNG state of the last finished
                                    epoch; deleted once the member is done

Atomic: every file is written to a temporary name in the same folder and renamed over the
target (``os.replace`` is atomic on POSIX), so a kill at any moment leaves either the old or the
new file, never a torn one. The per-epoch order (results, then checkpoint, then resume state)
means a rerun resumes from the last epoch whose resume state exists and drops result lines past
it, so each epoch is recorded exactly once. Temporary files left by a killed write
(``.NAME.XXXX.tmp``) are removed by the next command that holds the zoo's lock.

Hashed: every file carries the sha256 of its own content, so the hash and the data are written
in one atomic rename and can never disagree after a kill:

* a JSON file is an object with a ``"_sha256"`` key: the hex digest of the canonical JSON
  (sorted keys, no spaces) of the other keys;
* every line of ``results.jsonl`` is such an object;
* a safetensors file has ``"_sha256"`` in its ``__metadata__``: the digest of the canonical JSON
  of its header without that entry, followed by the raw tensor bytes.

Every read recomputes the digest, and a mismatch (a flipped bit, a hand edit, a file written
without a hash) raises :class:`~phasezoo.errors.CorruptFileError` naming the file: nothing stored
is used unverified. Files honour the process umask (``tempfile`` would create them 0600).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from phasezoo.errors import CorruptFileError, PhaseZooError, SpecError
from phasezoo.models import model_from_config

#: 2: every file carries its sha256 (1: no hashes; such files are refused, see ``_unhashed``)
FORMAT_VERSION = 2
STATES = ("pending", "partial", "done", "diverged")
HASH_KEY = "_sha256"
#: the temporary names of :func:`atomic_write_bytes` (and nothing a user would name a file)
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: read once: ``os.umask`` can only be read by setting it, which is not thread-safe later on
_UMASK = _current_umask()


# ----------------------------------------------------------------------------- hashing


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def _unhashed(path: Path) -> CorruptFileError:
    return CorruptFileError(
        f"{path} has no integrity hash (written by phasezoo before store format {FORMAT_VERSION} "
        "or by hand): it is not used; retrain into a fresh --root")


def _mismatch(path: Path, what: str = "") -> CorruptFileError:
    return CorruptFileError(f"{path}{what}: sha256 mismatch, the file changed after it was written "
                            "(corrupt or edited); it is not used")


def _sealed(obj: Mapping[str, Any]) -> dict:
    """``obj`` as JSON reads it back, with its hash added under :data:`HASH_KEY`."""
    clean = json.loads(json.dumps(_finite(dict(obj))))  # int keys become str, tuples lists
    clean.pop(HASH_KEY, None)
    return {**clean, HASH_KEY: _digest(_canonical(clean))}


def _unseal(obj: Any, path: Path, what: str = "") -> dict:
    """Check and strip the hash of one parsed JSON object."""
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{path}{what}: expected a JSON object, found {type(obj).__name__}")
    if HASH_KEY not in obj:
        raise _unhashed(path)
    body = {k: v for k, v in obj.items() if k != HASH_KEY}
    if obj[HASH_KEY] != _digest(_canonical(body)):
        raise _mismatch(path, what)
    return body


# ----------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    The file gets the permissions a plain ``open(path, "w")`` would (0666 less the umask)."""
    path = Path(path)
    if path.is_dir():
        raise PhaseZooError(f"{path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Mapping[str, Any]) -> None:
    """Write a JSON object atomically, sealed with its sha256 (module docstring)."""
    atomic_write_bytes(path, (json.dumps(_sealed(obj), indent=1) + "\n").encode())


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


def as_stored(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, NaN becomes None)."""
    return json.loads(json.dumps(_finite(obj)))


_REQUIRED = object()


def read_json(path: Path, default: Any = _REQUIRED) -> Any:
    """Parse and verify a JSON object written by :func:`atomic_write_json` (hash stripped);
    a missing file returns ``default`` when one is given."""
    path = Path(path)
    if default is not _REQUIRED and not path.exists():
        return default
    try:
        obj = json.loads(path.read_bytes().decode())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CorruptFileError(f"corrupt JSON file: {path}") from None
    except IsADirectoryError:
        raise CorruptFileError(f"{path} is a folder, not a JSON file") from None
    return _unseal(obj, path)


# ----------------------------------------------------------------------------- tensors


def _split_safetensors(blob: bytes, path: Path) -> tuple[dict, bytes]:
    """(header, tensor bytes) of a safetensors file; the header must parse and announce
    exactly the file's size (detects truncation and padding)."""
    if len(blob) < 8:
        raise CorruptFileError(f"corrupt checkpoint file: {path}")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise CorruptFileError(f"corrupt checkpoint file (truncated or garbage): {path}")
    try:
        header = json.loads(blob[8 : 8 + n])
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError, IndexError):
        raise CorruptFileError(f"corrupt checkpoint file: {path}") from None
    if not isinstance(header, dict) or 8 + n + end != len(blob):
        raise CorruptFileError(f"corrupt checkpoint file (truncated or padded): {path}")
    return header, blob[8 + n :]


def _tensor_digest(header: Mapping[str, Any], data: bytes) -> str:
    meta = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != HASH_KEY}
    return _digest(_canonical({**header, "__metadata__": meta}), data)


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None) -> None:
    """Save tensors as safetensors (atomically, sealed with the sha256 of header and data);
    ``metadata`` values are stored as JSON strings."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {k: json.dumps(_finite(v)) for k, v in (metadata or {}).items()}
    header, data = _split_safetensors(st_save(flat, metadata=meta or None), path)
    # the tensor bytes do not depend on the metadata: the second serialisation only adds the hash
    meta[HASH_KEY] = _tensor_digest(header, data)
    atomic_write_bytes(path, st_save(flat, metadata=meta))


def _verified_blob(path: Path) -> tuple[bytes, dict]:
    try:
        blob = Path(path).read_bytes()
    except IsADirectoryError:
        raise CorruptFileError(f"{path} is a folder, not a checkpoint file") from None
    header, data = _split_safetensors(blob, path)
    stored = (header.get("__metadata__") or {}).get(HASH_KEY)
    if stored is None:
        raise _unhashed(path)
    if stored != _tensor_digest(header, data):
        raise _mismatch(path)
    return blob, header


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load and verify a safetensors file written by :func:`save_tensors`; no pickle is involved."""
    path = Path(path)
    blob, header = _verified_blob(path)
    try:
        tensors = st_load(blob)
        meta = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != HASH_KEY}
        return tensors, {k: json.loads(v) for k, v in meta.items()}
    except (SafetensorError, json.JSONDecodeError, ValueError):
        raise CorruptFileError(f"corrupt checkpoint file: {path}") from None


def check_tensors_file(path: Path) -> dict:
    """Verify a safetensors file (structure, size and sha256) without building tensors; returns
    its header."""
    return _verified_blob(path)[1]


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
        if self.read_config() == as_stored({**config, "format_version": FORMAT_VERSION}):
            return  # unchanged: a resumed member rewrites nothing it does not need to
        atomic_write_json(self.config_path, {**config, "format_version": FORMAT_VERSION})

    def read_status(self) -> dict | None:
        status = read_json(self.status_path, None)
        if status is not None and status.get("status") not in ("running", "done", "diverged"):
            raise CorruptFileError(f"{self.status_path}: unknown status {status.get('status')!r}")
        return status

    def write_status(self, status: str, **info: Any) -> None:
        atomic_write_json(self.status_path, {"status": status, **info})

    def state(self) -> str:
        """pending (nothing on disk), partial (started), done or diverged."""
        status = self.read_status()
        if status is not None and status.get("status") in ("done", "diverged"):
            return status["status"]
        return "partial" if self.dir.exists() and any(self.dir.iterdir()) else "pending"

    # -- results
    def read_results(self, planned_last: int | None = None) -> list[dict]:
        """The verified result lines; epochs must run 0, 1, 2, ... each exactly once, and with
        ``planned_last`` a ``done`` member's must end at that epoch."""
        rows: list[dict] = []
        if self.results_path.exists():
            rows = self._read_result_lines()
        if planned_last is not None and self.state() == "done":
            last = rows[-1]["epoch"] if rows else None
            if last != planned_last:
                raise CorruptFileError(f"{self.results_path}: status done, but it ends at epoch {last} "
                                       f"(planned last epoch {planned_last}); see `phasezoo verify`")
        return rows

    def _read_result_lines(self) -> list[dict]:
        rows = []
        try:
            lines = self.results_path.read_bytes().decode().splitlines()
        except UnicodeDecodeError:
            raise CorruptFileError(f"corrupt results file (not UTF-8): {self.results_path}") from None
        for i, line in enumerate(lines):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise CorruptFileError(f"corrupt line {i + 1} in {self.results_path}") from None
            row = _unseal(obj, self.results_path, f" line {i + 1}")
            if row.get("epoch") != i:
                raise CorruptFileError(
                    f"{self.results_path} line {i + 1} holds epoch {row.get('epoch')!r}, expected {i} "
                    "(a line is missing or repeated)")
            rows.append(row)
        return rows

    def write_results(self, rows: Iterable[Mapping[str, Any]]) -> None:
        text = "".join(json.dumps(_sealed(r)) + "\n" for r in rows)
        atomic_write_bytes(self.results_path, text.encode())

    # -- checkpoints
    def checkpoint_epochs(self) -> list[int]:
        if not self.checkpoints_dir.exists():
            return []
        epochs = []
        for p in self.checkpoints_dir.glob("epoch_*.safetensors"):
            try:
                epochs.append(int(p.stem.split("_")[1]))
            except ValueError:
                raise CorruptFileError(f"unexpected file in {self.checkpoints_dir}: {p.name}") from None
        return sorted(epochs)

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

    def clear(self) -> None:
        """Remove every training file (a restart from scratch after corrupt resume state)."""
        for p in (self.results_path, self.status_path, self.resume_path):
            p.unlink(missing_ok=True)
        for e in self.checkpoint_epochs():
            self.checkpoint_path(e).unlink(missing_ok=True)

    # -- integrity
    def check_config(self, expected_config: Mapping[str, Any]) -> None:
        """Raise if the member was trained with another config (the spec changed under it)."""
        config = self.read_config()
        if config is None:
            return
        stored = {k: v for k, v in config.items() if k != "format_version"}
        expected = as_stored(expected_config)
        if stored != expected:
            diff = sorted(k for k in stored.keys() | expected.keys() if stored.get(k) != expected.get(k))
            raise SpecError(
                f"{self.dir} was trained with another config ({', '.join(diff)} differ); "
                "use another --root or remove it"
            )

    def problems(self, expected_config: Mapping[str, Any] | None = None,
                 extra_json: Iterable[str] = ("metrics.json", "downstream.json")) -> list[str]:
        """Every problem of this member's files, one line each (empty: all verified).

        Checks: each file's hash; the config against ``expected_config``; results epochs
        0..N each exactly once; a ``done`` status at the planned last epoch with every planned
        checkpoint present; a ``diverged`` status at its last result line; no checkpoint past
        the last result line; the resume state of an unfinished member. ``extra_json`` names the
        further JSON files (metric results) that are verified where present.
        """
        out: list[str] = []

        def attempt(fn):
            try:
                return fn(), True
            except PhaseZooError as e:
                out.append(str(e))
                return None, False

        config, ok_config = attempt(self.read_config)
        if ok_config and expected_config is not None:
            attempt(lambda: self.check_config(expected_config))
        status, ok_status = attempt(self.read_status)
        rows, ok_rows = attempt(self.read_results)
        epochs, ok_ckpt = attempt(self.checkpoint_epochs)
        for e in epochs or []:
            attempt(lambda e=e: check_tensors_file(self.checkpoint_path(e)))
        if self.resume_path.exists():
            attempt(lambda: check_tensors_file(self.resume_path))
        for name in extra_json:
            if (self.dir / name).exists():
                attempt(lambda name=name: read_json(self.dir / name))
        plan = expected_config or config
        if not (ok_status and ok_rows and ok_ckpt) or plan is None:
            return out
        last = rows[-1]["epoch"] if rows else None
        state = (status or {}).get("status")
        if state == "done":
            planned_last = int(plan["epochs"])
            if last != planned_last:
                out.append(f"{self.dir}: status done, but results.jsonl ends at epoch {last} "
                           f"(planned last epoch {planned_last})")
            missing = sorted(set(plan["checkpoint_epochs"]) - set(epochs))
            if missing:
                out.append(f"{self.dir}: status done, but checkpoints of epochs "
                           f"{', '.join(map(str, missing))} are missing")
            if self.resume_path.exists():
                out.append(f"{self.dir}: status done, but a resume state is left")
        elif state == "diverged" and last != status.get("epoch"):
            out.append(f"{self.dir}: status diverged at epoch {status.get('epoch')}, but results.jsonl "
                       f"ends at epoch {last}")
        if last is not None and epochs and epochs[-1] > last:
            out.append(f"{self.dir}: a checkpoint of epoch {epochs[-1]} but results only to epoch {last}")
        return out

    def verify(self, expected_config: Mapping[str, Any] | None = None) -> None:
        """Raise the first of :meth:`problems` as a one-line :class:`CorruptFileError`
        (a changed config as :class:`SpecError`)."""
        if expected_config is not None:
            self.check_config(expected_config)
        problems = self.problems(expected_config)
        if problems:
            raise CorruptFileError(problems[0])


# ----------------------------------------------------------------------------- the zoo


class ZooStore:
    """All members of one zoo profile under ``root/<zoo>/<profile>``."""

    def __init__(self, root: Path, zoo: str, profile: str):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise PhaseZooError(f"--root {self.root} is a file, not a folder")
        self.name = f"{zoo}/{profile}"
        self.dir = self.root / zoo / profile

    def member(self, name: str) -> MemberStore:
        return MemberStore(self.dir / name)

    def finished(self, members: Iterable[Any]) -> list[Any]:
        """The ``done`` members of a plan (``MemberSpec`` objects); none is a one-line error
        (``metrics`` and ``downstream`` need trained members)."""
        done = [m for m in members if self.member(m.member).state() == "done"]
        if not done:
            raise PhaseZooError(f"no finished members of {self.name} under {self.root}; "
                                "run `phasezoo train` first")
        return done

    def verify_members(self, members: Iterable[Any]) -> None:
        """Verify every file of these members against their planned configs (first problem
        raised as one line)."""
        for m in members:
            self.member(m.member).verify(m.to_dict())

    @property
    def spec_path(self) -> Path:
        return self.dir / "zoo.json"

    def write_spec(self, spec_dict: Mapping[str, Any]) -> None:
        """Write ``zoo.json`` unless it already holds exactly this (a finished zoo on a
        read-only file system is never written to)."""
        if self.spec_path.exists():
            try:
                if read_json(self.spec_path) == as_stored(spec_dict):
                    return
            except CorruptFileError:
                pass  # rewritten below: zoo.json only records the plan
        atomic_write_json(self.spec_path, spec_dict)

    def lock(self, command: str) -> "ZooLock":
        """The zoo's write lock (a context manager); see :class:`ZooLock`."""
        return ZooLock(self.dir / ".lock", self.name, command)

    def remove_stale_temps(self) -> list[Path]:
        """Delete the temporary files of writes that were killed (call while holding the lock:
        no other writer is then active). Returns the removed paths."""
        removed = []
        if not self.dir.is_dir():
            return removed
        for dirpath, _dirs, files in os.walk(self.dir):
            for f in files:
                if TEMP_NAME.match(f):
                    p = Path(dirpath) / f
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed


class ZooLockedError(PhaseZooError):
    """Another live process holds the zoo's lock."""


class ZooLock:
    """An exclusive, advisory write lock on one zoo profile: ``fcntl.flock`` on ``.lock``.

    The kernel releases a ``flock`` when its process dies, however it dies, so a lock left by a
    killed process is simply taken over by the next command; the file's content (pid, host,
    command, time) only tells a person who holds it. ``train``, ``metrics`` and ``downstream``
    take it while they write; read-only commands never do.
    """

    def __init__(self, path: Path, name: str, command: str):
        self.path, self.name, self.command = Path(path), name, command
        self._fd: int | None = None

    def __enter__(self) -> "ZooLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            who = (f"PID {holder.get('pid')} on {holder.get('host')} ({holder.get('command')}) "
                   f"since {holder.get('since')}") if holder else "another process"
            raise ZooLockedError(f"{self.name} is locked by {who}; wait for it or stop it") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)  # an empty lock file: nobody holds it
            finally:
                os.close(self._fd)  # closing releases the flock
                self._fd = None


def _read_holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode()
        holder = json.loads(text) if text.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def load_member(member_dir: str | Path, epoch: int | str = "last"):
    """Rebuild a stored member: returns ``(model, config)`` with the weights of ``epoch``
    (an int or ``"last"``, the latest checkpoint) loaded and the model in eval mode."""
    ms = MemberStore(Path(member_dir))
    config = ms.read_config()
    if config is None:
        raise CorruptFileError(f"no config.json in {member_dir}; is this a zoo member folder?")
    model = model_from_config(config)
    _, state = ms.load_checkpoint(epoch)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CorruptFileError(f"checkpoint does not match the model of {member_dir}") from None
    model.eval()
    return model, config
