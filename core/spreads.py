"""Validating factories for every structure in STRATEGIES.md, and their risk arithmetic.

A factory refuses a wrong strike order, mixed underlyings or expiries, or the wrong option right
with ``SpreadError``: the prototype once built a "bear put spread" with inverted legs.
"""

from __future__ import annotations

from decimal import Decimal

from core.models import Leg, OptionContract, Right, Side, Spread, StructureKind


class SpreadError(ValueError):
    """A structure that STRATEGIES.md does not allow (bad strike order, mixed legs, ...)."""


def _same_series(*contracts: OptionContract) -> None:
    first = contracts[0]
    for other in contracts[1:]:
        if other.underlying != first.underlying:
            raise SpreadError(f"mixed underlyings: {first.underlying} and {other.underlying}")
        if other.expiry != first.expiry:
            raise SpreadError(f"mixed expiries: {first.expiry} and {other.expiry}")
        if other.multiplier != first.multiplier:
            raise SpreadError("mixed multipliers")


def _right(contract: OptionContract, right: Right, role: str) -> None:
    if contract.right is not right:
        raise SpreadError(f"{role} must be a {right.name.lower()}, got {contract.symbol}")


def _lower(a: OptionContract, b: OptionContract, what: str) -> None:
    if not a.strike < b.strike:
        raise SpreadError(f"{what}: need {a.strike} < {b.strike}")


def bull_call_debit(long_call: OptionContract, short_call: OptionContract) -> Spread:
    """Buy the lower-strike call, sell the higher-strike call."""
    _same_series(long_call, short_call)
    _right(long_call, Right.CALL, "long leg")
    _right(short_call, Right.CALL, "short leg")
    _lower(long_call, short_call, "bull call debit spread: long strike below short strike")
    return Spread(
        StructureKind.BULL_CALL_DEBIT, (Leg(long_call, Side.BUY), Leg(short_call, Side.SELL))
    )


def bear_put_debit(long_put: OptionContract, short_put: OptionContract) -> Spread:
    """Buy the higher-strike put, sell the lower-strike put."""
    _same_series(long_put, short_put)
    _right(long_put, Right.PUT, "long leg")
    _right(short_put, Right.PUT, "short leg")
    _lower(short_put, long_put, "bear put debit spread: long strike above short strike")
    return Spread(
        StructureKind.BEAR_PUT_DEBIT, (Leg(long_put, Side.BUY), Leg(short_put, Side.SELL))
    )


def bull_put_credit(short_put: OptionContract, long_put: OptionContract) -> Spread:
    """Sell the higher-strike put, buy the lower-strike put as the wing."""
    _same_series(short_put, long_put)
    _right(short_put, Right.PUT, "short leg")
    _right(long_put, Right.PUT, "long leg")
    _lower(long_put, short_put, "bull put credit spread: long wing below short strike")
    return Spread(
        StructureKind.BULL_PUT_CREDIT, (Leg(short_put, Side.SELL), Leg(long_put, Side.BUY))
    )


def bear_call_credit(short_call: OptionContract, long_call: OptionContract) -> Spread:
    """Sell the lower-strike call, buy the higher-strike call as the wing."""
    _same_series(short_call, long_call)
    _right(short_call, Right.CALL, "short leg")
    _right(long_call, Right.CALL, "long leg")
    _lower(short_call, long_call, "bear call credit spread: short strike below long wing")
    return Spread(
        StructureKind.BEAR_CALL_CREDIT, (Leg(short_call, Side.SELL), Leg(long_call, Side.BUY))
    )


