"""Device options (channels-last, bf16 autocast, torch.compile) and the CUDA path.

The CPU tests run everywhere; the CUDA tests run when a GPU is present and are skipped otherwise.
"""

import json

import pytest
import torch

from phasezoo.errors import PhaseZooError
from phasezoo.spec import load_spec
from phasezoo.store import MemberStore
from phasezoo.train import DeviceOptions, train_member, train_members

from tests.conftest import write_spec
from tests.test_packed import EXACT, RESNET_SPEC, _max_diff

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _members(tmp_path, epochs=1):
    text = RESNET_SPEC.replace("epochs: 3", f"epochs: {epochs}")
    return load_spec(write_spec(tmp_path, text, "pack-resnet.yaml")).members("smoke")


def test_device_options_are_checked_and_recorded_only_when_set():
    assert DeviceOptions().as_dict() == {}
    assert DeviceOptions(channels_last=True, autocast="bf16").as_dict() == {"channels_last": True,
                                                                            "autocast": "bf16"}
    with pytest.raises(PhaseZooError, match="autocast"):
        DeviceOptions(autocast="fp8")


@pytest.mark.parametrize("pack", [False, True])
def test_channels_last_trains_the_same_weights(tmp_path, pack):
    members = _members(tmp_path)
    plain = train_members(members, [tmp_path / "plain" / m.member for m in members], pack=pack,
                          dtype=torch.float64)
    nhwc = train_members(members, [tmp_path / "nhwc" / m.member for m in members], pack=pack,
                         dtype=torch.float64, options=DeviceOptions(channels_last=True))
    assert [r.status for r in plain] == [r.status for r in nhwc] == ["done"] * 3
    for m in members:
        assert _max_diff(tmp_path / "plain" / m.member, tmp_path / "nhwc" / m.member, 1) < EXACT
        env = json.loads(MemberStore(tmp_path / "nhwc" / m.member).status_path.read_text())["trained_with"]
        assert env["device_options"] == {"channels_last": True}


def test_bf16_autocast_trains_close_to_float32_and_a_resume_without_it_warns(tmp_path, capsys):
    members = _members(tmp_path, epochs=2)[:1]
    full = train_member(members[0], tmp_path / "fp32")
    half = train_member(members[0], tmp_path / "bf16", options=DeviceOptions(autocast="bf16"),
                        stop_after_epoch=1)
    assert half.status == "partial"
    rows = MemberStore(tmp_path / "bf16").read_results()
    ref = MemberStore(tmp_path / "fp32").read_results()
    assert rows[0] == ref[0]  # the same initial model, evaluated in full precision
    # bfloat16 keeps 8 bits of mantissa: the first epoch's mean batch loss lands near the float32
    # run's (epoch-end losses of this unstable width-2 cell differ by up to 2x between seeds)
    assert abs(rows[1]["train_loss_batches"] - ref[1]["train_loss_batches"]) < 0.1 * ref[1]["train_loss_batches"]
    assert rows[1]["train_loss_batches"] != ref[1]["train_loss_batches"]
    capsys.readouterr()
    again = train_member(members[0], tmp_path / "bf16")
    assert again.status == "done"
    assert "not bit-for-bit reproducible" in capsys.readouterr().err
    assert full.status == "done"


def test_train_cli_takes_the_device_options(tmp_path, capsys):
    from tests.test_cli import run_cli

    spec = write_spec(tmp_path, RESNET_SPEC.replace("epochs: 3", "epochs: 1"), "pack-resnet.yaml")
    code, _, _ = run_cli(["train", spec, "--profile", "smoke", "--root", tmp_path / "z", "--device", "cpu",
                          "--channels-last", "--no-pack"], capsys)
    assert code == 0
    status = json.loads(next((tmp_path / "z").rglob("status.json")).read_text())
    assert status["trained_with"]["device_options"] == {"channels_last": True}
    assert "packing" not in status["trained_with"]
    code, _, err = run_cli(["train", spec, "--profile", "smoke", "--root", tmp_path / "y", "--autocast", "fp8"],
                           capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "y").exists()


# ----------------------------------------------------------------------------- CUDA


@cuda
@pytest.mark.parametrize("pack", [False, True])
def test_cuda_training_matches_the_cpu_within_float_rounding(tmp_path, pack):
    members = _members(tmp_path)
    on_cpu = train_members(members, [tmp_path / "cpu" / m.member for m in members], pack=pack,
                           device="cpu", dtype=torch.float64)
    on_gpu = train_members(members, [tmp_path / "gpu" / m.member for m in members], pack=pack,
                           device="cuda", dtype=torch.float64)
    assert [r.status for r in on_cpu] == [r.status for r in on_gpu] == ["done"] * 3
    for m in members:  # same seeds, same draws (made on the CPU): the same models
        assert _max_diff(tmp_path / "cpu" / m.member, tmp_path / "gpu" / m.member, 1) < 1e-7
        env = json.loads(MemberStore(tmp_path / "gpu" / m.member).status_path.read_text())["trained_with"]
        assert env["device"].startswith("cuda")


@cuda
@pytest.mark.parametrize("options", [DeviceOptions(channels_last=True), DeviceOptions(autocast="bf16"),
                                     DeviceOptions(compile=True),
                                     DeviceOptions(channels_last=True, autocast="bf16", compile=True)])
def test_cuda_device_options_train_a_packed_cell(tmp_path, options):
    members = _members(tmp_path)
    ref = train_members(members, [tmp_path / "ref" / m.member for m in members], device="cuda")
    got = train_members(members, [tmp_path / "opt" / m.member for m in members], device="cuda",
                        options=options)
    assert [r.status for r in got] == ["done"] * 3
    for a, b in zip(ref, got):
        assert abs(a.final["train_loss"] - b.final["train_loss"]) < 0.25 * a.final["train_loss"]


def test_the_gpu_benchmark_runs_its_tiny_cpu_version(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_zoo.py"
    spec = importlib.util.spec_from_file_location("gpu_zoo", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu_zoo_tiny.json"
    assert bench.main(["--tiny", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["device"] == "cpu" and result["settings"]["tiny"]
    assert len(result["cells"]) == 2
    for cell in result["cells"]:  # both ways trained every seed of the cell for the one epoch
        assert cell["packed"]["model_epochs"] == cell["one_by_one"]["model_epochs"] == cell["seeds"] == 2
    assert result["ratio_packed_over_one_by_one"] > 0
    proj = result["projection"]
    assert proj["paper_members"] == 192 and proj["paper_model_epochs"] == 192 * 15
    assert proj["gpu_hours_range"][0] <= proj["gpu_hours"] <= proj["gpu_hours_range"][1]
