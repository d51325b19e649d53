"""What this process knows of its job worker's health: when it last showed it works, how often it restarted."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from castmetrics.observability import WORKER_HEARTBEAT_AGE, WORKER_RESTARTS

# However long the stale threshold, a beat at least this often: the age reported stays this fresh.
MAX_BEAT_SECONDS = 5.0


class Heartbeat:
    """The job worker's last sign of work, read by ``/readyz`` and ``/metrics``.

    The supervisor beats while procrastinate's worker runs and the queue's connection answers. The age
    counts from the supervisor's start until the first beat, so a worker that never gets going turns
    stale too; a restart does not reset it, so a worker failing over and over does not look fresh.
    """

    def __init__(self, stale_after: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after = stale_after
        self.restarts = 0
        self._clock = clock
        self._last = clock()

    @property
    def every(self) -> float:
        """Seconds between beats: several per stale period, so one missed beat never reads as stalled."""
        return min(MAX_BEAT_SECONDS, self.stale_after / 4)

    def beat(self) -> None:
        self._last = self._clock()

    def age(self) -> float:
        return max(0.0, self._clock() - self._last)

    def is_stale(self) -> bool:
        return self.age() > self.stale_after

    def restarted(self) -> None:
        self.restarts += 1
        WORKER_RESTARTS.inc()

    def publish(self) -> None:
        """Report this heartbeat's age as the process's ``castmetrics_worker_heartbeat_age_seconds``."""
        WORKER_HEARTBEAT_AGE.set_function(self.age)

    @staticmethod
    def unpublish() -> None:
        WORKER_HEARTBEAT_AGE.set_function(lambda: math.nan)
