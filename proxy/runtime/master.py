"""``worker_processes N``: a master that owns the listen sockets and runs N
worker processes (each a full proxy: proxy/runtime/main.py in worker mode).

Sockets: for every listen address the master binds one SO_REUSEPORT socket
per worker *slot* and hands slot i's sockets to the worker in slot i
(``pass_fds``); the kernel spreads new connections over the slots. The master
keeps its copy open, so a socket never closes while a worker is replaced:
connections queued in its accept backlog wait for the next worker instead of
being reset (the trap of closing one of several reuseport listeners).

- A worker that dies is started again in its slot (at most once a second).
- SIGHUP: read the file; if it is valid, bind new addresses, start a new
  worker per slot, wait until each serves, then SIGQUIT the old ones (they
  drain gracefully). An invalid file is logged and changes nothing.
- SIGTERM/SIGQUIT: forwarded; the master waits for its workers and exits 0.
  SIGINT: forwarded; the master exits at once.
- Before the first worker starts, PROMETHEUS_MULTIPROC_DIR points at a fresh
  temporary directory (every worker writes its metrics there); the master
  removes it at exit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable

import trio

from proxy.config import ConfigError, load, warnings
from proxy.config.model import Address, Config, Listen
from proxy.runtime.listeners import StartupError, where

log = logging.getLogger("grpc_proxy.master")

READY_TIMEOUT = 15.0  # a new worker has this long to start serving
RESTART_DELAY = 1.0  # a worker dying at once is not restarted in a tight loop
KILL_GRACE = 3.0  # after shutdown_timeout: then stragglers are killed
BACKLOG = 4096


def run_master(config: Config) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="grpc-proxy-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return trio.run(_master, config)
    except StartupError as e:
        log.error("%s", e)
        return 1
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


class Worker:
    def __init__(self, slot: int, proc: trio.Process, started: float) -> None:
        self.slot = slot
        self.proc = proc
        self.started = started
        self.retiring = False  # asked to drain: its exit is expected


class Master:
    def __init__(self, nursery: trio.Nursery, config: Config) -> None:
        self.nursery = nursery
        self.config = config
        # address -> one socket per slot
        self.sockets: dict[Address, list[list[socket.socket]]] = {}
        self.workers: dict[int, Worker] = {}  # the current worker of each slot
        self.stopping = False

    # ------------------------------------------------------------------ sockets

    def bind(self, config: Config) -> dict[Address, list[list[socket.socket]]]:
        """Sockets for ``config``: kept ones reused, new ones bound (all or
        nothing: StartupError leaves the old set as it was)."""
        n = config.worker_processes
        wanted = [listen for server in config.servers for listen in server.listens]
        result: dict[Address, list[list[socket.socket]]] = {}
        made: list[socket.socket] = []
        try:
            for listen in wanted:
                address = listen.address
                slots = list(self.sockets.get(address, []))[:n]
                while len(slots) < n:
                    socks = _bind(listen)
                    made.extend(socks)
                    slots.append(socks)
                result[address] = slots
        except StartupError:
            for s in made:
                s.close()
            raise
        return result

    def release_unused(self, old: dict[Address, list[list[socket.socket]]]) -> None:
        keep = {id(s) for slots in self.sockets.values() for socks in slots for s in socks}
        for slots in old.values():
            for socks in slots:
                for s in socks:
                    if id(s) not in keep:
                        s.close()

    # ------------------------------------------------------------------ workers

    async def start_worker(self, slot: int) -> Worker | None:
        """Start slot's worker and wait until it serves (None: it failed)."""
        spec = [
            (a.host, a.port, [s.fileno() for s in socks[slot]]) for a, socks in self.sockets.items()
        ]
        fds = [fd for _, _, fdl in spec for fd in fdl]
        r, w = os.pipe()
        cmd = [
            sys.executable,
            "-m",
            "proxy",
            "-c",
            self.config.file,
            "--log-level",
            logging.getLevelName(logging.getLogger().level).lower(),
            "--worker-fds",
            json.dumps(spec),
            "--ready-fd",
            str(w),
        ]
        try:
            proc = await trio.lowlevel.open_process(
                cmd, stdin=subprocess.DEVNULL, pass_fds=[*fds, w]
            )
        finally:
            os.close(w)
        worker = Worker(slot, proc, trio.current_time())
        log.info("worker %d started (pid %d)", slot, proc.pid)
        ready = False
        with trio.move_on_after(READY_TIMEOUT):
            async with trio.lowlevel.FdStream(r) as pipe:
                ready = bool(await pipe.receive_some(1))
        if not ready:
            log.error("worker %d (pid %d) did not start", slot, proc.pid)
            with _quiet():
                proc.kill()
            return None
        return worker

    async def supervise(self, worker: Worker) -> None:
        """Wait for ``worker`` to exit; start a replacement if it died."""
        code = await worker.proc.wait()
        from proxy.metrics.export import worker_exited

        worker_exited(worker.proc.pid)  # its live gauges leave the merged scrape
        if worker.retiring or self.stopping:
            log.info("worker %d (pid %d) exited with %d", worker.slot, worker.proc.pid, code)
            return
        log.error(
            "worker %d (pid %d) died (exit %d): starting a new one",
            worker.slot,
            worker.proc.pid,
            code,
        )
        delay = RESTART_DELAY - (trio.current_time() - worker.started)
        if delay > 0:
            await trio.sleep(delay)
        if self.stopping or self.workers.get(worker.slot) is not worker:
            return
        await self.replace(worker.slot)

    async def replace(self, slot: int) -> bool:
        new = await self.start_worker(slot)
        if new is None:
            return False
        if self.stopping:
            new.retiring = True
            _signal(new, signal.SIGTERM)
        old = self.workers.get(slot)
        self.workers[slot] = new
        self.nursery.start_soon(self.supervise, new)
        if old is not None and old.proc.returncode is None:
            old.retiring = True
            _signal(old, signal.SIGQUIT)  # graceful drain
        return True

    # ------------------------------------------------------------------ signals

    async def reload(self) -> None:
        try:
            config = load(self.config.file)
            sockets = self.bind(config)
        except (ConfigError, StartupError) as e:
            log.error("reload failed, keeping the running configuration: %s", e)
            return
        old_sockets, self.sockets = self.sockets, sockets
        old_workers = dict(self.workers)
        self.config = config
        results: list[bool] = []
        async with trio.open_nursery() as nursery:
            for slot in range(config.worker_processes):
                nursery.start_soon(_collect, self.replace(slot), results)
        for slot, worker in old_workers.items():
            if slot >= config.worker_processes:
                worker.retiring = True
                _signal(worker, signal.SIGQUIT)
                del self.workers[slot]
        self.release_unused(old_sockets)
        for line in warnings(config):
            log.warning("%s", line)
        if all(results):
            log.info("configuration reloaded from %s", config.file)
        else:
            log.error("reload: some workers did not start")

    async def stop(self, signum: int) -> None:
        self.stopping = True
        workers = [w for w in self.workers.values() if w.proc.returncode is None]
        for w in workers:
            w.retiring = True
            _signal(w, signum)
        wait = self.config.shutdown_timeout + KILL_GRACE if signum != signal.SIGINT else 2.0
        with trio.move_on_after(wait):
            for w in workers:
                await w.proc.wait()
        for w in workers:
            if w.proc.returncode is None:
                log.warning("worker %d (pid %d) did not exit: killing it", w.slot, w.proc.pid)
                with _quiet():
                    w.proc.kill()
                await w.proc.wait()


