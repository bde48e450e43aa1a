"""Exponential backoff with jitter that forgives after a healthy period."""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        initial: float = 0.8,
        cap: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 1.0,
        healthy_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.healthy_after = healthy_after
        self._clock = clock
        self._current = initial
        self._last_failure: float | None = None

    def next_delay(self) -> float:
        """The delay before the next attempt after a failure; grows until ``cap``."""
        now = self._clock()
        if self._last_failure is not None and now - self._last_failure > self.healthy_after:
            self._current = self.initial
        self._last_failure = now
        delay = self._current * (1 + random.random() * self.jitter)
        self._current = min(self._current * self.factor, self.cap)
        return min(delay, self.cap)

    def reset(self) -> None:
        self._current = self.initial
        self._last_failure = None
