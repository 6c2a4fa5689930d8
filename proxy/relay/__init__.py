"""The relay: client streams paired with upstream streams (pure, no I/O).

call.py      one call (RelayStream), its states (CallState) and moves
relay.py     Relay: takes the connection cores' events, calls the parts
base.py      what the parts share, and the seams between them
routing.py   a new request: refused, or made a call
retry.py     an endpoint for the call, and another after a refusal; Connector
pump.py      flow-controlled forwarding both ways, and the proxy's replies
timers.py    deadlines, queue, idle and send timeouts (tick)
endings.py   how a call ends
link.py      a connection core as the relay sees it
queue.py     calls waiting for a max_conns slot
reply.py     a short non-gRPC reply with a body
messages.py  counting gRPC messages
observer.py  what metrics and access logs hear
"""

from proxy.relay.call import CallState, CallStateError, Pending, RelayStream
from proxy.relay.link import Link
from proxy.relay.observer import CallObserver
from proxy.relay.relay import Relay
from proxy.relay.reply import Reply
from proxy.relay.retry import Connector

__all__ = [
    "CallObserver",
    "CallState",
    "CallStateError",
    "Connector",
    "Link",
    "Pending",
    "Relay",
    "RelayStream",
    "Reply",
]
