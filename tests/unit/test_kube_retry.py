"""Retrying requests refused under load: which answers are retried, how long each wait is, where it stops."""

from __future__ import annotations

import pytest

from falco_operator.kube.errors import ApiError, Conflict, NotFound, Unreachable, retry_after_seconds
from falco_operator.kube.retry import RetryPolicy, retryable, with_retries

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


def throttled(retry_after: str | None = "1") -> ApiError:
    body = {"kind": "Status", "reason": "TooManyRequests", "message": "too many requests, please try again later"}
    return ApiError.from_response(429, body, "", retry_after)


@pytest.mark.parametrize(("header", "seconds"), [("1", 1.0), (" 7 ", 7.0), ("0", 0.0), ("2.5", 2.5), (None, None),
                                                 ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("-3", None),
                                                 ("inf", None), ("nan", None)])  # fmt: skip
def test_retry_after_is_read_as_seconds_or_ignored(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_an_error_from_a_response_carries_the_retry_after_it_came_with() -> None:
    assert throttled("3").retry_after == 3.0
    assert ApiError.from_response(404, {}, "", None).retry_after is None


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_load_and_server_failures_are_retried(status: int) -> None:
    assert retryable(ApiError.from_response(status, {}, "", None))


def test_no_answer_is_retried_but_a_verdict_on_the_request_is_not() -> None:
    assert retryable(Unreachable("PATCH /x: ReadTimeout"))
    for status in (400, 401, 403, 404, 409, 410, 422):
        assert not retryable(ApiError.from_response(status, {}, "", "1")), status


def test_the_wait_honours_retry_after_and_spreads_over_a_window_that_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(first_window=1.0, max_window=16.0, min_wait=0.5)
    assert policy.delay(0, 1.0, 0.0) == 1.0
    assert policy.delay(0, 1.0, 0.999) == pytest.approx(1.999)
    assert policy.delay(3, 1.0, 0.5) == 1.0 + 8.0 * 0.5
    assert policy.delay(10, 1.0, 0.5) == 1.0 + 16.0 * 0.5
    assert policy.delay(0, None, 0.0) == 0.5
    assert policy.delay(0, 5.0, 0.0) == 5.0


class Clock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Server:
    """Answers with the given errors in turn, then with a body."""

    def __init__(self, *errors: ApiError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "applied"


async def test_a_refused_request_is_sent_again_after_the_server_s_retry_after_plus_jitter() -> None:
    clock, server = Clock(), Server(throttled("1"), throttled("2"), Unreachable("reset"))
    result = await with_retries(server, RetryPolicy(first_window=1.0), sleep=clock.sleep, clock=clock,
                                draw=lambda: 0.5)  # fmt: skip
    assert result == "applied"
    assert server.calls == 4
    assert clock.sleeps == [1.0 + 0.5, 2.0 + 1.0, 0.5 + 2.0]


async def test_a_request_refused_for_what_it_says_fails_at_once() -> None:
    clock, server = Clock(), Server(Conflict(409, "exists"), throttled())
    with pytest.raises(Conflict):
        await with_retries(server, RetryPolicy(), sleep=clock.sleep, clock=clock)
    assert server.calls == 1
    assert clock.sleeps == []


async def test_the_budget_stops_the_retries_and_the_last_refusal_is_raised() -> None:
    clock = Clock()
    server = Server(*(throttled("1") for _ in range(100)))
    policy = RetryPolicy(first_window=1.0, max_window=4.0, budget=20.0)
    with pytest.raises(ApiError) as raised:
        await with_retries(server, policy, sleep=clock.sleep, clock=clock, draw=lambda: 0.99)
    assert raised.value.status == 429
    assert sum(clock.sleeps) <= 20.0
    # 1.99 + 2.98 + 4.96 + 4.96 + 4.96 = 19.85; one more wait (4.96) would end past the 20 s budget
    assert len(clock.sleeps) == 5
    assert server.calls == 6


async def test_a_zero_budget_sends_once() -> None:
    clock, server = Clock(), Server(throttled("1"))
    with pytest.raises(ApiError):
        await with_retries(server, RetryPolicy(budget=0.0), sleep=clock.sleep, clock=clock)
    assert server.calls == 1


async def test_not_found_is_not_retried() -> None:
    clock, server = Clock(), Server(NotFound(404, "gone"))
    with pytest.raises(NotFound):
        await with_retries(server, RetryPolicy(), sleep=clock.sleep, clock=clock)
    assert server.calls == 1
