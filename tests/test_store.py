"""The on-disk format: atomic writes, pickle-free tensors, corruption detected."""

import os

import pytest
import torch

from phasezoo.errors import CorruptFileError
from phasezoo.store import (MemberStore, atomic_write_bytes, atomic_write_json, check_tensors_file,
                            load_tensors, read_json, save_tensors)


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_json(p, {"a": 2, "b": float("nan")})
    assert read_json(p) == {"a": 2, "b": None}  # NaN is not JSON: stored as null
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]  # no temporary left behind


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"old")

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.bin"]


def test_tensors_round_trip_with_metadata(tmp_path):
    p = tmp_path / "t.safetensors"
    g = torch.Generator().manual_seed(3)
    tensors = {"w": torch.randn(3, 4), "step": torch.tensor(5.0), "rng": g.get_state(),
               "n": torch.tensor(7, dtype=torch.int64)}
    save_tensors(p, tensors, {"epoch": 4, "groups": [{"lr": 0.1}]})
    back, meta = load_tensors(p)
    assert all(torch.equal(tensors[k], back[k]) for k in tensors)
    assert meta == {"epoch": 4, "groups": [{"lr": 0.1}]}
    assert b"pickle" not in p.read_bytes()[:200]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_tensor_files_are_detected(tmp_path, damage):
    p = tmp_path / "t.safetensors"
    save_tensors(p, {"w": torch.randn(100)})
    data = p.read_bytes()
    p.write_bytes({"truncate": data[:-8], "garbage": b"\x13" * 64, "empty": b""}[damage])
    with pytest.raises(CorruptFileError, match="corrupt checkpoint file"):
        check_tensors_file(p)
    with pytest.raises(CorruptFileError):
        load_tensors(p)


def test_corrupt_results_and_config(tmp_path):
    ms = MemberStore(tmp_path / "m")
    ms.write_results([{"epoch": 0}, {"epoch": 1}])
    assert [r["epoch"] for r in ms.read_results()] == [0, 1]
    first = ms.results_path.read_text().splitlines()[0]
    ms.results_path.write_text(first + '\n{"epo')
    with pytest.raises(CorruptFileError, match="line 2"):
        ms.read_results()
    ms.config_path.write_text("{")
    with pytest.raises(CorruptFileError, match="corrupt JSON"):
        ms.verify()


def test_member_states(tmp_path):
    ms = MemberStore(tmp_path / "m")
    assert ms.state() == "pending"
    ms.write_config({"a": 1})
    assert ms.state() == "partial"
    ms.write_status("done", epoch=3)
    assert ms.state() == "done"
    ms.write_status("diverged", epoch=1)
    assert ms.state() == "diverged"


def test_load_checkpoint_names_available_epochs(tmp_path):
    from phasezoo.errors import SpecError

    ms = MemberStore(tmp_path / "m")
    ms.save_checkpoint(0, {"w": torch.zeros(1)})
    ms.save_checkpoint(5, {"w": torch.ones(1)})
    assert ms.load_checkpoint("last")[0] == 5
    with pytest.raises(SpecError, match="stored: 0, 5"):
        ms.load_checkpoint(3)
