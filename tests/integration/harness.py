"""Integration-test harness: ports, config files, the proxy as a subprocess, echo
backends, grpcio clients, a raw HTTP/2 client and an RSS sampler.

Every wait here is bounded in time; every process started through a ``Stack`` is
stopped by ``Stack.close()`` (the fixtures in conftest.py call it).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import psutil

from grpc_proxy_demo.echo import (
    BIDI,
    CHANNEL_OPTIONS,
    CLIENT_STREAM,
    SERVER_STREAM,
    UNARY,
    EchoBackend,
    EchoProcess,
    subprocess_env,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCALHOST = "127.0.0.1"
MiB = 1024 * 1024

MetadataList = list[tuple[str, str | bytes]]

# --------------------------------------------------------------------------- ports


def free_port(host: str = LOCALHOST) -> int:
    """A port nothing listens on right now (the OS's pick; may race, rarely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = LOCALHOST) -> list[int]:
    """``n`` distinct free ports (sockets held open until all are picked)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True if ``host:port`` can be bound (nobody listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    host: str = LOCALHOST,
    timeout: float = 10.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Wait until ``host:port`` accepts TCP; False on timeout or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if port_accepts(port, host, timeout=0.5):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- config


def upstream(name: str, servers: Sequence[str], *directives: str) -> str:
    """``upstream NAME { server S; ...; DIRECTIVES }``; a server is written without
    the ``server`` keyword and ``;``: ``"127.0.0.1:5001 weight=3"``."""
    lines = [f"upstream {name} {{"]
    lines += [f"    server {s};" for s in servers]
    lines += [f"    {_semi(d)}" for d in directives]
    lines.append("}")
    return "\n".join(lines)


def location(path: str, *directives: str, exact: bool = False) -> str:
    """``location [=] PATH { DIRECTIVES }``; directives with or without ``;``."""
    body = " ".join(_semi(d) for d in directives)
    return f"location {'= ' if exact else ''}{path} {{ {body} }}"


def make_config(
    listen_port: int,
    upstreams: Sequence[str],
    locations: Sequence[str],
    *,
    max_concurrent_streams: int = 1000,
    worker_processes: int = 1,
    server_directives: Sequence[str] = (),
) -> str:
    """A whole config: ``upstreams`` from ``upstream()``, ``locations`` from
    ``location()``, one ``server`` listening on 127.0.0.1:``listen_port``."""
    parts = [
        f"worker_processes {worker_processes};",
        *upstreams,
        "server {",
        f"    listen {LOCALHOST}:{listen_port} http2;",
        f"    http2_max_concurrent_streams {max_concurrent_streams};",
    ]
    parts += [f"    {_semi(d)}" for d in server_directives]
    parts += [f"    {loc}" for loc in locations]
    parts.append("}")
    return "\n".join(parts) + "\n"


def _semi(d: str) -> str:
    d = d.strip()
    return d if d.endswith(";") or d.endswith("}") else d + ";"


def addr(port: int, *params: str) -> str:
    """``"127.0.0.1:PORT PARAMS"`` for ``upstream()``."""
    return " ".join([f"{LOCALHOST}:{port}", *params])


# --------------------------------------------------------------------------- proxy


PROXY_CMD_ENV = "GRPC_PROXY_TEST_CMD"


def proxy_command(config_path: Path) -> list[str]:
    """``python -m proxy -c FILE``, or $GRPC_PROXY_TEST_CMD with ``{config}``
    replaced (to run the suite against another proxy)."""
    template = os.environ.get(PROXY_CMD_ENV)
    if template:
        return [part.replace("{config}", str(config_path)) for part in shlex.split(template)]
    return [sys.executable, "-m", "proxy", "-c", str(config_path)]


class ProxyProcess:
    """``python -m proxy -c FILE`` as a child; stdout and stderr go to a file."""

    def __init__(self, config_text: str, workdir: Path, name: str = "proxy") -> None:
        self.config_text = config_text
        self.workdir = workdir
        self.config_path = workdir / f"{name}.conf"
        self.log_path = workdir / f"{name}.stderr"
        # The first client listener: an admin block may come first.
        served = re.sub(r"\badmin\s*\{[^}]*\}", "", config_text)
        m = re.search(r"listen\s+(\S+):(\d+)", served)
        if not m:
            raise ValueError("config has no 'listen HOST:PORT'")
        self.host = m.group(1).strip("[]")
        self.port = int(m.group(2))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ProxyProcess:
        self.config_path.write_text(self.config_text)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                proxy_command(self.config_path),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=str(REPO_ROOT),
                env=subprocess_env(),
            )
        if not wait_for_port(self.port, self.host, timeout, self.proc):
            code = self.proc.poll()
            self.stop()
            state = f"exited with code {code}" if code is not None else f"not ready in {timeout}s"
            raise RuntimeError(
                f"proxy {state}; config {self.config_path}:\n{self.config_text}\n"
                f"--- proxy stderr ---\n{self.stderr_tail()}"
            )
        return self

    def stderr(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, lines: int = 60) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        """RSS in bytes of the proxy and its child processes (workers)."""
        return rss_of_tree(self.pid)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait, SIGKILL; then SIGKILL any child left behind (by PID)."""
        if self.proc is None:
            return None
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.proc.pid).children(recursive=True)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5.0)
        for c in children:
            with contextlib.suppress(psutil.Error):
                if c.is_running():
                    c.kill()
                    c.wait(2.0)
        return self.proc.returncode


