"""The echo backend: a grpcio server for tests, benchmarks and ``grpc-proxy demo``.

No protobuf: every method takes and returns raw bytes (identity serializers), so
any grpcio client can call it with ``channel.unary_unary(path)`` and no codegen.

Service ``echo.Echo``:

``Unary`` (unary-unary)
    Returns the request bytes.
``ServerStream`` (unary-stream)
    Default: echoes the request once. ``x-count: N`` alone: echoes the request
    N times. ``x-size: BYTES`` (with or without ``x-count``, default count 1):
    sends N messages of BYTES bytes each, message ``i`` being ``pattern(i, BYTES)``
    (an 8-byte big-endian index, then bytes ``(i + k) % 251``), so a client can
    check every byte, the order and that nothing was lost or duplicated.
``ClientStream`` (stream-unary)
    Reads every message and returns the ascii summary
    ``count=N bytes=M sha256=HEX`` (HEX: SHA-256 of the concatenated messages).
    ``summary(messages)`` computes the expected reply; ``parse_summary`` reads it.
``Bidi`` (stream-stream)
    Echoes each message as soon as it arrives (ping-pong works).

Request metadata that controls the call:

* ``x-echo-*`` keys (``-bin`` ones too) are echoed back unchanged, in the initial
  metadata and in the trailing metadata;
* ``x-status: CODE`` (1..16) ends the call with that status before any message
  (a Trailers-Only response); the message is ``x-message: TEXT`` or the UTF-8 of
  ``x-message-bin`` (for non-ASCII text). ``x-status: 0`` is ignored;
* ``x-sleep-ms: N`` sleeps N ms: before the reply (Unary), before each message
  sent (ServerStream, Bidi), after each message read (ClientStream: a slow
  reader; once before the reply if there was none). Sleeps end with the call;
* ``x-response-compression: gzip|deflate`` compresses the responses.

Every response carries ``x-backend: NAME`` in its initial and trailing metadata.

``EchoBackend(..., delay_ms=N)`` (``--delay-ms N``) sleeps N ms in every call
that has no ``x-sleep-ms`` (a slow backend). ``health=True`` (``--health``)
adds grpc.health.v1.Health, SERVING for "" and ``echo.Echo``;
``set_serving(False)`` turns both NOT_SERVING. ``reflection=True`` adds gRPC
server reflection (grpc.reflection.v1alpha, and v1), so grpcurl can list, describe and
call ``echo.Echo`` without a .proto; ``python -m grpc_proxy_demo.echo`` has it on
(``--no-reflection`` turns it off). The descriptor it serves is
``echo_file_descriptor()``, the same as grpc_proxy_demo/echo.proto: ``EchoMessage { bytes
payload = 1; }`` for every method, which the backend echoes unchanged (but
``ClientStream``'s ASCII summary, and ``x-size`` messages, are not protobuf).

``EchoBackend(name, port=0)`` runs in-process (``start()``, ``stop()``, ``port``)
and records every call in ``events`` (an ``EventLog``): method, metadata,
``:authority``, the deadline it saw, messages and bytes each way, whether the call
completed or was cancelled (client cancel, deadline, connection lost).
``EchoProcess`` runs ``python -m grpc_proxy_demo.echo --port N --name NAME`` as a
subprocess (for SIGKILL tests); that process prints ``listening on HOST:PORT``
then ``ready`` on stdout and exits cleanly on SIGTERM or SIGINT. ``python -m
proxy.echo`` is the older name of that command.

grpcio is imported here: a process should set ``GRPC_ENV`` (grpc_proxy_demo/
__init__.py) before it imports this module, as ``grpc-proxy echo``,
``grpc-proxy demo`` and ``subprocess_env()``'s children do.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from grpc_proxy_demo import grpc_env

SERVICE = "echo.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/Bidi"
METHODS = ("Unary", "ServerStream", "ClientStream", "Bidi")

MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]
SERVER_OPTIONS: list[tuple[str, Any]] = [
    *CHANNEL_OPTIONS,
    # grpcio sets SO_REUSEPORT by default: a second server on a busy port would
    # silently share it. Tests need "port taken" to fail and ports to be exact.
    ("grpc.so_reuseport", 0),
]
DEFAULT_MAX_WORKERS = 600  # sync server: one thread per running call; 500 streams

# The directory holding grpc_proxy_demo/ and proxy/: the repository, or site-packages.
_ROOT = Path(__file__).resolve().parent.parent

Metadata = tuple[tuple[str, str | bytes], ...]

# --------------------------------------------------------------------------- payloads

_BASE_CACHE: dict[int, bytes] = {}
_BASE_LOCK = threading.Lock()


def _base(size: int) -> bytes:
    with _BASE_LOCK:
        base = _BASE_CACHE.get(size)
        if base is None:
            if len(_BASE_CACHE) >= 8:
                _BASE_CACHE.clear()
            cycle = bytes(range(251))
            base = cycle * (size // 251 + 2)
            _BASE_CACHE[size] = base
        return base


def pattern(index: int, size: int) -> bytes:
    """Message ``index`` of a patterned stream: 8-byte big-endian index, then bytes
    ``(index + k) % 251``; cut to ``size`` bytes."""
    if size <= 0:
        return b""
    head = index.to_bytes(8, "big")
    if size <= 8:
        return head[:size]
    off = index % 251
    return head + _base(size)[off : off + size - 8]


def summary(messages: Iterable[bytes]) -> bytes:
    """The ``ClientStream`` reply for these messages."""
    h = hashlib.sha256()
    count = total = 0
    for m in messages:
        count += 1
        total += len(m)
        h.update(m)
    return f"count={count} bytes={total} sha256={h.hexdigest()}".encode()


def parse_summary(reply: bytes) -> dict[str, str]:
    """``b"count=2 bytes=5 sha256=.."`` → ``{"count": "2", "bytes": "5", ...}``."""
    return dict(part.split("=", 1) for part in reply.decode("ascii").split())


# --------------------------------------------------------------------------- events


@dataclass
class CallRecord:
    """One call as the backend saw it. Mutated while the call runs; read a snapshot
    from ``EventLog`` (copies) to be safe."""

    backend: str
    method: str  # "Unary", "ServerStream", "ClientStream" or "Bidi"
    metadata: Metadata
    authority: str | None  # the request's :authority (None if grpcio hides it)
    deadline: float | None  # seconds remaining at the start; None: no deadline
    started: float  # time.monotonic()
    ended: float | None = None  # when grpc finished the call (status sent or cancel)
    completed: bool = False  # the handler reached its normal end (or x-status)
    cancelled: bool = False  # ended without completing: cancel, deadline, conn lost
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    status: int = 0  # the code the handler chose (x-status), 0 otherwise

    def get(self, key: str) -> str | bytes | None:
        """First value of request metadata ``key`` (lower case), or None."""
        for k, v in self.metadata:
            if k == key:
                return v
        return None

    @property
    def done(self) -> bool:
        return self.ended is not None


class EventLog:
    """Thread-safe list of ``CallRecord``s with a condition to wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls: list[CallRecord] = []

    def _add(self, rec: CallRecord) -> None:
        with self._cond:
            self._calls.append(rec)
            self._cond.notify_all()

    def _update(self, fn: Callable[[], None]) -> None:
        with self._cond:
            fn()
            self._cond.notify_all()

    def snapshot(self, method: str | None = None) -> list[CallRecord]:
        """Copies of the records, oldest first (only ``method`` if given)."""
        with self._cond:
            return [
                CallRecord(**{f: getattr(c, f) for f in CallRecord.__dataclass_fields__})
                for c in self._calls
                if method is None or c.method == method
            ]

    def count(self, method: str | None = None) -> int:
        with self._cond:
            return sum(1 for c in self._calls if method is None or c.method == method)

    def clear(self) -> None:
        with self._cond:
            self._calls.clear()

    def wait_for(self, predicate: Callable[[list[CallRecord]], bool], timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until ``predicate(snapshot)`` is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate(self.snapshot()):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))

    def find(self, key: str, value: str | bytes) -> list[CallRecord]:
        """Snapshots of the calls whose request metadata has ``key: value``."""
        return [c for c in self.snapshot() if c.get(key) == value]

    def wait_call(
        self,
        key: str,
        value: str | bytes,
        timeout: float,
        until: Callable[[CallRecord], bool] = lambda c: True,
    ) -> CallRecord | None:
        """The call tagged ``key: value`` once ``until(call)`` holds, else None."""
        found: list[CallRecord] = []

        def pred(calls: list[CallRecord]) -> bool:
            found[:] = [c for c in calls if c.get(key) == value and until(c)]
            return bool(found)

        return found[0] if self.wait_for(pred, timeout) else None

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self.snapshot())


