"""The order path: persist the intent, submit once, walk the limit, record fills and positions.

Plain functions (no Prefect import) so they can be driven from a task, a test, or a subprocess that
a test kills. ``tasks.trading`` wraps them as Prefect tasks.

Invariants:
* the intent row (unique client_order_id) is written *before* any broker call;
* before submitting, the broker is asked for that client_order_id; an order found is adopted, so a
  retry or a rerun after a crash never places the same intent twice;
* a broker rejection marks the intent REJECTED with the broker's reason and counts as an error;
* one run at a time works an intent's order: it claims the intent in the ledger first
  (``TradeStore.claim_intent``, a lease on the wall clock renewed during the walk once half of
  it has passed, and released
  at the end). Another run that asks meanwhile (the Smart-0DTE loop flattening on HALT while a
  Mag7 check closes the same spread) leaves it alone; a claim whose process died on this host,
  or whose lease ran out, is taken over by recovery.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from adapters.ports import Broker, BrokerError, BrokerUnavailable, Clock
from adapters.store import TradeStore
from core.models import (
    BrokerOrder,
    IntentAction,
    IntentStatus,
    OrderIntent,
    OrderStatus,
    Position,
    PositionStatus,
    SignalKind,
)
from core.orders import WalkRules, walk_prices

log = logging.getLogger("dte.orders")

ERROR_KINDS = ("order_rejected", "order_error")

# A partial close that records its own tier count carries it in the intent's reason too, so a
# recovery (which re-runs the persisted intent without the caller's arguments) records the same.
TIERS_MARKER = "tiers_after="
_TIERS = re.compile(re.escape(TIERS_MARKER) + r"(\d+)")


CLAIM_LEASE = timedelta(minutes=2)  # wall clock; renewed at every walk step
_TOKEN = uuid.uuid4().hex[:8]


def run_owner() -> str:
    """This process's claim name, ``host:pid:token`` (a forked child gets its own pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def _holder_is_gone(holder: str) -> bool:
    """True if ``holder`` names a process on this host that no longer exists."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


def claim(store: TradeStore, cid: str, owner: str) -> str | None:
    """Claim ``cid`` for ``owner``; None on success, else the live holder."""
    now = datetime.now(UTC)
    holder = store.claim_intent(cid, owner, now, now + CLAIM_LEASE)
    if holder is not None and _holder_is_gone(holder):
        log.warning("%s: taking over from %s (process gone)", cid, holder)
        holder = store.take_over_intent(cid, owner, holder, now + CLAIM_LEASE)
    return holder


class ClaimLost(RuntimeError):
    """Another run took the intent over while this one walked it (this run stalled past its
    lease): this run stops touching the order."""


def tiers_marker(tiers_after: int) -> str:
    """The text ``execute_intent`` reads back from a close intent's reason (``tiers_after=N``)."""
    return f"{TIERS_MARKER}{tiers_after}"


def _tiers_from(reason: str) -> int | None:
    found = _TIERS.search(reason)
    return int(found.group(1)) if found else None


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    client_order_id: str
    status: IntentStatus
    filled_quantity: int
    fill_price: Decimal | None
    reason: str
    placed: bool  # True only if this call sent a new order to the broker
    elsewhere: bool = False  # another run works this intent (its claim): the outcome is its


