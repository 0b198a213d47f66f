"""Interactive Brokers (TWS / IB Gateway) adapters built on ``ib_async``.

* :class:`IBKRBroker` (``adapters.ibkr.broker``): the ``Broker`` port (combo orders, fills,
  positions, account) with reconnect, reconciliation and idempotency by orderRef;
* :class:`IBKRQuotes` (``adapters.ibkr.marketdata``): chains, quotes, bars with a market-data
  line budget and pacing;
* ``check_account`` and friends (``adapters.ibkr.account``): the paper/live account check.

Nothing connects at import or construction.
"""

from adapters.ibkr.account import (
    AccountCheck,
    AccountCheckError,
    check_account,
    is_paper_account,
    mask_account,
    mode_account_problem,
)
from adapters.ibkr.broker import IBKRBroker
from adapters.ibkr.errors import (
    AccountMismatch,
    AmbiguousContract,
    ContractNotFound,
    IBKRDisconnected,
    IBKRError,
    LineBudgetExhausted,
    OrderHeld,
    OrderRejected,
    PacingViolation,
    QuotesError,
    ReadOnlyError,
)
from adapters.ibkr.marketdata import IBKRQuotes, Quote
from adapters.ibkr.pacing import LineBudget, TokenBucket

__all__ = [
    "AccountCheck",
    "AccountCheckError",
    "AccountMismatch",
    "AmbiguousContract",
    "ContractNotFound",
    "IBKRBroker",
    "IBKRDisconnected",
    "IBKRError",
    "IBKRQuotes",
    "LineBudget",
    "LineBudgetExhausted",
    "OrderHeld",
    "OrderRejected",
    "PacingViolation",
    "Quote",
    "QuotesError",
    "ReadOnlyError",
    "TokenBucket",
    "check_account",
    "is_paper_account",
    "mask_account",
    "mode_account_problem",
]
