"""The directive tree -> the typed model.

``TABLE`` (at the end) has one row per directive: its contexts, arity,
parser and model field, as nginx's ``ngx_command_t``. Each block is read
into a draft (a mutable mirror of its model value, below), then checked as
a whole and built into the frozen value: ``build`` for the file,
``_upstream``, ``_server``, ``_location`` and ``_admin`` for the blocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from proxy.config import core_directives as core
from proxy.config import http2_directives as http2
from proxy.config.commands import Arity, Command, Context, Draft, Parse, Table, error, keep
from proxy.config.errors import ConfigError, quote
from proxy.config.etcd_directives import build_etcd
from proxy.config.model import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_METRICS_MAX_METHODS,
    DEFAULT_NEXT_UPSTREAM_TRIES,
    DEFAULT_QUEUE_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_UPSTREAM_KEEPALIVE_TIME,
    DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT,
    ROUND_ROBIN,
    AccessLog,
    Address,
    Admin,
    Balance,
    ClientConnection,
    Config,
    HealthCheck,
    Listen,
    Location,
    Server,
    Upstream,
    UpstreamServer,
)
from proxy.config.parser import Directive
from proxy.config.security_directives import (
    AccessDirectives,
    allow,
    bearer_tokens,
    deny,
    effective_access,
    server_tls,
    upstream_tls,
)
from proxy.config.units import parse_address
from proxy.http2.limits import Http2Limits

# No ":" so an explicit name never collides with an implicit "host:port" one.
_UPSTREAM_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def build(directives: Sequence[Directive], file: str) -> Config:
    """Check ``directives`` (the main file, includes expanded) and build."""
    main = MainDraft(file=file)
    TABLE.read(Context.MAIN, directives, main)
    main.finish()
    upstreams = {u.name: u for u in main.upstreams}
    for name, d in main.references:
        if name not in upstreams:
            raise error(d, f"no upstream {quote(name)} for grpc_pass")
    if main.admin is not None:
        _check_admin_port(main.admin, main.servers)
    return Config(
        file=file,
        worker_processes=main.worker_processes,
        upstreams={**upstreams, **main.implicit},
        servers=tuple(main.servers),
        shutdown_timeout=main.shutdown_timeout,
        admin=main.admin,
        access_log=main.access_log,
        metrics_max_methods=main.metrics_max_methods,
    )


# Drafts: what each context's directives set (the model's fields, by the
# same names), and what the whole file shares.


@dataclass(slots=True, kw_only=True)
class MainDraft(Draft):
    """The top of the file: ``Config``."""

    file: str
    worker_processes: int = 1  # nginx's default
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    upstreams: list[Upstream] = field(default_factory=list)  # named ones
    servers: list[Server] = field(default_factory=list)
    admin: Admin | None = None
    access_log: AccessLog | None = None
    metrics_max_methods: int = DEFAULT_METRICS_MAX_METHODS
    # grpc_pass grpc://HOST:PORT upstreams, by name ("HOST:PORT")
    implicit: dict[str, Upstream] = field(default_factory=dict)
    listens: set[Address] = field(default_factory=set)  # every server's
    # grpc_pass NAME references, checked once every upstream is known.
    references: list[tuple[str, Directive]] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class AdminDraft(Draft):
    """``admin { ... }``: ``Admin``."""

    listen: Listen | None = None


@dataclass(slots=True, kw_only=True)
class UpstreamDraft(Draft):
    """``upstream NAME { ... }``: ``Upstream``."""

    name: str
    servers: list[UpstreamServer] = field(default_factory=list)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    keepalive_time: float | None = DEFAULT_UPSTREAM_KEEPALIVE_TIME
    keepalive_timeout: float = DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT
    balance: Balance | None = None  # None: no method set, round robin
    subset: str | None = None
    subset_fallback: bool = False
    health_check: HealthCheck | None = None
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT
    etcd: list[Directive] = field(default_factory=list)  # etcd, etcd_*: build_etcd


@dataclass(slots=True, kw_only=True)
class ServerDraft(Draft):
    """``server { ... }``: ``Server``."""

    main: MainDraft
    listens: list[Listen] = field(default_factory=list)
    # each with its own access directives, merged with the server's at the end
    locations: list[tuple[Location, AccessDirectives]] = field(default_factory=list)
    http2_max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    connection: ClientConnection = field(default_factory=ClientConnection)
    access_log: AccessLog | None = None
    tls: list[Directive] = field(default_factory=list)  # ssl_*: server_tls
    access: AccessDirectives = field(default_factory=AccessDirectives)
    http2: Http2Limits = field(default_factory=Http2Limits)


@dataclass(frozen=True, slots=True)
class GrpcPass:
    directive: Directive
    upstream: str  # the name of an Upstream: named, or implicit ("HOST:PORT")


@dataclass(slots=True, kw_only=True)
class LocationDraft(Draft):
    """``location [=] PATH { ... }``: ``Location``."""

    main: MainDraft
    grpc_pass: GrpcPass | None = None
    read_timeout: float | None = DEFAULT_READ_TIMEOUT
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT
    connect_timeout: float | None = None
    next_upstream_tries: int = DEFAULT_NEXT_UPSTREAM_TRIES
    tls: list[Directive] = field(default_factory=list)  # grpc_ssl_*: upstream_tls
    access: AccessDirectives = field(default_factory=AccessDirectives)


# main context: the blocks


def _upstream(d: Directive, main: MainDraft) -> Upstream:
    name = d.args[0]
    if not _UPSTREAM_NAME.fullmatch(name):
        raise error(
            d, f'invalid upstream name {quote(name)}, use letters, digits, ".", "-" and "_"'
        )
    if any(u.name == name for u in main.upstreams):
        raise error(d, f"duplicate upstream {quote(name)}")
    up = UpstreamDraft(name=name)
    TABLE.read(Context.UPSTREAM, d.block or (), up)
    up.finish()
    etcd = build_etcd(d, up.etcd)
    if not up.servers and etcd is None:
        raise error(d, f"upstream {quote(name)} has no servers")
    return Upstream(
        name=name,
        servers=tuple(up.servers),
        connect_timeout=up.connect_timeout,
        source=d.source,
        keepalive_time=up.keepalive_time,
        keepalive_timeout=up.keepalive_timeout,
        balance=up.balance or ROUND_ROBIN,
        subset=up.subset,
        subset_fallback=up.subset_fallback,
        health_check=up.health_check,
        queue_timeout=up.queue_timeout,
        etcd=etcd,
    )


def _server(d: Directive, main: MainDraft) -> Server:
    server = ServerDraft(main=main)
    TABLE.read(Context.SERVER, d.block or (), server)
    if not server.listens:
        raise error(d, "server has no listen")
    tls = server_tls(d, server.tls, server.listens)
    server.finish()  # access control, then HTTP/2 limits
    locations = tuple(
        replace(loc, access=effective_access(server.access, own)) for loc, own in server.locations
    )
    return Server(
        listens=tuple(server.listens),
        locations=locations,
        http2_max_concurrent_streams=server.http2_max_concurrent_streams,
        source=d.source,
        connection=server.connection,
        access_log=server.access_log,
        tls=tls,
        http2=server.http2,
    )


def _admin(d: Directive, main: MainDraft) -> Admin:
    """``admin { listen [HOST:]PORT; }``"""
    admin = AdminDraft()
    TABLE.read(Context.ADMIN, d.block or (), admin)
    admin.finish()
    if admin.listen is None:
        raise error(d, "admin has no listen")
    return Admin(admin.listen.address, source=admin.listen.source)


def _check_admin_port(admin: Admin, servers: Sequence[Server]) -> None:
    """The admin port must not be a gRPC port too: one of the two binds
    would fail, or worse, serve the wrong protocol."""
    for server in servers:
        for lst in server.listens:
            if lst.address.port == admin.listen.port:
                where = f" at {lst.source}" if lst.source is not None else ""
                src = admin.source
                raise ConfigError(
                    src.file if src else "?",
                    src.line if src else 0,
                    f"admin listen {admin.listen} shares port "
                    f"{admin.listen.port} with the server listen{where}",
                )


# upstream context


def _upstream_server(d: Directive, up: UpstreamDraft) -> UpstreamServer:
    server = core.upstream_server(d)
    if any(s.address == server.address for s in up.servers):
        raise error(d, f"duplicate server {server.address} in upstream {quote(up.name)}")
    return server


def _method(parse: Callable[[Directive, object], Balance]) -> Parse:
    """A balancing method's parser: one method per upstream."""

    def checked(d: Directive, up: UpstreamDraft) -> Balance:
        if up.balance is not None:
            raise error(d, "load balancing method redefined")
        return parse(d, up)

    return checked


