"""Serf query bookkeeping: filters, duplicate detection, pending answers (spec 8.7, 8.8).

State owned here, all plain data that ``serf.py`` drives:

* ``LamportRing``: the 512-slot rings Serf keeps per clock. The query ring
  remembers which query IDs were seen at each LTime (duplicate detection); the
  event ring remembers which (name, payload) pairs were seen (and is what a
  push/pull sends as ``Events``). Slot = LTime mod size; a slot holding an older
  LTime is overwritten.
* ``IncomingQuery``: a query this node accepted and may answer once, before its
  deadline, at ``Addr:Port`` of the originator.
* ``OutgoingQuery``: a query this node started; acks and responses are
  de-duplicated per sender until the deadline.

``SerfQueries`` is the query half of ``serf.Serf`` (a mixin over Serf's state):
starting queries, accepting them (witness, dedupe, filters, ack, relay copies,
delivery), answering once before the deadline, collecting acks and answers per
sender, Serf's own ``_serf_`` answers, and the name-conflict vote (8.10).

Filters (``Filters`` field): type 0 lists node names, type 1 is a tag name and a Go
regular expression matched unanchored against that tag's value (``regexp.
MatchString``, i.e. Python's ``re.search``). A filter that cannot be decoded, an
expression that does not compile, or an unknown type make the node skip the query,
as Serf's ``shouldProcessQuery`` does.
"""

from __future__ import annotations

import base64
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

from . import wire
from .broadcasts import TransmitLimitedQueue
from .config import GossipConfig
from .errors import ConfigError, RemoteProtocolError
from .events import Output, QueryAckReceived, QueryFinished, QueryReceived, QueryResponseReceived
from .keyring import Keyring
from .lamport import LamportClock
from .messages import (FILTER_NODE, FILTER_TAG, QUERY_FLAG_ACK, QUERY_FLAG_NO_BROADCAST,
                       MemberStatus, NodeState, SerfKeyRequest, SerfKeyResponse, SerfMemberRecord,
                       SerfMessageType, SerfQuery, SerfQueryResponse, SerfRelay)
from .stats import Counters
from .types import ip_from_bytes, ip_to_bytes

INTERNAL_PREFIX = "_serf_"
"""Queries whose name starts with this are answered by Serf, not the application."""

PING_QUERY = INTERNAL_PREFIX + "ping"
CONFLICT_QUERY = INTERNAL_PREFIX + "conflict"
INSTALL_KEY_QUERY = INTERNAL_PREFIX + "install-key"
USE_KEY_QUERY = INTERNAL_PREFIX + "use-key"
REMOVE_KEY_QUERY = INTERNAL_PREFIX + "remove-key"
LIST_KEYS_QUERY = INTERNAL_PREFIX + "list-keys"
KEY_QUERIES = (INSTALL_KEY_QUERY, USE_KEY_QUERY, REMOVE_KEY_QUERY, LIST_KEYS_QUERY)

MAX_QUERY_RETAIN_SECONDS = 300.0
"""Longest we keep an incoming query answerable. The deadline is the peer's
``Timeout`` (up to ~292 years); we keep at most five minutes of it, which bounds the
state a flood of queries can pin (Serf keeps the full timeout). Not ``10 x`` the
default timeout: a deliberate ``serf query -timeout 60s`` must keep working."""

MAX_INCOMING_QUERIES = 4096
"""Most answerable incoming queries kept at once; past it, new ones are neither acked
nor delivered (still re-broadcast), counted as ``dropped.query_overload``."""


def max_query_replies(members: int) -> int:
    """Most distinct senders one outgoing query keeps acks or answers from.

    Legitimate senders are members (a few more while the member list settles);
    anything past that is a peer inventing names, counted as
    ``dropped.query_reply_overflow``.
    """
    return 2 * members + 16


MIN_ENCODED_KEY_LENGTH = 25
"""Shortest base64 key (16 bytes); bounds how many keys a list answer can hold."""


def is_internal(name: str) -> bool:
    """Is ``name`` an internal (``_serf_``) query?"""
    return name.startswith(INTERNAL_PREFIX)


