"""Errors a person can act on.

Every failure that a user can fix (a bad zoo name, an invalid spec value, a missing dataset, a
corrupt file) is raised as a :class:`PhaseZooError`. The command line prints its message as one
line on stderr and exits with code 2; library users catch it like any exception.
"""

import sys


class PhaseZooError(Exception):
    """A user-facing error whose message is one self-contained line."""


class SpecError(PhaseZooError):
    """A zoo spec (YAML) or a requested zoo/profile is invalid."""


class DatasetNotFoundError(PhaseZooError):
    """A dataset's files are absent and could not be downloaded."""


class CorruptFileError(PhaseZooError):
    """A file of a stored zoo cannot be read (truncated checkpoint, broken JSON, ...)."""


def warn(message: str) -> None:
    """A one-line warning on stderr (the CLI's counterpart of an error that does not stop)."""
    print(f"phasezoo: warning: {message}", file=sys.stderr, flush=True)
