"""The gossip driver under stalls, network errors, a full send queue and cancelled callers.

These drive ``GossipHandle`` with a scripted fake core on real 127.0.0.1 sockets, so
each test controls exactly which outputs appear and when the core's timers are due.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.testing

from gossip import driver
from gossip.driver import GossipHandle, open_gossip_sockets
from gossip.events import ForceLeaveFinished, JoinFinished, OpenStream, Output, SendPacket
from gossip.types import Address

from .helpers import fast_config, wait_until


class ScriptedCore:
    """Just enough of ``GossipCore`` for the driver; records every input it is given.

    ``user_event`` is the test's trigger: it runs ``self.script(now)``, which may queue
    outputs or set the timer deadline.
    """

    def __init__(self) -> None:
        self.inputs: list[tuple[Any, ...]] = []
        self.outputs: list[Output] = []
        self.deadline: float | None = None
        self.script: Callable[[float], None] = lambda now: None
        self._next_id = 0

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def receive_packet(self, data: bytes, source: Address, now: float) -> None:
        self.inputs.append(("packet", data))

    def next_deadline(self) -> float | None:
        return self.deadline

    def handle_timers(self, now: float) -> None:
        self.inputs.append(("timers",))

    def take_outputs(self) -> list[Output]:
        outputs, self.outputs = self.outputs, []
        return outputs

    def user_event(self, name: str, payload: bytes, coalesce: bool, now: float) -> None:
        self.script(now)

    def join(self, seeds: list[Address], now: float) -> int:
        return self._new_id()

    def force_leave(self, name: str, prune: bool, now: float) -> int:
        return self._new_id()

    def accept_stream(self, peer: Address, now: float) -> int:
        return self._new_id()

    def stream_data(self, stream_id: int, data: bytes, now: float) -> None:
        self.inputs.append(("stream_data", stream_id, data))

    def stream_closed(self, stream_id: int, now: float) -> None:
        self.inputs.append(("stream_closed", stream_id))

    def stream_failed(self, stream_id: int, reason: str, now: float) -> None:
        self.inputs.append(("stream_failed", stream_id, reason))


class ProbeCore(ScriptedCore):
    """A probe in miniature: an ack before the timeout clears it, the timeout suspects."""

    def receive_packet(self, data: bytes, source: Address, now: float) -> None:
        super().receive_packet(data, source, now)
        if data == b"ack":
            self.deadline = None

    def handle_timers(self, now: float) -> None:
        super().handle_timers(now)
        if self.deadline is not None and now >= self.deadline:
            self.inputs.append(("suspect",))
            self.deadline = None


async def start(nursery: trio.Nursery, core: ScriptedCore,
                facts: list[Output] | None = None) -> tuple[GossipHandle, int]:
    sockets = await open_gossip_sockets(("127.0.0.1", 0))
    handle = GossipHandle(core, fast_config(), on_fact=facts.append if facts is not None else None)
    port = await nursery.start(handle.run, sockets)
    return handle, port


def trigger(handle: GossipHandle, core: ScriptedCore, script: Callable[[float], None]) -> None:
    """Make the core run ``script`` inside one driver input (so its outputs are performed)."""
    core.script = script
    handle.user_event("trigger", b"")


@contextmanager
def udp_peer(port: int = 0) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.settimeout(5)
        yield sock
    finally:
        sock.close()


def closed_udp_port() -> int:
    with udp_peer() as probe:
        return int(probe.getsockname()[1])


def warnings_with(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and text in r.getMessage()]


async def test_datagrams_waiting_in_the_buffer_are_fed_before_timers(
        mock_clock: trio.testing.MockClock) -> None:
    """After a stall past a probe timeout, the ack already in the socket buffer is read first."""
    with trio.fail_after(100):  # virtual time: the jumps below add up
        async with trio.open_nursery() as nursery:
            core = ProbeCore()
            handle, port = await start(nursery, core)
            for _ in range(5):  # a few probe rounds; the bug lost about every one
                core.inputs.clear()

                def arm(now: float) -> None:
                    core.deadline = now + 0.5  # the probe timeout
                trigger(handle, core, arm)
                await trio.testing.wait_all_tasks_blocked()  # the timer task saw the deadline
                with udp_peer() as peer:
                    # Other gossip is queued ahead of the ack, as under load.
                    for payload in (b"gossip-1", b"gossip-2", b"gossip-3", b"ack"):
                        peer.sendto(payload, ("127.0.0.1", port))
                mock_clock.jump(2.0)  # the event loop stalls past the timeout
                await trio.testing.wait_all_tasks_blocked()
                assert core.inputs[:4] == [("packet", b"gossip-1"), ("packet", b"gossip-2"),
                                           ("packet", b"gossip-3"), ("packet", b"ack")], core.inputs
                assert ("suspect",) not in core.inputs
            nursery.cancel_scope.cancel()


async def test_udp_receive_buffer_is_enlarged() -> None:
    """The gossip UDP socket gets a receive buffer larger than a fresh socket's default."""
    with udp_peer() as plain:
        default = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    sockets = await open_gossip_sockets(("127.0.0.1", 0))
    try:
        granted = sockets.udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        await sockets.aclose()
    assert granted > default, (granted, default)


