"""``etcd`` and ``etcd_*`` inside ``upstream``: checked together and built
into an ``EtcdSource`` when the upstream is (their rows in builder.py's table
keep the directives for ``build_etcd``).

    etcd URL[,URL...] prefix=/services/x/ [watch_timeout=60s] [watch_reopen=5m];
    etcd_username NAME;  etcd_password PASSWORD;  etcd_password_file PATH;
    etcd_tls_ca PATH;  etcd_tls_cert PATH;  etcd_tls_key PATH;  etcd_dial_timeout 5s;
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from proxy.config.commands import error
from proxy.config.errors import quote
from proxy.config.model import (
    DEFAULT_ETCD_DIAL_TIMEOUT,
    DEFAULT_ETCD_WATCH_REOPEN,
    DEFAULT_ETCD_WATCH_TIMEOUT,
    EtcdSource,
)
from proxy.config.parser import Directive
from proxy.config.units import UnitError, parse_address, parse_duration

_FILES = ("etcd_password_file", "etcd_tls_ca", "etcd_tls_cert", "etcd_tls_key")


def _duration(d: Directive, name: str, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except UnitError as e:
        raise error(d, str(e)) from None
    if seconds <= 0:
        raise error(d, f"invalid value {quote(value)} in {quote(name)}, it must be more than 0")
    return seconds


def etcd_url(url: str) -> str:
    """``http(s)://host:port`` (a path is not allowed), normalized without a
    trailing slash; ``UnitError`` (a ValueError) with the reason otherwise.
    Also what ``grpc-proxy register --etcd`` accepts."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1" and the like
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise UnitError(
            f"invalid etcd URL {quote(url)}, it must be http://host:port or https://host:port"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise UnitError(f"invalid etcd URL {quote(url)}, only scheme, host and port are allowed")
    try:
        parse_address(parts.netloc)
    except UnitError:
        raise UnitError(f"invalid etcd URL {quote(url)}, it needs a host and a port") from None
    return f"{parts.scheme}://{parts.netloc}"


def parse_url(d: Directive, url: str) -> str:
    """``etcd_url`` for a directive: errors at its FILE:LINE."""
    try:
        return etcd_url(url)
    except UnitError as e:
        raise error(d, str(e)) from None


def _readable(d: Directive, path: str) -> str:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise error(d, f"cannot read {quote(path, shorten=False)} in {quote(d.name)}")
    return path


@dataclass(frozen=True, slots=True)
class _Etcd:
    """What the ``etcd`` line itself says."""

    urls: tuple[str, ...]
    prefix: str = ""
    watch_timeout: float = DEFAULT_ETCD_WATCH_TIMEOUT
    watch_reopen: float = DEFAULT_ETCD_WATCH_REOPEN


def _prefix(etcd: _Etcd, main: Directive, value: str) -> _Etcd:
    if not value:
        raise error(main, 'empty "prefix" in "etcd" directive')
    return replace(etcd, prefix=value)


_ETCD_PARAMS: dict[str, Callable[[_Etcd, Directive, str], _Etcd]] = {
    "prefix": _prefix,
    "watch_timeout": lambda e, d, v: replace(e, watch_timeout=_duration(d, "watch_timeout", v)),
    "watch_reopen": lambda e, d, v: replace(e, watch_reopen=_duration(d, "watch_reopen", v)),
}


def build_etcd(upstream: Directive, directives: Sequence[Directive]) -> EtcdSource | None:
    """The upstream's ``EtcdSource``, or None when it has no ``etcd`` line
    (``directives``: its etcd and etcd_* ones, each once)."""
    by_name = {d.name: d for d in directives}
    main = by_name.get("etcd")
    if main is None:
        if directives:
            d = directives[0]
            raise error(d, f'{quote(d.name)} needs an "etcd" directive in this upstream')
        return None
    etcd = _etcd_line(main)
    values = {
        name: _readable(d, d.args[0]) if name in _FILES else d.args[0]
        for name, d in by_name.items()
        if name != "etcd"
    }
    username, password = _credentials(by_name, values)
    _check_tls(main, by_name, etcd.urls)
    dial = by_name.get("etcd_dial_timeout")
    return EtcdSource(
        urls=etcd.urls,
        prefix=etcd.prefix,
        username=username,
        password=password,
        tls_ca=values.get("etcd_tls_ca"),
        tls_cert=values.get("etcd_tls_cert"),
        tls_key=values.get("etcd_tls_key"),
        dial_timeout=(
            _duration(dial, dial.name, dial.args[0]) if dial else DEFAULT_ETCD_DIAL_TIMEOUT
        ),
        watch_timeout=etcd.watch_timeout,
        watch_reopen=etcd.watch_reopen,
        source=main.source,
    )


def _etcd_line(main: Directive) -> _Etcd:
    """``etcd URL[,URL...] prefix=P [watch_timeout=T] [watch_reopen=T];``"""
    etcd = _Etcd(tuple(parse_url(main, u) for u in main.args[0].split(",")))
    seen: set[str] = set()
    for param in main.args[1:]:
        key, eq, value = param.partition("=")
        if not eq or key not in _ETCD_PARAMS:
            raise error(main, f"invalid parameter {quote(param)}")
        if key in seen:
            raise error(main, f"duplicate parameter {quote(key)}")
        seen.add(key)
        etcd = _ETCD_PARAMS[key](etcd, main, value)
    if "prefix" not in seen:
        raise error(main, '"etcd" directive needs prefix=/KEY/PREFIX/')
    return etcd


def _credentials(
    by_name: dict[str, Directive], values: dict[str, str]
) -> tuple[str | None, str | None]:
    """(username, password): both or neither; the password given or read
    from its file."""
    password = values.get("etcd_password")
    if "etcd_password_file" in values:
        d = by_name["etcd_password_file"]
        if password is not None:
            raise error(d, '"etcd_password" and "etcd_password_file" are exclusive')
        try:
            with open(values["etcd_password_file"], encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise error(d, f"cannot read password file: {e}") from None
    username = values.get("etcd_username")
    if (username is None) != (password is None):
        d = (
            by_name.get("etcd_username")
            or by_name.get("etcd_password")
            or by_name["etcd_password_file"]
        )
        raise error(d, '"etcd_username" and a password go together')
    return username, password


def _check_tls(main: Directive, by_name: dict[str, Directive], urls: tuple[str, ...]) -> None:
    if ("etcd_tls_cert" in by_name) != ("etcd_tls_key" in by_name):
        d = by_name.get("etcd_tls_cert") or by_name["etcd_tls_key"]
        raise error(d, '"etcd_tls_cert" and "etcd_tls_key" go together')
    if any(n.startswith("etcd_tls_") for n in by_name) and not all(
        u.startswith("https://") for u in urls
    ):
        raise error(main, '"etcd_tls_*" directives need https:// etcd URLs')
