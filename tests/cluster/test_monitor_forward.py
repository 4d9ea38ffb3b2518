"""Monitor across real processes: server_id forwarding and the `shoal monitor` command.

Two `shoal agent -server` processes are joined. A join to a dead address makes an agent
log ``join failed addresses=<dead>`` at WARN; the dead address is unique to the test and
sent to one process only, so seeing it in a stream proves whose log the stream carries.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.cli_monitor import FrameDecoder
from harness import PYTHON, Proc, ShoalNode, free_port, http, wait_until
from raft_procs import start_servers

pytestmark = pytest.mark.cluster


def dead_address(node: ShoalNode) -> str:
    """An address on ``node``'s loopback IP where nothing listens (a join there fails at once)."""
    return f"{node.ip}:{free_port(node.ip)}"


def fail_a_join(node: ShoalNode, address: str) -> None:
    status, _ = http("PUT", f"{node.url}/v1/agent/join?address={address}", timeout=10)
    assert status == 200


class MonitorReader:
    """A framed monitor response read with urllib, decoded as `shoal monitor` decodes it."""

    def __init__(self, url: str) -> None:
        self.response: Any = urllib.request.urlopen(url, timeout=5)
        self.decoder = FrameDecoder()
        self.raw = b""
        self.text = b""

    def read_some(self) -> bytes:
        data = self.response.read1(65536)   # a heartbeat comes at least every second
        self.raw += data
        self.text += self.decoder.feed(data)
        return self.text

    def close(self) -> None:
        self.response.close()


def test_monitor_server_id_streams_the_other_servers_log(procs: Any, tmp_path: Path,
                                                         loopback: Any) -> None:
    """GET /v1/agent/monitor?server_id=<m2> on m1 streams m2's log lines, framed."""
    m1, m2 = start_servers(procs, tmp_path, loopback, ["m1", "m2"], expect=2)
    url = f"{m1.url}/v1/agent/monitor?server_id={m2.member_name}&log_level=warn"

    def opened() -> MonitorReader:
        return MonitorReader(url)   # raises (HTTP 500) until m1 knows m2 as a server

    reader = wait_until("m1 to forward a monitor to m2", opened, timeout=30, watch=[m1, m2])
    try:
        assert reader.response.status == 200
        assert reader.response.headers["Content-Type"] == "application/json"
        dead = dead_address(m2)
        fail_a_join(m2, dead)
        wanted = f"[WARN]  agent.http.api: join failed: addresses={dead} errors=1\n".encode()
        text = wait_until("m2's join failure in the stream", reader.read_some,
                          lambda seen: wanted in seen, timeout=20, watch=[m1, m2], interval=0)
        assert f'push/pull failed: peer={dead} reason="dial tcp {dead}: connect: connection refused"' \
            in text.decode()   # gossip's own warning: a quoted value with spaces
        dead_on_m1 = dead_address(m1)
        fail_a_join(m1, dead_on_m1)
        fail_a_join(m2, dead_address(m2))
        text = wait_until("a second line from m2", reader.read_some,
                          lambda seen: seen.count(b"join failed") >= 2, timeout=20, interval=0)
        assert dead_on_m1.encode() not in text   # m1's own log is not in m2's stream

        def raw() -> bytes:
            reader.read_some()
            return reader.raw
        wait_until("a heartbeat through the forward", raw, lambda seen: b"{}" in seen,
                   timeout=5, interval=0)
    finally:
        reader.close()


def test_shoal_monitor_command_prints_lines_until_interrupted(procs: Any, tmp_path: Path,
                                                             loopback: Any) -> None:
    """`shoal monitor` prints a line of the agent's log, exits 0 on Ctrl-C and 1 on a refusal."""
    (m1,) = start_servers(procs, tmp_path, loopback, ["m1"], expect=1)
    cli = procs.add(Proc(name="shoal-monitor",
                         argv=[PYTHON, "-m", "agent", "monitor", "-address", m1.url, "-log-level", "warn"],
                         log_path=tmp_path / "monitor.out", env=dict(os.environ, PYTHONUNBUFFERED="1"),
                         stop_signal=signal.SIGINT)).start()
    dead = dead_address(m1)

    def output_after_a_failed_join() -> str:
        fail_a_join(m1, dead)   # repeated until the command has subscribed and printed one
        return cli.log_text()

    text = wait_until("`shoal monitor` to print the join failure", output_after_a_failed_join,
                      lambda seen: f"addresses={dead}" in seen, timeout=20, watch=[m1, cli])
    assert f"[WARN]  agent.http.api: join failed: addresses={dead} errors=1\n" in text
    assert '"Data"' not in text and "{}" not in text   # frames decoded, heartbeats skipped
    cli.signal(signal.SIGINT)
    assert cli.wait_exit(10) == 0
    # A level the agent refuses: the 400 is printed as Nomad's CLI prints it, exit 1.
    bad = procs.add(Proc(name="shoal-monitor-bad",
                         argv=[PYTHON, "-m", "agent", "monitor", "-address", m1.url, "-log-level", "verbose"],
                         log_path=tmp_path / "monitor-bad.out")).start()
    assert bad.wait_exit(20) == 1
    assert ("Error starting monitor: Unexpected response code: 400 (Unknown log level: verbose)"
            in bad.log_text())
