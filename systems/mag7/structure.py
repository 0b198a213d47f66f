"""Bias and IV level -> structure kind, and the legs of that structure picked by delta (pure).

| bias     | IV level           | structure                                           |
|----------|--------------------|-----------------------------------------------------|
| bullish  | < 50               | bull call debit spread (long d0.50 / short d0.25)   |
| bullish  | >= 50              | bull put credit spread (short d0.30, wing below)    |
| bearish  | < 50               | bear put debit spread (long d0.50 / short d0.25)    |
| bearish  | >= 50              | bear call credit spread (short d0.30, wing above)   |
| neutral  | >= 70              | iron condor (shorts d0.16, wings beyond)            |
| neutral  | < 70               | none                                                |

Long call/put replace the debit spread only when ``allow_long_options`` is on and the IV level is
below ``long_option_max_iv_level``. The IV level is the rank/percentile, or the IV/HV fallback's
level (``signals.IVAssessment.level``). Legs are the nearest liquid listed strikes by |delta|
(``core.chains.ChainAnalysis.select_by_delta``); the ``core.spreads`` factories reject a bad strike
order (e.g. both legs on one strike in a sparse chain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from core.chains import ChainAnalysis, ChainError
from core.models import Direction, OptionContract, Right, Spread, StructureKind
from core.spreads import (
    bear_call_credit,
    bear_put_debit,
    bull_call_debit,
    bull_put_credit,
    iron_condor,
    long_call,
    long_put,
)
from systems.mag7.config import StructureConfig


@dataclass(frozen=True, slots=True)
class StructureChoice:
    kind: StructureKind | None
    reason: str


def choose_structure(
    direction: Direction, iv_level: float, cfg: StructureConfig
) -> StructureChoice:
    """The structure for a bias at an IV level (boundaries: < 50 debit, >= 50 credit, >= 70 IC)."""
    if not math.isfinite(iv_level):
        return StructureChoice(None, "IV level unavailable: cannot choose debit vs credit")
    if direction is Direction.NEUTRAL:
        if iv_level >= cfg.condor_min_iv_level:
            return StructureChoice(
                StructureKind.IRON_CONDOR,
                f"neutral and IV level {iv_level:.2f} >= {cfg.condor_min_iv_level:g}",
            )
        return StructureChoice(
            None, f"neutral but IV level {iv_level:.2f} < {cfg.condor_min_iv_level:g}"
        )
    bullish = direction is Direction.BULLISH
    if cfg.allow_long_options and iv_level < cfg.long_option_max_iv_level:
        kind = StructureKind.LONG_CALL if bullish else StructureKind.LONG_PUT
        return StructureChoice(
            kind, f"{direction.value}, IV level {iv_level:.2f} < {cfg.long_option_max_iv_level:g}"
        )
    if iv_level < cfg.credit_min_iv_level:
        kind = StructureKind.BULL_CALL_DEBIT if bullish else StructureKind.BEAR_PUT_DEBIT
        return StructureChoice(
            kind, f"{direction.value}, IV level {iv_level:.2f} < {cfg.credit_min_iv_level:g}"
        )
    kind = StructureKind.BULL_PUT_CREDIT if bullish else StructureKind.BEAR_CALL_CREDIT
    return StructureChoice(
        kind, f"{direction.value}, IV level {iv_level:.2f} >= {cfg.credit_min_iv_level:g}"
    )


def _by_delta(analysis: ChainAnalysis, right: Right, target: float, role: str) -> OptionContract:
    i = analysis.select_by_delta(right, target)
    if i is None:
        raise ChainError(f"no liquid {right.name.lower()} for the {role} (|delta| {target})")
    return analysis.contract(i)


def _wing(
    analysis: ChainAnalysis,
    short: OptionContract,
    width: Decimal | None,
    delta: float,
    role: str,
) -> OptionContract:
    """The long wing beyond ``short``: ``width`` dollars out (must be quoted) or by |delta|."""
    if width is None:
        return _by_delta(analysis, short.right, delta, role)
    sign = Decimal(-1) if short.right is Right.PUT else Decimal(1)
    strike = short.strike + sign * width
    i = analysis.strike_index(short.right, float(strike), require_liquid=False)
    if i is None:
        raise ChainError(f"{role} ${width} beyond {short.strike:f} ({strike:f}) is not quoted")
    return analysis.contract(i)


def build_structure(kind: StructureKind, analysis: ChainAnalysis, cfg: StructureConfig) -> Spread:
    """Legs of ``kind`` from the chain; ChainError / SpreadError when the chain cannot carry it."""
    if kind is StructureKind.BULL_CALL_DEBIT:
        return bull_call_debit(
            _by_delta(analysis, Right.CALL, cfg.debit_long_delta, "long call"),
            _by_delta(analysis, Right.CALL, cfg.debit_short_delta, "short call"),
        )
    if kind is StructureKind.BEAR_PUT_DEBIT:
        return bear_put_debit(
            _by_delta(analysis, Right.PUT, cfg.debit_long_delta, "long put"),
            _by_delta(analysis, Right.PUT, cfg.debit_short_delta, "short put"),
        )
    if kind is StructureKind.BULL_PUT_CREDIT:
        short = _by_delta(analysis, Right.PUT, cfg.credit_short_delta, "short put")
        wing = _wing(analysis, short, cfg.credit_wing_width, cfg.credit_wing_delta, "put wing")
        return bull_put_credit(short, wing)
    if kind is StructureKind.BEAR_CALL_CREDIT:
        short = _by_delta(analysis, Right.CALL, cfg.credit_short_delta, "short call")
        wing = _wing(analysis, short, cfg.credit_wing_width, cfg.credit_wing_delta, "call wing")
        return bear_call_credit(short, wing)
    if kind is StructureKind.IRON_CONDOR:
        short_put = _by_delta(analysis, Right.PUT, cfg.condor_short_delta, "short put")
        short_call = _by_delta(analysis, Right.CALL, cfg.condor_short_delta, "short call")
        put_wing = _wing(
            analysis, short_put, cfg.condor_wing_width, cfg.condor_wing_delta, "put wing"
        )
        call_wing = _wing(
            analysis, short_call, cfg.condor_wing_width, cfg.condor_wing_delta, "call wing"
        )
        return iron_condor(put_wing, short_put, short_call, call_wing)
    if kind is StructureKind.LONG_CALL:
        return long_call(_by_delta(analysis, Right.CALL, cfg.long_option_delta, "long call"))
    if kind is StructureKind.LONG_PUT:
        return long_put(_by_delta(analysis, Right.PUT, cfg.long_option_delta, "long put"))
    raise ChainError(f"Mag7 has no structure for {kind.value}")
