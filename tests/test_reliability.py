"""Trustworthy on any machine: hashed files, verify, the zoo lock, one-line errors, progress.

One tiny digits zoo is trained once per module (two members, three epochs, about a second
each); tests that damage it work on a copy.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from phasezoo.cli import main
from phasezoo.executors import processor_name
from phasezoo.store import MemberStore
from tests.conftest import TINY_SPEC, write_spec

ZOO = "tiny-digits"
MEMBER = "w0001_b0256_s0"


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def one_line_error(code: int, err: str) -> bool:
    return code == 2 and err.count("\n") == 1 and err.startswith("phasezoo") and "Traceback" not in err


def snapshot(root: Path) -> dict:
    if not root.exists():
        return {}
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def flip_bit(path: Path, offset_from_end: int = 10) -> None:
    """Flip one bit inside the tensor data (the end of a safetensors file is tensor bytes)."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(spec path, root) of the tiny zoo, trained once."""
    base = tmp_path_factory.mktemp("trained")
    spec = write_spec(base)
    root = base / "zoos"
    with pytest.raises(SystemExit) as e:
        main(["train", str(spec), "-p", "smoke", "--root", str(root), "--device", "cpu"])
    assert e.value.code == 0
    return spec, root


@pytest.fixture
def zoo(trained, tmp_path):
    """A private copy of the trained zoo: (spec, root, member dir)."""
    spec, root = trained
    copy = tmp_path / "zoos"
    shutil.copytree(root, copy)
    return spec, copy, copy / ZOO / "smoke" / MEMBER


# ----------------------------------------------------------------------------- integrity


def test_every_stored_file_carries_its_hash(zoo):
    _, _, member = zoo
    for name in ("config.json", "status.json", "metrics.json"):
        if (member / name).exists():
            assert "_sha256" in json.loads((member / name).read_text())
    assert all("_sha256" in json.loads(line) for line in (member / "results.jsonl").read_text().splitlines())
    header_len = int.from_bytes((member / "checkpoints" / "epoch_0003.safetensors").read_bytes()[:8], "little")
    header = json.loads((member / "checkpoints" / "epoch_0003.safetensors").read_bytes()[8:8 + header_len])
    assert "_sha256" in header["__metadata__"]


@pytest.mark.parametrize("command", ["train", "export", "probe", "verify", "metrics"])
def test_flipped_bit_in_checkpoint_data_is_never_used(zoo, tmp_path, capsys, command):
    spec, root, member = zoo
    ckpt = member / "checkpoints" / "epoch_0003.safetensors"  # the last: every command reads it
    flip_bit(ckpt)
    before = snapshot(root)
    extra = {"export": ["--to", tmp_path / "out"], "metrics": ["--device", "cpu"],
             "train": ["--device", "cpu"]}.get(command, [])
    code, out, err = run_cli([command, spec, "-p", "smoke", "--root", root, *extra], capsys)
    assert code == 2, (out, err)
    assert "sha256 mismatch" in (out + err) and "epoch_0003.safetensors" in (out + err)
    if command != "verify":
        assert one_line_error(code, err)
    assert snapshot(root) == before
    assert not (tmp_path / "out").exists()


def test_a_flipped_bit_in_a_json_result_is_detected(zoo, capsys):
    spec, root, member = zoo
    path = member / "results.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    row["train_loss"] = row["train_loss"] / 2  # a better loss than was measured; the hash stays
    lines[2] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(["table", spec, "-p", "smoke", "--root", root], capsys)
    assert one_line_error(code, err) and "results.jsonl" in err and "sha256 mismatch" in err


def test_corrupt_resume_state_restarts_the_member_from_scratch(tmp_path, capsys):
    """A flipped bit in resume.safetensors is reported, never loaded; the member trains again
    from scratch and ends with exactly the weights of an uninterrupted run."""
    from phasezoo.spec import load_spec
    from phasezoo.train import train_member

    spec = load_spec(write_spec(tmp_path))
    member = spec.members("smoke")[0]
    clean = tmp_path / "clean"
    train_member(member, clean, device="cpu")
    broken = tmp_path / "broken"
    train_member(member, broken, device="cpu", stop_after_epoch=1)
    flip_bit(broken / "resume.safetensors")
    capsys.readouterr()
    result = train_member(member, broken, device="cpu")
    err = capsys.readouterr().err
    assert "resume.safetensors" in err and "from scratch" in err
    assert result.status == "done" and result.epochs_run == 3
    status = json.loads((broken / "status.json").read_text())
    assert "sha256 mismatch" in status["restarted"]
    a, b = MemberStore(clean).load_checkpoint("last")[1], MemberStore(broken).load_checkpoint("last")[1]
    # same process, thread count and device: bit for bit
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in MemberStore(broken).read_results()] == [0, 1, 2, 3]


