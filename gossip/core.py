"""``GossipCore``: Serf over memberlist behind one sans-IO facade (docs/internals.md).

Theory of operation. The driver, the simulator and the agent talk to this class
only. It builds a ``Serf`` (``serf.py``) and a ``Memberlist`` (``memberlist.py``)
that share one ``Counters``; memberlist calls Serf as its delegate, Serf calls
memberlist back for packets, joins and leave. Every input is passed to the part
that owns it, then ``_pump`` runs:

1. ``Serf.advance``: leave and force-leave progress that depends on broadcasts
   having left their queues during the input just handled;
2. memberlist's outputs are drained in order. ``JoinFinished`` of a join this
   facade started makes Serf broadcast its join intent (serf ``Join``); that of a
   reconnect attempt Serf started is swallowed (the application never asked);
3. Serf's facts follow memberlist's commands, so packets queued in one step are
   performed before the facts of that step are reported (``LeaveFinished`` last).

Inputs carry ``now`` (monotonic seconds); nothing here reads a clock, sleeps or
touches a socket. ``next_deadline`` is the earlier of the two cores' deadlines.
"""

from __future__ import annotations

import logging
import random
from typing import Callable, Mapping, Sequence

from .config import GossipConfig
from .errors import LocalProtocolError
from .events import JoinFinished, Output
from .keyring import Keyring
from .memberlist import Memberlist
from .serf import Serf, SerfState
from .stats import Counters, GossipStats
from .types import Address, Member


