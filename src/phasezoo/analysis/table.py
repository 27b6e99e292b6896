"""The member table of a stored zoo: one row per planned member with its grid coordinates,
status, results, loss-landscape metrics, phase and downstream results. Every report, plot,
claim, probe and export reads a zoo through :func:`zoo_table`.

Built from the layers below it: the store's rows (:func:`phasezoo.zoo.member_table`), the
metric columns and the phase map (:func:`phasezoo.landscape.runner.attach_metrics`), the
downstream columns (:func:`phasezoo.downstream.runner.downstream_columns`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from phasezoo.downstream.runner import downstream_columns
from phasezoo.landscape.runner import attach_metrics, zoo_phase_map
from phasezoo.spec import ZooSpec
from phasezoo.zoo import DEFAULT_ROOT, Zoo, member_table

__all__ = ["full_phase_map", "zoo_table"]


def zoo_table(
    zoo: Zoo | str | Path | ZooSpec, profile: str | None = None, root: str | Path = DEFAULT_ROOT, *,
    epoch: int | str = "last", phases: bool = True,
) -> pd.DataFrame:
    """One row per planned member: its grid coordinates, status and results at ``epoch``
    (``"last"``: each member's last recorded epoch; :func:`phasezoo.zoo.member_table`), then
    the loss-landscape columns (``hessian_top_eig``, ``hessian_trace``, ``cka``, ``mc_error``,
    ``mc_loss``, ``mc_error_chord``, ``mc_loss_chord``, ``phase``) where ``phasezoo metrics``
    has computed them (:func:`phasezoo.landscape.runner.attach_metrics`; ``phases=False`` leaves
    ``phase`` and ``phase_confidence`` empty, for callers that build the phase map themselves),
    and at the final epoch the downstream columns (:func:`phasezoo.downstream.runner.downstream_columns`).
    Missing values are NaN.
    """
    z = Zoo.of(zoo, profile, root)
    df = attach_metrics(member_table(z, epoch=epoch), z, epoch, phases=phases)
    return downstream_columns(df, z) if epoch in ("last", z.final_epoch) else df


def full_phase_map(zoo: Zoo | str | Path | ZooSpec, profile: str | None = None,
                   root: str | Path = DEFAULT_ROOT, *, epoch: int | str = "last", thresholds=None):
    """The zoo's :class:`~phasezoo.landscape.phases.PhaseMap`
    (:func:`phasezoo.landscape.runner.zoo_phase_map`) with every numeric column of
    :func:`zoo_table` averaged into its cells, the downstream results included: what the plots,
    reports and claims of a zoo read. ``thresholds``: fixed thresholds instead of the
    calibrated ones (:func:`phasezoo.analysis.history.phase_history`)."""
    z = Zoo.of(zoo, profile, root)
    return zoo_phase_map(z, epoch=epoch, members=zoo_table(z, epoch=epoch, phases=False), thresholds=thresholds)
