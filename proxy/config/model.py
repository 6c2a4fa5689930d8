"""The typed configuration: frozen values built from the nginx-style file.

Every default lives here, once. Durations are float seconds; ``None`` means
"off" (no timeout). Sizes are int bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.config.acl import Rule
from proxy.config.tokens import BearerTokens

# HTTP/2 limits of client connections (issue 8) live with the core that
# enforces them (proxy/http2/limits.py); re-exported here with every other default.
from proxy.http2.limits import (  # noqa: F401
    DEFAULT_HTTP2_MAX_CONTINUATION_FRAMES,
    DEFAULT_HTTP2_MAX_CONTROL_FRAMES,
    DEFAULT_HTTP2_MAX_HEADER_SIZE,
    DEFAULT_HTTP2_MAX_QUEUED_CONTROL_FRAMES,
    DEFAULT_HTTP2_MAX_RESET_STREAMS,
    DEFAULT_HTTP2_MAX_WINDOW_UPDATES_PER_DATA_FRAME,
    Http2Limits,
)

# Defaults, documented in docs/configuration.md.
DEFAULT_CONNECT_TIMEOUT = 5.0  # Envoy's default; nginx's 60s hides dead backends
DEFAULT_READ_TIMEOUT = 300.0  # 5m, Envoy's stream idle timeout; nginx's 60s cuts streams
DEFAULT_SEND_TIMEOUT = 300.0
DEFAULT_MAX_CONCURRENT_STREAMS = 128  # nginx http2_max_concurrent_streams
DEFAULT_MAX_FAILS = 1  # nginx
DEFAULT_FAIL_TIMEOUT = 10.0  # nginx
DEFAULT_NEXT_UPSTREAM_TRIES = 0  # 0 = no limit beyond the number of endpoints (nginx)
# Connection lifetime (issue 5). None = off.
DEFAULT_UPSTREAM_KEEPALIVE_TIME = 30.0  # PING an upstream connection silent this long
DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT = 10.0  # ... and close it without an ACK by then
DEFAULT_CLIENT_KEEPALIVE_TIMEOUT = 20.0  # grpc-core's keepalive timeout
DEFAULT_KEEPALIVE_MIN_TIME = 5.0  # too_many_pings threshold (grpc servers' 5m is too harsh)
DEFAULT_IDLE_TIMEOUT = 600.0  # 10m, a client connection with no open streams
DEFAULT_CLIENT_HEADER_TIMEOUT = 10.0  # preface + first HEADERS (nginx's 60s is generous)
DEFAULT_SHUTDOWN_TIMEOUT = 30.0  # SIGTERM/SIGQUIT: how long in-flight streams may finish
DEFAULT_QUEUE_TIMEOUT = 0.0  # max_conns: 0 = no waiting, UNAVAILABLE at once
DEFAULT_QUEUE_SIZE = 1024  # calls waiting per upstream for a max_conns slot
DEFAULT_HEALTH_INTERVAL = 5.0  # nginx Plus health_check interval
DEFAULT_HEALTH_TIMEOUT = 1.0
DEFAULT_HEALTH_FAILS = 1  # nginx Plus
DEFAULT_HEALTH_PASSES = 1  # nginx Plus
DEFAULT_ETCD_DIAL_TIMEOUT = 5.0  # etcd clientv3's usual DialTimeout
# A watch with nothing (event or progress notification) for this long is
# reopened: a half-open connection cannot stall the pool unnoticed.
DEFAULT_ETCD_WATCH_TIMEOUT = 60.0
DEFAULT_ETCD_WATCH_REOPEN = 300.0  # reopen even a busy watch this often
DEFAULT_METRICS_MAX_METHODS = 1000  # distinct service/method label pairs, then method="other"
DEFAULT_ADMIN_HOST = "127.0.0.1"  # admin { listen PORT; } binds loopback only
# TLS (issue 8). nginx 1.23.4+ defaults to TLSv1.2 TLSv1.3 too; older ones are refused.
DEFAULT_SSL_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
DEFAULT_SSL_HANDSHAKE_TIMEOUT = 60.0  # nginx's ssl_handshake_timeout, if client_header_timeout off
# nginx's grpc_ssl_verify is off; ours is on: see docs/configuration.md "TLS".
DEFAULT_GRPC_SSL_VERIFY = True


@dataclass(frozen=True, slots=True)
class Source:
    """Where a directive was written, for FILE:LINE messages at run time."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    """One ``server`` line in an ``upstream`` block."""

    address: Address
    weight: int = 1
    max_fails: int = DEFAULT_MAX_FAILS  # 0 disables passive health accounting
    fail_timeout: float = DEFAULT_FAIL_TIMEOUT
    backup: bool = False
    down: bool = False
    meta: tuple[tuple[str, str], ...] = ()  # labels, for subset routing
    source: Source | None = field(default=None, compare=False)
    max_conns: int = 0  # concurrent streams to this endpoint; 0 = no cap (nginx)


@dataclass(frozen=True, slots=True)
class Balance:
    """The upstream's balancing method. ``kind``: round_robin, random,
    least_conn, random_two (P2C on active streams), ip_hash, hash, least_time.
    ``key`` is the ``hash`` key (``$remote_addr``, ``$http_NAME``,
    ``$grpc_method``, ``$grpc_service``)."""

    kind: str = "round_robin"
    key: str = ""
    consistent: bool = False

    @property
    def directive(self) -> str:
        """The method as written in an ``upstream`` block (round_robin, the
        default, has no directive; it is named so)."""
        if self.kind == "random_two":
            return "random two"
        if self.kind == "hash":
            return f"hash {self.key}" + (" consistent" if self.consistent else "")
        return self.kind


ROUND_ROBIN = Balance()


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """``health_check``: grpc.health.v1.Health/Check on every endpoint."""

    interval: float = DEFAULT_HEALTH_INTERVAL
    timeout: float = DEFAULT_HEALTH_TIMEOUT
    fails: int = DEFAULT_HEALTH_FAILS
    passes: int = DEFAULT_HEALTH_PASSES
    service: str = ""  # "" asks about the server as a whole


@dataclass(frozen=True, slots=True)
class EtcdSource:
    """``etcd URL[,URL...] prefix=P ...;`` and the ``etcd_*`` directives of an
    upstream: endpoints discovered under ``prefix`` (see proxy/discovery/)."""

    urls: tuple[str, ...]
    prefix: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    dial_timeout: float = DEFAULT_ETCD_DIAL_TIMEOUT
    watch_timeout: float = DEFAULT_ETCD_WATCH_TIMEOUT
    watch_reopen: float = DEFAULT_ETCD_WATCH_REOPEN
    source: Source | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    servers: tuple[UpstreamServer, ...]
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # True for the implicit upstream made by ``grpc_pass grpc://host:port``.
    implicit: bool = False
    source: Source | None = field(default=None, compare=False)
    keepalive_time: float | None = DEFAULT_UPSTREAM_KEEPALIVE_TIME
    keepalive_timeout: float = DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT
    balance: Balance = ROUND_ROBIN
    subset: str | None = None  # request metadata key matched against endpoint labels
    subset_fallback: bool = False  # no endpoint with KEY=VALUE: use all, not UNAVAILABLE
    health_check: HealthCheck | None = None
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT
    etcd: EtcdSource | None = None  # endpoints discovered in etcd, added to servers


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """``grpc_pass grpcs://...`` and its ``grpc_ssl_*`` directives. ``name``
    is resolved: ``grpc_ssl_name``, else the host part of ``grpc_pass`` (the
    upstream's name for a named upstream, as nginx). ``context`` is built when
    the file is loaded (compare=False: equal settings share connections)."""

    name: str
    verify: bool = DEFAULT_GRPC_SSL_VERIFY
    trusted_certificate: str | None = None
    certificate: str | None = None
    certificate_key: str | None = None
    context: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Access:
    """A location's effective access control (its own directives, else its
    server's): ``allow``/``deny`` rules, ``auth_bearer_tokens``, ``auth_strip``."""

    rules: tuple[Rule, ...] = ()
    tokens: BearerTokens | None = None
    strip: bool = False


@dataclass(frozen=True, slots=True)
class Location:
    """``location [=] PATH { ... }``: prefix match, longest wins; ``=`` exact."""

    path: str
    exact: bool
    upstream: str  # name of an Upstream in Config.upstreams (implicit ones included)
    read_timeout: float | None = DEFAULT_READ_TIMEOUT  # stream idle: no DATA either way
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT
    connect_timeout: float | None = None  # None: use the upstream's connect_timeout
    next_upstream_tries: int = DEFAULT_NEXT_UPSTREAM_TRIES
    source: Source | None = field(default=None, compare=False)
    upstream_tls: UpstreamTls | None = None  # grpc_pass grpcs://
    access: Access | None = None  # None: no access control (the free path)


@dataclass(frozen=True, slots=True)
class AccessLog:
    """``access_log PATH|stderr|off [json];``. ``path`` is absolute (resolved
    beside the file that holds the directive), "stderr", or "off"."""

    path: str
    json: bool = False
    source: Source | None = field(default=None, compare=False)

    @property
    def enabled(self) -> bool:
        return self.path != "off"


@dataclass(frozen=True, slots=True)
class Admin:
    """``admin { listen ADDRESS; }``: the HTTP/1.1 metrics and status listener."""

    listen: Address
    source: Source | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Listen:
    address: Address
    http2: bool = True
    ssl: bool = False
    reuseport: bool = False
    source: Source | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ClientConnection:
    """A ``server`` block's timers for its client connections (None = off)."""

    keepalive_time: float | None = None
    keepalive_timeout: float = DEFAULT_CLIENT_KEEPALIVE_TIMEOUT
    keepalive_min_time: float | None = DEFAULT_KEEPALIVE_MIN_TIME
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    header_timeout: float | None = DEFAULT_CLIENT_HEADER_TIMEOUT
    max_age: float | None = None
    max_age_grace: float | None = None  # None: streams may run to completion


@dataclass(frozen=True, slots=True)
class ServerTls:
    """``ssl_*`` of a server. ``context`` (an ssl.SSLContext) is built when
    the file is loaded, so ``-t`` finds bad files and SIGHUP re-reads them."""

    certificate: str
    certificate_key: str
    protocols: tuple[str, ...] = DEFAULT_SSL_PROTOCOLS
    client_certificate: str | None = None
    verify_client: str = "off"  # on | optional | off
    context: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Server:
    listens: tuple[Listen, ...]
    locations: tuple[Location, ...]
    http2_max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    source: Source | None = field(default=None, compare=False)
    connection: ClientConnection = ClientConnection()
    access_log: AccessLog | None = None  # None: the main context's
    tls: ServerTls | None = None  # for the listens with "ssl"
    http2: Http2Limits = Http2Limits()

    def match(self, path: str) -> Location | None:
        """nginx's rule, reduced to what gRPC needs: an exact match wins, else the
        longest prefix."""
        best: Location | None = None
        for loc in self.locations:
            if loc.exact:
                if loc.path == path:
                    return loc
            elif path.startswith(loc.path) and (best is None or len(loc.path) > len(best.path)):
                best = loc
        return best


@dataclass(frozen=True, slots=True)
class Config:
    file: str
    worker_processes: int  # resolved: "auto" becomes os.cpu_count()
    upstreams: dict[str, Upstream]  # treat as read-only
    servers: tuple[Server, ...]
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    admin: Admin | None = None
    access_log: AccessLog | None = None  # None: off
    metrics_max_methods: int = DEFAULT_METRICS_MAX_METHODS
