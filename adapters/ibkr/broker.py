"""``IBKRBroker``: the ``Broker`` port on Interactive Brokers (TWS / IB Gateway) via ``ib_async``.

Synchronous methods, one ``ib_async.IB`` on a private event-loop thread (``adapters.ibkr.session``).
Nothing connects at construction or import: call :meth:`IBKRBroker.connect` (and
:meth:`IBKRBroker.dispose`, or use it as a context manager).

Semantics (same as ``adapters.paper.PaperBroker``):

* ``submit(intent)`` places ONE order for the whole structure: a BAG combo (one ComboLeg per leg:
  conId, ratio, BUY/SELL as the spread lists it) for multi-leg spreads, the option itself for a
  single leg. LMT, TIF DAY, ``orderRef = intent.client_order_id``, the configured account. The
  limit is our net price unchanged (see ``adapters.ibkr.parsing``: IB's BAG sign convention is
  ours: positive = debit, negative = credit; action BUY to open, SELL to close). It waits for IB's
  acknowledgement and returns the BrokerOrder (WORKING, or FILLED if it filled at once).
  Idempotent by client_order_id: an order IB already holds with that orderRef (this process, an
  earlier process, another client id) is returned and nothing is sent.
* ``find`` / ``modify`` (same orderId, new lmtPrice) / ``cancel`` / ``open_orders`` /
  ``positions`` / ``executions(since)`` (combo fills per unit, with commissions in dollars and
  ``client_order_id`` from orderRef) / ``account()`` (NetLiquidation, BuyingPower; the account id
  is returned masked).
* Rejections raise :class:`~adapters.ibkr.errors.OrderRejected` (a ``BrokerError``) from
  ``submit`` with IB's code and reason, also when IB only sends error 201 and no orderStatus;
  ``find`` then reports the order REJECTED with that reason.

Restart safety. On every (re)connect, before the session counts as ready, the adapter checks the
managed accounts (expected account, paper ``DU`` vs live against the mode), then re-reads all open
orders (reqAllOpenOrders), the day's completed orders and executions (reqExecutions), rebuilding
the orderRef -> order map and raising the next order id above every id it saw. A new
``IBKRBroker`` after a crash therefore finds the order by orderRef and never resends it, and
fills that arrived while it was away are reported once (fills are keyed by IB's execId).

Disconnects. After a socket loss the session reconnects with the injected backoff schedule and
reconciles as above. While disconnected (or while TWS reports 1100), ``submit`` / ``modify`` /
``cancel`` wait up to ``hold_timeout`` seconds for the connection to come back and then act on the
reconciled state; if it is still down they raise :class:`~adapters.ibkr.errors.OrderHeld` (a
``BrokerError``: "disconnected; order held, not sent"). Nothing is queued behind the caller's back,
nothing is silently dropped, nothing is sent twice. An order whose acknowledgement was cut off by
a disconnect is looked up by orderRef after the reconnect; if IB does not have it, submit raises
(it is not resent automatically: the caller decides, and the next submit places it once).

Order ids. IB order ids must grow per client id. After a gateway restart ``nextValidId`` can be
rolled back below ids already used (IB then answers 103 "duplicate order id"). The adapter keeps
the highest id it has seen (its own orders, open orders, executions) and allocates above it; on a
103 it jumps ``duplicate_id_jump`` above the failed id and retries once (the 103 means nothing was
placed, so the retry cannot make a second live order for the orderRef).

Read-only mode refuses ``submit`` / ``modify`` / ``cancel`` with
:class:`~adapters.ibkr.errors.ReadOnlyError`; reads work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from adapters.ibkr.account import (
    AccountCheck,
    is_paper_account,
    mask_account,
    mode_account_problem,
)
from adapters.ibkr.errors import (
    AccountMismatch,
    AmbiguousContract,
    ErrorKind,
    IBKRDisconnected,
    IBKRError,
    OrderHeld,
    OrderRejected,
    ReadOnlyError,
    classify,
    describe,
)
from adapters.ibkr.pacing import TokenBucket, contract_bucket
from adapters.ibkr.parsing import (
    ComboFills,
    ExecRow,
    LegSpec,
    clean_price,
    combo_fills,
    domain_status,
    expiry_text,
    infer_spread,
    leg_side,
    legs_from_executions,
    option_from_ib,
    to_decimal,
)
from adapters.ibkr.session import (
    DEFAULT_BACKOFF,
    IBSession,
    LoopThread,
    SessionClient,
    paced_request,
)
from core.models import (
    AccountInfo,
    BrokerOrder,
    BrokerPosition,
    Fill,
    Leg,
    OptionContract,
    OrderIntent,
    OrderStatus,
    Side,
    Spread,
)

T = TypeVar("T")

log = logging.getLogger("dte.ibkr")

UNSET_DOUBLE = 1.7976931348623157e308


@dataclass(eq=False)
class _OrderRecord:
    """Everything known about one order (keyed by orderRef); mutated on the loop thread only."""

    order_ref: str
    client_id: int = 0
    order_id: int = 0
    perm_id: int = 0
    action: str = "BUY"
    quantity: int = 0
    limit: Decimal = Decimal("0")
    account: str = ""
    symbol: str = ""
    sec_type: str = "BAG"
    con_id: int = 0  # the option's conId for a single-leg order
    legs: tuple[LegSpec, ...] = ()
    spread: Spread | None = None
    ib_status: str = ""
    ib_filled: float = 0.0
    ib_avg_fill: float = 0.0
    seen: bool = False  # IB has told us about this order (openOrder/status/execution/completed)
    acks: int = 0  # openOrder / orderStatus messages received for it
    errors: list[tuple[int, str]] = field(default_factory=list)
    rejected: str | None = None
    reject_code: int | None = None
    cancel_reason: str = ""
    modify_pending: Decimal | None = None

    @property
    def broker_order_id(self) -> str:
        if self.perm_id:
            return f"IB-{self.perm_id}"
        return f"IB-{self.client_id}.{self.order_id}"


class IBKRBroker(SessionClient):
    """The ``Broker`` port on IB (see the module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4002,
        client_id: int = 1,
        expected_account: str | None = None,
        *,
        mode: str | None = None,
        read_only: bool = False,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        ack_timeout: float = 5.0,
        hold_timeout: float = 5.0,
        commission_timeout: float = 3.0,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        pacing_backoff: Sequence[float] = (1.0, 5.0, 15.0),
        link_loss_reconnect_after: float | None = 60.0,
        duplicate_id_jump: int = 1000,
        trading_classes: Mapping[str, str] | None = None,
        contract_limiter: TokenBucket | None = None,
        fill_clock: Callable[[], datetime] | None = None,
    ) -> None:
        # fill_clock: for a run on a simulated clock against a paper account (a replayed day),
        # fills are stamped with the run's time when they first arrive instead of the broker's
        # wall-clock execution time, so the ledger stays on one time line. None: broker times.
        self._fill_clock = fill_clock
        self.host = host
        self.port = port
        self.client_id = client_id
        self.expected_account = expected_account.strip().upper() if expected_account else None
        self.mode = mode
        self.read_only = read_only
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.ack_timeout = ack_timeout
        self.hold_timeout = hold_timeout
        self.commission_timeout = commission_timeout
        self.pacing_backoff = tuple(pacing_backoff)
        self.duplicate_id_jump = duplicate_id_jump
        self.trading_classes = dict(trading_classes or {})
        self._limiter = contract_limiter or contract_bucket()
        self._thread_name = "ibkr-broker"
        self._thread: LoopThread | None = None
        self.session = IBSession(
            host=host,
            port=port,
            client_id=client_id,
            name=f"IBKRBroker[{client_id}]",
            connect_timeout=connect_timeout,
            backoff=backoff,
            link_loss_reconnect_after=link_loss_reconnect_after,
            install=self._install,
            on_connected=self._on_connected,
            on_restored=self._on_restored,
            on_error=self._on_error,
        )
        # state (loop thread only)
        self._by_ref: dict[str, _OrderRecord] = {}
        self._by_perm: dict[int, _OrderRecord] = {}
        self._by_oid: dict[tuple[int, int], _OrderRecord] = {}
        self._execs: dict[str, ExecRow] = {}
        self._commissions: dict[str, Decimal] = {}
        self._con_ids: dict[OptionContract, int] = {}
        self._contracts: dict[int, OptionContract] = {}
        self._max_known_id = 0
        self._account: str | None = None
        self._accounts: tuple[str, ...] = ()
        self._ref_locks: dict[str, asyncio.Lock] = {}
        self._sync_lock: asyncio.Lock | None = None
        self._positions_lock: asyncio.Lock | None = None
        # diagnostics (read from any thread)
        self.placements = 0  # placeOrder messages sent for new orders (retries included)
        self.modifications = 0
        self.resyncs = 0
        self.pacing_violations = 0
        self.errors: list[tuple[int, int, str]] = []  # (reqId, code, message) real errors
        self.info: list[tuple[int, str]] = []  # (code, message) informational codes

    # ------------------------------------------------------------------ life cycle
    def _connect_budget(self) -> float:
        # connect (SessionClient): connect, check the accounts, reconcile; a BrokerError says why
        return self.connect_timeout + 3 * self.request_timeout

    @property
    def connected(self) -> bool:
        return self.session.ready

    @property
    def account_id(self) -> str | None:
        """The trading account, masked (safe to log)."""
        return mask_account(self._account) if self._account else None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        return self._call(coro, timeout, what)

    @property
    def _ib(self) -> Any:
        ib = self.session.ib
        if ib is None:
            raise IBKRDisconnected("no IB connection")
        return ib

    def _locks(self) -> tuple[asyncio.Lock, asyncio.Lock]:
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        if self._positions_lock is None:
            self._positions_lock = asyncio.Lock()
        return self._sync_lock, self._positions_lock

    # ------------------------------------------------------------------ the Broker port
    def account(self) -> AccountInfo:
        return self._run(self._account_info(), self._op_timeout(), "account")

    def submit(self, intent: OrderIntent) -> BrokerOrder:
        return self._run(self._submit(intent), self._op_timeout(), "submit")

    def find(self, client_order_id: str) -> BrokerOrder | None:
        return self._run(self._find(client_order_id), self._op_timeout(), "find")

    def modify(self, client_order_id: str, limit_price: Decimal) -> BrokerOrder:
        return self._run(self._modify(client_order_id, limit_price), self._op_timeout(), "modify")

    def cancel(self, client_order_id: str) -> BrokerOrder:
        return self._run(self._cancel(client_order_id), self._op_timeout(), "cancel")

    def open_orders(self) -> list[BrokerOrder]:
        return self._run(self._open_orders(), self._op_timeout(), "open_orders")

    def positions(self) -> list[BrokerPosition]:
        return self._run(self._positions(), self._op_timeout(), "positions")

    def executions(self, since: datetime) -> list[Fill]:
        return self._run(self._executions(since), self._op_timeout(), "executions")

    def resync(self) -> None:
        """Re-read open orders, completed orders and executions now (what a reconnect does)."""
        self._run(self._resync(), self._op_timeout(), "resync")

    def drop_connection(self) -> None:
        """Close the socket as if the network failed (the reconnect logic takes over)."""
        self._run(self._drop(), 5.0, "drop")

    def wait_connected(self, timeout: float) -> bool:
        """Block until the session is connected and reconciled (True) or ``timeout`` passes."""
        return self._run(self.session.wait_ready(timeout), timeout + 5.0, "wait_connected")

    def _op_timeout(self) -> float:
        return (
            self.hold_timeout
            + self.ack_timeout
            + self.commission_timeout
            + 4 * self.request_timeout
            + 2 * sum(self.pacing_backoff)
        )

    async def _drop(self) -> None:
        self.session.drop()

    # ------------------------------------------------------------------ connect & reconcile
    def _install(self, ib: Any) -> None:
        wrapper = ib.wrapper
        _hook(wrapper, "openOrder", self._on_open_order)
        _hook(wrapper, "orderStatus", self._on_order_status)
        _hook(wrapper, "execDetails", self._on_exec_details)
        _hook(wrapper, "commissionReport", self._on_commission)
        _hook(wrapper, "completedOrder", self._on_completed_order)

    async def _on_connected(self, ib: Any) -> None:
        self._check_accounts(list(ib.managedAccounts()))
        await self._resync(ib)

    async def _on_restored(self, data_lost: bool) -> None:
        await self._resync()

    def _check_accounts(self, accounts: list[str]) -> None:
        check = AccountCheck(
            accounts=tuple(accounts), paper=all(is_paper_account(a) for a in accounts)
        )
        where = f"IB API at {self.host}:{self.port}"
        if not accounts:
            raise AccountMismatch(f"{where} reported no managed accounts")
        if self.expected_account is not None:
            upper = {a.strip().upper(): a for a in accounts}
            if self.expected_account not in upper:
                raise AccountMismatch(
                    f"expected account {mask_account(self.expected_account)} is not among the "
                    f"managed accounts {check.masked()} reported by the {where}"
                )
            account: str | None = upper[self.expected_account]
        else:
            account = accounts[0] if len(accounts) == 1 else None
        if self.mode is not None:
            problem = mode_account_problem(self.mode, check)
            if problem is not None:
                raise AccountMismatch(f"{problem} ({where})")
        self._accounts = tuple(accounts)
        self._account = account

    async def _resync(self, ib: Any | None = None) -> None:
        ib = ib or self._ib
        sync_lock, _ = self._locks()
        async with sync_lock:
            timeout = self.request_timeout
            await asyncio.wait_for(ib.reqAllOpenOrdersAsync(), timeout)
            await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), timeout)
            await asyncio.wait_for(ib.reqExecutionsAsync(), timeout)
            ib.client.updateReqId(self._max_known_id + 1)
            self.resyncs += 1
        for rec in list(self._by_ref.values()):
            if rec.spread is None and rec.seen:
                try:
                    await self._ensure_spread(rec)
                except IBKRError as error:
                    log.warning("cannot resolve the legs of %s: %s", rec.order_ref, error.reason)
        self.session.bump()

    # ------------------------------------------------------------------ wrapper hooks
    def _record(self, order_ref: str) -> _OrderRecord:
        rec = self._by_ref.get(order_ref)
        if rec is None:
            rec = _OrderRecord(order_ref=order_ref)
            self._by_ref[order_ref] = rec
        return rec

    def _index(self, rec: _OrderRecord) -> None:
        if rec.perm_id:
            self._by_perm[rec.perm_id] = rec
        if rec.order_id:
            self._by_oid[(rec.client_id, rec.order_id)] = rec
            self._max_known_id = max(self._max_known_id, rec.order_id)

    def _adopt_order_fields(self, rec: _OrderRecord, contract: Any, order: Any) -> None:
        rec.action = order.action or rec.action
        if order.totalQuantity:
            rec.quantity = int(order.totalQuantity)
        if order.lmtPrice not in (None, UNSET_DOUBLE):
            rec.limit = clean_price(to_decimal(order.lmtPrice))
        rec.account = order.account or rec.account
        rec.symbol = contract.symbol or rec.symbol
        rec.sec_type = contract.secType or rec.sec_type
        if contract.secType == "BAG" and contract.comboLegs:
            rec.legs = tuple(
                LegSpec(int(leg.conId), int(leg.ratio) or 1, leg_side(leg.action).sign)
                for leg in contract.comboLegs
            )
        elif contract.secType != "BAG" and contract.conId:
            rec.con_id = int(contract.conId)
            rec.legs = (LegSpec(int(contract.conId), 1, 1),)
            option = option_from_ib(
                contract.symbol,
                contract.secType,
                contract.lastTradeDateOrContractMonth,
                contract.strike,
                contract.right,
                contract.multiplier,
            )
            if option is not None:
                self._remember(option, int(contract.conId))

    def _on_open_order(self, order_id: int, contract: Any, order: Any, state: Any) -> None:
        if getattr(order, "whatIf", False):
            return
        self._max_known_id = max(self._max_known_id, int(order_id))
        if not order.orderRef:
            return
        rec = self._by_perm.get(order.permId) or self._record(order.orderRef)
        rec.client_id = int(order.clientId)
        rec.order_id = int(order_id)
        rec.perm_id = int(order.permId) or rec.perm_id
        self._adopt_order_fields(rec, contract, order)
        if state.status:
            rec.ib_status = state.status
        rec.seen = True
        rec.acks += 1
        self._index(rec)
        self.session.bump()

    def _on_order_status(
        self,
        order_id: int,
        status: str,
        filled: float,
        remaining: float,
        avg_fill_price: float,
        perm_id: int,
        parent_id: int,
        last_fill_price: float,
        client_id: int,
        why_held: str,
        mkt_cap_price: float = 0.0,
    ) -> None:
        rec = self._by_perm.get(perm_id) or self._by_oid.get((client_id, order_id))
        if rec is None:
            return  # an order we learn about from its openOrder (sent alongside)
        rec.ib_status = status
        rec.ib_filled = filled
        rec.ib_avg_fill = avg_fill_price
        if perm_id:
            rec.perm_id = perm_id
        rec.seen = True
        rec.acks += 1
        self._index(rec)
        self.session.bump()

    def _on_completed_order(self, contract: Any, order: Any, state: Any) -> None:
        if not order.orderRef:
            return
        rec = self._by_perm.get(order.permId)
        if rec is None:
            existing = self._by_ref.get(order.orderRef)
            if existing is not None and existing.perm_id and existing.perm_id != order.permId:
                return  # an older order that once carried this ref: the live one wins
            rec = self._record(order.orderRef)
        rec.perm_id = int(order.permId) or rec.perm_id
        self._adopt_order_fields(rec, contract, order)
        status = state.completedStatus or state.status
        if status in ("Filled", "Cancelled", "ApiCancelled", "Inactive"):
            rec.ib_status = status
        if getattr(order, "filledQuantity", 0) not in (None, UNSET_DOUBLE):
            rec.ib_filled = max(rec.ib_filled, float(order.filledQuantity or 0))
        rec.seen = True
        self._index(rec)
        self.session.bump()

    def _on_exec_details(self, req_id: int, contract: Any, execution: Any) -> None:
        exec_id = execution.execId
        commission = self._commissions.get(exec_id)
        previous = self._execs.get(exec_id)
        if previous is not None and commission is None:
            commission = previous.commission
        row = ExecRow(
            exec_id=exec_id,
            order_ref=execution.orderRef or "",
            perm_id=int(execution.permId),
            order_id=int(execution.orderId),
            client_id=int(execution.clientId),
            con_id=int(contract.conId),
            sec_type=contract.secType,
            side=execution.side,
            shares=to_decimal(execution.shares),
            price=to_decimal(execution.price),
            at=(
                previous.at
                if previous is not None
                else self._fill_clock()
                if self._fill_clock is not None
                else execution.time
            ),
            commission=commission,
        )
        self._execs[exec_id] = row
        if row.client_id == self.client_id:
            self._max_known_id = max(self._max_known_id, row.order_id)
        option = option_from_ib(
            contract.symbol,
            contract.secType,
            contract.lastTradeDateOrContractMonth,
            contract.strike,
            contract.right,
            contract.multiplier,
        )
        if option is not None:
            self._remember(option, row.con_id)
        if row.order_ref:
            rec = self._by_perm.get(row.perm_id) or self._record(row.order_ref)
            if not rec.perm_id:
                rec.perm_id = row.perm_id
            if not rec.order_id:
                rec.order_id, rec.client_id = row.order_id, row.client_id
            rec.seen = True
            self._index(rec)
        self.session.bump()

    def _on_commission(self, report: Any) -> None:
        if report.commission is None or report.commission >= UNSET_DOUBLE / 2:
            return
        value = to_decimal(report.commission)
        self._commissions[report.execId] = value
        row = self._execs.get(report.execId)
        if row is not None:
            self._execs[report.execId] = _with_commission(row, value)
        self.session.bump()

    def _on_error(self, req_id: int, code: int, message: str) -> None:
        kind = classify(code)
        if kind is ErrorKind.INFO:
            self.info.append((code, message))
            log.info("IB info %d: %s", code, message)
            return
        if kind in (
            ErrorKind.CONNECTIVITY_LOST,
            ErrorKind.RESTORED,
            ErrorKind.RESTORED_DATA_LOST,
        ):
            self.info.append((code, message))
            return
        rec = self._by_oid.get((self.client_id, req_id)) if req_id > 0 else None
        if rec is None:
            if req_id > 0 and kind in (ErrorKind.PACING, ErrorKind.NO_SECURITY):
                return  # a request's own failure: raised (and retried) by that request
            if kind is not ErrorKind.WARNING:
                self.errors.append((req_id, code, message))
                log.warning("IB error %d (reqId %d): %s", code, req_id, message)
            return
        rec.errors.append((code, message))
        if kind is ErrorKind.DUPLICATE_ORDER_ID:
            log.warning("IB refused order id %d for %s: %s", req_id, rec.order_ref, message)
        elif kind is ErrorKind.CANCELLED:
            rec.cancel_reason = message.strip()
            if rec.ib_status not in ("Filled",):
                rec.ib_status = "Cancelled"
        elif kind in (ErrorKind.WARNING, ErrorKind.NOT_CANCELLABLE):
            log.info("IB note %d on %s: %s", code, rec.order_ref, message)
        elif rec.modify_pending is not None:
            log.warning("IB refused a modify of %s: %s", rec.order_ref, describe(code, message))
        elif rec.ib_status != "Filled":
            rec.rejected = describe(code, message)
            rec.reject_code = code
            log.warning("IB rejected %s: %s", rec.order_ref, rec.rejected)
        self.session.bump()

    def _remember(self, option: OptionContract, con_id: int) -> None:
        self._con_ids[option] = con_id
        self._contracts[con_id] = option

    # ------------------------------------------------------------------ views
    def _fills_of(self, rec: _OrderRecord) -> ComboFills:
        rows = [
            r
            for r in self._execs.values()
            if r.order_ref == rec.order_ref and (not rec.perm_id or r.perm_id == rec.perm_id)
        ]
        legs = rec.legs or legs_from_executions(rows)
        return combo_fills(rec.order_ref, rec.broker_order_id, legs, rows)

    def _status(self, rec: _OrderRecord) -> OrderStatus:
        return domain_status(
            rec.ib_status, rec.rejected is not None, self._fills_of(rec).units, rec.quantity
        )

    async def _ensure_spread(self, rec: _OrderRecord) -> Spread:
        if rec.spread is not None:
            return rec.spread
        legs = []
        for leg in rec.legs:
            option = self._contracts.get(leg.con_id) or await self._contract_of(leg.con_id)
            legs.append(Leg(option, Side.BUY if leg.sign > 0 else Side.SELL, leg.ratio))
        if not legs:
            raise IBKRError(f"order {rec.order_ref} has no known legs")
        rec.spread = infer_spread(legs)
        return rec.spread

    async def _broker_order(self, rec: _OrderRecord) -> BrokerOrder:
        spread = await self._ensure_spread(rec)
        fills = self._fills_of(rec)
        status = domain_status(rec.ib_status, rec.rejected is not None, fills.units, rec.quantity)
        filled = fills.units or int(rec.ib_filled)
        avg = fills.avg_price
        if avg is None and rec.ib_filled:
            avg = to_decimal(rec.ib_avg_fill)
        reason = ""
        if status is OrderStatus.REJECTED:
            reason = rec.rejected or "inactive at IB"
        elif status is OrderStatus.CANCELLED:
            reason = rec.cancel_reason or "cancelled at IB"
        return BrokerOrder(
            broker_order_id=rec.broker_order_id,
            client_order_id=rec.order_ref,
            side=Side(rec.action) if rec.action in ("BUY", "SELL") else Side.BUY,
            spread=spread,
            quantity=rec.quantity,
            limit_price=rec.limit,
            status=status,
            filled_quantity=filled,
            avg_fill_price=avg,
            reason=reason,
        )

    # ------------------------------------------------------------------ readiness
    def _check_writable(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyError(
                f"IBKRBroker is read-only: refusing to {what} (set read_only=False to trade)"
            )

    async def _require_ready(self, what: str, held: bool) -> None:
        if self.session.ready:
            return
        if await self.session.wait_ready(self.hold_timeout):
            return
        state = "TWS lost its link to IB (1100)" if self.session.connected else "disconnected"
        if held:
            raise OrderHeld(
                f"IB {state}: {what} held, not sent (no connection within "
                f"{self.hold_timeout:g} s); retry when the connection is back"
            )
        raise IBKRDisconnected(
            f"IB {state}: cannot {what} (no connection within {self.hold_timeout:g} s)"
        )

    # ------------------------------------------------------------------ operations
    async def _find(self, client_order_id: str) -> BrokerOrder | None:
        rec = self._by_ref.get(client_order_id)
        if not self.session.ready and not await self.session.wait_ready(self.hold_timeout):
            if rec is not None and rec.seen:
                return await self._broker_order(rec)  # last known state
            raise IBKRDisconnected(
                f"IB disconnected: cannot tell whether an order with ref {client_order_id} exists"
            )
        rec = self._by_ref.get(client_order_id)
        if rec is None or not _known(rec):
            return None
        return await self._broker_order(rec)

    async def _submit(self, intent: OrderIntent) -> BrokerOrder:
        self._check_writable("place orders")
        cid = intent.client_order_id
        lock = self._ref_locks.setdefault(cid, asyncio.Lock())
        async with lock:
            known = self._by_ref.get(cid)
            if known is not None and known.seen:
                return await self._broker_order(known)
            await self._require_ready(f"order {cid}", held=True)
            known = self._by_ref.get(cid)
            if known is not None and (known.seen or known.rejected):
                return await self._broker_order(known)
            if known is not None and known.order_id:
                # sent earlier but never acknowledged: ask IB before anything else
                await self._resync()
                if known.seen or known.rejected:
                    return await self._broker_order(known)
                raise IBKRError(
                    f"order {cid} was sent to IB (order id {known.order_id}) but never "
                    "acknowledged and IB does not list it; not resending (is TWS holding it "
                    "for a confirmation?)"
                )
            if self._account is None:
                raise IBKRError(
                    f"several managed accounts {[mask_account(a) for a in self._accounts]}: "
                    "configure the account to trade"
                )
            legs = []
            for leg in intent.spread.legs:
                con_id = await self._qualify(leg.contract)
                legs.append(LegSpec(con_id, leg.ratio, leg.side.sign))
            await self._require_ready(f"order {cid}", held=True)
            known = self._by_ref.get(cid)
            if known is not None and (known.seen or known.rejected):
                return await self._broker_order(known)
            rec = _OrderRecord(
                order_ref=cid,
                client_id=self.client_id,
                action=intent.combo_side.value,
                quantity=intent.quantity,
                limit=intent.limit_price,
                account=self._account,
                symbol=intent.spread.underlying,
                sec_type="BAG" if len(legs) > 1 else "OPT",
                con_id=legs[0].con_id if len(legs) == 1 else 0,
                legs=tuple(legs),
                spread=intent.spread,
            )
            self._by_ref[cid] = rec
            return await self._place(rec)

    async def _place(self, rec: _OrderRecord) -> BrokerOrder:
        ib = self._ib
        contract = self._ib_contract(rec)
        for attempt in (1, 2):
            ib.client.updateReqId(self._max_known_id + 1)
            order_id = ib.client.getReqId()
            rec.order_id = order_id
            self._by_oid[(rec.client_id, order_id)] = rec
            self._max_known_id = max(self._max_known_id, order_id)
            acks, errors = rec.acks, len(rec.errors)
            self.placements += 1
            ib.client.placeOrder(order_id, contract, self._ib_order(rec, rec.limit))

            def answered(acks: int = acks, errors: int = errors) -> bool:
                return (
                    rec.acks > acks
                    or len(rec.errors) > errors
                    or rec.rejected is not None
                    or not self.session.connected
                )

            await self.session.wait_until(answered, self.ack_timeout)
            new_errors = rec.errors[errors:]
            duplicate = any(
                classify(code) is ErrorKind.DUPLICATE_ORDER_ID for code, _ in new_errors
            )
            if duplicate and rec.acks == acks:
                self._by_oid.pop((rec.client_id, order_id), None)
                if attempt == 1:
                    self._max_known_id = max(self._max_known_id, order_id) + self.duplicate_id_jump
                    log.warning(
                        "order id %d already used at IB (gateway restarted with a rolled-back "
                        "nextValidId?); retrying %s once with id %d",
                        order_id,
                        rec.order_ref,
                        self._max_known_id + 1,
                    )
                    continue
                rec.rejected = (
                    f"IB refused order ids {order_id - self.duplicate_id_jump - 1}.. and "
                    f"{order_id} as duplicates (error 103); not retried again"
                )
                rec.reject_code = 103
            break
        if rec.rejected is not None:
            raise OrderRejected(f"order {rec.order_ref} rejected: {rec.rejected}", rec.reject_code)
        if not self.session.connected:
            return await self._after_cut(rec)
        if not rec.seen:
            log.warning(
                "no acknowledgement from IB within %g s for %s (order id %d); reporting it as "
                "working: find() will tell",
                self.ack_timeout,
                rec.order_ref,
                rec.order_id,
            )
        return await self._broker_order(rec)

    async def _after_cut(self, rec: _OrderRecord) -> BrokerOrder:
        """The connection dropped before IB acknowledged ``rec``: decide from IB's state."""
        if not await self.session.wait_ready(self.hold_timeout):
            raise IBKRDisconnected(
                f"connection to IB lost while placing {rec.order_ref}; whether IB has it is "
                "unknown until the reconnect (it is not resent: call find/submit again)"
            )
        if rec.seen or rec.rejected:
            return await self._broker_order(rec)
        self._by_ref.pop(rec.order_ref, None)
        self._by_oid.pop((rec.client_id, rec.order_id), None)
        raise IBKRDisconnected(
            f"connection to IB lost while placing {rec.order_ref}; after reconnecting IB has no "
            "order with this ref: nothing was placed (not resent automatically)"
        )

    async def _modify(self, client_order_id: str, limit_price: Decimal) -> BrokerOrder:
        self._check_writable("modify orders")
        if not limit_price.is_finite():
            raise IBKRError(f"bad price: limit {limit_price} is not a number")
        rec = self._by_ref.get(client_order_id)
        if rec is None or not _known(rec):
            raise IBKRError(f"no order with ref {client_order_id}")
        if self._status(rec) is not OrderStatus.WORKING:
            return await self._broker_order(rec)
        await self._require_ready(f"modify of {client_order_id}", held=True)
        if self._status(rec) is not OrderStatus.WORKING:
            return await self._broker_order(rec)
        if rec.client_id != self.client_id:
            raise IBKRError(
                f"order {client_order_id} belongs to IB client id {rec.client_id}; only that "
                f"client can modify it (this is client id {self.client_id})"
            )
        old = rec.limit
        acks, errors = rec.acks, len(rec.errors)
        rec.modify_pending = limit_price
        self.modifications += 1
        try:
            self._ib.client.placeOrder(
                rec.order_id, self._ib_contract(rec), self._ib_order(rec, limit_price)
            )
            await self.session.wait_until(
                lambda: (
                    (rec.acks > acks and rec.limit == limit_price)
                    or any(
                        classify(code) not in (ErrorKind.WARNING, ErrorKind.INFO)
                        for code, _ in rec.errors[errors:]
                    )
                    or self._status(rec) is not OrderStatus.WORKING
                    or not self.session.connected
                ),
                self.ack_timeout,
            )
        finally:
            rec.modify_pending = None
        refused = [
            (code, msg)
            for code, msg in rec.errors[errors:]
            if classify(code) not in (ErrorKind.WARNING, ErrorKind.INFO)
        ]
        if refused and self._status(rec) is OrderStatus.WORKING:
            code, msg = refused[-1]
            raise OrderRejected(
                f"modify of {client_order_id} to {limit_price} refused: {describe(code, msg)}; "
                f"the order keeps its limit {old}",
                code,
            )
        if rec.limit != limit_price and self._status(rec) is OrderStatus.WORKING:
            raise IBKRError(
                f"modify of {client_order_id} to {limit_price} not acknowledged within "
                f"{self.ack_timeout:g} s"
            )
        return await self._broker_order(rec)

    async def _cancel(self, client_order_id: str) -> BrokerOrder:
        self._check_writable("cancel orders")
        rec = self._by_ref.get(client_order_id)
        if rec is None or not _known(rec):
            raise IBKRError(f"no order with ref {client_order_id}")
        if self._status(rec) is not OrderStatus.WORKING:
            return await self._broker_order(rec)
        await self._require_ready(f"cancel of {client_order_id}", held=True)
        if self._status(rec) is not OrderStatus.WORKING:
            return await self._broker_order(rec)
        errors = len(rec.errors)
        self._ib.client.cancelOrder(rec.order_id, "")
        await self.session.wait_until(
            lambda: (
                self._status(rec) is not OrderStatus.WORKING
                or any(
                    classify(code) is ErrorKind.NOT_CANCELLABLE for code, _ in rec.errors[errors:]
                )
            ),
            self.ack_timeout,
        )
        if self._status(rec) is OrderStatus.WORKING:
            await self._resync()  # "not cancellable": learn what it became
        if self._status(rec) is OrderStatus.WORKING:
            raise IBKRError(
                f"cancel of {client_order_id} not confirmed by IB within {self.ack_timeout:g} s"
            )
        return await self._broker_order(rec)

    async def _open_orders(self) -> list[BrokerOrder]:
        await self._require_ready("list open orders", held=False)
        await self._resync()
        out = []
        for rec in list(self._by_ref.values()):
            if rec.seen and self._status(rec) is OrderStatus.WORKING:
                out.append(await self._broker_order(rec))
        return out

    async def _positions(self) -> list[BrokerPosition]:
        await self._require_ready("read positions", held=False)
        _, lock = self._locks()
        async with lock:
            rows = await asyncio.wait_for(self._ib.reqPositionsAsync(), self.request_timeout)
        refs: dict[int, list[str]] = {}
        for row in sorted(self._execs.values(), key=lambda r: (r.at, r.exec_id)):
            if not row.is_bag and row.order_ref:
                refs.setdefault(row.con_id, []).append(row.order_ref)
        out = []
        for pos in rows:
            if self._account is not None and pos.account != self._account:
                continue
            c = pos.contract
            option = option_from_ib(
                c.symbol, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier
            )
            if option is None:
                log.info("ignoring a non-option position (%s %s)", c.secType, c.symbol)
                continue
            self._remember(option, int(c.conId))
            qty = int(pos.position)
            if qty:
                out.append(
                    BrokerPosition(
                        contract=option,
                        quantity=qty,
                        order_refs=tuple(dict.fromkeys(refs.get(int(c.conId), []))),
                    )
                )
        return out

    async def _executions(self, since: datetime) -> list[Fill]:
        await self._require_ready("read executions", held=False)
        sync_lock, _ = self._locks()
        async with sync_lock:
            await asyncio.wait_for(self._ib.reqExecutionsAsync(), self.request_timeout)

        def compute() -> tuple[list[Fill], frozenset[str]]:
            fills: list[Fill] = []
            missing: set[str] = set()
            for ref in {r.order_ref for r in self._execs.values() if r.order_ref}:
                rec = self._by_ref.get(ref)
                if rec is None:
                    continue
                result = self._fills_of(rec)
                chosen = [f for f in result.fills if f.at >= since]
                fills += chosen
                if chosen:
                    missing |= result.missing_commissions
            return fills, frozenset(missing)

        fills, missing = compute()
        if missing:
            await self.session.wait_until(lambda: not compute()[1], self.commission_timeout)
            fills, missing = compute()
            if missing:
                log.warning(
                    "commission reports still missing for %d execution(s) after %g s",
                    len(missing),
                    self.commission_timeout,
                )
        return sorted(fills, key=lambda f: (f.at, f.exec_id))

    async def _account_info(self) -> AccountInfo:
        await self._require_ready("read the account", held=False)
        if self._account is None:
            raise IBKRError(
                f"several managed accounts {[mask_account(a) for a in self._accounts]}: "
                "configure the account to read"
            )
        ib = self._ib
        req_id = ib.client.getReqId()
        future = ib.wrapper.startReq(req_id)
        ib.client.reqAccountSummary(req_id, "All", "NetLiquidation,BuyingPower")
        try:
            await asyncio.wait_for(future, self.request_timeout)
        finally:
            if ib.isConnected():
                ib.client.cancelAccountSummary(req_id)
        values: dict[str, str] = {}
        for value in ib.wrapper.acctSummary.values():
            if value.account == self._account and value.currency in ("USD", "BASE", ""):
                values[value.tag] = value.value
        missing = [tag for tag in ("NetLiquidation", "BuyingPower") if tag not in values]
        if missing:
            raise IBKRError(f"IB account summary lacks {missing}")
        return AccountInfo(
            account_id=mask_account(self._account),
            equity=Decimal(values["NetLiquidation"]),
            buying_power=Decimal(values["BuyingPower"]),
        )

    # ------------------------------------------------------------------ contracts
    async def _qualify(self, contract: OptionContract) -> int:
        """conId of an option (cached); SMART, USD, multiplier and trading class checked."""
        cached = self._con_ids.get(contract)
        if cached is not None:
            return cached
        from ib_async import Option

        ib = self._ib
        trading_class = self.trading_classes.get(contract.underlying, "")
        spec = Option(
            symbol=contract.underlying,
            lastTradeDateOrContractMonth=expiry_text(contract.expiry),
            strike=float(contract.strike),
            right=contract.right.value,
            exchange="SMART",
            multiplier=str(contract.multiplier),
            currency="USD",
            tradingClass=trading_class,
        )
        details = await paced_request(
            lambda: ib.reqContractDetailsAsync(spec),
            bucket=self._limiter,
            what=f"contract details for {contract.symbol}",
            timeout=self.request_timeout,
            pacing_backoff=self.pacing_backoff,
            on_pacing=self._count_pacing,
        )
        found = [
            d.contract for d in details if d.contract is not None and d.contract.secType == "OPT"
        ]
        if len(found) > 1:
            wanted = trading_class or contract.underlying
            found = [
                c
                for c in found
                if c.tradingClass == wanted and str(c.multiplier) in ("", str(contract.multiplier))
            ] or found
        if len(found) != 1:
            raise AmbiguousContract(
                f"contract details for {contract.symbol}: IB returned {len(found)} contracts "
                f"({sorted({c.tradingClass for c in found})}); set trading_classes"
            )
        con_id = int(found[0].conId)
        self._remember(contract, con_id)
        return con_id

    async def _contract_of(self, con_id: int) -> OptionContract:
        from ib_async import Contract

        ib = self._ib
        details = await paced_request(
            lambda: ib.reqContractDetailsAsync(Contract(conId=con_id)),
            bucket=self._limiter,
            what=f"contract details for conId {con_id}",
            timeout=self.request_timeout,
            pacing_backoff=self.pacing_backoff,
            on_pacing=self._count_pacing,
        )
        for d in details:
            c = d.contract
            if c is None:
                continue
            option = option_from_ib(
                c.symbol, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right, c.multiplier
            )
            if option is not None:
                self._remember(option, con_id)
                return option
        raise IBKRError(f"conId {con_id} is not an option IB knows")

    def _count_pacing(self, code: int) -> None:
        self.pacing_violations += 1

    def _ib_contract(self, rec: _OrderRecord) -> Any:
        from ib_async import ComboLeg, Contract

        if rec.sec_type != "BAG" and len(rec.legs) == 1:
            option = self._contracts.get(rec.legs[0].con_id)
            return Contract(
                conId=rec.legs[0].con_id,
                symbol=rec.symbol,
                secType="OPT",
                lastTradeDateOrContractMonth=expiry_text(option.expiry) if option else "",
                strike=float(option.strike) if option else 0.0,
                right=option.right.value if option else "",
                multiplier=str(option.multiplier) if option else "",
                exchange="SMART",
                currency="USD",
            )
        return Contract(
            secType="BAG",
            symbol=rec.symbol,
            exchange="SMART",
            currency="USD",
            comboLegs=[
                ComboLeg(
                    conId=leg.con_id,
                    ratio=leg.ratio,
                    action="BUY" if leg.sign > 0 else "SELL",
                    exchange="SMART",
                )
                for leg in rec.legs
            ],
        )

    def _ib_order(self, rec: _OrderRecord, limit: Decimal) -> Any:
        from ib_async import Order

        return Order(
            orderId=rec.order_id,
            clientId=rec.client_id,
            action=rec.action,
            totalQuantity=float(rec.quantity),
            orderType="LMT",
            lmtPrice=float(limit),
            tif="DAY",
            orderRef=rec.order_ref,
            account=rec.account,
            transmit=True,
        )


def _known(rec: _OrderRecord) -> bool:
    """IB told us about it, refused it, or we sent it (acknowledged or not)."""
    return rec.seen or rec.rejected is not None or rec.order_id > 0


def _with_commission(row: ExecRow, commission: Decimal) -> ExecRow:
    return ExecRow(
        exec_id=row.exec_id,
        order_ref=row.order_ref,
        perm_id=row.perm_id,
        order_id=row.order_id,
        client_id=row.client_id,
        con_id=row.con_id,
        sec_type=row.sec_type,
        side=row.side,
        shares=row.shares,
        price=row.price,
        at=row.at,
        commission=commission,
    )


def _hook(wrapper: Any, name: str, handler: Callable[..., None]) -> None:
    """Call ``handler`` with the raw arguments after ib_async's own ``wrapper.<name>``.

    ib_async's Trade bookkeeping drops events of orders it does not know (orders of an earlier
    session, commissions of fills it did not see live); the adapter keeps its own state from the
    raw callbacks instead.
    """
    original = getattr(wrapper, name)

    def hooked(*args: Any) -> None:
        try:
            original(*args)
        finally:
            try:
                handler(*args)
            except Exception:
                log.exception("IBKRBroker: handling %s failed", name)

    setattr(wrapper, name, hooked)
