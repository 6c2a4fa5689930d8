"""Process entry: the runtime of one serving process (a single process, or
one worker under proxy/runtime/master.py), reloads, drain and signals.

Structure:
- ``Runtime``: process-wide, lives until exit: the relay, the endpoint
  registry, upstream connections, listen slots by address, the drain state.
- ``Generation`` (generation.py): what one config built; per-config services.
- ``apply(config)``: the first start and every reload (SIGHUP).
- ``drain(timeout)``: SIGTERM/SIGQUIT: stop accepting, graceful GOAWAY to
  every client, in-flight streams finish until ``shutdown_timeout``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
from collections.abc import Sequence

import trio

from proxy.balancing.endpoint import EndpointState
from proxy.balancing.pool import PoolSnapshot, build_pool
from proxy.config import ConfigError, load, warnings
from proxy.config.model import Address, Config
from proxy.discovery.feed import Discovered, EtcdStatus, carried_over
from proxy.relay.relay import Relay
from proxy.runtime.downstream import ClientHandler
from proxy.runtime.generation import Generation, ServiceStarter
from proxy.runtime.listeners import ListenerSlot, StartupError, bind
from proxy.runtime.observability import Observability, open_observability
from proxy.runtime.services import PER_CONFIG_SERVICES, etcd_not_synced
from proxy.runtime.upstream import Upstreams

log = logging.getLogger("grpc_proxy")

TICK = 0.1  # timer resolution for deadlines and idle timeouts
DRAIN_FLUSH = 2.0  # after shutdown_timeout: time for the last trailers to leave

__all__ = ["Runtime", "StartupError", "run"]


def run(
    config: Config, inherited: dict[Address, list[socket.socket]] | None = None, ready_fd: int = -1
) -> int:
    """Serve ``config`` until a signal. ``inherited``: listen sockets from the
    master (worker mode); ``ready_fd``: written to once serving, then closed."""
    if config.worker_processes > 1 and inherited is None:
        from proxy.runtime.master import run_master

        return run_master(config)
    # Calls make short-lived objects by the thousand; the default gen-0
    # threshold (700) would run the collector every few calls.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    return trio.run(_main, config, inherited, ready_fd)


class Runtime:
    def __init__(
        self,
        nursery: trio.Nursery,
        inherited: dict[Address, list[socket.socket]] | None = None,
        services: Sequence[ServiceStarter] = (),
    ) -> None:
        self.nursery = nursery
        self.services = tuple(services)  # started for every generation, in order
        self.worker = inherited is not None
        self.inherited = dict(inherited or {})
        self.registry: dict[tuple[str, Address], EndpointState] = {}
        self.relay = Relay({}, trio.current_time)
        self.upstreams = Upstreams(self.relay, nursery)
        self.slots: dict[Address, ListenerSlot] = {}
        self.generation: Generation | None = None
        # etcd-fed upstreams: the last published endpoints (a reload starts
        # from them) and the live status of the current feeds.
        self.discovered: Discovered = {}
        self.etcd_status: dict[str, EtcdStatus] = {}
        self._generations = 0
        # Announced drain: readiness probes read this (503 while draining).
        self.draining = False
        self.drain_started = trio.Event()
        self.observability: Observability | None = None

    @property
    def config(self) -> Config:
        assert self.generation is not None
        return self.generation.config

    async def apply(self, config: Config) -> None:
        """Start serving ``config``, or switch to it. Raises StartupError (a
        new address cannot be bound) before anything has changed."""
        wanted = {
            listen.address: (server, listen)
            for server in config.servers
            for listen in server.listens
        }
        bound: dict[Address, list[trio.SocketListener]] = {}
        try:
            for address, (_, listen) in wanted.items():
                if address not in self.slots:
                    bound[address] = await bind(listen, self.inherited)
        except StartupError:
            for listeners in bound.values():
                for lst in listeners:
                    await lst.aclose()
            raise
        self._generations += 1
        gen = Generation(self._generations, config, self._pools(config), self, self.services)
        await self.nursery.start(gen.run)
        # The switch: one synchronous step, so no call sees half of it.
        old, self.generation = self.generation, gen
        self.relay.pools = dict(gen.pools)
        gen.activated.set()
        for address, slot in self.slots.items():
            if address in wanted:
                slot.set_server(wanted[address][0])
        removed = [slot for address, slot in self.slots.items() if address not in wanted]
        for slot in removed:
            del self.slots[slot.address]
        for address, listeners in bound.items():
            slot = self.slots[address] = ListenerSlot(address, wanted[address][0], listeners)
            self.nursery.start_soon(slot.serve, ClientHandler(self.relay, slot), self.nursery)
            log.info("listening on %s", address)
        if old is not None:
            old.stop()
            names = set(config.upstreams)
            for key in [k for k in self.registry if k[0] not in names]:
                del self.registry[key]
        deadline = trio.current_time() + config.shutdown_timeout
        for slot in removed:
            log.info("no longer listening on %s", slot.address)
            self.nursery.start_soon(slot.close, deadline, "listener removed")

    def _pools(self, config: Config) -> dict[str, PoolSnapshot]:
        return {
            name: build_pool(
                up, up.servers, self.registry, discovered=carried_over(up, self.discovered)
            )
            for name, up in config.upstreams.items()
        }

    async def reload(self) -> bool:
        """SIGHUP: read the file again; a broken file changes nothing."""
        path = self.config.file
        workers = self.config.worker_processes
        try:
            config = load(path)
            await self.apply(config)
        except (ConfigError, StartupError) as e:
            log.error("reload failed, keeping the running configuration: %s", e)
            self._count_reload(False)
            return False
        self._count_reload(True)
        if config.worker_processes != workers and not self.worker:
            log.warning("worker_processes: a change from 1 needs a restart")
        for line in warnings(config):
            log.warning("%s", line)
        log.info("configuration reloaded from %s (generation %d)", path, self._generations)
        return True

    def _count_reload(self, ok: bool) -> None:
        recorder = self.observability and self.observability.recorder
        if recorder:
            recorder.config_reloaded(ok)

    async def drain(self, timeout: float) -> None:
        """Stop accepting, GOAWAY every client, wait for streams (bounded)."""
        self.draining = True
        self.drain_started.set()
        now = trio.current_time()
        deadline = now + timeout
        for slot in self.slots.values():
            await slot.close(deadline, "shutdown")
        open_count = sum(len(s.watches) for s in self.slots.values())
        log.info("draining %d client connection(s), up to %gs", open_count, timeout)
        while any(s.watches for s in self.slots.values()):
            if trio.current_time() > deadline + DRAIN_FLUSH:
                log.warning(
                    "shutdown_timeout: closing %d connection(s)",
                    sum(len(s.watches) for s in self.slots.values()),
                )
                break
            await trio.sleep(0.05)


async def _main(
    config: Config, inherited: dict[Address, list[socket.socket]] | None, ready_fd: int
) -> int:
    signals = [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP]
    with trio.open_signal_receiver(*signals) as receiver:
        async with trio.open_nursery() as nursery:
            runtime = Runtime(nursery, inherited, PER_CONFIG_SERVICES)
            try:
                # Metrics, admin and access logs first: a busy admin port or an
                # unwritable log stops the start before any client is accepted.
                runtime.observability = await open_observability(config, runtime.relay)
                await runtime.apply(config)
            except StartupError as e:
                log.error("%s", e)
                nursery.cancel_scope.cancel()
                return 1
            _plug_sources(runtime)
            nursery.start_soon(runtime.observability.run)
            nursery.start_soon(_timers, runtime.relay)
            if runtime.worker:
                nursery.start_soon(_orphan_watch, runtime)
            if ready_fd >= 0:
                os.write(ready_fd, b"1")
                os.close(ready_fd)
            async for signum in receiver:
                if signum == signal.SIGHUP:
                    if runtime.worker:
                        continue  # the master reloads by starting new workers
                    log.info("SIGHUP: reloading %s", runtime.config.file)
                    await runtime.reload()
                    continue
                name = signal.Signals(signum).name
                if signum == signal.SIGINT:
                    log.info("%s: exiting", name)
                    nursery.cancel_scope.cancel()
                    break
                if not runtime.draining:
                    log.info("%s: graceful shutdown", name)
                    nursery.start_soon(_drain_and_exit, runtime)
    return 0


def _plug_sources(runtime: Runtime) -> None:
    """What the admin endpoints and gauges read from the runtime."""
    assert runtime.observability is not None
    sources = runtime.observability.sources
    sources.draining = lambda: runtime.draining
    sources.etcd = lambda: runtime.etcd_status
    sources.ready_checks.append(lambda: etcd_not_synced(runtime))
    sources.config = lambda: runtime.config


async def _drain_and_exit(runtime: Runtime) -> None:
    timeout = runtime.config.shutdown_timeout
    with trio.move_on_after(timeout + DRAIN_FLUSH + 1):
        await runtime.drain(timeout)
    log.info("exiting")
    runtime.nursery.cancel_scope.cancel()


async def _orphan_watch(runtime: Runtime) -> None:
    """A worker whose master died drains and exits rather than linger."""
    parent = os.getppid()
    while os.getppid() == parent:
        await trio.sleep(1.0)
    log.warning("master process %d is gone: shutting down", parent)
    if not runtime.draining:
        await _drain_and_exit(runtime)


async def _timers(relay: Relay) -> None:
    while True:
        await trio.sleep(TICK)
        relay.tick(trio.current_time())
        relay.flush()