def test_receive_buffer_request_halves_until_accepted(caplog: pytest.LogCaptureFixture) -> None:
    """A refused buffer size is halved until the OS accepts one, and the result is logged."""
    caplog.set_level(logging.DEBUG, logger="gossip.driver")

    class PickySocket:
        asked: list[int] = []
        value = 0

        def setsockopt(self, level: int, option: int, size: int) -> None:
            self.asked.append(size)
            if size > 300_000:
                raise OSError(errno.ENOBUFS, "No buffer space available")
            self.value = size

        def getsockopt(self, level: int, option: int) -> int:
            return self.value

    sock = PickySocket()
    assert driver._enlarge_receive_buffer(sock) == 262144
    assert sock.asked == [2097152, 1048576, 524288, 262144]
    assert any("granted_bytes=262144" in r.getMessage() for r in caplog.records)


async def test_icmp_port_unreachable_does_not_stop_the_receive_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    """A ConnectionRefusedError surfacing on recvfrom is counted and logged; reading goes on."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            core = ScriptedCore()
            dead_port = closed_udp_port()
            sockets = await open_gossip_sockets(("127.0.0.1", 0))
            # A connected UDP socket gets ICMP errors reported on Linux without opt-in.
            await sockets.udp.connect(("127.0.0.1", dead_port))
            handle = GossipHandle(core, fast_config())
            port = await nursery.start(handle.run, sockets)
            trigger(handle, core, lambda now: core.outputs.append(
                SendPacket(("127.0.0.1", dead_port), b"ping")))
            await wait_until(lambda: handle.counters.get("driver.receive_errors") >= 1, timeout=5,
                             describe=lambda: handle.counters.snapshot())
            assert warnings_with(caplog, "udp receive failed error=connection refused")
            with udp_peer(dead_port) as peer:  # the peer comes up and talks to us
                peer.sendto(b"hello", ("127.0.0.1", port))
                await wait_until(lambda: ("packet", b"hello") in core.inputs, timeout=5,
                                 describe=lambda: core.inputs)
            nursery.cancel_scope.cancel()


async def test_send_errors_warn_once_per_interval_with_a_count(
        mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    """Failed sends are all counted, but WARNING lines come at most every 10 s, with the count."""
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            core = ScriptedCore()
            handle, _ = await start(nursery, core)
            broadcast = SendPacket(("255.255.255.255", 9), b"x")  # EACCES without SO_BROADCAST
            trigger(handle, core, lambda now: core.outputs.extend([broadcast] * 5))
            assert handle.counters.get("driver.send_errors") == 5
            lines = warnings_with(caplog, "udp send failed dest=255.255.255.255:9")
            assert len(lines) == 1 and "count=1" in lines[0], lines
            mock_clock.jump(5)
            trigger(handle, core, lambda now: core.outputs.append(broadcast))
            assert len(warnings_with(caplog, "udp send failed")) == 1
            mock_clock.jump(6)
            trigger(handle, core, lambda now: core.outputs.append(broadcast))
            lines = warnings_with(caplog, "udp send failed")
            assert len(lines) == 2 and "count=6" in lines[1], lines
            assert handle.counters.get("driver.send_errors") == 7
            nursery.cancel_scope.cancel()


async def test_kernel_backpressure_queues_in_order_then_drops_with_a_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """On EAGAIN datagrams queue in emission order; past the queue they are dropped and warned."""
    monkeypatch.setattr(driver, "_SEND_QUEUE_PACKETS", 4)
    real_sendto = driver._sendto_nowait
    calls: list[bytes] = []

    def full_once(sock: socket.socket, data: bytes, dest: Address) -> None:
        calls.append(data)
        if len(calls) == 1:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        real_sendto(sock, data, dest)
    monkeypatch.setattr(driver, "_sendto_nowait", full_once)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            core = ScriptedCore()
            handle, _port = await start(nursery, core)
            with udp_peer() as peer:
                dest = ("127.0.0.1", peer.getsockname()[1])
                await trio.testing.wait_all_tasks_blocked()  # the sender task awaits the queue
                burst = [SendPacket(dest, b"p%d" % i) for i in range(8)]
                trigger(handle, core, lambda now: core.outputs.extend(burst))
                assert calls == [b"p0"]  # p1.. queued behind p0 without trying the kernel
                # The waiting sender task takes p0; p1-p4 fill the queue; p5-p7 are dropped.
                assert handle.counters.get("driver.send_queue_full") == 3
                assert len(warnings_with(caplog, "udp send queue full")) == 1
                received = [await trio.to_thread.run_sync(peer.recv, 100) for _ in range(5)]
                assert received == [b"p0", b"p1", b"p2", b"p3", b"p4"]
                await wait_until(lambda: handle._send_backlog == 0, timeout=5)
                trigger(handle, core, lambda now: core.outputs.append(SendPacket(dest, b"late")))
                assert calls == [b"p0", b"late"]  # the queue is empty: straight to the kernel
                assert await trio.to_thread.run_sync(peer.recv, 100) == b"late"
            nursery.cancel_scope.cancel()


async def test_cancelled_join_and_force_leave_leave_no_waiter_behind() -> None:
    """A caller cancelled while waiting (an HTTP client gone) leaves nothing in the handle."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            core = ScriptedCore()
            facts: list[Output] = []
            handle, _ = await start(nursery, core, facts)
            async with trio.open_nursery() as callers:
                callers.start_soon(handle.join, [("127.0.0.1", 1)])
                callers.start_soon(handle.force_leave, "gone", False)
                await trio.testing.wait_all_tasks_blocked()
                pending = sorted(handle._waiters)
                assert [kind for kind, _ in pending] == ["force_leave", "join"]
                callers.cancel_scope.cancel()
            assert handle._waiters == {}
            # Late results still reach on_fact, and nothing keeps them.
            late = [ForceLeaveFinished(pending[0][1], None), JoinFinished(pending[1][1], 1, ())]
            trigger(handle, core, lambda now: core.outputs.extend(late))
            assert handle._waiters == {} and all(fact in facts for fact in late)
            # The next join is answered as usual.
            results: list[tuple[int, tuple[str, ...]]] = []

            async def join_once() -> None:
                results.append(await handle.join([("127.0.0.1", 1)]))
            async with trio.open_nursery() as callers:
                callers.start_soon(join_once)
                await trio.testing.wait_all_tasks_blocked()
                (join_key,) = handle._waiters
                trigger(handle, core, lambda now: core.outputs.append(
                    JoinFinished(join_key[1], 1, ())))
            assert results == [(1, ())] and handle._waiters == {}
            nursery.cancel_scope.cancel()


async def test_dial_that_cannot_even_make_a_socket_fails_the_stream_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Running out of descriptors fails that one stream with Go's dial text; the driver goes on."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            core = ScriptedCore()
            handle, port = await start(nursery, core)

            def no_descriptors(*args: Any, **kwargs: Any) -> Any:
                raise OSError(errno.EMFILE, "Too many open files")
            monkeypatch.setattr(trio.socket, "socket", no_descriptors)
            trigger(handle, core, lambda now: core.outputs.append(
                OpenStream(7, ("127.0.0.1", 9), b"push")))
            await wait_until(lambda: any(i[0] == "stream_failed" for i in core.inputs), timeout=5,
                             describe=lambda: core.inputs)
            assert ("stream_failed", 7, "dial tcp 127.0.0.1:9: connect: too many open files") \
                in core.inputs
            assert handle.counters.get("driver.dial_errors") == 1 and handle._streams == {}
            monkeypatch.undo()
            with udp_peer() as peer:
                peer.sendto(b"still here", ("127.0.0.1", port))
            await wait_until(lambda: ("packet", b"still here") in core.inputs, timeout=5,
                             describe=lambda: core.inputs)
            nursery.cancel_scope.cancel()
