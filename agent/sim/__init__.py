"""A deterministic simulator for shoal's gossip cores (STYLE.md section 6).

``Simulator`` runs many production ``GossipCore``s on a virtual network (``Network``,
shaped by a ``FaultPlan``) under a virtual clock; ``run_scenario`` runs the named
scenarios the CLI (``python -m agent.sim``) and ``tests/sim`` share. See
``docs/simulator.md``.
"""

from .network import Clog, FaultPlan, Network, Partition, ProcessFault, SlowLink
from .scenarios import SCENARIOS, Params, Phase, Result, run_scenario
from .simulator import InvariantViolation, Process, ProcessState, Simulator

__all__ = [
    "Clog", "FaultPlan", "InvariantViolation", "Network", "Params", "Partition", "Phase",
    "Process", "ProcessFault", "ProcessState", "Result", "SCENARIOS", "Simulator", "SlowLink",
    "run_scenario",
]
