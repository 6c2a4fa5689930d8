"""Service registration in etcd: a key under a prefix, held by a lease.

Python (trio)::

    async with register("http://127.0.0.1:2379", "/services/users/", "10.0.0.5:50051",
                        ttl=10, meta={"version": "v1"}) as reg:
        await reg.wait_registered()
        await serve_forever()
    # leaving the block revokes the lease: the key is gone at once

Command line (``grpc-proxy register``, see ``main``) does the same until
SIGTERM or SIGINT.

The value is the canonical JSON ``{"address", "weight", "meta"}``. The lease is
kept alive every ttl/3, through etcd outages; if it expired meanwhile, a new one
is granted and the key put again. With ``health="host:port"`` the key is only
kept while that endpoint's grpc.health.v1 check answers SERVING.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from proxy.config.etcd_directives import etcd_url
from proxy.config.units import UnitError, parse_address
from proxy.discovery import health_probe
from proxy.discovery.backoff import Backoff
from proxy.discovery.etcd_gateway import Gateway
from proxy.discovery.values import canonical_value

log = logging.getLogger("grpc_proxy.register")

DEFAULT_TTL = 10
HEALTH_TIMEOUT = 2.0  # one grpc.health.v1 Check


class Registration:
    """The live state of one registration (read-only for callers)."""

    def __init__(self, key: str, value: str, ttl: int) -> None:
        self.key = key
        self.value = value
        self.ttl = ttl
        self.lease = 0  # the current lease id; 0: none
        self.stored = False  # the key is put under the current lease
        self.healthy = True
        self._registered = trio.Event()

    @property
    def registered(self) -> bool:
        return self.lease != 0 and self.stored

    async def wait_registered(self) -> None:
        """Return once the key is in etcd (the first time)."""
        await self._registered.wait()


class _Health:
    """grpc.health.v1 Check of one endpoint (``health_probe``: no grpcio)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.reason = ""  # why the last check did not pass

    async def serving(self) -> bool:
        self.reason = await health_probe.check(self.target, HEALTH_TIMEOUT)
        return not self.reason


@asynccontextmanager
async def register(
    etcd: str | Sequence[str],
    prefix: str,
    address: str,
    *,
    id: str | None = None,  # noqa: A002 - the CLI's --id
    ttl: int = DEFAULT_TTL,
    weight: int = 1,
    meta: dict[str, str] | None = None,
    health: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    dial_timeout: float = 5.0,
) -> AsyncIterator[Registration]:
    """Keep ``prefix + (id or address)`` -> canonical JSON in etcd while the
    block runs; revoke the lease on the way out (also when cancelled)."""
    parse_address(address)  # a UnitError (ValueError) for a bad one, before any I/O
    if health:
        parse_address(health)
    if ttl < 2:
        raise ValueError("ttl must be at least 2 seconds")
    urls = etcd_urls([etcd] if isinstance(etcd, str) else list(etcd))  # ValueError if bad
    reg = Registration(prefix + (id or address), canonical_value(address, weight, meta), ttl)
    gw = Gateway(
        urls,
        username=username,
        password=password,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        dial_timeout=dial_timeout,
    )
    checker = _Health(health) if health else None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep, gw, reg, checker)
            try:
                yield reg
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(dial_timeout + 2.0):
            await _withdraw(gw, reg)
        with trio.CancelScope(shield=True):
            await gw.aclose()


async def _keep(gw: Gateway, reg: Registration, checker: _Health | None) -> None:
    interval = reg.ttl / 3
    backoff = Backoff(base=0.1, cap=interval)
    failing = False
    while True:
        try:
            reg.healthy = await checker.serving() if checker else True
            if reg.healthy:
                await _hold(gw, reg)
            elif reg.lease:
                log.warning(
                    "%s: health check is not SERVING (%s): withdrawing",
                    reg.key,
                    checker.reason if checker else "",
                )
                await _withdraw(gw, reg)
            if failing:
                log.info("%s: etcd reachable again", reg.key)
            failing = False
            backoff.reset()
            delay = interval
        except Exception as e:  # noqa: BLE001 - keep trying whatever etcd answers
            log.debug("registration error", exc_info=True)
            if not failing:
                log.warning("%s: etcd: %s; retrying", reg.key, e)
            failing = True
            gw.fail_over()
            delay = backoff.next()
        await trio.sleep(delay)


