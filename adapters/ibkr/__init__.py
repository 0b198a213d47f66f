"""Interactive Brokers (TWS / IB Gateway) adapters built on ``ib_async``."""

from adapters.ibkr.account import (
    AccountCheck,
    AccountCheckError,
    check_account,
    is_paper_account,
    mask_account,
    mode_account_problem,
)

__all__ = [
    "AccountCheck",
    "AccountCheckError",
    "check_account",
    "is_paper_account",
    "mask_account",
    "mode_account_problem",
]
