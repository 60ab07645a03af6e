"""CPU time per process group over a measured window, read from Linux's /proc.

A benchmark on a small machine is CPU-bound: every process of the stack (web workers, the
database, the relay, the load generator itself) shares the same cores, so requests per second
follow the CPU each request costs across all of them. ``CpuMeter`` says where that CPU goes.
Elsewhere than Linux it measures nothing and says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def available() -> bool:
    return (PROC / "stat").exists()


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, parent pid, process
    group, session, ...), or None once the process has exited."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None  # exited
    # The command name is in parentheses and may hold spaces: split after its closing one.
    return text[text.rindex(")") + 2:].split()


def all_stat_fields() -> dict[int, list[str]]:
    """``stat_fields`` of every process."""
    table = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields is not None:
                table[int(entry.name)] = fields
    return table


def process_ticks(pid: int) -> int:
    """User + system CPU ticks the process has used so far (0 once it has exited)."""
    fields = stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def _processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command name) of every process."""
    found = []
    for pid, fields in all_stat_fields().items():
        try:
            name = (PROC / str(pid) / "comm").read_text().strip()
        except OSError:
            continue
        found.append((pid, int(fields[1]), name))
    return found


def tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    processes = _processes()
    pids, frontier = [root], {root}
    while frontier:
        frontier = {pid for pid, parent, _name in processes if parent in frontier}
        pids += frontier
    return pids


def named(name: str) -> list[int]:
    """Every process whose command name is ``name`` (``postgres``, ``redis-server``)."""
    return [pid for pid, _parent, comm in _processes() if comm == name]


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    first = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    values = [int(value) for value in first[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU ticks of named process groups between ``start()`` and ``stop()``.

    Each group is a function giving its pids, asked at both ends: processes that start in the
    window count from zero, and a process that exits in it loses its share (a sync gunicorn
    worker lives on; pooled database connections too).
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, int]] = {}
        self._machine_start = (0, 0)
        self.ticks: dict[str, int] = {}
        self._machine = [0, 0]  # busy and total ticks of the machine over every window

    def _read(self) -> dict[str, dict[int, int]]:
        return {name: {pid: process_ticks(pid) for pid in pids()}
                for name, pids in self.groups.items()}

    def start(self) -> None:
        if not available():
            return
        self._start = self._read()
        self._machine_start = machine_ticks()

    def stop(self) -> None:
        if not available() or not self._start:
            return
        end = self._read()
        for name, pids in end.items():
            before = self._start.get(name, {})
            self.ticks[name] = self.ticks.get(name, 0) + sum(
                max(0, ticks - before.get(pid, 0)) for pid, ticks in pids.items())
        busy, total = machine_ticks()
        self._machine[0] += busy - self._machine_start[0]
        self._machine[1] += total - self._machine_start[1]
        self._start = {}

    @property
    def machine_busy(self) -> float:
        """The fraction of all cores busy over the measured windows."""
        busy, total = self._machine
        return busy / total if total else 0.0

    def ms_per(self, count: int) -> dict[str, float]:
        """Milliseconds of CPU per ``count`` (e.g. per request) for each group."""
        if not count:
            return {}
        return {name: 1000 * ticks / TICKS_PER_SECOND / count
                for name, ticks in self.ticks.items()}
