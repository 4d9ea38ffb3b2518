"""scheduler: the worker supervisor, the eval broker, heartbeats and simulated placement.

Pure cores only; the trio driver (``scheduler.driver``: ``run_supervisor``,
``SupervisorHandle``) is imported from its module so that importing the package never
pulls in trio.
"""

from .broker import BlockedEvals, EvalBroker
from .errors import BrokerError, SchedulerConfigError, SchedulerError
from .heartbeats import HeartbeatTimers, heartbeat_ttl
from .placement import Plan, check_plan, fits, node_usage, plan_evaluation
from .supervisor import (ALL_SCHEDULERS, SupervisorCore, WorkerStatus, WorkerView, WorkloadStatus,
                         format_rfc3339_nano, leader_pause_count, lists_differ, validate_pool_args)

__all__: list[str] = [
    "ALL_SCHEDULERS", "BlockedEvals", "BrokerError", "EvalBroker", "HeartbeatTimers", "Plan",
    "SchedulerConfigError", "SchedulerError", "SupervisorCore", "WorkerStatus", "WorkerView",
    "WorkloadStatus", "check_plan", "fits", "format_rfc3339_nano", "heartbeat_ttl",
    "leader_pause_count", "lists_differ", "node_usage", "plan_evaluation", "validate_pool_args",
]
