"""The one job runner: typed jobs dispatched by kind, one settings key."""

from __future__ import annotations

import os

import pytest

from phasezoo.errors import PhaseZooError
from phasezoo.executors import Job, run_jobs, settings_key


def _square(x: int) -> int:
    return x * x


def _pid_and(x: int) -> tuple[int, int]:
    return os.getpid(), x + 1


@pytest.mark.parametrize("workers", [1, 2])
def test_jobs_run_by_kind_and_come_back_with_their_results(workers):
    jobs = [Job("square", f"square {i}", str(i), (i,)) for i in range(4)] + [Job("inc", "inc", "k", (10,))]
    out = dict((job.key, result) for job, result in run_jobs(jobs, {"square": _square, "inc": _pid_and},
                                                                desc="test", workers=workers, progress=False))
    assert {k: out[k] for k in "0123"} == {"0": 0, "1": 1, "2": 4, "3": 9}
    pid, value = out["k"]
    assert value == 11 and (pid == os.getpid()) == (workers == 1)  # workers > 1: another process


def test_workers_below_one_is_a_one_line_error():
    with pytest.raises(PhaseZooError, match="--workers must be at least 1, got 0"):
        list(run_jobs([Job("square", "s", "s", (1,))], {"square": _square}, desc="t", workers=0))


def test_settings_key_is_canonical_and_can_leave_keys_out():
    a = {"mc": {"lr": 0.1, "min_steps": 200, "epochs": 10}, "cka": {"n": 1}}
    b = {"cka": {"n": 1}, "mc": {"epochs": 10, "lr": 0.1, "min_steps": 500}}
    assert settings_key(a) != settings_key(b)
    assert settings_key(a, ["min_steps"]) == settings_key(b, ["min_steps"])
    assert settings_key({"x": 1, "y": 2}) == settings_key({"y": 2, "x": 1})
