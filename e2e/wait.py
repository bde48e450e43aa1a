"""Wait for a condition with a deadline, and say what was last seen when it never came."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call ``probe`` until ``accept`` takes its result; fail after ``timeout`` with the last result."""
    last: T | None = None
    seen = False
    with anyio.move_on_after(timeout):
        while True:
            last = await probe()
            seen = True
            if accept(last):
                return last
            await anyio.sleep(interval)
    raise WaitTimeout(f"{what} not reached within {timeout:.0f}s; last seen: {last if seen else 'nothing'}")
