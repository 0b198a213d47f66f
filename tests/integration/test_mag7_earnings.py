"""Earnings against the simulator's calendar: no entry whose life spans an earnings date, and a
position held into one is closed at 15:30 on the session before it (tasks level)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

from adapters.simulator import SimulatedMarket
from core.calendar import NY, previous_trading_day, session, trading_days
from core.chains import analyze_chain, combo_quote
from core.models import IntentAction, PositionStatus, SignalKind, StructureKind, SystemName
from core.orders import open_intent
from systems.mag7.config import DEFAULT
from systems.mag7.structure import build_structure
from tasks import mag7
from tasks.execution import execute_intent
from tasks.runtime import Runtime, build_runtime

SEED = 21
MAG7 = SystemName.MAG7
NAMES = DEFAULT.underlyings


def fridays(start: date, end: date) -> list[date]:
    return [d for d in trading_days(start, end) if mag7.entry_day_reason(d) is None]


def scan(tmp_path: Path, day: date) -> tuple[Runtime, mag7.ScanOutcome]:
    rt = build_runtime(day, SEED, time(10, 0), db_url=f"sqlite:///{tmp_path / f'{day}.db'}")
    return rt, mag7.enter(rt, rt.clock.now(), mag7.account_pnl(rt))


def test_scan_when_a_signalled_name_reports_before_expiry_then_no_entry(tmp_path):
    market = SimulatedMarket(SEED)
    found = None
    for friday in fridays(date(2027, 1, 15), date(2027, 3, 12)):
        rt, out = scan(tmp_path, friday)
        try:
            assert out.calendar is not None
            assert out.calendar.source == "market data"
            earnings_skips = [s for s in out.plan.skips if "spans earnings" in s.reason]
            # whatever was entered has no earnings date in its life
            for stored in rt.store.intents(day=friday, system=MAG7):
                intent = stored.intent
                if intent.action is IntentAction.OPEN:
                    spans = market.earnings_dates(
                        intent.spread.underlying, friday, intent.spread.expiry
                    )
                    assert spans == [], intent.client_order_id
            if earnings_skips:
                found = (friday, earnings_skips, rt.store.intents(day=friday, system=MAG7))
                break
        finally:
            rt.close()
    assert found is not None, "no Friday in the Q1 2027 season skipped a name for earnings"
    friday, skips, intents = found
    for skip in skips:
        assert skip.underlying in NAMES
        (earnings,) = market.earnings_dates(skip.underlying, friday, friday + timedelta(days=10))
        assert f"spans earnings on {earnings.isoformat()}: no entry" in skip.reason
        assert not [i for i in intents if i.intent.spread.underlying == skip.underlying]


def first_report(market: SimulatedMarket) -> tuple[str, date]:
    """The first report of January-March 2027: (name, earnings session)."""
    reports = sorted(
        (d, name)
        for name in NAMES
        for d in market.earnings_dates(name, date(2027, 1, 12), date(2027, 3, 31))
    )
    earnings, name = reports[0]
    return name, earnings


def test_manage_when_held_into_earnings_then_closed_1530_the_session_before(tmp_path):
    """A spread opened three sessions before a report and expiring after it (as if entered
    before the calendar knew): every check keeps it until 15:30 of the session before the
    report, which closes it (stops and profit tiers are switched off to isolate the rule)."""
    market = SimulatedMarket(SEED)
    name, earnings = first_report(market)
    last_session = previous_trading_day(earnings)
    opened = previous_trading_day(previous_trading_day(last_session))
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    quiet = replace(
        DEFAULT.exits,
        debit_stop=Decimal("100"),
        tier_targets=(Decimal("50"), Decimal("60"), Decimal("70")),
    )

    def runtime(day: date, at: time) -> Runtime:
        rt = build_runtime(day, SEED, at, db_url=url)
        rt.mag7 = replace(DEFAULT, exits=quiet)
        return rt

    rt = runtime(opened, time(10, 0))
    try:
        now = rt.clock.now()
        expiry = min(d for d in market.expiries(name, opened) if d > earnings)
        snap = market.chain(name, expiry, now)
        analysis = analyze_chain(snap, session(expiry).close, DEFAULT.liquidity)
        spread = build_structure(StructureKind.BULL_CALL_DEBIT, analysis, DEFAULT.structure)
        quote = combo_quote({(name, expiry): snap}, spread)
        intent = open_intent(MAG7, f"mag7:test:{name}", spread, 1, quote, now, "held into it")
        result = execute_intent(
            intent, rt.broker, rt.store, rt.clock, DEFAULT.walk, SignalKind.ENSEMBLE
        )
        assert result.filled_quantity == 1
        position_id = intent.client_order_id
    finally:
        rt.close()

    outcomes: list[tuple[datetime, mag7.ManageOutcome]] = []
    for day in trading_days(opened, last_session):
        for check in mag7.management_times_on(day):
            rt = runtime(day, check.time())
            try:
                outcomes.append((check, mag7.manage(rt, rt.clock.now())))
            finally:
                rt.close()

    close_at = datetime.combine(last_session, time(15, 30), tzinfo=NY)
    for check, out in outcomes:
        kinds = [kind.value for pid, kind, _, _ in out.decisions if pid == position_id]
        if check < close_at:
            assert kinds == [], f"closed early at {check}: {kinds}"
        else:
            assert kinds == ["pre_earnings"]
            assert [r.status.value for r in out.results] == ["FILLED"]
    rt = runtime(last_session, time(16, 0))
    try:
        pos = rt.store.position(position_id)
        assert pos is not None
        assert pos.status is PositionStatus.CLOSED
        assert pos.closed_at is not None
        assert pos.closed_at.astimezone(NY).date() == last_session
        closes = [
            s.intent for s in rt.store.intents(system=MAG7) if s.intent.position_id == position_id
        ]
        assert len(closes) == 1
        assert closes[0].created_at == close_at
        assert closes[0].reason.startswith(f"pre_earnings: pre-earnings close: earnings {earnings}")
    finally:
        rt.close()
