"""The directive tree -> the typed model, with every check that needs meaning.

Messages reuse nginx's wording where nginx has one, so search engines and
nginx habits still help.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from proxy.config.errors import ConfigError, quote
from proxy.config.etcd_directives import DIRECTIVES as ETCD_DIRECTIVES
from proxy.config.etcd_directives import build_etcd
from proxy.config.http2_directives import DIRECTIVES as HTTP2_DIRECTIVES
from proxy.config.http2_directives import build_limits
from proxy.config.model import (
    DEFAULT_ADMIN_HOST,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_METRICS_MAX_METHODS,
    DEFAULT_NEXT_UPSTREAM_TRIES,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_UPSTREAM_KEEPALIVE_TIME,
    DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT,
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
from proxy.config.security_directives import LOCATION as SECURITY_LOCATION
from proxy.config.security_directives import SERVER as SECURITY_SERVER
from proxy.config.security_directives import (
    AccessDirectives,
    access_directives,
    effective_access,
    server_tls,
    upstream_tls,
)
from proxy.config.units import (
    UnitError,
    parse_address,
    parse_duration,
    parse_timeout,
)

T = TypeVar("T")

MAX_WORKER_PROCESSES = 1024  # nginx's NGX_MAX_PROCESSES
MAX_INT = 2**31 - 1
# No ":" so an explicit name never collides with an implicit "host:port" one.
_UPSTREAM_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class _Spec:
    block: bool
    min_args: int
    max_args: int | None  # None: no upper bound
    unique: bool


# server-context timers of client connections -> ClientConnection fields.
_CONNECTION_DIRECTIVES = {
    "keepalive_time": "keepalive_time",
    "keepalive_timeout": "keepalive_timeout",
    "keepalive_min_time": "keepalive_min_time",
    "idle_timeout": "idle_timeout",
    "client_header_timeout": "header_timeout",
    "max_connection_age": "max_age",
    "max_connection_age_grace": "max_age_grace",
}

# Which directives each context accepts. "include" never gets here: the
# parser has already replaced it with the included directives.
_SPECS: dict[str, dict[str, _Spec]] = {
    "main": {
        "worker_processes": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "shutdown_timeout": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "upstream": _Spec(block=True, min_args=1, max_args=1, unique=False),
        "server": _Spec(block=True, min_args=0, max_args=0, unique=False),
        "admin": _Spec(block=True, min_args=0, max_args=0, unique=True),
        "access_log": _Spec(block=False, min_args=1, max_args=2, unique=True),
        "metrics_max_methods": _Spec(block=False, min_args=1, max_args=1, unique=True),
    },
    "admin": {
        "listen": _Spec(block=False, min_args=1, max_args=1, unique=True),
    },
    "upstream": {
        "server": _Spec(block=False, min_args=1, max_args=None, unique=False),
        "connect_timeout": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "keepalive_time": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "keepalive_timeout": _Spec(block=False, min_args=1, max_args=1, unique=True),
        # Balancing methods: not "unique", so any second one gets nginx's
        # "load balancing method redefined" (see _balance).
        "random": _Spec(block=False, min_args=0, max_args=2, unique=False),
        "least_conn": _Spec(block=False, min_args=0, max_args=0, unique=False),
        "ip_hash": _Spec(block=False, min_args=0, max_args=0, unique=False),
        "hash": _Spec(block=False, min_args=1, max_args=2, unique=False),
        "least_time": _Spec(block=False, min_args=0, max_args=1, unique=False),
        "subset": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "subset_fallback": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "health_check": _Spec(block=False, min_args=0, max_args=None, unique=True),
        "queue_timeout": _Spec(block=False, min_args=1, max_args=1, unique=True),
        **{name: _Spec(block=False, min_args=1, max_args=None if name == "etcd" else 1,
                       unique=True) for name in ETCD_DIRECTIVES},
    },
    "server": {
        "listen": _Spec(block=False, min_args=1, max_args=None, unique=False),
        "http2_max_concurrent_streams": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "location": _Spec(block=True, min_args=1, max_args=2, unique=False),
        **{name: _Spec(block=False, min_args=1, max_args=1, unique=True)
           for name in _CONNECTION_DIRECTIVES},
        "access_log": _Spec(block=False, min_args=1, max_args=2, unique=True),
        **{name: _Spec(block=False, min_args=lo, max_args=hi, unique=u)
           for name, (lo, hi, u) in SECURITY_SERVER.items()},
        **{name: _Spec(block=False, min_args=1, max_args=1, unique=True)
           for name in HTTP2_DIRECTIVES},
    },
    "location": {
        "grpc_pass": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "grpc_read_timeout": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "grpc_send_timeout": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "grpc_connect_timeout": _Spec(block=False, min_args=1, max_args=1, unique=True),
        "grpc_next_upstream_tries": _Spec(block=False, min_args=1, max_args=1, unique=True),
        **{name: _Spec(block=False, min_args=lo, max_args=hi, unique=u)
           for name, (lo, hi, u) in SECURITY_LOCATION.items()},
    },
}
_KNOWN = frozenset(name for specs in _SPECS.values() for name in specs)


def build(directives: Sequence[Directive], file: str) -> Config:
    """Check ``directives`` (the main file, includes expanded) and build."""
    return _Builder(file).build(directives)


def _error(d: Directive, message: str) -> ConfigError:
    return ConfigError(d.file, d.line, message)


def _checked(context: str, directives: Sequence[Directive]) -> Iterator[Directive]:
    """Yield ``directives`` after the generic checks nginx also does, in
    nginx's order: name, context, block-ness, argument count, uniqueness."""
    seen: set[str] = set()
    for d in directives:
        spec = _SPECS[context].get(d.name)
        if spec is None:
            if d.name in _KNOWN:
                raise _error(d, f"{quote(d.name)} directive is not allowed here")
            raise _error(d, f"unknown directive {quote(d.name)}")
        if spec.block and d.block is None:
            raise _error(d, f'directive {quote(d.name)} has no opening "{{"')
        if not spec.block and d.block is not None:
            raise _error(d, f'directive {quote(d.name)} is not terminated by ";"')
        too_many = spec.max_args is not None and len(d.args) > spec.max_args
        if len(d.args) < spec.min_args or too_many:
            raise _error(d, f"invalid number of arguments in {quote(d.name)} directive")
        if spec.unique and d.name in seen:
            raise _error(d, f"{quote(d.name)} directive is duplicate")
        seen.add(d.name)
        yield d


