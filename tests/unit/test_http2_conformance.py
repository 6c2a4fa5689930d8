"""RFC 9113 / RFC 7541 MUSTs as the public conformance suite (h2spec) checks
them, case by case, against the server side of the core: raw frames in, and
the exact connection error (GOAWAY code), stream error (RST_STREAM code) or
silence that the RFC requires out. The section numbers are h2spec's."""

from __future__ import annotations

from collections.abc import Callable

import hpack
import pytest
from hyperframe import frame as hf

from proxy.http2 import frames as f
from proxy.http2.connection import Connection
from tests.unit.frame_factory import REQUEST, FrameFactory, parse_frames

E = f.ErrorCode
GOAWAY, RST, OK = "goaway", "rst", "ok"


def raw(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return f.frame_header(len(payload), ftype, flags, sid) + payload


def block(headers: list[tuple[bytes, bytes]] = REQUEST) -> bytes:
    return hpack.Encoder().encode(headers)


BASE = block([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a")])
NO_PATH = [h for h in REQUEST if h[0] != b":path"]


def req(
    sid: int,
    headers: list[tuple[bytes, bytes]] = REQUEST,
    end_stream: bool = False,
) -> bytes:
    flags = f.END_HEADERS | (f.END_STREAM if end_stream else 0)
    return raw(f.HEADERS, flags, sid, block(headers))


# Each case: frames after the preface -> (GOAWAY, code) | (RST, {sid: code}) | (OK, None)
Case = tuple[Callable[[FrameFactory], bytes], tuple[str, object]]
CASES: dict[str, Case] = {
    # 4.1 frame format: unknown types, unknown flags and the reserved bit are ignored.
    "4.1/unknown-type": (lambda ff: raw(0x20, 0, 0, b"xx") + ff.ping(), (OK, None)),
    "4.1/unknown-flags": (lambda ff: raw(f.PING, 0x16, 0, b"12345678"), (OK, None)),
    "4.1/reserved-bit": (lambda ff: raw(f.PING, 0, 0x80000000, b"12345678"), (OK, None)),
    # 4.2 frame size.
    "4.2/data-16384": (lambda ff: ff.headers(1) + ff.data(1, b"x" * 16384), (OK, None)),
    "4.2/data-too-large": (
        lambda ff: ff.headers(1) + raw(f.DATA, 0, 1, b"x" * 16385),
        (GOAWAY, E.FRAME_SIZE_ERROR),
    ),
    "4.2/headers-too-large": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, b"\x00" * 16385),
        (GOAWAY, E.FRAME_SIZE_ERROR),
    ),
    # 4.3 header compression and decompression.
    "4.3/invalid-block": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, b"\xff\xff\xff\xff"),
        (GOAWAY, E.COMPRESSION_ERROR),
    ),
    "4.3/priority-inside-block": (
        lambda ff: ff.headers(1, end_headers=False) + ff.priority(1, 0),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    "4.3/headers-to-other-stream-inside-block": (
        lambda ff: ff.headers(1, end_headers=False) + ff.headers(3),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    # 5.1 stream states.
    "5.1/idle-data": (lambda ff: ff.data(1, b"x"), (GOAWAY, E.PROTOCOL_ERROR)),
    "5.1/idle-rst": (lambda ff: ff.rst_stream(1, E.CANCEL), (GOAWAY, E.PROTOCOL_ERROR)),
    "5.1/idle-window-update": (lambda ff: ff.window_update(1, 100), (GOAWAY, E.PROTOCOL_ERROR)),
    "5.1/idle-continuation": (lambda ff: ff.continuation(1, BASE), (GOAWAY, E.PROTOCOL_ERROR)),
    "5.1/half-closed-data": (
        lambda ff: ff.headers(1, end_stream=True) + ff.data(1, b"x"),
        (RST, {1: E.STREAM_CLOSED}),
    ),
    "5.1/half-closed-headers": (
        lambda ff: ff.headers(1, end_stream=True) + req(1, [(b"x", b"1")], end_stream=True),
        (RST, {1: E.STREAM_CLOSED}),
    ),
    "5.1/half-closed-continuation": (
        lambda ff: ff.headers(1, end_stream=True) + ff.continuation(1, BASE),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    "5.1/closed-data-after-rst": (
        lambda ff: ff.headers(1) + ff.rst_stream(1, E.CANCEL) + ff.data(1, b"x"),
        (RST, {1: E.STREAM_CLOSED}),
    ),
    "5.1/closed-continuation": (
        lambda ff: ff.headers(1) + ff.rst_stream(1, E.CANCEL) + ff.continuation(1, BASE),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    "5.1.1/even-stream": (lambda ff: req(2), (GOAWAY, E.PROTOCOL_ERROR)),
    "5.1.1/decreasing-stream": (lambda ff: req(5) + req(3), (GOAWAY, E.PROTOCOL_ERROR)),
    # 5.3.1 stream dependencies.
    "5.3.1/headers-depends-on-itself": (
        lambda ff: ff.headers(1, priority_depends_on=1),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "5.3.1/priority-depends-on-itself": (
        lambda ff: ff.priority(1, 1),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    # 5.5 extensions: an unknown frame inside a header block.
    "5.5/unknown-inside-block": (
        lambda ff: ff.headers(1, end_headers=False) + raw(0x20, 0, 1, b""),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    # 6.1 DATA.
    "6.1/stream-0": (lambda ff: raw(f.DATA, 0, 0, b"x"), (GOAWAY, E.PROTOCOL_ERROR)),
    "6.1/bad-padding": (
        lambda ff: ff.headers(1) + raw(f.DATA, f.PADDED, 1, b"\x05abc"),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    # 6.2 HEADERS.
    "6.2/stream-0": (lambda ff: raw(f.HEADERS, f.END_HEADERS, 0, BASE), (GOAWAY, E.PROTOCOL_ERROR)),
    "6.2/bad-padding": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS | f.PADDED, 1, b"\xff" + BASE),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    # 6.3 PRIORITY.
    "6.3/stream-0": (lambda ff: raw(f.PRIORITY, 0, 0, b"\x00" * 5), (GOAWAY, E.PROTOCOL_ERROR)),
    "6.3/length-4": (lambda ff: raw(f.PRIORITY, 0, 1, b"\x00" * 4), (RST, {1: E.FRAME_SIZE_ERROR})),
    "6.3/idle-is-fine": (lambda ff: ff.priority(9, 0) + req(1), (OK, None)),
    # 6.4 RST_STREAM.
    "6.4/stream-0": (lambda ff: raw(f.RST_STREAM, 0, 0, b"\x00" * 4), (GOAWAY, E.PROTOCOL_ERROR)),
    "6.4/length-3": (
        lambda ff: ff.headers(1) + raw(f.RST_STREAM, 0, 1, b"\x00" * 3),
        (GOAWAY, E.FRAME_SIZE_ERROR),
    ),
    # 6.5 SETTINGS.
    "6.5/ack-with-payload": (
        lambda ff: raw(f.SETTINGS, f.ACK, 0, b"\x00" * 6),
        (GOAWAY, E.FRAME_SIZE_ERROR),
    ),
    "6.5/on-stream": (lambda ff: raw(f.SETTINGS, 0, 1, b""), (GOAWAY, E.PROTOCOL_ERROR)),
    "6.5/length-3": (lambda ff: raw(f.SETTINGS, 0, 0, b"\x00" * 3), (GOAWAY, E.FRAME_SIZE_ERROR)),
    "6.5.2/enable-push-2": (
        lambda ff: ff.settings({f.SETTINGS_ENABLE_PUSH: 2}),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    "6.5.2/initial-window-too-large": (
        lambda ff: ff.settings({f.SETTINGS_INITIAL_WINDOW_SIZE: 2**31}),
        (GOAWAY, E.FLOW_CONTROL_ERROR),
    ),
    "6.5.2/max-frame-size-too-small": (
        lambda ff: ff.settings({f.SETTINGS_MAX_FRAME_SIZE: 16383}),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    "6.5.2/max-frame-size-too-large": (
        lambda ff: ff.settings({f.SETTINGS_MAX_FRAME_SIZE: 2**24}),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    "6.5.2/unknown-setting": (lambda ff: ff.settings({0xFF: 1}), (OK, None)),
    # 6.7 PING.
    "6.7/on-stream": (lambda ff: raw(f.PING, 0, 1, b"12345678"), (GOAWAY, E.PROTOCOL_ERROR)),
    "6.7/length-6": (lambda ff: raw(f.PING, 0, 0, b"123456"), (GOAWAY, E.FRAME_SIZE_ERROR)),
    # 6.8 GOAWAY.
    "6.8/on-stream": (lambda ff: raw(f.GOAWAY, 0, 1, b"\x00" * 8), (GOAWAY, E.PROTOCOL_ERROR)),
    # 6.9 WINDOW_UPDATE.
    "6.9/zero-on-connection": (lambda ff: ff.window_update(0, 0), (GOAWAY, E.PROTOCOL_ERROR)),
    "6.9/zero-on-stream": (
        lambda ff: ff.headers(1) + ff.window_update(1, 0),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "6.9/length-3": (
        lambda ff: raw(f.WINDOW_UPDATE, 0, 0, b"\x00" * 3),
        (GOAWAY, E.FRAME_SIZE_ERROR),
    ),
    "6.9.1/connection-overflow": (
        lambda ff: ff.window_update(0, 2**31 - 1) * 2,
        (GOAWAY, E.FLOW_CONTROL_ERROR),
    ),
    "6.9.1/stream-overflow": (
        lambda ff: ff.headers(1) + ff.window_update(1, 2**31 - 1) * 2,
        (RST, {1: E.FLOW_CONTROL_ERROR}),
    ),
    "6.9.2/initial-window-overflow": (
        lambda ff: (
            ff.headers(1)
            + ff.window_update(1, 2**31 - 1 - 65535)
            + ff.settings({f.SETTINGS_INITIAL_WINDOW_SIZE: 65536})
        ),
        (GOAWAY, E.FLOW_CONTROL_ERROR),
    ),
    # 6.10 CONTINUATION.
    "6.10/several-continuations": (
        lambda ff: (
            raw(f.HEADERS, 0, 1, BASE[:1])
            + raw(f.CONTINUATION, 0, 1, BASE[1:2])
            + raw(f.CONTINUATION, f.END_HEADERS, 1, BASE[2:])
        ),
        (OK, None),
    ),
    "6.10/after-end-headers": (
        lambda ff: ff.headers(1) + ff.continuation(1, b""),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    "6.10/followed-by-data": (
        lambda ff: ff.headers(1, end_headers=False) + ff.data(1, b"x"),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    "6.10/on-stream-0": (
        lambda ff: ff.headers(1, end_headers=False) + raw(f.CONTINUATION, f.END_HEADERS, 0, b""),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    "6.10/other-stream": (
        lambda ff: ff.headers(1, end_headers=False) + ff.continuation(3, b""),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    # 8.1 HTTP message framing.
    "8.1/second-headers-without-end-stream": (
        lambda ff: ff.headers(1) + req(1, [(b"x-trailer", b"1")]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.1.1/content-length-too-short": (
        lambda ff: ff.headers(1, REQUEST + [(b"content-length", b"1")]) + ff.data(1, b"ab"),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.1.1/content-length-too-long": (
        lambda ff: (
            ff.headers(1, REQUEST + [(b"content-length", b"3")])
            + ff.data(1, b"ab", end_stream=True)
        ),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    # 8.2 fields; 8.3 pseudo-headers: malformed requests are stream errors.
    "8.2/uppercase-name": (
        lambda ff: req(1, REQUEST + [(b"X-Up", b"1")]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.2.2/connection-header": (
        lambda ff: req(1, REQUEST + [(b"connection", b"close")]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.2.2/te-not-trailers": (
        lambda ff: req(1, REQUEST[:5] + [(b"te", b"trailers, deflate")]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.3/unknown-pseudo": (
        lambda ff: req(1, REQUEST[:4] + [(b":foo", b"x")] + REQUEST[4:]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.3/response-pseudo": (
        lambda ff: req(1, REQUEST[:4] + [(b":status", b"200")] + REQUEST[4:]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.3/pseudo-in-trailers": (
        lambda ff: ff.headers(1) + req(1, [(b":method", b"POST")], end_stream=True),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.3/pseudo-after-regular": (
        lambda ff: req(1, REQUEST[4:] + REQUEST[:4]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.3.1/empty-path": (
        lambda ff: req(1, [(b":path", b"") if h[0] == b":path" else h for h in REQUEST]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.3.1/missing-method": (lambda ff: req(1, REQUEST[1:]), (RST, {1: E.PROTOCOL_ERROR})),
    "8.3.1/missing-scheme": (
        lambda ff: req(1, REQUEST[:1] + REQUEST[2:]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.3.1/missing-path": (lambda ff: req(1, NO_PATH), (RST, {1: E.PROTOCOL_ERROR})),
    "8.3.1/duplicate-method": (
        lambda ff: req(1, REQUEST[:1] + REQUEST),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.3.1/duplicate-scheme": (
        lambda ff: req(1, REQUEST[:2] + REQUEST[1:]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    "8.3.1/duplicate-path": (
        lambda ff: req(1, REQUEST[:3] + REQUEST[2:]),
        (RST, {1: E.PROTOCOL_ERROR}),
    ),
    # 8.4 server push: a client may not push.
    "8.4/push-promise": (
        lambda ff: raw(f.PUSH_PROMISE, f.END_HEADERS, 1, b"\x00\x00\x00\x02"),
        (GOAWAY, E.PROTOCOL_ERROR),
    ),
    # RFC 7541 (h2spec "hpack").
    "hpack/index-0": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, b"\x80" + BASE),
        (GOAWAY, E.COMPRESSION_ERROR),
    ),
    "hpack/index-out-of-range": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, b"\xff\x7f" + BASE),
        (GOAWAY, E.COMPRESSION_ERROR),
    ),
    "hpack/size-update-at-end": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, BASE + b"\x20"),
        (GOAWAY, E.COMPRESSION_ERROR),
    ),
    "hpack/size-update-over-settings": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, b"\x3f\xe1\x3f" + BASE),  # 8192 > 4096
        (GOAWAY, E.COMPRESSION_ERROR),
    ),
    "hpack/size-update-ok": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, b"\x20\x3f\xe1\x1f" + BASE),
        (OK, None),
    ),
    "hpack/huffman-ok": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, BASE + b"\x00\x81\x1f\x81\x1f"),
        (OK, None),
    ),
    "hpack/huffman-padding-over-7-bits": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, BASE + b"\x00\x81\x1f\x82\x1f\xff"),
        (GOAWAY, E.COMPRESSION_ERROR),
    ),
    "hpack/huffman-padding-not-eos": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, BASE + b"\x00\x81\x1f\x81\x18"),
        (GOAWAY, E.COMPRESSION_ERROR),
    ),
    "hpack/huffman-eos-symbol": (
        lambda ff: raw(f.HEADERS, f.END_HEADERS, 1, BASE + b"\x00\x81\x1f\x84\xff\xff\xff\xff"),
        (GOAWAY, E.COMPRESSION_ERROR),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_conformance(name: str) -> None:
    build, (outcome, expected) = CASES[name]
    ff = FrameFactory()
    core = Connection(client=False)
    core.receive_data(ff.preamble())
    core.take_output()
    core.receive_data(build(ff))
    frames = parse_frames(core.take_output())
    goaways = [fr.error_code for fr in frames if isinstance(fr, hf.GoAwayFrame)]
    rsts = {fr.stream_id: fr.error_code for fr in frames if isinstance(fr, hf.RstStreamFrame)}
    if outcome == GOAWAY:
        assert goaways == [expected], (frames, core.close_reason)
        assert core.closed
    elif outcome == RST:
        assert not goaways and not core.closed, (frames, core.close_reason)
        assert rsts == expected
    else:
        assert not goaways and not rsts and not core.closed, (frames, core.close_reason)


def test_ping_is_acknowledged_and_an_ack_is_not() -> None:
    ff = FrameFactory()
    core = Connection(client=False)
    core.receive_data(ff.preamble())
    core.take_output()
    core.receive_data(ff.ping(b"abcdefgh") + ff.ping(b"zzzzzzzz", ack=True))
    (ack,) = parse_frames(core.take_output())
    assert isinstance(ack, hf.PingFrame) and "ACK" in ack.flags and ack.opaque_data == b"abcdefgh"


def test_client_goaway_lets_running_streams_finish() -> None:
    """6.8: a client's GOAWAY stops nothing that runs; the answer on each
    stream still goes out, and our own streams are not refused."""
    ff = FrameFactory()
    core = Connection(client=False)
    core.receive_data(ff.preamble())
    core.take_output()
    (req1,) = core.receive_data(ff.headers(1, end_stream=True))
    events = core.receive_data(ff.goaway(0))
    assert [type(e).__name__ for e in events] == ["GoAwayReceived"]
    assert not core.closed and 1 in core.streams
    core.send_headers(req1.stream, [(b":status", b"200")], True)
    out = parse_frames(core.take_output())
    assert isinstance(out[0], hf.HeadersFrame) and "END_STREAM" in out[0].flags
