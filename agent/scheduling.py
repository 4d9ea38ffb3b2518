"""Scheduling on a server: the leader's eval broker, plan applier and node heartbeats,
and the scheduler workers every server runs (ARCHITECTURE.md, flow 3).

Decisions live in pure modules (``scheduler/broker.py``, ``placement.py``,
``heartbeats.py``, ``supervisor.py``); this module owns their tasks and the RPC calls.

Evaluations reach the broker from the replicated state: every applied command that
carries evaluations (``Eval``/``Evals``/``EvalUpdate`` keys) is inspected by
``on_applied`` and, on the leader, pending ones are enqueued and blocked ones parked;
after an election the leader rebuilds the broker from every pending evaluation in the
state, so none is lost. A worker (on any server) dequeues from the leader, waits
until its local state has caught up with the evaluation, plans from that snapshot,
and submits the plan; the leader checks it against its current state, applies the
accepted part through raft together with the evaluation's new status, and the worker
acks. A plan with rejected nodes is retried on fresh state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Mapping

import msgpack
import trio

from raftlite.errors import NotLeader
from scheduler.broker import BlockedEvals, EvalBroker
from scheduler.errors import BrokerError
from scheduler.heartbeats import HeartbeatTimers, heartbeat_ttl
from scheduler.placement import Plan, check_plan, plan_evaluation

from .rpc import RpcError

if TYPE_CHECKING:
    from .server import ServerRuntime

__all__ = ["SchedulingRuntime", "new_eval"]

log = logging.getLogger(__name__)

DEQUEUE_WAIT = 0.5          # one dequeue attempt, as a Nomad worker's
RAFT_SYNC_TIMEOUT = 5.0     # a worker waits this long for its state to reach an eval's index
PLAN_RETRIES = 3
BROKER_POLL = 0.05


def now_ns() -> int:
    return time.time_ns()


def new_eval(job: dict[str, Any], triggered_by: str, *, node_id: str = "",
             status: str = "pending", previous: str = "") -> dict[str, Any]:
    """A fresh evaluation for ``job`` (Nomad's ``structs.Evaluation`` fields shoal uses)."""
    stamp = now_ns()
    return {"ID": str(uuid.uuid4()), "Namespace": job.get("Namespace", "default"),
            "Priority": job.get("Priority", 50), "Type": job.get("Type", "service"),
            "TriggeredBy": triggered_by, "JobID": job["ID"], "NodeID": node_id,
            "Status": status, "StatusDescription": "", "BlockedEval": "",
            "PreviousEval": previous, "QueuedAllocations": {}, "CreateTime": stamp,
            "ModifyTime": stamp}


def decode_command(data: bytes) -> dict[str, Any]:
    try:
        command = msgpack.unpackb(data, raw=False)
    except Exception:  # a command the state machine refused: nothing to do
        return {}
    return command if isinstance(command, dict) else {}


def frees_capacity(data: bytes) -> bool:
    """After this command a blocked evaluation may fit: a node became ready, or an
    allocation ended or was stopped (Nomad unblocks on the same events)."""
    command = decode_command(data)
    kind = command.get("Type")
    if kind == "node_register":
        return True
    if kind == "node_status":
        return command.get("Status") == "ready"
    if kind == "plan_apply":
        plan = command.get("Plan")
        return isinstance(plan, dict) and bool(plan.get("Stop"))
    if kind == "alloc_client_update":
        allocs = command.get("Allocs")
        return isinstance(allocs, list) and any(
            isinstance(a, dict) and a.get("ClientStatus") in ("complete", "failed", "lost") for a in allocs)
    return kind == "job_deregister"


def carried_evals(data: bytes) -> list[dict[str, Any]]:
    """The evaluations an applied command writes (``Eval``, ``Evals``, ``EvalUpdate``)."""
    command = decode_command(data)
    found: list[dict[str, Any]] = []
    for key in ("Eval", "EvalUpdate"):
        if isinstance(command.get(key), dict):
            found.append(command[key])
    evals = command.get("Evals")
    if isinstance(evals, list):
        found.extend(e for e in evals if isinstance(e, dict))
    return found


class SchedulingRuntime:
    """The scheduling tasks of one server; the leader parts run only while it leads."""

    def __init__(self, server: ServerRuntime) -> None:
        self.server = server
        rng = random.Random(os.urandom(8))
        self.rng = rng
        self.broker = EvalBroker(rng=rng)
        self.blocked = BlockedEvals()
        self.heartbeats = HeartbeatTimers()
        self._broker_kick = trio.Event()
        self._broker_timer_kick = trio.Event()
        self._timers_kick = trio.Event()
        self._plan_lock = trio.Lock()
        self._leading = False

    # ------------------------------------------------------------ state hooks

    def on_applied(self, data: bytes, result: Any) -> None:
        """Called for every applied command, on every server (sync, in the raft pump)."""
        if not self._leading or not isinstance(result, dict) or result.get("Error"):
            return
        for carried in carried_evals(data):
            # the stored record carries the raft indexes a worker must wait for
            stored = self.server.state.query({"Type": "eval_get", "EvalID": carried.get("ID")}).get("Eval")
            self._track(stored if stored is not None else carried)
        if frees_capacity(data):
            self._unblock()

    def _track(self, evaluation: dict[str, Any]) -> None:
        status = evaluation.get("Status")
        if status == "pending":
            self.broker.enqueue(evaluation, trio.current_time())
            self._wake_broker()
        elif status == "blocked":
            self.blocked.block(evaluation)
        elif status == "complete" and not evaluation.get("BlockedEval") and evaluation.get("JobID"):
            self.blocked.untrack(evaluation["JobID"])   # the state cancels the job's blocked evals

    def _wake_broker(self) -> None:
        self._broker_kick.set()

    def _unblock(self) -> None:
        """Capacity may have appeared: blocked evaluations go back to pending (through raft)."""
        evals = self.blocked.unblock_all()
        if evals:
            updated = [dict(e, Status="pending", ModifyTime=now_ns()) for e in evals]
            self.server.spawn(self._propose, {"Type": "eval_upsert", "Evals": updated})

    async def _propose(self, command: dict[str, Any]) -> Any:
        try:
            return await self.server.local_apply(command)
        except (RpcError, NotLeader) as exc:
            log.warning("scheduling write failed type=%s error=%s", command.get("Type"), exc)
            return None

    # ------------------------------------------------------------- leadership

    async def lead(self) -> None:
        """Run the leader's scheduling duties until cancelled (leadership lost)."""
        self._leading = True
        self.broker.set_enabled(True)
        try:
            await self.server.raft.read_barrier(RAFT_SYNC_TIMEOUT)
            self._restore_from_state()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._broker_timers)
                nursery.start_soon(self._heartbeat_timers)
        finally:
            self._leading = False
            self.broker.set_enabled(False)
            self.heartbeats.clear()
            self.blocked = BlockedEvals()

    def _restore_from_state(self) -> None:
        state = self.server.state
        evals = state.query({"Type": "eval_list"}).get("Evals", [])
        pending = [e for e in evals if e.get("Status") in ("pending", "blocked")]
        for evaluation in sorted(pending, key=lambda e: e.get("CreateIndex", 0)):
            self._track(evaluation)
        now = trio.current_time()
        nodes = state.query({"Type": "node_list"}).get("Nodes", [])
        live = [n for n in nodes if n.get("Status") != "down"]
        for node in live:
            self.heartbeats.reset(node["ID"], self._ttl(len(live)), now)
        self._timers_kick.set()
        log.info("scheduling restored pending_evals=%d nodes=%d", len(pending), len(live))

    def _ttl(self, num_nodes: int) -> float:
        return heartbeat_ttl(num_nodes, rng=self.rng)

    async def _broker_timers(self) -> None:
        """Redeliveries and nack timeouts; woken early when a dequeue or nack moves a timer."""
        while True:
            deadline = self.broker.next_deadline()
            self._broker_timer_kick = trio.Event()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                await self._broker_timer_kick.wait()
            self.broker.handle_timers(trio.current_time())
            failed = self.broker.take_failed()
            if failed:
                updated = [dict(e, Status="failed", ModifyTime=now_ns(),
                                StatusDescription="evaluation reached delivery limit (3)") for e in failed]
                await self._propose({"Type": "eval_upsert", "Evals": updated})
            self._wake_broker()

    async def _heartbeat_timers(self) -> None:
        while True:
            deadline = self.heartbeats.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else trio.current_time() + 1.0):
                await self._timers_kick.wait()
            self._timers_kick = trio.Event()
            for node_id in self.heartbeats.expired(trio.current_time()):
                await self._mark_down(node_id)

    async def _mark_down(self, node_id: str) -> None:
        """A node missed its heartbeat TTL: down, and an evaluation per affected job."""
        state = self.server.state
        allocs = state.query({"Type": "alloc_list", "NodeID": node_id}).get("Allocs", [])
        job_ids = sorted({(a["Namespace"], a["JobID"]) for a in allocs
                          if a.get("DesiredStatus") == "run"
                          and a.get("ClientStatus") in ("pending", "running")})
        evals = []
        for namespace, job_id in job_ids:
            job = state.query({"Type": "job_get", "JobID": job_id, "Namespace": namespace}).get("Job")
            if job is not None:
                evals.append(new_eval(job, "node-update", node_id=node_id))
        log.warning("node heartbeat missed, marking down node=%s jobs=%d", node_id, len(evals))
        await self._propose({"Type": "node_status", "NodeID": node_id, "Status": "down",
                             "Time": now_ns(), "Evals": evals})

    # ---------------------------------------------------------- RPC: leader

    async def dequeue(self, schedulers: list[str], timeout: float) -> dict[str, Any]:
        """``Eval.Dequeue`` on the leader: wait up to ``timeout`` for a ready evaluation."""
        deadline = trio.current_time() + max(0.0, min(timeout, 5.0))
        while True:
            if not self._leading:
                raise NotLeader()
            try:
                got = self.broker.dequeue(schedulers, trio.current_time())
            except BrokerError:   # disabled: leadership was just lost
                raise NotLeader() from None
            if got is not None:
                evaluation, token = got
                self._broker_timer_kick.set()   # a nack timeout started
                # The worker plans only once its state holds everything this leader has
                # applied: an evaluation redelivered after a failover must see the plan an
                # earlier delivery already committed (Nomad's getWaitIndex serves the same end).
                wait_index = max(int(evaluation.get("ModifyIndex", 0)), self.server.raft.applied_index)
                return {"Eval": evaluation, "Token": token, "WaitIndex": wait_index}
            if trio.current_time() >= deadline:
                return {"Eval": None}
            self._broker_kick = trio.Event()
            with trio.move_on_at(deadline):
                await self._broker_kick.wait()

    def ack(self, eval_id: str, token: str) -> None:
        try:
            self.broker.ack(eval_id, token, trio.current_time())
        except BrokerError as exc:
            raise RpcError(f"rpc error: {exc}") from None
        self._wake_broker()

    def nack(self, eval_id: str, token: str) -> None:
        try:
            self.broker.nack(eval_id, token, trio.current_time())
        except BrokerError as exc:
            raise RpcError(f"rpc error: {exc}") from None
        self._broker_timer_kick.set()   # a redelivery delay started

    async def submit_plan(self, wire: Any, token: str) -> dict[str, Any]:
        """``Plan.Submit`` on the leader: check against current state, apply through raft."""
        try:
            plan = Plan.from_wire(wire)
        except ValueError as exc:
            raise RpcError(f"rpc error: bad plan: {exc}") from None
        if self.broker.outstanding_token(plan.eval_id) != token:
            raise RpcError("rpc error: evaluation token does not match (not outstanding)")
        # One plan at a time (Nomad's plan queue): a plan is checked against the state
        # that already holds every earlier accepted plan, so two workers planning from the
        # same snapshot cannot both fill the last room on a node.
        async with self._plan_lock:
            snapshot = self.server.state.query({"Type": "scheduling_snapshot", "JobID": plan.job_id,
                                                "Namespace": _namespace_of(wire)})
            nodes = {n["ID"]: n for n in snapshot.get("Nodes", [])}
            job_type = (snapshot.get("Job") or {}).get("Type", "service")
            accepted, rejected = check_plan(_without_live_names(plan, snapshot.get("Allocs", []), job_type),
                                            nodes, snapshot.get("Allocs", []))
            result = await self.server.local_apply({"Type": "plan_apply", "Plan": accepted.to_wire()})
        if isinstance(result, dict) and result.get("Error"):
            raise RpcError(f"rpc error: plan apply failed: {result['Error']}")
        return {"Index": result.get("Index", 0) if isinstance(result, dict) else 0,
                "RejectedNodes": list(rejected), "Placed": len(accepted.place),
                "Failed": dict(accepted.failed)}

    async def finish_eval(self, evaluation: dict[str, Any], status: str, description: str,
                          failed: dict[str, int]) -> None:
        """Write the evaluation's outcome; placements that fit nowhere wait in a blocked eval."""
        update = dict(evaluation, Status=status, StatusDescription=description,
                      QueuedAllocations=failed, ModifyTime=now_ns())
        extra = []
        if failed and status == "complete":
            job = {"ID": evaluation["JobID"], "Namespace": evaluation.get("Namespace", "default"),
                   "Priority": evaluation.get("Priority", 50), "Type": evaluation.get("Type")}
            blocked = new_eval(job, "queued-allocs", status="blocked", previous=evaluation["ID"])
            update["BlockedEval"] = blocked["ID"]
            extra.append(blocked)
        await self._propose({"Type": "eval_upsert", "Evals": [update] + extra})

    # ------------------------------------------------------------ heartbeats

    def node_heartbeat(self, node_id: str) -> float:
        """Reset a node's TTL timer (leader); returns the TTL the client must beat within."""
        nodes = self.server.state.query({"Type": "node_list"}).get("Nodes", [])
        ttl = self._ttl(max(len(nodes), 1))
        self.heartbeats.reset(node_id, ttl, trio.current_time())
        self._timers_kick.set()
        return ttl


    # -------------------------------------------------------------- clients

    def server_addresses(self) -> list[str]:
        """RPC addresses of the alive servers of the region, for clients' server lists."""
        parts = [p for p in self.server.servers()
                 if p.status == "alive" and p.region == self.server.config.region]
        return sorted(f"{p.rpc_addr}:{p.port}" if ":" not in p.rpc_addr else f"[{p.rpc_addr}]:{p.port}"
                      for p in parts)

    def _system_evals(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """A node became usable: system and sysbatch jobs of its datacenter must place on it."""
        jobs = self.server.state.query({"Type": "job_list", "Namespace": "*"}).get("Jobs", [])
        out = []
        for job in jobs:
            dcs = job.get("Datacenters") or ["*"]
            if (job.get("Type") in ("system", "sysbatch") and not job.get("Stop")
                    and ("*" in dcs or node.get("Datacenter") in dcs)):
                out.append(new_eval(job, "node-update", node_id=node["ID"]))
        return out

    async def register_node(self, args: Any) -> dict[str, Any]:
        """``Node.Register`` on the leader."""
        node = args.get("Node") if isinstance(args, dict) else None
        if not isinstance(node, dict) or not isinstance(node.get("ID"), str) or not node["ID"]:
            raise RpcError("rpc error: Node.Register needs a node with an ID")
        node = dict(node, Status="ready", StatusUpdatedAt=now_ns())
        known = self.server.state.query({"Type": "node_get", "NodeID": node["ID"]}).get("Node")
        evals = self._system_evals(node) if known is None or known.get("Status") != "ready" else []
        result = await self.server.local_apply({"Type": "node_register", "Node": node, "Evals": evals})
        if isinstance(result, dict) and result.get("Error"):
            raise RpcError(f"rpc error: {result['Error']}")
        log.info("node registered id=%s name=%s", node["ID"], node.get("Name"))
        return {"Index": result.get("Index", 0), "HeartbeatTTL": self.node_heartbeat(node["ID"]),
                "Servers": self.server_addresses()}

    async def heartbeat(self, args: Any) -> dict[str, Any]:
        """``Node.Heartbeat`` on the leader: reset the TTL; a down node comes back ready."""
        node_id = args.get("NodeID") if isinstance(args, dict) else None
        if not isinstance(node_id, str):
            raise RpcError("rpc error: Node.Heartbeat needs a NodeID")
        node = self.server.state.query({"Type": "node_get", "NodeID": node_id}).get("Node")
        if node is not None and node.get("ID") != node_id:   # a prefix match is not this node
            node = None
        if node is None:
            raise RpcError("node not found")
        if node.get("Status") != "ready":
            await self._propose({"Type": "node_status", "NodeID": node_id, "Status": "ready",
                                 "Time": now_ns(), "Evals": self._system_evals(node)})
        return {"HeartbeatTTL": self.node_heartbeat(node_id), "Servers": self.server_addresses()}

    def node_allocs(self, args: Any) -> dict[str, Any]:
        """``Node.GetAllocs`` on any server (from its local state)."""
        node_id = args.get("NodeID") if isinstance(args, dict) else None
        if not isinstance(node_id, str):
            raise RpcError("rpc error: Node.GetAllocs needs a NodeID")
        return self.server.state.query({"Type": "alloc_list", "NodeID": node_id})

    async def update_allocs(self, args: Any) -> dict[str, Any]:
        """``Node.UpdateAllocs`` on the leader: client statuses; a failed alloc gets an eval."""
        allocs = args.get("Allocs") if isinstance(args, dict) else None
        if not isinstance(allocs, list):
            raise RpcError("rpc error: Node.UpdateAllocs needs Allocs")
        evals = []
        for update in allocs:
            if isinstance(update, dict) and update.get("ClientStatus") == "failed":
                alloc = self.server.state.query({"Type": "alloc_get", "AllocID": update.get("ID")}).get("Alloc")
                if alloc is not None:
                    job = self.server.state.query({"Type": "job_get", "JobID": alloc["JobID"],
                                                   "Namespace": alloc["Namespace"]}).get("Job")
                    if job is not None:
                        evals.append(new_eval(job, "alloc-failure"))
        result = await self.server.local_apply({"Type": "alloc_client_update", "Allocs": allocs,
                                                "Time": now_ns(), "Evals": evals})
        if isinstance(result, dict) and result.get("Error"):
            raise RpcError(f"rpc error: {result['Error']}")
        return {"Index": result.get("Index", 0)}

    # --------------------------------------------------------------- workers

    async def worker_dequeue(self, schedulers: list[str], timeout: float) -> dict[str, Any] | None:
        """A worker's dequeue attempt: the leader's broker, locally or over RPC."""
        answer = await self.server.on_leader(
            "Eval.Dequeue", {"Schedulers": list(schedulers), "Timeout": timeout},
            lambda a: self.dequeue(a["Schedulers"], a["Timeout"]), idempotent=False)
        return answer if answer and answer.get("Eval") else None

    async def worker_process(self, evaluation: dict[str, Any], token: str, wait_index: int) -> None:
        """Plan one evaluation from local state and submit it; ack or nack at the end."""
        outcome = ("complete", "", {})
        try:
            await self.server.raft.wait_applied(wait_index, RAFT_SYNC_TIMEOUT)
            outcome = await self._plan_and_submit(evaluation, token)
        except Exception as exc:  # any failure: the broker redelivers (up to its limit)
            log.warning("evaluation failed, nacking id=%s error=%s", evaluation.get("ID"), exc)
            await self._leader_call("Eval.Nack", {"EvalID": evaluation["ID"], "Token": token})
            return
        status, description, failed = outcome
        await self._leader_call("Eval.Ack", {"EvalID": evaluation["ID"], "Token": token,
                                             "Eval": evaluation, "Status": status,
                                             "Description": description, "Failed": failed})

    async def worker_release(self, evaluation: dict[str, Any], token: str, _wait_index: int) -> None:
        """A retired worker got an evaluation: hand it back to the broker (a nack)."""
        await self._leader_call("Eval.Nack", {"EvalID": evaluation["ID"], "Token": token})

    async def _plan_and_submit(self, evaluation: dict[str, Any], token: str
                               ) -> tuple[str, str, dict[str, int]]:
        failed: dict[str, int] = {}
        for attempt in range(PLAN_RETRIES):
            snapshot = self.server.state.query({"Type": "scheduling_snapshot",
                                                "JobID": evaluation["JobID"],
                                                "Namespace": evaluation.get("Namespace", "default")})
            job = snapshot.get("Job")
            plan = plan_evaluation(evaluation, job, snapshot.get("Nodes", []), snapshot.get("Allocs", []),
                                   new_id=lambda: str(uuid.uuid4()), now_ns=now_ns())
            _add_durations(plan, job)
            failed = dict(plan.failed)
            if not plan.place and not plan.stop:
                return "complete", "", failed
            result = await self._leader_call("Plan.Submit", {"Plan": plan.to_wire(), "Token": token})
            if not result.get("RejectedNodes"):
                return "complete", "", failed
            log.info("plan partly rejected, retrying eval=%s attempt=%d nodes=%s", evaluation["ID"],
                     attempt + 1, ",".join(result["RejectedNodes"]))
            await self.server.raft.wait_applied(result.get("Index", 0), RAFT_SYNC_TIMEOUT)
        return "complete", "plan rejected too often; blocked until capacity changes", failed

    async def _leader_call(self, method: str, args: dict[str, Any]) -> Any:
        local = {"Plan.Submit": lambda a: self.submit_plan(a["Plan"], a["Token"]),
                 "Eval.Ack": self._ack_local, "Eval.Nack": self._nack_local}[method]
        return await self.server.on_leader(method, args, local, idempotent=False)

    async def _ack_local(self, args: dict[str, Any]) -> dict[str, Any]:
        evaluation = args.get("Eval")
        if isinstance(evaluation, dict):
            await self.finish_eval(evaluation, str(args.get("Status", "complete")),
                                   str(args.get("Description", "")), dict(args.get("Failed") or {}))
        self.ack(str(args.get("EvalID")), str(args.get("Token")))
        return {}

    async def _nack_local(self, args: dict[str, Any]) -> dict[str, Any]:
        self.nack(str(args.get("EvalID")), str(args.get("Token")))
        return {}

    def rpc_handlers(self) -> dict[str, Callable[[Any], Any]]:
        """The scheduling RPC methods (docs/internals.md), leader-only ones forwarded."""
        from .server import NoLeader   # server.py imports this module

        server = self.server

        def leader(method: str, local: Callable[[Any], Any]) -> Callable[[Any], Any]:
            async def handler(args: Any) -> Any:
                if not isinstance(args, dict):
                    raise RpcError("rpc error: arguments must be a map")
                try:
                    return await server.on_leader(method, args, local, idempotent=False)
                except NoLeader as exc:   # expected during an election: an answer, not a bug
                    raise RpcError(str(exc)) from None
            return handler

        async def ping(_args: Any) -> dict[str, Any]:
            return {}

        async def get_allocs(args: Any) -> dict[str, Any]:
            return self.node_allocs(args)

        return {"Status.Ping": ping, "Node.Register": leader("Node.Register", self.register_node),
                "Node.Heartbeat": leader("Node.Heartbeat", self.heartbeat),
                "Node.GetAllocs": get_allocs,
                "Node.UpdateAllocs": leader("Node.UpdateAllocs", self.update_allocs),
                "Eval.Dequeue": leader("Eval.Dequeue",
                                       lambda a: self.dequeue(list(a.get("Schedulers") or []),
                                                              float(a.get("Timeout") or DEQUEUE_WAIT))),
                "Eval.Ack": leader("Eval.Ack", self._ack_local),
                "Eval.Nack": leader("Eval.Nack", self._nack_local),
                "Plan.Submit": leader("Plan.Submit", lambda a: self.submit_plan(a.get("Plan"),
                                                                                 str(a.get("Token"))))}


def _without_live_names(plan: Plan, allocs: list[dict[str, Any]], job_type: str) -> Plan:
    """Drop placements a live allocation of the job already holds (its name; for system
    and sysbatch jobs, whose allocations share a name, its name on that node): a stale
    plan must never run one allocation twice (defence in depth beside the wait index)."""
    per_node = job_type in ("system", "sysbatch")

    def key(alloc: Mapping[str, Any]) -> tuple[Any, ...]:
        return (alloc.get("Name"), alloc.get("NodeID")) if per_node else (alloc.get("Name"),)

    stopping = {alloc_id for alloc_id, _status in plan.stop}
    live = {key(a) for a in allocs if a.get("JobID") == plan.job_id and a.get("ID") not in stopping
            and a.get("DesiredStatus") == "run" and a.get("ClientStatus") in ("pending", "running")}
    kept = tuple(a for a in plan.place if key(a) not in live)
    if len(kept) == len(plan.place):
        return plan
    log.warning("plan placements dropped: already live job=%s dropped=%d",
                plan.job_id, len(plan.place) - len(kept))
    return dataclasses.replace(plan, place=kept)


def _namespace_of(wire: Any) -> str:
    place = wire.get("place") or wire.get("Place") if isinstance(wire, dict) else None
    if isinstance(place, list) and place and isinstance(place[0], dict):
        return str(place[0].get("Namespace", "default"))
    return "default"


def _add_durations(plan: Plan, job: dict[str, Any] | None) -> None:
    """Batch allocations carry how long they "run" (the client completes them after it)."""
    if job is None or job.get("Type") not in ("batch", "sysbatch"):
        return
    durations = {tg.get("Name"): tg.get("Duration", 5) for tg in job.get("TaskGroups", [])}
    for alloc in plan.place:
        alloc["Duration"] = durations.get(alloc.get("TaskGroup"), 5)
        alloc["JobType"] = job.get("Type")
