"""Market data shapes shared by every feed (simulator, Polygon, IB): bars and option chains.

Arrays are float64 numpy; a snapshot is immutable by convention (arrays are set read-only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from core.models import OptionContract, Right, require_aware

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def strike_decimal(value: float) -> Decimal:
    """A listed strike as a plain Decimal: 590.0 -> Decimal('590'), 592.5 -> Decimal('592.5')."""
    d = Decimal(str(round(value, 3)))
    if d == d.to_integral_value():
        return d.quantize(Decimal(1))
    return d.quantize(Decimal("0.001")).normalize()


def _freeze(*arrays: npt.NDArray[np.generic]) -> None:
    for arr in arrays:
        arr.setflags(write=False)


@dataclass(frozen=True, slots=True, eq=False)
class Bars:
    """OHLCV bars of one symbol; ``times`` are the bar *start* times (tz-aware, ascending)."""

    symbol: str
    times: tuple[datetime, ...]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        n = len(self.times)
        for name in ("open", "high", "low", "close", "volume"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"Bars.{name} has shape {arr.shape}, expected ({n},)")
        if n:
            require_aware(self.times[0], "Bars.times")
        _freeze(self.open, self.high, self.low, self.close, self.volume)

    def __len__(self) -> int:
        return len(self.times)

    def upto(self, t: datetime) -> Bars:
        """Bars that have *completed* by ``t`` (start + 1 minute <= t for 1-minute bars)."""
        require_aware(t, "t")
        k = 0
        for i, start in enumerate(self.times):
            if start.timestamp() + 60 <= t.timestamp():
                k = i + 1
            else:
                break
        return Bars(
            self.symbol,
            self.times[:k],
            self.open[:k].copy(),
            self.high[:k].copy(),
            self.low[:k].copy(),
            self.close[:k].copy(),
            self.volume[:k].copy(),
        )


@dataclass(frozen=True, slots=True, eq=False)
class ChainSnapshot:
    """One expiry of one underlying at one instant.

    Row ``i`` is the contract (``strikes[i]``, ``is_call[i]``). ``open_interest`` is -1 where the
    feed has none. Quotes may be bad (NaN, zero, negative, crossed): ``core.chains.quote_problems``
    names the problem for each row; nothing here silently fixes a quote.
    """

    underlying: str
    expiry: date
    at: datetime
    spot: float
    strikes: FloatArray
    is_call: BoolArray
    bid: FloatArray
    ask: FloatArray
    open_interest: IntArray
    multiplier: int = 100

    def __post_init__(self) -> None:
        require_aware(self.at, "ChainSnapshot.at")
        n = self.strikes.shape[0]
        for name in ("is_call", "bid", "ask", "open_interest"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"ChainSnapshot.{name} has shape {arr.shape}, expected ({n},)")
        _freeze(self.strikes, self.is_call, self.bid, self.ask, self.open_interest)

    def __len__(self) -> int:
        return int(self.strikes.shape[0])

    @property
    def mid(self) -> FloatArray:
        return (self.bid + self.ask) / 2.0

    def contract(self, i: int) -> OptionContract:
        return OptionContract(
            underlying=self.underlying,
            expiry=self.expiry,
            strike=strike_decimal(float(self.strikes[i])),
            right=Right.CALL if bool(self.is_call[i]) else Right.PUT,
            multiplier=self.multiplier,
        )

    def index_of(self, contract: OptionContract) -> int | None:
        """Row of ``contract`` in this snapshot, or None if it is not listed here."""
        if contract.underlying != self.underlying or contract.expiry != self.expiry:
            return None
        want_call = contract.right is Right.CALL
        # rows at the strike (a call and a put, normally), then the first of the right kind
        for i in np.flatnonzero(np.abs(self.strikes - float(contract.strike)) < 1e-6).tolist():
            if bool(self.is_call[i]) is want_call:
                return int(i)
        return None
