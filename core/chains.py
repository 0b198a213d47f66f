"""Chain analysis: quote sanity, implied vol and delta per row, liquidity filters, selection.

Greeks and IV come from our own kernel (``core.pricing``) from bid/ask mids with intraday time to
expiry; vendor greeks are never needed. A row with a bad quote (NaN, zero, negative, crossed) is
never selected and its reason is kept, so callers can log what was skipped and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from core.marketdata import BoolArray, ChainSnapshot, FloatArray
from core.models import OptionContract, Right, Side, Spread, to_cents
from core.pricing import (
    IV_MAX_ITER,
    IV_TOL,
    VOL_HIGH,
    VOL_LOW,
    Int8Array,
    IVStatus,
    year_fraction,
)

_IV_STATUS_NAMES = {int(s): s.name for s in IVStatus}
_OK = int(IVStatus.OK)


class ChainError(ValueError):
    """The chain cannot support the requested selection (no liquid contract, no ATM pair, ...)."""


@dataclass(frozen=True, slots=True)
class LiquidityRules:
    """STRATEGIES.md: bid > 0, spread <= max(0.10, 15% of mid), OI >= 100 where the feed has it."""

    min_bid: float = 0.0
    max_spread_abs: float = 0.10
    max_spread_frac: float = 0.15
    min_open_interest: int = 100


def quote_problems(snapshot: ChainSnapshot) -> list[str]:
    """Per row: "" for a sane two-sided quote, else the reason the row must be skipped."""
    problems, _ = _quote_problems(snapshot.bid, snapshot.ask)
    return problems


def _sane_quotes(bid: FloatArray, ask: FloatArray) -> BoolArray:
    """Rows where :func:`quote_problem` is "" (vectorised: a Python call per row would dominate a
    chain scan). ``0 <= bid <= ask < inf`` and ``ask > 0``; NaN fails every comparison."""
    sane: BoolArray = (bid >= 0.0) & (bid <= ask) & (ask > 0.0) & (ask < np.inf)
    return sane


def _quote_problems(bid: FloatArray, ask: FloatArray) -> tuple[list[str], BoolArray]:
    """:func:`quote_problem` per row (only the bad rows are formatted), and the sane-row mask."""
    sane = _sane_quotes(bid, ask)
    problems = [""] * bid.shape[0]
    bad = np.flatnonzero(~sane).tolist()
    for i, b, a in zip(bad, bid[bad].tolist(), ask[bad].tolist(), strict=True):
        problems[i] = quote_problem(b, a)
    return problems, sane


class _Greeks:
    """Implied vol and delta of a chain's OK rows, solved when first read: every row for ``iv`` /
    ``delta``, or just the rows a reader names (``ChainAnalysis.atm_iv``). A row is solved once,
    by the same kernel call either way, so the numbers do not depend on the order of reads."""

    __slots__ = ("_inputs", "_pending", "_valid", "delta", "iv")

    def __init__(self, valid: BoolArray, inputs: _RowInputs | None) -> None:
        self._valid = valid  # the rows to solve, from ``inputs``
        self._inputs = inputs
        self._pending: BoolArray | None = None  # OK rows not solved yet, from the first solve
        self.iv = self.delta = _UNSOLVED

    @classmethod
    def solved(cls, valid: BoolArray, iv: FloatArray, delta: FloatArray) -> _Greeks:
        """Rows already solved (``analyze_chains``): nothing left to solve."""
        greeks = cls(valid, None)
        greeks.iv, greeks.delta = iv, delta
        greeks._pending = np.zeros_like(valid)
        return greeks

    def solve(self, rows: npt.NDArray[np.int64] | None = None) -> None:
        """Solve the pending rows among ``rows`` (None: all of them)."""
        if self._pending is None:
            n = self._valid.shape[0]
            self.iv, self.delta = np.full(n, np.nan), np.full(n, np.nan)
            self._pending = self._valid.copy()
        pending = self._pending
        todo = np.flatnonzero(pending) if rows is None else rows[pending[rows]]
        if todo.size == 0:
            return
        from core import _chain_kernels as kern

        x = self._inputs
        assert x is not None, "rows left to solve come with their inputs"
        kern.chain_solve_into(
            todo.astype(np.int64, copy=False), x.bid, x.ask, x.strikes, x.is_call, x.spot, x.t,
            x.rate, x.dividend_yield, VOL_LOW, VOL_HIGH, IV_TOL, IV_MAX_ITER, self.iv, self.delta,
        )  # fmt: skip
        pending[todo] = False


_UNSOLVED = np.empty(0)


@dataclass(frozen=True, slots=True, eq=False)
class ChainAnalysis:
    """IV, delta and flags per row of ``snapshot`` (see :func:`analyze_chain`).

    ``valid``: rows with a sane quote and a solvable implied vol; ``status``: the
    :class:`~core.pricing.IVStatus` of each row's mid (``INVALID_INPUT`` for a bad quote).
    ``iv`` and ``delta`` (NaN where not valid) are solved on first read (a loop minute that only
    counts skipped rows or prices a straddle needs none of them; ``atm_iv`` solves two rows).
    """

    snapshot: ChainSnapshot
    t: float
    liquid: BoolArray
    valid: BoolArray
    status: Int8Array
    _greeks: _Greeks = field(repr=False)
    # derived values the loop asks for more than once a minute (ATM rows, straddle mid): the
    # inputs are immutable, so the first answer is kept
    _kept: dict[Right | str, Any] = field(default_factory=dict, repr=False)

    @property
    def iv(self) -> FloatArray:
        self._greeks.solve()
        return _read_only(self._greeks.iv)

    @property
    def delta(self) -> FloatArray:
        self._greeks.solve()
        return _read_only(self._greeks.delta)

    @property
    def problems(self) -> tuple[str, ...]:
        """Per row: "" if valid, else why the row is skipped (a bad quote, or no implied vol).

        Formatted on each access (only logging and reports need the text, not the scan)."""
        snap = self.snapshot
        problems, sane = _quote_problems(snap.bid, snap.ask)
        unsolved = np.flatnonzero(sane & ~self.valid).tolist()
        mids = snap.mid[unsolved].tolist()
        for i, m, code in zip(unsolved, mids, self.status[unsolved].tolist(), strict=True):
            problems[i] = f"no implied vol for mid {m:.4f}: {_IV_STATUS_NAMES[code]}"
        return tuple(problems)

    @property
    def skipped_count(self) -> int:
        """How many rows ``skipped`` would list (without formatting them)."""
        return int(np.count_nonzero(~self.valid))

    def skipped(self) -> list[tuple[str, str]]:
        return [
            (self.snapshot.contract(i).symbol, reason)
            for i, reason in enumerate(self.problems)
            if reason
        ]

    def atm_index(self, right: Right) -> int:
        """Valid row of ``right`` with the strike nearest spot."""
        found: int | None = self._kept.get(right)
        if found is None:
            found = self._kept[right] = self._atm_index(right)
        return found

    def _atm_index(self, right: Right) -> int:
        want_call = right is Right.CALL
        mask = self.valid & (self.snapshot.is_call == want_call)
        if not mask.any():
            raise ChainError(f"{self.snapshot.underlying}: no valid {right.name.lower()} quotes")
        dist = np.where(mask, np.abs(self.snapshot.strikes - self.snapshot.spot), np.inf)
        return int(np.argmin(dist))

    def atm_straddle_mid(self) -> float:
        """Mid of call + put at the strike nearest spot (both must have sane quotes)."""
        found: float | None = self._kept.get("straddle")
        if found is None:
            found = self._kept["straddle"] = self._atm_straddle_mid()
        return found

    def _atm_straddle_mid(self) -> float:
        snap = self.snapshot
        call = self.atm_index(Right.CALL)
        put = self.strike_index(Right.PUT, float(snap.strikes[call]), require_liquid=False)
        if put is None:
            raise ChainError(f"{snap.underlying}: no valid ATM put to price a straddle")
        # the two rows' mids as ``snapshot.mid`` has them, without computing every row's
        bid, ask = snap.bid, snap.ask
        return float((bid[call] + ask[call]) / 2.0 + (bid[put] + ask[put]) / 2.0)

    def implied_move(self) -> float:
        """ATM straddle mid / spot: the market's expected move to expiry as a fraction."""
        return self.atm_straddle_mid() / self.snapshot.spot

    def atm_iv(self) -> float:
        call = self.atm_index(Right.CALL)
        put = self.atm_index(Right.PUT)
        greeks = self._greeks
        greeks.solve(np.array([call, put], dtype=np.int64))
        return float((greeks.iv[call] + greeks.iv[put]) / 2.0)

    def select_by_delta(self, right: Right, target_abs_delta: float) -> int | None:
        """Liquid row of ``right`` whose |delta| is nearest the target, or None if none is liquid."""
        want_call = self.snapshot.is_call == (right is Right.CALL)
        mask = self.liquid & want_call
        if not mask.any():
            return None
        dist = np.where(mask, np.abs(np.abs(self.delta) - target_abs_delta), np.inf)
        return int(np.argmin(dist))

    def strike_index(self, right: Right, strike: float, require_liquid: bool = True) -> int | None:
        """Row listed at exactly ``strike`` for ``right`` with a sane (optionally liquid) quote."""
        want_call = self.snapshot.is_call == (right is Right.CALL)
        usable = self.liquid if require_liquid else self.valid
        hits = np.nonzero(usable & want_call & (np.abs(self.snapshot.strikes - strike) < 1e-6))[0]
        return int(hits[0]) if hits.size else None

    def contract(self, i: int) -> OptionContract:
        return self.snapshot.contract(i)


