"""Executors: where the members of a zoo train.

An executor maps a picklable function over a list of tasks and yields results as they finish,
in any order. The runner does not care where the work happens, so a Ray Tune executor (paper
scale, clusters) slots in beside these two without touching the training code.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterable, Iterator, Protocol

import torch


class Executor(Protocol):
    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]: ...


class InProcessExecutor:
    """Run tasks one after another in this process (uses all of torch's intra-op threads)."""

    def map_unordered(self, fn, tasks):
        for task in tasks:
            yield fn(task)


#: how often a pool worker checks that the process that started it is still alive (seconds)
ORPHAN_CHECK_S = 0.5


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
    import threading
    import time

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
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.threads = threads_per_worker or max(1, cores // workers)

    def map_unordered(self, fn, tasks):
        tasks = list(tasks)
        if not tasks:
            return
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(self.threads,)) as pool:
            futures = [pool.submit(fn, t) for t in tasks]
            for fut in as_completed(futures):
                yield fut.result()


def make_executor(workers: int = 1) -> Executor:
    """``workers == 1``: in-process; more: a local process pool."""
    return InProcessExecutor() if workers <= 1 else LocalPoolExecutor(workers)
