"""``adapters.ibkr.account`` with the real ``ib_async`` client against ``tests.fixtures.fake_tws``.

Every check connects over TCP to a fake TWS on 127.0.0.1 that speaks the TWS API socket protocol
(handshake, startApi, nextValidId, managedAccounts, the startup "end" messages), so the client,
its event loop handling and the disconnect are all exercised for real.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from adapters.ibkr import (
    AccountCheck,
    AccountCheckError,
    check_account,
    is_paper_account,
    mask_account,
    mode_account_problem,
)
from tests.fixtures.fake_tws import FakeTWS

HOST = "127.0.0.1"
SHORT = 1.5  # seconds: the timeout for checks that are expected to time out


def _closed_port() -> int:
    """A port nothing listens on (bound once to pick it, then closed)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- pure rules
@pytest.mark.parametrize(
    ("account", "paper"),
    [
        ("DU1234567", True),
        ("DF7654321", True),
        (" du1234567 ", True),
        ("U1234567", False),
        ("F1234567", False),
        ("DU", False),
        ("", False),
    ],
)
def test_is_paper_account_when_prefix_given_then_only_du_df_are_paper(
    account: str, paper: bool
) -> None:
    assert is_paper_account(account) is paper


@pytest.mark.parametrize(
    ("account", "masked"),
    [("DU1234567", "DU****567"), ("U1234567", "U****567"), ("DF12345", "DF*****"), ("", "")],
)
def test_mask_account_when_masked_then_middle_digits_hidden(account: str, masked: str) -> None:
    assert mask_account(account) == masked


def test_mode_account_problem_when_development_then_anything_goes() -> None:
    assert mode_account_problem("development", AccountCheck(("U1234567",), paper=False)) is None
    assert mode_account_problem("development", AccountCheck(("DU1234567",), paper=True)) is None
    with pytest.raises(ValueError, match="production"):
        mode_account_problem("production", AccountCheck(("DU1234567",), paper=True))


# --------------------------------------------------------------------------- against the fake
def test_check_account_when_paper_account_reported_then_paper_and_only_testing_accepts() -> None:
    with FakeTWS(accounts=["DU1234567"]) as tws:
        check = check_account(HOST, tws.port, client_id=17, expected_account="DU1234567")

    assert check == AccountCheck(accounts=("DU1234567",), paper=True)
    assert check.masked() == ["DU****567"]
    assert tws.client_ids == [17]
    assert [r[0] for r in tws.requests] == [
        "71",
        "61",
    ]  # startApi, reqPositions: readonly, no fetch
    live = mode_account_problem("live", check)
    assert live is not None
    assert "paper" in live
    assert "DU****567" in live
    assert "DU1234567" not in live
    assert mode_account_problem("testing", check) is None


def test_check_account_when_live_account_reported_then_not_paper_and_only_live_accepts() -> None:
    with FakeTWS(accounts=["U7654321"]) as tws:
        check = check_account(HOST, tws.port, client_id=3, expected_account=None)

    assert check.accounts == ("U7654321",)
    assert check.paper is False
    assert check.masked() == ["U****321"]
    testing = mode_account_problem("testing", check)
    assert testing is not None
    assert "U****321" in testing
    assert "U7654321" not in testing
    assert mode_account_problem("live", check) is None


def test_check_account_when_several_accounts_mixed_then_not_paper_and_both_modes_refuse() -> None:
    with FakeTWS(accounts=["DF1111111", "DU2222222", "U3333333"]) as tws:
        check = check_account(HOST, tws.port, client_id=1, expected_account="du2222222")

    assert check.accounts == ("DF1111111", "DU2222222", "U3333333")
    assert check.paper is False
    assert mode_account_problem("live", check) is not None
    assert mode_account_problem("testing", check) is not None


def test_check_account_when_expected_account_not_managed_then_error_with_masked_ids_only() -> None:
    with FakeTWS(accounts=["DU1234567", "DU7654321"]) as tws:
        with pytest.raises(AccountCheckError) as raised:
            check_account(HOST, tws.port, client_id=5, expected_account="DU9999999")
        assert tws.wait_until_idle(5.0)

    message = str(raised.value)
    assert "DU****999" in message
    assert "DU****567" in message
    assert "DU****321" in message
    for full in ("DU9999999", "DU1234567", "DU7654321"):
        assert full not in message


def test_check_account_when_nothing_listens_then_cannot_reach_quickly() -> None:
    port = _closed_port()
    started = time.monotonic()

    with pytest.raises(AccountCheckError, match=rf"cannot reach IB API at {HOST}:{port}"):
        check_account(HOST, port, client_id=1, expected_account=None, timeout=10.0)

    assert time.monotonic() - started < 3.0


def test_check_account_when_server_silent_then_error_after_timeout() -> None:
    with FakeTWS(behaviour="silent") as tws:
        started = time.monotonic()
        with pytest.raises(AccountCheckError, match=r"cannot reach IB API .*no API handshake"):
            check_account(HOST, tws.port, client_id=1, expected_account=None, timeout=SHORT)
        elapsed = time.monotonic() - started

        assert tws.connections == 1
        assert tws.wait_until_idle(5.0)  # the half-open connection was closed too
    assert SHORT - 0.1 <= elapsed < SHORT + 2.0


def test_check_account_when_server_closes_at_once_then_error_before_timeout() -> None:
    with FakeTWS(behaviour="refuse") as tws:
        started = time.monotonic()
        with pytest.raises(AccountCheckError, match="cannot reach IB API"):
            check_account(HOST, tws.port, client_id=1, expected_account=None, timeout=10.0)

        assert tws.connections == 1
    assert time.monotonic() - started < 3.0


def test_check_account_when_server_version_unsupported_then_error_before_timeout() -> None:
    with FakeTWS(server_version=150) as tws:  # ib_async 2.1.0 needs 157..178: the fake hangs up
        started = time.monotonic()
        with pytest.raises(AccountCheckError, match="cannot reach IB API"):
            check_account(HOST, tws.port, client_id=1, expected_account=None, timeout=10.0)

        assert tws.client_versions == ["v157..178"]
    assert time.monotonic() - started < 3.0


def test_check_account_when_no_accounts_reported_then_error() -> None:
    with FakeTWS(accounts=[]) as tws:
        with pytest.raises(AccountCheckError, match="no managed accounts"):
            check_account(HOST, tws.port, client_id=1, expected_account=None, timeout=SHORT)
        assert tws.client_ids == [1]
        assert tws.wait_until_idle(5.0)


def test_check_account_when_done_then_connection_closed_and_repeatable() -> None:
    with FakeTWS(accounts=["DU1234567"]) as tws:
        for client_id in (11, 12, 13):
            check_account(HOST, tws.port, client_id=client_id, expected_account=None)
            assert tws.wait_until_idle(5.0), "the client left its connection open"
            assert tws.open_connections == 0

        assert tws.connections == 3
        assert tws.client_ids == [11, 12, 13]


def test_check_account_when_called_inside_running_event_loop_then_works() -> None:
    """``IB.connect`` fails inside a running loop; ``check_account`` uses its own thread and loop."""

    async def caller() -> AccountCheck:
        with FakeTWS(accounts=["DU1234567"]) as tws:
            check = check_account(HOST, tws.port, client_id=2, expected_account=None)
            assert tws.wait_until_idle(5.0)
            return check

    assert asyncio.run(caller()).paper is True
