"""Host data for ``GET /v1/agent/host`` (agent-api.md 3.7), Nomad's ``HostData`` shape.

Theory of operation. ``host_data()`` gathers one snapshot of the machine the agent
runs on and returns it as the JSON object Nomad writes:

* ``OS``: the uname fields machine, node name, release, system name and version,
  joined by single spaces (Nomad's ``uname()``).
* ``Network``: one object per interface address, every value a string, with the
  attributes hashicorp/go-sockaddr's ``dump`` prints (``ip_attributes``); when the
  interfaces cannot be listed, a single ``{"error": ...}``.
* ``ResolvConf`` / ``Hosts``: the full text of ``/etc/resolv.conf`` and
  ``/etc/hosts``, or the error text when a file cannot be read.
* ``Environment``: the agent's environment, with the secret-looking values replaced
  by ``"<redacted>"`` (``redact_environment``).
* ``Disk``: mount point -> ``{"DiskMB", "UsedMB"}`` from ``statvfs`` (total and
  total minus the blocks available to unprivileged users, in MiB, truncated),
  skipping pseudo file systems (``SKIPPED_FILESYSTEMS``) and mounts that cannot be
  read.

The attribute and redaction rules are pure functions of their inputs (tested in
``tests/unit/agent/test_hostinfo.py``); ``host_data`` only collects the inputs with
psutil, ``platform`` and ``os``. ``statvfs`` can block on a dead network mount, so
callers in trio run ``host_data`` in a worker thread (``trio.to_thread.run_sync``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "REDACTED_NAMES", "SKIPPED_FILESYSTEMS", "disk_usage", "host_data",
           "ip_attributes", "network_entries", "os_string", "read_text", "redact_environment"]

REDACTED = "<redacted>"

REDACTED_NAMES = frozenset({
    "CONSUL_TOKEN", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "NOMAD_TOKEN", "VAULT_TOKEN",
    "CONSUL_LICENSE", "NOMAD_LICENSE", "VAULT_LICENSE", "CONSUL_LICENSE_PATH", "NOMAD_LICENSE_PATH",
    "VAULT_LICENSE_PATH", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_METADATA_URL", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_OAUTH_ACCESS_TOKEN",
})
"""Variables always hidden (compared case-sensitively), beside any name holding TOKEN or SECRET."""

SKIPPED_FILESYSTEMS = frozenset({
    "autofs", "binfmt_misc", "cgroup", "debugfs", "devpts", "devtmpfs", "fusectl", "fuse.lxcfs",
    "hugetlbfs", "mqueue", "procfs", "pstore", "rpc_pipefs", "securityfs", "sysfs", "tmpfs",
    "vboxsf", "ptyfs",
})
"""Pseudo file systems left out of ``Disk`` (agent-api.md 3.7, as listed there)."""

_MIB = 2**20


# --- pure helpers ------------------------------------------------------------------------


def os_string(machine: str, node: str, release: str, system: str, version: str) -> str:
    """Nomad's ``OS``: the uname fields in its order, joined by single spaces."""
    return " ".join((machine, node, release, system, version))


def redact_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with secrets replaced by ``"<redacted>"``.

    A value is hidden when its name is exactly one of ``REDACTED_NAMES``, or when the
    upper-cased name contains ``TOKEN`` or ``SECRET``. Nothing else is hidden
    (``PASSWORD`` and ``KEY`` are not, as in Nomad).
    """
    out = {}
    for name, value in environ.items():
        upper = name.upper()
        hidden = name in REDACTED_NAMES or "TOKEN" in upper or "SECRET" in upper
        out[name] = REDACTED if hidden else value
    return out


def _go_quote_pair(first: str, second: str) -> str:
    """Go's ``fmt.Sprintf("%+q %+q", a, b)`` for the ASCII strings go-sockaddr passes."""
    return f"{json.dumps(first)} {json.dumps(second)}"


def _prefix_length(netmask: str | None, bits: int) -> int:
    """Prefix length of a netmask in either notation (dotted/colon mask or a number)."""
    if not netmask:
        return bits
    if netmask.isdigit():
        return int(netmask)
    value = int(ipaddress.ip_address(netmask))
    ones = bin(value).count("1")
    # a non-contiguous mask has no prefix length; Go's IPMask.Size() reports 0 then
    if value != ((1 << bits) - 1) ^ ((1 << (bits - ones)) - 1):
        return 0
    return ones