# --------------------------------------------------------------------------- server


class _CallEnded(Exception):
    """The call ended (cancelled) while the handler was still working."""


_COMPRESSION = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}


class _Call:
    """Per-call state: parsed controls, the record, sleeping that ends with the call."""

    def __init__(self, backend: EchoBackend, method: str, context: grpc.ServicerContext) -> None:
        self.backend = backend
        self.context = context
        md: Metadata = tuple((m.key, m.value) for m in (context.invocation_metadata() or ()))
        self.finished = threading.Event()
        remaining = context.time_remaining()
        self.record = CallRecord(
            backend=backend.name,
            method=method,
            metadata=md,
            authority=_authority(context),
            deadline=None if remaining is None or remaining > 1e8 else remaining,
            started=time.monotonic(),
        )
        self.echo: list[tuple[str, str | bytes]] = [
            (k, v) for k, v in md if k.startswith("x-echo-")
        ]
        self.status = 0
        self.message = ""
        self.sleep_s = backend.delay_ms / 1000.0
        self.count: int | None = None
        self.size: int | None = None
        compression: str | None = None
        for k, v in md:
            text = v.decode("latin-1") if isinstance(v, bytes) else v
            if k == "x-status":
                self.status = _int(text, 0)
            elif k == "x-message":
                self.message = text
            elif k == "x-message-bin" and isinstance(v, bytes):
                self.message = v.decode("utf-8", "replace")
            elif k == "x-sleep-ms":
                self.sleep_s = max(0, _int(text, 0)) / 1000.0
            elif k == "x-count":
                self.count = max(0, _int(text, 1))
            elif k == "x-size":
                self.size = max(0, _int(text, 0))
            elif k == "x-response-compression":
                compression = text.strip().lower()
        if compression in _COMPRESSION:
            context.set_compression(_COMPRESSION[compression])
        backend._enter(self.record)
        if not context.add_callback(self._on_done):
            self._on_done()  # already over

    def _on_done(self) -> None:
        by_client = _cancelled(self.context)

        def upd() -> None:
            self.record.ended = time.monotonic()
            # A cancel can reach a streaming handler as a plain end of the request
            # stream (grpcio race), so the handler may "complete" a cancelled call.
            self.record.cancelled = by_client or not self.record.completed

        self.backend.events._update(upd)
        self.finished.set()

    def metadata(self) -> list[tuple[str, str | bytes]]:
        return [("x-backend", self.backend.name), *self.echo]

    def begin(self) -> None:
        """Trailers-only abort if ``x-status`` asks, else send initial metadata."""
        self.context.set_trailing_metadata(self.metadata())
        if 0 < self.status <= 16:
            code = _STATUS_BY_VALUE[self.status]
            self.backend.events._update(lambda: self._complete(self.status))
            self.context.abort(code, self.message)  # raises
        self.context.send_initial_metadata(self.metadata())

    def _complete(self, status: int = 0) -> None:
        self.record.completed = True
        self.record.status = status

    def complete(self) -> None:
        self.backend.events._update(self._complete)

    def sleep(self) -> None:
        if self.sleep_s > 0 and self.finished.wait(self.sleep_s):
            raise _CallEnded
        if self.finished.is_set() or not self.context.is_active():
            raise _CallEnded

    def got(self, msg: bytes) -> None:
        def upd() -> None:
            self.record.messages_in += 1
            self.record.bytes_in += len(msg)

        self.backend.events._update(upd)

    def sent(self, msg: bytes) -> None:
        def upd() -> None:
            self.record.messages_out += 1
            self.record.bytes_out += len(msg)

        self.backend.events._update(upd)

    def close(self) -> None:
        self.backend._leave()