def test_results_missing_a_line_under_done_is_noticed(zoo, capsys):
    spec, root, member = zoo
    lines = (member / "results.jsonl").read_text().splitlines(keepends=True)
    (member / "results.jsonl").write_text("".join(lines[:-1]))  # the last epoch is gone
    code, out, _ = run_cli(["verify", spec, "-p", "smoke", "--root", root], capsys)
    assert code == 2 and "status done, but results.jsonl ends at epoch 2" in out
    for command in ("train", "table"):
        code, _, err = run_cli([command, spec, "-p", "smoke", "--root", root], capsys)
        assert one_line_error(code, err) and "ends at epoch 2" in err


def test_results_with_a_repeated_line_are_refused(zoo, capsys):
    spec, root, member = zoo
    lines = (member / "results.jsonl").read_text().splitlines(keepends=True)
    (member / "results.jsonl").write_text("".join(lines[:2] + lines[1:]))
    code, out, _ = run_cli(["verify", spec, "-p", "smoke", "--root", root], capsys)
    assert code == 2 and "line 3 holds epoch 1, expected 2" in out


def test_verify_passes_a_sound_zoo_and_lists_every_problem(zoo, capsys):
    spec, root, member = zoo
    code, out, _ = run_cli(["verify", spec, "-p", "smoke", "--root", root], capsys)
    assert code == 0 and "0 problems" in out
    (member / "checkpoints" / "epoch_0002.safetensors").unlink()
    flip_bit(root / ZOO / "smoke" / "w0001_b0512_s0" / "checkpoints" / "epoch_0000.safetensors")
    code, out, err = run_cli(["verify", spec, "-p", "smoke", "--root", root], capsys)
    assert code == 2
    assert "checkpoints of epochs 2 are missing" in out and "epoch_0000.safetensors: sha256 mismatch" in out
    assert "2 problems" in err


def test_files_without_a_hash_are_refused(zoo, capsys):
    spec, root, member = zoo
    status = json.loads((member / "status.json").read_text())
    del status["_sha256"]
    (member / "status.json").write_text(json.dumps(status))
    code, _, err = run_cli(["status", spec, "-p", "smoke", "--root", root], capsys)
    assert one_line_error(code, err) and "no integrity hash" in err


# ----------------------------------------------------------------------------- bad input

BAD_SPECS = [
    ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, pct_start: abc}", "pct_start"),
    ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, pct_start: 1.5}", "pct_start"),
    ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, div_factor: 0}", "div_factor"),
    ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, div_factor: -5}", "div_factor"),
    ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, final_div_factor: 0}",
     "final_div_factor"),
    ("batch_size: [256, 512]", "batch_size: [1, 512]", "batch size 1 is below 2"),
    ("width: [1]", "width: [100000]", "GiB"),
    ("name: tiny-digits", "name: ../../x", "zoo name '../../x'"),
    ("name: tiny-digits", "name: Tiny Digits", "zoo name"),
    ("  smoke:", "  ../up:", "profile names"),
    ("epochs: 3", "epochs: 3\n  lbfgs: {max_iter: 0}", "lbfgs"),
]


@pytest.mark.parametrize("old,new,message", BAD_SPECS)
def test_bad_spec_values_are_one_line_and_write_nothing(tmp_path, capsys, old, new, message):
    assert old in TINY_SPEC
    spec = write_spec(tmp_path, TINY_SPEC.replace(old, new))
    root = tmp_path / "zoos"
    code, _, err = run_cli(["train", spec, "-p", "smoke", "--root", root, "--device", "cpu"], capsys)
    assert one_line_error(code, err) and message in err, err
    assert not root.exists() and not (tmp_path.parent / "x").exists()


