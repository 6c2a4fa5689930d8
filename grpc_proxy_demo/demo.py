"""``grpc-proxy demo [-c FILE] [-n CALLS]``: see the proxy balance real gRPC traffic.

Reads the config (default: the example shipped in the package,
``proxy/conf/grpc-proxy.conf``, a copy of the repository's
``conf/grpc-proxy.conf``, whatever the current directory), picks the upstream that
``/echo.Echo/Unary`` routes to, starts an in-process echo backend on the port of
each of its servers that is not ``down``, starts the proxy (``python -m proxy -c
FILE``) and sends CALLS calls of each kind (unary, server stream, client stream,
bidi) through it on one client connection. Then, if the upstream has ``backup``
servers, it stops the primaries and sends more calls, to show the backup taking
over. It prints one table per phase: calls per backend, per call kind and per
status, and what to notice (the weights' shares, the idle backup).

Exit status 0 when every call succeeded with the right reply, 1 otherwise (and
when a port is taken or the proxy does not start), with a message, no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from grpc_proxy_demo.echo import (
    BIDI,
    CHANNEL_OPTIONS,
    CLIENT_STREAM,
    SERVER_STREAM,
    UNARY,
    EchoBackend,
    pattern,
    subprocess_env,
    summary,
)
from proxy.cli import PACKAGED_CONFIG

if TYPE_CHECKING:
    from proxy.config.model import Config, Listen, Upstream

KINDS = ("unary", "server stream", "client stream", "bidi")
CALL_TIMEOUT = 10.0
PROXY_START_TIMEOUT = 10.0
CONCURRENCY = 8
STREAM_MESSAGES = 3
ANY: object = object()  # Phase.count: any value


class DemoError(Exception):
    """A problem to report in one line and exit 1."""


@dataclass
class DemoBackend:
    name: str
    host: str
    port: int
    weight: int
    backup: bool
    down: bool
    server: EchoBackend | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def role(self) -> str:
        if self.down:
            return "down (not started)"
        if self.backup:
            return "backup"
        return f"weight={self.weight}"


@dataclass
class Outcome:
    kind: str
    backend: str | None  # x-backend of the reply; None: the proxy answered alone
    status: str  # StatusCode name, or BAD_REPLY when the bytes were wrong


@dataclass
class Phase:
    title: str
    outcomes: list[Outcome] = field(default_factory=list)

    def count(
        self,
        backend: str | None | object = ANY,
        kind: str | object = ANY,
        status: str | object = ANY,
    ) -> int:
        """Calls matching every given field (``backend=None``: no backend reached)."""
        return sum(
            1
            for o in self.outcomes
            if (backend is ANY or o.backend == backend)
            and (kind is ANY or o.kind == kind)
            and (status is ANY or o.status == status)
        )

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != "OK"]


# --------------------------------------------------------------------------- setup


def _load(path: str) -> Config:
    try:
        from proxy.config import ConfigError, load
    except ImportError as e:
        raise DemoError(f"the configuration loader is not available ({e})") from None
    try:
        return load(path)
    except ConfigError as e:
        raise DemoError(str(e)) from None
    except OSError as e:
        raise DemoError(f"cannot read {path}: {e.strerror or e}") from None


def _pick(config: Config) -> tuple[Listen, Upstream]:
    """The listener and upstream that serve /echo.Echo/Unary."""
    for server in config.servers:
        loc = server.match(UNARY)
        if loc is None or not server.listens:
            continue
        listens = [li for li in server.listens if not li.ssl]
        if not listens:
            raise DemoError(
                "the server routing /echo.Echo/ listens only with ssl; "
                "the demo needs a plain (h2c) listen address"
            )
        upstream = config.upstreams.get(loc.upstream)
        if upstream is None:
            raise DemoError(f"location {loc.path} names unknown upstream {loc.upstream!r}")
        return listens[0], upstream
    raise DemoError(
        f"no location in {config.file} routes /echo.Echo/Unary; add e.g. "
        "'location /echo.Echo/ { grpc_pass NAME; }'"
    )


def _connect_host(host: str) -> str:
    if host in ("", "*", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bind_host = "" if host == "*" else host
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind_host, port))
        except OSError:
            return False
    return True


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ProxyChild:
    """The proxy subprocess; its stderr goes to a temporary file."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self.command = [sys.executable, "-m", "proxy", "-c", config_path]
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="grpc-proxy-demo-", suffix=".log", delete=False
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, host: str, port: int) -> None:
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            env=subprocess_env(),
        )
        deadline = time.monotonic() + PROXY_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoError(
                    f"the proxy exited with code {self.proc.returncode}:\n{self.tail()}"
                )
            if _accepts(host, port):
                return
            time.sleep(0.05)
        raise DemoError(
            f"the proxy did not accept connections on {host}:{port} within "
            f"{PROXY_START_TIMEOUT:.0f}s:\n{self.tail()}"
        )

    def tail(self, lines: int = 15) -> str:
        try:
            text = Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("  " + line for line in text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5.0)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


# --------------------------------------------------------------------------- traffic


