"""rq's forking worker, with SIGTERM and SIGINT held back while it forks a work horse.

rq moves each work horse into a process group of its own right after ``fork()``, and only then
gives it the horse's signal handling. A SIGTERM sent to the worker's process group in between
(systemd stops a service by signalling every process in it; the fault tests do the same) reaches
the child while it still has the worker's own handler: the child then runs a warm shutdown of a
worker it is not (asks Redis for the state, tries to stop a scheduler it does not own) instead
of simply running its job.

Held back across the fork, the signal reaches the worker once ``fork()`` has returned (a warm
shutdown: it waits for the horse), and the horse drops it, as it would any signal sent to the
group it has just left.
"""

from __future__ import annotations

import signal
from typing import Any

from rq import Worker as RqWorker

HELD_BACK = frozenset({signal.SIGTERM, signal.SIGINT})


class Worker(RqWorker):
    def fork_work_horse(self, job: Any, queue: Any) -> None:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_BACK)
        try:
            super().fork_work_horse(job, queue)  # only the worker returns here
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def setup_work_horse_signals(self) -> None:
        # Ignoring a blocked signal discards it if pending (POSIX): what was sent to the
        # worker's group during the fork is dropped, then rq's horse handling applies.
        for held in HELD_BACK:
            signal.signal(held, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_BACK)
        super().setup_work_horse_signals()