def test_non_utf8_yaml(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_bytes(TINY_SPEC.encode() + b"# \xff\xfe\n")
    code, _, err = run_cli(["plan", spec, "-p", "smoke"], capsys)
    assert one_line_error(code, err) and "not UTF-8" in err


@pytest.mark.parametrize("args,message", [
    (["train", "digits-resnet18", "-p", "smoke", "--device", "tpu"], "--device must be"),
    (["train", "digits-resnet18", "-p", "smoke", "--device", "cuda:7"], "cuda"),
    (["train", "digits-resnet18", "-p", "smoke", "--workers", "x"], "invalid int value"),
    (["notebook", "02_phases", "-p", "zooz", "digits-vit"], "no parameter 'zooz'"),
    (["notebook", "02_phases", "-p", "import os", "1"], "not a Python identifier"),
    (["notebook", "02_phases", "-p", "zoo", "digits-vit", "-p", "for", "1"], "not a Python identifier"),
])
def test_bad_arguments_are_one_line(args, message, tmp_path, capsys):
    code, _, err = run_cli(args + (["--root", tmp_path / "zoos"] if args[0] == "train" else
                                   ["--out", tmp_path / "nb.ipynb"]), capsys)
    assert one_line_error(code, err) and message in err, err
    assert not (tmp_path / "zoos").exists() and not (tmp_path / "nb.ipynb").exists()


def test_root_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for command in ("train", "status", "table", "verify"):
        code, _, err = run_cli([command, "digits-resnet18", "-p", "smoke", "--root", tmp_path / "f"], capsys)
        assert one_line_error(code, err) and "is a file" in err


def test_destinations_of_the_wrong_kind(zoo, tmp_path, capsys):
    spec, root, _ = zoo
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(["export", spec, "-p", "smoke", "--root", root, "--to", tmp_path / "file"], capsys)
    assert one_line_error(code, err) and "is a file" in err
    (tmp_path / "folder").mkdir()
    code, _, err = run_cli(["table", spec, "-p", "smoke", "--root", root, "--csv", tmp_path / "folder"], capsys)
    assert one_line_error(code, err) and "is a folder" in err


def test_epochs_that_were_not_recorded_and_untrained_zoos(zoo, tmp_path, capsys):
    spec, root, _ = zoo
    code, _, err = run_cli(["table", spec, "-p", "smoke", "--root", root, "--epoch", "999"], capsys)
    assert one_line_error(code, err) and "epoch 999 was not recorded" in err and "0..3" in err
    code, _, err = run_cli(["phases", spec, "-p", "smoke", "--root", root, "--epoch", "1"], capsys)
    assert one_line_error(code, err) and "epoch 1" in err
    code, _, err = run_cli(["phases", spec, "-p", "smoke", "--root", root, "--epoch", "2"], capsys)
    assert one_line_error(code, err) and "no loss-landscape metrics at epoch 2" in err
    for command in ("phases", "table", "verify"):
        code, _, err = run_cli([command, spec, "-p", "smoke", "--root", tmp_path / "empty"], capsys)
        assert one_line_error(code, err) and ("not trained" in err or "no finished member" in err), err


def test_metrics_json_of_the_wrong_shape(zoo, capsys):
    spec, root, member = zoo
    (member / "metrics.json").write_text("[1, 2]\n")
    code, _, err = run_cli(["table", spec, "-p", "smoke", "--root", root], capsys)
    assert one_line_error(code, err) and "metrics.json" in err


def test_a_finished_zoo_is_only_read(zoo, capsys, monkeypatch):
    """train, metrics-free commands and status on a finished zoo write nothing, so they work on a
    read-only file system: every write below raises EROFS."""
    spec, root, _ = zoo
    before = snapshot(root)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(a[0]) if a else None)

    import tempfile

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, flags, *a: read_only(p) if flags & os.O_CREAT else
                        real_open(p, flags, *a))
    code, out, err = run_cli(["train", spec, "-p", "smoke", "--root", root, "--device", "cpu"], capsys)
    assert code == 0 and "trained 0 epochs" in out, err
    for command in ("status", "table", "verify"):
        assert run_cli([command, spec, "-p", "smoke", "--root", root], capsys)[0] == 0
    assert snapshot(root) == before


