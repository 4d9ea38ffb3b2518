"""memberlist stream codec: the one message of a TCP connection (spec gossip-wire.md 4).

Theory of operation. A TCP stream carries exactly one message per direction and
the peer keeps its side open, so the message is parsed incrementally: bytes are
fed as they arrive and ``StreamReader.feed`` returns the message once it is
complete. The layers, outermost first:

* an encryption envelope ``[10][len u32][blob]`` whose 5 header bytes are the AAD
  (present exactly when a keyring is configured; anything else is an
  ``encryption_mismatch``);
* an optional compress wrapper ``[9][msgpack {Algo, Buf}]``;
* the message: ping / ack / err (one msgpack body), a user message
  (``[8][{UserMsgLen}][bytes]``) or a push/pull (header, ``Nodes`` node states,
  ``UserStateLen`` bytes of raw user state).

The reader is a chain of parse steps; each returns "need more bytes", ``None``
(the next step is set) or the finished message. Once an envelope or wrapper is
removed the reader continues from the whole plain message, where running short
is an error rather than a wait. ``encode_stream`` and ``encode_user_stream``
write the same layers. The msgpack schemas and the compress layer are shared
with the packet codec in ``wire.py``, which re-exports this module's public
names (``from gossip.wire import StreamReader`` keeps working). Load order:
``wire.py`` imports this module on its last line, after everything this module
takes from it exists; other modules reach the stream layer through ``wire``.

Every error is a ``RemoteProtocolError``; after one the reader is dead. Pure: no
I/O, no clocks, no randomness (the keyring holds the injected entropy).
"""

from __future__ import annotations

from typing import Any, Callable

import msgpack

from .errors import RemoteProtocolError
from .keyring import ENCRYPT_OVERHEAD_V1, Keyring
from .messages import MemberlistMessage, MessageType, PushNodeState, PushPull, UserMsg
# The shared schemas and helpers of the codec (this module is its stream half).
from .wire import (_COMPRESS, _MEMBERLIST_SCHEMAS, _NODE_STATE, _PUSH_PULL_HEADER, _USER_HEADER,
                   _bad, _decompress_fields, _packb, compress_message)

__all__ = ["encode_stream", "encode_user_stream", "StreamReader"]

_STREAM_HEADER_BYTES = 5  # [10][len u32]


def encode_stream(message: bytes, *, keyring: Keyring | None, compress: bool) -> bytes:
    """Wrap one encoded message for a stream: maybe compress, then maybe encrypt.

    The encryption envelope is ``[10][len u32][blob]`` with those 5 bytes as AAD.
    """
    payload = compress_message(message) if compress else bytes(message)
    if keyring is None:
        return payload
    length = len(payload) + ENCRYPT_OVERHEAD_V1
    header = bytes((MessageType.ENCRYPT,)) + length.to_bytes(4, "big")
    blob = keyring.encrypt(payload, aad=header)
    assert len(blob) == length
    return header + blob


def encode_user_stream(payload: bytes) -> bytes:
    """A user message in stream form: ``[8][msgpack {UserMsgLen}][payload]``."""
    return bytes((MessageType.USER,)) + _packb({"UserMsgLen": len(payload)}) + bytes(payload)


_STREAM_BODY_TYPES = frozenset({
    MessageType.PING, MessageType.ACK, MessageType.ERR, MessageType.USER, MessageType.PUSH_PULL,
})
_MORE = object()  # a parse step's "need more bytes"


