"""Access log: one line per finished call, formatted and written by a task,
never by the relay.

The relay's recorder appends a record tuple to a bounded queue per log
(``AccessLogQueue``); a writer task per log takes the queue every
``FLUSH_INTERVAL``, formats it, and writes it from a worker thread so a slow
disk delays the log, not the calls. A full queue drops records and counts them
(``grpc_proxy_access_log_dropped_total`` and a warning).

Formats: ``combined`` is nginx's combined line with gRPC fields appended;
``json`` is one object per line.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

import trio

from proxy.config.model import AccessLog, Config, Server
from proxy.metrics.observer import CODE_NAMES, AccessLogQueue, Record

log = logging.getLogger("grpc_proxy.access_log")

FLUSH_INTERVAL = 0.5
QUEUE_LIMIT = 65536  # records per log between two flushes; above: dropped, counted

# Record fields, in the order CallRecorder writes them.
(
    TIME,
    PEER,
    PATH,
    UPSTREAM,
    ENDPOINT,
    HTTP_STATUS,
    GRPC_STATUS,
    SECONDS,
    REQ_BYTES,
    RES_BYTES,
    REQ_MSGS,
    RES_MSGS,
    ERROR,
    HEADERS,
    USER,
    SUBJECT,
) = range(16)


# ------------------------------------------------------------------ formats


def _escape(text: str) -> str:
    """nginx's escaping of logged strings: quote, backslash and control
    characters become \\xHH, so a line stays one line and parseable."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c not in '"\\' else f"\\x{ord(c):02X}" for c in text)


def _user_agent(headers: Any) -> str:
    if headers:
        for name, value in headers:
            if name == b"user-agent":
                return str(value.decode("latin-1"))
    return ""


def _host(peer: str) -> str:
    host, sep, _ = peer.rpartition(":")
    return host.strip("[]") if sep else peer