def _backend_of(*metadatas: Any) -> str | None:
    for md in metadatas:
        for item in md or ():
            if item[0] == "x-backend":
                v = item[1]
                return v.decode() if isinstance(v, bytes) else str(v)
    return None


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.unary = channel.unary_unary(UNARY)
        self.server_stream = channel.unary_stream(SERVER_STREAM)
        self.client_stream = channel.stream_unary(CLIENT_STREAM)
        self.bidi = channel.stream_stream(BIDI)


def one_call(stubs: Stubs, kind: str, i: int) -> Outcome:
    """One call of ``kind``; checks the reply bytes."""
    payload = f"demo call {i}".encode()
    msgs = [pattern(i + j, 32) for j in range(STREAM_MESSAGES)]
    try:
        if kind == "unary":
            reply, call = stubs.unary.with_call(payload, timeout=CALL_TIMEOUT)
            good = reply == payload
        elif kind == "server stream":
            call = stubs.server_stream(
                payload,
                timeout=CALL_TIMEOUT,
                metadata=(("x-count", str(STREAM_MESSAGES)), ("x-size", "64")),
            )
            good = list(call) == [pattern(j, 64) for j in range(STREAM_MESSAGES)]
        elif kind == "client stream":
            reply, call = stubs.client_stream.with_call(iter(msgs), timeout=CALL_TIMEOUT)
            good = reply == summary(msgs)
        else:
            call = stubs.bidi(iter(msgs), timeout=CALL_TIMEOUT)
            good = list(call) == msgs
    except grpc.RpcError as e:
        err: Any = e
        return Outcome(
            kind, _backend_of(err.initial_metadata(), err.trailing_metadata()), err.code().name
        )
    backend = _backend_of(call.initial_metadata(), call.trailing_metadata())
    return Outcome(kind, backend, "OK" if good else "BAD_REPLY")


def run_phase(
    phase: Phase,
    call: Callable[[str, int], Outcome],
    calls_per_kind: int,
    console: Console,
) -> None:
    """``calls_per_kind`` calls of each kind, CONCURRENCY at a time, with progress."""
    total = calls_per_kind * len(KINDS)
    jobs = [(kind, i) for i in range(calls_per_kind) for kind in KINDS]
    # Shuffled: in submission order the kinds' cycle of 4 would line up with the
    # balancer's cycle and make the per-kind columns look lopsided.
    random.Random(0).shuffle(jobs)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(phase.title, total=total)
        pool = ThreadPoolExecutor(max_workers=CONCURRENCY)
        try:
            futures = [pool.submit(call, kind, i) for kind, i in jobs]
            for fut in as_completed(futures):
                phase.outcomes.append(fut.result())
                progress.advance(task)
        finally:
            # on Ctrl-C do not wait for the queued calls; closing the channel
            # ends the running ones
            pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- report


def render(
    phase: Phase,
    backends: Sequence[DemoBackend],
    console: Console,
    stopped: frozenset[str] = frozenset(),
) -> None:
    statuses = ["OK", *sorted({o.status for o in phase.outcomes} - {"OK"})]
    table = Table(title=phase.title, title_justify="left", header_style="bold")
    table.add_column("Backend")
    table.add_column("Address")
    table.add_column("Role")
    for kind in KINDS:
        table.add_column(kind.capitalize(), justify="right")
    for status in statuses:
        table.add_column(status, justify="right", style="green" if status == "OK" else "red")
    table.add_column("Share", justify="right")
    total = len(phase.outcomes) or 1
    rows: list[tuple[str | None, str, str, str]] = [
        (b.name, b.name, b.address, b.role + (" (stopped)" if b.name in stopped else ""))
        for b in backends
    ]
    known = {b.name for b in backends}
    others = {o.backend for o in phase.outcomes if o.backend not in known}
    for name in sorted(others, key=lambda n: (n is None, n or "")):
        rows.append((name, name or "(none: proxy replied)", "-", "-"))
    for key, label, address, role in rows:
        cells = [str(phase.count(backend=key, kind=k)) for k in KINDS]
        cells += [str(phase.count(backend=key, status=s)) for s in statuses]
        share = 100.0 * phase.count(backend=key) / total
        table.add_row(escape(label), escape(address), escape(role), *cells, f"{share:.0f}%")
    console.print(table)


