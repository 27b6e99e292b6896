"""The Zoo handle: one (spec, profile, root), built once and passed to every operation."""

from __future__ import annotations

import pytest

from phasezoo.errors import PhaseZooError, SpecError
from phasezoo.spec import cell_of, load_spec
from phasezoo.zoo import Zoo, zoo_status


def test_zoo_of_builds_once_and_checks_the_profile(tiny_spec, tmp_path):
    spec = load_spec(tiny_spec)
    z = Zoo.of(spec, "smoke", tmp_path)
    assert Zoo.of(z) is z and Zoo.of(z, "smoke") is z
    assert (z.name, z.profile, z.root) == ("tiny-digits", "smoke", tmp_path)
    assert z.settings is spec.profile("smoke") and z.final_epoch == 3
    assert [m.member for m in z.members] == [m.member for m in spec.members("smoke")]
    assert z.store.dir == tmp_path / "tiny-digits" / "smoke"
    assert z.member_dir(z.members[0]) == z.store.dir / z.members[0].member
    # cells group the members by grid cell, in plan order
    assert {c: [m.member for m in ms] for c, ms in z.cells.items()} == {
        cell_of(m.member): [m.member] for m in spec.members("smoke")}
    with pytest.raises(SpecError, match="has no profile 'paper'"):
        Zoo.of(spec, "paper", tmp_path)
    with pytest.raises(PhaseZooError, match="a profile is needed"):
        Zoo.of(spec)
    with pytest.raises(PhaseZooError, match="was given with profile 'mini'"):
        Zoo.of(z, "mini")


def test_operations_take_the_handle_or_the_three_arguments(tiny_spec, tmp_path):
    z = Zoo.of(tiny_spec, "smoke", tmp_path)
    assert zoo_status(z) == zoo_status(tiny_spec, "smoke", tmp_path) == {
        "done": 0, "partial": 0, "pending": 2, "diverged": 0}
