"""The work queue: deduplication, one worker per key, delays, rate limiters, shutdown and metrics hooks."""

from __future__ import annotations

import random
import time

import anyio
import anyio.lowlevel
import pytest

from falco_operator.kube.workqueue import (
    BucketRateLimiter,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingMetrics:
    def __init__(self) -> None:
        self.adds = 0
        self.retries = 0
        self.depths: list[int] = []
        self.latencies: list[float] = []
        self.durations: list[float] = []

    def add(self) -> None:
        self.adds += 1

    def depth(self, value: int) -> None:
        self.depths.append(value)

    def queue_latency(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def work_duration(self, seconds: float) -> None:
        self.durations.append(seconds)

    def retry(self) -> None:
        self.retries += 1


async def get_soon(queue: WorkQueue[str], seconds: float = 1.0) -> str:
    with anyio.fail_after(seconds):
        return await queue.get()


async def assert_nothing_ready(queue: WorkQueue[str], seconds: float = 0.05) -> None:
    with anyio.move_on_after(seconds):
        key = await queue.get()
        pytest.fail(f"unexpectedly got {key!r}")


async def test_repeated_adds_of_one_key_are_processed_once() -> None:
    queue: WorkQueue[str] = WorkQueue("test")
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    queue.add("a")
    assert len(queue) == 2
    assert await get_soon(queue) == "a"
    assert await get_soon(queue) == "b"
    assert len(queue) == 0
    await assert_nothing_ready(queue)


async def test_distinct_keys_come_out_in_the_order_they_were_added() -> None:
    queue: WorkQueue[str] = WorkQueue("test")
    keys = ["c", "a", "d", "b"]
    for key in keys:
        queue.add(key)
    assert [await get_soon(queue) for _ in keys] == keys


async def test_key_added_while_processing_is_held_back_until_done() -> None:
    queue: WorkQueue[str] = WorkQueue("test")
    queue.add("a")
    assert await get_soon(queue) == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0
    await assert_nothing_ready(queue)
    queue.done("a")
    assert len(queue) == 1
    assert await get_soon(queue) == "a"
    queue.done("a")
    await assert_nothing_ready(queue)


async def test_workers_never_share_a_key_and_every_add_is_eventually_processed() -> None:
    rng = random.Random(1234)
    queue: WorkQueue[str] = WorkQueue("test")
    keys = [f"k{i}" for i in range(4)]
    active: set[str] = set()
    overlaps: list[str] = []
    add_seq: dict[str, int] = {}
    start_seq: dict[str, int] = {}
    seq = 0
    processed = 0
    adding = True
    settled = anyio.Event()

    def check_settled() -> None:
        if not adding and not active and all(start_seq.get(key, 0) >= last for key, last in add_seq.items()):
            settled.set()

    async def worker() -> None:
        nonlocal processed
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            start_seq[key] = seq
            processed += 1
            await anyio.sleep(rng.uniform(0, 0.002))
            active.discard(key)
            queue.done(key)
            check_settled()

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(worker)
        for _ in range(400):
            key = rng.choice(keys)
            seq += 1
            add_seq[key] = seq
            queue.add(key)
            if rng.random() < 0.3:
                await anyio.sleep(rng.uniform(0, 0.001))
            else:
                await anyio.lowlevel.checkpoint()
        adding = False
        check_settled()
        with anyio.fail_after(5):
            await settled.wait()
        queue.shutdown()

    assert overlaps == []
    assert set(start_seq) == set(keys)
    # Deduplication merged at least some of the adds.
    assert 0 < processed < 400


async def test_exponential_limiter_doubles_per_key_up_to_the_cap_and_forget_resets() -> None:
    limiter = ItemExponentialRateLimiter(base=0.005, cap=0.03)
    assert [limiter.when("a") for _ in range(5)] == pytest.approx([0.005, 0.01, 0.02, 0.03, 0.03])
    assert limiter.when("b") == pytest.approx(0.005)
    assert limiter.num_requeues("a") == 5
    assert limiter.num_requeues("b") == 1
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.num_requeues("b") == 1


async def test_exponential_limiter_stays_at_the_cap_after_very_many_failures() -> None:
    limiter = ItemExponentialRateLimiter(base=0.005, cap=1000.0)
    delays = [limiter.when("a") for _ in range(2000)]
    assert delays[-1] == 1000.0


async def test_bucket_limiter_allows_a_burst_then_spaces_requests_at_qps() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10.0, burst=3, clock=clock)
    assert [limiter.when(f"k{i}") for i in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.when("x") == pytest.approx(0.1)
    assert limiter.when("y") == pytest.approx(0.2)
    clock.advance(0.2)
    assert limiter.when("z") == pytest.approx(0.1)
    clock.advance(10.0)
    # Refilled only up to the burst size.
    assert [limiter.when(f"k{i}") for i in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])
    assert limiter.num_requeues("x") == 0


async def test_max_of_limiter_takes_the_longest_delay_and_delegates_counts() -> None:
    clock = FakeClock()
    limiter = MaxOfRateLimiter(ItemExponentialRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 1, clock=clock))
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.when("a") == pytest.approx(0.1)
    clock.advance(1.0)
    assert limiter.when("a") == pytest.approx(0.02)
    assert limiter.num_requeues("a") == 3
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


async def test_default_controller_limiter_starts_at_five_milliseconds() -> None:
    limiter = default_controller_rate_limiter()
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.when("a") == pytest.approx(0.01)
    assert limiter.num_requeues("a") == 2


