"""`shoal cluster`: start a local cluster of real agent processes, watch it, break it.

``state`` holds the plan and ``DIR/cluster.json``; ``procs`` starts and signals
processes by PID; ``ops`` reads views through the API and applies the chaos verbs;
``lifecycle`` brings a cluster up and down; ``cli`` is the command. The chaos runner
and the tests use ``load_state`` and ``ops`` (contract: docs/internals.md).
"""

from .state import ClusterError, ClusterState, NodeInfo, load_state, save_state

__all__ = ["ClusterError", "ClusterState", "NodeInfo", "load_state", "save_state"]