# server context


def _listen(d: Directive, server: ServerDraft) -> Listen:
    address = core.unit(d, core.listen_address, d.args[0])
    if address in server.main.listens:
        raise error(d, f"duplicate listen {address}")
    server.main.listens.add(address)
    return core.listen_parameters(d, address)


def _location(d: Directive, server: ServerDraft) -> tuple[Location, AccessDirectives]:
    """The location (its access control still to merge with the server's)."""
    path, exact = core.location_path(d)
    loc = LocationDraft(main=server.main)
    TABLE.read(Context.LOCATION, d.block or (), loc)
    grpc_pass = loc.grpc_pass
    if grpc_pass is None:
        raise error(d, f"location {quote(core.shown(path, exact))} has no grpc_pass")
    name = grpc_pass.upstream
    host = name.rsplit(":", 1)[0].strip("[]") if ":" in name else name
    tls = upstream_tls(grpc_pass.directive, host, loc.tls)
    loc.finish()  # access control
    if any((x.path, x.exact) == (path, exact) for x, _ in server.locations):
        raise error(d, f"duplicate location {quote(core.shown(path, exact))}")
    location = Location(
        path=path,
        exact=exact,
        upstream=name,
        read_timeout=loc.read_timeout,
        send_timeout=loc.send_timeout,
        connect_timeout=loc.connect_timeout,
        next_upstream_tries=loc.next_upstream_tries,
        source=d.source,
        upstream_tls=tls,
    )
    return location, loc.access


