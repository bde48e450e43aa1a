"""The leader's renewal timing: one hung attempt leaves room for a second whole attempt before the deadline."""

from __future__ import annotations

import pytest

from falco_operator.kube.leaderelection import RenewalClock, attempt_timeout

DEADLINE, RETRY = 10.0, 2.0


def test_the_default_timings_give_each_attempt_4s() -> None:
    assert attempt_timeout(DEADLINE, RETRY) == 4.0


@pytest.mark.parametrize(("deadline", "retry"), [(10, 2), (10, 9), (3, 1), (60, 5), (1.5, 0.1)])
def test_an_attempt_that_hangs_to_its_limit_leaves_a_whole_second_attempt(deadline: float, retry: float) -> None:
    clock = RenewalClock.starting(0.0, deadline, retry)
    first_start = clock.wait(0.0)
    assert first_start == retry
    first_budget = clock.start_attempt(first_start)
    hung_until = first_start + first_budget
    assert not clock.expired(hung_until)
    assert clock.wait(hung_until) == 0  # the retry period has passed while it hung: try again at once
    second_budget = clock.start_attempt(hung_until)
    assert second_budget == pytest.approx(first_budget)
    assert hung_until + second_budget <= deadline + 1e-9


def test_a_renewal_in_the_second_attempt_restarts_the_deadline() -> None:
    clock = RenewalClock.starting(0.0, DEADLINE, RETRY)
    assert clock.start_attempt(2.0) == 4.0
    assert clock.start_attempt(6.0) == 4.0  # the first hung until abandoned at 6 s
    clock.renewed(6.1)
    assert clock.wait(6.1) == pytest.approx(1.9)  # a retry period after the start of the attempt that renewed
    assert clock.left(15.0) == pytest.approx(1.1)
    assert not clock.expired(16.0)


def test_fast_failures_retry_every_period_and_the_last_attempt_gets_what_is_left() -> None:
    clock = RenewalClock.starting(0.0, DEADLINE, RETRY)
    now, budgets = 0.0, []
    while not clock.expired(now):
        now += clock.wait(now)
        budget = clock.start_attempt(now)
        if budget <= 0:
            break
        budgets.append((now, budget))
        now += 0.01  # refused at once
    assert budgets == [(2.0, 4.0), (4.0, 4.0), (6.0, 4.0), (8.0, pytest.approx(2.0))]
    assert clock.expired(now)


def test_two_hung_attempts_end_at_the_deadline_not_after() -> None:
    clock = RenewalClock.starting(0.0, DEADLINE, RETRY)
    first = clock.start_attempt(clock.wait(0.0))
    second = clock.start_attempt(2.0 + first)
    assert clock.expired(2.0 + first + second)
    assert 2.0 + first + second == DEADLINE