def explain_weights(phase: Phase, backends: Sequence[DemoBackend]) -> list[str]:
    primaries = [b for b in backends if not b.backup and not b.down]
    lines: list[str] = []
    served = sum(phase.count(backend=b.name) for b in primaries)
    weights = sum(b.weight for b in primaries)
    if primaries and served and weights:
        parts = [
            f"{b.name} (weight {b.weight}) got {100.0 * phase.count(backend=b.name) / served:.0f}%"
            f" (expected {100.0 * b.weight / weights:.0f}%)"
            for b in primaries
        ]
        lines.append(
            "Weighted round robin per call, all on one client connection: " + ", ".join(parts) + "."
        )
    for b in backends:
        if b.backup:
            lines.append(
                f"Backup {b.name} got {phase.count(backend=b.name)} calls "
                "while the primaries were up."
            )
        elif b.down:
            lines.append(f"{b.name} is marked down: never called.")
    return lines


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpc-proxy demo",
        description="Start echo backends and the proxy, send traffic, show the balancing.",
    )
    p.add_argument(
        "-c",
        dest="config",
        default=PACKAGED_CONFIG,
        metavar="FILE",
        help="configuration file (default: the example shipped in the package, "
        "a copy of conf/grpc-proxy.conf)",
    )
    p.add_argument(
        "-n",
        dest="calls",
        type=int,
        default=200,
        metavar="CALLS",
        help="calls of each kind in the first phase (default: 200)",
    )
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=120)
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    if args.calls < 1:
        err.print("grpc-proxy demo: -n must be at least 1")
        return 1
    backends: list[DemoBackend] = []
    proxy: ProxyChild | None = None
    channel: grpc.Channel | None = None
    try:
        config = _load(args.config)
        listen, upstream = _pick(config)
        host, port = _connect_host(listen.address.host), listen.address.port
        for i, s in enumerate(upstream.servers, 1):
            backends.append(
                DemoBackend(
                    name=f"{upstream.name}-{i}",
                    host=s.address.host,
                    port=s.address.port,
                    weight=s.weight,
                    backup=s.backup,
                    down=s.down,
                )
            )
        if not _port_free(listen.address.host, port):
            raise DemoError(
                f"port {port} is already in use (listen {listen.address} in "
                f"{args.config}); stop what uses it or pass -c with another config"
            )
        for b in backends:
            if b.down:
                continue
            if not _port_free(b.host, b.port):
                raise DemoError(
                    f"port {b.port} for backend {b.name} ({b.address}) is "
                    "already in use; stop what uses it"
                )
            server = EchoBackend(b.name, b.port, b.host)
            try:
                server.start()
            except OSError as e:
                raise DemoError(str(e)) from None
            b.server = server
        if not any(b.server for b in backends):
            raise DemoError(f"upstream {upstream.name} has no server that is not down")

        proxy = ProxyChild(str(Path(config.file).resolve()))
        proxy.start(host, port)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        channel = grpc.insecure_channel(
            target, options=[*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        )
        stubs = Stubs(channel)

        def call(kind: str, i: int) -> Outcome:
            return one_call(stubs, kind, i)

        console.print(
            f"[bold]grpc-proxy demo[/]: proxy on {escape(target)} "
            f"({escape(args.config)}), upstream [bold]{escape(upstream.name)}[/]: "
            + escape(", ".join(f"{b.name} {b.address} {b.role}" for b in backends))
        )
        phase1 = Phase(f"Phase 1: all backends up, {args.calls} calls of each kind")
        run_phase(phase1, call, args.calls, console)
        phases = [phase1]

        primaries = [b for b in backends if b.server and not b.backup]
        backups = [b for b in backends if b.server and b.backup]
        if primaries and backups:
            n2 = max(10, args.calls // 4)
            for b in primaries:
                assert b.server is not None
                b.server.stop(grace=0.5)
            time.sleep(0.5)
            phase2 = Phase(f"Phase 2: primaries stopped, {n2} calls of each kind")
            run_phase(phase2, call, n2, console)
            phases.append(phase2)

        problems: list[str] = []
        console.print()
        render(phase1, backends, console)
        for line in explain_weights(phase1, backends):
            console.print("  " + line)
        for b in backups:
            if phase1.count(backend=b.name):
                problems.append(f"backup {b.name} got calls while the primaries were up")
        if len(phases) > 1:
            phase2 = phases[1]
            console.print()
            render(phase2, backends, console, frozenset(b.name for b in primaries))
            by_backup = sum(phase2.count(backend=b.name) for b in backups)
            console.print(
                f"  Primaries stopped: the backup served {by_backup} of "
                f"{len(phase2.outcomes)} calls."
            )
            if by_backup < len(phase2.outcomes) - len(phase2.failures):
                problems.append("calls reached a stopped primary in phase 2")
        for ph in phases:
            fails = ph.failures
            if fails:
                counts = Counter(f"{o.kind} {o.status}" for o in fails)
                problems.append(
                    f"{ph.title.split(':')[0]}: {len(fails)} calls failed ("
                    + ", ".join(f"{n}x {k}" for k, n in counts.most_common())
                    + ")"
                )
        console.print()
        if problems:
            for p in problems:
                err.print(f"[red]unexpected:[/] {escape(p)}")
            if proxy is not None:
                err.print("proxy log (last lines):\n" + proxy.tail(), markup=False, highlight=False)
            return 1
        console.print("[green]demo ok[/]: every call succeeded with the right reply.")
        return 0
    except DemoError as e:
        err.print(f"grpc-proxy demo: {e}", markup=False, highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("grpc-proxy demo: interrupted")
        return 1
    finally:
        if channel is not None:
            channel.close()
        if proxy is not None:
            proxy.stop()
        for b in backends:
            if b.server is not None:
                b.server.stop()
