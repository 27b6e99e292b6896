"""The Ray executor: the tiny zoo trains and is measured on a local Ray cluster with the same
stored results as on the local executor, a killed driver resumes, and bad options are one line.

One local Ray cluster (2 CPUs) serves the module; the tests that need it skip cleanly when Ray
is not installed (``pip install -e .[ray]``), the option checks run either way.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phasezoo import zoo as zoo_ops
from phasezoo.cli import main
from phasezoo.executors import Job, WorkerCrashError, run_jobs
from phasezoo.landscape.runner import compute_metrics
from phasezoo.store import ZooStore
from tests.test_metrics import SPEC as METRICS_SPEC
from tests.conftest import TINY_SPEC, write_spec

#: the killed-driver zoo: 4 members, 2 at a time, so that some are missing when the first is stored
KILL_SPEC = TINY_SPEC.replace("seed: [0]", "seed: [0, 1]")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _rows(zdir: Path) -> dict[str, list[dict]]:
    return {d.name: [json.loads(line) for line in (d / "results.jsonl").read_text().splitlines()]
            for d in sorted(zdir.iterdir()) if (d / "results.jsonl").is_file()}


def test_ray_trains_and_measures_as_the_local_executor(ray_cluster, tmp_path):
    spec = write_spec(tmp_path, METRICS_SPEC)
    for name, options in (("local", {}), ("ray", dict(executor="ray"))):
        root = tmp_path / name
        zoo_ops.train_zoo(spec, "smoke", root, device="cpu", progress=False, **options)
        info = compute_metrics(spec, "smoke", root, device="cpu", progress=False, **options)
        assert info["tasks"] == 3  # two Hessians, one seed pair
        assert zoo_ops.zoo_status(spec, "smoke", root)["done"] == 2
    local, ray = (tmp_path / n / "tiny-digits" / "smoke" for n in ("local", "ray"))
    for member, rows in _rows(local).items():
        other = _rows(ray)[member]
        assert [r["epoch"] for r in rows] == [r["epoch"] for r in other]
        for a, b in zip(rows, other):
            for k in ("train_loss", "test_loss", "test_acc"):
                assert math.isclose(a[k], b[k], rel_tol=1e-4, abs_tol=1e-6), (member, a["epoch"], k)
        assert json.loads((local / member / "status.json").read_text())["status"] == \
            json.loads((ray / member / "status.json").read_text())["status"]
        ha = json.loads((local / member / "metrics.json").read_text())["3"]["hessian_trace"]
        hb = json.loads((ray / member / "metrics.json").read_text())["3"]["hessian_trace"]
        assert ha["settings_key"] == hb["settings_key"]
        assert math.isclose(ha["value"], hb["value"], rel_tol=1e-3, abs_tol=1e-6)
    # resumable on Ray as locally: nothing is left to do
    assert compute_metrics(spec, "smoke", tmp_path / "ray", device="cpu", progress=False, executor="ray")["tasks"] == 0


def test_a_failing_task_raises_its_error_and_a_dead_worker_is_one_line(ray_cluster):
    def run(job: Job) -> list:
        return list(run_jobs([job], {"sqrt": math.sqrt, "exit": os._exit}, desc="t", executor="ray", progress=False))

    assert run(Job("sqrt", "sqrt", "s", (4.0,)))[0][1] == 2.0
    with pytest.raises(ValueError, match="math domain error"):  # the task's own exception, as in-process
        run(Job("sqrt", "sqrt", "s", (-1.0,)))
    with pytest.raises(WorkerCrashError, match="rerun the same command to resume"):
        run(Job("exit", "exit", "e", (1,)))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from phasezoo.cli import main; main()", *args]


def test_a_killed_driver_resumes_on_rerun(ray_cluster, tmp_path):
    spec = write_spec(tmp_path, KILL_SPEC)
    root = tmp_path / "zoos"
    args = ("train", str(spec), "--profile", "smoke", "--root", str(root), "--device", "cpu", "--executor", "ray")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # the first run starts a Ray of its own (no --ray-address), as a user's `--executor ray` does
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while (counts := zoo_ops.zoo_status(spec, "smoke", root) if root.exists() else {"done": 0})["done"] < 1:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no member was stored within 120 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert counts["done"] < 4  # killed mid-zoo
    # the rerun joins the module's cluster (--ray-address) and finishes what is missing
    rerun = subprocess.run(_cli(*args, "--ray-address", ray_cluster), env=env, capture_output=True, text=True,
                           timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert zoo_ops.zoo_status(spec, "smoke", root) == {"done": 4, "partial": 0, "pending": 0, "diverged": 0}
    verify = subprocess.run(_cli("verify", str(spec), "--profile", "smoke", "--root", str(root)), env=env,
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not ZooStore(root, "tiny-digits", "smoke").remove_stale_temps()


@pytest.mark.parametrize("command", ["train", "metrics", "downstream"])
@pytest.mark.parametrize("options, message", [
    (["--executor", "ray", "--cpus-per-task", "0"], "--cpus-per-task must be a number above 0, got 0.0"),
    (["--executor", "ray", "--cpus-per-task", "nan"], "--cpus-per-task must be a number above 0, got nan"),
    (["--executor", "ray", "--gpus-per-task", "-0.5"], "--gpus-per-task must be a number 0 or more, got -0.5"),
    (["--ray-address", "auto"], "--ray-address applies to --executor ray only"),
    (["--gpus-per-task", "0.25"], "--gpus-per-task applies to --executor ray only"),
    (["--executor", "ray", "--device", "cuda:1", "--gpus-per-task", "1"], "a Ray task sees only the GPU it reserved"),
    (["--executor", "ray", "--device", "cuda"], "needs --gpus-per-task above 0"),
    (["--executor", "dask"], "invalid choice: 'dask'"),
    (["--cpus-per-task", "one"], "invalid float value: 'one'"),
])
def test_bad_executor_options_are_one_line_and_write_nothing(tiny_spec, tmp_path, capsys, command, options, message):
    root = tmp_path / "zoos"
    with pytest.raises(SystemExit) as exc:
        main([command, str(tiny_spec), "--profile", "smoke", "--root", str(root), *options])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not root.exists()


def test_executor_ray_without_ray_says_how_to_install_it(tiny_spec, tmp_path, capsys, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    root = tmp_path / "zoos"
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tiny_spec), "--profile", "smoke", "--root", str(root), "--executor", "ray"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "phasezoo: error: --executor ray needs Ray, which is not installed: pip install -e .[ray]"
    assert not root.exists()