def _unit(d: Directive, parse: Callable[[str], T], value: str) -> T:
    """``parse(value)`` with a UnitError turned into this directive's error."""
    try:
        return parse(value)
    except UnitError as e:
        raise _error(d, str(e)) from None


def _int(d: Directive, value: str, name: str, minimum: int, maximum: int = MAX_INT) -> int:
    """An integer in [minimum, maximum]; ``name`` is a directive or a parameter."""
    if re.fullmatch(r"[0-9]{1,10}", value) and minimum <= int(value) <= maximum:
        return int(value)
    rule = f"at least {minimum}" if maximum == MAX_INT else f"from {minimum} to {maximum}"
    raise _error(d, f"invalid value {quote(value)} in {_what(d, name)}, it must be {rule}")


def _positive_duration(d: Directive, value: str, name: str) -> float:
    seconds = _unit(d, parse_duration, value)
    if seconds <= 0:
        raise _error(d, f"invalid value {quote(value)} in {_what(d, name)}, it must be more than 0")
    return seconds


def _what(d: Directive, name: str) -> str:
    """How a message names the value: nginx says '"x" directive' for a
    directive, and plain '"x"' fits a parameter such as weight=."""
    return f"{quote(name)} directive" if name == d.name else quote(name)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.upstreams: dict[str, Upstream] = {}
        self.implicit: dict[str, Upstream] = {}
        self.listens: set[Address] = set()
        # grpc_pass NAME references, checked once every upstream is known.
        self.references: list[tuple[str, Directive]] = []
        # id(Location) -> its own access directives, merged with its server's.
        self.own_access: dict[int, AccessDirectives] = {}

    def build(self, directives: Sequence[Directive]) -> Config:
        worker_processes = 1  # nginx's default
        shutdown_timeout = DEFAULT_SHUTDOWN_TIMEOUT
        servers: list[Server] = []
        admin: Admin | None = None
        access_log: AccessLog | None = None
        max_methods = DEFAULT_METRICS_MAX_METHODS
        for d in _checked("main", directives):
            if d.name == "worker_processes":
                worker_processes = self._worker_processes(d)
            elif d.name == "shutdown_timeout":
                shutdown_timeout = _unit(d, parse_timeout, d.args[0]) or 0.0
            elif d.name == "upstream":
                self._upstream(d)
            elif d.name == "admin":
                admin = _admin(d)
            elif d.name == "access_log":
                access_log = _access_log(d)
            elif d.name == "metrics_max_methods":
                max_methods = _int(d, d.args[0], d.name, 1)
            else:
                servers.append(self._server(d))
        for name, d in self.references:
            if name not in self.upstreams:
                raise _error(d, f"no upstream {quote(name)} for grpc_pass")
        if admin is not None:
            _check_admin_port(admin, servers)
        return Config(
            file=self.file,
            worker_processes=worker_processes,
            upstreams={**self.upstreams, **self.implicit},
            servers=tuple(servers),
            shutdown_timeout=shutdown_timeout,
            admin=admin,
            access_log=access_log,
            metrics_max_methods=max_methods,
        )

    # main context

    def _worker_processes(self, d: Directive) -> int:
        if d.args[0] == "auto":
            return os.cpu_count() or 1
        if re.fullmatch(r"[0-9]{1,10}", d.args[0]) and 1 <= int(d.args[0]) <= MAX_WORKER_PROCESSES:
            return int(d.args[0])
        rule = f'"auto" or a number from 1 to {MAX_WORKER_PROCESSES}'
        raise _error(d, f'invalid value {quote(d.args[0])} in "worker_processes" directive, '
                        f"it must be {rule}")

    def _upstream(self, d: Directive) -> None:
        name = d.args[0]
        if not _UPSTREAM_NAME.fullmatch(name):
            raise _error(d, f"invalid upstream name {quote(name)}, "
                            "use letters, digits, \".\", \"-\" and \"_\"")
        if name in self.upstreams:
            raise _error(d, f"duplicate upstream {quote(name)}")
        servers: list[UpstreamServer] = []
        connect_timeout = DEFAULT_CONNECT_TIMEOUT
        keepalive_time: float | None = DEFAULT_UPSTREAM_KEEPALIVE_TIME
        keepalive_timeout = DEFAULT_UPSTREAM_KEEPALIVE_TIMEOUT
        policy: dict[str, object] = {}  # balance, subset, health_check, ...: see _policy
        etcd_directives: list[Directive] = []
        for sub in _checked("upstream", d.block or ()):
            if sub.name == "connect_timeout":
                connect_timeout = _positive_duration(sub, sub.args[0], sub.name)
            elif sub.name == "keepalive_time":
                keepalive_time = _unit(sub, parse_timeout, sub.args[0])
            elif sub.name == "keepalive_timeout":
                keepalive_timeout = _positive_duration(sub, sub.args[0], sub.name)
            elif sub.name in ETCD_DIRECTIVES:
                etcd_directives.append(sub)
            elif sub.name != "server":
                _policy(sub, policy)
            else:
                server = _upstream_server(sub)
                if any(s.address == server.address for s in servers):
                    msg = f"duplicate server {server.address} in upstream {quote(name)}"
                    raise _error(sub, msg)
                servers.append(server)
        etcd = build_etcd(d, etcd_directives)
        if not servers and etcd is None:
            raise _error(d, f"upstream {quote(name)} has no servers")
        self.upstreams[name] = Upstream(name, tuple(servers), connect_timeout, source=d.source,
                                        keepalive_time=keepalive_time,
                                        keepalive_timeout=keepalive_timeout, etcd=etcd,
                                        **policy)  # type: ignore[arg-type]

    def _server(self, d: Directive) -> Server:
        listens: list[Listen] = []
        locations: list[Location] = []
        max_streams = DEFAULT_MAX_CONCURRENT_STREAMS
        timers: dict[str, float | None] = {}
        access_log: AccessLog | None = None
        security: list[Directive] = []
        limits: list[Directive] = []
        for sub in _checked("server", d.block or ()):
            if sub.name in SECURITY_SERVER:
                security.append(sub)
            elif sub.name in HTTP2_DIRECTIVES:
                limits.append(sub)
            elif sub.name in _CONNECTION_DIRECTIVES:
                timers[_CONNECTION_DIRECTIVES[sub.name]] = _connection_timer(sub)
            elif sub.name == "listen":
                listens.append(self._listen(sub))
            elif sub.name == "access_log":
                access_log = _access_log(sub)
            elif sub.name == "location":
                location = self._location(sub)
                if any((x.path, x.exact) == (location.path, location.exact) for x in locations):
                    shown = _shown(location.path, location.exact)
                    raise _error(sub, f"duplicate location {quote(shown)}")
                locations.append(location)
            else:
                max_streams = _int(sub, sub.args[0], sub.name, 1)
        if not listens:
            raise _error(d, "server has no listen")
        tls = server_tls(d, security, listens)
        server_access = access_directives(security)
        locations = [replace(loc, access=effective_access(server_access,
                                                          self.own_access.pop(id(loc))))
                     for loc in locations]
        return Server(tuple(listens), tuple(locations), max_streams, source=d.source,
                      connection=ClientConnection(**timers),  # type: ignore[arg-type]
                      access_log=access_log, tls=tls, http2=build_limits(limits))

    # server context

    def _listen(self, d: Directive) -> Listen:
        address = _unit(d, lambda v: parse_address(v, listen=True), d.args[0])
        if address in self.listens:
            raise _error(d, f"duplicate listen {address}")
        self.listens.add(address)
        reuseport = ssl = False
        for param in d.args[1:]:
            if param == "ssl":
                ssl = True
            elif param == "reuseport":
                reuseport = True
            elif param != "http2":  # gRPC is HTTP/2 only: "http2" is implied
                raise _error(d, f"invalid parameter {quote(param)}")
        return Listen(address, http2=True, ssl=ssl, reuseport=reuseport, source=d.source)

    def _location(self, d: Directive) -> Location:
        path, exact = _location_path(d)
        upstream: str | None = None
        read_timeout: float | None = DEFAULT_READ_TIMEOUT
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT
        connect_timeout: float | None = None
        tries = DEFAULT_NEXT_UPSTREAM_TRIES
        security: list[Directive] = []
        grpc_pass: Directive | None = None
        for sub in _checked("location", d.block or ()):
            value = sub.args[0]
            if sub.name in SECURITY_LOCATION:
                security.append(sub)
            elif sub.name == "grpc_pass":
                grpc_pass = sub
                upstream = self._grpc_pass(sub)
            elif sub.name == "grpc_read_timeout":
                read_timeout = _unit(sub, parse_timeout, value)
            elif sub.name == "grpc_send_timeout":
                send_timeout = _unit(sub, parse_timeout, value)
            elif sub.name == "grpc_connect_timeout":
                connect_timeout = _positive_duration(sub, value, sub.name)
            else:
                tries = _int(sub, value, sub.name, 0)
        if upstream is None:
            raise _error(d, f"location {quote(_shown(path, exact))} has no grpc_pass")
        host = upstream.rsplit(":", 1)[0].strip("[]") if ":" in upstream else upstream
        tls = upstream_tls(grpc_pass, host, [s for s in security if s.name.startswith("grpc_")])
        location = Location(path, exact, upstream, read_timeout, send_timeout, connect_timeout,
                            tries, source=d.source, upstream_tls=tls)
        self.own_access[id(location)] = access_directives(security)
        return location

    # location context

    def _grpc_pass(self, d: Directive) -> str:
        """The upstream name for ``grpc_pass``; makes implicit upstreams."""
        target = d.args[0]
        scheme, sep, rest = target.partition("://")
        if not sep:
            rest = target
        elif scheme.lower() not in ("grpc", "grpcs"):  # nginx: case-insensitive
            raise _error(d, f"invalid URL prefix in {quote(target)}")
        if not rest:
            raise _error(d, f"invalid grpc_pass {quote(target)}, an upstream or address is needed")
        if "/" in rest:
            raise _error(d, f"invalid grpc_pass {quote(target)}, a URI path is not allowed")
        if ":" not in rest:  # a name: resolved once the whole file is read
            self.references.append((rest, d))
            return rest
        address = _unit(d, parse_address, rest)
        name = str(address)
        if name not in self.implicit:
            server = UpstreamServer(address, source=d.source)
            self.implicit[name] = Upstream(name, (server,), implicit=True, source=d.source)
        return name


