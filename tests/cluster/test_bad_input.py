"""Bad datagrams and streams sent to a running `shoal agent` are counted and dropped."""

from __future__ import annotations

import base64
import errno
import os
import socket
import struct
import time
import zlib

import msgpack
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from harness import (CONVERGE_DEADLINE, KEY1, KEY2, ShoalNode, make_shoal, wait_shoal_ready,
                     wait_statuses, wait_until)

pytestmark = pytest.mark.cluster

MAX_UDP_PAYLOAD = 65507     # the largest IPv4 datagram; the agent reads up to 65536 bytes
TCP_TIMEOUT_LAN = 10.0      # memberlist lan profile TCPTimeout


# ------------------------------------------------------------------ hand-made bytes

def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)


def ping(seq: int, node: str, source: tuple[str, int] | None = None) -> bytes:
    body: dict[str, object] = {"Node": node, "SeqNo": seq}
    if source is not None:
        body |= {"SourceAddr": socket.inet_aton(source[0]), "SourcePort": source[1],
                 "SourceNode": "tester"}
    return b"\x00" + _pack(dict(sorted(body.items())))


def with_bad_crc(packet: bytes) -> bytes:
    return b"\x0c" + struct.pack(">I", (zlib.crc32(packet) ^ 0xDEADBEEF) & 0xFFFFFFFF) + packet