def _int(text: str, default: int) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return default


_STATUS_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


# The two reads of grpcio internals. The sync server API has no public way to
# either (grpcio 1.85: ServicerContext offers is_active() and add_callback(),
# not why a call ended; HandlerCallDetails holds the method and metadata, not
# :authority; grpc.aio's cancelled() is not on the sync context). Both are read
# defensively: without them a record says authority None, and a cancel that
# reached the handler as a plain end of stream counts as completed.


def _cancelled(context: grpc.ServicerContext) -> bool:
    """grpcio's own verdict: the client cancelled (RST_STREAM, deadline, lost
    connection). Private state."""
    state = getattr(context, "_state", None)
    return getattr(state, "client", None) == "cancelled"


def _authority(context: grpc.ServicerContext) -> str | None:
    """The request's :authority, from the C-core call details. Private state."""
    try:
        host = context._rpc_event.call_details.host  # type: ignore[attr-defined]
    except AttributeError:
        return None
    if isinstance(host, bytes):
        return host.decode("latin-1")
    return host if isinstance(host, str) else None


class EchoBackend:
    """An in-process echo server on ``host:port`` (port 0: pick one)."""

    def __init__(
        self,
        name: str,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        server_options: tuple[tuple[str, Any], ...] = (),
        health: bool = False,
        delay_ms: int = 0,
        credentials: grpc.ServerCredentials | None = None,
        reflection: bool = False,
    ) -> None:
        self.name = name
        self.delay_ms = delay_ms
        self.reflection = reflection
        self._credentials = credentials  # TLS (grpc.ssl_server_credentials); None: plaintext
        self._health: Any = None
        if health:
            from grpc_health.v1 import health as grpc_health

            self._health = grpc_health.HealthServicer()
            self.set_serving(True)
        self._server_options = server_options
        self.host = host
        self._requested_port = port
        self.port = port
        self.events = EventLog()
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self._pool: futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.active = 0
        self.peak_active = 0

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> EchoBackend:
        if self._server is not None:
            raise RuntimeError(f"echo backend {self.name} already started")
        self._pool = futures.ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix=f"echo-{self.name}"
        )
        server = grpc.server(self._pool, options=[*SERVER_OPTIONS, *self._server_options])
        server.add_generic_rpc_handlers((_Handler(self),))
        if self._health is not None:
            from grpc_health.v1 import health_pb2_grpc

            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self.reflection:
            _enable_reflection(server, health=self._health is not None)
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            if self._credentials is not None:
                port = server.add_secure_port(f"{host}:{self._requested_port}", self._credentials)
            else:
                port = server.add_insecure_port(f"{host}:{self._requested_port}")
        except RuntimeError as e:
            port = 0
            err: Exception | None = e
        else:
            err = None
        if not port:
            server.stop(None)
            self._pool.shutdown(wait=False)
            self._pool = None
            raise OSError(
                f"echo backend {self.name}: cannot listen on "
                f"{host}:{self._requested_port}" + (f" ({err})" if err else "")
            )
        self.port = port
        server.start()
        self._server = server
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop listening and end running calls (after ``grace`` s; None: now)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait(timeout=(grace or 0) + 10)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> bool:
        return self._server is not None

    def set_serving(self, serving: bool) -> None:
        """What grpc.health.v1.Health/Check answers, for "" and echo.Echo."""
        from grpc_health.v1 import health_pb2

        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE):
            self._health.set(service, status)

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_active = self.active

    def _enter(self, record: CallRecord) -> None:
        with self._lock:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
        self.events._add(record)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def __enter__(self) -> EchoBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- handlers

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        call = _Call(self, "Unary", context)
        try:
            call.got(request)
            call.begin()
            call.sleep()
            call.sent(request)
            call.complete()
            return request
        except _CallEnded:
            return b""
        finally:
            call.close()

    def server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        call = _Call(self, "ServerStream", context)
        try:
            call.got(request)
            call.begin()
            count = call.count if call.count is not None else 1
            for i in range(count):
                call.sleep()
                msg = pattern(i, call.size) if call.size is not None else request
                yield msg
                call.sent(msg)
            call.complete()
        except _CallEnded:
            return
        finally:
            call.close()

    def client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        call = _Call(self, "ClientStream", context)
        try:
            call.begin()
            h = hashlib.sha256()
            count = total = 0
            for msg in requests:
                call.got(msg)
                count += 1
                total += len(msg)
                h.update(msg)
                call.sleep()
            if count == 0:
                call.sleep()
            reply = f"count={count} bytes={total} sha256={h.hexdigest()}".encode()
            call.sent(reply)
            call.complete()
            return reply
        except (_CallEnded, grpc.RpcError):
            return b""
        finally:
            call.close()

    def bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        call = _Call(self, "Bidi", context)
        try:
            call.begin()
            for msg in requests:
                call.got(msg)
                call.sleep()
                yield msg
                call.sent(msg)
            call.complete()
        except (_CallEnded, grpc.RpcError):
            return
        finally:
            call.close()


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, backend: EchoBackend) -> None:
        b = backend
        self._handlers: dict[str, grpc.RpcMethodHandler] = {
            UNARY: grpc.unary_unary_rpc_method_handler(b.unary),
            SERVER_STREAM: grpc.unary_stream_rpc_method_handler(b.server_stream),
            CLIENT_STREAM: grpc.stream_unary_rpc_method_handler(b.client_stream),
            BIDI: grpc.stream_stream_rpc_method_handler(b.bidi),
        }

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- reflection

REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
REFLECTION_V1_SERVICE = "grpc.reflection.v1.ServerReflection"
PROTO_FILE = "grpc_proxy_demo/echo.proto"  # the descriptor's file name: its path here
_DESCRIPTOR_LOCK = threading.Lock()


def echo_file_descriptor() -> Any:
    """``echo.Echo`` as a ``FileDescriptorProto``, the same as grpc_proxy_demo/echo.proto."""
    from google.protobuf import descriptor_pb2 as d

    f = d.FileDescriptorProto(name=PROTO_FILE, package="echo", syntax="proto3")
    msg = f.message_type.add(name="EchoMessage")
    msg.field.add(
        name="payload",
        number=1,
        json_name="payload",
        type=d.FieldDescriptorProto.TYPE_BYTES,
        label=d.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    service = f.service.add(name="Echo")
    for method, client_streaming, server_streaming in (
        ("Unary", False, False),
        ("ServerStream", False, True),
        ("ClientStream", True, False),
        ("Bidi", True, True),
    ):
        service.method.add(
            name=method,
            input_type=".echo.EchoMessage",
            output_type=".echo.EchoMessage",
            client_streaming=client_streaming,
            server_streaming=server_streaming,
        )
    return f


def _enable_reflection(server: grpc.Server, health: bool) -> None:
    """Serve gRPC reflection for echo.Echo (and Health) on ``server``; the
    descriptor goes into protobuf's default pool, where Health's already is."""
    from google.protobuf import descriptor_pool
    from grpc_reflection.v1alpha import reflection, reflection_pb2

    pool = descriptor_pool.Default()
    with _DESCRIPTOR_LOCK:
        try:
            pool.FindFileByName(PROTO_FILE)
        except KeyError:
            pool.Add(echo_file_descriptor())
    names = [SERVICE, REFLECTION_SERVICE]
    if health:
        names.append("grpc.health.v1.Health")
    servicer = reflection.ReflectionServicer(names)
    # grpc.reflection.v1 is v1alpha renamed, the same messages on the wire (newer
    # grpcurl asks v1 first): the same servicer answers both. v1 is not listed,
    # as grpcio-reflection has no descriptor for it.
    for service in (REFLECTION_SERVICE, REFLECTION_V1_SERVICE):
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    service,
                    {
                        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                            servicer.ServerReflectionInfo,
                            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                        )
                    },
                ),
            )
        )


