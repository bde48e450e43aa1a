"""``LoopLag`` sees synchronous work that holds the event loop, and sees nothing when the loop is free."""

from __future__ import annotations

import time

import anyio
import pytest

from falco_operator.kube.metrics import LoopLag
from falco_operator.kube.promtext import Registry

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


def observed(lag: LoopLag) -> dict[str, float]:
    return {sample.labels.get("le", sample.name): sample.value for family in lag.histogram.collect()
            for sample in family.samples}  # fmt: skip


def hold_the_loop(seconds: float) -> None:
    """What a long synchronous stretch of a handler does to every other task."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_a_loop_held_by_synchronous_work_is_seen_late_and_a_free_one_is_not() -> None:
    lag = LoopLag(Registry(), period=0.05)
    async with anyio.create_task_group() as group:
        group.start_soon(lag.run)
        await anyio.sleep(0.3)
        free = observed(lag)
        hold_the_loop(0.4)
        await anyio.sleep(0.2)
        group.cancel_scope.cancel()
    held = observed(lag)
    assert free["+Inf"] >= 3, free
    assert free["falco_operator_event_loop_lag_seconds_sum"] / free["+Inf"] < 0.2, free  # a free loop is on time
    assert held["+Inf"] - held["0.25"] >= 1, held  # the look that waited behind the held loop
    assert held["falco_operator_event_loop_lag_seconds_sum"] >= 0.3, held
