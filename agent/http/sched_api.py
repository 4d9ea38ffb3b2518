"""The facade methods behind the jobs, schedulers and client-servers routes (issue 4).

``SchedulingMixin`` is one of ``AgentAPI``'s bases. Writes go through
``state_apply`` (forwarded to the leader; from a client-only agent through one of
its servers), reads through ``state_read``; the scheduler pool is this server's own.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Sequence

from .api_errors import ApiError

if TYPE_CHECKING:
    from ..client import ClientRuntime
    from ..server import ServerRuntime

__all__ = ["SchedulingMixin", "rfc3339_nano"]


def rfc3339_nano(wall_ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: fractional seconds with trailing zeros trimmed."""
    seconds, nanos = divmod(wall_ns, 1_000_000_000)
    stamp = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


class SchedulingMixin:
    server: ServerRuntime | None
    client: ClientRuntime | None
    config: Any

    # state_apply / state_read come from ClusterMixin (forwarding to the leader)
    state_apply: Any
    state_read: Any

    # ------------------------------------------------------------------ jobs

    async def register_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """``PUT /v1/jobs``: the job and its evaluation in one raft write."""
        from ..scheduling import new_eval

        evaluation = new_eval(job, "job-register")
        result = await self.state_apply({"Type": "job_register", "Job": job, "Eval": evaluation,
                                         "Time": evaluation["CreateTime"]})
        if result.get("Error"):
            raise ApiError(400, str(result["Error"]))
        index = int(result.get("Index", 0))
        return {"EvalID": evaluation["ID"], "EvalCreateIndex": index,
                "JobModifyIndex": int(result.get("JobModifyIndex", index)), "Warnings": "",
                "Index": index, "LastContact": 0, "KnownLeader": False}

    async def deregister_job(self, job_id: str, namespace: str, purge: bool) -> dict[str, Any]:
        """``DELETE /v1/job/:id``: stop (or purge) the job; an evaluation stops its allocations."""
        from ..scheduling import new_eval

        found = await self.state_read({"Type": "job_get", "JobID": job_id, "Namespace": namespace},
                                      stale=False)
        job = found.get("Job")
        if job is None:
            raise ApiError(404, "job not found")
        evaluation = new_eval(job, "job-deregister")
        result = await self.state_apply({"Type": "job_deregister", "JobID": job_id,
                                         "Namespace": namespace, "Eval": evaluation, "Purge": purge,
                                         "Time": evaluation["CreateTime"]})
        if result.get("Error"):
            raise ApiError(400, str(result["Error"]))
        index = int(result.get("Index", 0))
        return {"EvalID": evaluation["ID"], "EvalCreateIndex": index, "JobModifyIndex": index,
                "Index": index, "LastContact": 0, "KnownLeader": False}

    # ------------------------------------------------------------ schedulers

    def _supervisor(self) -> Any:
        if self.server is None:
            raise ApiError(400, "Server only endpoint")
        return self.server.supervisor

    def schedulers(self) -> dict[str, Any]:
        handle = self._supervisor()
        return {"server_id": self.config.member_name,
                "schedulers": [{"id": w.id, "enabled_schedulers": list(w.enabled_schedulers),
                                "started": w.started, "status": str(w.status),
                                "workload_status": str(w.workload_status)}
                               for w in handle.workers()]}

    def scheduler_config(self) -> dict[str, Any]:
        current = self._supervisor().config()
        return {"server_id": self.config.member_name, "num_schedulers": current["num_schedulers"],
                "enabled_schedulers": list(current["enabled_schedulers"])}

    def set_scheduler_config(self, num_schedulers: int, enabled: list[str]) -> dict[str, Any]:
        from scheduler.errors import SchedulerConfigError

        handle = self._supervisor()
        try:
            handle.reconfigure(num_schedulers, enabled)
        except SchedulerConfigError:
            raise ApiError(400, "Invalid request") from None
        return self.scheduler_config()

    # ------------------------------------------------------- client servers

    def _client(self) -> ClientRuntime:
        if self.client is None:
            raise ApiError(501, "Invalid method")
        return self.client

    @property
    def is_client(self) -> bool:
        return self.client is not None

    def client_servers(self) -> list[str]:
        return self._client().servers()

    async def set_client_servers(self, addresses: Sequence[str]) -> tuple[int, list[str]]:
        return await self._client().set_servers(addresses)