def ip_attributes(address: str, netmask: str | None) -> dict[str, str]:
    """go-sockaddr's attributes of one interface address (all values strings).

    IPv4 entries carry ``address, binary, broadcast, first_usable, hex, host,
    last_usable, mask_bits, netmask, network, octets, port, size, string, type,
    uint32``; IPv6 entries the same without ``broadcast`` and with ``uint128`` in
    place of ``uint32``. Both carry the developer fields ``DialPacket``,
    ``DialStream``, ``ListenPacket`` and ``ListenStream`` (Go ``%+q`` pairs).

    Raises:
        ValueError: ``address`` is not an IP address or the mask does not parse.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])   # a link-local zone is not kept
    width = ip.max_prefixlen
    bits = _prefix_length(netmask, width)
    value = int(ip)
    all_ones = (1 << width) - 1
    mask = all_ones ^ ((1 << (width - bits)) - 1)
    network = value & mask
    last = network | (all_ones ^ mask)

    def text(number: int) -> str:
        return str(ipaddress.ip_address(number) if width == 32 else ipaddress.IPv6Address(number))

    if width == 32:
        first_usable = network + 1 if bits < 31 else network
        last_usable = last - 1 if bits < 31 else last
        octets = [(value >> shift) & 0xFF for shift in (24, 16, 8, 0)]
    else:   # go-sockaddr: IPv6 has no broadcast; first/last are the network's bounds
        first_usable, last_usable = network, last
        octets = list(ip.packed)
    is_host = bits == width
    family = "4" if width == 32 else "6"
    listen = "" if not is_host else (f"{ip}:0" if width == 32 else f"[{ip}]:0")
    attributes = {
        "type": f"IPv{family}",
        "string": str(ip) if is_host else f"{ip}/{bits}",
        "host": str(ip),
        "address": str(ip),
        "port": "0",
        "netmask": text(mask),
        "network": text(network),
        "mask_bits": str(bits),
        "binary": format(value, f"0{width}b"),
        "hex": format(value, f"0{width // 4}x"),
        "first_usable": text(first_usable),
        "last_usable": text(last_usable),
        "octets": " ".join(str(octet) for octet in octets),
        "size": str(1 << (width - bits)),
    }
    if width == 32:
        attributes["broadcast"] = text(last)
        attributes["uint32"] = str(value)
    else:
        attributes["uint128"] = str(value)
    # A dial needs a host mask and a port; an interface address has port 0, so these are empty.
    attributes["DialPacket"] = _go_quote_pair(f"udp{family}", "")
    attributes["DialStream"] = _go_quote_pair(f"tcp{family}", "")
    attributes["ListenPacket"] = _go_quote_pair(f"udp{family}", listen)
    attributes["ListenStream"] = _go_quote_pair(f"tcp{family}", listen)
    return attributes


def network_entries(addresses: Iterable[tuple[int, str, str | None]]) -> list[dict[str, str]]:
    """``Network``: one attribute map per IPv4/IPv6 ``(family, address, netmask)``.

    Other families (link-layer addresses) are skipped, as go-sockaddr lists IP
    addresses only; an address that does not parse is skipped too.
    """
    entries = []
    for family, address, netmask in addresses:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            entries.append(ip_attributes(address, netmask))
        except ValueError:
            continue
    return entries


def disk_usage(mounts: Iterable[tuple[str, str]],
               statvfs: Callable[[str], Any]) -> dict[str, dict[str, int]]:
    """``Disk``: mount point -> ``{"DiskMB", "UsedMB"}`` for ``(mountpoint, fstype)`` pairs.

    ``statvfs(path)`` returns an ``os.statvfs_result``-like object; a mount whose
    call raises ``OSError`` is left out. Total is ``f_blocks * f_frsize``; used is
    total minus ``f_bavail * f_frsize`` (blocks free to unprivileged users, so the
    reserved blocks count as used, as in Nomad); both in MiB, truncated.
    """
    out: dict[str, dict[str, int]] = {}
    for mountpoint, fstype in mounts:
        if fstype in SKIPPED_FILESYSTEMS:
            continue
        try:
            stats = statvfs(mountpoint)
        except OSError:
            continue
        block = stats.f_frsize or stats.f_bsize
        total = stats.f_blocks * block
        used = total - stats.f_bavail * block
        out[mountpoint] = {"DiskMB": total // _MIB, "UsedMB": used // _MIB}
    return out


def read_text(path: str) -> str:
    """A file's whole text, or the error text (Go's wording) when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        return f"open {path}: {reason}"


# --- collection --------------------------------------------------------------------------


def _interface_addresses() -> list[tuple[int, str, str | None]]:
    import psutil

    return [(int(entry.family), entry.address, entry.netmask)
            for entries in psutil.net_if_addrs().values() for entry in entries]


def _mounts() -> list[tuple[str, str]]:
    import psutil

    return [(part.mountpoint, part.fstype) for part in psutil.disk_partitions(all=True)]


def host_data() -> dict[str, Any]:
    """This host's data in Nomad's ``HostData`` key order (blocking: run it in a thread)."""
    uname = platform.uname()
    try:
        network: list[dict[str, str]] = network_entries(_interface_addresses())
    except (OSError, RuntimeError) as exc:   # psutil reports unreadable interfaces this way
        network = [{"error": str(exc)}]
    try:
        disk = disk_usage(_mounts(), os.statvfs)
    except (OSError, RuntimeError):
        disk = {}
    return {
        "OS": os_string(uname.machine, uname.node, uname.release, uname.system, uname.version),
        "Network": network,
        "ResolvConf": read_text("/etc/resolv.conf"),
        "Hosts": read_text("/etc/hosts"),
        "Environment": redact_environment(os.environ),
        "Disk": disk,
    }