def test_read_only_root_with_work_to_do_is_one_line(tmp_path, capsys, monkeypatch):
    import tempfile

    spec = write_spec(tmp_path)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "zoos"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(os, "open", read_only)
    code, _, err = run_cli(["train", spec, "-p", "smoke", "--root", tmp_path / "zoos", "--device", "cpu"], capsys)
    assert one_line_error(code, err) and "cannot write" in err


def test_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path)
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > 3:  # a few files fit, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    root = tmp_path / "zoos"
    code, _, err = run_cli(["train", spec, "-p", "smoke", "--root", root, "--device", "cpu"], capsys)
    assert one_line_error(code, err) and "no space left" in err
    assert not [p for p in root.rglob("*.tmp")]
    monkeypatch.setattr(os, "fsync", real_fsync)
    code, out, err = run_cli(["train", spec, "-p", "smoke", "--root", root, "--device", "cpu"], capsys)
    assert code == 0 and "done 2" in out, err


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    env = {**os.environ, "PHASEZOO_DEBUG": "1"}
    proc = subprocess.run(_cli() + ["train", "digits-resnet18", "-p", "smoke", "--device", "tpu",
                                    "--root", str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


# ----------------------------------------------------------------------------- processes


def _cli() -> list[str]:
    return [sys.executable, "-c", "import torch; torch.set_num_threads(1); from phasezoo.cli import main; main()"]


def test_killed_pool_worker_is_one_line(tmp_path):
    spec = write_spec(tmp_path, TINY_SPEC.replace("epochs: 3", "epochs: 40"))
    root = tmp_path / "zoos"
    proc = subprocess.Popen(_cli() + ["train", str(spec), "-p", "smoke", "--root", str(root), "--device", "cpu",
                                      "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    target = root / ZOO / "smoke" / MEMBER / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not target.exists():
        time.sleep(0.05)
    kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    # the pool's workers run multiprocessing's spawn_main (the resource tracker does not)
    workers = [int(p) for p in kids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert workers
    os.kill(workers[0], 9)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.startswith("phasezoo: error")]
    assert proc.returncode == 2 and "Traceback" not in err
    assert len(lines) == 1 and "worker process died" in lines[0]


def test_second_writer_is_refused_while_the_first_runs(tiny_spec, tmp_path, capsys):
    """A live holder: exit 2 at once naming its PID; a dead holder's lock is taken over."""
    root = tmp_path / "zoos"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from phasezoo.store import ZooStore\n"
        f"lock = ZooStore({str(root)!r}, {ZOO!r}, 'smoke').lock('train').__enter__()\n"
        "print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        t0 = time.perf_counter()
        for command in ("train", "metrics", "downstream"):
            code, _, err = run_cli([command, tiny_spec, "-p", "smoke", "--root", root, "--device", "cpu"], capsys)
            if command == "train":
                assert one_line_error(code, err) and f"locked by PID {holder.pid} on " in err and "since" in err
            else:  # nothing trained yet: these stop before the lock
                assert code == 2
        assert time.perf_counter() - t0 < 30
        assert not (root / ZOO / "smoke" / MEMBER).exists()
    finally:
        holder.kill()
        holder.wait()
    code, out, _ = run_cli(["train", tiny_spec, "-p", "smoke", "--root", root, "--device", "cpu"], capsys)
    assert code == 0 and "done 2" in out


def test_two_trains_at_once_never_train_an_epoch_twice(tmp_path):
    spec = write_spec(tmp_path, TINY_SPEC.replace("epochs: 3", "epochs: 40"))
    root = tmp_path / "zoos"
    cmd = _cli() + ["train", str(spec), "-p", "smoke", "--root", str(root), "--device", "cpu"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    target = root / ZOO / "smoke" / MEMBER / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not target.exists():
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "locked by PID" in second.stderr
    first.communicate(timeout=300)
    assert first.returncode == 0
    for name in (MEMBER, "w0001_b0512_s0"):
        assert [r["epoch"] for r in MemberStore(root / ZOO / "smoke" / name).read_results()] == list(range(41))


def test_stale_temp_files_are_removed_and_files_honour_the_umask(tmp_path, capsys):
    spec = write_spec(tmp_path, TINY_SPEC.replace("batch_size: [256, 512]", "batch_size: [256]"))
    root = tmp_path / "zoos"
    member = root / ZOO / "smoke" / MEMBER
    member.mkdir(parents=True)
    stale = member / ".results.jsonl.ab12cd_x.tmp"
    stale.write_text("half a write")
    keep = member / "notes.tmp"  # not one of ours
    keep.write_text("mine")
    old = os.umask(0o002)
    try:
        import importlib

        import phasezoo.store as store

        importlib.reload(store)  # the umask is read once, at import
        from phasezoo.zoo import train_zoo

        train_zoo(spec, "smoke", root, device="cpu", progress=False)
    finally:
        os.umask(old)
        importlib.reload(store)
    assert not stale.exists() and keep.exists()
    for p in member.rglob("*.json*"):
        assert p.stat().st_mode & 0o777 == 0o664, p
    assert (member / "checkpoints" / "epoch_0003.safetensors").stat().st_mode & 0o777 == 0o664


def test_training_environment_is_recorded_and_a_resume_uses_its_thread_count(tmp_path):
    from phasezoo.spec import load_spec
    from phasezoo.train import train_member

    member = load_spec(write_spec(tmp_path)).members("smoke")[0]
    torch.set_num_threads(2)
    try:
        train_member(member, tmp_path / "m", device="cpu", stop_after_epoch=1)
        torch.set_num_threads(1)
        seen = []
        real = torch.set_num_threads
        torch.set_num_threads = lambda n: (seen.append(n), real(n))
        try:
            train_member(member, tmp_path / "m", device="cpu")
        finally:
            torch.set_num_threads = real
    finally:
        torch.set_num_threads(1)
    status = json.loads((tmp_path / "m" / "status.json").read_text())
    assert status["trained_with"] == {"torch": torch.__version__, "device": "cpu",
                                      "processor": processor_name("cpu"), "threads": 2}
    assert status["trained_with"]["processor"]
    assert seen[0] == 2 and torch.get_num_threads() == 1


def test_a_resume_on_another_processor_warns_and_is_recorded(tmp_path, monkeypatch, capsys):
    from phasezoo import train
    from phasezoo.spec import load_spec

    member = load_spec(write_spec(tmp_path)).members("smoke")[0]
    train.train_member(member, tmp_path / "m", device="cpu", stop_after_epoch=1)
    capsys.readouterr()
    monkeypatch.setattr(train, "processor_name", lambda device: "Other CPU")
    train.train_member(member, tmp_path / "m", device="cpu")
    err = capsys.readouterr().err
    assert "(Other CPU)" in err and "not bit-for-bit reproducible" in err
    status = json.loads((tmp_path / "m" / "status.json").read_text())
    assert status["trained_with"]["processor"] == processor_name("cpu")
    resumed = status["resumed_with"][0]
    assert resumed["processor"] == "Other CPU" and resumed["from_epoch"] == status["epoch"] - 1, resumed


def test_a_member_started_before_the_processor_was_recorded_resumes_without_a_warning(tmp_path, monkeypatch,
                                                                                     capsys):
    from phasezoo import train
    from phasezoo.spec import load_spec

    member = load_spec(write_spec(tmp_path)).members("smoke")[0]
    real = train.training_environment
    with monkeypatch.context() as m:
        m.setattr(train, "training_environment", lambda d: {k: v for k, v in real(d).items() if k != "processor"})
        train.train_member(member, tmp_path / "m", device="cpu", stop_after_epoch=1)
    capsys.readouterr()
    train.train_member(member, tmp_path / "m", device="cpu")
    assert "not bit-for-bit" not in capsys.readouterr().err
    assert "resumed_with" not in json.loads((tmp_path / "m" / "status.json").read_text())


def test_progress_lines_when_not_in_a_terminal(tiny_spec, tmp_path):
    proc = subprocess.run(_cli() + ["train", str(tiny_spec), "-p", "smoke", "--root", str(tmp_path / "zoos"),
                                    "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("phasezoo: train ")]
    assert len(lines) == 2
    assert f"{ZOO}/smoke: {MEMBER} done" in lines[0] and "[1/2]" in lines[0] and " left" in lines[0]
    assert "[2/2]" in lines[1] and " s " in lines[1]
