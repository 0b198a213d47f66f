"""A real Prefect server + process worker on loopback, as subprocesses, for the deployment e2e tests.

Everything runs from this checkout's virtualenv with a temporary ``PREFECT_HOME`` and telemetry
off; each process gets its own process group so teardown can end it and its children (the
worker's flow-run subprocesses) without touching anything else on the machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PREFECT = VENV_BIN / "prefect"
POOL = "dte-process"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(prefect_home: Path, api_url: str) -> dict[str, str]:
    """The caller's environment without PREFECT_*/DTE_* settings, pointed at the test server."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DTE_", "VIRTUAL_ENV"))
    }
    env.update(
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        PREFECT_HOME=str(prefect_home),
        PREFECT_API_URL=api_url,
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"<{path} missing>"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return f"--- last {lines} lines of {path.name} ---\n" + "\n".join(text[-lines:])


@dataclass
class Proc:
    """A subprocess in its own process group, with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    _fh: TextIO

    @classmethod
    def start(
        cls, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, log: Path
    ) -> Proc:
        fh = log.open("w", encoding="utf-8")
        popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches the flow-run children
        )
        return cls(name, popen, log, fh)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
        pgid = self.popen.pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGINT, 5.0), (signal.SIGKILL, 5.0)):
            with suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                self.popen.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; children of the group may linger a moment
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            break
        self._fh.close()


@dataclass
class PrefectStack:
    """Server (+ later the worker) of one test; ``timings`` collects measured seconds."""

    tmp: Path
    port: int
    env: dict[str, str]
    server: Proc
    worker: Proc | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.server.alive():
                raise AssertionError(f"prefect server exited early\n{tail(self.server.log)}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(
            f"prefect server not healthy after {timeout} s\n{tail(self.server.log)}"
        )

    def run(
        self, argv: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env=dict(env or self.env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_worker(self, dte_home: Path) -> None:
        env = dict(self.env, DTE_HOME=str(dte_home), PREFECT_WORKER_QUERY_SECONDS="1")
        self.worker = Proc.start(
            "worker",
            [str(PREFECT), "worker", "start", "--pool", POOL, "--name", "e2e-worker"],
            env,
            self.tmp,
            self.tmp / "worker.log",
        )

    def trigger(self, deployment: str, params: Mapping[str, Any]) -> subprocess.Popen[str]:
        """``prefect deployment run <deployment> --params ...`` (started, not awaited).

        Without ``--watch``: the test polls the API for the final state every 0.25 s, which
        saves 1-2 s per run over the CLI's watch loop and exit.
        """
        return subprocess.Popen(
            [str(PREFECT), "deployment", "run", deployment, "--params", json.dumps(params)],
            env=self.env,
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def logs(self) -> str:
        parts = [tail(self.server.log)]
        if self.worker is not None:
            parts.append(tail(self.worker.log, 80))
        return "\n".join(parts)


FLOW_RUN_ID = re.compile(r"UUID: ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def wait_cli(proc: subprocess.Popen[str], stack: PrefectStack, timeout: float = 60) -> str:
    """Wait for a ``trigger`` and return the id of the flow run it created."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"`prefect deployment run` timed out\n{out}\n{stack.logs()}") from None
    match = FLOW_RUN_ID.search(out)
    assert match, f"no flow run id in the CLI output (rc={proc.returncode})\n{out}\n{stack.logs()}"
    return match.group(1)


@contextmanager
def prefect_stack(tmp: Path, server_env: Mapping[str, str] | None = None) -> Iterator[PrefectStack]:
    """Start ``prefect server start`` on a free loopback port; stop worker and server on exit."""
    port = free_port()
    home = tmp / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = base_env(home, f"http://127.0.0.1:{port}/api")
    t0 = time.monotonic()
    server = Proc.start(
        "server",
        [
            str(PREFECT),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
            "--analytics-off",
        ],
        dict(env, **(server_env or {})),
        tmp,
        tmp / "server.log",
    )
    stack = PrefectStack(tmp=tmp, port=port, env=env, server=server)
    try:
        stack.wait_healthy()
        stack.timings["server start -> healthy"] = time.monotonic() - t0
        yield stack
    finally:
        if stack.worker is not None:
            stack.worker.stop()
        server.stop()