def iron_condor(
    long_put: OptionContract,
    short_put: OptionContract,
    short_call: OptionContract,
    long_call: OptionContract,
) -> Spread:
    """Long put < short put < short call < long call, all one series."""
    _same_series(long_put, short_put, short_call, long_call)
    _right(long_put, Right.PUT, "long put wing")
    _right(short_put, Right.PUT, "short put")
    _right(short_call, Right.CALL, "short call")
    _right(long_call, Right.CALL, "long call wing")
    _lower(long_put, short_put, "iron condor: put wing below short put")
    _lower(short_put, short_call, "iron condor: short put below short call")
    _lower(short_call, long_call, "iron condor: short call below call wing")
    return Spread(
        StructureKind.IRON_CONDOR,
        (
            Leg(long_put, Side.BUY),
            Leg(short_put, Side.SELL),
            Leg(short_call, Side.SELL),
            Leg(long_call, Side.BUY),
        ),
    )


def long_straddle(call: OptionContract, put: OptionContract) -> Spread:
    _same_series(call, put)
    _right(call, Right.CALL, "call leg")
    _right(put, Right.PUT, "put leg")
    if call.strike != put.strike:
        raise SpreadError(f"straddle needs one strike, got {call.strike} and {put.strike}")
    return Spread(StructureKind.LONG_STRADDLE, (Leg(call, Side.BUY), Leg(put, Side.BUY)))


def long_strangle(put: OptionContract, call: OptionContract) -> Spread:
    _same_series(put, call)
    _right(put, Right.PUT, "put leg")
    _right(call, Right.CALL, "call leg")
    _lower(put, call, "strangle: put strike below call strike")
    return Spread(StructureKind.LONG_STRANGLE, (Leg(put, Side.BUY), Leg(call, Side.BUY)))


def long_call(call: OptionContract) -> Spread:
    _right(call, Right.CALL, "long call")
    return Spread(StructureKind.LONG_CALL, (Leg(call, Side.BUY),))


def long_put(put: OptionContract) -> Spread:
    _right(put, Right.PUT, "long put")
    return Spread(StructureKind.LONG_PUT, (Leg(put, Side.BUY),))


def width(spread: Spread) -> Decimal:
    """Strike distance of a vertical; the wider side of an iron condor; 0 for single-strike kinds."""
    kind = spread.kind
    strikes = [leg.contract.strike for leg in spread.legs]
    if kind is StructureKind.IRON_CONDOR:
        return max(strikes[1] - strikes[0], strikes[3] - strikes[2])
    if kind in (
        StructureKind.BULL_CALL_DEBIT,
        StructureKind.BEAR_PUT_DEBIT,
        StructureKind.BULL_PUT_CREDIT,
        StructureKind.BEAR_CALL_CREDIT,
    ):
        return abs(strikes[0] - strikes[1])
    return Decimal("0")


def max_loss_per_unit(spread: Spread, net_price: Decimal) -> Decimal:
    """Worst-case loss per structure (per share) if opened at ``net_price`` (debit > 0, credit < 0).

    Debit structures lose at most the debit; credit structures lose the width less the credit.
    """
    if spread.is_credit:
        credit = -net_price
        if credit <= 0:
            raise SpreadError(f"{spread.kind.value} must open for a credit, got {net_price}")
        loss = width(spread) - credit
        if loss <= 0:
            raise SpreadError(f"credit {credit} is not below the width {width(spread)}: bad quote")
        return loss
    if net_price <= 0:
        raise SpreadError(f"{spread.kind.value} must open for a debit, got {net_price}")
    if spread.kind in (StructureKind.BULL_CALL_DEBIT, StructureKind.BEAR_PUT_DEBIT) and (
        net_price >= width(spread)
    ):
        raise SpreadError(f"debit {net_price} is not below the width {width(spread)}: bad quote")
    return net_price


def max_loss_dollars(spread: Spread, net_price: Decimal, quantity: int) -> Decimal:
    return max_loss_per_unit(spread, net_price) * spread.multiplier * quantity


def closing_legs(spread: Spread) -> tuple[Leg, ...]:
    """The legs that unwind ``spread`` (each side flipped)."""
    return tuple(Leg(leg.contract, leg.side.flipped(), leg.ratio) for leg in spread.legs)