# --------------------------------------------------------------------------- subprocess


def subprocess_env() -> dict[str, str]:
    """The environment for ``python -m proxy...`` and ``python -m
    grpc_proxy_demo...`` children: this source tree first on PYTHONPATH, so
    they run without an install, and ``GRPC_ENV`` for the ones that load grpc."""
    env = grpc_env(dict(os.environ))
    parts = [str(_ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


class EchoProcess:
    """``python -m grpc_proxy_demo.echo`` as a child process (so it can be SIGKILLed)."""

    def __init__(
        self,
        name: str,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        stderr_path: str | os.PathLike[str] | None = None,
        health: bool = False,
        delay_ms: int = 0,
    ) -> None:
        self.name = name
        self.health = health
        self.delay_ms = delay_ms
        self.host = host
        self.port = port
        self._stderr_path = stderr_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EchoProcess:
        cmd = [
            sys.executable,
            "-m",
            "grpc_proxy_demo.echo",
            "--port",
            str(self.port),
            "--name",
            self.name,
            "--host",
            self.host,
        ]
        if self.health:
            cmd.append("--health")
        if self.delay_ms:
            cmd += ["--delay-ms", str(self.delay_ms)]
        stderr: Any = None
        if self._stderr_path is not None:
            stderr = open(self._stderr_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=subprocess_env(),
                cwd=str(_ROOT),
            )
        finally:
            if stderr is not None:
                stderr.close()
        assert self.proc.stdout is not None
        lines = _read_lines_until(self.proc, b"ready", timeout)
        for line in lines:
            if line.startswith(b"listening on "):
                self.port = int(line.rsplit(b":", 1)[1])
        if not lines or lines[-1] != b"ready":
            self.kill()
            raise RuntimeError(
                f"echo backend {self.name} did not become ready in {timeout}s "
                f"(exit code {self.proc.returncode}); output: {lines!r}"
            )
        return self

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap(5.0)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait, then SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap(5.0)

    def _reap(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _read_lines_until(proc: subprocess.Popen[bytes], stop: bytes, timeout: float) -> list[bytes]:
    """Read stdout lines until ``stop``, EOF, or ``timeout``; bounded."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    lines: list[bytes] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                lines.append(line.strip())
                if lines[-1] == stop:
                    return lines
    return lines


# --------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m grpc_proxy_demo.echo`` (and of ``python -m
    proxy.echo``, its older name)."""
    p = argparse.ArgumentParser(
        prog="python -m grpc_proxy_demo.echo", description=__doc__.split("\n")[0]
    )
    p.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    p.add_argument("--name", default="echo", help="value of the x-backend metadata")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--health", action="store_true", help="serve grpc.health.v1.Health")
    p.add_argument(
        "--delay-ms", type=int, default=0, help="sleep this long in each call without x-sleep-ms"
    )
    p.add_argument(
        "--reflection",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve gRPC server reflection (grpcurl needs no .proto)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    backend = EchoBackend(
        args.name,
        args.port,
        args.host,
        health=args.health,
        delay_ms=args.delay_ms,
        reflection=args.reflection,
    )
    try:
        backend.start()
    except OSError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(f"listening on {backend.address}", flush=True)
    print("ready", flush=True)
    while not stopping.wait(0.5):
        pass
    backend.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
