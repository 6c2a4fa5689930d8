"""Metrics, the admin listener and access logs, wired to a running relay.

``main`` calls ``open_observability`` before it serves (so a busy admin port
or an unwritable log stops the start with a clear message), then starts
``Observability.run`` in its nursery. The returned object is the handle for
work that plugs in later: ``sources`` takes providers (etcd status, draining,
readiness checks), ``recorder.config_reloaded`` counts reloads, and
``recorder.timed_out("keepalive")`` / ``protocol_error("flood")`` count
keepalive timeouts and floods.
"""

from __future__ import annotations

import errno
import logging
import socket

import trio

from proxy.access_log import AccessLogFile, open_logs, run_writer
from proxy.admin.handlers import AdminHandlers
from proxy.admin.server import AdminServer
from proxy.admin.status_board import StatusBoard
from proxy.config.model import Address, Config
from proxy.metrics.export import Exporter, multiprocess_dir
from proxy.metrics.observer import CallRecorder
from proxy.metrics.sources import Sources
from proxy.relay.relay import Relay
from proxy.runtime.downstream import ClientHandler

log = logging.getLogger("grpc_proxy.observability")

EXPORT_INTERVAL = 1.0  # seconds between moves of the counts into prometheus-client


class Observability:
    def __init__(
        self,
        relay: Relay,
        sources: Sources,
        recorder: CallRecorder | None,
        exporter: Exporter | None,
        admin: AdminServer | None,
        admin_listeners: list[trio.SocketListener],
        logs: list[AccessLogFile],
        status: StatusBoard | None = None,
    ) -> None:
        self.relay = relay
        self.sources = sources
        self.recorder = recorder
        self.exporter = exporter
        self.admin = admin
        self.admin_listeners = admin_listeners
        self.logs = logs
        self.status = status

    async def run(self) -> None:
        """Serve the admin listener, export the counts, write the logs, until
        cancelled (a final export and log flush happen on the way out)."""
        self.sources.listening = True
        async with trio.open_nursery() as nursery:
            for f in self.logs:
                nursery.start_soon(run_writer, f)
            if self.exporter is not None:
                nursery.start_soon(self._export, self.exporter, self.status)
            if self.admin is not None:
                nursery.start_soon(self.admin.serve, self.admin_listeners)
                for lst in self.admin_listeners:
                    log.info("admin listening on %s", _name(lst))

    @staticmethod
    async def _export(exporter: Exporter, status: StatusBoard | None) -> None:
        """Every second: the counts into prometheus-client; for the status
        page, one process samples its counters into the rate window (workers
        sample the merged files only when asked: status_board.py) and a
        worker shares its pool snapshot."""
        sampler = status if status is not None and not exporter.multiprocess else None
        sharer = status if status is not None and status.share_dir is not None else None
        try:
            if sampler is not None:
                sampler.sample()
            while True:
                await trio.sleep(EXPORT_INTERVAL)
                exporter.flush()
                if sampler is not None:
                    sampler.sample()
                if sharer is not None:
                    await trio.to_thread.run_sync(sharer.publish, sharer.capture())
        finally:
            exporter.flush()  # multiprocess: the last counts reach the shared files
            if status is not None:
                status.withdraw()


async def open_observability(config: Config, relay: Relay) -> Observability:
    """Open the access logs and bind the admin listener (``StartupError`` if
    either fails) and install the call recorder on ``relay`` when anything
    needs it: metrics when ``admin`` is configured, logs when any server has
    one. Without either, the relay runs with no observer at all."""
    from proxy.runtime.main import StartupError  # main imports this module

    sources = Sources(
        relay,
        downstream_connections=lambda: ClientHandler.connections,
        upstream_connections=lambda: _upstream_connections(relay),
    )
    try:
        logs, files = open_logs(config)
    except OSError as e:
        raise StartupError(e.strerror or str(e)) from None
    metrics = config.admin is not None
    if not metrics and not logs:
        return Observability(relay, sources, None, None, None, [], [])
    recorder = CallRecorder(
        relay, metrics=metrics, max_methods=config.metrics_max_methods, logs=logs
    )
    relay.observer = recorder
    exporter = admin = status = None
    listeners: list[trio.SocketListener] = []
    if config.admin is not None:
        exporter = Exporter(recorder, sources)
        status = StatusBoard(
            sources,
            exporter.request_totals,
            share_dir=multiprocess_dir() if exporter.multiprocess else None,
        )
        admin = AdminServer(
            AdminHandlers(sources, exporter.render, status), before_metrics=exporter.flush
        )
        try:
            listeners = [await _bind(config.admin.listen, config.worker_processes > 1)]
        except OSError as e:
            for f in files:
                f.close()
            reason = (e.strerror or str(e)).lower()
            raise StartupError(
                f"{config.admin.source}: cannot listen on {config.admin.listen} for admin: {reason}"
            ) from None
    return Observability(relay, sources, recorder, exporter, admin, listeners, files, status)


def _upstream_connections(relay: Relay) -> dict[Address, int]:
    counts: dict[Address, int] = {}
    for (addr, _), el in (getattr(relay.connector, "by_endpoint", None) or {}).items():
        counts[addr] = counts.get(addr, 0) + len(el.links)  # h2c and grpcs:// alike
    return counts


async def _bind(address: Address, reuseport: bool) -> trio.SocketListener:
    """A listening socket; with ``reuseport`` (several workers) every worker
    binds the admin port and the kernel spreads scrapes over them: any one
    answers for all, from the shared metric files."""
    host = address.host
    if host in ("*", ""):
        host = "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind((host, address.port))
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def _name(listener: trio.SocketListener) -> str:
    try:
        host, port = listener.socket.getsockname()[:2]
    except OSError as e:  # pragma: no cover - a closed socket
        return errno.errorcode.get(e.errno or 0, "?")
    return f"{host}:{port}"
