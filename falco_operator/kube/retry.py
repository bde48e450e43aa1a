"""Retrying one idempotent request the API server refused for load (429, 5xx) or did not answer, within a budget.

A fleet writes at once after a change (every agent its report): the API server's priority and fairness refuses
what its queues cannot hold with 429 and a ``Retry-After``. Each retry waits at least what the server asked, plus
a random part of a window that doubles per attempt ("full jitter"), so that the refused requests come back spread
over time instead of as a second burst. The budget bounds the whole: past it the last error is raised.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ..records import record
from .errors import ApiError

log = logging.getLogger("falco_operator.kube.retry")
T = TypeVar("T")

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers that say "not now" rather than "not this": too many requests, and the server's own failures."""


def retryable(error: ApiError) -> bool:
    """True for a refusal under load, a server failure, or no answer at all (status 0: a time-out, a reset)."""
    return error.status == 0 or error.status in RETRIED_STATUSES


@record(frozen=True)
class RetryPolicy:
    first_window: float = 1.0
    """The random part of the first retry's wait is drawn from [0, first_window); the window doubles per retry."""
    max_window: float = 16.0
    budget: float = 60.0
    """Seconds from the first attempt after which no retry is started: the last error is raised instead."""
    min_wait: float = 0.5
    """The least wait when the server gave no ``Retry-After`` (5xx, time-outs)."""

    def delay(self, attempt: int, retry_after: float | None, draw: float) -> float:
        """The wait before retry number ``attempt`` (0 for the first), ``draw`` uniform in [0, 1)."""
        window = min(self.max_window, self.first_window * 2.0**attempt)
        floor = retry_after if retry_after is not None else self.min_wait
        return floor + window * draw


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str = "request",
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
    draw: Callable[[], float] = random.random,
) -> T:
    """``call()``, retried while it fails with a retryable ``ApiError`` and the budget allows the next wait.

    Only for requests that may be sent twice (a server-side apply of the same body, a create that treats
    ``Conflict`` as done): a time-out may hide a request the server did carry out.
    """
    started = clock()
    attempt = 0
    while True:
        try:
            return await call()
        except ApiError as error:
            if not retryable(error):
                raise
            delay = policy.delay(attempt, error.retry_after, draw())
            if clock() - started + delay > policy.budget:
                raise
            log.debug("%s refused (%s), retry %d in %.2fs", what, error.status, attempt + 1, delay)
            await sleep(delay)
            attempt += 1
