"""Mag7 structure choice at the IV-level boundaries, and the legs picked by delta."""

import math
from dataclasses import replace
from decimal import Decimal

import pytest

from core.calendar import session
from core.chains import ChainError, LiquidityRules, analyze_chain
from core.models import Direction, Right, Side, StructureKind
from core.spreads import SpreadError
from systems.mag7.config import DEFAULT
from systems.mag7.structure import build_structure, choose_structure
from tests.unit.test_mag7_support import EXPIRY, smile_chain

CFG = DEFAULT.structure
BULL, BEAR, NEUTRAL = Direction.BULLISH, Direction.BEARISH, Direction.NEUTRAL


@pytest.mark.parametrize(
    ("direction", "level", "kind"),
    [
        (BULL, 0.0, StructureKind.BULL_CALL_DEBIT),
        (BULL, 49.99, StructureKind.BULL_CALL_DEBIT),
        (BULL, 50.0, StructureKind.BULL_PUT_CREDIT),
        (BULL, 100.0, StructureKind.BULL_PUT_CREDIT),
        (BEAR, 49.99, StructureKind.BEAR_PUT_DEBIT),
        (BEAR, 50.0, StructureKind.BEAR_CALL_CREDIT),
        (NEUTRAL, 69.99, None),
        (NEUTRAL, 70.0, StructureKind.IRON_CONDOR),
        (NEUTRAL, 100.0, StructureKind.IRON_CONDOR),
    ],
)
def test_choose_structure_when_iv_level_at_boundaries_then_kind(direction, level, kind):
    assert choose_structure(direction, level, CFG).kind is kind


def test_choose_structure_when_iv_level_unknown_then_none_with_reason():
    choice = choose_structure(BULL, math.nan, CFG)
    assert choice.kind is None
    assert "unavailable" in choice.reason


def test_choose_structure_when_long_options_off_by_default_then_debit_spread_at_low_iv():
    assert not CFG.allow_long_options
    assert choose_structure(BULL, 5.0, CFG).kind is StructureKind.BULL_CALL_DEBIT


@pytest.mark.parametrize(
    ("direction", "level", "kind"),
    [
        (BULL, 24.99, StructureKind.LONG_CALL),
        (BEAR, 24.99, StructureKind.LONG_PUT),
        (BULL, 25.0, StructureKind.BULL_CALL_DEBIT),
    ],
)
def test_choose_structure_when_long_options_enabled_then_below_their_level_only(
    direction, level, kind
):
    cfg = replace(CFG, allow_long_options=True)
    assert choose_structure(direction, level, cfg).kind is kind


def analysis(**kw):
    return analyze_chain(smile_chain(**kw), session(EXPIRY).close, LiquidityRules())


def _abs_delta(a, contract):
    return abs(float(a.delta[a.snapshot.index_of(contract)]))


def test_build_structure_when_bull_call_debit_then_long_d50_short_d25():
    a = analysis()
    spread = build_structure(StructureKind.BULL_CALL_DEBIT, a, CFG)
    long_leg, short_leg = spread.legs
    assert (long_leg.side, short_leg.side) == (Side.BUY, Side.SELL)
    assert _abs_delta(a, long_leg.contract) == pytest.approx(0.50, abs=0.05)
    assert _abs_delta(a, short_leg.contract) == pytest.approx(0.25, abs=0.05)
    assert long_leg.contract.strike < short_leg.contract.strike


def test_build_structure_when_bear_put_debit_then_long_higher_put():
    a = analysis()
    spread = build_structure(StructureKind.BEAR_PUT_DEBIT, a, CFG)
    long_leg, short_leg = spread.legs
    assert long_leg.contract.right is Right.PUT
    assert long_leg.contract.strike > short_leg.contract.strike
    assert _abs_delta(a, short_leg.contract) == pytest.approx(0.25, abs=0.05)


def test_build_structure_when_bull_put_credit_then_short_d30_and_wing_by_delta():
    a = analysis()
    spread = build_structure(StructureKind.BULL_PUT_CREDIT, a, CFG)
    short_leg, wing = spread.legs
    assert short_leg.side is Side.SELL
    assert _abs_delta(a, short_leg.contract) == pytest.approx(0.30, abs=0.05)
    assert _abs_delta(a, wing.contract) == pytest.approx(0.15, abs=0.05)
    assert wing.contract.strike < short_leg.contract.strike


def test_build_structure_when_wing_width_configured_then_wing_that_many_dollars_out():
    a = analysis()
    cfg = replace(CFG, credit_wing_width=Decimal("5"))
    short_leg, wing = build_structure(StructureKind.BEAR_CALL_CREDIT, a, cfg).legs
    assert wing.contract.strike == short_leg.contract.strike + 5


def test_build_structure_when_wing_width_not_listed_then_chain_error():
    cfg = replace(CFG, credit_wing_width=Decimal("3.7"))
    with pytest.raises(ChainError, match="not quoted"):
        build_structure(StructureKind.BULL_PUT_CREDIT, analysis(), cfg)


def test_build_structure_when_iron_condor_then_shorts_d16_inside_wings():
    a = analysis()
    spread = build_structure(StructureKind.IRON_CONDOR, a, CFG)
    lp, sp, sc, lc = (leg.contract for leg in spread.legs)
    assert lp.strike < sp.strike < sc.strike < lc.strike
    assert _abs_delta(a, sp) == pytest.approx(0.16, abs=0.04)
    assert _abs_delta(a, sc) == pytest.approx(0.16, abs=0.04)


def test_build_structure_when_long_call_then_single_d50_call():
    a = analysis()
    spread = build_structure(StructureKind.LONG_CALL, a, CFG)
    assert spread.kind is StructureKind.LONG_CALL
    assert _abs_delta(a, spread.legs[0].contract) == pytest.approx(0.50, abs=0.05)


def test_build_structure_when_single_strike_chain_then_spread_error():
    with pytest.raises(SpreadError):
        build_structure(StructureKind.BULL_CALL_DEBIT, analysis(width=0.0), CFG)


def test_build_structure_when_kind_not_a_mag7_structure_then_chain_error():
    with pytest.raises(ChainError, match="no structure"):
        build_structure(StructureKind.LONG_STRADDLE, analysis(), CFG)