def _settle(
    store: TradeStore,
    broker: Broker,
    intent: OrderIntent,
    order: BrokerOrder,
    signal_kind: SignalKind,
    now: datetime,
    tiers_after: int | None = None,
) -> ExecutionResult:
    """Record fills of a (fully or partly) filled order and apply them to positions.

    A partial close records ``tiers_after`` as the position's taken profit tiers (Mag7: the exit
    decision's count, several tiers at once when the P&L jumped past them); without it, the
    ``tiers_after=N`` marker in the intent's reason, else one more tier than before (Smart-0DTE).
    """
    fills = [
        f
        for f in broker.executions(intent.created_at - timedelta(days=1))
        if f.client_order_id == intent.client_order_id
    ]
    for fill in fills:
        store.record_fill(fill, intent.system)
    qty = sum(f.quantity for f in fills)
    if qty == 0:
        reason = order.reason or "unfilled at the worst price"
        store.set_intent_status(
            intent.client_order_id, IntentStatus.CANCELLED, reason, order.broker_order_id, at=now
        )
        return ExecutionResult(
            intent.client_order_id, IntentStatus.CANCELLED, 0, None, reason, False
        )
    price = sum((f.price * f.quantity for f in fills), Decimal("0")) / qty
    commission = sum((f.commission for f in fills), Decimal("0"))
    at = max(f.at for f in fills)
    if intent.action is IntentAction.OPEN:
        if store.position(intent.client_order_id) is None:
            per_unit = intent.max_loss / intent.quantity
            store.open_position(
                Position(
                    position_id=intent.client_order_id,
                    system=intent.system,
                    signal_kind=signal_kind,
                    spread=intent.spread,
                    quantity=qty,
                    entry_price=price,
                    opened_at=at,
                    max_loss=per_unit * qty,
                    entry_commission=commission,
                ),
                intent.client_order_id,
            )
    else:
        assert intent.position_id is not None
        pos = store.position(intent.position_id)
        if pos is not None and pos.status is PositionStatus.OPEN:
            if qty >= pos.quantity:
                store.close_position(pos.position_id, price, commission, at, intent.client_order_id)
            else:
                store.reduce_position(
                    pos.position_id,
                    qty,
                    price,
                    commission,
                    at,
                    intent.client_order_id,
                    _tiers_done(pos, intent, tiers_after),
                )
    status = IntentStatus.FILLED if order.status is OrderStatus.FILLED else IntentStatus.CANCELLED
    reason = "" if status is IntentStatus.FILLED else f"partially filled {qty}/{intent.quantity}"
    store.set_intent_status(intent.client_order_id, status, reason, order.broker_order_id, at=now)
    log.info(
        "%s %s %s x%d @ %s",
        intent.client_order_id,
        status.value,
        intent.spread.describe(),
        qty,
        price,
    )
    return ExecutionResult(intent.client_order_id, status, qty, price, reason, False)


def _tiers_done(pos: Position, intent: OrderIntent, tiers_after: int | None) -> int:
    if tiers_after is None:
        tiers_after = _tiers_from(intent.reason)
    if tiers_after is None or tiers_after <= pos.closed_fraction_tiers:
        return pos.closed_fraction_tiers + 1
    return tiers_after


def _left_to_another_run(store: TradeStore, cid: str, reason: str) -> ExecutionResult:
    """The intent is another run's to work (its claim): its stored status, nothing placed here."""
    current = store.intent_by_client_id(cid)
    status = current.status if current is not None else IntentStatus.PENDING
    return ExecutionResult(cid, status, 0, None, reason, False, elsewhere=True)


def execute_intent(
    intent: OrderIntent,
    broker: Broker,
    store: TradeStore,
    clock: Clock,
    walk: WalkRules,
    signal_kind: SignalKind,
    after_persist: Callable[[OrderIntent], None] | None = None,
    tiers_after: int | None = None,
    owner: str | None = None,
) -> ExecutionResult:
    """Run one intent to a terminal state. Safe to call again for the same intent at any point.

    ``tiers_after``: for a partial close, the profit tiers taken once it fills (see ``_settle``).
    ``owner``: the claim name (default ``run_owner()``); while another live run holds the
    intent, this returns its current status without touching the broker.
    """
    cid = intent.client_order_id
    owner = owner or run_owner()
    claimed = False
    stored = store.intent_by_client_id(cid)
    if stored is None:
        # stored and claimed in one statement; False: another run stored it a moment ago,
        # and what it stored is what counts
        claimed = store.save_intent(intent, claim=(owner, datetime.now(UTC) + CLAIM_LEASE))
        if not claimed:
            stored = store.intent_by_client_id(cid)
    if stored is not None:
        if stored.status is IntentStatus.AWAITING_APPROVAL:
            # only an approval moves it on (trading.process_approvals sets PENDING): never here
            return ExecutionResult(cid, stored.status, 0, None, "awaiting approval", False)
        if stored.status.is_terminal:
            done = store.fills(client_order_id=cid)
            qty = sum(f.quantity for f in done)
            price = sum((f.price * f.quantity for f in done), Decimal("0")) / qty if qty else None
            return ExecutionResult(cid, stored.status, qty, price, stored.status_reason, False)
        intent = stored.intent  # the persisted intent wins over a re-derived one
    holder = None if claimed else claim(store, cid, owner)
    if holder is not None:
        log.info("%s: worked by another run (%s); left to it", cid, holder)
        return _left_to_another_run(store, cid, f"worked by another run ({holder})")
    if after_persist is not None:
        after_persist(intent)

    try:
        return _place_and_walk(intent, broker, store, clock, walk, signal_kind, tiers_after, owner)
    except ClaimLost as exc:
        log.warning("%s: %s", cid, exc)
        return _left_to_another_run(store, cid, str(exc))
    except BrokerUnavailable as exc:
        # nothing reached the broker (or we cannot know yet): keep the intent open, never reject
        # it; the next call for this intent (the loop's next minute, recovery at a flow's start)
        # finds the order by client_order_id or places it
        now = clock.now()
        store.record_risk_event(
            "broker_unavailable",
            "warning",
            f"{cid} {intent.spread.describe()}: {exc.reason}; kept open for a retry",
            now,
            intent.system,
        )
        log.warning("%s: broker unavailable (%s): kept open", cid, exc.reason)
        stored = store.intent_by_client_id(cid)
        status = stored.status if stored is not None else IntentStatus.PENDING
        return ExecutionResult(cid, status, 0, None, exc.reason, False)
    finally:
        store.release_intent(cid, owner)


