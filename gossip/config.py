"""Gossip settings: memberlist's timing profiles and Serf's knobs (spec section 7.10).

``GossipConfig.lan()``, ``.wan()`` and ``.local()`` give memberlist's default
configurations (``config.go`` ``DefaultLANConfig``/``DefaultWANConfig``/
``DefaultLocalConfig``); Serf's settings are the agent defaults. Durations are float
seconds. Choice for shoal: Nomad servers gossip with the ``wan`` profile, but an
agent whose gossip address is on loopback (a local cluster on one machine) defaults
to ``lan``, the profile real Serf agents use by default, so shoal and Serf are
compared like for like and failures are detected in seconds rather than tens of
seconds. ``local`` is not the default: with ``retransmit_mult`` 2 it drops
broadcasts now and then (serf-baseline.md section 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .errors import ConfigError

# memberlist protocol range 1..5 speaking 2 (Serf forces 2); Serf protocol 2..5
# speaking 4, as Nomad's agents advertise (agent-api.md 2.1).
DEFAULT_VSN = bytes([1, 5, 2, 2, 5, 4])


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Every memberlist and Serf knob shoal uses; construct via a profile."""

    profile: str = "lan"
    # --- memberlist ---
    tcp_timeout: float = 10.0
    """Deadline of every stream operation (connect, write, read)."""
    indirect_checks: int = 3
    """Relays asked with indirectPing when a direct probe gets no ack."""
    retransmit_mult: int = 4
    """A broadcast is sent retransmit_mult * ceil(log10(n + 1)) times."""
    suspicion_mult: int = 4
    """min suspicion timeout = suspicion_mult * max(1, log10(max(1, n))) * probe_interval."""
    suspicion_max_timeout_mult: int = 6
    """max suspicion timeout = suspicion_max_timeout_mult * min timeout."""
    push_pull_interval: float = 30.0
    """Periodic full-state sync; scaled by push_pull_scale for n > 32."""
    probe_interval: float = 1.0
    """Time between probes, multiplied by (health score + 1)."""
    probe_timeout: float = 0.5
    """Wait for a direct ack before indirect probes start."""
    awareness_max_multiplier: int = 8
    """Health score runs 0 .. awareness_max_multiplier - 1."""
    gossip_interval: float = 0.2
    """Time between gossip rounds."""
    gossip_nodes: int = 3
    """Random targets per gossip round."""
    gossip_to_the_dead_time: float = 30.0
    """Dead nodes still receive gossip (and stay listed) this long."""
    udp_buffer_bytes: int = 1400
    """Budget for a packet filled with piggybacked broadcasts."""
    max_packet_bytes: int = 65536
    """Larger datagrams are dropped as oversized."""
    meta_max_bytes: int = 512
    handoff_queue_depth: int = 1024
    enable_compression: bool = True
    """Compress every stream (as serf agents do); see ``compress_udp`` for datagrams."""
    compress_udp: bool = False
    """Also try LZW on outgoing datagrams (kept when shorter), as Go memberlist does.
    Off by default: peers accept plain datagrams (spec section 9), and pure-Python LZW
    costs both the sender and every receiver more CPU than the bytes it saves."""
    dead_node_reclaim_time: float = 0.0
    """0 = a dead node's name is never reclaimed by another address (serf)."""
    vsn: bytes = DEFAULT_VSN
    # --- Serf ---
    broadcast_timeout: float = 5.0
    leave_propagate_delay: float = 1.0
    event_buffer: int = 512
    query_buffer: int = 512
    reap_interval: float = 15.0
    reconnect_interval: float = 30.0
    reconnect_timeout: float = 24 * 3600.0
    tombstone_timeout: float = 24 * 3600.0
    recent_intent_timeout: float = 300.0
    queue_check_interval: float = 30.0
    max_queue_depth: int = 4096
    query_timeout_mult: int = 16
    query_size_limit: int = 1024
    query_response_size_limit: int = 1024
    user_event_size_limit: int = 512
    enable_name_conflict_resolution: bool = True

    def __post_init__(self) -> None:
        if self.profile not in ("lan", "wan", "local"):
            raise ConfigError(f"unknown gossip profile {self.profile!r} (want lan, wan or local)")
        if len(self.vsn) != 6 or self.vsn[0] == 0 or self.vsn[1] == 0 or self.vsn[0] > self.vsn[1]:
            raise ConfigError(f"bad protocol versions {list(self.vsn)}")
        for name in ("probe_interval", "probe_timeout", "gossip_interval", "tcp_timeout",
                     "push_pull_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.user_event_size_limit > 9216:
            raise ConfigError("user_event_size_limit is capped at 9216 bytes")

    # --- profiles ---
    @classmethod
    def lan(cls, **overrides: object) -> "GossipConfig":
        """memberlist DefaultLANConfig (serf agent's default)."""
        return replace(cls(profile="lan"), **overrides)

    @classmethod
    def wan(cls, **overrides: object) -> "GossipConfig":
        """memberlist DefaultWANConfig (Nomad servers)."""
        base = cls(profile="wan", tcp_timeout=30.0, suspicion_mult=6, push_pull_interval=60.0,
                   probe_interval=5.0, probe_timeout=3.0, gossip_interval=0.5, gossip_nodes=4,
                   gossip_to_the_dead_time=60.0)
        return replace(base, **overrides)

    @classmethod
    def local(cls, **overrides: object) -> "GossipConfig":
        """memberlist DefaultLocalConfig."""
        base = cls(profile="local", tcp_timeout=1.0, indirect_checks=1, retransmit_mult=2,
                   suspicion_mult=3, push_pull_interval=15.0, probe_timeout=0.2,
                   gossip_interval=0.1, gossip_to_the_dead_time=15.0)
        return replace(base, **overrides)

    @classmethod
    def named(cls, profile: str, **overrides: object) -> "GossipConfig":
        """The profile called ``profile`` ("lan", "wan" or "local")."""
        if profile not in ("lan", "wan", "local"):
            raise ConfigError(f"unknown gossip profile {profile!r} (want lan, wan or local)")
        return getattr(cls, profile)(**overrides)

    # --- derived figures (pure formulas, shared by cores and tests) ---
    def retransmit_limit(self, n: int) -> int:
        """Transmissions of one broadcast among ``n`` nodes: mult * ceil(log10(n + 1))."""
        return self.retransmit_mult * math.ceil(math.log10(n + 1))

    def push_pull_scale(self, n: int) -> float:
        """The push/pull interval for ``n`` nodes: x1 up to 32, then +1 per doubling."""
        if n <= 32:
            return self.push_pull_interval
        return self.push_pull_interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)

    def suspicion_timeouts(self, n: int) -> tuple[float, float]:
        """(min, max) suspicion timeout among ``n`` known nodes, spec 7.5."""
        node_scale = max(1.0, math.log10(max(1, n)))
        minimum = self.suspicion_mult * node_scale * self.probe_interval
        # memberlist rounds the min timeout to whole milliseconds
        minimum = math.floor(minimum * 1000) / 1000
        return minimum, self.suspicion_max_timeout_mult * minimum

    def default_query_timeout(self, alive: int) -> float:
        """Serf's default query timeout: gossip_interval * mult * ceil(log10(alive + 1))."""
        return self.gossip_interval * self.query_timeout_mult * math.ceil(math.log10(alive + 1))
