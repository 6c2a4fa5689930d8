"""Parsers of the core directives (main, upstream, server and location
contexts): a directive -> the value of its model field, errors at its
FILE:LINE. The table in builder.py says which directive each one parses;
the parsers that need the block they stand in (``upstream``, ``server``,
``location``, ``listen``, ``grpc_pass``, ...) are there too.

Messages reuse nginx's wording where nginx has one, so search engines and
nginx habits still help.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from proxy.config.commands import error
from proxy.config.errors import quote
from proxy.config.model import (
    DEFAULT_ADMIN_HOST,
    AccessLog,
    Address,
    Balance,
    HealthCheck,
    Listen,
    UpstreamServer,
)
from proxy.config.parser import Directive
from proxy.config.units import UnitError, parse_address, parse_duration, parse_timeout

T = TypeVar("T")

MAX_WORKER_PROCESSES = 1024  # nginx's NGX_MAX_PROCESSES
MAX_INT = 2**31 - 1
# hash keys: one variable, as a gRPC call has them
_HASH_KEY = re.compile(r"\$(remote_addr|grpc_method|grpc_service|http_[a-z0-9_]+)")
_METADATA_KEY = re.compile(r"[a-z0-9_.-]+")


def unit(d: Directive, parse: Callable[[str], T], value: str) -> T:
    """``parse(value)`` with a UnitError turned into this directive's error."""
    try:
        return parse(value)
    except UnitError as e:
        raise error(d, str(e)) from None


def integer(d: Directive, value: str, name: str, minimum: int, maximum: int = MAX_INT) -> int:
    """An integer in [minimum, maximum]; ``name`` is a directive or a parameter."""
    if re.fullmatch(r"[0-9]{1,10}", value) and minimum <= int(value) <= maximum:
        return int(value)
    rule = f"at least {minimum}" if maximum == MAX_INT else f"from {minimum} to {maximum}"
    raise error(d, f"invalid value {quote(value)} in {_what(d, name)}, it must be {rule}")


def positive(d: Directive, value: str, name: str) -> float:
    """A duration more than 0; ``name`` is a directive or a parameter."""
    seconds = unit(d, parse_duration, value)
    if seconds <= 0:
        raise error(d, f"invalid value {quote(value)} in {_what(d, name)}, it must be more than 0")
    return seconds


def _what(d: Directive, name: str) -> str:
    """How a message names the value: nginx says '"x" directive' for a
    directive, and plain '"x"' fits a parameter such as weight=."""
    return f"{quote(name)} directive" if name == d.name else quote(name)


# One-argument values, for any directive that takes one.


def timeout(d: Directive, _: object) -> float | None:
    """A duration, or ``off`` (and 0): None, no timeout."""
    return unit(d, parse_timeout, d.args[0])


def positive_duration(d: Directive, _: object) -> float:
    return positive(d, d.args[0], d.name)


def duration(d: Directive, _: object) -> float:
    return unit(d, parse_duration, d.args[0])


def flag(d: Directive, _: object) -> bool:
    """``on`` or ``off`` (nginx's NGX_CONF_FLAG)."""
    value = d.args[0]
    if value not in ("on", "off"):
        raise error(
            d,
            f'invalid value {quote(value)} in {quote(d.name)} directive, it must be "on" or "off"',
        )
    return value == "on"


def at_least(minimum: int) -> Callable[[Directive, object], int]:
    """The parser of a count of at least ``minimum``."""

    def count(d: Directive, _: object) -> int:
        return integer(d, d.args[0], d.name, minimum)

    return count


# main context


def worker_processes(d: Directive, _: object) -> int:
    if d.args[0] == "auto":
        return os.cpu_count() or 1
    if re.fullmatch(r"[0-9]{1,10}", d.args[0]) and 1 <= int(d.args[0]) <= MAX_WORKER_PROCESSES:
        return int(d.args[0])
    rule = f'"auto" or a number from 1 to {MAX_WORKER_PROCESSES}'
    raise error(
        d, f'invalid value {quote(d.args[0])} in "worker_processes" directive, it must be {rule}'
    )


