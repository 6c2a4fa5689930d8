"""The typed configuration: frozen values built from the nginx-style file.

Every default lives here, once. Durations are float seconds; ``None`` means
"off" (no timeout). Sizes are int bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Defaults, documented in docs/configuration.md.
DEFAULT_CONNECT_TIMEOUT = 5.0  # Envoy's default; nginx's 60s hides dead backends
DEFAULT_READ_TIMEOUT = 300.0  # 5m, Envoy's stream idle timeout; nginx's 60s cuts streams
DEFAULT_SEND_TIMEOUT = 300.0
DEFAULT_MAX_CONCURRENT_STREAMS = 128  # nginx http2_max_concurrent_streams
DEFAULT_MAX_FAILS = 1  # nginx
DEFAULT_FAIL_TIMEOUT = 10.0  # nginx
DEFAULT_NEXT_UPSTREAM_TRIES = 0  # 0 = no limit beyond the number of endpoints (nginx)
DEFAULT_METRICS_MAX_METHODS = 1000  # distinct service/method label pairs, then method="other"
DEFAULT_ADMIN_HOST = "127.0.0.1"  # admin { listen PORT; } binds loopback only


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


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    servers: tuple[UpstreamServer, ...]
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # True for the implicit upstream made by ``grpc_pass grpc://host:port``.
    implicit: bool = False
    source: Source | None = field(default=None, compare=False)


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
class Server:
    listens: tuple[Listen, ...]
    locations: tuple[Location, ...]
    http2_max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    source: Source | None = field(default=None, compare=False)
    access_log: AccessLog | None = None  # None: the main context's

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
    admin: Admin | None = None
    access_log: AccessLog | None = None  # None: off
    metrics_max_methods: int = DEFAULT_METRICS_MAX_METHODS
