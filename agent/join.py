"""Joining seeds given as text: split host:port, resolve, join, and word errors as Nomad.

Used by ``PUT /v1/agent/join`` and by the agent's ``-join`` / ``-retry-join``; the
wording follows Serf's join and hashicorp/go-multierror so clients see Nomad's text.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from gossip.driver import GossipHandle

__all__ = ["join_addresses", "multierror", "resolve_join_addresses", "split_join_address"]


def multierror(errors: Sequence[str]) -> str:
    """hashicorp/go-multierror's text: ``"1 error occurred:\\n\\t* e\\n\\n"``."""
    if not errors:
        return ""
    noun = "error" if len(errors) == 1 else "errors"
    items = "".join(f"\t* {error}\n" for error in errors)
    return f"{len(errors)} {noun} occurred:\n{items}\n"


def split_join_address(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port).

    Like memberlist: when the text does not split as host:port, all of it is the host.
    Raises:
        ValueError: the port is not a number in range.
    """
    if text.startswith("[") and "]:" in text:
        host, _, port = text[1:].rpartition("]:")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        return text.strip("[]"), default_port
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid port {port!r}")
    return host, int(port)


async def resolve_join_addresses(addresses: Sequence[str], default_port: int
                                 ) -> list[tuple[str, list[tuple[str, int]], str | None]]:
    """Resolve each address to its IPs: [(as given, [(ip, port)...], error or None)]."""
    resolved = []
    for text in addresses:
        try:
            host, port = split_join_address(text, default_port)
        except ValueError as exc:
            resolved.append((text, [], f"Failed to resolve {text}: {exc}"))
            continue
        try:
            infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            reason = "no such host" if isinstance(exc, socket.gaierror) else str(exc)
            resolved.append((text, [], f"Failed to resolve {text}: lookup {host}: {reason}"))
            continue
        seeds: list[tuple[str, int]] = []
        for info in infos:
            seed = (str(info[4][0]), port)
            if seed not in seeds:
                seeds.append(seed)
        resolved.append((text, seeds, None))
    return resolved


async def join_addresses(handle: GossipHandle, addresses: Sequence[str], default_port: int
                         ) -> tuple[int, list[str]]:
    """Serf's join: (how many IPs answered, errors in address order)."""
    resolved = await resolve_join_addresses(addresses, default_port)
    seeds = [seed for _, found, _ in resolved for seed in found]
    num_joined, join_errors = (0, ()) if not seeds else await handle.join(seeds)
    remaining = list(join_errors)
    errors: list[str] = []
    for _, found, resolve_error in resolved:
        if resolve_error is not None:
            errors.append(resolve_error)
        for host, port in found:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            for error in [e for e in remaining if f" {where}:" in e or e.endswith(f" {where}")]:
                errors.append(error)
                remaining.remove(error)
    errors.extend(remaining)
    return num_joined, errors
