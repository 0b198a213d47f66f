"""Close marks: the prior-close baseline of a position carried overnight (``record_close_marks``,
called by eod-report after the close)."""

from __future__ import annotations

from datetime import timedelta

from core.calendar import next_trading_day
from core.chains import combo_quote
from tasks import trading
from tasks.runtime import Runtime
from tests.integration import test_order_path as order_path
from tests.integration.test_order_claims import open_position

db_url = order_path.db_url
rt = order_path.rt


def test_record_close_marks_when_after_the_close_then_mid_of_the_last_minute_is_the_baseline(
    rt: Runtime,
) -> None:
    pos = open_position(rt, 2)  # a spread expiring after today: it is carried overnight
    last_minute = rt.session.close - timedelta(minutes=1)
    snap = rt.market.chain(pos.spread.underlying, pos.spread.expiry, last_minute)
    want = combo_quote({(pos.spread.underlying, pos.spread.expiry): snap}, pos.spread).mid
    rt.clock.sleep_until(rt.session.close + timedelta(minutes=15))  # eod-report's 16:15

    assert trading.record_close_marks(rt) == 1

    tomorrow = next_trading_day(rt.session.day)
    assert rt.store.baseline_marks([pos.position_id], tomorrow) == {pos.position_id: want}
    assert rt.store.baseline_marks([pos.position_id], rt.session.day) == {}


def test_record_close_marks_when_nothing_open_then_nothing_written(rt: Runtime) -> None:
    rt.clock.sleep_until(rt.session.close + timedelta(minutes=15))
    assert trading.record_close_marks(rt) == 0
