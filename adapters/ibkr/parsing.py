"""Pure conversions between IB API values and the domain (no I/O, no ``ib_async`` objects).

Combo price sign (IB BAG convention = ours). A BAG order carries the legs exactly as the spread
lists them (leg action BUY for a long leg, SELL for a short one). Its limit is the net price per
unit of that combo: positive = debit (paid), negative = credit (received), for BUY and SELL
orders alike. Opening buys the combo at our net price; closing sells the same combo at its value
in the same convention. So ``lmtPrice`` = our net price, action = ``intent.combo_side``, and a
credit structure (e.g. an iron condor opened for 1.20 credit) is a BUY at -1.20, never a SELL
with flipped legs.

Combo fills. IB reports a filled combo as one execution per leg (secType OPT, the leg's own
price, side BOT/SLD, shares = ratio x units), often plus one execution for the BAG itself (secType
BAG, the net price, shares = units). :func:`combo_fills` counts a unit when every leg has
executed ``ratio`` shares for it (FIFO per leg), prices it as sum(sign x leg cost) / units with
sign +1 for a leg the combo buys, and never adds the BAG rows on top. BAG rows are used only when
no leg execution is known. Commissions are reported per leg execution (a BAG row's commission
is used only when there are no legs) and are split pro rata when one execution spans two fills.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from core.marketdata import strike_decimal
from core.models import (
    CENT,
    Fill,
    Leg,
    OptionContract,
    OrderStatus,
    Right,
    Side,
    Spread,
    StructureKind,
)
from core.spreads import (
    bear_call_credit,
    bear_put_debit,
    bull_call_debit,
    bull_put_credit,
    iron_condor,
    long_call,
    long_put,
    long_straddle,
    long_strangle,
)

PRICE_QUANTUM = Decimal("0.0001")
WORKING_STATES = frozenset(
    {"PendingSubmit", "PreSubmitted", "Submitted", "ApiPending", "PendingCancel", "ApiUpdate"}
)
CANCELLED_STATES = frozenset({"Cancelled", "ApiCancelled"})


def expiry_text(day: date) -> str:
    return f"{day:%Y%m%d}"


def parse_expiry(text: str) -> date:
    digits = text.strip()[:8]
    return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))


def to_decimal(value: float | str | int | Decimal) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def clean_price(value: Decimal) -> Decimal:
    """Round to 4 decimals; a whole-cent price is returned with 2 (``1.2000`` -> ``1.20``)."""
    q = value.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)
    cents = q.quantize(CENT)
    return cents if cents == q else q


def option_from_ib(
    symbol: str, sec_type: str, expiry: str, strike: float, right: str, multiplier: str | int
) -> OptionContract | None:
    """An OptionContract from IB contract fields, or None for anything that is not an option."""
    if sec_type not in ("OPT", "FOP") or not expiry or not strike or not right:
        return None
    try:
        mult = int(float(multiplier)) if multiplier not in ("", None) else 100
    except ValueError:
        mult = 100
    return OptionContract(
        underlying=symbol,
        expiry=parse_expiry(expiry),
        strike=strike_decimal(float(strike)),
        right=Right(right[:1].upper()),
        multiplier=mult,
    )


@dataclass(frozen=True, slots=True)
class ExecRow:
    """One IB execution (execDetails) joined with its commission report (None until it came)."""

    exec_id: str
    order_ref: str
    perm_id: int
    order_id: int
    client_id: int
    con_id: int
    sec_type: str
    side: str  # BOT / SLD
    shares: Decimal
    price: Decimal
    at: datetime
    commission: Decimal | None = None

    @property
    def is_bag(self) -> bool:
        return self.sec_type == "BAG"


@dataclass(frozen=True, slots=True)
class LegSpec:
    """A combo leg as placed: conId, ratio and +1 for a leg the combo buys, -1 for one it sells."""

    con_id: int
    ratio: int
    sign: int


@dataclass(frozen=True, slots=True)
class ComboFills:
    fills: tuple[Fill, ...]
    units: int  # complete combo units filled
    missing_commissions: frozenset[str]  # exec ids used whose commission report is still due

    @property
    def avg_price(self) -> Decimal | None:
        if not self.units:
            return None
        total = sum((f.price * f.quantity for f in self.fills), Decimal("0"))
        return clean_price(total / self.units)

    @property
    def commission(self) -> Decimal:
        return sum((f.commission for f in self.fills), Decimal("0"))


def legs_from_executions(rows: Sequence[ExecRow]) -> tuple[LegSpec, ...]:
    """Best-effort legs of an order known only by its executions (ratios by gcd, signs by side).

    A BAG row tells the combo's side; without one the combo is assumed bought.
    """
    leg_rows = [r for r in rows if not r.is_bag]
    bag = next((r for r in rows if r.is_bag), None)
    combo_sign = -1 if bag is not None and bag.side.upper().startswith("S") else 1
    totals: dict[int, Decimal] = {}
    sides: dict[int, int] = {}
    for r in leg_rows:
        totals[r.con_id] = totals.get(r.con_id, Decimal("0")) + r.shares
        sides[r.con_id] = 1 if r.side.upper().startswith("B") else -1
    if not totals:
        return ()
    common = 0
    for qty in totals.values():
        common = math.gcd(common, int(qty))
    common = max(common, 1)
    return tuple(
        LegSpec(con_id, max(1, int(qty) // common), sides[con_id] * combo_sign)
        for con_id, qty in totals.items()
    )


def combo_fills(
    client_order_id: str,
    broker_order_id: str,
    legs: Sequence[LegSpec],
    rows: Sequence[ExecRow],
) -> ComboFills:
    """Fills of one order in combo units (see the module docstring); never double counts."""
    rows = sorted({r.exec_id: r for r in rows}.values(), key=lambda r: (r.at, r.exec_id))
    leg_rows = [r for r in rows if not r.is_bag]
    bag_rows = [r for r in rows if r.is_bag]
    if not leg_rows:
        bag_fills = tuple(
            Fill(
                client_order_id=client_order_id,
                broker_order_id=broker_order_id,
                exec_id=r.exec_id,
                quantity=int(r.shares),
                price=clean_price(r.price),
                commission=r.commission or Decimal("0"),
                at=r.at,
            )
            for r in bag_rows
            if r.shares > 0
        )
        bag_missing = frozenset(r.exec_id for r in bag_rows if r.commission is None)
        return ComboFills(bag_fills, sum(f.quantity for f in bag_fills), bag_missing)
    if not legs:
        legs = legs_from_executions(rows)
    by_con = {leg.con_id: leg for leg in legs}
    queues: dict[int, deque[list[object]]] = {leg.con_id: deque() for leg in legs}
    cum: dict[int, Decimal] = {leg.con_id: Decimal("0") for leg in legs}
    done = 0
    fills: list[Fill] = []
    missing: set[str] = set()
    for row in leg_rows:
        if row.con_id not in by_con:
            continue  # an execution of a contract that is not a leg: not ours to count
        queues[row.con_id].append([row, row.shares])
        cum[row.con_id] += row.shares
        units = min(int(cum[c] // by_con[c].ratio) for c in by_con)
        if units <= done:
            continue
        step = units - done
        price_total = Decimal("0")
        commission = Decimal("0")
        for con_id, leg in by_con.items():
            need = Decimal(step * leg.ratio)
            cost = Decimal("0")
            while need > 0:
                entry = queues[con_id][0]
                used_row: ExecRow = entry[0]  # type: ignore[assignment]
                left: Decimal = entry[1]  # type: ignore[assignment]
                take = min(need, left)
                cost += take * used_row.price
                if used_row.commission is None:
                    missing.add(used_row.exec_id)
                elif used_row.shares > 0:
                    commission += used_row.commission * take / used_row.shares
                left -= take
                need -= take
                if left <= 0:
                    queues[con_id].popleft()
                else:
                    entry[1] = left
            price_total += leg.sign * cost
        fills.append(
            Fill(
                client_order_id=client_order_id,
                broker_order_id=broker_order_id,
                exec_id=row.exec_id,
                quantity=step,
                price=clean_price(price_total / step),
                commission=clean_price(commission),
                at=row.at,
            )
        )
        done = units
    return ComboFills(tuple(fills), done, frozenset(missing))


def domain_status(ib_status: str, rejected: bool, filled_units: int, quantity: int) -> OrderStatus:
    """Our order status from IB's status text, a recorded rejection and the units filled."""
    if quantity and filled_units >= quantity:
        return OrderStatus.FILLED
    if rejected:
        return OrderStatus.REJECTED
    if ib_status == "Filled":
        return OrderStatus.FILLED
    if ib_status in CANCELLED_STATES:
        return OrderStatus.CANCELLED
    if ib_status == "Inactive":
        return OrderStatus.REJECTED
    return OrderStatus.WORKING


