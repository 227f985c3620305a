"""Shared helpers for the source tests: a thread-safe collector of arrivals."""

from __future__ import annotations

import os
import threading
import time

import pytest

from copilot.sources.base import Arrival


class Collector:
    """An ``emit`` callable that records arrivals (and, for files, their size at emission time)."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.sizes: list[int | None] = []
        self._cond = threading.Condition()

    def __call__(self, arrival: Arrival) -> None:
        size = os.stat(arrival.path).st_size if arrival.path is not None else None
        with self._cond:
            self.arrivals.append(arrival)
            self.sizes.append(size)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Arrival]:
        """Wait until at least ``n`` arrivals were collected (fails the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.arrivals) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"expected {n} arrival(s) within {timeout}s, got {len(self.arrivals)}: {self.names}")
                self._cond.wait(left)
            return list(self.arrivals)

    @property
    def names(self) -> list[str]:
        return [a.path.name if a.path is not None else a.origin for a in self.arrivals]


@pytest.fixture
def collector() -> Collector:
    return Collector()
