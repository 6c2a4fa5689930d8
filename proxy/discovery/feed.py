"""One task per etcd-fed upstream: range the prefix, watch it, and publish the
discovered endpoints on every change, through the ``Publish`` callback the
runtime passes in (proxy/runtime/services.py builds the pool snapshot and
installs it). Discovery knows nothing of the relay or the runtime.

Errors never touch the pool: the last known one keeps serving while the feed
reconnects (with backoff, across the URL list) from the last applied revision.
A watch silent for ``watch_timeout`` is reopened (a half-open connection), and
every watch is reopened after ``watch_reopen`` anyway.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import trio

from proxy.config.model import Config, EtcdSource, Upstream, UpstreamServer
from proxy.discovery.backoff import Backoff
from proxy.discovery.etcd_gateway import EtcdError, Gateway
from proxy.discovery.watch_state import Verdict, WatchState

log = logging.getLogger("grpc_proxy.etcd")

MAX_LOGGED_ENDPOINTS = 50  # a pool line stays readable for big pools


@dataclass(slots=True)
class EtcdStatus:
    """What one etcd-fed upstream's feed is doing: the one place the metrics
    and admin code read. Times are ``trio.current_time()`` values."""

    upstream: str
    connected: bool = False  # a watch is open and answered
    synced_once: bool = False
    revision: int = 0  # last applied etcd revision
    events_applied: int = 0
    resyncs: int = 0  # full ranges after the first one
    last_message_at: float | None = None  # last range answer or watch message
    endpoints: int = 0  # discovered endpoints in the current pool
    url: str = ""  # the etcd URL in use

    def carry_from(self, old: EtcdStatus) -> None:
        """A reload kept this upstream's etcd source: the new feed starts from
        the old one's pool, so it has synced (readiness stays 200 through an
        etcd outage) and counts on from the old revision and totals. It is
        not connected until its own watch opens."""
        self.synced_once = old.synced_once
        self.revision = old.revision
        self.events_applied = old.events_applied
        self.resyncs = old.resyncs
        self.last_message_at = old.last_message_at
        self.endpoints = old.endpoints
        self.url = old.url


class _Stalled(Exception):
    """The watch said nothing for watch_timeout."""


def make_gateway(src: EtcdSource) -> Gateway:
    return Gateway(
        src.urls,
        username=src.username,
        password=src.password,
        tls_ca=src.tls_ca,
        tls_cert=src.tls_cert,
        tls_key=src.tls_key,
        dial_timeout=src.dial_timeout,
    )


# The last pool each etcd-fed upstream published, with the source it came
# from: a reload that keeps an upstream's etcd source starts from it instead of
# an empty pool while the new feed ranges again.
Discovered = dict[str, tuple[EtcdSource, tuple[UpstreamServer, ...]]]

# ``publish(upstream, discovered)``: serve ``upstream`` from its static servers
# plus ``discovered`` (none of which repeats a static address). False when a
# reload has replaced the config this feed belongs to: nothing was changed,
# the new feed owns the pool.
Publish = Callable[[Upstream, tuple[UpstreamServer, ...]], bool]


class EtcdFeed:
    def __init__(
        self,
        upstream: Upstream,
        publish: Publish,
        status: EtcdStatus,
        known: Discovered | None = None,
    ) -> None:
        assert upstream.etcd is not None
        self.upstream = upstream
        self.src: EtcdSource = upstream.etcd
        self.prefix = self.src.prefix.encode()
        self.publish = publish
        self.status = status
        self.state = WatchState(upstream.name)
        self.backoff = Backoff()
        self.failing = False  # in an outage: log its start and end only
        self.known: Discovered = {} if known is None else known

    async def run(self) -> None:
        async with make_gateway(self.src) as gw:
            self.status.url = gw.url
            resync = True
            while True:
                try:
                    if resync:
                        await self._sync(gw)
                        resync = False
                    resync = await self._watch(gw)
                    continue  # a planned reopen or a resync: at once
                except (
                    EtcdError,
                    httpx.HTTPError,
                    json.JSONDecodeError,
                    OSError,
                    trio.TooSlowError,
                    _Stalled,
                ) as e:
                    self._failed(gw, e)
                except Exception as e:  # noqa: BLE001 - discovery must never stop the proxy
                    log.debug("etcd feed error", exc_info=True)
                    self._failed(gw, EtcdError(f"unexpected {type(e).__name__}: {e}"))
                gw.fail_over()
                self.status.url = gw.url
                await trio.sleep(self.backoff.next())

    async def _sync(self, gw: Gateway) -> None:
        with trio.fail_after(self.src.dial_timeout + 10.0):
            response = await gw.range_prefix(self.prefix)
        first = not self.state.synced
        self.state.load(response)
        if not first:
            self.status.resyncs += 1
        self.status.synced_once = True
        self._touch()
        self._publish("synced")

    async def _watch(self, gw: Gateway) -> bool:
        """Watch until an error (raised), a planned reopen (False) or a
        needed resync (True)."""
        now = trio.current_time()
        reopen_at = now + self.src.watch_reopen
        opened = False
        with trio.CancelScope(deadline=now + self.src.dial_timeout) as scope:
            async with gw.watch(self.prefix, self.state.revision + 1) as results:
                async for result in results:
                    opened = True
                    now = trio.current_time()
                    scope.deadline = min(now + self.src.watch_timeout, reopen_at)
                    self._touch()
                    verdict = self.state.apply(result)
                    if result.get("created") and not result.get("canceled"):
                        self._connected(gw)
                    if verdict is Verdict.CHANGED:
                        self._publish("changed")
                    elif verdict is Verdict.RESYNC:
                        log.info(
                            'upstream "%s": resync from etcd: %s',
                            self.upstream.name,
                            self.state.reason,
                        )
                        return True
                    elif verdict is Verdict.REOPEN:
                        gw.token = None  # a permission error may be an expired token
                        raise EtcdError(self.state.reason)
                    self.status.revision = self.state.revision
                raise EtcdError("watch stream ended")
        if trio.current_time() >= reopen_at:
            return False
        raise _Stalled(
            f"no watch message for {self.src.watch_timeout:g}s"
            if opened
            else "watch not opened in time"
        )

    def _touch(self) -> None:
        self.status.last_message_at = trio.current_time()
        self.status.revision = self.state.revision
        self.status.events_applied = self.state.events_applied

    def _connected(self, gw: Gateway) -> None:
        self.status.connected = True
        self.status.url = gw.url
        self.backoff.reset()
        if self.failing:
            self.failing = False
            log.info('upstream "%s": etcd watch open again at %s', self.upstream.name, gw.url)

    def _failed(self, gw: Gateway, e: BaseException) -> None:
        self.status.connected = False
        msg = str(e) or type(e).__name__
        if not self.failing:
            self.failing = True
            log.warning(
                'upstream "%s": etcd at %s: %s; keeping the last known pool (%d '
                "endpoints) and retrying",
                self.upstream.name,
                gw.url,
                msg,
                self.status.endpoints,
            )
        else:
            log.debug('upstream "%s": etcd at %s: %s', self.upstream.name, gw.url, msg)

    def _publish(self, why: str) -> None:
        up = self.upstream
        seen = {s.address for s in up.servers}
        discovered = []
        for s in self.state.servers():
            if s.address not in seen:  # a static server line wins over a key
                seen.add(s.address)
                discovered.append(s)
        if not self.publish(up, tuple(discovered)):
            return  # a reload is replacing this feed: the new one owns the pool
        self.known[up.name] = (self.src, tuple(discovered))
        self.status.endpoints = len(discovered)
        shown = " ".join(f"{s.address}/{s.weight}" for s in discovered[:MAX_LOGGED_ENDPOINTS])
        more = len(discovered) - MAX_LOGGED_ENDPOINTS
        log.info(
            'upstream "%s": %s at etcd revision %d, %d events applied, %d endpoints: [%s]%s',
            up.name,
            why,
            self.state.revision,
            self.state.events_applied,
            len(discovered),
            shown,
            f" and {more} more" if more > 0 else "",
        )


def start_etcd_feeds(
    nursery: trio.Nursery,
    config: Config,
    publish: Publish,
    known: Discovered | None = None,
    previous: Mapping[str, EtcdStatus] | None = None,
) -> dict[str, EtcdStatus]:
    """Start one feed task per etcd-fed upstream of ``config``, each publishing
    through ``publish``; the returned dict (upstream name -> status) is live,
    for metrics and admin. ``known``: what earlier feeds published (updated
    as these publish); ``previous``: the statuses of the feeds a reload
    replaces."""
    statuses: dict[str, EtcdStatus] = {}
    for name, up in config.upstreams.items():
        if up.etcd is None:
            continue
        statuses[name] = EtcdStatus(name)
        entry = (known or {}).get(name)
        old = (previous or {}).get(name)
        if old is not None and entry is not None and entry[0] == up.etcd:
            statuses[name].carry_from(old)
        feed = EtcdFeed(up, publish, statuses[name], known)
        nursery.start_soon(feed.run, name=f"etcd-feed:{name}")
    return statuses


def carried_over(upstream: Upstream, known: Discovered) -> tuple[UpstreamServer, ...]:
    """What a reloaded upstream starts with: the endpoints its feed last
    published, if its etcd source is unchanged."""
    entry = known.get(upstream.name)
    if upstream.etcd is None or entry is None or entry[0] != upstream.etcd:
        return ()
    return entry[1]
