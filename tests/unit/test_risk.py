from decimal import Decimal

import pytest

from core.models import IntentAction, RiskLimits, SystemName, TradingState
from core.risk import (
    Exposure,
    LossLevel,
    RiskSnapshot,
    check_intent,
    evaluate_state,
    exposures,
    loss_level,
    state_at_session_start,
)
from core.spreads import bull_call_debit
from tests.builders import c, intent, position

LIMITS = RiskLimits()
SPREAD = bull_call_debit(c(590), c(595))


def snap(pnl="0", n_open=0, same_und=0, errors=0, state=TradingState.ACTIVE):
    exp = [Exposure(SystemName.SMART0DTE, "SPY", Decimal(100)) for _ in range(same_und)]
    exp += [Exposure(SystemName.MAG7, "AAPL", Decimal(100)) for _ in range(n_open - same_und)]
    return RiskSnapshot(state, Decimal(pnl), tuple(exp), errors)


def test_check_intent_when_everything_within_limits_then_approved():
    assert check_intent(intent(SPREAD), snap(), LIMITS).approved


@pytest.mark.parametrize(("max_loss", "approved"), [("5000", True), ("5000.01", False)])
def test_check_intent_when_max_loss_at_or_past_position_limit_then_at_ok_past_denied(
    max_loss, approved
):
    d = check_intent(intent(SPREAD, max_loss=max_loss), snap(), LIMITS)
    assert d.approved is approved
    if not approved:
        assert any("max_position_size" in r for r in d.reasons)


@pytest.mark.parametrize(("n_open", "approved"), [(9, True), (10, False)])
def test_check_intent_when_open_positions_at_limit_then_denied(n_open, approved):
    d = check_intent(intent(SPREAD), snap(n_open=n_open), LIMITS)
    assert d.approved is approved
    if not approved:
        assert any("max_open_positions" in r for r in d.reasons)


@pytest.mark.parametrize(("same", "approved"), [(1, True), (2, False)])
def test_check_intent_when_two_on_underlying_for_system_then_denied(same, approved):
    d = check_intent(intent(SPREAD), snap(n_open=same, same_und=same), LIMITS)
    assert d.approved is approved


def test_check_intent_when_other_system_holds_underlying_then_not_counted_per_system():
    exp = (
        Exposure(SystemName.MAG7, "SPY", Decimal(1)),
        Exposure(SystemName.MAG7, "SPY", Decimal(1)),
    )
    d = check_intent(intent(SPREAD), RiskSnapshot(TradingState.ACTIVE, Decimal(0), exp, 0), LIMITS)
    assert d.approved


@pytest.mark.parametrize(("errors", "approved"), [(9, True), (10, False)])
def test_check_intent_when_error_failsafe_reached_then_denied(errors, approved):
    assert check_intent(intent(SPREAD), snap(errors=errors), LIMITS).approved is approved


@pytest.mark.parametrize("state", [TradingState.REDUCING, TradingState.HALTED])
def test_check_intent_when_not_active_then_entry_denied_but_close_allowed(state):
    d = check_intent(intent(SPREAD), snap(state=state), LIMITS)
    assert not d.approved
    assert any(state.value in r for r in d.reasons)
    close = intent(SPREAD, action=IntentAction.CLOSE, limit="1.00", worst="0.90")
    assert check_intent(close, snap(state=state, errors=99), LIMITS).approved


def test_check_intent_when_several_limits_broken_then_every_reason_listed():
    d = check_intent(intent(SPREAD, max_loss="9000"), snap(n_open=10, errors=10), LIMITS)
    assert len(d.reasons) >= 3


@pytest.mark.parametrize(
    ("pnl", "level"),
    [
        ("-749.99", LossLevel.OK),
        ("-750", LossLevel.ALERT),
        ("-999.99", LossLevel.ALERT),
        ("-1000", LossLevel.REDUCE),
        ("-1999.99", LossLevel.REDUCE),
        ("-2000", LossLevel.HALT),
        ("5000", LossLevel.OK),  # a profit never trips anything (prototype halted on |P&L|)
    ],
)
def test_loss_level_when_pnl_at_thresholds_then_level(pnl, level):
    assert loss_level(Decimal(pnl), LIMITS) is level


def test_evaluate_state_when_loss_reaches_100pct_then_reducing_without_flatten():
    ch = evaluate_state(TradingState.ACTIVE, Decimal("-1000"), 0, LIMITS)
    assert ch.state is TradingState.REDUCING and not ch.flatten and ch.alert


def test_evaluate_state_when_loss_reaches_200pct_then_halted_and_flatten():
    ch = evaluate_state(TradingState.REDUCING, Decimal("-2000"), 0, LIMITS)
    assert ch.state is TradingState.HALTED and ch.flatten


def test_evaluate_state_when_errors_reach_ten_then_halted():
    assert evaluate_state(TradingState.ACTIVE, Decimal(0), 10, LIMITS).state is TradingState.HALTED
    assert evaluate_state(TradingState.ACTIVE, Decimal(0), 9, LIMITS).state is TradingState.ACTIVE


def test_evaluate_state_when_loss_recovers_intraday_then_state_never_deescalates():
    ch = evaluate_state(TradingState.REDUCING, Decimal("100"), 0, LIMITS)
    assert ch.state is TradingState.REDUCING


def test_evaluate_state_when_big_profit_then_active():
    ch = evaluate_state(TradingState.ACTIVE, Decimal("5000"), 0, LIMITS)
    assert ch.state is TradingState.ACTIVE and not ch.alert


def test_state_at_session_start_when_automatic_then_reset_when_manual_then_kept():
    assert state_at_session_start(TradingState.HALTED, manual=False) is TradingState.ACTIVE
    assert state_at_session_start(TradingState.HALTED, manual=True) is TradingState.HALTED


def test_exposures_when_pending_open_intents_then_counted_with_positions():
    pos = position(SPREAD, "1.00")
    ex = exposures([pos], [intent(SPREAD), intent(SPREAD, action=IntentAction.CLOSE, worst="0.9")])
    assert len(ex) == 2


def test_risk_limits_when_fractions_out_of_order_then_error():
    with pytest.raises(ValueError, match="alert"):
        RiskLimits(alert_fraction=Decimal("1.5"))
