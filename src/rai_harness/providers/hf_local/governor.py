"""One CPU ``generate`` at a time, and its intra-op thread count.

CPU threads
    With ``num_threads`` unset, the thread count on the CPU adapts while a batch runs:
    torch's count (the physical cores) when the CPU is free, fewer while other processes
    (or other threads of this one) keep cores busy. torch's intra-op threads meet at a
    barrier after every operator, so on a 2-core machine shared with one busy process,
    2 threads decoded 1.4x to 3x slower than 1 (see ``benchmarks/hf_local.py`` and
    :class:`_CpuGovernor`). Greedy outputs do not depend on the thread count here (the
    matrix products split rows, not sums), but that is up to the CPU math library.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)


#: OS name (``comm``) of the model threads; OpenMP worker threads they start inherit it,
#: which is how the governor tells the model's CPU time from everyone else's.
_THREAD_OS_NAME = b"rai-hf-local"


#: Only one hf-local ``generate`` runs on the CPU at a time, whatever the model: two
#: at once would each bring a team of intra-op threads and oversubscribe the cores.
_CPU_LOCK = threading.Lock()


def _name_model_thread() -> None:
    """Executor initializer: give the model thread an OS-level name (Linux; else a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, _THREAD_OS_NAME, 0, 0, 0)  # PR_SET_NAME: this thread only
    except Exception:
        log.debug("hf-local: cannot name the model thread; the CPU governor counts the whole process")


class _CpuGovernor:
    """Chooses the intra-op thread count of the model thread from the CPU others leave free.

    Why: torch's intra-op threads meet at a barrier after every operator (hundreds per
    decoding step). When another process keeps a core busy, one of them is descheduled for
    whole scheduler slices while the others wait at the barrier: on a 2-core machine with
    other processes using about one core, 2 threads decoded 1.4x to 3x *slower* than 1
    thread (``benchmarks/hf_local.py``), while on an idle machine 2 threads are about 1.6x
    faster.

    How: every ``interval_s`` (at batch start and between decoding steps, on the model
    thread) it reads the CPU time of the usable CPUs (``/proc/stat``) and of the model's
    own threads (``/proc/self/task/*/stat``, by OS thread name); the difference over the
    last ``window_s`` is the CPU used by everyone else (other processes and other threads
    of this one). The thread count is the CPUs left, rounded to the nearest (``margin``),
    between 1 and the count torch had when the batch started, which is restored after it.
    Linux only; elsewhere the count is left to torch.
    """

    window_s = 1.0
    interval_s = 0.25
    #: After an idle spell (no sample for ``2 * window_s``) the batch first measures this long.
    probe_s = 0.1
    #: CPU (in cores) others may use before a thread is given up: about the break-even
    #: point between one thread too few (1.6x slower when idle on 2 cores) and one too
    #: many (1.4x to 3x slower beside a busy process); also above the noise of a short
    #: ``/proc/stat`` window (10 ms ticks).
    margin = 0.5

    def __init__(self) -> None:
        self.cpus = self._usable_cpus()
        sysconf = getattr(os, "sysconf", None)
        self._hz = float(sysconf("SC_CLK_TCK")) if sysconf is not None else 100.0
        self._samples: deque[tuple[float, float, float]] = deque()
        self._last_sample = 0.0
        self.enabled = self._read_busy() is not None
        self._max = 1
        self._current = 1
        self.last_others: float | None = None

    @staticmethod
    def _usable_cpus() -> list[int] | None:
        getaffinity = getattr(os, "sched_getaffinity", None)
        return sorted(getaffinity(0)) if getaffinity is not None else None

    def _read_busy(self) -> float | None:
        """CPU-seconds spent busy (not idle or waiting for I/O) on the usable CPUs."""
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return None
        wanted = {f"cpu{i}" for i in self.cpus} if self.cpus is not None else None
        total = 0
        found = False
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu" or (wanted is not None and name not in wanted):
                continue
            v = [int(x) for x in rest.split()[:8]]
            total += sum(v) - v[3] - v[4]  # minus idle and iowait; steal counts as busy
            found = True
        return total / self._hz if found else None

    def _read_team(self) -> float:
        """CPU-seconds used by the model threads (and their OpenMP workers) of this process."""
        total = 0
        found = False
        try:
            tasks = os.listdir("/proc/self/task")
        except OSError:
            tasks = []
        for tid in tasks:
            try:
                with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue  # the thread ended meanwhile
            close = stat.rfind(b")")
            if stat[stat.find(b"(") + 1 : close] != _THREAD_OS_NAME:
                continue
            fields = stat[close + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            found = True
        # No named thread (no prctl): count the whole process as the model's.
        return total / self._hz if found else time.process_time()

    def _sample(self, now: float) -> None:
        busy = self._read_busy()
        if busy is None:
            return
        self._samples.append((now, busy, self._read_team()))
        self._last_sample = now
        while len(self._samples) > 2 and self._samples[1][0] <= now - 3 * self.window_s:
            self._samples.popleft()

    def _others(self) -> float | None:
        """Cores used by others over about the last ``window_s`` (None: not enough data)."""
        if len(self._samples) < 2:
            return None
        t1, busy1, team1 = self._samples[-1]
        base = self._samples[0]
        for sample in self._samples:
            if sample[0] <= t1 - self.window_s:
                base = sample
        t0, busy0, team0 = base
        if t1 - t0 < 0.05:
            return None
        return max(0.0, ((busy1 - busy0) - (team1 - team0)) / (t1 - t0))

    def _apply(self) -> None:
        others = self._others()
        self.last_others = others
        if others is None:
            return
        n_cpus = len(self.cpus) if self.cpus is not None else (os.cpu_count() or 1)
        target = max(1, min(self._max, int(n_cpus - others + self.margin)))
        if target != self._current:
            import torch

            torch.set_num_threads(target)
            self._current = target

    def begin(self) -> None:
        """Before a batch (model thread): note torch's thread count and pick one for the prefill."""
        import torch

        self._max = self._current = torch.get_num_threads()
        if not self.enabled or self._max == 1:
            return
        now = time.perf_counter()
        if now - self._last_sample > 2 * self.window_s:
            # The last samples describe an old spell: measure the present for the prefill.
            self._samples.clear()
            self._sample(now)
            time.sleep(self.probe_s)
            now = time.perf_counter()
        self._sample(now)
        self._apply()

    def step(self) -> int:
        """After a decoding step (model thread): re-decide at most every ``interval_s``."""
        now = time.perf_counter()
        if self.enabled and self._max > 1 and now - self._last_sample >= self.interval_s:
            self._sample(now)
            self._apply()
        return self._current

    def end(self) -> None:
        """After a batch: give torch back the thread count it had."""
        if self._current != self._max:
            import torch

            torch.set_num_threads(self._max)
            self._current = self._max
        if self.enabled and self._max > 1:
            self._sample(time.perf_counter())


@functools.cache
def _cpu_governor() -> _CpuGovernor:
    """The process's governor (used only under :data:`_CPU_LOCK`, by one thread at a time)."""
    return _CpuGovernor()
