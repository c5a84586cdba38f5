"""One pass over the pending messages per sweep of Flower's simulation engine (flwr 1.42).

Flower's Simulation Engine hands messages to the ClientApp actors from a thread that, every
0.1 s, asks the in-memory LinkState for the next message *of each node* in turn
(``vce_api.add_messages_to_queue``). Each such call scans every stored message and re-checks
it (expiry, federation membership), holding the state's lock. With 10,000 SuperNodes and 100
messages in flight, that is about a million checks per sweep, under the lock the ServerApp
needs too: rounds that need 10 s of device work took 150 s.

:func:`fast_dispatch` swaps in :func:`dispatch_pending`, which scans the stored messages once
per sweep with the same rules (expired or out-of-federation messages dropped by the state's own
check, at most one message per node per sweep, each marked delivered when queued). Anything
but the in-memory LinkState goes to Flower's own loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from queue import Queue
from threading import Event
from typing import Any

__all__ = ["dispatch_pending", "fast_dispatch"]


def dispatch_pending(state: Any, queue: Queue[Any], nodes_mapping: Mapping[int, int], f_stop: Event) -> None:
    """Queue the undelivered messages of the simulated nodes, one pass over the store per sweep."""
    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.server.superlink.linkstate import InMemoryLinkState
    from flwr.supercore.date import now

    original = getattr(vce_api, "_vane_original_dispatch", None)
    if not isinstance(state, InMemoryLinkState) and original is not None:
        original(state, queue, nodes_mapping, f_stop)
        return
    while not f_stop.is_set():
        batch: list[Any] = []
        with state.lock:
            pending = [mid for mid, msg in state.message_ins_store.items() if msg.metadata.delivered_at == ""]
            if pending:
                state._check_stored_messages(set(pending))  # drops expired / out-of-federation messages
            nodes: set[int] = set()
            for mid in pending:
                msg = state.message_ins_store.get(mid)
                if msg is None or msg.metadata.delivered_at != "":
                    continue
                node = int(msg.metadata.dst_node_id)
                if node in nodes or node not in nodes_mapping:
                    continue
                nodes.add(node)
                batch.append(msg)
            stamp = now().isoformat()
            for msg in batch:
                msg.metadata.delivered_at = stamp
        for msg in batch:
            queue.put(msg)
        f_stop.wait(0.1)


@contextmanager
def fast_dispatch() -> Iterator[None]:
    """Use :func:`dispatch_pending` in Flower's simulation engine for the duration of the block."""
    from flwr.server.superlink.fleet.vce import vce_api

    original = vce_api.add_messages_to_queue
    vce_api._vane_original_dispatch = original  # type: ignore[attr-defined]
    vce_api.add_messages_to_queue = dispatch_pending
    try:
        yield
    finally:
        vce_api.add_messages_to_queue = original