def analyze_chain(
    snapshot: ChainSnapshot,
    expiry_close: datetime,
    rules: LiquidityRules,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
) -> ChainAnalysis:
    """Implied vol and delta from mids for every sane row; liquidity flags per STRATEGIES.md.

    Per row: a quote with a :func:`quote_problem` gets status ``INVALID_INPUT``; otherwise its mid
    gets its :class:`~core.pricing.IVStatus` and, where that is OK, the liquidity rules, an implied
    vol (``implied_vol``'s defaults) and the delta at that vol (``implied_vol_delta``, bit for
    bit). Status and flags now; vol and delta when first read (``ChainAnalysis``).
    """
    t = year_fraction(snapshot.at, expiry_close)
    n = len(snapshot)
    inputs = _RowInputs.of(
        snapshot.bid, snapshot.ask, snapshot.open_interest, snapshot.strikes, snapshot.is_call,
        _per_row(snapshot.spot, n), _per_row(t, n), rate, dividend_yield,
    )  # fmt: skip
    status, liquid = inputs.flags(rules)
    valid = status == _OK
    return ChainAnalysis(snapshot, t, liquid, valid, status, _Greeks(valid, inputs))


def analyze_chains(
    chains: Sequence[tuple[ChainSnapshot, datetime]],
    rules: LiquidityRules,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
) -> list[ChainAnalysis]:
    """:func:`analyze_chain` of many (snapshot, expiry close) pairs: the same results, from one
    pass of the pricing kernel over all their rows, solved at once (a universe of many chains is
    dominated by the fixed cost of each call otherwise). Raises as ``analyze_chain`` does for an
    expired chain."""
    if not chains:
        return []
    ts = [year_fraction(snap.at, close) for snap, close in chains]
    sizes = [len(snap) for snap, _ in chains]

    def cat(name: str) -> npt.NDArray[Any]:
        return np.concatenate([getattr(snap, name) for snap, _ in chains])

    inputs = _RowInputs.of(
        cat("bid"), cat("ask"), cat("open_interest"), cat("strikes"), cat("is_call"),
        np.repeat([snap.spot for snap, _ in chains], sizes), np.repeat(ts, sizes),
        rate, dividend_yield,
    )  # fmt: skip
    status, liquid = inputs.flags(rules)
    valid = status == _OK
    solved = _Greeks(valid, inputs)
    solved.solve()
    out = []
    stop = 0
    for (snap, _), t, n in zip(chains, ts, sizes, strict=True):
        sl = slice(stop, stop + n)
        stop += n
        greeks = _Greeks.solved(valid[sl], solved.iv[sl], solved.delta[sl])
        out.append(ChainAnalysis(snap, t, liquid[sl], valid[sl], status[sl], greeks))
    return out


