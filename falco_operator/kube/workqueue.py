"""A deduplicating, rate-limited asyncio work queue for controllers, with client-go workqueue semantics."""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

import anyio
import anyio.lowlevel

K = TypeVar("K", bound=Hashable)
Clock = Callable[[], float]


class ShutDown(Exception):
    """Raised by `WorkQueue.get` once the queue is shut down and holds no ready item."""


class RateLimiter(Protocol):
    def when(self, key: Hashable) -> float: ...
    def forget(self, key: Hashable) -> None: ...
    def num_requeues(self, key: Hashable) -> int: ...


class QueueMetrics(Protocol):
    def add(self) -> None: ...
    def depth(self, value: int) -> None: ...
    def queue_latency(self, seconds: float) -> None: ...
    def work_duration(self, seconds: float) -> None: ...
    def retry(self) -> None: ...


class ItemExponentialRateLimiter:
    """Per-key delay of base * 2**failures, capped."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        self._base = base
        self._cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Clamping the exponent keeps 2.0**n from raising OverflowError; the cap applies long before.
        return min(self._cap, self._base * 2.0 ** min(failures, 1023))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """One token bucket shared by all keys; `when` reserves a token and returns how long until it is available."""

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Clock = time.monotonic) -> None:
        self._qps = qps
        self._burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, key: Hashable) -> float:
        now = self._clock()
        self._tokens = min(float(self._burst), self._tokens + (now - self._last) * self._qps)
        self._last = now
        # Tokens may go negative: each caller reserves its own future token, so delays space out at 1/qps.
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def forget(self, key: Hashable) -> None:
        pass

    def num_requeues(self, key: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters; every limiter is consulted so each keeps its own count."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, key: Hashable) -> float:
        return max([limiter.when(key) for limiter in self._limiters])

    def forget(self, key: Hashable) -> None:
        for limiter in self._limiters:
            limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return max(limiter.num_requeues(key) for limiter in self._limiters)


def default_controller_rate_limiter() -> RateLimiter:
    return MaxOfRateLimiter(ItemExponentialRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 100))


class _NoMetrics:
    def add(self) -> None:
        pass

    def depth(self, value: int) -> None:
        pass

    def queue_latency(self, seconds: float) -> None:
        pass

    def work_duration(self, seconds: float) -> None:
        pass

    def retry(self) -> None:
        pass


class WorkQueue(Generic[K]):
    """Hands each key to at most one worker at a time; keys added meanwhile are processed again after `done`."""

    def __init__(
        self,
        name: str,
        *,
        rate_limiter: RateLimiter | None = None,
        metrics: QueueMetrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._name = name
        self._limiter = rate_limiter if rate_limiter is not None else default_controller_rate_limiter()
        self._metrics: QueueMetrics = metrics if metrics is not None else _NoMetrics()
        self._clock = clock
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._queued_at: dict[K, float] = {}
        self._processing: dict[K, float] = {}
        # Delayed keys: a heap of (ready_at, seq, key) plus each key's current ready time. Heap entries whose time
        # no longer matches the dict were superseded by an earlier add_after and are skipped.
        self._delayed: list[tuple[float, int, K]] = []
        self._ready_at: dict[K, float] = {}
        self._seq = itertools.count()
        self._shutting_down = False
        # Created lazily inside get() so the queue can be built outside an event loop.
        self._wakeup: anyio.Event | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self._metrics.add()
        if key not in self._processing:
            self._enqueue(key)

    def add_after(self, key: K, delay_seconds: float) -> None:
        if self._shutting_down:
            return
        if delay_seconds <= 0:
            self.add(key)
            return
        ready_at = self._clock() + delay_seconds
        current = self._ready_at.get(key)
        if current is not None and current <= ready_at:
            return
        self._ready_at[key] = ready_at
        heapq.heappush(self._delayed, (ready_at, next(self._seq), key))
        # Waiting getters must recompute how long to sleep.
        self._notify()

    def add_rate_limited(self, key: K) -> None:
        if self._shutting_down:
            return
        self._metrics.retry()
        self.add_after(key, self._limiter.when(key))

    def forget(self, key: K) -> None:
        self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._limiter.num_requeues(key)

    async def get(self) -> K:
        await anyio.lowlevel.checkpoint()
        while True:
            self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                now = self._clock()
                self._metrics.depth(len(self._queue))
                self._metrics.queue_latency(now - self._queued_at.pop(key, now))
                self._dirty.discard(key)
                self._processing[key] = now
                return key
            if self._shutting_down:
                raise ShutDown(self._name)
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            wakeup = self._wakeup
            timeout = self._delayed[0][0] - self._clock() if self._delayed else None
            with anyio.move_on_after(timeout):
                await wakeup.wait()

    def done(self, key: K) -> None:
        started = self._processing.pop(key, None)
        if started is None:
            return
        self._metrics.work_duration(self._clock() - started)
        # Added while it was being processed: its turn comes now (even during shutdown, as it was added before).
        if key in self._dirty:
            self._enqueue(key)

    def shutdown(self) -> None:
        self._shutting_down = True
        self._delayed.clear()
        self._ready_at.clear()
        self._notify()

    def unfinished_work_seconds(self) -> float:
        now = self._clock()
        return sum(now - started for started in self._processing.values())

    def longest_running_processor_seconds(self) -> float:
        now = self._clock()
        return max((now - started for started in self._processing.values()), default=0.0)

    def _enqueue(self, key: K) -> None:
        self._queue.append(key)
        self._queued_at[key] = self._clock()
        self._metrics.depth(len(self._queue))
        self._notify()

    def _promote_due(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            ready_at, _, key = heapq.heappop(self._delayed)
            if self._ready_at.get(key) == ready_at:
                del self._ready_at[key]
                self.add(key)

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None
