"""A small etcd v3 client over etcd's built-in JSON gateway (``/v3/...``), on
httpx (which runs on trio through anyio).

Keys and values travel base64-encoded in JSON. Calls go to the current URL of
the list; on a transport error, a 5xx or an "unavailable" answer they fail over
to the next URL, each URL tried once per call. With credentials, a token from
``/v3/auth/authenticate`` rides in the ``Authorization`` header and is renewed
once when etcd says it is invalid (simple tokens expire when idle).
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from proxy.discovery.watch_state import b64, prefix_range_end

REQUEST_TIMEOUT = 10.0  # one unary call, once connected
# gRPC codes in the gateway's {"error", "code", "message"} answers
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16


class EtcdError(Exception):
    """etcd answered, with an error (``code`` is the gRPC status code, or 0)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No URL of the list answered."""


def tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


class Gateway:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        dial_timeout: float = 5.0,
    ) -> None:
        if not urls:
            raise ValueError("no etcd URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.index = 0  # the URL in use; moves on failure
        self.username = username
        self.password = password
        self.dial_timeout = dial_timeout
        self.token: str | None = None
        verify: ssl.SSLContext | bool = True
        if tls_ca or tls_cert:
            verify = tls_context(tls_ca, tls_cert, tls_key)
        self.client = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=dial_timeout),
            # No pooled keep-alive connection outlives a failover by much.
            limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=30.0),
            trust_env=False,  # an HTTP(S)_PROXY meant for other tools must not carry etcd traffic
        )

    @property
    def url(self) -> str:
        return self.urls[self.index]

    def fail_over(self) -> None:
        self.index = (self.index + 1) % len(self.urls)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ calls

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the current URL, failing over."""
        last = ""
        for _ in range(len(self.urls)):
            try:
                return await self._call_here(path, body)
            except (httpx.TransportError, json.JSONDecodeError) as e:
                last = f"{self.url}: {_reason(e)}"
            except EtcdError as e:
                if e.code != _UNAVAILABLE:
                    raise
                last = f"{self.url}: {e}"
            self.fail_over()
        raise EtcdUnavailable(f"no etcd endpoint answered (last: {last})", _UNAVAILABLE)

    async def _call_here(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._ensure_token()
        try:
            return await self._post(path, body)
        except EtcdError as e:
            if e.code != _UNAUTHENTICATED or self.username is None:
                raise
        self.token = None  # expired or unknown here: once more with a new one
        await self._ensure_token()
        return await self._post(path, body)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.post(self.url + path, json=body, headers=self._headers())
        doc = json.loads(r.content) if r.content else {}
        if r.status_code >= 500 and not (isinstance(doc, dict) and "code" in doc):
            raise EtcdError(f"HTTP {r.status_code}", _UNAVAILABLE)
        if not isinstance(doc, dict):
            raise EtcdError(f"unexpected answer {r.content[:80]!r}")
        if "error" in doc or r.status_code != 200:
            raise EtcdError(
                str(doc.get("message") or doc.get("error") or r.status_code),
                int(doc.get("code", 0) or 0),
            )
        return doc

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self.token} if self.token else {}

    async def _ensure_token(self) -> None:
        if self.username is None or self.token is not None:
            return
        doc = await self._post(
            "/v3/auth/authenticate", {"name": self.username, "password": self.password or ""}
        )
        self.token = str(doc.get("token", "")) or None

    # ------------------------------------------------------------------ kv

    async def range_prefix(self, prefix: bytes) -> dict[str, Any]:
        return await self.call(
            "/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_range_end(prefix))}
        )

    async def get(self, key: bytes) -> bytes | None:
        doc = await self.call("/v3/kv/range", {"key": b64(key)})
        kvs = doc.get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """The revision of the put."""
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        doc = await self.call("/v3/kv/put", body)
        return int(doc.get("header", {}).get("revision", 0))

    async def delete(self, key: bytes, prefix: bool = False) -> int:
        """How many keys were deleted."""
        body = {"key": b64(key)}
        if prefix:
            body["range_end"] = b64(prefix_range_end(key))
        doc = await self.call("/v3/kv/deleterange", body)
        return int(doc.get("deleted", 0) or 0)

    # ------------------------------------------------------------------ leases

    async def lease_grant(self, ttl: int) -> int:
        doc = await self.call("/v3/lease/grant", {"TTL": str(ttl)})
        return int(doc["ID"])

    async def lease_keepalive(self, lease: int) -> int:
        """One keepalive; the TTL left, 0 if the lease is gone (expired)."""
        doc = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        result = doc.get("result", doc)
        return int(result.get("TTL", 0) or 0)

    async def lease_revoke(self, lease: int) -> None:
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as e:
            if "not found" not in str(e):  # already expired: what revoke wanted
                raise

    # ------------------------------------------------------------------ watch

    @asynccontextmanager
    async def watch(
        self, prefix: bytes, start_revision: int, progress_notify: bool = True
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """A watch over ``prefix`` from ``start_revision`` on the current URL (no
        failover here: the caller reconnects). Yields an iterator of results;
        it ends when the stream does. Read timeouts are the caller's."""
        await self._ensure_token()
        body = {
            "create_request": {
                "key": b64(prefix),
                "range_end": b64(prefix_range_end(prefix)),
                "start_revision": str(start_revision),
                "progress_notify": progress_notify,
            }
        }
        timeout = httpx.Timeout(None, connect=self.dial_timeout)
        async with self.client.stream(
            "POST", self.url + "/v3/watch", json=body, headers=self._headers(), timeout=timeout
        ) as r:
            if r.status_code != 200:
                await r.aread()
                code = _UNAUTHENTICATED if r.status_code == 401 else _UNAVAILABLE
                raise EtcdError(f"watch: HTTP {r.status_code}", code)
            yield self._results(r)

    async def _results(self, r: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        async for line in r.aiter_lines():
            if not line.strip():
                continue
            doc = json.loads(line)
            if "error" in doc:
                err = doc["error"]
                if isinstance(err, dict):  # older gateways nest the error
                    raise EtcdError(str(err.get("message")), int(err.get("grpc_code", 0) or 0))
                code = int(doc.get("code", 0) or 0)
                if code == _UNAUTHENTICATED:
                    self.token = None
                raise EtcdError(str(doc.get("message") or err), code)
            result = doc.get("result")
            if isinstance(result, dict):
                yield result


def _reason(e: Exception) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
