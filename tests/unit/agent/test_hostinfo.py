"""Host data (agent-api.md 3.7): redaction, go-sockaddr network attributes, disk rules."""

from __future__ import annotations

import json
import os
import socket
from types import SimpleNamespace

import pytest

from agent.hostinfo import (REDACTED, REDACTED_NAMES, SKIPPED_FILESYSTEMS, disk_usage, host_data,
                            ip_attributes, network_entries, os_string, read_text, redact_environment)


@pytest.mark.parametrize("name,hidden", [
    *[(name, True) for name in sorted(REDACTED_NAMES)],
    ("MY_TOKEN_X", True), ("github_token", True), ("db_secret", True), ("SecretSauce", True),
    ("NOMAD_ADDR", False), ("DB_PASSWORD", False), ("SSH_KEY", False), ("PATH", False),
    ("aws_access_key_id", False),   # the exact list is case-sensitive; this name has no TOKEN/SECRET
])
def test_environment_redaction_rules(name: str, hidden: bool) -> None:
    """Exact names of the list, or TOKEN/SECRET anywhere in the upper-cased name; nothing else."""
    out = redact_environment({name: "value"})
    assert out == {name: REDACTED if hidden else "value"}


def test_known_ipv4_interface_address() -> None:
    """192.168.1.10/24 gives go-sockaddr's values, every one a string."""
    attributes = ip_attributes("192.168.1.10", "255.255.255.0")
    assert attributes == {
        "type": "IPv4", "string": "192.168.1.10/24", "host": "192.168.1.10",
        "address": "192.168.1.10", "port": "0", "netmask": "255.255.255.0",
        "network": "192.168.1.0", "mask_bits": "24",
        "binary": "11000000101010000000000100001010", "hex": "c0a8010a",
        "first_usable": "192.168.1.1", "last_usable": "192.168.1.254", "octets": "192 168 1 10",
        "size": "256", "broadcast": "192.168.1.255", "uint32": "3232235786",
        "DialPacket": '"udp4" ""', "DialStream": '"tcp4" ""',
        "ListenPacket": '"udp4" ""', "ListenStream": '"tcp4" ""',
    }


@pytest.mark.parametrize("mask,first,last,size", [
    ("255.255.255.255", "10.0.0.7", "10.0.0.7", "1"),      # /32: the address itself
    ("255.255.255.254", "10.0.0.6", "10.0.0.7", "2"),      # /31: a point-to-point pair
    ("255.255.255.252", "10.0.0.5", "10.0.0.6", "4"),
])
def test_ipv4_usable_range_edge_cases(mask: str, first: str, last: str, size: str) -> None:
    """First/last usable follow go-sockaddr: /31 and /32 have no network or broadcast to skip."""
    attributes = ip_attributes("10.0.0.7", mask)
    assert (attributes["first_usable"], attributes["last_usable"], attributes["size"]) == (first, last, size)


def test_host_mask_lists_listen_arguments() -> None:
    """A /32 address can be listened on: go-sockaddr fills the Listen pair, never the Dial pair."""
    attributes = ip_attributes("10.0.0.7", "255.255.255.255")
    assert attributes["string"] == "10.0.0.7"
    assert attributes["ListenStream"] == '"tcp4" "10.0.0.7:0"'
    assert attributes["DialStream"] == '"tcp4" ""'


def test_ipv6_entry() -> None:
    """IPv6: no broadcast, uint128, zone dropped, network bounds as first/last usable."""
    attributes = ip_attributes("fe80::1%eth0", "ffff:ffff:ffff:ffff::")
    assert attributes["type"] == "IPv6"
    assert attributes["string"] == "fe80::1/64"
    assert attributes["network"] == "fe80::"
    assert attributes["first_usable"] == "fe80::"
    assert attributes["last_usable"] == "fe80::ffff:ffff:ffff:ffff"
    assert attributes["size"] == str(2**64)
    assert attributes["uint128"] == str(int("fe80" + "0" * 27 + "1", 16))
    assert len(attributes["binary"]) == 128 and len(attributes["hex"]) == 32
    assert "broadcast" not in attributes and "uint32" not in attributes
    assert all(isinstance(value, str) for value in attributes.values())


def test_network_skips_link_layer_and_bad_entries() -> None:
    """Only IP families are listed; a garbled address is skipped rather than failing the call."""
    packet_family = getattr(socket, "AF_PACKET", 17)
    entries = network_entries([(packet_family, "00:11:22:33:44:55", None),
                               (socket.AF_INET, "not-an-ip", "255.0.0.0"),
                               (socket.AF_INET, "127.0.0.1", "255.0.0.0")])
    assert [entry["string"] for entry in entries] == ["127.0.0.1/8"]


def test_disk_skips_pseudo_file_systems_and_unreadable_mounts() -> None:
    """Pseudo file systems from the spec's list and mounts whose statvfs fails are left out;
    sizes are MiB, truncated, and used counts the blocks reserved for root."""
    def statvfs(path: str) -> SimpleNamespace:
        if path == "/broken":
            raise PermissionError(13, "Permission denied")
        # 1000 MiB + a bit, 300.5 MiB available to users
        return SimpleNamespace(f_frsize=4096, f_bsize=4096, f_blocks=(1000 * 2**20 + 5000) // 4096,
                               f_bavail=int(300.5 * 2**20) // 4096)

    mounts = [("/", "ext4"), ("/broken", "xfs")] + [(f"/pseudo/{fs}", fs) for fs in sorted(SKIPPED_FILESYSTEMS)]
    assert disk_usage(mounts, statvfs) == {"/": {"DiskMB": 1000, "UsedMB": 699}}


def test_unreadable_file_gives_the_error_text(tmp_path) -> None:
    """ResolvConf/Hosts: the text of the file, or Go's error wording when it cannot be read."""
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost\n")
    assert read_text(str(path)) == "127.0.0.1 localhost\n"
    missing = tmp_path / "missing"
    assert read_text(str(missing)) == f"open {missing}: no such file or directory"


def test_host_data_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live collection: Nomad's key order, the environment redacted, JSON-ready."""
    monkeypatch.setenv("SHOAL_TEST_TOKEN", "t0p")
    monkeypatch.setenv("SHOAL_TEST_PLAIN", "visible")
    data = host_data()
    assert list(data) == ["OS", "Network", "ResolvConf", "Hosts", "Environment", "Disk"]
    uname = os.uname()
    assert data["OS"] == os_string(uname.machine, uname.nodename, uname.release, uname.sysname,
                                   uname.version)
    assert data["Environment"]["SHOAL_TEST_TOKEN"] == REDACTED
    assert data["Environment"]["SHOAL_TEST_PLAIN"] == "visible"
    assert any(entry.get("address") == "127.0.0.1" for entry in data["Network"])
    for usage in data["Disk"].values():
        assert list(usage) == ["DiskMB", "UsedMB"] and usage["UsedMB"] <= usage["DiskMB"]
    json.dumps(data)
