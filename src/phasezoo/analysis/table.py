"""The member table of a stored zoo: one row per planned member with its grid coordinates,
status, results, loss-landscape metrics, phase and downstream results. Every report, plot,
claim, probe and export reads a zoo through :func:`zoo_table`.

Built from the layers below it: the store's rows (:func:`phasezoo.zoo.member_table`), the
metric columns and the phase map (:func:`phasezoo.metrics.attach_metrics`), the downstream
columns (:func:`phasezoo.downstream.runner.downstream_columns`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from phasezoo.downstream.runner import downstream_columns
from phasezoo.metrics import attach_metrics, zoo_phase_map
from phasezoo.spec import ZooSpec, load_spec
from phasezoo.zoo import DEFAULT_ROOT, member_table

__all__ = ["full_phase_map", "zoo_table"]


def zoo_table(
    zoo: str | Path | ZooSpec, profile: str, root: str | Path = DEFAULT_ROOT, *, epoch: int | str = "last",
    phases: bool = True,
) -> pd.DataFrame:
    """One row per planned member: its grid coordinates, status and results at ``epoch``
    (``"last"``: each member's last recorded epoch; :func:`phasezoo.zoo.member_table`), then
    the loss-landscape columns (``hessian_top_eig``, ``hessian_trace``, ``cka``, ``mc_error``,
    ``mc_loss``, ``mc_error_chord``, ``mc_loss_chord``, ``phase``) where ``phasezoo metrics``
    has computed them (:func:`phasezoo.metrics.attach_metrics`; ``phases=False`` leaves
    ``phase`` and ``phase_confidence`` empty, for callers that build the phase map themselves),
    and at the final epoch the downstream columns (:func:`phasezoo.downstream.runner.downstream_columns`).
    Missing values are NaN.
    """
    spec = zoo if isinstance(zoo, ZooSpec) else load_spec(zoo)
    df = attach_metrics(member_table(spec, profile, root, epoch=epoch), spec, profile, root, epoch, phases=phases)
    final = epoch in ("last", spec.profile(profile).training.epochs)
    return downstream_columns(df, spec, profile, root) if final else df


def full_phase_map(spec: ZooSpec, profile: str, root: str | Path, epoch: int | str = "last"):
    """The zoo's :class:`~phasezoo.landscape.phases.PhaseMap` (:func:`phasezoo.metrics.zoo_phase_map`)
    with every numeric column of :func:`zoo_table` averaged into its cells, the downstream
    results included: what the plots, reports and claims of a zoo read."""
    members = zoo_table(spec, profile, root, epoch=epoch, phases=False)
    return zoo_phase_map(spec, profile, root, epoch, members=members)