class StreamReader:
    """Parse the one message of a TCP stream incrementally.

    Feed bytes as they arrive; ``feed`` returns the message once it is complete and
    ``None`` before (and after: bytes past the message are ignored, as Go reads
    exactly one message). Layers: ``[10][len][blob]`` (only and always when a
    keyring is configured), then optionally ``[9]`` compress, then the message.

    Args:
        keyring: the node's keyring, or ``None`` for a plaintext cluster.
        max_bytes: largest encrypted blob, declared user state or message accepted
            (memberlist refuses encrypted state above 20 MiB).

    Raises (from ``feed``):
        RemoteProtocolError: ``encryption_mismatch``, ``decrypt``, ``decode``,
            ``compress``, ``oversized``, ``unknown_type``. After one, the reader is
            dead and raises the same error again.
    """

    def __init__(self, keyring: Keyring | None, max_bytes: int = 20 * 2**20) -> None:
        self._keyring = keyring
        self._max_bytes = max_bytes
        # Where parsing reads from: the socket bytes, or (once unwrapped) the whole
        # decrypted/decompressed message, in which case running short is an error.
        self._source = msgpack.Unpacker(raw=True, max_buffer_size=max_bytes + 64)
        self._source_complete = False
        self._received = 0
        self._pending = bytearray()  # raw bytes gathered by _take so far
        self._step: Callable[[], object] = self._read_type
        self._decrypted = False
        self._decompressed = False
        self._done = False
        self._error: RemoteProtocolError | None = None
        self._encryption_header = b""  # [10][len u32], the AAD
        self._blob_length = 0
        self._header: dict[str, Any] = {}  # push/pull or user-message header
        self._nodes: list[PushNodeState] = []

    def feed(self, data: bytes) -> MemberlistMessage | None:
        """Add bytes; return the message when it is complete, else ``None``."""
        if self._error is not None:
            raise self._error
        if self._done or not data:
            return None
        self._received += len(data)
        if self._received > self._max_bytes + _STREAM_HEADER_BYTES:
            raise self._fail(_bad(f"stream above {self._max_bytes} bytes", "oversized"))
        if not self._decrypted and not self._decompressed:
            self._source.feed(bytes(data))
        return self._run()

    def eof(self) -> None:
        """The peer closed its side.

        Raises:
            RemoteProtocolError: ``truncated`` when a message had begun but is not complete.
        """
        if self._error is None and not self._done and self._received > 0:
            raise self._fail(_bad("stream closed in the middle of a message", "truncated"))

    @property
    def is_done(self) -> bool:
        """A whole message has been returned."""
        return self._done

    def _fail(self, error: RemoteProtocolError) -> RemoteProtocolError:
        self._error = error
        return error

    def _run(self) -> MemberlistMessage | None:
        try:
            while True:
                result = self._step()
                if result is _MORE:
                    if self._source_complete:
                        raise _bad("stream message is shorter than it says")
                    return None
                if result is not None:
                    self._done = True
                    return result  # type: ignore[return-value]
        except RemoteProtocolError as error:
            raise self._fail(error) from None

    # -- reading primitives ------------------------------------------------

    def _take(self, count: int) -> bytes | object:
        """``count`` raw bytes, gathered across feeds, or ``_MORE``."""
        missing = count - len(self._pending)
        if missing > 0:
            self._pending += self._source.read_bytes(missing)
        if len(self._pending) < count:
            return _MORE
        chunk = bytes(self._pending)
        self._pending.clear()
        return chunk

    def _object(self, what: str) -> object:
        """The next msgpack object, or ``_MORE``."""
        try:
            return self._source.unpack()
        except msgpack.OutOfData:
            return _MORE
        except Exception as exc:  # ValueError, FormatError, StackError, BufferFull...
            raise _bad(f"bad msgpack in {what}: {exc}") from None

    def _switch_source(self, data: bytes) -> None:
        """Continue parsing from a decrypted or decompressed whole message."""
        self._source = msgpack.Unpacker(raw=True, max_buffer_size=max(len(data), 1))
        self._source.feed(data)
        self._source_complete = True

    # -- parse steps: each returns _MORE, None (next step set) or the message --

    def _read_type(self) -> object:
        chunk = self._take(1)
        if chunk is _MORE:
            return _MORE
        kind = chunk[0]  # type: ignore[index]
        outermost = not self._decrypted and not self._decompressed
        if outermost and kind == MessageType.ENCRYPT:
            if self._keyring is None:
                raise _bad("remote stream is encrypted and encryption is not configured",
                           "encryption_mismatch")
            self._step = self._read_encryption_length
        elif outermost and self._keyring is not None:
            raise _bad("encryption is configured but the remote stream is not encrypted",
                       "encryption_mismatch")
        elif kind == MessageType.COMPRESS and not self._decompressed:
            self._step = self._read_compressed
        elif kind in _STREAM_BODY_TYPES:
            self._step = self._body_step(kind)
        else:
            raise _bad(f"message type {kind} is not supported on a stream", "unknown_type")
        return None

    def _body_step(self, kind: int) -> Callable[[], object]:
        if kind == MessageType.PUSH_PULL:
            return self._read_push_pull_header
        if kind == MessageType.USER:
            return self._read_user_header
        schema = _MEMBERLIST_SCHEMAS[kind]  # type: ignore[index]

        def read_body() -> object:
            obj = self._object(schema.name)
            return obj if obj is _MORE else schema.decode(obj)
        return read_body

    def _read_encryption_length(self) -> object:
        chunk = self._take(4)
        if chunk is _MORE:
            return _MORE
        length = int.from_bytes(chunk, "big")  # type: ignore[arg-type]
        if length > self._max_bytes:
            raise _bad(f"encrypted stream declares {length} bytes", "oversized")
        self._encryption_header = bytes((MessageType.ENCRYPT,)) + chunk  # type: ignore[operator]
        self._blob_length = length
        self._step = self._read_encrypted_blob
        return None

    def _read_encrypted_blob(self) -> object:
        blob = self._take(self._blob_length)
        if blob is _MORE:
            return _MORE
        assert self._keyring is not None
        plain = self._keyring.decrypt(blob, aad=self._encryption_header)  # type: ignore[arg-type]
        self._decrypted = True
        self._switch_source(plain)
        self._step = self._read_type
        return None

    def _read_compressed(self) -> object:
        obj = self._object("compress")
        if obj is _MORE:
            return _MORE
        plain = _decompress_fields(_COMPRESS.decode(obj), self._max_bytes)
        self._decompressed = True
        self._switch_source(plain)
        self._step = self._read_type
        return None

    def _read_user_header(self) -> object:
        obj = self._object("userMsgHeader")
        if obj is _MORE:
            return _MORE
        self._header = _USER_HEADER.decode(obj)
        self._check_length(self._header["UserMsgLen"], "UserMsgLen")
        self._step = self._read_user_payload
        return None

    def _read_user_payload(self) -> object:
        payload = self._take(self._header["UserMsgLen"])
        return payload if payload is _MORE else UserMsg(payload)  # type: ignore[arg-type]

    def _read_push_pull_header(self) -> object:
        obj = self._object("pushPullHeader")
        if obj is _MORE:
            return _MORE
        self._header = _PUSH_PULL_HEADER.decode(obj)
        self._check_length(self._header["Nodes"], "Nodes")
        self._check_length(self._header["UserStateLen"], "UserStateLen")
        self._step = self._read_node_state
        return None

    def _read_node_state(self) -> object:
        while len(self._nodes) < self._header["Nodes"]:
            obj = self._object("pushNodeState")
            if obj is _MORE:
                return _MORE
            self._nodes.append(_NODE_STATE.decode(obj))
        self._step = self._read_user_state
        return None

    def _read_user_state(self) -> object:
        state = self._take(self._header["UserStateLen"])
        if state is _MORE:
            return _MORE
        return PushPull(join=self._header["Join"], nodes=tuple(self._nodes),
                        user_state=state)  # type: ignore[arg-type]

    def _check_length(self, value: int, name: str) -> None:
        if value < 0:
            raise _bad(f"negative {name} {value}")
        if value > self._max_bytes:
            raise _bad(f"{name} {value} above {self._max_bytes}", "oversized")