class _RowInputs(NamedTuple):
    """The kernels' per-row inputs (contiguous, typed) of one chain or of many concatenated."""

    bid: FloatArray
    ask: FloatArray
    open_interest: npt.NDArray[np.int64]
    strikes: FloatArray
    is_call: BoolArray
    spot: FloatArray
    t: FloatArray
    rate: float
    dividend_yield: float

    @classmethod
    def of(
        cls,
        bid: FloatArray,
        ask: FloatArray,
        open_interest: npt.NDArray[np.int64],
        strikes: FloatArray,
        is_call: BoolArray,
        spot: FloatArray,
        t: FloatArray,
        rate: float,
        dividend_yield: float,
    ) -> _RowInputs:
        return cls(
            _f64(bid), _f64(ask), np.ascontiguousarray(open_interest, dtype=np.int64),
            _f64(strikes), np.ascontiguousarray(is_call, dtype=np.bool_), spot, t,
            float(rate), float(dividend_yield),
        )  # fmt: skip

    def flags(self, rules: LiquidityRules) -> tuple[Int8Array, BoolArray]:
        """IV status and liquidity per row (``core._chain_kernels.chain_flags_into``)."""
        from core import _chain_kernels as kern

        n = self.bid.shape[0]
        status = np.empty(n, dtype=np.int8)
        liquid = np.empty(n, dtype=np.bool_)
        kern.chain_flags_into(
            self.bid, self.ask, self.open_interest, self.strikes, self.is_call, self.spot,
            self.t, self.rate, self.dividend_yield, float(rules.min_bid),
            float(rules.max_spread_abs), float(rules.max_spread_frac),
            int(rules.min_open_interest), status, liquid,
        )  # fmt: skip
        return status, liquid


