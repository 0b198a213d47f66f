"""Connect to TWS / IB Gateway, read the managed account ids and decide whether they suit a mode.

IB paper-trading account ids start with ``DU`` (``DF`` for a paper financial-advisor master);
live ones start with ``U``, ``F``, ``I``... ``live`` mode refuses a paper account, ``testing``
requires one, ``development`` (no broker) accepts anything.

Why a worker thread with its own event loop: ``ib_async.IB.connect`` is ``util.run(connectAsync)``,
i.e. ``loop.run_until_complete`` on the calling thread's event loop. Called while a loop is
running on that thread (an async Prefect task, a notebook, any ``async def`` caller) it fails
with ``RuntimeError: This event loop is already running``; called from a thread without a loop it
creates one, sets it as the thread's loop and never closes it. ``check_account`` therefore always
runs ``asyncio.run(...)`` in a short-lived daemon thread: a fresh loop that is closed afterwards,
the same behaviour from sync Prefect tasks (no running loop), async code and plain scripts, and
no ``nest_asyncio``. The connection is closed inside that loop before it ends.

``ib_async`` details that shape the code (2.1.0):
* ``connectAsync`` completes only after both ``nextValidId`` and a *non-empty* ``managedAccounts``
  have arrived, so "no managed accounts" normally surfaces as a handshake timeout.
* Even with ``readonly=True`` it requests positions, per-account updates and executions on
  connect; ``fetchFields=StartupFetchNONE`` reduces that to the (unconditional) positions request.
* If the peer closes the socket during the handshake (client id already in use, host not
  trusted) ``connectAsync`` keeps waiting for the timeout: after a reset it emits
  ``client.apiError``, after a clean close before the server version arrived nothing at all. We
  listen to ``client.apiError`` and ``client.conn.disconnected`` and fail at once.
* ``timeout`` applies per phase inside ``connectAsync``; we also cap the whole attempt with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from core.models import TradingMode

PAPER_PREFIXES = ("DU", "DF")


class AccountCheckError(RuntimeError):
    """The account check failed; the message is safe to log (account ids are masked)."""


def is_paper_account(account_id: str) -> bool:
    """True for an IB paper-trading account id (``DU...``, or ``DF...`` for a paper FA master)."""
    account_id = account_id.strip().upper()
    return len(account_id) > 2 and account_id.startswith(PAPER_PREFIXES)


def mask_account(account_id: str) -> str:
    """``DU1234567`` -> ``DU****567``, ``U1234567`` -> ``U****567``: letter prefix and last 3 kept.

    Ids too short to hide at least as many characters as are shown keep only the prefix.
    """
    prefix_len = 0
    while prefix_len < min(2, len(account_id)) and account_id[prefix_len].isalpha():
        prefix_len += 1
    prefix, rest = account_id[:prefix_len], account_id[prefix_len:]
    tail = rest[-3:] if len(rest) >= 6 else ""
    return prefix + "*" * (len(rest) - len(tail)) + tail


@dataclass(frozen=True, slots=True)
class AccountCheck:
    accounts: tuple[str, ...]  # managed account ids, as reported by TWS / IB Gateway
    paper: bool  # every account is a paper account (DU/DF prefix)

    def masked(self) -> list[str]:
        """The account ids masked for logs, artifacts and events (``DU****567``)."""
        return [mask_account(account) for account in self.accounts]


def check_account(
    host: str,
    port: int,
    client_id: int,
    expected_account: str | None,
    timeout: float = 10.0,
) -> AccountCheck:
    """Connect read-only to the IB API at ``host:port``, read the managed accounts, disconnect.

    Raises ``AccountCheckError`` when the API cannot be reached or does not complete the handshake
    within ``timeout`` seconds, when no account is reported, or when ``expected_account`` is given
    and is not among the managed accounts. The connection is always closed before returning.
    ib_async logs raw messages (full account ids) at DEBUG: its logger is held at INFO or above.
    """
    ib_log = logging.getLogger("ib_async")
    if ib_log.getEffectiveLevel() < logging.INFO:
        ib_log.setLevel(logging.INFO)
    accounts = _managed_accounts(host, port, client_id, timeout)
    if not accounts:
        raise AccountCheckError(f"IB API at {host}:{port} reported no managed accounts")
    check = AccountCheck(accounts=tuple(accounts), paper=all(is_paper_account(a) for a in accounts))
    if expected_account is not None:
        wanted = expected_account.strip().upper()
        if wanted not in {a.strip().upper() for a in accounts}:
            raise AccountCheckError(
                f"expected account {mask_account(wanted)} is not among the managed accounts "
                f"{check.masked()} reported by the IB API at {host}:{port}"
            )
    return check


def mode_account_problem(mode: str, check: AccountCheck) -> str | None:
    """Why the checked accounts do not suit ``mode``, or None when they do."""
    trading_mode = TradingMode(mode)
    if trading_mode is TradingMode.LIVE:
        paper = [mask_account(a) for a in check.accounts if is_paper_account(a)]
        if paper:
            return (
                f"live mode needs a live IB account, but the API reports paper account(s) {paper}"
            )
    elif trading_mode is TradingMode.TESTING:
        if not check.accounts:
            return "testing mode needs an IB paper account, but the API reports no accounts"
        live = [mask_account(a) for a in check.accounts if not is_paper_account(a)]
        if live:
            return (
                "testing mode needs an IB paper account (DU.../DF...), but the API reports "
                f"non-paper account(s) {live}"
            )
    return None


# --------------------------------------------------------------------------- connection
def _managed_accounts(host: str, port: int, client_id: int, timeout: float) -> list[str]:
    """Run the connect/read/disconnect coroutine in a fresh event loop on a worker thread."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["accounts"] = asyncio.run(_fetch(host, port, client_id, timeout))
        except BaseException as error:
            outcome["error"] = error

    worker = threading.Thread(target=work, name="ibkr-account-check", daemon=True)
    worker.start()
    worker.join(timeout + 5.0)  # the coroutine enforces ``timeout``; this is a safety net
    if worker.is_alive():
        raise AccountCheckError(f"cannot reach IB API at {host}:{port}: check did not finish")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, AccountCheckError):
            raise error
        raise AccountCheckError(
            f"cannot reach IB API at {host}:{port}: {_describe(error)}"
        ) from error
    accounts: list[str] = outcome["accounts"]
    return accounts


