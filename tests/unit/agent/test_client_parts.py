"""The client's pure parts: addresses, persisted identity and servers, resources, the alloc runner."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.client import (AllocRunner, ClientStateError, format_address, heartbeat_delay,
                          host_resources, load_client_node_id, load_servers, next_backoff,
                          normalise_server_address, resources_from, save_servers)


@pytest.mark.parametrize("text,expected", [
    ("10.0.0.1", ("10.0.0.1", 4647)),
    ("10.0.0.1:5000", ("10.0.0.1", 5000)),
    ("server.example", ("server.example", 4647)),
    ("server.example:4000", ("server.example", 4000)),
    ("::1", ("::1", 4647)),
    ("[::1]", ("::1", 4647)),
    ("[::1]:4000", ("::1", 4000)),
    ("fe80::1:2", ("fe80::1:2", 4647)),
])
def test_normalise_server_address(text: str, expected: tuple[str, int]) -> None:
    """A missing port defaults to 4647 and IPv6 literals come out without brackets."""
    assert normalise_server_address(text) == expected


@pytest.mark.parametrize("text", ["", ":4647", "10.0.0.1:abc", "10.0.0.1:70000", "[::1]:x"])
def test_normalise_rejects_bad_addresses(text: str) -> None:
    """An empty host or a bad port is a ValueError."""
    with pytest.raises(ValueError):
        normalise_server_address(text)


@pytest.mark.parametrize("host,port,expected", [
    ("10.0.0.1", 4647, "10.0.0.1:4647"), ("::1", 4647, "[::1]:4647"), ("fe80::1", 1, "[fe80::1]:1")])
def test_format_address_brackets_ipv6(host: str, port: int, expected: str) -> None:
    """IPv6 hosts are bracketed in ip:port text, IPv4 ones are not."""
    assert format_address(host, port) == expected


def test_node_id_is_created_once_and_kept(tmp_path: Path) -> None:
    """The first load writes a UUID to client/node-id; later loads return the same id."""
    first = load_client_node_id(str(tmp_path))
    assert str(uuid.UUID(first)) == first
    assert (tmp_path / "client" / "node-id").read_text().strip() == first
    assert load_client_node_id(str(tmp_path)) == first


def test_node_id_without_data_dir_is_random() -> None:
    """Without a data dir every load is a fresh UUID."""
    assert load_client_node_id(None) != load_client_node_id(None)


def test_corrupt_node_id_is_a_startup_error(tmp_path: Path) -> None:
    """A node-id file that holds no UUID raises ClientStateError naming the file."""
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "node-id").write_text("not-a-uuid")
    with pytest.raises(ClientStateError, match="node-id"):
        load_client_node_id(str(tmp_path))


def test_servers_round_trip_through_servers_json(tmp_path: Path) -> None:
    """save_servers writes a JSON list that load_servers reads back in order."""
    save_servers(str(tmp_path), ["10.0.0.2:4647", "[::1]:4647"])
    assert json.loads((tmp_path / "client" / "servers.json").read_text()) == ["10.0.0.2:4647",
                                                                              "[::1]:4647"]
    assert load_servers(str(tmp_path)) == ["10.0.0.2:4647", "[::1]:4647"]


@pytest.mark.parametrize("content", ["{", '{"a": 1}', "[1, 2]"])
def test_bad_servers_json_is_ignored(tmp_path: Path, content: str) -> None:
    """An unreadable or wrongly shaped servers.json loads as an empty list."""
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "servers.json").write_text(content)
    assert load_servers(str(tmp_path)) == []


def test_servers_without_data_dir() -> None:
    """Without a data dir nothing is saved and nothing loads."""
    save_servers(None, ["10.0.0.1:4647"])
    assert load_servers(None) == []


def test_resources_from_cores_frequency_and_memory() -> None:
    """CPU is cores x MHz per core, memory is whole MB."""
    assert resources_from(4, 2500.0, 8 * 2**30 + 5) == {"CPU": 10000, "MemoryMB": 8192}


def test_host_resources_shape() -> None:
    """psutil's view of this host gives positive integer CPU and MemoryMB."""
    resources = host_resources()
    assert set(resources) == {"CPU", "MemoryMB"}
    assert all(isinstance(v, int) and v > 0 for v in resources.values())