def encrypt_udp(key_b64: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    return b"\x01" + nonce + AESGCM(base64.b64decode(key_b64)).encrypt(nonce, plaintext, b"")


def encrypt_stream(key_b64: str, plaintext: bytes) -> bytes:
    header = b"\x0a" + struct.pack(">I", 1 + 12 + len(plaintext) + 16)
    nonce = os.urandom(12)
    return header + b"\x01" + nonce + AESGCM(base64.b64decode(key_b64)).encrypt(nonce, plaintext, header)


def push_pull_start(nodes: int = 2) -> bytes:
    """A push/pull request announcing ``nodes`` node states, followed by only half of one."""
    header = _pack({"Join": True, "Nodes": nodes, "UserStateLen": 0})
    state = _pack({"Addr": socket.inet_aton("127.0.0.9"), "Incarnation": 1, "Meta": b"",
                   "Name": "ghost", "Port": 7946, "State": 0, "Vsn": bytes([1, 5, 2, 2, 5, 5])})
    return b"\x06" + header + state[: len(state) // 2]


# ------------------------------------------------------------------ observing

def _members_snapshot(node: ShoalNode) -> list[tuple]:
    return sorted((m["Name"], m["Addr"], m["Port"], m["Status"], tuple(sorted(m["Tags"].items())))
                  for m in node.members())


def _expect_dropped(node: ShoalNode, what: str, send, reasons: set[str] | None) -> str:
    """Send one bad input; wait until a dropped counter of ``node`` grows; return its reason."""
    before = node.dropped()
    send()

    def grown() -> dict[str, int]:
        now = node.dropped()
        return {k: v - before.get(k, 0) for k, v in now.items() if v > before.get(k, 0)}

    delta = wait_until(f"{node.name} to count {what} as dropped", grown, bool, timeout=10, watch=[node])
    if reasons is not None:
        assert set(delta) & reasons, f"{what}: counted as {delta}, expected one of {sorted(reasons)}"
    return ",".join(sorted(delta))


def _udp_send(target: ShoalNode, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.sendto(payload, (target.ip, target.serf_port))


def _tcp_send(target: ShoalNode, payload: bytes) -> bytes:
    """Write ``payload``, half-close, and read whatever the agent answers until it closes."""
    with socket.create_connection((target.ip, target.serf_port), timeout=TCP_TIMEOUT_LAN + 5) as sock:
        reply = b""
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass   # the agent dropped the stream before reading all of it
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:   # shutdown() after the agent's reset
                raise
        return reply


def _ping_answered(target: ShoalNode, seq: int) -> bool:
    """A well-formed UDP ping still gets an ack with the same sequence number."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        sock.sendto(ping(seq, target.member_name, sock.getsockname()), (target.ip, target.serf_port))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                return False
            if seq in _ack_seqs(data):
                return True
    return False


def _ack_seqs(packet: bytes) -> list[int]:
    """Sequence numbers of the acks in a (possibly CRC-wrapped or compound) packet."""
    if not packet:
        return []
    kind = packet[0]
    if kind == 12:
        return _ack_seqs(packet[5:])
    if kind == 2:
        return [msgpack.unpackb(packet[1:], raw=False, strict_map_key=False).get("SeqNo")]
    if kind == 7:
        count = packet[1]
        lengths = struct.unpack(f">{count}H", packet[2: 2 + 2 * count])
        offset, seqs = 2 + 2 * count, []
        for length in lengths:
            seqs += _ack_seqs(packet[offset: offset + length])
            offset += length
        return seqs
    return []


# ------------------------------------------------------------------ tests

def test_bad_datagrams_and_streams_are_counted_and_dropped(procs, loopback, tmp_path):
    """Garbage, truncated, wrongly encrypted and oversized inputs are counted; members do not change."""
    p1 = make_shoal(procs, tmp_path, loopback.next(), "p1")
    p2 = make_shoal(procs, tmp_path, loopback.next(), "p2")
    e1 = make_shoal(procs, tmp_path, loopback.next(), "e1", encrypt=KEY1)
    for node in (p1, p2, e1):
        node.start()
    for node in (p1, p2, e1):
        wait_shoal_ready(node)
    status, body = p2.join(p1.serf_addr)
    assert status == 200 and body == {"num_joined": 1, "error": ""}, (status, body)
    wait_statuses([p1, p2], {p1.member_name: "alive", p2.member_name: "alive"},
                  what="p1 and p2 to see each other", timeout=CONVERGE_DEADLINE)
    baseline = {n.name: _members_snapshot(n) for n in (p1, p2, e1)}
    good_ping = ping(77, p1.member_name, ("127.0.0.1", 9))

    counted: dict[str, str] = {}
    datagrams = [
        ("garbage datagram", p1, b"\xee" + os.urandom(40), {"unknown_type", "decode"}),
        ("undecodable ping", p1, b"\x00\xc1\xc1\xc1\xc1", {"decode"}),
        ("truncated ping", p1, good_ping[: len(good_ping) // 2], {"decode", "truncated"}),
        ("compound shorter than its lengths", p1, b"\x07\x01\x00\x40" + good_ping[:10], {"truncated", "decode"}),
        ("datagram with a bad CRC", p1, with_bad_crc(good_ping), {"crc"}),
        ("encrypted datagram to a plain node", p1, encrypt_udp(KEY1, good_ping), None),
        ("oversized garbage datagram", p1, b"\x00" + b"\xc1" * (MAX_UDP_PAYLOAD - 1), None),
        ("datagram under a wrong key", e1, encrypt_udp(KEY2, ping(78, e1.member_name)), {"decrypt"}),
        ("plaintext datagram to an encrypted node", e1, ping(79, e1.member_name), {"decrypt"}),
        ("too short to decrypt", e1, b"\x01" + os.urandom(10), {"decrypt"}),
    ]
    for what, target, payload, reasons in datagrams:
        counted[what] = _expect_dropped(target, what, lambda: _udp_send(target, payload), reasons)

    streams = [
        ("garbage stream", p1, b"\xee" * 64, {"unknown_type", "decode"}),
        ("truncated push/pull", p1, push_pull_start(), {"truncated"}),
        ("stream under a wrong key", e1, encrypt_stream(KEY2, push_pull_start()), {"decrypt"}),
        ("plaintext stream to an encrypted node", e1, push_pull_start(), {"encryption_mismatch", "decrypt"}),
        ("encrypted stream to a plain node", p1, encrypt_stream(KEY1, push_pull_start()),
         {"encryption_mismatch", "decrypt"}),
        ("oversized encrypted stream", e1, b"\x0a" + struct.pack(">I", 0x7FFFFFF0) + b"\x01" * 64, {"oversized"}),
    ]
    for what, target, payload, reasons in streams:
        counted[what] = _expect_dropped(target, what, lambda: _tcp_send(target, payload), reasons)
    print("counted as:", counted)

    for node in (p1, p2, e1):
        assert node.running(), f"{node.name} exited with {node.returncode}"
        assert _members_snapshot(node) == baseline[node.name], node.name
    assert wait_until("p1 to still answer a good UDP ping", lambda: _ping_answered(p1, 4242), bool,
                      timeout=10, watch=[p1])


def test_stream_that_never_finishes_is_closed_at_the_timeout(procs, loopback, tmp_path):
    """A push/pull stream that stops mid-message is closed by the agent at the lan TCP timeout (10 s)."""
    node = make_shoal(procs, tmp_path, loopback.next(), "slow")
    node.start()
    wait_shoal_ready(node)
    before = node.dropped()
    with socket.create_connection((node.ip, node.serf_port), timeout=5) as sock:
        sock.sendall(push_pull_start())
        started = time.monotonic()
        sock.settimeout(TCP_TIMEOUT_LAN + 10)
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"the agent kept the stream open for {time.monotonic() - started:.1f}s")
        elapsed = time.monotonic() - started
    assert TCP_TIMEOUT_LAN - 2 <= elapsed <= TCP_TIMEOUT_LAN + 5, f"closed after {elapsed:.1f}s"
    delta = wait_until("the stream timeout to be counted",
                       lambda: {k: v - before.get(k, 0) for k, v in node.dropped().items()
                                if v > before.get(k, 0)}, bool, timeout=5, watch=[node])
    assert any("timeout" in reason for reason in delta), delta
    assert node.statuses() == {node.member_name: "alive"}