def _connection_timer(d: Directive) -> float | None:
    """A server-context connection timer: a duration or ``off``, except
    keepalive_timeout, which only makes sense as a positive duration."""
    if d.name == "keepalive_timeout":
        return _positive_duration(d, d.args[0], d.name)
    return _unit(d, parse_timeout, d.args[0])


def _admin(d: Directive) -> Admin:
    """``admin { listen [HOST:]PORT; }``; a bare port binds loopback only."""
    subs = list(_checked("admin", d.block or ()))
    if not subs:
        raise _error(d, "admin has no listen")
    listen = subs[0]
    value = listen.args[0]
    if re.fullmatch(r"[0-9]+", value):
        value = f"{DEFAULT_ADMIN_HOST}:{value}"
    address = _unit(listen, lambda v: parse_address(v, listen=True), value)
    return Admin(address, source=listen.source)


def _check_admin_port(admin: Admin, servers: Sequence[Server]) -> None:
    """The admin port must not be a gRPC port too: one of the two binds
    would fail, or worse, serve the wrong protocol."""
    for server in servers:
        for lst in server.listens:
            if lst.address.port == admin.listen.port:
                where = f" at {lst.source}" if lst.source is not None else ""
                src = admin.source
                raise ConfigError(src.file if src else "?", src.line if src else 0,
                                  f"admin listen {admin.listen} shares port "
                                  f"{admin.listen.port} with the server listen{where}")