def _place_and_walk(
    intent: OrderIntent,
    broker: Broker,
    store: TradeStore,
    clock: Clock,
    walk: WalkRules,
    signal_kind: SignalKind,
    tiers_after: int | None = None,
    owner: str = "",
) -> ExecutionResult:
    cid = intent.client_order_id
    placed = False
    claimed_at = datetime.now(UTC)  # execute_intent claimed it just now
    order = broker.find(cid)
    if order is None:
        try:
            order = broker.submit(intent)
            placed = True
        except BrokerUnavailable:
            raise
        except BrokerError as exc:
            store.set_intent_status(cid, IntentStatus.REJECTED, exc.reason, at=clock.now())
            store.record_risk_event(
                "order_rejected",
                "warning",
                f"{cid} {intent.spread.describe()}: {exc.reason}",
                clock.now(),
                intent.system,
            )
            log.warning("%s rejected: %s", cid, exc.reason)
            return ExecutionResult(cid, IntentStatus.REJECTED, 0, None, exc.reason, False)
        store.record_order(order, intent.system, clock.now(), "submitted")
    store.set_intent_status(cid, IntentStatus.SUBMITTED, "", order.broker_order_id, at=clock.now())

    step = walk.step_seconds if intent.action is IntentAction.OPEN else walk.exit_step_seconds
    prices = walk_prices(intent.limit_price, intent.worst_price, walk.steps)
    # resume the walk where it stood: the next price beyond the order's current limit
    if intent.action is IntentAction.OPEN:
        remaining = [p for p in prices if p > order.limit_price]
    else:
        remaining = [p for p in prices if p < order.limit_price]
    for price in [*remaining, None]:
        if order.status is not OrderStatus.WORKING:
            break
        clock.sleep_until(clock.now() + timedelta(seconds=step))
        if datetime.now(UTC) - claimed_at >= CLAIM_LEASE / 2:
            claimed_at = datetime.now(UTC)
            holder = store.claim_intent(cid, owner, claimed_at, claimed_at + CLAIM_LEASE)
            if holder is not None:
                raise ClaimLost(f"taken over by {holder} during the walk; this run stops here")
        current = broker.find(cid)
        if current is None:
            raise BrokerError(f"broker lost order {cid}")
        order = current
        if order.status is not OrderStatus.WORKING:
            break
        if price is None:
            order = broker.cancel(cid)
            store.record_order(order, intent.system, clock.now(), "cancelled at worst price")
            break
        try:
            order = broker.modify(cid, price)
        except BrokerUnavailable:
            raise
        except BrokerError as exc:
            store.record_risk_event(
                "order_error", "warning", f"{cid} modify: {exc.reason}", clock.now(), intent.system
            )
            order = broker.cancel(cid)
            break
        store.record_order(order, intent.system, clock.now(), f"limit {price}")

    if order.status is OrderStatus.REJECTED:
        store.set_intent_status(
            cid, IntentStatus.REJECTED, order.reason, order.broker_order_id, at=clock.now()
        )
        store.record_risk_event(
            "order_rejected", "warning", f"{cid}: {order.reason}", clock.now(), intent.system
        )
        return ExecutionResult(cid, IntentStatus.REJECTED, 0, None, order.reason, placed)
    store.record_order(order, intent.system, clock.now(), order.status.value.lower())
    result = _settle(store, broker, intent, order, signal_kind, clock.now(), tiers_after)
    return ExecutionResult(
        result.client_order_id,
        result.status,
        result.filled_quantity,
        result.fill_price,
        result.reason
        or ("unfilled at worst price" if result.status is IntentStatus.CANCELLED else ""),
        placed,
    )


def errors_today(store: TradeStore, day: date) -> int:
    return len(store.risk_events(day=day, kinds=ERROR_KINDS))
