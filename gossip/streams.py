"""The TCP streams of the memberlist core: records, deadlines, push/pull, err replies.

Theory of operation (spec gossip-wire.md 4). ``StreamsMixin`` is the stream half
of ``memberlist.Memberlist``; it is not used on its own. Every stream carries one
message each way and is remembered in ``_streams`` under an id the driver uses
for its ``OpenStream``/``WriteStream``/``CloseStream`` outputs and its
``stream_data``/``stream_closed``/``stream_failed`` inputs. A record (``_Stream``)
holds the peer, a ``StreamReader`` for the peer's bytes and an absolute deadline.

* Outgoing (``kind`` "push_pull" or "ping"): we open the stream with our message
  and wait for the one reply; the reply, an EOF, a driver failure or the deadline
  ends it, and ``_stream_outcome`` tells whoever waits: a join (``_Join``, which
  emits ``JoinFinished`` once every seed has answered) or the probe in flight (a
  fallback ping's ack marks ``fallback_ok``).
* Incoming (``accept_stream``): the peer's one request is served at once: a
  push/pull is answered with our state, then merged (``_merge_remote_state``); a
  stream ping is acked; a user message goes to the delegate. Bytes we cannot read
  are counted as ``dropped.<reason>`` and, as memberlist does, answered with an
  ``err`` message (except an unknown type) before closing.
* Every stream closes at its deadline (``tcp_timeout`` after opening; a fallback
  ping's is capped by its probe's end), counted as ``dropped.stream_timeout``.

The host class provides the state and handlers listed under ``TYPE_CHECKING`` in
the class body and calls ``_init_streams`` from its constructor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import wire
from .config import GossipConfig
from .delegate import MemberlistDelegate
from .errors import RemoteProtocolError
from .events import CloseStream, JoinFinished, OpenStream, Output, WriteStream
from .keyring import Keyring
from .members import Members, verify_protocol
from .messages import (Ack, Alive, Dead, ErrResp, MessageType, NodeState, Ping, PushNodeState,
                       PushPull, Suspect, UserMsg)
from .stats import Counters
from .types import Address, ip_to_bytes

if TYPE_CHECKING:
    from .memberlist import _Probe


_ERR_REPLY_FOR = {  # reason -> err text of an incoming stream we cannot read (4.1)
    "decrypt": "Failed to decrypt remote state",
    "oversized": "Remote node state is larger than limit",
    "compress": "Failed to decompress remote state",
    "decode": "Failed to decode remote state",
    "truncated": "Failed to read remote state",
}


def format_address(address: Address) -> str:
    """``ip:port`` as Go's ``net.JoinHostPort`` writes it (IPv6 in brackets)."""
    ip, port = address
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


MAX_INCOMING_STREAMS = 128
"""Most incoming TCP streams open at once; more are closed at once (see accept_stream)."""


@dataclass(slots=True)
class _Stream:
    """One TCP stream: ``kind`` is "push_pull" or "ping" (ours) or "incoming"."""

    kind: str
    peer: Address
    reader: wire.StreamReader
    deadline: float
    join_id: int | None = None
    seq: int = 0


@dataclass(slots=True)
class _Join:
    """A join in progress: push/pulls still pending, how many succeeded, the failures."""

    pending: int
    joined: int
    errors: list[str]


