"""TLS contexts, built when the configuration is loaded (a reload builds new
ones, which is how SIGHUP reloads certificates; ``-t`` finds bad files).

``TlsError`` carries a message for ``FILE:LINE: message``; the builder adds
the place. Everything here is plain ``ssl``: the handshakes themselves run in
proxy/runtime/tls.py, and what a handshake tells about the peer is
proxy/security/tls.py.
"""

from __future__ import annotations

import ssl

from proxy.config.errors import quote

ALPN = ["h2"]  # gRPC is HTTP/2 only: http/1.1 is never offered nor accepted
PROTOCOLS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
OLD_PROTOCOLS = frozenset(("SSLv2", "SSLv3", "TLSv1", "TLSv1.1"))
VERIFY_CLIENT = {"off": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "on": ssl.CERT_REQUIRED}


class TlsError(Exception):
    pass


def _q(path: str) -> str:
    return quote(path, shorten=False)  # one line, whatever the path holds


def _versions(ctx: ssl.SSLContext, protocols: tuple[str, ...]) -> None:
    versions = sorted(PROTOCOLS[p] for p in protocols)
    ctx.minimum_version = versions[0]
    ctx.maximum_version = versions[-1]


def _load_chain(ctx: ssl.SSLContext, certificate: str, key: str) -> None:
    for path, what in ((certificate, "certificate"), (key, "certificate key")):
        try:
            with open(path, "rb"):
                pass
        except ValueError:  # a NUL byte in the path
            raise TlsError(f"cannot load {what} {_q(path)}: invalid path") from None
        except OSError as e:
            raise TlsError(
                f"cannot load {what} {_q(path)}: {(e.strerror or str(e)).lower()}"
            ) from None
    try:
        ctx.load_cert_chain(certificate, key)
    except ssl.SSLError as e:
        raise TlsError(
            f"cannot load certificate {_q(certificate)} with key {_q(key)}: {_reason(e)}"
        ) from None


def _load_ca(ctx: ssl.SSLContext, path: str, what: str) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise TlsError(f"cannot load {what} {_q(path)}: no such file or directory") from None
    except ValueError:  # a NUL byte in the path
        raise TlsError(f"cannot load {what} {_q(path)}: invalid path") from None
    except OSError as e:
        raise TlsError(f"cannot load {what} {_q(path)}: {_reason(e)}") from None
    if not ctx.get_ca_certs():
        raise TlsError(f"no certificates in {what} {_q(path)}")


def _reason(e: OSError) -> str:
    if isinstance(e, ssl.SSLError) and e.reason:
        return e.reason.lower().replace("_", " ")
    return (e.strerror or str(e)).lower()


def server_context(
    certificate: str,
    key: str,
    protocols: tuple[str, ...],
    client_ca: str | None,
    verify_client: str,
) -> ssl.SSLContext:
    """A server context: ALPN h2 only, TLS 1.2+, client certificates as
    ``ssl_verify_client`` says (verified against ``client_ca``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(ctx, protocols)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    _load_chain(ctx, certificate, key)
    if client_ca is not None:
        _load_ca(ctx, client_ca, "client certificate")
    ctx.verify_mode = VERIFY_CLIENT[verify_client]
    ctx.set_alpn_protocols(ALPN)
    return ctx


def client_context(
    verify: bool, trusted: str | None, certificate: str | None, key: str | None
) -> ssl.SSLContext:
    """An upstream context: ALPN h2, TLS 1.2+; verification against
    ``trusted`` (else the system's CA store) unless ``verify`` is off; a
    client certificate for mTLS to backends."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if trusted is not None:
            _load_ca(ctx, trusted, "trusted certificate")
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if certificate is not None and key is not None:
        _load_chain(ctx, certificate, key)
    ctx.set_alpn_protocols(ALPN)
    return ctx