# location context


def _grpc_pass(d: Directive, loc: LocationDraft) -> GrpcPass:
    """``grpc_pass NAME|[grpc[s]://]HOST:PORT``; an address makes an
    implicit upstream, a name is checked once the whole file is read."""
    target = d.args[0]
    scheme, sep, rest = target.partition("://")
    if not sep:
        rest = target
    elif scheme.lower() not in ("grpc", "grpcs"):  # nginx: case-insensitive
        raise error(d, f"invalid URL prefix in {quote(target)}")
    if not rest:
        raise error(d, f"invalid grpc_pass {quote(target)}, an upstream or address is needed")
    if "/" in rest:
        raise error(d, f"invalid grpc_pass {quote(target)}, a URI path is not allowed")
    if ":" not in rest:
        loc.main.references.append((rest, d))
        return GrpcPass(d, rest)
    address = core.unit(d, parse_address, rest)
    name = str(address)
    if name not in loc.main.implicit:
        server = UpstreamServer(address, source=d.source)
        loc.main.implicit[name] = Upstream(name, (server,), implicit=True, source=d.source)
    return GrpcPass(d, name)


# The table. "include" is not in it: the parser has already replaced it with
# the included directives.

MAIN, ADMIN, UPSTREAM = Context.MAIN, Context.ADMIN, Context.UPSTREAM
SERVER, LOCATION = Context.SERVER, Context.LOCATION
NOARGS, TAKE1, TAKE12 = Arity.NOARGS, Arity.TAKE1, Arity.TAKE12
ONEMORE, ANY, FLAG = Arity.ONEMORE, Arity.ANY, Arity.FLAG
C = Command

