"""Parsers of the TLS and access-control directives of ``server`` and
``location`` (the rows are in builder.py's table), and the checks of each
group as a whole when its block is built: certificates and token files are
read here.

server:   ssl_certificate F; ssl_certificate_key F; ssl_protocols P...;
          ssl_client_certificate F; ssl_verify_client on|optional|off;
both:     allow CIDR|ADDR|all; deny ...; auth_bearer_tokens F|off; auth_strip on|off;
location: grpc_ssl_verify on|off; grpc_ssl_trusted_certificate F; grpc_ssl_name N;
          grpc_ssl_certificate F; grpc_ssl_certificate_key F;
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from proxy.config.acl import Network, Rule, parse_network
from proxy.config.commands import error
from proxy.config.core_directives import flag
from proxy.config.errors import ConfigError, quote
from proxy.config.model import (
    DEFAULT_GRPC_SSL_VERIFY,
    DEFAULT_SSL_PROTOCOLS,
    Access,
    Listen,
    ServerTls,
    UpstreamTls,
)
from proxy.config.parser import Directive
from proxy.config.tls import (
    OLD_PROTOCOLS,
    PROTOCOLS,
    VERIFY_CLIENT,
    TlsError,
    client_context,
    server_context,
)
from proxy.config.tokens import BearerTokens, TokenFileError, parse_tokens

_OFF = BearerTokens("off", ())  # "auth_bearer_tokens off": do not inherit


def _path(d: Directive) -> str:
    """A file argument; relative paths are taken beside the file that holds
    the directive (as ``include``)."""
    path = d.args[0]
    return (
        path
        if os.path.isabs(path)
        else os.path.join(os.path.dirname(os.path.abspath(d.file)), path)
    )


def _path_of(d: Directive | None) -> str | None:
    return _path(d) if d is not None else None


# access control: allow, deny, auth_bearer_tokens, auth_strip


@dataclass(slots=True)
class AccessDirectives:
    """One context's own access directives; empty or None: not set here
    (inherited)."""

    rules: list[Rule] = field(default_factory=list)
    tokens: BearerTokens | None = None
    strip: bool | None = None


def allow(d: Directive, _: object) -> Rule:
    return Rule(True, _network(d))


def deny(d: Directive, _: object) -> Rule:
    return Rule(False, _network(d))


def _network(d: Directive) -> Network | None:
    try:
        return parse_network(d.args[0])
    except ValueError as e:
        raise error(d, str(e)) from None


def bearer_tokens(d: Directive, _: object) -> BearerTokens:
    """``auth_bearer_tokens FILE|off``: the file read, or "off" (which a
    location uses not to inherit its server's)."""
    return _OFF if d.args[0] == "off" else _tokens(d)


def effective_access(server: AccessDirectives, location: AccessDirectives) -> Access | None:
    """nginx's inheritance: a location's rules (or token file, or auth_strip)
    replace the server's when it has any. None when nothing is checked."""
    rules = tuple(location.rules or server.rules)
    tokens = location.tokens if location.tokens is not None else server.tokens
    if tokens is _OFF:
        tokens = None
    strip = location.strip if location.strip is not None else bool(server.strip)
    if not rules and tokens is None:
        return None
    return Access(rules, tokens, strip)


def _tokens(d: Directive) -> BearerTokens:
    path = _path(d)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "invalid path"
        raise error(
            d, f"cannot read bearer tokens {quote(path, shorten=False)}: {reason.lower()}"
        ) from None
    try:
        return parse_tokens(text, path)
    except TokenFileError as e:
        if e.line == 0:
            raise error(d, f"{e.message} in {quote(path, shorten=False)}") from None
        raise ConfigError(path, e.line, e.message) from None


# TLS of a server: its ssl_* directives, checked together


def server_tls(
    server: Directive, directives: Sequence[Directive], listens: Sequence[Listen]
) -> ServerTls | None:
    """The server's TLS settings and context (``directives``: its ssl_*
    ones); None when nothing asks for TLS."""
    by_name = {d.name: d for d in directives}
    cert_d = by_name.get("ssl_certificate")
    if cert_d is None:
        _check_no_tls(server, directives, listens)
        return None
    key_d = by_name.get("ssl_certificate_key")
    if key_d is None:
        raise error(
            cert_d,
            'no "ssl_certificate_key" is defined for certificate '
            f"{quote(cert_d.args[0], shorten=False)}",
        )
    protocols = _protocols(by_name.get("ssl_protocols"))
    ca_d = by_name.get("ssl_client_certificate")
    verify = _verify_client(by_name.get("ssl_verify_client"), ca_d)
    ca = _path_of(ca_d)
    cert, key = _path(cert_d), _path(key_d)
    try:
        context = server_context(cert, key, protocols, ca, verify)
    except TlsError as e:
        culprit = ca_d if ca_d is not None and "client certificate" in str(e) else cert_d
        raise error(culprit, str(e)) from None
    return ServerTls(cert, key, protocols, ca, verify, context)


def _check_no_tls(
    server: Directive, directives: Sequence[Directive], listens: Sequence[Listen]
) -> None:
    """Without ssl_certificate, neither a "listen ... ssl" nor another ssl_*."""
    ssl_listen = next((lst for lst in listens if lst.ssl), None)
    if ssl_listen is not None:
        where = f" in {ssl_listen.source}" if ssl_listen.source is not None else ""
        raise error(
            server, f'no "ssl_certificate" is defined for the "listen ... ssl" directive{where}'
        )
    if directives:
        extra = directives[0]
        raise error(extra, f'{quote(extra.name)} needs "ssl_certificate" and a "listen ... ssl"')


def _protocols(d: Directive | None) -> tuple[str, ...]:
    if d is None:
        return DEFAULT_SSL_PROTOCOLS
    for p in d.args:
        if p in OLD_PROTOCOLS:
            raise error(d, f"{quote(p)} is not supported, only TLSv1.2 and TLSv1.3")
        if p not in PROTOCOLS:
            raise error(d, f'invalid value {quote(p)} in "ssl_protocols" directive')
    return tuple(dict.fromkeys(d.args))


def _verify_client(d: Directive | None, ca_d: Directive | None) -> str:
    if d is None:
        return "off"
    verify = d.args[0]
    if verify not in VERIFY_CLIENT:
        raise error(
            d,
            f'invalid value {quote(verify)} in "ssl_verify_client" '
            'directive, it must be "on", "optional" or "off"',
        )
    if verify != "off" and ca_d is None:
        raise error(d, "no ssl_client_certificate for ssl_verify_client")
    return verify


# TLS to a location's upstream: its grpc_ssl_* directives, checked together


def upstream_tls(
    grpc_pass: Directive, host: str, directives: Sequence[Directive]
) -> UpstreamTls | None:
    """``grpc_pass grpcs://...``'s TLS settings (``host``: the grpc_pass host,
    the default grpc_ssl_name; ``directives``: the location's grpc_ssl_*
    ones); None for grpc://, where grpc_ssl_* is an error."""
    if not grpc_pass.args[0].lower().startswith("grpcs://"):
        if directives:
            d = directives[0]
            raise error(d, f'{quote(d.name)} needs "grpc_pass grpcs://..."')
        return None
    by_name = {d.name: d for d in directives}
    verify_d = by_name.get("grpc_ssl_verify")
    verify = flag(verify_d, None) if verify_d is not None else DEFAULT_GRPC_SSL_VERIFY
    name_d = by_name.get("grpc_ssl_name")
    name = name_d.args[0] if name_d is not None else host
    trusted_d = by_name.get("grpc_ssl_trusted_certificate")
    cert_d = by_name.get("grpc_ssl_certificate")
    key_d = by_name.get("grpc_ssl_certificate_key")
    _check_pair(cert_d, key_d)
    trusted, cert, key = _path_of(trusted_d), _path_of(cert_d), _path_of(key_d)
    try:
        context = client_context(verify, trusted, cert, key)
    except TlsError as e:
        culprit = trusted_d if trusted_d is not None and "trusted" in str(e) else cert_d
        raise error(culprit or grpc_pass, str(e)) from None
    return UpstreamTls(name, verify, trusted, cert, key, context)


def _check_pair(cert_d: Directive | None, key_d: Directive | None) -> None:
    """A client certificate comes with its key."""
    if cert_d is not None and key_d is None:
        raise error(cert_d, f"{quote(cert_d.name)} needs {quote('grpc_ssl_certificate_key')}")
    if key_d is not None and cert_d is None:
        raise error(key_d, f"{quote(key_d.name)} needs {quote('grpc_ssl_certificate')}")
