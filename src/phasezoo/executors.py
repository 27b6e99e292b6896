"""Executors: where the members of a zoo train, and the one job loop that drives them.

An executor maps a picklable function over a list of tasks and yields results as they finish,
in any order. The runner does not care where the work happens: in this process, in a local
process pool, or on a Ray cluster (:class:`RayExecutor`, paper scale), without touching the
training code. :func:`make_executor` picks one; :func:`check_executor` refuses bad options in one
line before anything is written.

:func:`run_zoo_jobs` is the resumable skeleton ``train``, ``metrics`` and ``downstream`` share
(plan, verify, lock, re-plan, run) over typed :class:`Job` s; its loop, :func:`run_jobs`, times
each job where it runs, reports progress (:mod:`phasezoo.progress`) and turns a crashed worker
into one line. :func:`settings_key` is the one canonical form of the settings a stored result
was computed with.

External programs (``jupyter-book``, a headless browser) start here too
(:func:`run_program`, :func:`start_program`, :func:`stop_program`): this is the one module
that starts processes.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import torch

from phasezoo.errors import PhaseZooError
from phasezoo.progress import Progress
from phasezoo.store import ZooStore


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cpu`` / ``cuda`` / ``cuda:N`` as given.
    Anything else, or a CUDA device this machine lacks, is a one-line :class:`PhaseZooError`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise PhaseZooError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PhaseZooError(f"--device {device} was requested but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PhaseZooError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA devices")
    return dev


def run_program(cmd: Sequence[str], log: str | os.PathLike, env: dict[str, str] | None = None) -> int:
    """Run an external program to completion, its stdout and stderr into the file ``log``;
    returns its exit code."""
    with open(log, "w") as f:
        return subprocess.run(list(cmd), stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def start_program(cmd: Sequence[str]) -> subprocess.Popen:
    """Start an external program (a headless browser) in a session of its own, its output
    discarded; :func:`stop_program` ends it with every helper process it started."""
    return subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop_program(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM to the program's whole session, then SIGKILL if it has not exited in ``timeout``
    seconds (Chromium's renderer and GPU helpers share its session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


class WorkerCrashError(PhaseZooError):
    """A worker process died (killed, or out of memory) while running a task."""


class Executor(Protocol):
    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]: ...


class InProcessExecutor:
    """Run tasks one after another in this process (uses all of torch's intra-op threads)."""

    def map_unordered(self, fn, tasks):
        for task in tasks:
            yield fn(task)


#: how often a pool worker checks that the process that started it is still alive (seconds)
ORPHAN_CHECK_S = 0.5


def processor_name(device: torch.device | str = "cpu") -> str:
    """The processor whose kernels run on ``device``: a CUDA device's name, else the CPU model
    (``model name`` in ``/proc/cpuinfo`` on Linux, else :func:`platform.processor`). The same
    code and torch train other bits on another processor (the phases chapter compares two)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: the variables that size the thread pools of OpenMP (torch), MKL and OpenBLAS (numpy, scipy)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextmanager
def child_threads(threads: int) -> Iterator[None]:
    """Context: processes started inside it size their thread pools to ``threads`` (the
    :data:`THREAD_VARIABLES` the user has not set), so that N processes on N·t cores do not each
    start a thread per core. Several on two cores, each with two threads, ran the book's
    notebooks and scipy's Lanczos several times slower than with one thread each."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    for k, v in saved.items():
        if v is None:
            os.environ[k] = str(max(1, int(threads)))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    _exit_when_orphaned(os.getppid())


def _exit_when_orphaned(parent: int) -> None:
    """Watch the parent from a daemon thread and end this worker when it is gone.

    When the main process is killed (Ctrl-C twice, SIGKILL, a closed terminal) the pool's
    workers would otherwise finish the tasks already queued to them, writing into a zoo that the
    user may be deleting or retraining. A worker killed mid-epoch loses only that epoch: every
    write is atomic and the next run resumes.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="phasezoo-orphan-watch", daemon=True).start()


class LocalPoolExecutor:
    """Run tasks in ``workers`` processes, splitting the machine's cores between them.

    Small models do not use many cores well, so several single-threaded workers train a grid of
    small members faster than one process with all threads. Processes are spawned (not forked):
    forking a process that has started torch's thread pools can deadlock.
    """

    def __init__(self, workers: int, threads_per_worker: int | None = None):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self.threads = threads_per_worker or max(1, available_cores() // workers)

    def map_unordered(self, fn, tasks):
        tasks = list(tasks)
        if not tasks:
            return
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(self.threads,)) as pool:
            with child_threads(self.threads):  # the workers are spawned by the submits
                futures = [pool.submit(fn, t) for t in tasks]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            except BrokenProcessPool:
                for fut in futures:
                    fut.cancel()
                raise WorkerCrashError(
                    "a worker process died (killed, or out of memory); finished work is stored, "
                    "rerun the same command to resume") from None


def _ray_task(fn: Callable[[Any], Any], task: Any, threads: int) -> Any:
    """What a Ray worker runs for one task: torch's threads set to the task's CPUs (as
    :func:`_init_worker` does for a pool worker), then ``fn(task)``."""
    torch.set_num_threads(threads)
    return fn(task)


class RayExecutor:
    """Run tasks as Ray core tasks, each reserving ``cpus_per_task`` CPUs and ``gpus_per_task``
    GPUs (fractions allowed: four tasks share a GPU at 0.25), on the cluster at ``address``
    (``"auto"``: the one ``ray start`` runs on this machine; ``ray://host:10001``: a remote one)
    or, without an address, on a local Ray started here with this machine's cores.

    Ray only schedules. Every task is submitted at once, Ray runs as many as the cluster's
    resources allow, and results come back as they finish (``ray.wait``); the caller stores them
    from this process, the driver, which holds the zoo's lock. A training task writes its member's
    folder itself, atomically, as a pool worker does, so the workers need the zoo root and the data
    directory on a filesystem they share with the driver. Nothing is kept in Ray: when the driver
    is killed Ray ends the job's tasks, and a rerun of the same command plans from the store and
    resumes exactly as with the local executor. Tasks are not retried (``max_retries=0``): a task
    that raises re-raises its own exception here, a worker or node that dies is one
    :class:`WorkerCrashError`, and the rerun picks up what is missing.

    Ray core, not Ray Tune: the grid of a zoo is fixed, with no search and no early stopping,
    and the store is the checkpoint, so Tune's trial bookkeeping (its own results, checkpoints
    and experiment state) would duplicate what the store already records, and resume from a
    second source of truth. Tasks with resources are all the scheduling the zoo needs.
    """

    def __init__(self, address: str | None = None, cpus_per_task: float = 1.0, gpus_per_task: float = 0.0):
        self.address = address
        self.cpus_per_task = float(cpus_per_task)
        self.gpus_per_task = float(gpus_per_task)
        self.threads = max(1, int(self.cpus_per_task))

    def _connect(self):
        import ray  # lazy: the optional extra "ray"; only --executor ray needs it

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=max(available_cores(), math.ceil(self.cpus_per_task)), include_dashboard=False,
                         log_to_driver=False, logging_level=logging.WARNING)
        return ray

    def map_unordered(self, fn, tasks):
        tasks = list(tasks)
        if not tasks:
            return
        ray = self._connect()
        remote = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=0)(_ray_task)
        fn_ref = ray.put(fn)
        pending = [remote.remote(fn_ref, t, self.threads) for t in tasks]
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayTaskError as e:
                    # the task raised: the same exception as in-process or in the pool
                    raise (e.cause if isinstance(e.cause, BaseException) else e) from None
                except ray.exceptions.RayError as e:
                    raise WorkerCrashError(
                        f"a Ray worker or node died ({type(e).__name__}); finished work is stored, "
                        "rerun the same command to resume") from None
                yield result
        finally:
            for ref in pending:  # an error, or the caller stopped early: end the tasks still queued
                ray.cancel(ref, force=True)


#: the executors of ``--executor``
EXECUTORS = ("local", "ray")


def check_executor(executor: str = "local", workers: int = 1, ray_address: str | None = None,
                   cpus_per_task: float = 1.0, gpus_per_task: float = 0.0) -> None:
    """Refuse bad executor options in one line (:class:`PhaseZooError`), before anything is
    read or written: an unknown executor, resources that are not positive finite numbers
    (``gpus_per_task`` may be 0), Ray options with the local executor, or Ray not installed."""
    _check_workers(workers)
    if executor not in EXECUTORS:
        raise PhaseZooError(f"--executor must be {' or '.join(EXECUTORS)}, got {executor!r}")
    for flag, value, least in (("--cpus-per-task", cpus_per_task, "above 0"), ("--gpus-per-task", gpus_per_task, "0 or more")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0 or (value == 0 and flag == "--cpus-per-task"):
            raise PhaseZooError(f"{flag} must be a number {least}, got {value}")
    if executor == "local":
        for flag, value, default in (("--ray-address", ray_address, None), ("--cpus-per-task", cpus_per_task, 1.0),
                                     ("--gpus-per-task", gpus_per_task, 0.0)):
            if value != default:
                raise PhaseZooError(f"{flag} applies to --executor ray only (the local executor runs --workers processes)")
        return
    if importlib.util.find_spec("ray") is None:
        raise PhaseZooError("--executor ray needs Ray, which is not installed: pip install -e .[ray]")


def task_device(device: str = "auto", executor: str = "local", gpus_per_task: float = 0.0) -> torch.device:
    """The device the jobs run on. Local: :func:`resolve_device` on this machine. Ray: the tasks
    run elsewhere, and Ray gives a task a GPU (its own ``cuda``) only when it reserves one, so
    ``--gpus-per-task`` above 0 means ``cuda`` (``auto`` too) and 0 means ``cpu``; any other
    pairing is a one-line :class:`PhaseZooError`."""
    if executor != "ray":
        return resolve_device(device)
    if gpus_per_task > 0:
        if device in ("auto", "cuda"):
            return torch.device("cuda")
        raise PhaseZooError(f"--device {device} with --gpus-per-task {gpus_per_task:g}: a Ray task sees only "
                            "the GPU it reserved; use --device auto or cuda")
    if device in ("auto", "cpu"):
        return torch.device("cpu")
    raise PhaseZooError(f"--device {device} with --executor ray needs --gpus-per-task above 0 "
                        "(a Ray task gets a GPU only when it reserves one)")


def make_executor(workers: int = 1, executor: str = "local", ray_address: str | None = None,
                  cpus_per_task: float = 1.0, gpus_per_task: float = 0.0) -> Executor:
    """``local``: ``workers == 1`` in-process, more a local process pool; ``ray``: a
    :class:`RayExecutor` (``workers`` does not apply: the cluster's resources bound the tasks
    in flight). Options are checked by :func:`check_executor`."""
    check_executor(executor, workers, ray_address, cpus_per_task, gpus_per_task)
    if executor == "ray":
        return RayExecutor(ray_address, cpus_per_task, gpus_per_task)
    return InProcessExecutor() if workers <= 1 else LocalPoolExecutor(workers)


@dataclass(frozen=True)
class Job:
    """One unit of work of a zoo command (train a member or a packed cell, measure a member or a seed pair, run
    the downstream methods on a member or a cell).

    ``kind`` picks the worker function (the ``run`` mapping of :func:`run_jobs`), which is
    called as ``run[kind](*args)`` in a worker process (``args`` must pickle); ``name`` labels
    the job in the progress output; ``key`` says where the caller stores its result; ``items``
    how many items of the progress count it finishes (a packed training job: its seeds)."""

    kind: str
    name: str
    key: str
    args: tuple = ()
    items: int = 1


def settings_key(settings: Mapping[str, Any], ignore: Sequence[str] = ()) -> str:
    """The canonical string of a job's settings (sorted JSON, the ``ignore`` keys left out at
    every depth): a stored result whose key differs was computed otherwise and is computed again."""
    def strip(d: Any) -> Any:
        return {k: strip(v) for k, v in d.items() if k not in ignore} if isinstance(d, Mapping) else d

    return json.dumps(strip(settings), sort_keys=True)


class _Run:
    """``run[job.kind](*job.args)`` for ``(index, job)``, returning ``(index, result, seconds)``;
    picklable, so it runs in worker processes."""

    def __init__(self, run: Mapping[str, Callable[..., Any]]):
        self.run = dict(run)

    def __call__(self, indexed: tuple[int, Job]) -> tuple[int, Any, float]:
        index, job = indexed
        t0 = time.perf_counter()
        result = self.run[job.kind](*job.args)
        return index, result, time.perf_counter() - t0


def _check_workers(workers: int) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PhaseZooError(f"--workers must be at least 1, got {workers}")


def run_jobs(
    jobs: Sequence[Job],
    run: Mapping[str, Callable[..., Any]],
    *,
    desc: str,
    workers: int = 1,
    done: int = 0,
    unit: str = "task",
    progress: bool | None = None,
    status: Callable[[Any], str] = lambda result: "ok",
    executor: str = "local",
    ray_address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
) -> Iterator[tuple[Job, Any]]:
    """Run every job (``run[job.kind](*job.args)``) on ``workers`` local processes, or on Ray
    (``executor="ray"``, see :func:`make_executor`), yielding ``(job, result)`` as each finishes
    (the caller stores it: only the main process writes).

    Progress counts ``done`` earlier-finished items plus these jobs: ``progress=None`` shows a
    bar in a terminal and one line per job otherwise, ``True`` a bar, ``False`` nothing; each
    line names ``job.name`` and ``status(result)``; a job counts as ``job.items`` items (a
    packed training job as its seeds).
    """
    options = dict(executor=executor, ray_address=ray_address, cpus_per_task=cpus_per_task,
                   gpus_per_task=gpus_per_task)
    check_executor(workers=workers, **options)
    jobs = list(jobs)
    if not jobs:
        return
    bar = None if progress is False else Progress(desc, done + sum(j.items for j in jobs), done=done, unit=unit,
                                                   tty=True if progress else None)
    try:
        for index, result, seconds in make_executor(workers, **options).map_unordered(_Run(run), enumerate(jobs)):
            yield jobs[index], result
            if bar is not None:
                bar.update(jobs[index].name, status(result), seconds, jobs[index].items)
    finally:
        if bar is not None:
            bar.close()


def run_zoo_jobs(
    store: ZooStore,
    command: str,
    plan: Callable[[], list[Job]],
    run: Mapping[str, Callable[..., Any]],
    *,
    check: Callable[[], None] | None = None,
    prepare: Callable[[list[Job]], None] | None = None,
    begin: Callable[[], None] | None = None,
    total: int | None = None,
    workers: int = 1,
    unit: str = "task",
    progress: bool | None = None,
    status: Callable[[Any], str] = lambda result: "ok",
    executor: str = "local",
    ray_address: str | None = None,
    cpus_per_task: float = 1.0,
    gpus_per_task: float = 0.0,
) -> Iterator[tuple[Job, Any]]:
    """The resumable skeleton of ``train``, ``metrics`` and ``downstream`` on one zoo.

    1. ``plan()`` lists the jobs still missing; ``check()`` verifies every stored file they
       will read (raising a one-line error), before anything is written;
    2. nothing missing: return without writing (a finished zoo may be read-only);
    3. ``prepare(jobs)`` (dataset files, memory) may still refuse, then the zoo's lock is taken
       (a second writer exits at once), stale temporary files are removed, ``begin()`` runs
       (zoo-level records) and the plan is made again under the lock;
    4. the jobs run through :func:`run_jobs`; each ``(job, result)`` is yielded for the caller
       to store while the lock is held (only the main process writes). ``total`` (default: the
       jobs) counts the items of the whole zoo for the progress output. ``executor`` and the
       Ray options pick where they run (:func:`make_executor`); the lock is the driver's.
    """
    options = dict(executor=executor, ray_address=ray_address, cpus_per_task=cpus_per_task,
                   gpus_per_task=gpus_per_task)
    check_executor(workers=workers, **options)  # before the plan reads anything
    jobs = plan()
    if check is not None:
        check()
    if not jobs:
        return
    if prepare is not None:
        prepare(jobs)
    with store.lock(command):
        store.remove_stale_temps()
        if begin is not None:
            begin()
        jobs = plan()  # again: another run may have finished some in between
        done = (total - sum(j.items for j in jobs)) if total is not None else 0
        yield from run_jobs(jobs, run, desc=f"{command} {store.name}", workers=workers,
                            done=done, unit=unit, progress=progress, status=status, **options)
