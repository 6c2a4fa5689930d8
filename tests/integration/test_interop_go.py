"""grpc-go interop: gRPC's interop test cases, run by a grpc-go 1.33 client
against a grpc-go server, directly and through the proxy, side by side.

The client and server are tests/interop/go (grpc.testing.TestService, gRPC's
interop test descriptions), built by tests/interop/setup_go.sh from Debian's
golang-go and golang-google-grpc-dev (installed when missing; the session
fails, not skips, when they cannot be). Every client run opens one connection
and fails if it needed another (a GOAWAY in the middle of a case shows up as a
reconnect, which grpc-go otherwise hides).

- ``test_interop_case``: each case, ``direct`` and ``proxy``, on one Go server
  and one proxy shared by the module (warmed up with one call first, so that a
  case's result is its own; the first call is ``test_first_call_...``'s). For
  the two cancel cases the server's handler must also end at once (the
  cancellation reached it).
- ``test_interop_soak``: 1000 unary calls on one connection, and 200 large
  unary calls (54 MB up, 63 MB down), whose DATA makes grpc-go send its
  BDP-estimation PINGs (about one per call): neither may fail a call or lose
  the connection.
- ``test_first_call_on_a_fresh_proxy``: a new Go server and a new proxy, no
  traffic before; the very first call must succeed within 5 s.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import ProxyProcess, Stack, addr, free_port, location, make_config, upstream
from interop_tools import SETUP_TIMEOUT, ClientRun, GoServer, GoTools, go_tools

# The first test to ask for the toolchain may install and build it.
pytestmark = pytest.mark.timeout(SETUP_TIMEOUT + 120)

SERVICES = ("/grpc.testing.TestService/", "/grpc.testing.UnimplementedService/")

CASES = [
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "timeout_on_sleeping_server",
    "cancel_after_begin",
    "cancel_after_first_response",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
]

# name: (interop_client arguments, -deadline in seconds)
SOAKS = {
    "rpc_soak_1000_unary": (
        ["-soak_iterations", "1000", "-soak_request_size", "1024", "-soak_response_size", "1024"],
        60.0,
    ),
    "rpc_soak_200_large_unary_bdp": (["-soak_iterations", "200"], 90.0),
}

# Cases whose cancellation must reach the server: its handler ends at once (not
# at the call's 10 s deadline). A grpc-go 1.33 server reports a call reset
# before its first request message as Internal or Canceled (it races), direct
# or not; after one, as Canceled.
SERVER_SEES = {
    "cancel_after_begin": re.compile(
        r"call /grpc\.testing\.TestService/StreamingInputCall: end (Canceled|Internal)$", re.M
    ),
    "cancel_after_first_response": re.compile(
        r"call /grpc\.testing\.TestService/FullDuplexCall: end Canceled$", re.M
    ),
}
SERVER_LOG_WAIT = 3.0

FIRST_CALL_DEADLINE = 5.0
ACCESS_LOG_FLUSH = 0.5  # proxy/access_log.py FLUSH_INTERVAL
VIAS = ["direct", "proxy"]


@pytest.fixture(scope="session")
def go() -> GoTools:
    return go_tools()


def interop_config(listen_port: int, server_port: int, access_log: Path) -> str:
    """The proxy in front of one Go interop server, an access log in JSON."""
    return make_config(
        listen_port,
        [upstream("go", [addr(server_port)], "connect_timeout 2s")],
        [location(path, "grpc_pass go") for path in SERVICES],
        server_directives=[f"access_log {access_log} json"],
    )


@dataclass
class Interop:
    go: GoTools
    server: GoServer
    proxy: ProxyProcess
    access_log: Path
    warmup: list[ClientRun] = field(default_factory=list)

    def port(self, via: str) -> int:
        return self.server.port if via == "direct" else self.proxy.port


def start_interop(go: GoTools, stack: Stack, name: str) -> Interop:
    server = go.server(stack.workdir, f"{name}-go-server")
    stack.defer(server.stop)
    access_log = stack.workdir / f"{name}-access.log"
    proxy = stack.proxy(interop_config(free_port(), server.port, access_log))
    return Interop(go, server, proxy, access_log)


@pytest.fixture(scope="module")
def interop(go: GoTools, module_stack: Stack) -> Iterator[Interop]:
    env = start_interop(go, module_stack, "module")
    # One call first, so that no case below is the first call on the proxy's
    # upstream connection (that one is test_first_call_on_a_fresh_proxy's).
    for _ in range(3):
        run = go.client(env.proxy.port, "empty_unary", rpc_timeout=3.0, deadline=10.0)
        env.warmup.append(run)
        print(f"warm-up: {run.stdout.strip()}")
        if run.passed:
            break
    yield env


class Watch:
    """What the proxy and the Go server logged, and which calls the access log
    shows ending not OK, from now on: the reason for a proxy-side failure."""

    def __init__(self, env: Interop) -> None:
        self.env = env
        self.started = datetime.now(UTC)
        self.log_at = _size(env.proxy.log_path)
        self.server_at = _size(env.server.log_path)

    def server_log(self) -> str:
        return _read_from(self.env.server.log_path, self.server_at)

    def report(self, lines: int = 20) -> str:
        time.sleep(2 * ACCESS_LOG_FLUSH)  # the access log is written in batches
        log = _read_from(self.env.proxy.log_path, self.log_at).splitlines()
        server = self.server_log().splitlines()
        bad = [ln for ln in self._access_lines() if '"code":"OK"' not in ln]
        return "\n".join(
            [
                f"--- proxy log since the run ({len(log)} lines, last {lines}) ---",
                *log[-lines:],
                f"--- access log: calls ended not OK since the run ({len(bad)}, first {lines}) ---",
                *bad[:lines],
                f"--- Go server log since the run ({len(server)} lines, last {lines}) ---",
                *server[-lines:],
            ]
        )

    def _access_lines(self) -> list[str]:
        """Access-log lines of calls that ended since the run started."""
        out = []
        for ln in _read_from(self.env.access_log, 0).splitlines():
            try:
                ended = datetime.fromisoformat(json.loads(ln)["time"])
            except (ValueError, KeyError, TypeError):
                out.append(ln)
                continue
            if ended >= self.started:
                out.append(ln)
        return out


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _read_from(p: Path, offset: int) -> str:
    try:
        with open(p, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def run_case(env: Interop, via: str, case: str, *args: str, deadline: float = 60.0) -> None:
    watch = Watch(env)
    run = env.go.client(env.port(via), case, *args, deadline=deadline)
    why = None if run.passed else run.describe()
    if why is None and case in SERVER_SEES:
        # The cancellation reached the server: its handler ended at once.
        want = SERVER_SEES[case]
        if not _wait_until(lambda: want.search(watch.server_log()) is not None, SERVER_LOG_WAIT):
            why = (
                f"{case} passed at the client, but the Go server did not log "
                f"{want.pattern!r} within {SERVER_LOG_WAIT:.0f}s"
            )
    if why is not None:
        if via == "proxy":
            why += "\n" + watch.report()
        pytest.fail(why, pytrace=False)
    print(run.stdout.strip())


def _wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("case", CASES)
def test_interop_case(interop: Interop, case: str, via: str) -> None:
    run_case(interop, via, case)


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("soak", list(SOAKS))
def test_interop_soak(interop: Interop, soak: str, via: str) -> None:
    args, deadline = SOAKS[soak]
    run_case(interop, via, "rpc_soak", *args, deadline=deadline)


@pytest.mark.parametrize("via", VIAS)
def test_first_call_on_a_fresh_proxy(go: GoTools, stack: Stack, via: str) -> None:
    """A new Go server behind a new proxy, nothing sent before: the first call
    (so the first on the proxy's new upstream connection) succeeds within 5 s."""
    env = start_interop(go, stack, "fresh")
    watch = Watch(env)
    run = go.client(
        env.port(via),
        "empty_unary",
        "-connect_timeout",
        f"{FIRST_CALL_DEADLINE}s",
        rpc_timeout=FIRST_CALL_DEADLINE,
        deadline=2 * FIRST_CALL_DEADLINE + 5.0,
    )
    if not run.passed:
        pytest.fail(
            f"the first call on a fresh {via} stack did not succeed within "
            f"{FIRST_CALL_DEADLINE:.0f}s\n{run.describe()}"
            + (f"\n{watch.report()}" if via == "proxy" else ""),
            pytrace=False,
        )