def _access_log(d: Directive) -> AccessLog:
    """``access_log PATH|stderr|off [json|combined];``; a relative path is
    taken beside the file that holds the directive, as ``include`` does."""
    path = d.args[0]
    fmt = d.args[1] if len(d.args) == 2 else "combined"
    if path == "off":
        if len(d.args) == 2:
            raise _error(d, f"invalid parameter {quote(fmt)}")
        return AccessLog("off", source=d.source)
    if path.startswith("syslog:"):
        raise _error(d, "syslog access logs are not supported")
    if fmt not in ("json", "combined"):
        raise _error(d, f"invalid parameter {quote(fmt)}, it must be \"json\" or \"combined\"")
    if path != "stderr" and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(d.file)), path)
    return AccessLog(path, json=fmt == "json", source=d.source)


def _upstream_server(d: Directive) -> UpstreamServer:
    """``server ADDRESS [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down]
    [meta=k:v,...];`` inside ``upstream``."""
    address = _unit(d, parse_address, d.args[0])
    fields: dict[str, object] = {}
    for param in d.args[1:]:
        key, eq, value = param.partition("=")
        field = key if eq else param
        if field in fields:
            raise _error(d, f"duplicate parameter {quote(field)}")
        fields[field] = _server_param(d, param, key, eq, value)
    return UpstreamServer(address, source=d.source, **fields)  # type: ignore[arg-type]