def _read_only(a: FloatArray) -> FloatArray:
    view = a.view()
    view.flags.writeable = False
    return view


def _f64(a: npt.ArrayLike) -> FloatArray:
    return np.ascontiguousarray(a, dtype=np.float64)


def _per_row(value: float | FloatArray, n: int) -> FloatArray:
    """A float repeated ``n`` times, or the per-row array itself (contiguous float64)."""
    if isinstance(value, np.ndarray):
        return _f64(value)
    out = np.empty(n, dtype=np.float64)
    out.fill(value)
    return out


@dataclass(frozen=True, slots=True)
class ComboQuote:
    """Net quote of a structure as opened: ``ask`` is what buying it costs now (the natural)."""

    bid: Decimal
    ask: Decimal

    @property
    def mid(self) -> Decimal:
        return to_cents((self.bid + self.ask) / 2)


def combo_quote(snapshots: Mapping[tuple[str, date], ChainSnapshot], spread: Spread) -> ComboQuote:
    """Combo bid/ask from leg quotes: long legs at ask/bid, short legs at bid/ask.

    ``snapshots`` is keyed by (underlying, expiry). Raises ChainError when a leg is unlisted or its
    quote is not sane.
    """
    bid = Decimal("0")
    ask = Decimal("0")
    for leg in spread.legs:
        snap = snapshots.get((leg.contract.underlying, leg.contract.expiry))
        if snap is None:
            raise ChainError(f"no chain for {leg.contract.underlying} {leg.contract.expiry}")
        i = snap.index_of(leg.contract)
        if i is None:
            raise ChainError(f"{leg.contract.symbol} is not listed")
        problem = quote_problem(float(snap.bid[i]), float(snap.ask[i]))
        if problem:
            raise ChainError(f"{leg.contract.symbol}: {problem}")
        leg_bid = Decimal(str(round(float(snap.bid[i]), 4))) * leg.ratio
        leg_ask = Decimal(str(round(float(snap.ask[i]), 4))) * leg.ratio
        if leg.side is Side.BUY:
            bid += leg_bid
            ask += leg_ask
        else:
            bid -= leg_ask
            ask -= leg_bid
    return ComboQuote(bid=bid, ask=ask)


def quote_problem(bid: float, ask: float) -> str:
    """The problem of one (bid, ask) pair, "" if it is a sane two-sided quote."""
    if not (np.isfinite(bid) and np.isfinite(ask)):
        return "non-finite quote (NaN/inf)"
    if bid < 0 or ask < 0:
        return f"negative quote bid={bid} ask={ask}"
    if ask == 0:
        return "zero ask"
    if bid > ask:
        return f"crossed quote bid={bid} > ask={ask}"
    return ""
