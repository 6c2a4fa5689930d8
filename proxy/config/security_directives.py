"""TLS and access-control directives of ``server`` and ``location``, checked
and built (certificates and token files read) here; builder.py only hands the
directives over and asks for the results.

server:   ssl_certificate F; ssl_certificate_key F; ssl_protocols P...;
          ssl_client_certificate F; ssl_verify_client on|optional|off;
both:     allow CIDR|ADDR|all; deny ...; auth_bearer_tokens F|off; auth_strip on|off;
location: grpc_ssl_verify on|off; grpc_ssl_trusted_certificate F; grpc_ssl_name N;
          grpc_ssl_certificate F; grpc_ssl_certificate_key F;
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.config.acl import Rule, parse_network
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

# name -> (min args, max args (None: any), unique)
ACCESS = {
    "allow": (1, 1, False),
    "deny": (1, 1, False),
    "auth_bearer_tokens": (1, 1, True),
    "auth_strip": (1, 1, True),
}
SERVER = {
    "ssl_certificate": (1, 1, True),
    "ssl_certificate_key": (1, 1, True),
    "ssl_protocols": (1, None, True),
    "ssl_client_certificate": (1, 1, True),
    "ssl_verify_client": (1, 1, True),
    **ACCESS,
}
LOCATION = {
    "grpc_ssl_verify": (1, 1, True),
    "grpc_ssl_trusted_certificate": (1, 1, True),
    "grpc_ssl_name": (1, 1, True),
    "grpc_ssl_certificate": (1, 1, True),
    "grpc_ssl_certificate_key": (1, 1, True),
    **ACCESS,
}
_OFF = BearerTokens("off", ())  # "auth_bearer_tokens off": do not inherit


def _error(d: Directive, message: str) -> ConfigError:
    return ConfigError(d.file, d.line, message)


def _path(d: Directive) -> str:
    """A file argument; relative paths are taken beside the file that holds
    the directive (as ``include``)."""
    path = d.args[0]
    return path if os.path.isabs(path) else os.path.join(
        os.path.dirname(os.path.abspath(d.file)), path)


def _flag(d: Directive) -> bool:
    value = d.args[0]
    if value not in ("on", "off"):
        raise _error(d, f"invalid value {quote(value)} in {quote(d.name)} directive, "
                        'it must be "on" or "off"')
    return value == "on"


@dataclass(slots=True)
class AccessDirectives:
    """One context's own access directives; None: not set here (inherited)."""

    rules: tuple[Rule, ...] | None = None
    tokens: BearerTokens | None = None
    strip: bool | None = None


def access_directives(directives: Sequence[Directive]) -> AccessDirectives:
    own = AccessDirectives()
    rules: list[Rule] = []
    for d in directives:
        if d.name in ("allow", "deny"):
            try:
                rules.append(Rule(d.name == "allow", parse_network(d.args[0])))
            except ValueError as e:
                raise _error(d, str(e)) from None
        elif d.name == "auth_bearer_tokens":
            own.tokens = _OFF if d.args[0] == "off" else _tokens(d)
        elif d.name == "auth_strip":
            own.strip = _flag(d)
    if rules:
        own.rules = tuple(rules)
    return own


def effective_access(server: AccessDirectives, location: AccessDirectives) -> Access | None:
    """nginx's inheritance: a location's rules (or token file, or auth_strip)
    replace the server's when it has any. None when nothing is checked."""
    rules = location.rules if location.rules is not None else server.rules or ()
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
        raise _error(d, f"cannot read bearer tokens {quote(path, shorten=False)}: "
                        f"{reason.lower()}") from None
    try:
        return parse_tokens(text, path)
    except TokenFileError as e:
        if e.line == 0:
            raise _error(d, f"{e.message} in {quote(path, shorten=False)}") from None
        raise ConfigError(path, e.line, e.message) from None