# ---------------------------------------------------------------------------
# filters


def encode_filters(nodes: Sequence[str], tags: Mapping[str, str]) -> tuple[bytes, ...]:
    """The ``Filters`` list of a query: a node filter if ``nodes``, one tag filter per tag."""
    filters: list[bytes] = []
    if nodes:
        filters.append(wire.encode_filter_nodes(list(nodes)))
    for tag, expr in tags.items():
        filters.append(wire.encode_filter_tag(tag, expr))
    return tuple(filters)


def go_regex_to_python(expr: str) -> str:
    """Translate the few RE2 spellings Python reads differently.

    RE2's ``\\z`` (end of text) is Python's ``\\Z``; everything else a tag filter
    reasonably uses (classes, anchors, alternation, ``(?i)``) reads the same.
    """
    return expr.replace("\\z", "\\Z")


def tag_matches(expr: str, value: str) -> bool:
    """Go ``regexp.MatchString(expr, value)``: unanchored search.

    Raises:
        re.error: ``expr`` does not compile.
    """
    return re.search(go_regex_to_python(expr), value) is not None


def should_process(filters: Sequence[bytes], name: str, tags: Mapping[str, str],
                   log: logging.LoggerAdapter | logging.Logger) -> bool:
    """Do the query's filters select the node called ``name`` with ``tags``?"""
    for raw in filters:
        try:
            kind, value = wire.decode_filter(raw)
        except RemoteProtocolError as exc:
            log.warning("query filter undecodable reason=%s", exc)
            return False
        if kind == FILTER_NODE:
            if name not in _filter_names(value):
                return False
        elif kind == FILTER_TAG:
            tag, expr = _filter_tag(value)
            try:
                if not tag_matches(expr, tags.get(tag, "")):
                    return False
            except re.error as exc:
                log.warning("query tag filter does not compile expr=%r error=%s", expr, exc)
                return False
        else:
            log.warning("query filter of unknown type type=%s", kind)
            return False
    return True


def _filter_names(value: object) -> list[str]:
    """The node names of a decoded node filter."""
    if isinstance(value, (list, tuple)):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value]
    return []


def _filter_tag(value: object) -> tuple[str, str]:
    """(tag, expr) of a decoded tag filter, whichever shape the codec returns."""
    if isinstance(value, Mapping):
        tag = value.get("Tag", value.get("tag", ""))
        expr = value.get("Expr", value.get("expr", ""))
    else:
        tag, expr = value  # type: ignore[misc]
    tag = tag.decode("utf-8", "replace") if isinstance(tag, bytes) else str(tag)
    expr = expr.decode("utf-8", "replace") if isinstance(expr, bytes) else str(expr)
    return tag, expr


# ---------------------------------------------------------------------------
# rings

T = TypeVar("T")

MAX_SLOT_ITEMS = 256
"""Most items one ring slot keeps. Serf's slots grow without bound, so a peer sending
many distinct queries or events with one LTime would grow memory (and our push/pull
state) forever; past this many, further ones at that LTime are dropped and counted."""


@dataclass(slots=True)
class RingSlot(Generic[T]):
    """Everything seen at one LTime."""

    ltime: int
    items: list[T] = field(default_factory=list)


class LamportRing(Generic[T]):
    """A fixed ring of slots indexed by LTime mod size (Serf's event and query buffers)."""

    def __init__(self, size: int) -> None:
        assert size > 0
        self.size = size
        self.slots: list[RingSlot[T] | None] = [None] * size

    def is_too_old(self, ltime: int, clock_time: int) -> bool:
        """Is ``ltime`` more than a ring behind the clock (spec 8.6 "512 window")?"""
        return clock_time > self.size and ltime < clock_time - self.size

    def record(self, ltime: int, item: T) -> bool | None:
        """Add ``item`` at ``ltime``.

        Returns:
            True when added; False (no change) when it was already there; None (no
            change) when the slot already holds ``MAX_SLOT_ITEMS`` items.
        """
        index = ltime % self.size
        slot = self.slots[index]
        if slot is not None and slot.ltime == ltime:
            if item in slot.items:
                return False
            if len(slot.items) >= MAX_SLOT_ITEMS:
                return None
        else:
            slot = RingSlot(ltime)
            self.slots[index] = slot
        slot.items.append(item)
        return True


