"""The local cluster's state in ``DIR/cluster.json`` and the plan of its addresses.

Theory of operation. ``shoal cluster up`` plans every node before it starts one: a
name (``s1..``, ``c1..``, ``serf1..``), a loopback IP in one /24 block, Nomad's default
ports on that IP, the member name the fault filter knows it by, the command line, and
its files under ``DIR/<name>/``. The plan is written to ``DIR/cluster.json`` (the
format is fixed in docs/internals.md, "agent/cluster/"), so every later command, from
any shell, reads the same facts. Writes are atomic (temporary file, fsync, rename): a
reader never sees half a file.

Member names: a server is the gossip member ``<node>.global``; a serf agent is the
member ``serfK``; a client is no gossip member, and fault rules name it by its node
name (``cK``), which servers map to its addresses from its Node record.

The block is drawn from a hash of the seed, the folder and an attempt number, in
127.64.0.0 .. 127.191.255.0, away from 127.0.0.1 and the test harness's 127.0.B.N.

Pure apart from reading and writing the state file: no processes, no sockets.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

__all__ = ["ClusterError", "ClusterState", "NodeInfo", "DEFAULT_DIR", "STATE_FILE",
           "HTTP_PORT", "RPC_PORT", "SERF_PORT", "SERF_AGENT_PORT", "SERF_RPC_PORT",
           "load_state", "save_state", "remove_state", "plan_block", "plan_cluster",
           "agent_hcl", "node_ports", "check_counts"]

DEFAULT_DIR = ".shoal-cluster"
STATE_FILE = "cluster.json"
VERSION = 1

HTTP_PORT, RPC_PORT, SERF_PORT = 4646, 4647, 4648          # Nomad's defaults
SERF_AGENT_PORT, SERF_RPC_PORT = 7946, 7373                # a serf agent's defaults
ROLES = ("server", "client", "serf")


class ClusterError(Exception):
    """A cluster command cannot go on: one line for stderr, exit 1, nothing changed."""


@dataclass(frozen=True)
class NodeInfo:
    """One node of the cluster, as ``cluster.json`` lists it."""

    name: str
    role: str                 # "server" | "client" | "serf"
    ip: str
    http: str                 # "ip:port"; "" for serf agents
    rpc: str                  # "ip:port"; "" for serf agents
    serf: str                 # gossip "ip:port"; "" for clients
    serf_rpc: str             # a serf agent's RPC "ip:port"; "" for shoal agents
    member: str               # the name fault rules use (member name or client node name)
    pid: int
    argv: list[str]
    log: str
    data_dir: str
    config: str

    @property
    def is_shoal(self) -> bool:
        """Whether this is a `shoal agent` (it has HTTP and a fault filter)."""
        return self.role != "serf"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> NodeInfo:
        if not isinstance(obj, dict):
            raise ClusterError("cluster.json: a node is not an object")
        try:
            node = cls(**{f: obj[f] for f in cls.__dataclass_fields__})
        except KeyError as exc:
            raise ClusterError(f"cluster.json: node misses key {exc.args[0]!r}") from None
        if node.role not in ROLES or not isinstance(node.pid, int) or not isinstance(node.argv, list):
            raise ClusterError(f"cluster.json: node {node.name!r} is malformed")
        return node


@dataclass
class ClusterState:
    """The whole ``cluster.json``, plus the folder it lives in (not written)."""

    dir: Path
    seed: int
    created: str
    ui: str
    nodes: list[NodeInfo] = field(default_factory=list)
    version: int = VERSION

    def node(self, name: str) -> NodeInfo:
        """The node called ``name``; ``ClusterError`` naming the known ones otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise ClusterError(f"no node {name!r} in the cluster in {self.dir} (nodes: {known})")

    def with_pid(self, name: str, pid: int) -> None:
        """Record that ``name`` now runs as ``pid`` (after a restart)."""
        self.nodes = [replace(n, pid=pid) if n.name == name else n for n in self.nodes]

    def of_role(self, role: str) -> list[NodeInfo]:
        return [n for n in self.nodes if n.role == role]

    @property
    def shoal_nodes(self) -> list[NodeInfo]:
        return [n for n in self.nodes if n.is_shoal]

    @property
    def gossip_members(self) -> list[str]:
        """Member names every server should see alive: servers and serf agents."""
        return [n.member for n in self.nodes if n.role != "client"]

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "seed": self.seed, "created": self.created,
                "ui": self.ui, "nodes": [n.to_json() for n in self.nodes]}

    @classmethod
    def from_json(cls, directory: Path, obj: Any) -> ClusterState:
        if not isinstance(obj, dict) or obj.get("version") != VERSION:
            raise ClusterError(f"{directory / STATE_FILE}: not a version {VERSION} cluster state")
        nodes = obj.get("nodes")
        if not isinstance(nodes, list):
            raise ClusterError(f"{directory / STATE_FILE}: nodes must be a list")
        return cls(dir=directory, seed=int(obj.get("seed", 0)), created=str(obj.get("created", "")),
                   ui=str(obj.get("ui", "")), nodes=[NodeInfo.from_json(n) for n in nodes])


# --- the file -------------------------------------------------------------------------


def load_state(directory: str | os.PathLike[str]) -> ClusterState:
    """Read ``DIR/cluster.json``.

    Raises:
        ClusterError: no state file ("no cluster in DIR"), or one that does not parse.
    """
    path = Path(directory) / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ClusterError(f"no cluster in {directory} (start one with `shoal cluster up -dir "
                           f"{directory}`)") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ClusterError(f"{path}: not JSON: {exc}") from None
    return ClusterState.from_json(Path(directory), obj)


