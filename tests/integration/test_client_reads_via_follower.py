"""A client-only agent whose server is a follower still reads and writes replicated state.

Its server forwards ``State.ApplyAny`` / ``State.ReadAny`` to the leader (a plain
``State.Apply`` / ``State.Read`` is for the leader only and answers "not leader").
"""

from __future__ import annotations

import json

from .conformance_helpers import agents, wait_known_servers, wait_leader


async def test_client_behind_a_follower_writes_and_reads_variables() -> None:
    async with agents(timeout=90) as ag:
        first = await ag.server("f1", expect=2)
        second = await ag.server("f2", expect=2)
        joined = await second.call("PUT", f"/v1/agent/join?address={first.serf_address}")
        assert joined.status == 200, joined.body
        leader = await wait_leader(first, timeout=30)
        follower = second if leader == first.rpc_address else first
        assert follower.rpc_address != leader
        client = await ag.client("c1", (follower,))
        await wait_known_servers(client)
        put = await client.call("PUT", "/v1/var/via/follower",
                                {"Path": "via/follower", "Items": {"k": "v"}})
        assert put.status == 200, put.body
        got = await client.call("GET", "/v1/var/via/follower")
        assert got.status == 200, got.body
        assert json.loads(got.body)["Items"] == {"k": "v"}
        nodes = await client.call("GET", "/v1/nodes")
        assert nodes.status == 200, nodes.body
