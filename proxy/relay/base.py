"""What the parts of the relay share, and the seams between them.

The relay is one object built from parts, a module each: ``routing`` (a new
request becomes a call), ``retry`` (an endpoint for it, and another after a
refusal), ``pump`` (flow-controlled forwarding both ways), ``timers``
(deadlines, idle and send timeouts) and ``endings`` (how a call ends).
``relay.Relay`` makes the shared state below and turns the connection cores'
events into calls to the parts. One object, so the hot path costs what one
class would: no component lookups, no indirection.

The parts form one chain of single inheritance, as mypyc compiles no other
(setup.py): ``Relay`` < ``Routing`` < ``Retry`` < ``Pump`` < ``Timers`` <
``Endings`` < ``RelayBase``. A part calls the parts below it directly; what
it calls in a part above it is a seam, declared here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.balancing.pool import PoolSnapshot
    from proxy.http2.connection import Stream
    from proxy.relay.call import Pending, RelayStream
    from proxy.relay.link import Link
    from proxy.relay.observer import CallObserver
    from proxy.relay.queue import WaitQueues
    from proxy.relay.reply import Reply
    from proxy.relay.retry import Connector
    from proxy.relay.timers import Deadlines


class RelayBase:
    # The shared state (made by Relay.__init__).
    pools: dict[str, PoolSnapshot]  # by upstream name: the live snapshots
    clock: Callable[[], float]
    connector: Connector | None  # finds or opens upstream connections
    observer: CallObserver | None  # metrics and access log
    now: float  # read once per batch at each entry point, not per frame
    active: dict[RelayStream, None]  # calls not done, in arrival order
    dirty: set[Link]  # links with output since the last flush
    deadlines: Deadlines  # grpc-timeout, enforced at the proxy
    queues: WaitQueues  # calls waiting for a max_conns slot

    # The seams: what a part calls in a part above it in the chain (see the
    # module docstring), defined there. Real methods, not stubs under
    # TYPE_CHECKING: mypyc compiles calls to them through the vtable.

    def _retry_refused(self, rs: RelayStream) -> None:  # retry
        raise NotImplementedError

    def _release_endpoint(self, rs: RelayStream) -> None:  # retry
        raise NotImplementedError

    def _pump_reply(self, link: Link, reply: Reply) -> None:  # pump
        raise NotImplementedError

    def _discard(
        self,
        p: Pending,
        sender: Link | None,
        stream: Stream | None,
        receiver: Link | None,
        rs: RelayStream,
    ) -> None:  # pump
        raise NotImplementedError
