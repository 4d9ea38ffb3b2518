"""The fault filter in front of every transport of an agent, and the fault model it shares.

Theory of operation. A chaos experiment describes what the network should do wrong
as data, ``FaultRules``: drop everything to or from chosen members, lose each
outbound packet with a probability, add a fixed delay to every outbound packet, and
cut the cluster into partition groups (names listed in no group form one more group
together; a member only talks to members of its own group). The rules arrive as the
JSON body of ``PUT /v1/agent/faults`` (``FaultRules.from_json``) and are shown back by
``GET`` (``to_json``); a bad body raises ``FaultSpecError`` and changes nothing.

``FaultFilter`` applies the rules of one agent. Every transport asks it before it
sends (``outbound``: drop, or the delay to add) and after it receives (``inbound``:
keep or drop); gossip UDP and TCP, RPC and Raft all pass it. Transports know peers
by address, rules know members by name: ``set_peers`` gives the address book
(gossip, RPC and Raft "ip:port" addresses to member names) and ``name_for`` resolves
an address, exactly first, else by its bare IP when only one member has that IP (an
accepted TCP connection comes from an ephemeral port). An address no member has is
not subject to name rules (drop lists, partitions) but still to loss and delay.

Every decision that draws randomness uses the filter's ``rng``, reseeded from
``f"{seed}/{self_name}/faults"`` each time rules are set, so a rerun with the same
seed and the same traffic drops the same packets. Installing or clearing rules logs
one INFO line with the rules; ``stats()`` counts what was dropped and delayed.

The decision functions below the rules (``partition_groups``, ``is_split``,
``draw_lost``, ``draw_delay``) are the fault model the simulator's virtual network
(``agent/sim/network.py``) uses as well, draw for draw.

Pure: no I/O, no clock, no global randomness (``tests/test_layering.py``).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultFilter", "FaultRules", "FaultSpecError", "draw_delay", "draw_lost",
           "is_split", "partition_groups"]

log = logging.getLogger(__name__)

_JSON_KEYS = ("DropTo", "DropFrom", "Loss", "DelayMs", "Partitions", "Seed")
"""The keys of the API body, in the order ``to_json`` writes them."""


class FaultSpecError(ValueError):
    """Fault rules that cannot be applied; the message is one line naming the key."""


# --- the shared fault model ------------------------------------------------------


def partition_groups(groups: Iterable[Iterable[str]]) -> dict[str, int]:
    """Map each listed name to the index of its group (a later group wins a repeat).

    Names absent from the map form one more group together (index -1 in ``is_split``).
    """
    group_of: dict[str, int] = {}
    for index, group in enumerate(groups):
        for name in group:
            group_of[name] = index
    return group_of


def is_split(group_of: Mapping[str, int], a: str, b: str) -> bool:
    """Whether the partition ``group_of`` separates members ``a`` and ``b``."""
    return group_of.get(a, -1) != group_of.get(b, -1)


def draw_lost(rng: random.Random, probability: float) -> bool:
    """Whether one packet is lost; draws from ``rng`` only when ``probability`` is not 0."""
    return bool(probability) and rng.random() < probability


def draw_delay(rng: random.Random, minimum: float, mean: float) -> float:
    """A one-way delay: ``minimum`` plus an exponential draw of mean ``mean`` (none if 0)."""
    delay = minimum
    if mean > 0:
        delay += rng.expovariate(1.0 / mean)
    return delay


# --- rules -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FaultRules:
    """What one agent's network does wrong, as data (the body of ``/v1/agent/faults``).

    Raises:
        FaultSpecError: loss outside [0, 1], a negative or infinite delay, or a name
            in two partition groups.
    """

    drop_to: frozenset[str] = frozenset()
    """Members this agent sends nothing to."""
    drop_from: frozenset[str] = frozenset()
    """Members whose packets and connections this agent ignores."""
    loss: float = 0.0
    """Chance each outbound packet, frame or connection attempt is lost."""
    delay: float = 0.0
    """Seconds added to every outbound packet or frame."""
    partitions: tuple[tuple[str, ...], ...] = ()
    """Groups of member names; the unlisted form one more group."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.loss, (int, float)) and 0.0 <= self.loss <= 1.0):
            raise FaultSpecError(f"Loss must be a number within [0, 1], got {self.loss!r}")
        if not (isinstance(self.delay, (int, float)) and math.isfinite(self.delay)
                and self.delay >= 0):
            raise FaultSpecError(f"DelayMs must be a finite number >= 0, got {self.delay!r}")
        seen: dict[str, int] = {}
        for index, group in enumerate(self.partitions):
            for name in sorted(set(group)):
                if name in seen:
                    raise FaultSpecError(
                        f"Partitions lists member {name!r} in groups {seen[name]} and {index}")
                seen[name] = index

    @classmethod
    def from_json(cls, obj: Any) -> FaultRules:
        """Parse the API body; every key is optional, names are normalised and sorted.

        Raises:
            FaultSpecError: not an object, an unknown key, a wrong type or a bad value.
        """
        if not isinstance(obj, dict):
            raise FaultSpecError("fault rules must be a JSON object")
        unknown = sorted(str(key) for key in obj if key not in _JSON_KEYS)
        if unknown:
            raise FaultSpecError(f"unknown key {unknown[0]!r} (known: {', '.join(_JSON_KEYS)})")
        loss = _number(obj, "Loss")
        if not 0.0 <= loss <= 1.0:
            raise FaultSpecError(f"Loss must be within [0, 1], got {loss!r}")
        delay_ms = _number(obj, "DelayMs")
        if not (math.isfinite(delay_ms) and delay_ms >= 0):
            raise FaultSpecError(f"DelayMs must be a finite number >= 0, got {delay_ms!r}")
        seed = obj.get("Seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise FaultSpecError(f"Seed must be an integer, got {seed!r}")
        raw_groups = obj.get("Partitions", [])
        if not isinstance(raw_groups, list):
            raise FaultSpecError("Partitions must be a list of lists of member names")
        groups = [frozenset(_names(group, "Partitions")) for group in raw_groups]
        return cls(
            drop_to=frozenset(_names(obj.get("DropTo", []), "DropTo")),
            drop_from=frozenset(_names(obj.get("DropFrom", []), "DropFrom")),
            loss=float(loss),
            delay=delay_ms / 1000.0,
            partitions=tuple(sorted(tuple(sorted(group)) for group in groups)),
            seed=seed,
        )

    def to_json(self) -> dict[str, Any]:
        """The API shape of these rules (names and groups sorted; every key present)."""
        delay_ms = round(self.delay * 1000.0, 6)
        return {
            "DropTo": sorted(self.drop_to),
            "DropFrom": sorted(self.drop_from),
            "Loss": self.loss,
            "DelayMs": int(delay_ms) if delay_ms.is_integer() else delay_ms,
            "Partitions": [list(group) for group in sorted(tuple(sorted(g)) for g in self.partitions)],
            "Seed": self.seed,
        }

    def describe(self) -> str:
        """One line for logs: only what is set, besides the seed."""
        parts = [f"seed={self.seed}"]
        if self.drop_to:
            parts.append(f"drop_to={','.join(sorted(self.drop_to))}")
        if self.drop_from:
            parts.append(f"drop_from={','.join(sorted(self.drop_from))}")
        if self.loss:
            parts.append(f"loss={self.loss:g}")
        if self.delay:
            parts.append(f"delay_ms={self.delay * 1000.0:g}")
        if self.partitions:
            parts.append("partitions=" + "|".join(",".join(sorted(g)) for g in self.partitions))
        return " ".join(parts)


def _number(obj: dict[str, Any], key: str) -> float:
    """The number at ``key`` (0 when absent); booleans are not numbers here."""
    value = obj.get(key, 0)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise FaultSpecError(f"{key} must be a number, got {value!r}")
    return float(value)


def _names(value: Any, key: str) -> list[str]:
    """A JSON list of non-empty member names, or ``FaultSpecError`` naming ``key``."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        what = "lists of member names" if key == "Partitions" else "member names"
        raise FaultSpecError(f"{key} must be a list of {what}, got {value!r}")
    return value


# --- the filter ----------------------------------------------------------------------


def _host_of(address: str) -> str:
    """The IP of an "ip:port" address ("[v6]:port" too); a bare IP is its own host."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    if address.count(":") == 1:
        return address.partition(":")[0]
    return address  # a bare IPv4 or IPv6 address


@dataclass(slots=True)
class _Counters:
    by_name: dict[str, int] = field(default_factory=dict)

    def inc(self, name: str) -> None:
        self.by_name[name] = self.by_name.get(name, 0) + 1


class FaultFilter:
    """One agent's fault rules, applied to each packet, frame and connection.

    Args:
        self_name: this agent's member name (its side of every partition).
        rng: the generator decisions draw from; reseeded whenever rules are set.
        logger: where set/clear lines go (default: this module's logger).
    """

    def __init__(self, self_name: str, rng: random.Random, *,
                 logger: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> None:
        self.self_name = self_name
        self._rng = rng
        self._log = logger if logger is not None else log
        self._rules: FaultRules | None = None
        self._group_of: dict[str, int] = {}  # partition group of each listed name
        self._by_address: dict[str, str] = {}  # "ip:port" -> member name
        self._by_host: dict[str, set[str]] = {}  # ip -> names of members with that ip
        self._counters = _Counters()

    # --- rules ---
    @property
    def rules(self) -> FaultRules | None:
        """The rules in force, or None when the network is left alone."""
        return self._rules

    def set_rules(self, rules: FaultRules) -> None:
        """Put ``rules`` in force (replacing any) and reseed the decisions from its seed."""
        self._rules = rules
        self._group_of = partition_groups(rules.partitions)
        self._rng.seed(f"{rules.seed}/{self.self_name}/faults")
        self._log.info("fault rules set %s", rules.describe())

    def clear(self) -> None:
        """Lift every fault rule."""
        previous = self._rules
        self._rules = None
        self._group_of = {}
        self._log.info("fault rules cleared previous=%s",
                       "none" if previous is None else previous.describe())

    # --- address book ---
    def set_peers(self, mapping: Mapping[str, str]) -> None:
        """Replace the address book: "ip:port" addresses to member names."""
        self._by_address = dict(mapping)
        by_host: dict[str, set[str]] = {}
        for address, name in mapping.items():
            by_host.setdefault(_host_of(address), set()).add(name)
        self._by_host = by_host

    def name_for(self, address: str) -> str | None:
        """The member at ``address``: by exact "ip:port", else by IP if only one has it."""
        name = self._by_address.get(address)
        if name is not None:
            return name
        names = self._by_host.get(_host_of(address))
        if names is not None and len(names) == 1:
            return next(iter(names))
        return None

    # --- decisions ---
    def outbound(self, address: str) -> float | None:
        """Decide one outbound packet, frame or dial: None drops it, else the delay to add."""
        rules = self._rules
        if rules is None:
            return 0.0
        name = self.name_for(address)
        if name is not None:
            if name in rules.drop_to:
                return self._drop("outbound", "drop_to")
            if self._group_of and is_split(self._group_of, self.self_name, name):
                return self._drop("outbound", "partition")
        if draw_lost(self._rng, rules.loss):
            return self._drop("outbound", "loss")
        delay = draw_delay(self._rng, rules.delay, 0.0)
        if delay > 0:
            self._counters.inc("delayed")
        return delay

    def inbound(self, address: str) -> bool:
        """Decide one inbound packet or accepted connection: False drops it."""
        rules = self._rules
        if rules is None:
            return True
        name = self.name_for(address)
        if name is None:
            return True
        if name in rules.drop_from:
            self._drop("inbound", "drop_from")
            return False
        if self._group_of and is_split(self._group_of, self.self_name, name):
            self._drop("inbound", "partition")
            return False
        return True

    def _drop(self, direction: str, reason: str) -> None:
        self._counters.inc(f"dropped.{direction}")
        self._counters.inc(f"dropped.{direction}.{reason}")
        return None

    def stats(self) -> dict[str, int]:
        """Counters: ``dropped.outbound``, ``dropped.inbound``, ``delayed`` and drops by reason."""
        counts = {"dropped.outbound": 0, "dropped.inbound": 0, "delayed": 0}
        counts.update(self._counters.by_name)
        return dict(sorted(counts.items()))
