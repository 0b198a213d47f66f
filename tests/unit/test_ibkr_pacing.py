"""Pure pacing logic of ``adapters.ibkr``: token bucket (injected clock), line budget, error codes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.ibkr.errors import ErrorKind, classify
from adapters.ibkr.pacing import LineBudget, TokenBucket, historical_bucket
from adapters.ibkr.session import MaskAccountIds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reserve_when_burst_within_capacity_then_no_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=3, rate=1.0, clock=clock)

    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_reserve_when_burst_exceeds_capacity_then_each_caller_gets_its_own_later_slot() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=2, rate=0.5, clock=clock)

    waits = [bucket.reserve() for _ in range(5)]

    assert waits == [0.0, 0.0, pytest.approx(2.0), pytest.approx(4.0), pytest.approx(6.0)]


def test_reserve_when_time_passes_then_tokens_refill_up_to_capacity_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=2, rate=1.0, clock=clock)
    bucket.reserve()
    bucket.reserve()

    clock.now += 1.0
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(1.0)
    clock.now += 100.0
    assert bucket.available() == pytest.approx(2.0)


def test_try_acquire_when_empty_then_false_without_booking() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=1, rate=1.0, clock=clock)

    assert bucket.try_acquire() is True
    assert bucket.try_acquire() is False
    clock.now += 1.0
    assert bucket.try_acquire() is True


def test_penalize_when_pacing_violation_then_next_token_waits_exactly_the_penalty() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=6, rate=0.1, clock=clock)
    bucket.reserve()

    bucket.penalize(15.0)

    assert bucket.reserve() == pytest.approx(15.0)
    assert bucket.reserve() == pytest.approx(25.0)  # then one per 1/rate


def test_historical_bucket_when_sixty_requests_then_spread_over_ten_minutes() -> None:
    clock = FakeClock()
    bucket = historical_bucket(clock)

    waits = [bucket.reserve() for _ in range(60)]

    assert waits[:6] == [0.0] * 6
    assert waits[-1] == pytest.approx(540.0)  # 54 more at one per 10 s


def test_token_bucket_when_bad_parameters_then_value_error() -> None:
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(capacity=0, rate=1.0)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(capacity=1, rate=0.0)


def test_line_budget_when_full_then_try_take_refuses_and_take_waits_for_a_free_line() -> None:
    async def scenario() -> tuple[bool, bool, bool, int]:
        budget = LineBudget(2)
        assert budget.try_take()
        assert budget.try_take()
        refused = budget.try_take()
        timed_out = await budget.take(0.01)
        waiter = asyncio.ensure_future(budget.take(5.0))
        await asyncio.sleep(0)
        budget.give_back()
        got = await waiter
        return refused, timed_out, got, budget.high_water

    refused, timed_out, got, high_water = asyncio.run(scenario())

    assert refused is False
    assert timed_out is False
    assert got is True
    assert high_water == 2


def test_line_budget_when_many_snapshots_queue_then_never_more_than_the_limit() -> None:
    async def scenario() -> int:
        budget = LineBudget(3)
        peak = 0

        async def snapshot() -> None:
            nonlocal peak
            assert await budget.take(5.0)
            peak = max(peak, budget.in_use)
            await asyncio.sleep(0.001)
            budget.give_back()

        await asyncio.gather(*(snapshot() for _ in range(20)))
        return peak

    assert asyncio.run(scenario()) == 3


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (2104, ErrorKind.INFO),
        (2106, ErrorKind.INFO),
        (2158, ErrorKind.INFO),
        (2107, ErrorKind.INFO),
        (2108, ErrorKind.INFO),
        (2119, ErrorKind.INFO),
        (1100, ErrorKind.CONNECTIVITY_LOST),
        (1101, ErrorKind.RESTORED_DATA_LOST),
        (1102, ErrorKind.RESTORED),
        (103, ErrorKind.DUPLICATE_ORDER_ID),
        (200, ErrorKind.NO_SECURITY),
        (162, ErrorKind.PACING),
        (420, ErrorKind.PACING),
        (110, ErrorKind.PRICE_INCREMENT),
        (201, ErrorKind.REJECTED),
        (202, ErrorKind.CANCELLED),
        (203, ErrorKind.REJECTED),
        (399, ErrorKind.WARNING),
        (10148, ErrorKind.NOT_CANCELLABLE),
        (101, ErrorKind.MARKET_DATA_LIMIT),
    ],
)
def test_classify_when_ib_code_then_kind(code: int, kind: ErrorKind) -> None:
    assert classify(code) is kind


def test_mask_filter_when_log_carries_account_ids_then_masked() -> None:
    record = logging.LogRecord(
        "ib_async.wrapper",
        logging.INFO,
        __file__,
        1,
        "position: Position(account=%r) and U7654321",
        ("DU1234567",),
        None,
    )

    assert MaskAccountIds().filter(record) is True

    text = record.getMessage()
    assert "DU1234567" not in text
    assert "U7654321" not in text
    assert "DU****567" in text
    assert "U****321" in text