async def _collect(coro: Awaitable[bool], results: list[bool]) -> None:
    results.append(await coro)


async def _master(config: Config) -> int:
    signals = [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP]
    with trio.open_signal_receiver(*signals) as receiver:
        async with trio.open_nursery() as nursery:
            master = Master(nursery, config)
            try:
                master.sockets = master.bind(config)
            except StartupError as e:  # here, not in run_master: trio wraps it in a group
                log.error("%s", e)
                nursery.cancel_scope.cancel()
                return 1
            log.info("master %d: %d workers", os.getpid(), config.worker_processes)
            for address in master.sockets:
                log.info("listening on %s", address)
            async with trio.open_nursery() as starting:
                for slot in range(config.worker_processes):
                    starting.start_soon(master.replace, slot)
            if not master.workers:
                log.error("no worker started")
                nursery.cancel_scope.cancel()
                return 1
            async for signum in receiver:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: reloading %s", master.config.file)
                    await master.reload()
                    continue
                log.info("%s: stopping the workers", name)
                await master.stop(signum)
                nursery.cancel_scope.cancel()
                break
            master.release_unused(master.sockets)
    return 0


def _bind(listen: Listen) -> list[socket.socket]:
    """Listening SO_REUSEPORT sockets for every address ``listen`` names."""
    address = listen.address
    host = None if address.host in ("*", "0.0.0.0", "") else address.host
    try:
        infos = socket.getaddrinfo(
            host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as e:
        raise StartupError(f"{where(listen)}cannot listen on {address}: {e}") from None
    socks: list[socket.socket] = []
    seen: set[object] = set()
    try:
        for family, kind, proto, _, sockaddr in infos:
            if sockaddr in seen:
                continue
            seen.add(sockaddr)
            s = socket.socket(family, kind, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(sockaddr)
            s.listen(BACKLOG)
    except OSError as e:
        for s in socks:
            s.close()
        reason = e.strerror.lower() if e.strerror else str(e)
        raise StartupError(f"{where(listen)}cannot listen on {address}: {reason}") from None
    return socks


def _signal(worker: Worker, signum: int) -> None:
    with _quiet():
        worker.proc.send_signal(signum)


class _quiet:
    """Ignore ProcessLookupError: the process may be gone already."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(kind, type) and issubclass(kind, ProcessLookupError)


def worker_sockets(spec: str) -> dict[Address, list[socket.socket]]:
    """The ``--worker-fds`` JSON the master passes: [[host, port, [fd...]]...]."""
    result: dict[Address, list[socket.socket]] = {}
    for host, port, fds in json.loads(spec):
        result[Address(host, int(port))] = [socket.socket(fileno=int(fd)) for fd in fds]
    return result
