"""``etcd`` and ``etcd_*`` inside ``upstream``: checked and built into an
``EtcdSource``. Kept apart from builder.py, which only hands the directives over.

    etcd URL[,URL...] prefix=/services/x/ [watch_timeout=60s] [watch_reopen=5m];
    etcd_username NAME;  etcd_password PASSWORD;  etcd_password_file PATH;
    etcd_tls_ca PATH;  etcd_tls_cert PATH;  etcd_tls_key PATH;  etcd_dial_timeout 5s;
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import urlsplit

from proxy.config.errors import ConfigError, quote
from proxy.config.model import (
    DEFAULT_ETCD_DIAL_TIMEOUT,
    DEFAULT_ETCD_WATCH_REOPEN,
    DEFAULT_ETCD_WATCH_TIMEOUT,
    EtcdSource,
)
from proxy.config.parser import Directive
from proxy.config.units import UnitError, parse_address, parse_duration

DIRECTIVES = (
    "etcd",
    "etcd_username",
    "etcd_password",
    "etcd_password_file",
    "etcd_tls_ca",
    "etcd_tls_cert",
    "etcd_tls_key",
    "etcd_dial_timeout",
)
_FILES = ("etcd_password_file", "etcd_tls_ca", "etcd_tls_cert", "etcd_tls_key")


def _error(d: Directive, message: str) -> ConfigError:
    return ConfigError(d.file, d.line, message)


def _duration(d: Directive, name: str, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except UnitError as e:
        raise _error(d, str(e)) from None
    if seconds <= 0:
        raise _error(d, f"invalid value {quote(value)} in {quote(name)}, it must be more than 0")
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
        raise UnitError(f"invalid etcd URL {quote(url)}, it must be http://host:port "
                        "or https://host:port")
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
        raise _error(d, str(e)) from None


def _readable(d: Directive, path: str) -> str:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise _error(d, f"cannot read {quote(path, shorten=False)} in {quote(d.name)}")
    return path


def build_etcd(upstream: Directive, directives: Sequence[Directive]) -> EtcdSource | None:
    """The upstream's ``EtcdSource``, or None when it has no ``etcd`` line."""
    by_name = {d.name: d for d in directives}  # uniqueness is checked by the builder
    main = by_name.get("etcd")
    if main is None:
        if directives:
            d = directives[0]
            raise _error(d, f"{quote(d.name)} needs an \"etcd\" directive in this upstream")
        return None
    urls = tuple(parse_url(main, u) for u in main.args[0].split(","))
    fields: dict[str, object] = {}
    for param in main.args[1:]:
        key, eq, value = param.partition("=")
        if not eq or key not in ("prefix", "watch_timeout", "watch_reopen"):
            raise _error(main, f"invalid parameter {quote(param)}")
        if key in fields:
            raise _error(main, f"duplicate parameter {quote(key)}")
        if key == "prefix":
            if not value:
                raise _error(main, 'empty "prefix" in "etcd" directive')
            fields[key] = value
        else:
            fields[key] = _duration(main, key, value)
    if "prefix" not in fields:
        raise _error(main, '"etcd" directive needs prefix=/KEY/PREFIX/')
    values = {name: _readable(d, d.args[0]) if name in _FILES else d.args[0]
              for name, d in by_name.items() if name != "etcd"}
    password = values.get("etcd_password")
    if "etcd_password_file" in values:
        if password is not None:
            d = by_name["etcd_password_file"]
            raise _error(d, '"etcd_password" and "etcd_password_file" are exclusive')
        try:
            with open(values["etcd_password_file"], encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise _error(by_name["etcd_password_file"], f"cannot read password file: {e}") from None
    username = values.get("etcd_username")
    if (username is None) != (password is None):
        d = by_name.get("etcd_username") or by_name.get("etcd_password") or by_name[
            "etcd_password_file"]
        raise _error(d, '"etcd_username" and a password go together')
    if ("etcd_tls_cert" in values) != ("etcd_tls_key" in values):
        d = by_name.get("etcd_tls_cert") or by_name["etcd_tls_key"]
        raise _error(d, '"etcd_tls_cert" and "etcd_tls_key" go together')
    if any(n.startswith("etcd_tls_") for n in values) and not all(
            u.startswith("https://") for u in urls):
        raise _error(main, '"etcd_tls_*" directives need https:// etcd URLs')
    dial = by_name.get("etcd_dial_timeout")
    return EtcdSource(
        urls=urls,
        prefix=str(fields["prefix"]),
        username=username,
        password=password,
        tls_ca=values.get("etcd_tls_ca"),
        tls_cert=values.get("etcd_tls_cert"),
        tls_key=values.get("etcd_tls_key"),
        dial_timeout=(_duration(dial, dial.name, dial.args[0]) if dial
                      else DEFAULT_ETCD_DIAL_TIMEOUT),
        watch_timeout=float(fields.get("watch_timeout", DEFAULT_ETCD_WATCH_TIMEOUT)),  # type: ignore[arg-type]
        watch_reopen=float(fields.get("watch_reopen", DEFAULT_ETCD_WATCH_REOPEN)),  # type: ignore[arg-type]
        source=main.source,
    )
