"""Errors of the gossip package.

Three kinds, treated as STYLE.md section 7 says:

* ``RemoteProtocolError``: a peer sent bytes we cannot accept (bad msgpack, bad CRC,
  wrong key, truncated compound, oversized datagram...). The caller drops that packet
  or closes that stream, logs a WARNING and counts it under ``reason``.
* ``LocalProtocolError``: our own misuse of an API; it propagates.
* ``ConfigError``: a bad setting, raised by constructors so a bad flag fails at start.
"""

from __future__ import annotations


class GossipError(Exception):
    """Base of every error raised by the gossip package."""


class RemoteProtocolError(GossipError):
    """A peer sent something wrong; drop it and count it under ``reason``.

    Args:
        message: one line saying what was wrong.
        reason: a short snake_case counter name (``"decode"``, ``"crc"``,
            ``"decrypt"``, ``"oversized"``, ``"unknown_type"``, ``"truncated"``,
            ``"compress"``, ``"encryption_mismatch"``...).
    """

    def __init__(self, message: str, reason: str = "decode") -> None:
        super().__init__(message)
        self.reason = reason


class LocalProtocolError(GossipError):
    """We used an API wrongly; this is a bug and propagates."""


class ConfigError(GossipError):
    """A gossip setting is invalid (bad key length, bad profile name...)."""


class UnknownMember(GossipError):
    """An operation named a member this node does not know."""