def _server_param(d: Directive, param: str, key: str, eq: str, value: str) -> object:
    if not eq and param in ("backup", "down"):
        return True
    if eq and key == "weight":
        return _int(d, value, key, 1)
    if eq and key == "max_fails":
        return _int(d, value, key, 0)
    if eq and key == "fail_timeout":
        return _positive_duration(d, value, key)
    if eq and key == "meta":
        return _meta(d, value)
    if eq and key == "max_conns":
        return _int(d, value, key, 0)
    raise _error(d, f"invalid parameter {quote(param)}")


def _meta(d: Directive, value: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        k, colon, v = item.partition(":")
        if not k or not colon or not v:
            raise _error(d, f'invalid value {quote(value)} in "meta", '
                            "it must be key:value[,key:value...]")
        if any(k == seen for seen, _ in pairs):
            raise _error(d, f'duplicate key {quote(k)} in "meta"')
        pairs.append((k, v))
    return tuple(pairs)


def _location_path(d: Directive) -> tuple[str, bool]:
    """``location [=|^~] PATH``: (path, exact). ``^~`` only stops nginx's
    regex search; without regex locations it is a plain prefix."""
    if len(d.args) == 2:
        modifier, path = d.args
    else:  # nginx also accepts the modifier glued on: "=/x"
        arg = d.args[0]
        modifier = next((m for m in ("=", "^~", "~*", "~", "@") if arg.startswith(m)), "")
        path = arg[len(modifier):]
    if modifier in ("~", "~*"):
        raise _error(d, "regular expression locations are not supported")
    if modifier == "@":
        raise _error(d, "named locations are not supported")
    if len(d.args) == 2 and modifier not in ("=", "^~"):
        raise _error(d, f"invalid location modifier {quote(modifier)}")
    if not path.startswith("/"):
        raise _error(d, f"invalid location path {quote(path)}, it must start with \"/\"")
    return path, modifier == "="


def _shown(path: str, exact: bool) -> str:
    return "= " + path if exact else path


# upstream policies: balancing method, subset routing, health checks, queueing

_BALANCING = frozenset(("random", "least_conn", "ip_hash", "hash", "least_time"))
# hash keys: one variable, as a gRPC call has them
_HASH_KEY = re.compile(r"\$(remote_addr|grpc_method|grpc_service|http_[a-z0-9_]+)")
_METADATA_KEY = re.compile(r"[a-z0-9_.-]+")


def _policy(d: Directive, out: dict[str, object]) -> None:
    """One upstream policy directive into ``out`` (Upstream's field names)."""
    if d.name in _BALANCING:
        if "balance" in out:
            raise _error(d, "load balancing method redefined")
        out["balance"] = _balance(d)
    elif d.name == "subset":
        key = d.args[0].lower()
        if not _METADATA_KEY.fullmatch(key) or key.startswith(":"):
            raise _error(d, f"invalid metadata key {quote(d.args[0])} in \"subset\" directive")
        out["subset"] = key
    elif d.name == "subset_fallback":
        if d.args[0] not in ("any", "off"):
            raise _error(d, f'invalid value {quote(d.args[0])} in "subset_fallback" directive, '
                            'it must be "any" or "off"')
        out["subset_fallback"] = d.args[0] == "any"
    elif d.name == "health_check":
        out["health_check"] = _health_check(d)
    else:  # queue_timeout
        out["queue_timeout"] = _unit(d, parse_duration, d.args[0])


def _balance(d: Directive) -> Balance:
    args = d.args
    if d.name == "random":
        if tuple(args) in (("two",), ("two", "least_conn")):
            return Balance("random_two")
        if args:
            raise _error(d, f"invalid parameter {quote(' '.join(args))}, "
                            'only "random [two [least_conn]]" is supported')
        return Balance("random")
    if d.name == "least_time":
        if args and args[0] != "header":  # nginx Plus: least_time header|last_byte
            raise _error(d, f"invalid parameter {quote(args[0])}, only \"header\" is supported")
        return Balance("least_time")
    if d.name == "hash":
        if len(args) == 2 and args[1] != "consistent":
            raise _error(d, f"invalid parameter {quote(args[1])}")
        if not _HASH_KEY.fullmatch(args[0]):
            raise _error(d, f"invalid hash key {quote(args[0])}, it must be one of "
                            "$remote_addr, $http_NAME, $grpc_method, $grpc_service")
        return Balance("hash", args[0], consistent=len(args) == 2)
    return Balance(d.name)  # least_conn, ip_hash


def _health_check(d: Directive) -> HealthCheck:
    """``health_check [interval=T] [timeout=T] [fails=N] [passes=N] [service=NAME];``"""
    fields: dict[str, object] = {}
    for param in d.args:
        key, eq, value = param.partition("=")
        if not eq or key not in ("interval", "timeout", "fails", "passes", "service"):
            raise _error(d, f"invalid parameter {quote(param)}")
        if key in fields:
            raise _error(d, f"duplicate parameter {quote(key)}")
        if key in ("interval", "timeout"):
            fields[key] = _positive_duration(d, value, key)
        elif key == "service":
            fields[key] = value
        else:
            fields[key] = _int(d, value, key, 1)
    return HealthCheck(**fields)  # type: ignore[arg-type]