# fmt: off
TABLE = Table(
    (
        # main
        C("worker_processes", MAIN, TAKE1, core.worker_processes, "worker_processes"),
        C("shutdown_timeout", MAIN, TAKE1, core.shutdown_timeout, "shutdown_timeout"),
        C("upstream", MAIN, TAKE1, _upstream, "upstreams", block=True, multiple=True),
        C("server", MAIN, NOARGS, _server, "servers", block=True, multiple=True),
        C("admin", MAIN, NOARGS, _admin, "admin", block=True),
        C("access_log", MAIN | SERVER, TAKE12, core.access_log, "access_log"),
        C("metrics_max_methods", MAIN, TAKE1, core.at_least(1), "metrics_max_methods"),
        # admin
        C("listen", ADMIN, TAKE1, core.admin_listen, "listen", phase=1),
        # upstream
        C("server", UPSTREAM, ONEMORE, _upstream_server, "servers", multiple=True),
        C("connect_timeout", UPSTREAM, TAKE1, core.positive_duration, "connect_timeout"),
        C("keepalive_time", UPSTREAM, TAKE1, core.timeout, "keepalive_time"),
        C("keepalive_timeout", UPSTREAM, TAKE1, core.positive_duration, "keepalive_timeout"),
        # Balancing methods may repeat, to get nginx's "load balancing method
        # redefined" for any second one (see _method).
        C(
            "random",
            UPSTREAM,
            NOARGS | TAKE12,
            _method(core.random_method),
            "balance",
            multiple=True,
        ),
        C("least_conn", UPSTREAM, NOARGS, _method(core.least_conn), "balance", multiple=True),
        C("ip_hash", UPSTREAM, NOARGS, _method(core.ip_hash), "balance", multiple=True),
        C("hash", UPSTREAM, TAKE12, _method(core.hash_method), "balance", multiple=True),
        C(
            "least_time",
            UPSTREAM,
            NOARGS | TAKE1,
            _method(core.least_time),
            "balance",
            multiple=True,
        ),
        C("subset", UPSTREAM, TAKE1, core.subset, "subset"),
        C("subset_fallback", UPSTREAM, TAKE1, core.subset_fallback, "subset_fallback"),
        C("health_check", UPSTREAM, ANY, core.health_check, "health_check"),
        C("queue_timeout", UPSTREAM, TAKE1, core.duration, "queue_timeout"),
        C("etcd", UPSTREAM, ONEMORE, keep, "etcd"),
        C("etcd_username", UPSTREAM, TAKE1, keep, "etcd"),
        C("etcd_password", UPSTREAM, TAKE1, keep, "etcd"),
        C("etcd_password_file", UPSTREAM, TAKE1, keep, "etcd"),
        C("etcd_tls_ca", UPSTREAM, TAKE1, keep, "etcd"),
        C("etcd_tls_cert", UPSTREAM, TAKE1, keep, "etcd"),
        C("etcd_tls_key", UPSTREAM, TAKE1, keep, "etcd"),
        C("etcd_dial_timeout", UPSTREAM, TAKE1, keep, "etcd"),
        # server
        C("listen", SERVER, ONEMORE, _listen, "listens", multiple=True),
        C(
            "http2_max_concurrent_streams",
            SERVER,
            TAKE1,
            core.at_least(1),
            "http2_max_concurrent_streams",
        ),
        C("location", SERVER, TAKE12, _location, "locations", block=True, multiple=True),
        C("keepalive_time", SERVER, TAKE1, core.timeout, "connection.keepalive_time"),
        C(
            "keepalive_timeout",
            SERVER,
            TAKE1,
            core.positive_duration,
            "connection.keepalive_timeout",
        ),
        C("keepalive_min_time", SERVER, TAKE1, core.timeout, "connection.keepalive_min_time"),
        C("idle_timeout", SERVER, TAKE1, core.timeout, "connection.idle_timeout"),
        C("client_header_timeout", SERVER, TAKE1, core.timeout, "connection.header_timeout"),
        C("max_connection_age", SERVER, TAKE1, core.timeout, "connection.max_age"),
        C("max_connection_age_grace", SERVER, TAKE1, core.timeout, "connection.max_age_grace"),
        C("ssl_certificate", SERVER, TAKE1, keep, "tls"),
        C("ssl_certificate_key", SERVER, TAKE1, keep, "tls"),
        C("ssl_protocols", SERVER, ONEMORE, keep, "tls"),
        C("ssl_client_certificate", SERVER, TAKE1, keep, "tls"),
        C("ssl_verify_client", SERVER, TAKE1, keep, "tls"),
        C(
            "http2_max_header_size",
            SERVER,
            TAKE1,
            http2.header_size,
            "http2.max_header_size",
            phase=2,
        ),
        C(
            "http2_max_continuation_frames",
            SERVER,
            TAKE1,
            http2.count(1, 1 << 20),
            "http2.max_continuation_frames",
            phase=2,
        ),
        C(
            "http2_max_reset_streams",
            SERVER,
            TAKE1,
            http2.count(1, 1 << 30),
            "http2.max_reset_streams",
            phase=2,
        ),
        C(
            "http2_max_control_frames",
            SERVER,
            TAKE1,
            http2.count(1, 1 << 30),
            "http2.max_control_frames",
            phase=2,
        ),
        C(
            "http2_max_window_updates_per_data_frame",
            SERVER,
            TAKE1,
            http2.count(1, 1 << 20),
            "http2.max_window_updates_per_data_frame",
            phase=2,
        ),
        C(
            "http2_max_queued_control_frames",
            SERVER,
            TAKE1,
            http2.count(1, 1 << 30),
            "http2.max_queued_control_frames",
            phase=2,
        ),
        # server and location
        C("allow", SERVER | LOCATION, TAKE1, allow, "access.rules", multiple=True, phase=1),
        C("deny", SERVER | LOCATION, TAKE1, deny, "access.rules", multiple=True, phase=1),
        C("auth_bearer_tokens", SERVER | LOCATION, TAKE1, bearer_tokens, "access.tokens", phase=1),
        C("auth_strip", SERVER | LOCATION, FLAG, core.flag, "access.strip", phase=1),
        # location
        C("grpc_pass", LOCATION, TAKE1, _grpc_pass, "grpc_pass"),
        C("grpc_read_timeout", LOCATION, TAKE1, core.timeout, "read_timeout"),
        C("grpc_send_timeout", LOCATION, TAKE1, core.timeout, "send_timeout"),
        C("grpc_connect_timeout", LOCATION, TAKE1, core.positive_duration, "connect_timeout"),
        C("grpc_next_upstream_tries", LOCATION, TAKE1, core.at_least(0), "next_upstream_tries"),
        C("grpc_ssl_verify", LOCATION, FLAG, keep, "tls"),
        C("grpc_ssl_trusted_certificate", LOCATION, TAKE1, keep, "tls"),
        C("grpc_ssl_name", LOCATION, TAKE1, keep, "tls"),
        C("grpc_ssl_certificate", LOCATION, TAKE1, keep, "tls"),
        C("grpc_ssl_certificate_key", LOCATION, TAKE1, keep, "tls"),
    ),
    drafts={
        MAIN: MainDraft,
        ADMIN: AdminDraft,
        UPSTREAM: UpstreamDraft,
        SERVER: ServerDraft,
        LOCATION: LocationDraft,
    },
)
# fmt: on