async def _fetch(host: str, port: int, client_id: int, timeout: float) -> list[str]:
    from ib_async import IB, StartupFetchNONE

    ib = IB()
    loop = asyncio.get_running_loop()
    api_error: asyncio.Future[str] = loop.create_future()

    def on_api_error(message: str) -> None:
        if not api_error.done():
            api_error.set_result(message)

    def on_socket_closed(message: str) -> None:
        on_api_error(
            message
            or "the server closed the connection during the handshake "
            "(client id in use, or this host not allowed to use the API?)"
        )

    ib.client.apiError += on_api_error
    ib.client.conn.disconnected += (
        on_socket_closed  # apiError misses a clean close while connecting
    )
    connect = asyncio.ensure_future(
        ib.connectAsync(
            host,
            port,
            clientId=client_id,
            timeout=timeout,
            readonly=True,
            fetchFields=StartupFetchNONE,
        )
    )
    try:
        done, _ = await asyncio.wait(
            {connect, api_error}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if connect in done:
            connect.result()  # raises the connection error, if any
            return ib.managedAccounts()
        if api_error in done:
            raise AccountCheckError(f"cannot reach IB API at {host}:{port}: {api_error.result()}")
        raise AccountCheckError(
            f"cannot reach IB API at {host}:{port}: no API handshake within {timeout:g} s"
            f"{_handshake_state(ib)}"
        )
    finally:
        if not connect.done():
            connect.cancel()
            await asyncio.gather(connect, return_exceptions=True)
        if ib.client.isReady():
            ib.disconnect()
        else:  # IB.disconnect would raise "Not connected" in the middle of a handshake
            ib.client.disconnect()  # type: ignore[no-untyped-call]
        await asyncio.sleep(0)  # let the transport's close callback run before the loop ends


def _handshake_state(ib: Any) -> str:
    server_version = ib.client.serverVersion()
    if not ib.client.conn.isConnected():
        return " (TCP connection not established)"
    if server_version:
        return f" (logged on to server version {server_version}, but no managed accounts arrived)"
    return " (TCP connected, no server version received)"


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
