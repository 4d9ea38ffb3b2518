"""``shoal monitor``: stream an agent's log to stdout, like ``nomad monitor``.

    shoal monitor [-log-level LEVEL] [-server-id ID] [-node-id ID] [-json]
                  [-log-include-location] [-address ADDR]

It reads ``GET /v1/agent/monitor`` (agent-api.md 3.8) until Ctrl-C (or SIGTERM), then
exits 0. The answer is a run of JSON frames written back to back with no separator;
``FrameDecoder`` splits them with ``json.JSONDecoder.raw_decode``, skips the ``{}``
heartbeats and writes the base64 ``Data`` of each frame as it comes. A line may be cut
across two frames; writing the pieces in order puts it back together.

Errors exit 1 with one line on stderr: a refused request gives
``Error starting monitor: Unexpected response code: <code> (<body>)``, an unreachable
agent ``Error querying agent at <address>: <reason>``, a stream that breaks
``Error reading monitor stream: <reason>``. The agent address, ``$SHOAL_TOKEN`` and the
TLS environment are those of every client command (``agent/cli.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Sequence

from .cli import CommandError, _client_parser, _parse, agent_address, https_context

__all__ = ["FrameDecoder", "monitor"]

_READ_TIMEOUT = 30.0
"""Seconds without a byte before the stream counts as broken (heartbeats come every 1 s)."""
_MAX_PENDING = 1 << 20
"""Bytes of an unfinished frame kept before the stream counts as garbled."""


class FrameDecoder:
    """Incremental decoder of monitor frames: bytes in, log bytes out."""

    def __init__(self) -> None:
        self._text = ""
        self._pending = b""   # an incomplete UTF-8 sequence at the end of a read
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> bytes:
        """The log bytes of every frame completed by ``data`` (``b""`` for heartbeats).

        Raises:
            ValueError: the stream is not a run of JSON frames.
        """
        raw = self._pending + data
        try:
            text = raw.decode()
            self._pending = b""
        except UnicodeDecodeError as exc:
            if exc.start < len(raw) - 3:
                raise ValueError(f"monitor stream is not UTF-8: {exc}") from None
            text, self._pending = raw[:exc.start].decode(), raw[exc.start:]
        self._text += text
        out = []
        index = 0
        while True:
            while index < len(self._text) and self._text[index].isspace():
                index += 1
            if index >= len(self._text):
                break
            try:
                frame, index = self._decoder.raw_decode(self._text, index)
            except json.JSONDecodeError:
                if len(self._text) - index > _MAX_PENDING:
                    raise ValueError("monitor stream frame too long or malformed") from None
                break   # an unfinished frame: wait for more bytes
            out.append(_frame_data(frame))
        self._text = self._text[index:]
        return b"".join(out)


def _frame_data(frame: Any) -> bytes:
    if not isinstance(frame, dict):
        raise ValueError(f"monitor frame is not an object: {frame!r:.80}")
    data = frame.get("Data")
    if not data:
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, TypeError):
        raise ValueError("monitor frame Data is not base64") from None


class _Stop(Exception):
    """SIGTERM: stop streaming as Ctrl-C does."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise _Stop


def monitor(argv: Sequence[str]) -> int:
    """Run ``shoal monitor``; returns the exit status."""
    parser = _client_parser("shoal monitor")
    parser.add_argument("--log-level", default="info", help="trace, debug, info, warn, error (default info)")
    parser.add_argument("--server-id", default="", help="stream this server's log (name, node ID or 'leader')")
    parser.add_argument("--node-id", default="", help="stream this client node's log")
    parser.add_argument("--json", action="store_true", help="log lines as JSON objects")
    parser.add_argument("--log-include-location", action="store_true", help="add the source location")
    args = _parse(parser, argv)
    address = agent_address(args.address)
    query = [("log_level", args.log_level)]
    query += [("server_id", args.server_id)] if args.server_id else []
    query += [("node_id", args.node_id)] if args.node_id else []
    query += [("log_json", "true")] if args.json else []
    query += [("log_include_location", "true")] if args.log_include_location else []
    url = f"{address}/v1/agent/monitor?{urllib.parse.urlencode(query)}"
    headers = {}
    token = os.environ.get("SHOAL_TOKEN", "").strip()
    if token:
        headers["X-Nomad-Token"] = token
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _stream(address, urllib.request.Request(url, headers=headers))
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stream(address: str, request: urllib.request.Request) -> int:
    try:
        response = urllib.request.urlopen(request, timeout=_READ_TIMEOUT, context=https_context(address))
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        raise CommandError(f"Error starting monitor: Unexpected response code: {exc.code} ({body})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"Error querying agent at {address}: {reason}") from None
    decoder = FrameDecoder()
    out = sys.stdout.buffer
    with response:
        while True:
            try:
                data = response.read1(65536)
            except OSError as exc:
                raise CommandError(f"Error reading monitor stream: {exc}") from None
            if not data:
                return 0
            try:
                text = decoder.feed(data)
            except ValueError as exc:
                raise CommandError(f"Error reading monitor stream: {exc}") from None
            if text:
                try:
                    out.write(text)
                    out.flush()
                except BrokenPipeError:   # `shoal monitor | head`: the reader is gone
                    return 0
