"""IB API error codes -> what they mean for us, and the domain errors the IB adapters raise.

TWS reports everything through one ``error(reqId, code, message)`` callback: real failures, order
rejections, connectivity changes and plain information. :func:`classify` sorts a code into an
:class:`ErrorKind`; the adapters act on the kind, never on scattered literals.

=====================  ============================================================================
kind                   codes
=====================  ============================================================================
INFO                   2100-2199 (2104/2106/2158 "data farm OK", 2107/2108 "inactive", 2119
                       "connecting"...): logged, never an error
CONNECTIVITY_LOST      1100: TWS lost its link to IB; orders are held until it is restored
RESTORED_DATA_LOST     1101: link back, market data subscriptions were lost (resubscribe)
RESTORED               1102: link back, data maintained (we still re-read orders/executions)
DUPLICATE_ORDER_ID     103: the order id was used before (rolled-back nextValidId): new id, retry
NO_SECURITY            200: no security definition (unknown / unlisted contract)
PACING                 162 (historical), 420 (real-time): pacing violation, retry after a delay
PRICE_INCREMENT        110: limit not on the contract's tick grid (a new order is refused; a
                       modify is refused and the order keeps its old limit)
CANCELLED              202: order cancelled (by us or by IB), with a reason
REJECTED               201 and other 1xx-4xx order errors: the order is refused, with a reason
WARNING                105, 165, 321, 329, 399, 404, 434, 492, 10167 (ib_async's warning list)
                       and 2100-2199: the order is still live
OTHER                  anything else: logged with its code
=====================  ============================================================================
"""

from __future__ import annotations

from enum import StrEnum

from adapters.ports import BrokerError, BrokerUnavailable, MarketDataError


class ErrorKind(StrEnum):
    INFO = "info"
    CONNECTIVITY_LOST = "connectivity_lost"
    RESTORED_DATA_LOST = "restored_data_lost"
    RESTORED = "restored"
    DUPLICATE_ORDER_ID = "duplicate_order_id"
    NO_SECURITY = "no_security"
    PACING = "pacing"
    PRICE_INCREMENT = "price_increment"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    WARNING = "warning"
    NOT_CANCELLABLE = "not_cancellable"
    MARKET_DATA_LIMIT = "market_data_limit"
    OTHER = "other"


INFO_CODES = frozenset({2104, 2106, 2107, 2108, 2119, 2158})
PACING_CODES = frozenset({162, 420})
WARNING_CODES = frozenset({105, 165, 321, 329, 399, 404, 434, 492, 10167})
NOT_CANCELLABLE_CODES = frozenset({161, 10147, 10148})


def classify(code: int) -> ErrorKind:
    if code in INFO_CODES or 2100 <= code < 2200:
        return ErrorKind.INFO
    if code == 1100:
        return ErrorKind.CONNECTIVITY_LOST
    if code == 1101:
        return ErrorKind.RESTORED_DATA_LOST
    if code == 1102:
        return ErrorKind.RESTORED
    if code == 103:
        return ErrorKind.DUPLICATE_ORDER_ID
    if code == 200:
        return ErrorKind.NO_SECURITY
    if code in PACING_CODES:
        return ErrorKind.PACING
    if code == 110:
        return ErrorKind.PRICE_INCREMENT
    if code == 202:
        return ErrorKind.CANCELLED
    if code == 101:
        return ErrorKind.MARKET_DATA_LIMIT
    if code in NOT_CANCELLABLE_CODES:
        return ErrorKind.NOT_CANCELLABLE
    if code in WARNING_CODES:
        return ErrorKind.WARNING
    if 100 <= code < 500:
        return ErrorKind.REJECTED
    return ErrorKind.OTHER


def describe(code: int, message: str) -> str:
    """``"IB error 201: Order rejected - reason: ..."`` (messages never carry account ids)."""
    return f"IB error {code}: {message.strip()}"


# --------------------------------------------------------------------------- domain errors
class IBKRError(BrokerError):
    """Any failure of the IB broker adapter; ``reason`` is safe to log and persist."""


class IBKRDisconnected(IBKRError, BrokerUnavailable):
    """No usable API connection (socket down, or TWS lost IB: error 1100)."""


class OrderHeld(IBKRDisconnected):
    """An order operation was not sent because the connection is down; nothing was placed."""


class ReadOnlyError(IBKRError):
    """The adapter was built read-only and refuses to place, modify or cancel orders."""


class ContractNotFound(IBKRError):
    """IB has no security definition for a contract (error 200)."""


class AmbiguousContract(IBKRError):
    """IB returned several contracts for a specification that should name one."""


class OrderRejected(IBKRError):
    """IB refused an order (201, 110, 2xx...); ``code`` is the IB error code."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class PacingViolation(IBKRError):
    """IB kept answering with a pacing violation (162/420) after the retries."""


class AccountMismatch(IBKRError):
    """The managed accounts do not suit the configured account or trading mode."""


class QuotesError(MarketDataError):
    """The IB market-data adapter could not deliver (line budget, pacing, unknown contract)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LineBudgetExhausted(QuotesError):
    """Every market-data line of the budget is in use (IB allows 100 by default)."""