class GossipCore:
    """One cluster member's gossip: memberlist + Serf, inputs in, outputs out."""

    def __init__(self, config: GossipConfig, *, name: str, addr: str, port: int,
                 tags: Mapping[str, str], keyring: Keyring | None, rng: random.Random,
                 entropy: Callable[[int], bytes], log: logging.LoggerAdapter | logging.Logger,
                 now: float) -> None:
        """Build both cores; tags are checked here (ConfigError if over 512 bytes).

        Args:
            entropy: random bytes for nonces; the keyring was built with it, kept
                here so every source of randomness enters through the constructor.
        """
        self.config = config
        self.name = name
        self._entropy = entropy
        self._counters = Counters()
        self._encrypted = keyring is not None
        self._serf = Serf(config, name=name, tags=tags, keyring=keyring, rng=rng, log=log,
                          counters=self._counters, now=now)
        self._memberlist = Memberlist(config, name=name, addr=addr, port=port,
                                      delegate=self._serf, keyring=keyring, rng=rng, log=log,
                                      counters=self._counters, now=now)
        self._serf.attach(self._memberlist, now)
        self._joins: dict[int, bool] = {}  # join id -> ignore_old_events
        self._outputs: list[Output] = []
        self._pump(now)

    # ------------------------------------------------------------------ plumbing

    def _pump(self, now: float) -> None:
        """Advance Serf, then move memberlist's and Serf's outputs to ours (module doc)."""
        self._serf.advance(now)
        for output in self._memberlist.take_outputs():
            if isinstance(output, JoinFinished):
                if output.join_id in self._serf.reconnect_join_ids:
                    self._serf.reconnect_join_ids.discard(output.join_id)
                    continue
                ignore_old = self._joins.pop(output.join_id, None)
                if ignore_old is not None:
                    self._serf.join_finished(output.num_joined, ignore_old, now)
            self._outputs.append(output)
        self._outputs.extend(self._serf.take_outputs())

    # ------------------------------------------------------------------ inputs

    def receive_packet(self, data: bytes, source: Address, now: float) -> None:
        """A UDP datagram arrived from ``source``."""
        self._memberlist.receive_packet(data, source, now)
        self._pump(now)

    def accept_stream(self, peer: Address, now: float) -> int:
        """A TCP connection from ``peer`` was accepted; returns its stream id."""
        stream_id = self._memberlist.accept_stream(peer, now)
        self._pump(now)
        return stream_id

    def stream_data(self, stream_id: int, data: bytes, now: float) -> None:
        """Bytes were read from stream ``stream_id``."""
        self._memberlist.stream_data(stream_id, data, now)
        self._pump(now)

    def stream_closed(self, stream_id: int, now: float) -> None:
        """The peer closed stream ``stream_id``."""
        self._memberlist.stream_closed(stream_id, now)
        self._pump(now)

    def stream_failed(self, stream_id: int, reason: str, now: float) -> None:
        """Connecting, reading or writing stream ``stream_id`` failed."""
        self._memberlist.stream_failed(stream_id, reason, now)
        self._pump(now)

    def join(self, seeds: Sequence[Address], now: float, *, ignore_old_events: bool = True) -> int:
        """Push/pull with each seed; ``JoinFinished(id, n, errors)`` follows.

        Once at least one seed answered, a Serf join intent is broadcast. With
        ``ignore_old_events`` user events older than the cluster's event clock
        (as learnt from the join push/pull) are not delivered.

        Raises:
            LocalProtocolError: called after leave or shutdown.
        """
        if self._serf.state != SerfState.ALIVE:
            raise LocalProtocolError("join after leave or shutdown")
        self._serf.join_started(ignore_old_events)
        join_id = self._memberlist.join(seeds, now)
        self._joins[join_id] = ignore_old_events
        self._pump(now)
        return join_id

    def leave(self, now: float) -> None:
        """Leave gracefully; ``LeaveFinished`` comes out when the driver may stop."""
        self._serf.leave(now)
        self._pump(now)

    def force_leave(self, name: str, prune: bool, now: float) -> int:
        """Force ``name`` to left (erase it with ``prune``); ``ForceLeaveFinished`` follows."""
        request_id = self._serf.force_leave(name, prune, now)
        self._pump(now)
        return request_id

    def user_event(self, name: str, payload: bytes, coalesce: bool, now: float) -> None:
        """Broadcast a user event.

        Raises:
            ConfigError: name + payload over ``user_event_size_limit``; nothing sent.
        """
        self._serf.user_event(name, payload, coalesce, now)
        self._pump(now)

    def query(self, name: str, payload: bytes, now: float, *, nodes: Sequence[str] = (),
              tags: Mapping[str, str] = {}, request_ack: bool = True, relay_factor: int = 0,
              timeout: float | None = None) -> int:
        """Start a query; returns the handle of its Query* outputs.

        ``timeout`` None means Serf's default for the current cluster size.

        Raises:
            ConfigError: the encoded query exceeds ``query_size_limit``; nothing sent.
        """
        handle = self._serf.query(name, payload, now, nodes=tuple(nodes), tags=dict(tags),
                                  request_ack=request_ack, relay_factor=relay_factor,
                                  timeout=timeout)
        self._pump(now)
        return handle

    def respond_query(self, handle: int, payload: bytes, now: float) -> None:
        """Answer the query delivered as ``QueryReceived(handle, ...)``.

        Raises:
            ConfigError: the response exceeds ``query_response_size_limit``.
        """
        self._serf.respond_query(handle, payload, now)
        self._pump(now)

    def set_tags(self, tags: Mapping[str, str], now: float) -> None:
        """Replace our tags and announce them.

        Raises:
            ConfigError: they encode to more than 512 bytes; nothing changes.
        """
        self._serf.set_tags(tags, now)
        self._pump(now)

    def handle_timers(self, now: float) -> None:
        """Run everything due at ``now`` in both cores."""
        self._memberlist.handle_timers(now)
        self._serf.handle_timers(now)
        self._pump(now)

    # ------------------------------------------------------------------ outputs and views

    def next_deadline(self) -> float | None:
        """When ``handle_timers`` next has work (None: never)."""
        deadlines = [d for d in (self._memberlist.next_deadline(), self._serf.next_deadline())
                     if d is not None]
        return min(deadlines) if deadlines else None

    def take_outputs(self) -> list[Output]:
        """Commands and facts since the last call, in the order to perform them."""
        out, self._outputs = self._outputs, []
        return out

    def members(self) -> list[Member]:
        """Every Serf member we know (any status), sorted by name."""
        return [self._serf.members[n].view() for n in sorted(self._serf.members)]

    def local_member(self) -> Member:
        """Our own member record (rebuilt from memberlist if it was ever erased)."""
        me = self._serf.members.get(self.name)
        if me is not None:
            return me.view()
        local = self._memberlist.local()
        return Member(name=self.name, addr=local.addr, port=local.port, tags=self._serf.tags)

    def stats(self) -> GossipStats:
        """A frozen snapshot of counters and sizes."""
        serf = self._serf
        return GossipStats(counters=self._counters.snapshot(), members=len(serf.members),
                           health_score=self._memberlist.health_score,
                           incarnation=self._memberlist.incarnation,
                           member_time=serf.clock.time(), event_time=serf.event_clock.time(),
                           query_time=serf.query_clock.time(),
                           intent_queue=len(serf.intent_queue), event_queue=len(serf.event_queue),
                           query_queue=len(serf.query_queue), encrypted=self._encrypted)

    @property
    def is_leaving(self) -> bool:
        """A graceful leave is in progress."""
        return self._serf.state == SerfState.LEAVING

    @property
    def has_left(self) -> bool:
        """The graceful leave finished."""
        return self._serf.state == SerfState.LEFT

    @property
    def serf(self) -> Serf:
        """The Serf layer (tests, diagnostics)."""
        return self._serf

    @property
    def memberlist(self) -> Memberlist:
        """The memberlist core (tests, diagnostics)."""
        return self._memberlist
