"""Process entry: listeners, the relay, its timer, signals."""

from __future__ import annotations

import gc
import logging
import signal

import trio

from proxy.balancing.endpoint import EndpointState
from proxy.balancing.pool import build_pools
from proxy.config.model import Address, Config, Listen
from proxy.relay.relay import Relay
from proxy.runtime.downstream import ClientHandler
from proxy.runtime.observability import open_observability
from proxy.runtime.upstream import Upstreams

log = logging.getLogger("grpc_proxy")

TICK = 0.1  # timer resolution for deadlines and idle timeouts


class StartupError(Exception):
    """A clear, expected reason not to start (a port in use, say)."""


def run(config: Config) -> int:
    if config.worker_processes > 1:
        log.warning("worker_processes %d: running one process (several are not supported yet)",
                    config.worker_processes)
    # Calls make short-lived objects by the thousand; the default gen-0
    # threshold (700) would run the collector every few calls.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        return trio.run(_main, config)
    except StartupError as e:
        log.error("%s", e)
        return 1


async def _listen(listen: Listen) -> list[trio.SocketListener]:
    host = listen.address.host
    try:
        return await trio.open_tcp_listeners(
            listen.address.port, host=None if host in ("*", "0.0.0.0", "") else host
        )
    except OSError as e:
        reason = e.strerror.lower() if e.strerror else str(e)
        raise StartupError(f"cannot listen on {listen.address}: {reason}") from None


async def _main(config: Config) -> int:
    registry: dict[tuple[str, Address], EndpointState] = {}
    relay = Relay(build_pools(config.upstreams, registry), trio.current_time)
    bound = [(server, listen, await _listen(listen))
             for server in config.servers for listen in server.listens]
    observability = await open_observability(config, relay)  # metrics, admin, access logs
    async with trio.open_nursery() as nursery:
        Upstreams(relay, nursery)
        for server, listen, listeners in bound:
            nursery.start_soon(trio.serve_listeners, ClientHandler(relay, server), listeners)
            log.info("listening on %s", listen.address)
        nursery.start_soon(_timers, relay)
        nursery.start_soon(observability.run)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGQUIT) as signals:
            async for signum in signals:
                log.info("%s: exiting", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
    return 0


async def _timers(relay: Relay) -> None:
    while True:
        await trio.sleep(TICK)
        relay.tick(trio.current_time())
        relay.flush()
