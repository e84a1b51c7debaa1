"""One progress line per unit of long work (a model, a replicate, an epoch): elapsed time and what remains.

The estimate of what remains is the mean time of the units done so far times the units left; units
that were reused (read from an earlier run, nearly free) are counted but say so, and an estimate is
given only once one unit has taken real time. ``make reproduce`` prints these lines as the notebooks
print them.
"""
from __future__ import annotations

import time
from typing import Callable

from .errors import ConfigError


def duration(seconds: float) -> str:
    """``75`` -> ``"1 min 15 s"``; ``3725`` -> ``"1 h 2 min"``; under a minute ``"42 s"``."""
    if seconds != seconds or seconds < 0:
        raise ConfigError(f"duration: seconds must be >= 0, got {seconds}")
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class Progress:
    """``Progress(total, "stage 1", log=print)``; ``step("replicate 0 stage1_w4: FRR 0.39")`` after each unit
    prints ``[stage 1 3/24] replicate 0 stage1_w4: FRR 0.39 | 1 min 05 s elapsed, ~7 min 35 s left``.

    ``reused=True`` marks a unit that cost (almost) nothing: it is not used for the estimate.
    ``clock`` is for tests (a function returning seconds).
    """

    def __init__(self, total: int, label: str, log: Callable[[str], None] | None = print, clock=time.monotonic):
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ConfigError(f"Progress: total must be an integer >= 1, got {total!r}")
        self.total, self.label, self.log, self.clock = total, label, log, clock
        self.t0 = clock()
        self.done = 0
        self.timed, self.timed_seconds = 0, 0.0
        self._last = self.t0

    def remaining_seconds(self) -> float | None:
        """Mean seconds of the timed units so far times the units left; None before any timed unit."""
        if self.timed == 0:
            return None
        return self.timed_seconds / self.timed * (self.total - self.done)

    def step(self, message: str = "", reused: bool = False) -> str:
        now = self.clock()
        took, self._last = now - self._last, now
        self.done = min(self.done + 1, self.total)
        if not reused:
            self.timed += 1
            self.timed_seconds += took
        left = self.remaining_seconds()
        tail = f"{duration(now - self.t0)} elapsed"
        if self.done >= self.total:
            tail += ", done"
        elif left is not None:
            tail += f", ~{duration(left)} left"
        line = f"[{self.label} {self.done}/{self.total}] {message}{' (reused)' if reused else ''} | {tail}"
        if self.log:
            self.log(line)
        return line


def thinned(log: Callable[[str], None] | None, every: int, prefix: str = "") -> Callable[[str], None] | None:
    """A log function that passes one epoch line (``"epoch  10/60 ..."``, as :func:`kwslib.train.loop.fit` writes
    them) in ``every``, and the last epoch, and every other line; each with ``prefix``. For the replicates
    after the first, whose full epoch logs would repeat replicate 0's, but whose minutes should not be silent."""
    if log is None:
        return None
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"thinned: every must be an integer >= 1, got {every!r}")

    def out(line: str) -> None:
        words = line.split()
        if len(words) > 1 and words[0] == "epoch" and "/" in words[1]:
            done, total = words[1].split("/", 1)
            if done.isdigit() and total.isdigit() and int(done) % every and int(done) != int(total):
                return
        log(prefix + line)

    return out