_SHAPES = (
    (StructureKind.BULL_CALL_DEBIT, bull_call_debit, 2),
    (StructureKind.BEAR_PUT_DEBIT, bear_put_debit, 2),
    (StructureKind.BULL_PUT_CREDIT, bull_put_credit, 2),
    (StructureKind.BEAR_CALL_CREDIT, bear_call_credit, 2),
    (StructureKind.LONG_STRADDLE, long_straddle, 2),
    (StructureKind.LONG_STRANGLE, long_strangle, 2),
    (StructureKind.IRON_CONDOR, iron_condor, 4),
    (StructureKind.LONG_CALL, long_call, 1),
    (StructureKind.LONG_PUT, long_put, 1),
)


def infer_spread(legs: Sequence[Leg]) -> Spread:
    """The Spread for legs read back from IB (an order adopted after a restart).

    The structure kind is found by rebuilding the legs with the validating factories; legs that
    fit no factory keep their order under the closest kind by leg count (display only).
    """
    target = tuple(legs)
    for kind, factory, n in _SHAPES:
        if len(target) != n:
            continue
        for perm in itertools.permutations([leg.contract for leg in target]):
            try:
                built = factory(*perm)
            except (ValueError, TypeError):
                continue
            if built.legs == target:
                return Spread(kind, target)
    fallback = {
        1: StructureKind.LONG_CALL
        if target and target[0].contract.right is Right.CALL
        else StructureKind.LONG_PUT,
        4: StructureKind.IRON_CONDOR,
    }.get(len(target), StructureKind.BULL_CALL_DEBIT)
    return Spread(fallback, target)


def leg_side(action: str) -> Side:
    return Side.BUY if action.upper().startswith("B") else Side.SELL