class StreamsMixin:
    """Stream bookkeeping for ``Memberlist``; see the module docstring."""

    if TYPE_CHECKING:  # provided by the host class
        config: GossipConfig
        name: str
        _keyring: Keyring | None
        _delegate: MemberlistDelegate
        _log: logging.LoggerAdapter
        _counters: Counters
        _members: Members
        _outputs: list[Output]
        _probe: _Probe | None

        def _drop(self, reason: str, peer: Address, detail: str, *, amount: int = 1) -> None: ...
        def _handle_alive(self, alive: Alive, source: Address, now: float, *,
                          bootstrap: bool = False) -> None: ...
        def _handle_suspect(self, suspect: Suspect, now: float) -> None: ...
        def _handle_dead(self, dead: Dead, source: Address, now: float) -> None: ...

    # ------------------------------------------------------------------ records

    def _init_streams(self) -> None:
        """Empty stream and join tables (called from the host's constructor)."""
        self._streams: dict[int, _Stream] = {}
        self._incoming_streams = 0  # how many of _streams are kind "incoming"
        self._next_stream_id = 0
        self._joins: dict[int, _Join] = {}
        self._next_join_id = 0

    def _new_join(self, seeds: int) -> int:
        """Start waiting for ``seeds`` push/pulls; returns the join id."""
        self._next_join_id += 1
        self._joins[self._next_join_id] = _Join(seeds, 0, [])
        return self._next_join_id

    def _open_stream(self, kind: str, dest: Address, message: bytes, *, deadline: float,
                     join_id: int | None = None, seq: int = 0) -> int:
        self._next_stream_id += 1
        stream_id = self._next_stream_id
        self._streams[stream_id] = _Stream(kind, dest, wire.StreamReader(self._keyring),
                                           deadline, join_id, seq)
        data = wire.encode_stream(message, keyring=self._keyring,
                                  compress=self.config.enable_compression)
        self._counters.inc("sent.streams")
        self._outputs.append(OpenStream(stream_id, dest, data))
        return stream_id

    def _close_stream(self, stream_id: int) -> None:
        self._forget_stream(stream_id)
        self._outputs.append(CloseStream(stream_id))

    def _forget_stream(self, stream_id: int) -> _Stream | None:
        """Remove a stream record, keeping the count of incoming ones."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None and stream.kind == "incoming":
            self._incoming_streams -= 1
        return stream

    def _write_stream(self, stream_id: int, message: bytes) -> None:
        data = wire.encode_stream(message, keyring=self._keyring,
                                  compress=self.config.enable_compression)
        self._outputs.append(WriteStream(stream_id, data))

    # ------------------------------------------------------------------ push/pull

    def _local_state(self, join: bool) -> bytes:
        """Our push/pull message: every node we know, then Serf's state (4.2)."""
        nodes = tuple(PushNodeState(r.name, ip_to_bytes(r.addr), r.port, r.meta, r.incarnation,
                                    int(r.state), r.vsn) for r in self._members)
        return wire.encode(PushPull(join, nodes, self._delegate.local_state(join)))

    def _open_push_pull(self, dest: Address, *, join: bool, join_id: int | None,
                        now: float) -> None:
        self._counters.inc("push_pulls")
        self._open_stream("push_pull", dest, self._local_state(join),
                          deadline=now + self.config.tcp_timeout, join_id=join_id)

    def _periodic_push_pull(self, now: float) -> None:
        peers = self._members.random_nodes(
            1, lambda r: r.name == self.name or r.state != NodeState.ALIVE)
        if peers:
            self._open_push_pull(peers[0].address, join=False, join_id=None, now=now)

    # ------------------------------------------------------------------ driver inputs

    def accept_stream(self, peer: Address, now: float) -> int:
        """A peer connected to our TCP port; returns the id for its data.

        Past ``MAX_INCOMING_STREAMS`` open incoming streams the new one is refused:
        its ``CloseStream`` is queued at once, it is counted as
        ``dropped.too_many_streams``, and its data (if any comes) is ignored.
        """
        self._next_stream_id += 1
        stream_id = self._next_stream_id
        if self._incoming_streams >= MAX_INCOMING_STREAMS:
            self._drop("too_many_streams", peer, f"{self._incoming_streams} incoming streams open")
            self._outputs.append(CloseStream(stream_id))
            return stream_id
        self._streams[stream_id] = _Stream("incoming", peer, wire.StreamReader(self._keyring),
                                           now + self.config.tcp_timeout)
        self._incoming_streams += 1
        return stream_id

    def stream_data(self, stream_id: int, data: bytes, now: float) -> None:
        """Bytes read from a stream; a complete message is handled at once."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        try:
            message = stream.reader.feed(data)
        except RemoteProtocolError as exc:
            self._stream_error(stream_id, stream, exc, now)
            return
        if message is None:
            return
        self._counters.inc(f"received.{message.TYPE.name.lower()}")
        if stream.kind == "incoming":
            self._serve_stream(stream_id, stream, message, now)
        else:
            self._close_stream(stream_id)
            self._stream_reply(stream, message, now)

    def stream_closed(self, stream_id: int, now: float) -> None:
        """The peer closed its side before we had a whole message."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        try:
            stream.reader.eof()
        except RemoteProtocolError as exc:
            self._stream_error(stream_id, stream, exc, now)
            return
        self._close_stream(stream_id)
        self._stream_outcome(stream, "EOF", now)

    def stream_failed(self, stream_id: int, reason: str, now: float) -> None:
        """The driver could not connect, read or write; ``reason`` is its error text."""
        stream = self._forget_stream(stream_id)
        if stream is not None:
            self._stream_outcome(stream, reason, now)

    def _expire_streams(self, now: float) -> None:
        for stream_id in sorted(self._streams):
            stream = self._streams[stream_id]
            if now >= stream.deadline:
                self._counters.inc("dropped.stream_timeout")
                self._log.warning("stream timed out peer=%s kind=%s",
                                  format_address(stream.peer), stream.kind)
                self._close_stream(stream_id)
                self._stream_outcome(stream, "i/o timeout", now)

    # ------------------------------------------------------------------ serving and outcomes

    def _stream_error(self, stream_id: int, stream: _Stream, exc: RemoteProtocolError,
                      now: float) -> None:
        """A stream sent bytes we cannot read: count, maybe answer err, close."""
        self._drop(exc.reason, stream.peer, str(exc))
        if stream.kind == "incoming" and exc.reason != "unknown_type":
            self._write_stream(stream_id, wire.encode(ErrResp(self._err_text(exc))))
        self._close_stream(stream_id)
        self._stream_outcome(stream, str(exc), now)

    def _err_text(self, exc: RemoteProtocolError) -> str:
        if exc.reason == "encryption_mismatch":
            if self._keyring is not None:
                return "Encryption is configured but remote state is not encrypted"
            return "Remote state is encrypted and encryption is not configured"
        prefix = _ERR_REPLY_FOR.get(exc.reason)
        return f"{prefix}: {exc}" if prefix else str(exc)

    def _serve_stream(self, stream_id: int, stream: _Stream, message: object, now: float) -> None:
        """Answer an incoming request (4.2-4.4), then close."""
        if isinstance(message, PushPull):
            self._write_stream(stream_id, self._local_state(message.join))
            self._close_stream(stream_id)
            error = self._merge_remote_state(message, stream.peer, now)
            if error is not None:
                self._counters.inc("push_pull_failures")
                self._log.warning("push/pull rejected peer=%s reason=%s",
                                  format_address(stream.peer), error)
        elif isinstance(message, Ping):
            if message.node and message.node != self.name:
                self._drop("wrong_node", stream.peer, f"stream ping for {message.node!r}")
            else:
                self._write_stream(stream_id, wire.encode(Ack(message.seq_no, None)))
            self._close_stream(stream_id)
        elif isinstance(message, UserMsg):
            self._close_stream(stream_id)
            self._delegate.notify_user_msg(message.payload, stream.peer, now)
        else:
            self._drop("unexpected_type", stream.peer, f"{type(message).__name__} on a stream")
            self._close_stream(stream_id)

    def _stream_reply(self, stream: _Stream, message: object, now: float) -> None:
        """The one reply of a stream we opened."""
        error: str | None
        if stream.kind == "ping":
            if isinstance(message, Ack) and message.seq_no == stream.seq:
                error = None
            elif isinstance(message, Ack):
                error = f"Sequence number from ack ({message.seq_no}) doesn't match ping ({stream.seq})"
            else:
                error = f"Unexpected msgType ({int(message.TYPE)}) from ping"
        elif isinstance(message, PushPull):
            error = self._merge_remote_state(message, stream.peer, now)
        elif isinstance(message, ErrResp):
            error = f"remote error: {message.error}"
        else:
            error = (f"received invalid msgType ({int(message.TYPE)}), "
                     f"expected pushPullMsg ({int(MessageType.PUSH_PULL)})")
        self._stream_outcome(stream, error, now)

    def _stream_outcome(self, stream: _Stream, error: str | None, now: float) -> None:
        """Report how an outgoing stream ended (None = success) to whoever waits."""
        if stream.kind == "ping":
            probe = self._probe
            if error is None and probe is not None and probe.seq == stream.seq:
                probe.fallback_ok = True
            elif error is not None:
                self._log.debug("fallback ping failed peer=%s reason=%s",
                                format_address(stream.peer), error)
            return
        if stream.kind != "push_pull":
            return
        if error is not None:
            self._counters.inc("push_pull_failures")
            self._log.warning("push/pull failed peer=%s reason=%s",
                              format_address(stream.peer), error)
        if stream.join_id is not None and stream.join_id in self._joins:
            join = self._joins[stream.join_id]
            join.pending -= 1
            if error is None:
                join.joined += 1
            else:
                join.errors.append(f"Failed to join {format_address(stream.peer)}: {error}")
            if join.pending <= 0:
                self._finish_join(stream.join_id)

    def _finish_join(self, join_id: int) -> None:
        join = self._joins.pop(join_id)
        self._outputs.append(JoinFinished(join_id, join.joined, tuple(join.errors)))

    def _merge_remote_state(self, push_pull: PushPull, peer: Address, now: float) -> str | None:
        """memberlist ``mergeRemoteState`` (4.2): verify, merge nodes, hand Serf its state.

        Returns:
            None on success, else why the remote state was thrown away.
        """
        error = verify_protocol(push_pull.nodes, self._members)
        if error is not None:
            return error
        for entry in push_pull.nodes:
            if entry.state == NodeState.ALIVE:
                self._handle_alive(Alive(entry.incarnation, entry.name, entry.addr, entry.port,
                                         entry.meta, entry.vsn), peer, now)
            elif entry.state == NodeState.LEFT:
                self._handle_dead(Dead(entry.incarnation, entry.name, entry.name), peer, now)
            elif entry.state in (NodeState.DEAD, NodeState.SUSPECT):
                # A remote "dead" only makes us suspect.
                self._handle_suspect(Suspect(entry.incarnation, entry.name, self.name), now)
        if push_pull.user_state:
            self._delegate.merge_remote_state(push_pull.user_state, push_pull.join, now)
        return None
