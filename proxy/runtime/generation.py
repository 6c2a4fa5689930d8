"""Everything built from one ``Config``, replaced as a whole by a reload.

Per-config services (active health checks, discovery feeds, ...) start here:
the starters the runtime was given (``PER_CONFIG_SERVICES`` in
proxy/runtime/services.py, the one list). A starter is called once per
generation, in that order, as ``starter(generation, nursery)``, and starts its
tasks in ``nursery``; that nursery is cancelled when a reload replaces the
generation (after the new one's services have started, so there is no gap).
A service that reads or changes live pools (``relay.pools``) must first wait
for ``generation.activated`` (services start before the switch), and check
``generation.current`` before writing, so an old generation never overwrites
a newer one.

Process-wide state other services read lives on ``Runtime`` (proxy/runtime/
main.py): ``runtime.draining`` (True from the moment SIGTERM/SIGQUIT starts a
drain; a readiness probe answers 503 from then on) and the
``runtime.drain_started`` event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from proxy.balancing.pool import PoolSnapshot
from proxy.config.model import Config

if TYPE_CHECKING:
    from proxy.runtime.main import Runtime

ServiceStarter = Callable[["Generation", trio.Nursery], None]


class Generation:
    def __init__(
        self,
        number: int,
        config: Config,
        pools: dict[str, PoolSnapshot],
        runtime: Runtime,
        services: Sequence[ServiceStarter] = (),
    ) -> None:
        self.number = number
        self.config = config
        self.pools = pools  # as built from the file; relay.pools is the live view
        self.runtime = runtime
        self.services = tuple(services)
        self._scope = trio.CancelScope()
        # Set at the switch, once relay.pools holds this generation's pools:
        # services that read or replace live pools wait for it.
        self.activated = trio.Event()

    @property
    def current(self) -> bool:
        return self.runtime.generation is self

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the per-config services; run them until ``stop``."""
        with self._scope:
            async with trio.open_nursery() as nursery:
                for start in self.services:
                    start(self, nursery)
                task_status.started()
                await trio.sleep_forever()

    def stop(self) -> None:
        self._scope.cancel()