def server_tls(server: Directive, directives: Sequence[Directive],
               listens: Sequence[Listen]) -> ServerTls | None:
    """The server's TLS settings and context; None when nothing asks for TLS."""
    by_name = {d.name: d for d in directives}
    ssl_listen = next((lst for lst in listens if lst.ssl), None)
    cert_d = by_name.get("ssl_certificate")
    key_d = by_name.get("ssl_certificate_key")
    if cert_d is None:
        if ssl_listen is not None:
            where = f" in {ssl_listen.source}" if ssl_listen.source is not None else ""
            raise _error(server, f'no "ssl_certificate" is defined for the "listen ... ssl" '
                                 f"directive{where}")
        extra = next((d for d in directives if d.name.startswith("ssl_")), None)
        if extra is not None:
            raise _error(extra, f"{quote(extra.name)} needs \"ssl_certificate\" "
                                "and a \"listen ... ssl\"")
        return None
    if key_d is None:
        raise _error(cert_d, 'no "ssl_certificate_key" is defined for certificate '
                             f"{quote(cert_d.args[0], shorten=False)}")
    protocols = DEFAULT_SSL_PROTOCOLS
    proto_d = by_name.get("ssl_protocols")
    if proto_d is not None:
        for p in proto_d.args:
            if p in OLD_PROTOCOLS:
                raise _error(proto_d, f"{quote(p)} is not supported, only TLSv1.2 and TLSv1.3")
            if p not in PROTOCOLS:
                raise _error(proto_d, f"invalid value {quote(p)} in \"ssl_protocols\" directive")
        protocols = tuple(dict.fromkeys(proto_d.args))
    verify = "off"
    verify_d = by_name.get("ssl_verify_client")
    if verify_d is not None:
        verify = verify_d.args[0]
        if verify not in VERIFY_CLIENT:
            raise _error(verify_d, f"invalid value {quote(verify)} in \"ssl_verify_client\" "
                                   'directive, it must be "on", "optional" or "off"')
    ca_d = by_name.get("ssl_client_certificate")
    ca = _path(ca_d) if ca_d is not None else None
    if verify != "off" and ca is None:
        raise _error(verify_d, 'no ssl_client_certificate for ssl_verify_client')  # type: ignore[arg-type]
    cert, key = _path(cert_d), _path(key_d)
    try:
        context = server_context(cert, key, protocols, ca, verify)
    except TlsError as e:
        culprit = ca_d if ca_d is not None and "client certificate" in str(e) else cert_d
        raise _error(culprit, str(e)) from None
    return ServerTls(cert, key, protocols, ca, verify, context)


def upstream_tls(grpc_pass: Directive | None, host: str,
                 directives: Sequence[Directive]) -> UpstreamTls | None:
    """``grpc_pass grpcs://...``'s TLS settings (``host``: the grpc_pass host,
    the default grpc_ssl_name); None for grpc://, where grpc_ssl_* is an error."""
    tls = grpc_pass is not None and grpc_pass.args[0].lower().startswith("grpcs://")
    if not tls:
        if directives:
            d = directives[0]
            raise _error(d, f"{quote(d.name)} needs \"grpc_pass grpcs://...\"")
        return None
    by_name = {d.name: d for d in directives}
    verify = DEFAULT_GRPC_SSL_VERIFY
    if "grpc_ssl_verify" in by_name:
        verify = _flag(by_name["grpc_ssl_verify"])
    name_d = by_name.get("grpc_ssl_name")
    name = name_d.args[0] if name_d is not None else host
    trusted_d = by_name.get("grpc_ssl_trusted_certificate")
    cert_d = by_name.get("grpc_ssl_certificate")
    key_d = by_name.get("grpc_ssl_certificate_key")
    if (cert_d is None) != (key_d is None):
        d = cert_d or key_d
        missing = "grpc_ssl_certificate_key" if cert_d is not None else "grpc_ssl_certificate"
        raise _error(d, f"{quote(d.name)} needs {quote(missing)}")  # type: ignore[union-attr,arg-type]
    trusted = _path(trusted_d) if trusted_d is not None else None
    cert = _path(cert_d) if cert_d is not None else None
    key = _path(key_d) if key_d is not None else None
    try:
        context = client_context(verify, trusted, cert, key)
    except TlsError as e:
        culprit = trusted_d if trusted_d is not None and "trusted" in str(e) else cert_d
        raise _error(culprit or grpc_pass, str(e)) from None  # type: ignore[arg-type]
    return UpstreamTls(name, verify, trusted, cert, key, context)
