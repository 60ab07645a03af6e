"""bench/cpu.py: the per-process CPU figures the benchmarks print."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import cpu
from bench.cpu import CpuMeter

pytestmark = pytest.mark.skipif(not cpu.available(), reason="needs Linux /proc")

# Spins for the given CPU seconds, says so, then lives on idle (an exited process is unreadable).
SPIN = ("import time\nend = time.process_time() + {0}\nwhile time.process_time() < end: pass\n"
        "print('spun', flush=True)\ntime.sleep(10)\n")


def test_meter_charges_a_busy_child_to_its_group_and_nothing_to_an_idle_one():
    busy = subprocess.Popen([sys.executable, "-c", SPIN.format(0.5)], stdout=subprocess.PIPE,
                            text=True)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
    try:
        meter = CpuMeter({"busy": lambda: cpu.tree(busy.pid), "idle": lambda: [idle.pid]})
        meter.start()
        assert busy.stdout.readline().strip() == "spun"
        meter.stop()
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait()
        busy.stdout.close()
    per = meter.ms_per(1)
    # The child spun 0.5 s of CPU in the window (its interpreter's start-up on top); /proc
    # rounds user and system time down, each to a tick.
    assert 480 <= per["busy"] <= 500 + 500
    assert per["idle"] <= 10
    assert 0 < meter.machine_busy <= 1


def test_tree_finds_grandchildren():
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(5)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(5)\n")], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(parent.stdout.readline())
        assert cpu.tree(parent.pid) == [parent.pid, child]
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if child is not None:
            subprocess.run(["kill", str(child)], check=False)
