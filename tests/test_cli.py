"""The command line: outputs, and one-line errors that write nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phasezoo.cli import main
from tests.conftest import TINY_SPEC, write_spec


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def snapshot(root: Path) -> dict:
    """Every path under root with its size and mtime: 'nothing new written' means this is equal."""
    if not root.exists():
        return {}
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_zoos_lists_every_zoo_and_profile(capsys):
    code, out, _ = run_cli(["zoos"], capsys)
    assert code == 0
    assert "cifar10-resnet18" in out and "tinyimagenet-resnet50" in out and "digits-resnet18" in out
    assert "paper (192)" in out


@pytest.mark.parametrize("zoo", ["svhn-resnet18", "cifar10-resnet18", "cifar100-resnet50",
                                 "tinyimagenet-resnet50"])
def test_plan_json_lists_192_members(zoo, capsys):
    code, out, _ = run_cli(["plan", zoo, "--profile", "paper", "--json"], capsys)
    assert code == 0
    plan = json.loads(out)
    assert len(plan) == 192 and plan[0]["zoo"] == zoo


def test_train_status_table_export(tiny_spec, tmp_path, capsys):
    root = tmp_path / "zoos"
    code, out, _ = run_cli(["train", tiny_spec, "-p", "smoke", "--root", root, "--device", "cpu"], capsys)
    assert code == 0 and "done 2" in out
    code, out, _ = run_cli(["status", tiny_spec, "-p", "smoke", "--root", root], capsys)
    assert out.strip() == "pending=0 partial=0 done=2 diverged=0"
    code, out, _ = run_cli(["table", tiny_spec, "-p", "smoke", "--root", root, "--csv", "-"], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].startswith("member,")
    code, out, _ = run_cli(["table", tiny_spec, "-p", "smoke", "--root", root, "--epoch", "2"], capsys)
    assert code == 0 and "w0001_b0256_s0" in out
    dest = tmp_path / "ptmz"
    code, out, _ = run_cli(["export", tiny_spec, "-p", "smoke", "--root", root, "--to", dest], capsys)
    assert code == 0
    member = dest / "w0001_b0256_s0"
    params = json.loads((member / "params.json").read_text())
    # the authors' names (their NNmodule_width dispatch, torchvision's ResNet keys); every field is
    # checked in tests/test_ptmz.py
    assert params["training::batchsize"] == 256 and params["model::type"] == "Resnet18_width"
    lines = [json.loads(line) for line in (member / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [r["training_iteration"] for r in lines] == [0, 1, 2, 3]
    import torch

    state = torch.load(member / "checkpoint_000003" / "checkpoints", weights_only=True)
    assert "fc.weight" in state and "linear.weight" not in state
    assert sorted(p.name for p in member.iterdir()) == [
        "checkpoint_000000", "checkpoint_000002", "checkpoint_000003", "params.json", "result.json"]


@pytest.mark.parametrize("args,message", [
    (["train", "cifar11-resnet18"], "unknown zoo 'cifar11-resnet18'"),
    (["train", "digits-resnet18", "--profile", "huge"], "no profile 'huge'"),
    (["table", "digits-resnet18", "--epoch", "x"], "--epoch must be"),
    (["train", "digits-resnet18", "--profile", "smoke", "--workers", "0"], "--workers must be"),
])
def test_errors_are_one_line_with_exit_2_and_write_nothing(args, message, tmp_path, capsys):
    root = tmp_path / "zoos"
    code, out, err = run_cli(args + ["--root", root], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("phasezoo: error:")
    assert not root.exists()


@pytest.mark.parametrize("old,new", [
    ("width: [1]", "width: [-2]"),
    ("optimizer: sgd", "optimizer: rmsprop"),
    ("batch_size: [256, 512]", "batch_size: [256, 2048]"),
])
def test_invalid_spec_values(tmp_path, capsys, old, new):
    spec = write_spec(tmp_path, TINY_SPEC.replace(old, new))
    code, _, err = run_cli(["train", spec, "-p", "smoke", "--root", tmp_path / "zoos"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert not (tmp_path / "zoos").exists()


def test_missing_dataset_files(tmp_path, capsys, monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    code, _, err = run_cli(["train", "cifar10-resnet18", "-p", "smoke", "--root", tmp_path / "zoos",
                            "--data-dir", tmp_path / "datasets"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert str(tmp_path / "datasets") in err
    assert not (tmp_path / "zoos").exists()


def test_corrupt_checkpoint_is_reported_and_nothing_is_written(tiny_spec, tmp_path, capsys):
    root = tmp_path / "zoos"
    assert run_cli(["train", tiny_spec, "-p", "smoke", "--root", root, "--device", "cpu"], capsys)[0] == 0
    ckpt = root / "tiny-digits" / "smoke" / "w0001_b0512_s0" / "checkpoints" / "epoch_0002.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:-100])  # truncated, as by a disk-full copy
    before = snapshot(root)
    code, _, err = run_cli(["train", tiny_spec, "-p", "smoke", "--root", root], capsys)
    assert code == 2 and "corrupt checkpoint file" in err and "epoch_0002" in err
    code, _, err = run_cli(["export", tiny_spec, "-p", "smoke", "--root", root, "--to", tmp_path / "x"], capsys)
    assert code == 2 and "corrupt checkpoint file" in err
    assert not (tmp_path / "x").exists()
    assert snapshot(root) == before


def test_changed_spec_under_an_existing_zoo_is_refused(tiny_spec, tmp_path, capsys):
    root = tmp_path / "zoos"
    assert run_cli(["train", tiny_spec, "-p", "smoke", "--root", root, "--device", "cpu"], capsys)[0] == 0
    write_spec(tmp_path, TINY_SPEC.replace("lr: 0.1", "lr: 0.05"))
    before = snapshot(root)
    code, _, err = run_cli(["train", tiny_spec, "-p", "smoke", "--root", root], capsys)
    assert code == 2 and "another config (lr differ)" in err
    assert snapshot(root) == before


def _phasezoo_cmd():
    return [sys.executable, "-c", "import torch; torch.set_num_threads(1); from phasezoo.cli import main; main()"]


def test_console_entry_point_prints_no_traceback(tmp_path):
    proc = subprocess.run(_phasezoo_cmd() + ["train", "nope", "--root", str(tmp_path / "z")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_kill_9_then_rerun_completes_every_member_exactly_once(tiny_spec, tmp_path):
    """A real SIGKILL in the middle of `phasezoo train`, then a rerun."""
    import time

    import torch

    from phasezoo.store import MemberStore

    spec = write_spec(tmp_path, TINY_SPEC.replace("epochs: 3", "epochs: 6").replace(
        "name: tiny-digits", "name: kill"), name="kill.yaml")
    root = tmp_path / "zoos"
    cmd = _phasezoo_cmd() + ["train", str(spec), "-p", "smoke", "--root", str(root), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = root / "kill" / "smoke" / "w0001_b0256_s0" / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once the first member is part-way through
        if target.exists() and len(target.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    for member in ("w0001_b0256_s0", "w0001_b0512_s0"):
        store = MemberStore(root / "kill" / "smoke" / member)
        assert store.state() == "done"
        assert [r["epoch"] for r in store.read_results()] == list(range(7))
        for epoch in store.checkpoint_epochs():
            store.load_checkpoint(epoch)
        assert torch.isfinite(store.load_checkpoint("last")[1]["linear.weight"]).all()
    assert not list(root.rglob("*.tmp"))  # no stray temporary files


def test_pool_workers_end_when_the_main_process_is_killed(tmp_path):
    """After a SIGKILL of `phasezoo train --workers 2`, its worker processes exit too instead of
    training the tasks already queued to them."""
    import time

    spec = write_spec(tmp_path, TINY_SPEC.replace("epochs: 3", "epochs: 50").replace(
        "name: tiny-digits", "name: orphans"), name="orphans.yaml")
    cmd = _phasezoo_cmd() + ["train", str(spec), "-p", "smoke", "--root", str(tmp_path / "zoos"),
                             "--device", "cpu", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children() -> set[int]:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
        return {int(p) for p in out.split()}

    def alive(pid: int) -> bool:
        try:
            return open(f"/proc/{pid}/stat").read().split()[2] not in ("Z", "X")
        except FileNotFoundError:
            return False

    target = tmp_path / "zoos" / "orphans" / "smoke" / "w0001_b0256_s0" / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (target.exists() and len(children()) >= 2):
        time.sleep(0.05)
    workers = children()
    assert len(workers) >= 2, "the pool did not start"
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)


def test_probe_rejects_a_bad_repeat_count_in_one_line(tmp_path, capsys):
    code, out, err = run_cli(["probe", "digits-resnet18", "--root", tmp_path, "--repeats", "0"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "--repeats must be >= 1" in err
    assert not any(tmp_path.iterdir())
