"""Progress a person can follow, in a terminal and in a log.

In a terminal (stderr is a TTY) a tqdm bar; otherwise (CI, ``| tee``, a log file) one line per
finished member or task on stderr, flushed at once::

    phasezoo: train digits-resnet18/mini: w0004_b0032_s0 done 23.4 s [7/60] 2m41s left

The time left is the mean wall time per finished item of this run times the items still to do
(the finished ones of earlier runs are counted as done, not timed).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm  # the text bar: tqdm.auto would want ipywidgets in a notebook kernel and warn on every page


def format_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class Progress:
    """Counts finished items of ``total`` (``done`` of them finished before this run)."""

    def __init__(self, desc: str, total: int, *, done: int = 0, unit: str = "task",
                 tty: bool | None = None, stream: TextIO | None = None):
        self.desc, self.total, self.done, self.unit = desc, total, done, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._start_done = done
        self._t0 = time.perf_counter()
        self._bar = None
        if self.tty:
            self._bar = tqdm(total=total, initial=done, desc=desc, unit=unit, file=self.stream)

    def eta(self) -> float | None:
        ran = self.done - self._start_done
        if ran <= 0:
            return None
        return (time.perf_counter() - self._t0) / ran * (self.total - self.done)

    def update(self, name: str, status: str, seconds: float, n: int = 1) -> None:
        """``n`` items finished (one job): ``name`` with ``status`` after ``seconds`` of its own work."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            self._bar.set_postfix(last=f"{name} {status}")
            return
        eta = self.eta()
        left = f" {format_seconds(eta)} left" if eta is not None and self.done < self.total else ""
        print(f"phasezoo: {self.desc}: {name} {status} {seconds:.1f} s [{self.done}/{self.total}]{left}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