async def test_delayed_keys_become_ready_in_time_order() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue("test", clock=clock)
    queue.add_after("slow", 0.2)
    queue.add_after("fast", 0.1)
    queue.add_after("now", 0)
    assert await get_soon(queue) == "now"
    clock.advance(0.15)
    assert await get_soon(queue) == "fast"
    assert len(queue) == 0
    clock.advance(0.1)
    assert await get_soon(queue) == "slow"


async def test_waiting_getter_wakes_when_a_delayed_key_is_due() -> None:
    queue: WorkQueue[str] = WorkQueue("test")
    got: list[tuple[str, float]] = []

    async def getter() -> None:
        key = await get_soon(queue)
        got.append((key, time.monotonic()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(getter)
        await anyio.sleep(0.01)
        start = time.monotonic()
        queue.add_after("x", 0.05)
    assert len(got) == 1
    key, at = got[0]
    assert key == "x"
    assert 0.04 <= at - start < 0.5


async def test_same_key_delayed_twice_keeps_the_earlier_ready_time() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue("test", clock=clock)
    queue.add_after("later-first", 1.0)
    queue.add_after("later-first", 0.1)
    queue.add_after("earlier-first", 0.1)
    queue.add_after("earlier-first", 1.0)
    clock.advance(0.2)
    assert {await get_soon(queue), await get_soon(queue)} == {"later-first", "earlier-first"}
    queue.done("later-first")
    queue.done("earlier-first")
    clock.advance(1.0)
    queue.add("b")
    # The superseded 1.0 s entries must not resurface.
    assert await get_soon(queue) == "b"
    assert len(queue) == 0
    await assert_nothing_ready(queue)


async def test_add_rate_limited_delays_by_the_limiter_and_counts_retries() -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    queue: WorkQueue[str] = WorkQueue(
        "test", rate_limiter=ItemExponentialRateLimiter(0.5, 10.0), metrics=metrics, clock=clock
    )
    queue.add_rate_limited("a")
    queue.add_rate_limited("a")
    assert queue.num_requeues("a") == 2
    assert metrics.retries == 2
    clock.advance(0.4)
    await assert_nothing_ready(queue)
    clock.advance(0.2)
    assert await get_soon(queue) == "a"
    queue.forget("a")
    assert queue.num_requeues("a") == 0


async def test_shutdown_wakes_every_waiting_getter_with_shutdown() -> None:
    queue: WorkQueue[str] = WorkQueue("test")
    outcomes: list[str] = []

    async def getter() -> None:
        try:
            await queue.get()
        except ShutDown:
            outcomes.append("shutdown")

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(getter)
            await anyio.sleep(0.01)
            assert not queue.shutting_down
            queue.shutdown()
    assert outcomes == ["shutdown"] * 3
    assert queue.shutting_down


async def test_adds_after_shutdown_are_ignored() -> None:
    queue: WorkQueue[str] = WorkQueue("test")
    queue.shutdown()
    queue.add("a")
    queue.add_after("b", 0.01)
    queue.add_rate_limited("c")
    assert len(queue) == 0
    await anyio.sleep(0.02)
    with pytest.raises(ShutDown):
        await get_soon(queue)


async def test_shutdown_drains_ready_keys_and_drops_delayed_ones() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue("test", clock=clock)
    queue.add("a")
    queue.add("b")
    queue.add_after("c", 1.0)
    queue.shutdown()
    clock.advance(2.0)
    assert await get_soon(queue) == "a"
    assert await get_soon(queue) == "b"
    with pytest.raises(ShutDown):
        await get_soon(queue)


async def test_metrics_hooks_record_adds_depth_latency_and_duration() -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    queue: WorkQueue[str] = WorkQueue("test", metrics=metrics, clock=clock)
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert metrics.adds == 2
    assert metrics.depths == [1, 2]
    clock.advance(0.5)
    assert await get_soon(queue) == "a"
    clock.advance(0.5)
    assert await get_soon(queue) == "b"
    assert metrics.depths == [1, 2, 1, 0]
    assert metrics.latencies == pytest.approx([0.5, 1.0])

    clock.advance(2.0)
    assert queue.unfinished_work_seconds() == pytest.approx(2.5 + 2.0)
    assert queue.longest_running_processor_seconds() == pytest.approx(2.5)
    clock.advance(1.0)
    assert queue.unfinished_work_seconds() == pytest.approx(3.5 + 3.0)
    assert queue.longest_running_processor_seconds() == pytest.approx(3.5)

    queue.done("a")
    assert metrics.durations == pytest.approx([3.5])
    assert queue.longest_running_processor_seconds() == pytest.approx(3.0)
    queue.done("b")
    assert metrics.durations == pytest.approx([3.5, 3.0])
    assert queue.unfinished_work_seconds() == 0.0
    assert queue.longest_running_processor_seconds() == 0.0


async def test_add_while_processing_counts_once_and_is_queued_on_done() -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    queue: WorkQueue[str] = WorkQueue("test", metrics=metrics, clock=clock)
    queue.add("a")
    assert await get_soon(queue) == "a"
    queue.add("a")
    queue.add("a")
    assert metrics.adds == 2
    assert metrics.depths == [1, 0]
    clock.advance(1.0)
    queue.done("a")
    assert metrics.depths == [1, 0, 1]
    clock.advance(0.25)
    assert await get_soon(queue) == "a"
    # Latency runs from when the key became ready again, not from the add during processing.
    assert metrics.latencies == pytest.approx([0.0, 0.25])
