"""One ``ib_async.IB`` connection on a private event-loop thread, with reconnect and backoff.

Why a thread with its own loop (see also ``adapters/ibkr/account.py``): ``IB.connect`` runs
``loop.run_until_complete`` on the caller's loop, which fails inside any running loop (async
Prefect tasks) and leaks loops elsewhere. :class:`LoopThread` owns one loop for the adapter's whole
life; the synchronous port methods hand coroutines to it with ``run_coroutine_threadsafe`` and wait
with a timeout. Every ``ib_async`` object is created and touched only on that loop.

:class:`IBSession` adds the connection life cycle:

* ``start()`` connects once (raising on failure: nothing is retried before a first success);
* after a socket loss it reconnects with the injected backoff schedule (the last delay repeats)
  until ``close()``; every (re)connect runs the owner's ``on_connected`` coroutine (account check,
  reconciliation) before the session counts as ready;
* error 1100 (TWS lost IB) makes the session not ready without closing the socket; 1101/1102 make it
  ready again and run ``on_restored`` (1101: market data was lost). If 1100 lasts longer than
  ``link_loss_reconnect_after`` the socket is dropped and the reconnect loop takes over;
* a fresh ``IB`` object per connection, so no state of a dead connection leaks into the next one.

``ib_async`` logs orders, executions and positions (with account ids) at INFO: a logging filter
on its loggers masks anything that looks like an IB account id (``DU1234567`` -> ``DU****567``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from adapters.ibkr.account import mask_account
from adapters.ibkr.errors import ErrorKind, IBKRDisconnected, IBKRError, classify

T = TypeVar("T")

log = logging.getLogger("dte.ibkr")

DEFAULT_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)

_ACCOUNT_RE = re.compile(r"\b(?:D[UF]|[UFI])\d{5,}\b")


class MaskAccountIds(logging.Filter):
    """Rewrites log records so IB account ids appear masked (``mask_account``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken record: let logging report it as usual
            return True
        masked = _ACCOUNT_RE.sub(lambda m: mask_account(m.group(0)), text)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


_MASK = MaskAccountIds()
_IB_LOGGERS = ("ib_async", "ib_async.ib", "ib_async.client", "ib_async.wrapper", "ib_async.Decoder")


def install_log_masking() -> None:
    """Attach the account-id mask to ib_async's loggers and ours (idempotent)."""
    for name in (*_IB_LOGGERS, "dte.ibkr"):
        logger = logging.getLogger(name)
        if _MASK not in logger.filters:
            logger.addFilter(_MASK)
    ib_log = logging.getLogger("ib_async")
    if ib_log.getEffectiveLevel() < logging.INFO:
        ib_log.setLevel(logging.INFO)  # DEBUG dumps raw wire messages


class LoopThread:
    """A daemon thread running one asyncio event loop until ``stop()``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        """Run ``coro`` on the loop and wait up to ``timeout`` seconds for its result."""
        if not self.alive:
            coro.close()
            raise IBKRDisconnected(f"{self.name}: not connected (call connect() first)")
        if self.in_loop():
            coro.close()
            raise RuntimeError("LoopThread.run called from its own loop thread")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise IBKRError(f"{what}: no answer from IB within {timeout:g} s") from None

    def stop(self, timeout: float = 5.0) -> None:
        if self._started and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)


class SessionClient:
    """Life cycle shared by the IB adapters (``IBKRBroker``, ``IBKRQuotes``): one
    :class:`IBSession` on its own :class:`LoopThread`; ``connect`` (idempotent; a failed start
    disposes), ``dispose``, use as a context manager, and ``_call`` to run a coroutine there.

    A subclass sets ``session``, ``client_id`` and ``_thread = None`` in its ``__init__`` and
    says how long a connect may take (``_connect_budget``).
    """

    session: IBSession
    client_id: int
    _thread: LoopThread | None
    _thread_name: str = "ibkr"

    def _connect_budget(self) -> float:
        raise NotImplementedError

    def connect(self) -> Self:
        if self._thread is not None and self._thread.alive:
            return self
        self._thread = LoopThread(f"{self._thread_name}-{self.client_id}")
        self._thread.start()
        try:
            self._call(self.session.start(), self._connect_budget(), "connect")
        except BaseException:
            self.dispose()
            raise
        return self

    def dispose(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if thread.alive:
            try:
                thread.run(self.session.close(), 5.0, "disconnect")
            except Exception:
                log.exception("%s: error while disconnecting", type(self).__name__)
        thread.stop()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        """Run ``coro`` on the adapter's loop; ``IBKRDisconnected`` before ``connect()``."""
        if self._thread is None:
            coro.close()
            raise IBKRDisconnected(f"{type(self).__name__} is not connected: call connect() first")
        return self._thread.run(coro, timeout, what)


class IBSession:
    """Connection life cycle of one ``ib_async.IB`` on a :class:`LoopThread` (module docstring)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: int,
        name: str,
        connect_timeout: float = 10.0,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        link_loss_reconnect_after: float | None = 60.0,
        install: Callable[[Any], None] | None = None,
        on_connected: Callable[[Any], Awaitable[None]] | None = None,
        on_restored: Callable[[bool], Awaitable[None]] | None = None,
        on_lost: Callable[[], None] | None = None,
        on_error: Callable[[int, int, str], None] | None = None,
    ) -> None:
        if not backoff or any(d < 0 for d in backoff):
            raise ValueError("the reconnect backoff needs at least one non-negative delay")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.name = name
        self.connect_timeout = connect_timeout
        self.backoff = tuple(float(d) for d in backoff)
        self.link_loss_reconnect_after = link_loss_reconnect_after
        self._install = install
        self._on_connected = on_connected
        self._on_restored = on_restored
        self._on_lost = on_lost
        self._on_error = on_error
        self.ib: Any = None
        self.connected = False  # socket up and on_connected done
        self.link_ok = True  # no 1100 outstanding
        self.connects = 0  # successful connections (the first one included)
        self.reconnect_delays: list[float] = []  # backoff delays slept, in order
        self.server_versions: list[int] = []  # negotiated server version of each connection
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._restore_task: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None

    # ------------------------------------------------------------------ state
    @property
    def ready(self) -> bool:
        return self.connected and self.link_ok and self.ib is not None and self.ib.isConnected()

    def bump(self) -> None:
        """Wake every waiter of :meth:`wait_until` (state changed)."""
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if self._changed is None:
                self._changed = asyncio.Event()
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.25))
        return True

    async def wait_ready(self, timeout: float) -> bool:
        return await self.wait_until(lambda: self.ready or self._closing, timeout) and self.ready

    # ------------------------------------------------------------------ connect
    async def start(self) -> None:
        """First connection: raises IBKRError (with the reason) if it does not come up."""
        install_log_masking()
        await self._connect_once()

    async def _connect_once(self) -> None:
        from ib_async import IB, StartupFetchNONE

        ib = IB()
        ib.RaiseRequestErrors = True  # request errors (200, 162...) raise instead of [] results
        if self._install is not None:
            self._install(ib)
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[str] = loop.create_future()

        def on_api_error(message: str) -> None:
            if not failed.done():
                failed.set_result(message)

        def on_socket_closed(message: str) -> None:
            on_api_error(message or "the server closed the connection during the handshake")

        ib.client.apiError += on_api_error
        ib.client.conn.disconnected += on_socket_closed
        ib.errorEvent += self._error_event
        where = f"{self.host}:{self.port}"
        connect = asyncio.ensure_future(
            ib.connectAsync(
                self.host,
                self.port,
                clientId=self.client_id,
                timeout=self.connect_timeout,
                readonly=True,  # startup fetches are ours (below), not ib_async's
                fetchFields=StartupFetchNONE,
            )
        )
        try:
            done, _ = await asyncio.wait(
                {connect, failed},
                timeout=self.connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if connect in done:
                connect.result()
            elif failed in done:
                raise IBKRDisconnected(f"cannot reach IB API at {where}: {failed.result()}")
            else:
                raise IBKRDisconnected(
                    f"cannot reach IB API at {where}: no API handshake within "
                    f"{self.connect_timeout:g} s"
                )
        except IBKRError:
            await self._abandon(ib, connect)
            raise
        except (OSError, TimeoutError, ConnectionError) as error:
            await self._abandon(ib, connect)
            raise IBKRDisconnected(
                f"cannot reach IB API at {where}: {type(error).__name__}: {error}"
            ) from error
        finally:
            ib.client.apiError -= on_api_error
            ib.client.conn.disconnected -= on_socket_closed
        self.ib = ib
        self.link_ok = True
        self.server_versions.append(ib.client.serverVersion())
        ib.disconnectedEvent += self._disconnected
        try:
            if self._on_connected is not None:
                await self._on_connected(ib)
        except BaseException:
            ib.disconnectedEvent -= self._disconnected
            self.ib = None
            if ib.isConnected():
                ib.disconnect()
            raise
        if not ib.isConnected():
            raise IBKRDisconnected(f"IB API at {where}: connection lost while synchronising")
        self.connected = True
        self.connects += 1
        log.info(
            "%s connected to %s (client id %d, server version %d)",
            self.name,
            where,
            self.client_id,
            ib.client.serverVersion(),
        )
        self.bump()

    async def _abandon(self, ib: Any, connect: asyncio.Future[Any]) -> None:
        if not connect.done():
            connect.cancel()
            await asyncio.gather(connect, return_exceptions=True)
        if ib.client.isReady():
            ib.disconnect()
        else:
            ib.client.disconnect()
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ loss and reconnect
    def _disconnected(self) -> None:
        was = self.connected
        self.connected = False
        self.bump()
        if self._on_lost is not None:
            try:
                self._on_lost()
            except Exception:
                log.exception("%s: on_lost failed", self.name)
        if self._closing:
            return
        if was:
            log.warning("%s: connection to IB lost; reconnecting", self.name)
        self._start_reconnect()

    def _start_reconnect(self) -> None:
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closing:
            delay = self.backoff[min(attempt, len(self.backoff) - 1)]
            attempt += 1
            self.reconnect_delays.append(delay)
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._connect_once()
                return
            except IBKRError as error:
                log.warning("%s: reconnect attempt %d failed: %s", self.name, attempt, error.reason)
            except Exception as error:
                log.warning(
                    "%s: reconnect attempt %d failed: %s: %s",
                    self.name,
                    attempt,
                    type(error).__name__,
                    error,
                )

    def _error_event(self, req_id: int, code: int, message: str, _contract: Any = None) -> None:
        kind = classify(code)
        if kind is ErrorKind.CONNECTIVITY_LOST:
            log.warning("%s: %s (orders held until restored)", self.name, message)
            self.link_ok = False
            self.bump()
            if self.link_loss_reconnect_after is not None:
                self._watchdog = asyncio.ensure_future(self._link_watchdog())
        elif kind in (ErrorKind.RESTORED, ErrorKind.RESTORED_DATA_LOST):
            log.info("%s: %s", self.name, message)
            self.link_ok = True
            if self._watchdog is not None:
                self._watchdog.cancel()
            if self._on_restored is not None:
                self._restore_task = asyncio.ensure_future(
                    self._restored(kind is ErrorKind.RESTORED_DATA_LOST)
                )
            else:
                self.bump()
        if self._on_error is not None:
            try:
                self._on_error(req_id, code, message)
            except Exception:
                log.exception("%s: error handler failed for %d", self.name, code)

    async def _restored(self, data_lost: bool) -> None:
        assert self._on_restored is not None
        self.connected = False  # not ready until the owner has re-read its state
        try:
            await self._on_restored(data_lost)
        except Exception:
            log.exception("%s: resynchronisation after restore failed", self.name)
        finally:
            self.connected = self.ib is not None and self.ib.isConnected()
            self.bump()

    async def _link_watchdog(self) -> None:
        assert self.link_loss_reconnect_after is not None
        await asyncio.sleep(self.link_loss_reconnect_after)
        if not self.link_ok and self.ib is not None and self.ib.isConnected():
            log.warning("%s: IB link still down; dropping the socket to reconnect", self.name)
            self.ib.disconnect()

    async def close(self) -> None:
        self._closing = True
        for task in (self._reconnect_task, self._watchdog):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        ib, self.ib = self.ib, None
        self.connected = False
        if ib is not None:
            if ib.isConnected():
                ib.disconnect()
            else:
                ib.client.disconnect()
        await asyncio.sleep(0)
        self.bump()

    def drop(self) -> None:
        """Close the socket as if it were lost (the reconnect loop takes over)."""
        if self.ib is not None and self.ib.isConnected():
            self.ib.disconnect()


async def paced_request(
    make: Callable[[], Awaitable[T]],
    *,
    bucket: Any,
    what: str,
    timeout: float,
    pacing_backoff: Sequence[float],
    on_pacing: Callable[[int], None] | None = None,
) -> T:
    """Run one IB request through a :class:`~adapters.ibkr.pacing.TokenBucket`.

    A pacing violation (162/420) empties the bucket, waits the next ``pacing_backoff`` delay and
    retries (one retry per delay); error 200 raises :class:`ContractNotFound`; other request
    errors raise :class:`IBKRError` with the IB code and message.
    """
    from ib_async import RequestError

    from adapters.ibkr.errors import ContractNotFound, PacingViolation, describe

    attempt = 0
    while True:
        await bucket.acquire()
        try:
            return await asyncio.wait_for(make(), timeout)
        except RequestError as error:
            kind = classify(error.code)
            if kind is ErrorKind.PACING:
                if on_pacing is not None:
                    on_pacing(error.code)
                if attempt < len(pacing_backoff):
                    log.warning(
                        "%s: pacing violation (%d); retrying in %g s",
                        what,
                        error.code,
                        pacing_backoff[attempt],
                    )
                    bucket.penalize(pacing_backoff[attempt])
                    attempt += 1
                    continue
                raise PacingViolation(
                    f"{what}: IB pacing violation persisted after {attempt} retries "
                    f"({describe(error.code, error.message)})"
                ) from None
            if kind is ErrorKind.NO_SECURITY:
                raise ContractNotFound(
                    f"{what}: IB has no security definition for it "
                    f"({describe(error.code, error.message)})"
                ) from None
            raise IBKRError(f"{what}: {describe(error.code, error.message)}") from None
        except TimeoutError:
            raise IBKRError(f"{what}: no answer from IB within {timeout:g} s") from None
        except ConnectionError as error:
            raise IBKRDisconnected(f"{what}: connection to IB lost ({error})") from None