def shutdown_timeout(d: Directive, _: object) -> float:
    """A duration; ``off`` is 0: no waiting."""
    return unit(d, parse_timeout, d.args[0]) or 0.0


def access_log(d: Directive, _: object) -> AccessLog:
    """``access_log PATH|stderr|off [json|combined];``; a relative path is
    taken beside the file that holds the directive, as ``include`` does."""
    path = d.args[0]
    fmt = d.args[1] if len(d.args) == 2 else "combined"
    if path == "off":
        if len(d.args) == 2:
            raise error(d, f"invalid parameter {quote(fmt)}")
        return AccessLog("off", source=d.source)
    if path.startswith("syslog:"):
        raise error(d, "syslog access logs are not supported")
    if fmt not in ("json", "combined"):
        raise error(d, f'invalid parameter {quote(fmt)}, it must be "json" or "combined"')
    if path != "stderr" and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(d.file)), path)
    return AccessLog(path, json=fmt == "json", source=d.source)


def admin_listen(d: Directive, _: object) -> Listen:
    """``listen [HOST:]PORT;`` in ``admin``; a bare port binds loopback only."""
    value = d.args[0]
    if re.fullmatch(r"[0-9]+", value):
        value = f"{DEFAULT_ADMIN_HOST}:{value}"
    return Listen(unit(d, listen_address, value), source=d.source)


# server context


def listen_address(text: str) -> Address:
    return parse_address(text, listen=True)


def listen_parameters(d: Directive, address: Address) -> Listen:
    """``listen ADDRESS [http2] [ssl] [reuseport];``'s parameters."""
    reuseport = ssl = False
    for param in d.args[1:]:
        if param == "ssl":
            ssl = True
        elif param == "reuseport":
            reuseport = True
        elif param != "http2":  # gRPC is HTTP/2 only: "http2" is implied
            raise error(d, f"invalid parameter {quote(param)}")
    return Listen(address, http2=True, ssl=ssl, reuseport=reuseport, source=d.source)


def location_path(d: Directive) -> tuple[str, bool]:
    """``location [=|^~] PATH``: (path, exact). ``^~`` only stops nginx's
    regex search; without regex locations it is a plain prefix."""
    if len(d.args) == 2:
        modifier, path = d.args
    else:  # nginx also accepts the modifier glued on: "=/x"
        arg = d.args[0]
        modifier = next((m for m in ("=", "^~", "~*", "~", "@") if arg.startswith(m)), "")
        path = arg[len(modifier) :]
    if modifier in ("~", "~*"):
        raise error(d, "regular expression locations are not supported")
    if modifier == "@":
        raise error(d, "named locations are not supported")
    if len(d.args) == 2 and modifier not in ("=", "^~"):
        raise error(d, f"invalid location modifier {quote(modifier)}")
    if not path.startswith("/"):
        raise error(d, f'invalid location path {quote(path)}, it must start with "/"')
    return path, modifier == "="


def shown(path: str, exact: bool) -> str:
    """A location as written, for messages."""
    return "= " + path if exact else path


# upstream context: servers


_ServerParam = Callable[[UpstreamServer, Directive, str], UpstreamServer]
# NAME=VALUE parameters of an upstream's server line, and the bare ones.
_SERVER_PARAMS: dict[str, _ServerParam] = {
    "weight": lambda s, d, v: replace(s, weight=integer(d, v, "weight", 1)),
    "max_fails": lambda s, d, v: replace(s, max_fails=integer(d, v, "max_fails", 0)),
    "fail_timeout": lambda s, d, v: replace(s, fail_timeout=positive(d, v, "fail_timeout")),
    "meta": lambda s, d, v: replace(s, meta=_meta(d, v)),
    "max_conns": lambda s, d, v: replace(s, max_conns=integer(d, v, "max_conns", 0)),
}
_SERVER_FLAGS: dict[str, Callable[[UpstreamServer], UpstreamServer]] = {
    "backup": lambda s: replace(s, backup=True),
    "down": lambda s: replace(s, down=True),
}