class _LocalTime:
    """``[21/Nov/2026:12:40:15 +0000]``, made once per second."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def __call__(self, t: float) -> str:
        s = int(t)
        if s != self.second:
            self.second = s
            self.text = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(s))
        return self.text


_local_time = _LocalTime()


class _IsoTime:
    """``2026-11-21T12:40:15.123+00:00`` (UTC), the seconds part made once
    per second."""

    __slots__ = ("second", "prefix")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self, t: float) -> str:
        s = int(t)
        if s != self.second:
            self.second = s
            self.prefix = datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self.prefix}.{int((t - s) * 1000):03d}+00:00"


_iso_time = _IsoTime()
_quote = encode_basestring  # a JSON string literal, non-ASCII kept as is


def _remote_user(r: Record) -> str:
    """nginx's $remote_user: the bearer token's name, else the TLS client
    subject; never the token itself."""
    if len(r) <= USER:
        return "-"
    user = r[USER] or r[SUBJECT]
    return _escape(user).replace(" ", "\\x20") if user else "-"


def format_combined(r: Record) -> str:
    """``$remote_addr - $remote_user [$time_local] "POST $path HTTP/2.0" $status
    $bytes_sent "-" "$http_user_agent"`` (nginx's combined), then: grpc-status
    code name, upstream endpoint, request time (s), request bytes, response
    bytes, request messages, response messages, "error" ("-" when none)."""
    endpoint = r[ENDPOINT]
    return (
        f"{_host(r[PEER])} - {_remote_user(r)} [{_local_time(r[TIME])}] "
        f'"POST {_escape(r[PATH])} HTTP/2.0" '
        f'{r[HTTP_STATUS]} {r[RES_BYTES]} "-" "{_escape(_user_agent(r[HEADERS])) or "-"}" '
        f"{r[GRPC_STATUS]} {CODE_NAMES.get(r[GRPC_STATUS], 'UNKNOWN')} "
        f"{endpoint if endpoint is not None else '-'} {r[SECONDS]:.6f} "
        f"{r[REQ_BYTES]} {r[RES_BYTES]} {r[REQ_MSGS]} {r[RES_MSGS]} "
        f'"{_escape(r[ERROR]) or "-"}"\n'
    )


def _js(text: str | None) -> str:
    return "null" if not text else _quote(text)


def format_json(r: Record) -> str:
    """One JSON object; built by hand (strings through json's C quoting),
    several times faster than encoding a dict per line."""
    endpoint = r[ENDPOINT]
    status = r[GRPC_STATUS]
    return (
        f'{{"time":"{_iso_time(r[TIME])}","client":{_quote(r[PEER])},'
        f'"path":{_quote(r[PATH])},"upstream":{_js(r[UPSTREAM])},'
        f'"endpoint":{_js(str(endpoint)) if endpoint is not None else "null"},'
        f'"http_status":{r[HTTP_STATUS]},"grpc_status":{status},'
        f'"code":"{CODE_NAMES.get(status, "UNKNOWN")}","duration":{r[SECONDS]:.6f},'
        f'"request_bytes":{r[REQ_BYTES]},"response_bytes":{r[RES_BYTES]},'
        f'"request_messages":{r[REQ_MSGS]},"response_messages":{r[RES_MSGS]},'
        f'"error":{_js(r[ERROR])},"user_agent":{_js(_user_agent(r[HEADERS]))}'
        f"{_identity(r)}}}\n"
    )


def _identity(r: Record) -> str:
    """``"user"`` (the bearer token's name) and ``"tls_subject"``, when known."""
    if len(r) <= USER or (r[USER] is None and r[SUBJECT] is None):
        return ""
    return f',"user":{_js(r[USER])},"tls_subject":{_js(r[SUBJECT])}'


def format_records(records: Iterable[Record], as_json: bool) -> bytes:
    fmt = format_json if as_json else format_combined
    return "".join(fmt(r) for r in records).encode("utf-8", "backslashreplace")


# ------------------------------------------------------------------- wiring


class AccessLogFile:
    """One destination (a path or stderr) and the queues that write to it
    (one per format)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.queues: dict[bool, AccessLogQueue] = {}  # json? -> queue
        self.warned_dropped = 0

    def queue(self, as_json: bool) -> AccessLogQueue:
        q = self.queues.get(as_json)
        if q is None:
            q = self.queues[as_json] = AccessLogQueue(as_json, QUEUE_LIMIT)
        return q

    def close(self) -> None:
        if self.fd != sys.stderr.fileno():
            os.close(self.fd)


def effective(server: Server, config: Config) -> AccessLog | None:
    """A server's own ``access_log`` wins over the main context's."""
    setting = server.access_log if server.access_log is not None else config.access_log
    return setting if setting is not None and setting.enabled else None


def open_logs(
    config: Config,
) -> tuple[dict[int, tuple[Server, AccessLogQueue]], list[AccessLogFile]]:
    """Open every log the servers use, as nginx does at start: an unwritable
    log is a startup error (``OSError`` with the directive's place in it)."""
    files: dict[str, AccessLogFile] = {}
    targets: dict[int, tuple[Server, AccessLogQueue]] = {}
    try:
        for server in config.servers:
            setting = effective(server, config)
            if setting is None:
                continue
            f = files.get(setting.path)
            if f is None:
                f = files[setting.path] = AccessLogFile(setting.path, _open(setting))
            targets[id(server)] = (server, f.queue(setting.json))
    except OSError:
        for f in files.values():
            f.close()
        raise
    return targets, list(files.values())


def check_logs(config: Config) -> None:
    """What ``grpc-proxy -t`` does, as nginx's: open (creating it if missing)
    and close every log file the servers use; ``OSError`` as ``open_logs``."""
    seen: set[str] = set()
    for server in config.servers:
        setting = effective(server, config)
        if setting is None or setting.path == "stderr" or setting.path in seen:
            continue
        seen.add(setting.path)
        os.close(_open(setting))


def _open(setting: AccessLog) -> int:
    if setting.path == "stderr":
        return sys.stderr.fileno()
    try:
        return os.open(setting.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        where = f"{setting.source}: " if setting.source is not None else ""
        raise OSError(
            e.errno,
            f'{where}cannot open access log "{setting.path}": {(e.strerror or str(e)).lower()}',
        ) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write(f: AccessLogFile) -> None:
    """Format and write what the queues hold (blocking: not on the trio thread
    for files)."""
    for as_json, q in f.queues.items():
        records = q.take()
        if records:
            _write_all(f.fd, format_records(records, as_json))


async def run_writer(f: AccessLogFile) -> None:
    """Flush ``f`` every FLUSH_INTERVAL until cancelled; then once more."""
    try:
        while True:
            await trio.sleep(FLUSH_INTERVAL)
            batches = [(as_json, q.take()) for as_json, q in f.queues.items()]
            if any(records for _, records in batches):
                await trio.to_thread.run_sync(_write_batches, f.fd, batches)
            dropped = sum(q.dropped for q in f.queues.values())
            if dropped > f.warned_dropped:
                log.warning(
                    "access log %s: %d lines dropped, the log cannot keep up",
                    f.path,
                    dropped - f.warned_dropped,
                )
                f.warned_dropped = dropped
    finally:
        try:
            _write(f)
        except OSError as e:
            log.warning("access log %s: %s", f.path, e)
        f.close()


def _write_batches(fd: int, batches: list[tuple[bool, list[Record]]]) -> None:
    for as_json, records in batches:
        if records:
            try:
                _write_all(fd, format_records(records, as_json))
            except OSError as e:
                log.warning("access log write failed: %s", e)
