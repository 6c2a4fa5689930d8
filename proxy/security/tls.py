"""What a TLS handshake tells about the peer. The contexts themselves are
built with the configuration (proxy/config/tls.py); the handshakes run in
proxy/runtime/tls.py.
"""

from __future__ import annotations

from typing import Any

# RFC 4514 short names, as nginx's $ssl_client_s_dn prints them.
_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "domainComponent": "DC",
    "userId": "UID",
    "emailAddress": "emailAddress",
}


def subject_of(cert: dict[str, Any] | None) -> str | None:
    """``getpeercert()``'s subject as an RFC 4514 string (``CN=x,O=y``), most
    specific first; None without a (verified) certificate."""
    if not cert or "subject" not in cert:
        return None
    parts = []
    for rdn in reversed(cert["subject"]):
        parts.append("+".join(f"{_SHORT.get(k, k)}={_escape_dn(v)}" for k, v in rdn))
    return ",".join(parts) or None


def _escape_dn(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out