def upstream_server(d: Directive) -> UpstreamServer:
    """``server ADDRESS [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down]
    [meta=k:v,...] [max_conns=N];`` inside ``upstream``."""
    server = UpstreamServer(unit(d, parse_address, d.args[0]), source=d.source)
    seen: set[str] = set()
    for param in d.args[1:]:
        key, eq, value = param.partition("=")
        name = key if eq else param
        if name in seen:
            raise error(d, f"duplicate parameter {quote(name)}")
        seen.add(name)
        if eq and key in _SERVER_PARAMS:
            server = _SERVER_PARAMS[key](server, d, value)
        elif not eq and param in _SERVER_FLAGS:
            server = _SERVER_FLAGS[param](server)
        else:
            raise error(d, f"invalid parameter {quote(param)}")
    return server


def _meta(d: Directive, value: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        k, colon, v = item.partition(":")
        if not k or not colon or not v:
            raise error(
                d, f'invalid value {quote(value)} in "meta", it must be key:value[,key:value...]'
            )
        if any(k == seen for seen, _ in pairs):
            raise error(d, f'duplicate key {quote(k)} in "meta"')
        pairs.append((k, v))
    return tuple(pairs)


# upstream context: balancing methods (builder.py refuses a second one)


def random_method(d: Directive, _: object) -> Balance:
    """``random [two [least_conn]];``: two is P2C on active streams."""
    if tuple(d.args) in (("two",), ("two", "least_conn")):
        return Balance("random_two")
    if d.args:
        raise error(
            d,
            f"invalid parameter {quote(' '.join(d.args))}, "
            'only "random [two [least_conn]]" is supported',
        )
    return Balance("random")


def least_conn(d: Directive, _: object) -> Balance:
    return Balance("least_conn")


def ip_hash(d: Directive, _: object) -> Balance:
    return Balance("ip_hash")


def hash_method(d: Directive, _: object) -> Balance:
    """``hash KEY [consistent];``"""
    args = d.args
    if len(args) == 2 and args[1] != "consistent":
        raise error(d, f"invalid parameter {quote(args[1])}")
    if not _HASH_KEY.fullmatch(args[0]):
        raise error(
            d,
            f"invalid hash key {quote(args[0])}, it must be one of "
            "$remote_addr, $http_NAME, $grpc_method, $grpc_service",
        )
    return Balance("hash", args[0], consistent=len(args) == 2)


def least_time(d: Directive, _: object) -> Balance:
    if d.args and d.args[0] != "header":  # nginx Plus: least_time header|last_byte
        raise error(d, f'invalid parameter {quote(d.args[0])}, only "header" is supported')
    return Balance("least_time")


# upstream context: subsets, health checks


def subset(d: Directive, _: object) -> str:
    key = d.args[0].lower()
    if not _METADATA_KEY.fullmatch(key) or key.startswith(":"):
        raise error(d, f'invalid metadata key {quote(d.args[0])} in "subset" directive')
    return key


def subset_fallback(d: Directive, _: object) -> bool:
    if d.args[0] not in ("any", "off"):
        raise error(
            d,
            f'invalid value {quote(d.args[0])} in "subset_fallback" directive, '
            'it must be "any" or "off"',
        )
    return d.args[0] == "any"


_HealthParam = Callable[[HealthCheck, Directive, str], HealthCheck]
_HEALTH_PARAMS: dict[str, _HealthParam] = {
    "interval": lambda h, d, v: replace(h, interval=positive(d, v, "interval")),
    "timeout": lambda h, d, v: replace(h, timeout=positive(d, v, "timeout")),
    "fails": lambda h, d, v: replace(h, fails=integer(d, v, "fails", 1)),
    "passes": lambda h, d, v: replace(h, passes=integer(d, v, "passes", 1)),
    "service": lambda h, d, v: replace(h, service=v),
}


def health_check(d: Directive, _: object) -> HealthCheck:
    """``health_check [interval=T] [timeout=T] [fails=N] [passes=N] [service=NAME];``"""
    check = HealthCheck()
    seen: set[str] = set()
    for param in d.args:
        key, eq, value = param.partition("=")
        if not eq or key not in _HEALTH_PARAMS:
            raise error(d, f"invalid parameter {quote(param)}")
        if key in seen:
            raise error(d, f"duplicate parameter {quote(key)}")
        seen.add(key)
        check = _HEALTH_PARAMS[key](check, d, value)
    return check