async def _hold(gw: Gateway, reg: Registration) -> None:
    if reg.lease and await gw.lease_keepalive(reg.lease) <= 0:
        log.warning("%s: lease %x expired: registering again", reg.key, reg.lease)
        reg.lease, reg.stored = 0, False
    if not reg.lease:
        reg.lease, reg.stored = await gw.lease_grant(reg.ttl), False
    if not reg.stored:
        await gw.put(reg.key.encode(), reg.value.encode(), lease=reg.lease)
        reg.stored = True
        log.info("registered %s = %s (lease %x, ttl %ds)", reg.key, reg.value, reg.lease, reg.ttl)
        reg._registered.set()


async def _withdraw(gw: Gateway, reg: Registration) -> None:
    lease, reg.lease, reg.stored = reg.lease, 0, False
    if not lease:
        return
    try:
        await gw.lease_revoke(lease)  # the key goes with its lease
        log.info("withdrew %s (lease %x revoked)", reg.key, lease)
    except Exception as e:  # noqa: BLE001 - on the way out: report, never raise
        log.warning(
            "%s: could not revoke lease %x (%s): it expires in %ds", reg.key, lease, e, reg.ttl
        )


def etcd_urls(values: Sequence[str]) -> list[str]:
    """``http(s)://host:port`` URLs from comma-separated lists, checked before
    any I/O: a ``ValueError`` naming the bad one (a bad URL would otherwise
    be retried for ever)."""
    urls = [etcd_url(u.strip()) for value in values for u in value.split(",") if u.strip()]
    if not urls:
        raise ValueError("no etcd URL")
    return urls


# ---------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="grpc-proxy register",
        description="Keep a service endpoint registered in etcd (a key held by a lease) "
        "until SIGTERM or SIGINT, which revoke it.",
    )
    p.add_argument("--etcd", required=True, metavar="URL[,URL]", help="etcd client URLs")
    p.add_argument("--prefix", required=True, help="key prefix, e.g. /services/users/")
    p.add_argument("--address", required=True, metavar="HOST:PORT", help="the endpoint")
    p.add_argument("--id", help="key name under the prefix (default: the address)")
    p.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="lease TTL in seconds (10)")
    p.add_argument("--weight", type=int, default=1, help="balancing weight (1)")
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label, e.g. version=v1 (repeatable)",
    )
    p.add_argument(
        "--health",
        metavar="HOST:PORT",
        help="keep the key only while this grpc.health.v1 endpoint is SERVING",
    )
    p.add_argument("--username", help="etcd user")
    p.add_argument("--password-file", help="file holding the etcd user's password")
    p.add_argument("--tls-ca", help="CA bundle for https:// etcd URLs")
    p.add_argument("--tls-cert", help="client certificate")
    p.add_argument("--tls-key", help="client key")
    p.add_argument("--dial-timeout", type=float, default=5.0, help="seconds (5)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    try:
        etcd_urls([args.etcd])
    except ValueError as e:
        p.exit(1, f"grpc-proxy register: --etcd: {e}\n")
    try:
        parse_address(args.address)
    except UnitError as e:
        p.error(f"--address: {e}")
    if args.ttl < 2:
        p.error("--ttl must be at least 2")
    if args.weight < 1:
        p.error("--weight must be at least 1")
    meta: dict[str, str] = {}
    for item in args.meta:
        k, eq, v = item.partition("=")
        if not k or not eq:
            p.error(f"--meta {item!r}: use KEY=VALUE")
        meta[k] = v
    password = None
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except OSError as e:
            p.error(f"--password-file: {e.strerror or e}")
    if (args.username is None) != (password is None):
        p.error("--username and --password-file go together")
    if args.health:
        try:
            parse_address(args.health)
        except UnitError as e:
            p.error(f"--health: {e}")
    return dict(
        id=args.id,
        ttl=args.ttl,
        weight=args.weight,
        meta=meta,
        health=args.health,
        username=args.username,
        password=password,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        dial_timeout=args.dial_timeout,
    )


async def _serve(args: argparse.Namespace, options: dict[str, Any]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with register(args.etcd, args.prefix, args.address, **options):
            async for signum in signals:
                log.info("%s: withdrawing", signal.Signals(signum).name)
                break


def main(argv: list[str]) -> int:
    p = _parser()
    args = p.parse_args(argv)
    options = _check_args(p, args)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        trio.run(_serve, args, options)
    except KeyboardInterrupt:
        return 0
    except OSError as e:  # a TLS file that cannot be loaded, say
        print(f"grpc-proxy register: {e}", file=sys.stderr)
        return 1
    return 0