def rss_of_tree(pid: int) -> int:
    total = 0
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0
    for q in procs:
        with contextlib.suppress(psutil.Error):
            total += q.memory_info().rss
    return total


class RssSampler:
    """Samples ``rss_of_tree(pid)`` every ``interval`` s in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = rss_of_tree(self.pid)
            if rss:
                self.samples.append(rss)
            self._stop.wait(self.interval)

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)


# --------------------------------------------------------------------------- clients


@dataclass
class Result:
    """The outcome of one call: status, messages received, metadata."""

    code: grpc.StatusCode
    details: str
    messages: list[bytes]
    initial: MetadataList
    trailing: MetadataList
    elapsed: float
    count: int = 0  # messages received (also when not kept)

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK

    @property
    def backend(self) -> str | None:
        """``x-backend`` from the initial metadata, else the trailing metadata."""
        for md in (self.initial, self.trailing):
            for k, v in md:
                if k == "x-backend":
                    return v if isinstance(v, str) else v.decode()
        return None

    def initial_get(self, key: str) -> list[str | bytes]:
        return [v for k, v in self.initial if k == key]

    def trailing_get(self, key: str) -> list[str | bytes]:
        return [v for k, v in self.trailing if k == key]


def _md(md: Any) -> MetadataList:
    return [(m[0], m[1]) for m in (md or ())]


def _finish(
    call: Any, messages: list[bytes], start: float, err: Any = None, count: int | None = None
) -> Result:
    src = err if err is not None else call
    return Result(
        count=len(messages) if count is None else count,
        code=src.code(),
        details=src.details() or "",
        messages=messages,
        initial=_md(src.initial_metadata()),
        trailing=_md(src.trailing_metadata()),
        elapsed=time.monotonic() - start,
    )


def _drain(
    call: Any, start: float, on_message: Callable[[int, bytes], None] | None, keep: bool
) -> Result:
    messages: list[bytes] = []
    count = 0
    try:
        for i, msg in enumerate(call):
            count += 1
            if keep:
                messages.append(msg)
            if on_message is not None:
                on_message(i, msg)
    except grpc.RpcError:
        pass
    except BaseException:
        call.cancel()
        raise
    return _finish(call, messages, start, count=count)


class EchoClient:
    """grpcio stubs for ``echo.Echo`` on one channel; each method returns a
    ``Result`` (errors included, never raises ``RpcError``). Default timeout 30 s
    so no call can hang a test; pass ``timeout=None`` for no deadline."""

    DEFAULT_TIMEOUT = 30.0

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.unary_call = channel.unary_unary(UNARY)
        self.server_stream_call = channel.unary_stream(SERVER_STREAM)
        self.client_stream_call = channel.stream_unary(CLIENT_STREAM)
        self.bidi_call = channel.stream_stream(BIDI)

    def unary(
        self,
        payload: bytes = b"",
        metadata: Sequence[tuple[str, str | bytes]] = (),
        timeout: float | None = DEFAULT_TIMEOUT,
        compression: grpc.Compression | None = None,
        path: str = UNARY,
    ) -> Result:
        start = time.monotonic()
        fn = self.unary_call if path == UNARY else self.channel.unary_unary(path)
        try:
            reply, call = fn.with_call(
                payload, metadata=tuple(metadata), timeout=timeout, compression=compression
            )
        except grpc.RpcError as e:
            return _finish(None, [], start, e)
        return _finish(call, [reply], start)

    def server_stream(
        self,
        payload: bytes = b"",
        metadata: Sequence[tuple[str, str | bytes]] = (),
        timeout: float | None = DEFAULT_TIMEOUT,
        compression: grpc.Compression | None = None,
        on_message: Callable[[int, bytes], None] | None = None,
        path: str = SERVER_STREAM,
        keep: bool = True,
    ) -> Result:
        """``on_message(index, msg)`` is called for each message as it arrives
        (to read slowly, or to act mid-stream); ``keep=False``: count the
        messages but do not keep them (big streams)."""
        start = time.monotonic()
        fn = self.server_stream_call if path == SERVER_STREAM else self.channel.unary_stream(path)
        call = fn(payload, metadata=tuple(metadata), timeout=timeout, compression=compression)
        return _drain(call, start, on_message, keep)

    def client_stream(
        self,
        messages: Iterable[bytes],
        metadata: Sequence[tuple[str, str | bytes]] = (),
        timeout: float | None = DEFAULT_TIMEOUT,
        compression: grpc.Compression | None = None,
    ) -> Result:
        start = time.monotonic()
        try:
            reply, call = self.client_stream_call.with_call(
                iter(messages),
                metadata=tuple(metadata),
                timeout=timeout,
                compression=compression,
            )
        except grpc.RpcError as e:
            return _finish(None, [], start, e)
        return _finish(call, [reply], start)

    def bidi(
        self,
        messages: Iterable[bytes],
        metadata: Sequence[tuple[str, str | bytes]] = (),
        timeout: float | None = DEFAULT_TIMEOUT,
        compression: grpc.Compression | None = None,
        on_message: Callable[[int, bytes], None] | None = None,
        keep: bool = True,
    ) -> Result:
        start = time.monotonic()
        call = self.bidi_call(
            iter(messages), metadata=tuple(metadata), timeout=timeout, compression=compression
        )
        return _drain(call, start, on_message, keep)


def make_channel(port: int, *options: tuple[str, Any], host: str = LOCALHOST) -> grpc.Channel:
    """An insecure channel with 64 MiB message limits (plus ``options``), with its
    own connection: grpcio otherwise shares subchannels (and their reconnect
    backoff) between channels to the same address."""
    return grpc.insecure_channel(
        f"{host}:{port}",
        options=[*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1), *options],
    )


class RequestQueue:
    """A request iterator the test feeds: ``put(msg)``, ``close()``. Ends by itself
    after ``idle_limit`` s without a put, so a forgotten stream cannot hang."""

    _END = object()

    def __init__(self, idle_limit: float = 30.0) -> None:
        self._q: queue.Queue[object] = queue.Queue()
        self.idle_limit = idle_limit

    def put(self, msg: bytes) -> None:
        self._q.put(msg)

    def close(self) -> None:
        self._q.put(self._END)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            item = self._q.get(timeout=self.idle_limit)
        except queue.Empty:
            raise StopIteration from None
        if item is self._END:
            raise StopIteration
        assert isinstance(item, bytes)
        return item


def paced(messages: Sequence[bytes], interval: float) -> Iterator[bytes]:
    """Yield ``messages`` one every ``interval`` s (the first at once)."""
    for i, m in enumerate(messages):
        if i:
            time.sleep(interval)
        yield m


# --------------------------------------------------------------------------- raw HTTP/2


def grpc_frame(payload: bytes, compressed: bool = False) -> bytes:
    """A gRPC length-prefixed message."""
    return bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload


def grpc_unframe(data: bytes) -> list[bytes]:
    """Split a DATA payload into gRPC messages (must be whole)."""
    out: list[bytes] = []
    i = 0
    while i < len(data):
        if len(data) - i < 5:
            raise ValueError("truncated gRPC frame header")
        n = int.from_bytes(data[i + 1 : i + 5], "big")
        if len(data) - i - 5 < n:
            raise ValueError("truncated gRPC message")
        out.append(data[i + 5 : i + 5 + n])
        i += 5 + n
    return out


def grpc_request_headers(
    path: str,
    authority: str,
    extra: Sequence[tuple[str, str]] = (),
    content_type: str = "application/grpc",
) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", content_type),
        ("te", "trailers"),
        *extra,
    ]


def _text(v: str | bytes) -> str:
    return v.decode("latin-1") if isinstance(v, bytes) else v


@dataclass
class RawResponse:
    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None  # RST_STREAM error code
    terminated: bool = False  # GOAWAY or connection closed
    header_blocks: int = 0  # HEADERS blocks received (1 for Trailers-Only)
    ended_with_headers: bool = False  # END_STREAM came on the first HEADERS

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def trailer(self, name: str) -> str | None:
        for k, v in self.trailers:
            if k == name:
                return v
        return None

    @property
    def status(self) -> str | None:
        return self.header(":status")


class RawH2:
    """A tiny blocking HTTP/2 (h2c, prior knowledge) client on the h2 library."""

    def __init__(
        self, port: int, host: str = LOCALHOST, timeout: float = 5.0, source: str | None = None
    ) -> None:
        """``source``: the local address to connect from (127.0.N.M works on Linux)."""
        self.host = host
        self.port = port
        self.authority = f"{host}:{port}"
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.flush()
        self.responses: dict[int, RawResponse] = {}
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        headers: Sequence[tuple[str, str]],
        body: bytes = b"",
        end_stream: bool = True,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, list(headers), end_stream=end_stream and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end_stream)
        self.responses[sid] = RawResponse()
        self.flush()
        return sid

    def grpc_request(
        self,
        path: str,
        payload: bytes = b"",
        metadata: Sequence[tuple[str, str]] = (),
        content_type: str = "application/grpc",
    ) -> int:
        return self.request(
            grpc_request_headers(path, self.authority, metadata, content_type),
            grpc_frame(payload),
        )

    def _pump(self, timeout: float) -> bool:
        """Read once (at most ``timeout`` s); False when the connection is over."""
        self.sock.settimeout(max(timeout, 0.01))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        except OSError:
            data = b""
        if not data:
            self.closed = True
            for r in self.responses.values():
                r.terminated = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for ev in events:
            self._event(ev)
        with contextlib.suppress(OSError):
            self.flush()
        return True

    def _event(self, ev: h2.events.Event) -> None:
        sid = getattr(ev, "stream_id", None)
        r = self.responses.get(sid) if sid is not None else None
        if isinstance(ev, h2.events.ResponseReceived) and r is not None:
            r.headers = [(_text(k), _text(v)) for k, v in ev.headers]
            r.header_blocks += 1
            if ev.stream_ended is not None:
                r.ended_with_headers = True
        elif isinstance(ev, h2.events.TrailersReceived) and r is not None:
            r.trailers = [(_text(k), _text(v)) for k, v in ev.headers]
            r.header_blocks += 1
        elif isinstance(ev, h2.events.DataReceived):
            if r is not None:
                r.data += ev.data
            if ev.flow_controlled_length and sid is not None:
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
        elif isinstance(ev, h2.events.StreamEnded) and r is not None:
            r.ended = True
        elif isinstance(ev, h2.events.StreamReset) and r is not None:
            r.reset = int(ev.error_code) if ev.error_code is not None else 0
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closed = True
            for resp in self.responses.values():
                resp.terminated = True

    def response(self, sid: int, timeout: float = 5.0) -> RawResponse:
        """Read until stream ``sid`` ends, is reset, or the connection closes."""
        r = self.responses[sid]
        deadline = time.monotonic() + timeout
        while not (r.ended or r.reset is not None or r.terminated):
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(min(left, 0.5)):
                break
        return r

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True once the peer sent GOAWAY or closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._pump(min(left, 0.5))
        return self.closed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- stack


class Stack:
    """Everything a test (or a module) starts, stopped in reverse order by close()."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._cleanups: list[Callable[[], None]] = []
        self._names = 0
        self.proxies: list[ProxyProcess] = []

    def defer(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def backend(
        self, name: str, port: int = 0, server_options: tuple[tuple[str, Any], ...] = ()
    ) -> EchoBackend:
        """An in-process echo backend, started."""
        b = EchoBackend(name, port, server_options=server_options)
        b.start()
        self.defer(lambda: b.stop())
        return b

    def echo_process(self, name: str, port: int = 0) -> EchoProcess:
        """An echo backend subprocess, started (stderr in workdir)."""
        p = EchoProcess(name, port, stderr_path=self.workdir / f"echo-{name}.stderr")
        self.defer(p.kill)
        return p.start()

    def proxy(self, config_text: str) -> ProxyProcess:
        """The proxy on this config, started and accepting connections."""
        self._names += 1
        p = ProxyProcess(config_text, self.workdir, name=f"proxy{self._names}")
        self.proxies.append(p)
        self.defer(p.stop)
        return p.start()

    def channel(self, port: int, *options: tuple[str, Any]) -> grpc.Channel:
        ch = make_channel(port, *options)
        self.defer(ch.close)
        return ch

    def client(self, port: int, *options: tuple[str, Any]) -> EchoClient:
        return EchoClient(self.channel(port, *options))

    def close(self) -> None:
        errors: list[BaseException] = []
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception as e:  # keep stopping the rest
                errors.append(e)
        for p in self.proxies:
            if p.proc is not None and p.proc.returncode not in (0, None, -15):
                print(f"--- {p.log_path} (exit {p.proc.returncode}) ---\n{p.stderr_tail()}")
        if errors:
            raise errors[0]


def proxy_logs(stack: Stack) -> str:
    """The stderr tails of the stack's proxies, for assertion messages."""
    return "\n".join(f"--- {p.log_path} ---\n{p.stderr_tail(30)}" for p in stack.proxies)


def run_in_threads(fn: Callable[[int], Any], n: int, timeout: float) -> list[Any]:
    """Run ``fn(i)`` for i in range(n) in n threads; results in order; bounded."""
    results: list[Any] = [None] * n

    def work(i: int) -> None:
        try:
            results[i] = fn(i)
        except BaseException as e:  # reported to the caller
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"threads still running after {timeout}s")
    return results


