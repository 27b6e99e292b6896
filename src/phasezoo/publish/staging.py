"""What every export does before and around writing: check the destination and every stored
file of the zoo first, then build the export in a folder next to the destination and rename it
into place, so that bad input writes nothing and an interrupted export leaves nothing
half-written (:mod:`phasezoo.publish.ptmz`, :mod:`phasezoo.publish.hf`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from phasezoo.errors import PhaseZooError
from phasezoo.spec import MemberSpec
from phasezoo.zoo import Zoo


def members_to_export(z: Zoo, to: str | Path | None, what: str) -> tuple[Path, list[MemberSpec]]:
    """The destination and the members that have results, after checking that ``to`` is a new or
    empty folder, that there is a member to export, and every stored file of each (sha256,
    config, results against status: :meth:`phasezoo.store.MemberStore.verify`). ``what`` names
    the exporter in the error about a missing destination."""
    if to is None:
        raise PhaseZooError(f"{what} needs a destination folder (to=...)")
    to = Path(to)
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise PhaseZooError(f"export destination {to} exists and is not an empty folder")
    members = [m for m in z.members if z.store.member(m.member).read_results()]
    if not members:
        raise PhaseZooError(f"no trained members of {z.name}/{z.profile} under {z.root}")
    for m in members:  # check every file before writing anything
        z.store.member(m.member).verify(m.to_dict())
    return to, members


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staged_folder(to: Path) -> Iterator[Path]:
    """A temporary folder beside ``to`` to write the export into; renamed to ``to`` (readable as
    the umask allows, not private as ``mkdtemp`` makes it) when the block ends without an
    error, removed when it raises."""
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{to.name}.", dir=to.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if to.exists():
            to.rmdir()
        os.replace(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