# ---------------------------------------------------------------------------
# pending queries


@dataclass(slots=True)
class IncomingQuery:
    """A query we accepted and may answer once, before ``deadline``."""

    handle: int
    name: str
    ltime: int
    id: int
    addr: bytes
    port: int
    source_node: str
    relay_factor: int
    deadline: float
    responded: bool = False


@dataclass(slots=True)
class OutgoingQuery:
    """A query we started; collects acks and responses until ``deadline``."""

    handle: int
    name: str
    ltime: int
    id: int
    deadline: float
    request_ack: bool
    internal: bool = False
    """Started by Serf itself (name conflict): outputs go to Serf, not the application."""
    acks: set[str] = field(default_factory=set)
    responses: dict[str, bytes] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# internal query answers (spec 8.8)

NIL_CONFLICT_RESPONSE = bytes([6, 0xC0])
"""``[6]`` + msgpack nil: what Serf answers a conflict query about a name it does not know."""


def conflict_answer(record: SerfMemberRecord | None) -> bytes:
    """The ``_serf_conflict`` answer: ``[6][Member]``, or ``[6][nil]`` for an unknown name."""
    if record is None:
        return NIL_CONFLICT_RESPONSE
    return wire.encode_serf(record)


def key_answer(name: str, payload: bytes | None, keyring: Keyring | None,
               fits: Callable[[bytes], bool],
               log: logging.LoggerAdapter | logging.Logger) -> bytes:
    """Run a key-management query against ``keyring`` and return ``[8][keyResponse]``.

    Args:
        name: one of ``KEY_QUERIES``.
        payload: the query payload, ``[7][{Key}]`` (ignored for list-keys).
        keyring: our keyring, changed in place; None when encryption is off.
        fits: whether an answer payload fits the response size limit (list-keys
            drops keys until it does, as Serf's ``keyListResponseWithCorrectSize``).
    """
    if name == LIST_KEYS_QUERY:
        return _list_keys_answer(keyring, fits, log)
    try:
        request = wire.decode_serf(payload or b"")
    except RemoteProtocolError as exc:
        log.warning("key query undecodable name=%s reason=%s", name, exc)
        return wire.encode_serf(SerfKeyResponse(result=False, message=""))
    if not isinstance(request, SerfKeyRequest):
        log.warning("key query carries no key request name=%s", name)
        return wire.encode_serf(SerfKeyResponse(result=False, message=""))
    if keyring is None:
        return wire.encode_serf(SerfKeyResponse(result=False, message=NO_KEYRING_MESSAGE))
    change = {INSTALL_KEY_QUERY: keyring.install, USE_KEY_QUERY: keyring.use,
              REMOVE_KEY_QUERY: keyring.remove}[name]
    try:
        change(request.key)
    except ConfigError as exc:
        log.warning("key query refused name=%s error=%s", name, exc)
        return wire.encode_serf(SerfKeyResponse(result=False, message=str(exc)))
    log.info("keyring changed by query name=%s", name)
    return wire.encode_serf(SerfKeyResponse(result=True, message=""))


NO_KEYRING_MESSAGE = "No keyring to modify (encryption not enabled)"
EMPTY_KEYRING_MESSAGE = "Keyring is empty (encryption not enabled)"


def _list_keys_answer(keyring: Keyring | None, fits: Callable[[bytes], bool],
                      log: logging.LoggerAdapter | logging.Logger) -> bytes:
    """``_serf_list-keys``: every key in base64, truncated to fit the response limit."""
    if keyring is None:
        return wire.encode_serf(SerfKeyResponse(result=False, message=EMPTY_KEYRING_MESSAGE))
    keys = [base64.b64encode(key).decode("ascii") for key in keyring.keys]
    primary = base64.b64encode(keyring.primary).decode("ascii")
    message = ""
    for count in range(len(keys), -1, -1):
        answer = wire.encode_serf(SerfKeyResponse(result=True, message=message,
                                                  keys=tuple(keys[:count]), primary_key=primary))
        if fits(answer):
            if count < len(keys):
                log.warning("key list answer truncated shown=%d of=%d", count, len(keys))
            return answer
        message = f"truncated key list response, showing first {count - 1} of {len(keys)} keys"
    return wire.encode_serf(SerfKeyResponse(result=False, message="key list does not fit"))