def save_state(state: ClusterState) -> None:
    """Write ``DIR/cluster.json`` atomically: temporary file, fsync, rename, fsync DIR."""
    state.dir.mkdir(parents=True, exist_ok=True)
    path = state.dir / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    data = json.dumps(state.to_json(), indent=2) + "\n"
    with open(tmp, "w") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(state.dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_state(directory: str | os.PathLike[str]) -> bool:
    """Delete ``DIR/cluster.json``; whether there was one."""
    try:
        (Path(directory) / STATE_FILE).unlink()
        return True
    except FileNotFoundError:
        return False


# --- the plan ---------------------------------------------------------------------------


def plan_block(seed: int, directory: str | os.PathLike[str], attempt: int = 0) -> str:
    """The first three octets of the /24 loopback block for ``attempt`` (``"127.x.y"``)."""
    digest = hashlib.sha256(f"{seed}/{os.path.abspath(directory)}/{attempt}".encode()).digest()
    return f"127.{64 + digest[0] % 128}.{digest[1]}"


def node_ports(role: str) -> list[tuple[int, bool]]:
    """The (port, also UDP) pairs a node of ``role`` binds on its IP."""
    if role == "server":
        return [(HTTP_PORT, False), (RPC_PORT, False), (SERF_PORT, True)]
    if role == "client":
        return [(HTTP_PORT, False), (RPC_PORT, False)]
    return [(SERF_AGENT_PORT, True), (SERF_RPC_PORT, False)]


def agent_hcl(name: str) -> str:
    """The agent file the cluster tool writes for each shoal node."""
    return (f"# written by `shoal cluster up` for {name}\n"
            "enable_debug    = true\n"
            "fault_injection = true\n")


def check_counts(servers: int, clients: int, serfs: int) -> None:
    """Raise ``ClusterError`` unless the counts make a cluster that fits one /24 block."""
    if servers < 1:
        raise ClusterError(f"-servers must be at least 1, got {servers}")
    if clients < 0 or serfs < 0:
        raise ClusterError("-clients and -serf must not be negative")
    if servers + clients + serfs > 254:
        raise ClusterError(f"{servers + clients + serfs} nodes do not fit one /24 block (max 254)")


def plan_cluster(directory: str | os.PathLike[str], block: str, *, servers: int, clients: int,
                 serfs: int, seed: int, python: str, serf_binary: str | None, created: str,
                 agent_flags: Sequence[str] = ()) -> ClusterState:
    """Every node of a new cluster, pid 0 (not started yet), in start order.

    Args:
        directory: the cluster folder (made absolute in the plan).
        block: ``"127.x.y"`` from ``plan_block``; node i (1-based, in order) gets ``.i``.
        python: the interpreter that runs ``-m agent``.
        serf_binary: the path of ``serf`` (needed when ``serfs`` > 0).
        agent_flags: extra flags for every shoal agent (``-raft-multiplier 2`` ...).

    Raises:
        ClusterError: counts out of range.
    """
    check_counts(servers, clients, serfs)
    if serfs and not serf_binary:
        raise ClusterError("-serf needs the `serf` binary on PATH")
    root = Path(os.path.abspath(directory))
    names = ([("server", f"s{i}") for i in range(1, servers + 1)]
             + [("client", f"c{i}") for i in range(1, clients + 1)]
             + [("serf", f"serf{i}") for i in range(1, serfs + 1)])
    ips = {name: f"{block}.{index}" for index, (_, name) in enumerate(names, start=1)}
    server_serf = [f"{ips[n]}:{SERF_PORT}" for role, n in names if role == "server"]
    server_rpc = [f"{ips[n]}:{RPC_PORT}" for role, n in names if role == "server"]
    nodes = []
    for role, name in names:
        ip, home = ips[name], root / name
        base = dict(name=name, role=role, ip=ip, pid=0, log=str(home / "agent.log"),
                    data_dir=str(home / "data"), config=str(home / "agent.hcl"))
        if role == "serf":
            assert serf_binary is not None
            argv = [serf_binary, "agent", f"-node={name}", f"-bind={ip}:{SERF_AGENT_PORT}",
                    f"-rpc-addr={ip}:{SERF_RPC_PORT}", "-retry-interval=1s", "-log-level=info"]
            argv += [f"-retry-join={address}" for address in server_serf]
            base.update(data_dir="", config="")   # serf keeps no state here
            nodes.append(NodeInfo(**base, http="", rpc="", serf=f"{ip}:{SERF_AGENT_PORT}",
                                  serf_rpc=f"{ip}:{SERF_RPC_PORT}", member=name,
                                  argv=argv))   # type: ignore[arg-type]
            continue
        argv = [python, "-m", "agent", "agent", "-node", name, "-bind", ip,
                "-data-dir", base["data_dir"], "-config", base["config"], "-fault-injection"]
        if role == "server":
            argv += ["-server", "-bootstrap-expect", str(servers), "-retry-interval", "1s"]
            for address in server_serf:
                if address != f"{ip}:{SERF_PORT}":
                    argv += ["-retry-join", address]
            member, serf = f"{name}.global", f"{ip}:{SERF_PORT}"
        else:
            argv += ["-client", "-servers", ",".join(server_rpc)]
            member, serf = name, ""
        argv += list(agent_flags)
        nodes.append(NodeInfo(**base, http=f"{ip}:{HTTP_PORT}", rpc=f"{ip}:{RPC_PORT}", serf=serf,
                              serf_rpc="", member=member, argv=argv))   # type: ignore[arg-type]
    first = nodes[0]
    return ClusterState(dir=root, seed=seed, created=created, ui=f"http://{first.http}/ui",
                        nodes=nodes)
