"""Heavy checks of user content run in worker threads, each within a time budget, and are remembered by key.

The operator's event loop renews its leader Lease and serves every other reconcile; a check of a large or
hostile document must not hold it. A Python thread cannot be stopped, so a check that overruns its budget is
left to finish in the background (no second thread starts for the same key meanwhile) and is judged over budget:
the size limits and the bounded patterns of the checks are what bound the thread; the budget bounds the wait.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")
CHECK_BUDGET_SECONDS = 10.0
CHECK_THREADS = 2
REMEMBERED = 1024


class OverBudget(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"checking this content took longer than {seconds:g} s; simplify it (shorter conditions and outputs, "
            "fewer macros) or split it into several smaller ones"
        )


class BudgetedChecks(Generic[T]):
    """Runs ``function()`` for a key in a worker thread (at most ``threads`` at once) within ``budget`` seconds;
    the result, or ``OverBudget``, is remembered for the key (the last ``remembered`` keys)."""

    def __init__(
        self, budget: float = CHECK_BUDGET_SECONDS, threads: int = CHECK_THREADS, remembered: int = REMEMBERED
    ) -> None:
        self.budget = budget
        self.threads = threads
        self.remembered = remembered
        self._limiter: anyio.CapacityLimiter | None = None
        self._results: OrderedDict[Hashable, T | OverBudget] = OrderedDict()
        self._running: set[Hashable] = set()
        self._lock = threading.Lock()

    async def run(self, key: Hashable, function: Callable[[], T]) -> T:
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._unwrap(self._results[key])
            if key in self._running:
                raise OverBudget(self.budget)  # an earlier check of the same content is still running
            self._running.add(key)

        def work() -> T:
            try:
                return function()
            finally:
                with self._lock:
                    self._running.discard(key)

        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        result: T | OverBudget = OverBudget(self.budget)
        with anyio.move_on_after(self.budget):
            result = await anyio.to_thread.run_sync(work, limiter=self._limiter, abandon_on_cancel=True)
        self._remember(key, result)
        return self._unwrap(result)

    def _remember(self, key: Hashable, result: T | OverBudget) -> None:
        with self._lock:
            self._results[key] = result
            while len(self._results) > self.remembered:
                self._results.popitem(last=False)

    @staticmethod
    def _unwrap(result: T | OverBudget) -> T:
        if isinstance(result, OverBudget):
            raise result
        return result
