"""Force-leave of a live node, in the simulator with the production cores.

The race it pins: s1 force-leaves the alive s2 and then push/pulls with s2 before the
leave intent's gossip copy reaches s2. s2 took the LTime from the push/pull and then
ignored the copy, so it never refuted and s1 kept it "leaving" for good. Push/pull every
0.1 virtual s makes the race common; these seeds hit it before the fix in
``Serf.merge_remote_state`` (found by ``test_agent_conformance.py::test_c08`` failing
under load).
"""

from __future__ import annotations

import dataclasses

import pytest

from agent.sim.network import FaultPlan
from agent.sim.simulator import Simulator
from gossip.config import GossipConfig

FAST = dict(probe_interval=0.3, probe_timeout=0.1, gossip_interval=0.05, tcp_timeout=1.0,
            push_pull_interval=0.1, broadcast_timeout=2.0, leave_propagate_delay=0.2)


@pytest.mark.parametrize("seed", [139, 141, 181, 186])
def test_force_left_live_node_refutes_and_is_alive_everywhere(seed: int) -> None:
    print(f"simulator seed {seed}")
    sim = Simulator(seed, plan=FaultPlan(), trace_packets=False,
                    config=dataclasses.replace(GossipConfig.lan(), **FAST))
    for name in ("s1", "s2", "s3"):
        sim.add_node(name)
    sim.run_for(0.1)
    sim.join("s2", ["s1"])
    sim.run_for(0.5)
    sim.join("s3", ["s1"])
    sim.run_for(3.0)
    sim.force_leave("s1", "s2")

    def views() -> dict[str, dict[str, str]]:
        return {name: {m.name: str(m.status) for m in sim.process(name).core.members()}
                for name in ("s1", "s2", "s3")}

    assert views()["s1"]["s2"] == "leaving"
    done = sim.run_until_true(lambda: all(v == {"s1": "alive", "s2": "alive", "s3": "alive"}
                                          for v in views().values()), sim.now + 15.0)
    assert done is not None, f"seed {seed}: {views()}"