def test_heartbeat_delay_stays_in_the_window() -> None:
    """Every heartbeat falls between half and nine tenths of the TTL."""
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    delays = [heartbeat_delay(10.0, rng) for _ in range(1000)]
    assert all(5.0 <= d <= 9.0 for d in delays)
    assert max(delays) - min(delays) > 3.0   # spread, not a constant


def test_backoff_doubles_between_one_and_thirty() -> None:
    """Retry delays go 1, 2, 4, 8, 16, 30, 30."""
    delays, delay = [], 1.0
    for _ in range(7):
        delays.append(delay)
        delay = next_backoff(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30]


def alloc(alloc_id: str, desired: str = "run", client: str = "pending", **extra: Any) -> dict[str, Any]:
    return {"ID": alloc_id, "DesiredStatus": desired, "ClientStatus": client, **extra}


def test_pending_alloc_starts_running_once() -> None:
    """A pending alloc desired run is reported running once; a stale server view does not resend it."""
    runner = AllocRunner()
    runner.observe([alloc("a")], now=0.0)
    assert runner.pending_updates() == [{"ID": "a", "ClientStatus": "running"}]
    runner.updates_sent(runner.pending_updates())
    runner.observe([alloc("a", client="pending")], now=1.0)   # the server has not applied it yet
    assert runner.pending_updates() == []
    assert runner.status("a") == "running"
    assert runner.next_deadline() is None


def test_batch_alloc_completes_after_its_duration() -> None:
    """An alloc with Duration runs that long from when it started, then completes."""
    runner = AllocRunner()
    runner.observe([alloc("b", Duration=5)], now=10.0)
    assert runner.next_deadline() == 15.0
    runner.handle_timers(14.9)
    assert runner.status("b") == "running"
    runner.handle_timers(15.0)
    assert runner.pending_updates() == [{"ID": "b", "ClientStatus": "complete"}]
    assert runner.next_deadline() is None


@pytest.mark.parametrize("extra,finite", [
    ({"Duration": 0}, False), ({"Duration": 0, "JobType": "batch"}, True),
    ({"Duration": True}, False), ({"Duration": "5"}, False), ({}, False)])
def test_which_allocs_are_finite(extra: dict[str, Any], finite: bool) -> None:
    """Duration > 0 (or 0 on a batch job) is finite; 0, missing or non-numbers run until stopped."""
    runner = AllocRunner()
    runner.observe([alloc("c", **extra)], now=0.0)
    assert (runner.next_deadline() is not None) == finite


def test_stopped_alloc_completes_and_unsent_updates_merge() -> None:
    """A desired-stop alloc is reported complete; only the latest status per alloc is sent."""
    runner = AllocRunner()
    runner.observe([alloc("d")], now=0.0)
    runner.observe([alloc("d", desired="stop")], now=1.0)
    assert runner.pending_updates() == [{"ID": "d", "ClientStatus": "complete"}]


def test_update_changed_in_flight_is_kept() -> None:
    """An update acknowledged after its alloc moved on does not erase the newer status."""
    runner = AllocRunner()
    runner.observe([alloc("e", Duration=1)], now=0.0)
    in_flight = runner.pending_updates()
    runner.handle_timers(1.0)
    runner.updates_sent(in_flight)
    assert runner.pending_updates() == [{"ID": "e", "ClientStatus": "complete"}]


def test_server_terminal_status_wins_and_gone_allocs_are_forgotten() -> None:
    """A server-side "lost" replaces the local view; allocs no longer listed are dropped."""
    runner = AllocRunner()
    runner.observe([alloc("f", Duration=10), alloc("g")], now=0.0)
    runner.observe([alloc("f", client="lost"), alloc("g")], now=1.0)
    assert runner.status("f") == "lost"
    assert runner.next_deadline() is None
    assert runner.pending_updates() == [{"ID": "g", "ClientStatus": "running"}]
    runner.observe([], now=2.0)
    assert runner.num_allocations == 0 and runner.pending_updates() == []


def test_malformed_allocs_are_counted_and_skipped() -> None:
    """Records that are not maps with a string ID are dropped and counted."""
    runner = AllocRunner()
    runner.observe([None, {"ID": 3}, "x", alloc("h")], now=0.0)
    assert runner.dropped == 3
    assert runner.num_allocations == 1