# ---------------------------------------------------------------------------
# the query half of Serf


class SerfQueries:
    """Queries as Serf runs them (8.7, 8.8, 8.10); mixed into ``serf.Serf``.

    Uses the Serf state it is mixed into: ``query_clock``, ``queries`` (ring),
    ``query_queue``, ``members``, ``memberlist``, ``_incoming``/``_outgoing``,
    ``_outputs``, ``_counters``, ``_rng``, ``_log``, ``config``, ``name``,
    ``keyring``. Kept apart from ``serf.py`` only to keep both files readable.
    """

    # Provided by serf.Serf (declared here for readers and type checkers).
    config: GossipConfig
    name: str
    keyring: Keyring | None
    query_clock: LamportClock
    query_min_time: int
    queries: LamportRing[int]
    query_queue: TransmitLimitedQueue
    members: dict[str, Any]
    _incoming: dict[int, IncomingQuery]
    _outgoing: dict[int, OutgoingQuery]
    _outputs: list[Output]
    _counters: Counters
    _rng: random.Random
    _log: logging.LoggerAdapter | logging.Logger
    _tags: dict[str, str]
    _conflict_query: int | None
    memberlist: Any
    _next_id: Callable[[], int]
    _request_shutdown: Callable[[str], None]

    def query(self, name: str, payload: bytes, now: float, *, nodes: Sequence[str] = (),
              tags: Mapping[str, str] | None = None, request_ack: bool = True,
              relay_factor: int = 0, timeout: float | None = None,
              internal: bool = False) -> int:
        """Start a query (8.7); returns its handle for the Query* outputs.

        Raises:
            ConfigError: the encoded query exceeds ``query_size_limit``; nothing sent.
        """
        if not timeout:
            timeout = self.config.default_query_timeout(self._alive_nodes())
        local = self.memberlist.local()
        msg = SerfQuery(
            ltime=self.query_clock.time(), id=self._rng.getrandbits(31),
            addr=ip_to_bytes(local.addr), port=local.port, source_node=self.name,
            filters=encode_filters(nodes, tags or {}),
            flags=QUERY_FLAG_ACK if request_ack else 0, relay_factor=relay_factor,
            timeout_ns=int(round(timeout * 1e9)), name=name, payload=payload)
        raw = wire.encode_serf(msg)
        if len(raw) > self.config.query_size_limit:
            raise ConfigError(f"query exceeds the limit of {self.config.query_size_limit} bytes")
        handle = self._next_id()
        previous = self._outgoing.pop(msg.ltime, None)
        if previous is not None:  # only once our query clock is saturated (lamport.py)
            self._finish_query(previous)
        self._outgoing[msg.ltime] = OutgoingQuery(handle, name, msg.ltime, msg.id,
                                                  now + timeout, request_ack, internal)
        self._handle_query(msg, now)
        self.query_queue.queue(raw)
        return handle

    def _alive_nodes(self) -> int:
        """memberlist's NumMembers: nodes neither dead nor left, us included."""
        return sum(1 for n in self.memberlist.nodes()
                   if n.state in (NodeState.ALIVE, NodeState.SUSPECT))

    def _handle_query(self, msg: SerfQuery, now: float) -> bool:
        """Accept a query once, ack and deliver it; True when it should be re-broadcast."""
        self.query_clock.witness(msg.ltime)
        if msg.ltime < self.query_min_time:
            self._counters.inc("dropped.query_before_min_time")
            self._log.debug("query before the minimum ignored name=%s ltime=%d min=%d",
                            msg.name, msg.ltime, self.query_min_time)
            return False
        if self.queries.is_too_old(msg.ltime, self.query_clock.time()):
            self._counters.inc("dropped.query_too_old")
            self._log.warning("old query ignored name=%s ltime=%d clock=%d", msg.name,
                              msg.ltime, self.query_clock.time())
            return False
        recorded = self.queries.record(msg.ltime, msg.id)
        if recorded is not True:
            self._counters.inc("dropped.query_duplicate" if recorded is False
                               else "dropped.query_slot_full")
            self._log.debug("query not delivered name=%s ltime=%d id=%d reason=%s", msg.name,
                            msg.ltime, msg.id, "duplicate" if recorded is False else "slot full")
            return False
        self._counters.inc("queries_received")
        rebroadcast = not msg.flags & QUERY_FLAG_NO_BROADCAST
        if not should_process(msg.filters, self.name, self._tags, self._log):
            return rebroadcast
        if len(self._incoming) >= MAX_INCOMING_QUERIES:
            self._counters.inc("dropped.query_overload")
            self._log.warning("too many open incoming queries, not answering name=%s from=%s",
                              msg.name, msg.source_node)
            return rebroadcast
        timeout = min(msg.timeout_ns / 1e9, MAX_QUERY_RETAIN_SECONDS)
        query = IncomingQuery(self._next_id(), msg.name, msg.ltime, msg.id, msg.addr, msg.port,
                              msg.source_node, msg.relay_factor, now + timeout)
        if msg.flags & QUERY_FLAG_ACK:
            self._send_query_response(query, QUERY_FLAG_ACK, None)
        self._log.info("query received name=%s from=%s ltime=%d", msg.name, msg.source_node,
                       msg.ltime)
        self._incoming[query.handle] = query
        if is_internal(msg.name):
            self._answer_internal(query, msg.payload, now)
        else:
            self._outputs.append(QueryReceived(query.handle, msg.name, msg.payload or b"",
                                               msg.ltime, msg.source_node, query.deadline))
        return rebroadcast

    def _send_query_response(self, query: IncomingQuery, flags: int, payload: bytes | None,
                             raw: bytes | None = None) -> None:
        """Send an ack or answer to the originator, plus relayed copies."""
        response = SerfQueryResponse(ltime=query.ltime, id=query.id, from_=self.name,
                                     flags=flags, payload=payload)
        raw = raw if raw is not None else wire.encode_serf(response)
        try:
            dest = (ip_from_bytes(query.addr), query.port)
        except ValueError:
            self._log.warning("query with bad reply address from=%s", query.source_node)
            return
        self.memberlist.send_user(dest, raw)
        self._relay_response(query, raw)

    def _relay_response(self, query: IncomingQuery, inner: bytes) -> None:
        """Send ``relay_factor`` relayed copies via random alive members with pmax >= 5."""
        if query.relay_factor == 0 or len(self.members) < query.relay_factor + 1:
            return
        relay = wire.encode_serf(SerfRelay(dest_ip=query.addr, dest_port=query.port,
                                           dest_zone="", dest_name=query.source_node,
                                           inner=inner))
        if len(relay) > self.config.query_response_size_limit:
            self._log.warning("relayed response too large name=%s", query.name)
            return
        eligible = [m for _, m in sorted(self.members.items())
                    if m.status == MemberStatus.ALIVE and m.name != self.name
                    and len(m.vsn) >= 2 and m.vsn[1] >= 5]
        for member in self._rng.sample(eligible, min(query.relay_factor, len(eligible))):
            self.memberlist.send_user((member.addr, member.port), relay)

    def respond_query(self, handle: int, payload: bytes, now: float) -> None:
        """Answer a query we received (once, before its deadline).

        Raises:
            ConfigError: the response would exceed ``query_response_size_limit``.
        """
        query = self._incoming.get(handle)
        if query is None or query.responded or now > query.deadline:
            self._counters.inc("query_responses_late")
            self._log.warning("query response not sent (expired or already sent) handle=%d",
                              handle)
            return
        response = SerfQueryResponse(ltime=query.ltime, id=query.id, from_=self.name, flags=0,
                                     payload=payload)
        raw = wire.encode_serf(response)
        if len(raw) > self.config.query_response_size_limit:
            raise ConfigError(
                f"response exceeds the limit of {self.config.query_response_size_limit} bytes")
        query.responded = True
        self._counters.inc("queries_answered")
        self._send_query_response(query, 0, payload, raw)

    def _handle_query_response(self, msg: SerfQueryResponse, now: float) -> None:
        """An ack or answer to a query we started: dedupe per sender and report it."""
        query = self._outgoing.get(msg.ltime)
        if query is None or query.id != msg.id:
            self._log.debug("reply for no running query ltime=%d id=%d from=%s", msg.ltime,
                            msg.id, msg.from_)
            return
        if now >= query.deadline:
            return
        if (msg.from_ not in query.acks and msg.from_ not in query.responses
                and len(query.acks) + len(query.responses)
                >= 2 * max_query_replies(len(self.members))):
            self._counters.inc("dropped.query_reply_overflow")
            self._log.debug("reply from too many senders dropped ltime=%d from=%s", msg.ltime,
                            msg.from_)
            return
        if msg.flags & QUERY_FLAG_ACK:
            if not query.request_ack or msg.from_ in query.acks:
                self._counters.inc("query_duplicate_acks")
                return
            query.acks.add(msg.from_)
            if not query.internal:
                self._outputs.append(QueryAckReceived(query.handle, msg.from_))
            return
        if msg.from_ in query.responses:
            self._counters.inc("query_duplicate_responses")
            return
        query.responses[msg.from_] = msg.payload or b""
        if not query.internal:
            self._outputs.append(QueryResponseReceived(query.handle, msg.from_,
                                                       msg.payload or b""))

    def _finish_query(self, query: OutgoingQuery) -> None:
        if not query.internal:
            self._outputs.append(QueryFinished(query.handle))
        elif query.name == CONFLICT_QUERY:
            self._conflict_query = None
            self._decide_conflict(query)

    # ------------------------------------------------------------------ internal queries

    def _answer_internal(self, query: IncomingQuery, payload: bytes | None, now: float) -> None:
        """Serf's own answers to ``_serf_`` queries (8.8)."""
        if query.name == PING_QUERY:
            return
        if query.name == CONFLICT_QUERY:
            node = (payload or b"").decode("utf-8", "replace")
            if node == self.name:
                return
            member = self.members.get(node)
            answer = conflict_answer(None if member is None else member.record())
        elif query.name in KEY_QUERIES:
            answer = key_answer(query.name, payload, self.keyring,
                                lambda buf: self._response_fits(query, buf), self._log)
        else:
            self._log.warning("unknown internal query name=%s", query.name)
            return
        try:
            self.respond_query(query.handle, answer, now)
        except ConfigError as exc:
            self._log.warning("internal query answer too large name=%s error=%s", query.name, exc)

    def _response_fits(self, query: IncomingQuery, payload: bytes) -> bool:
        raw = wire.encode_serf(SerfQueryResponse(ltime=query.ltime, id=query.id,
                                                 from_=self.name, flags=0, payload=payload))
        return len(raw) <= self.config.query_response_size_limit

    def _decide_conflict(self, query: OutgoingQuery) -> None:
        """Count the conflict answers naming our address; lose the vote -> shut down."""
        local = self.memberlist.local()
        responses = matching = 0
        for sender, payload in sorted(query.responses.items()):
            if payload == bytes([SerfMessageType.CONFLICT_RESPONSE, 0xC0]):
                responses += 1  # the responder does not know the name: a vote against
                continue
            try:
                record = wire.decode_serf(payload)
                addr = ip_from_bytes(record.addr) if isinstance(record, SerfMemberRecord) else None
            except (RemoteProtocolError, ValueError):
                addr = None
            if addr is None:
                self._log.warning("bad conflict answer from=%s", sender)
                continue
            responses += 1
            if addr == local.addr and record.port == local.port:
                matching += 1
        majority = responses // 2 + 1
        if matching >= majority:
            self._log.info("won name conflict vote matching=%d responses=%d", matching, responses)
            return
        self._log.warning("lost name conflict vote, shutting down matching=%d responses=%d",
                          matching, responses)
        self._request_shutdown("name conflict")