__all__ = [
    "LOCALHOST",
    "MiB",
    "REPO_ROOT",
    "EchoClient",
    "ProxyProcess",
    "RawH2",
    "RawResponse",
    "RequestQueue",
    "Result",
    "RssSampler",
    "Stack",
    "addr",
    "free_port",
    "free_ports",
    "grpc_frame",
    "grpc_request_headers",
    "grpc_unframe",
    "location",
    "make_channel",
    "make_config",
    "paced",
    "port_accepts",
    "port_is_free",
    "proxy_logs",
    "rss_of_tree",
    "run_in_threads",
    "upstream",
    "wait_for_port",
]


# --------------------------------------------------------------------------- one-backend setup


@dataclass
class Env:
    """One echo backend behind one proxy, and a client of the proxy."""

    stack: Stack
    backend: EchoBackend
    proxy: ProxyProcess
    client: EchoClient


def single_backend_env(
    stack: Stack, *location_directives: str, max_concurrent_streams: int = 1000
) -> Env:
    """A backend behind a proxy whose ``/echo.Echo/`` location passes to it."""
    backend = stack.backend("b1")
    config = make_config(
        free_port(),
        [upstream("echo", [addr(backend.port)], "connect_timeout 2s")],
        [location("/echo.Echo/", "grpc_pass echo", *location_directives)],
        max_concurrent_streams=max_concurrent_streams,
    )
    proxy = stack.proxy(config)
    return Env(stack, backend, proxy, stack.client(proxy.port))


def tag() -> tuple[str, str]:
    """Request metadata that identifies one call in the backend's events."""
    return ("x-test-id", uuid.uuid4().hex)
