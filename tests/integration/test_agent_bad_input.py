"""Bad input to the agent API: every parameter rule of agent-api.md (1.3, 1.7, 3.x), malformed
and oversized bodies. Each case checks the status, the exact plain-text body and that
nothing changed (members, server lists, scheduler pools, ACL objects, variables)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.http.app import MAX_BODY_BYTES

from .conformance_helpers import (DEFAULT_SCHEDULERS, TEXT, Agent, acl_tokens, agents, mismatches,
                                  wait_known_servers, wait_leader)

PARSE = 'strconv.ParseBool: parsing "{}": invalid syntax'
TOO_LARGE = (413, b"Request body too large", TEXT)


async def _statuses(agent: Agent) -> dict[str, str]:
    return {m["Name"]: m["Status"] for m in (await agent.call("GET", "/v1/agent/members")).json()["Members"]}


async def _pool(agent: Agent) -> tuple[Any, list[str]]:
    config = (await agent.call("GET", "/v1/agent/schedulers/config")).json()
    workers = (await agent.call("GET", "/v1/agent/schedulers")).json()["schedulers"]
    return config, [w["id"] for w in workers]


# --- 1.7: the generic query parser of /members and /health ---------------------------

QUERY_RULES = [
    ("stale=maybe", "Expect `true` or `false` for `stale` query string parameter"),
    ("stale=2", "Expect `true` or `false` for `stale` query string parameter"),
    ("wait=soon", "Invalid wait time"),
    ("wait=5", "Invalid wait time"),
    ("index=x", "Invalid index"),
    ("index=-1", "Invalid index"),
    ("per_page=x", "Expect a number for `per_page` query string parameter"),
    ("per_page=99999999999", "Expect a number for `per_page` query string parameter"),
]
QUERY_ACCEPTED = ["stale", "stale=", "stale=true", "stale=F", "wait=5s", "wait=1m30s", "index=10",
                  "per_page=10", "per_page=-1", "namespace=x&prefix=y&filter=z",
                  "next_token=a&reverse=true", "token=whatever", "unknown=1"]


async def test_generic_query_parameters_on_members_and_health() -> None:
    """Malformed stale/wait/index/per_page are 400 with Nomad's text; other parameters are ignored."""
    async with agents() as ag:
        server = await ag.server("s1")
        await wait_leader(server)
        rows = []
        for path in ("/v1/agent/members", "/v1/agent/health"):
            for query, message in QUERY_RULES:
                reply = await server.call("GET", f"{path}?{query}")
                rows.append((f"{path}?{query}", (400, message.encode(), TEXT), reply.triple()))
            for query in QUERY_ACCEPTED:
                rows.append((f"{path}?{query}", 200, (await server.call("GET", f"{path}?{query}")).status))
        # region is ignored by /members but honoured by health's leader lookup (1.7).
        rows.append(("members region", 200, (await server.call("GET", "/v1/agent/members?region=elsewhere")).status))
        other = await server.call("GET", "/v1/agent/health?region=elsewhere")
        rows.append(("health region", (500, b'{"server":{"ok":false,"message":"No path to region"}}', TEXT),
                     other.triple()))
        # /self and the others do not run the generic parser: the same values are ignored there.
        rows.append(("self ignores stale", 200, (await server.call("GET", "/v1/agent/self?stale=maybe")).status))
        assert not mismatches(rows), mismatches(rows)


# --- 3.4 / 3.5: join and force-leave ------------------------------------------------


async def test_join_and_force_leave_parameters_change_nothing() -> None:
    """join without address, force-leave without node or with a bad prune: 400, members unchanged."""
    async with agents() as ag:
        a = await ag.server("a", expect=0)
        b = await ag.server("b", expect=0)
        assert (await b.call("PUT", f"/v1/agent/join?address={a.serf_address}")).status == 200
        before = {a.name: "alive", b.name: "alive"}
        rows = [("join no address", (400, b"missing address to join", TEXT),
                 (await a.call("PUT", "/v1/agent/join?addresses=x")).triple())]
        for query in ("", "?node=", "?prune=true"):
            reply = await a.call("PUT", f"/v1/agent/force-leave{query}")
            rows.append((f"force-leave {query}", (400, b"missing node to force leave", TEXT), reply.triple()))
        for value in ("maybe", "yes", "2", "tRUE", "on", "%20true"):
            reply = await a.call("POST", f"/v1/agent/force-leave?node={b.name}&prune={value}")
            rows.append((f"prune={value}", (400, b"invalid prune value", TEXT), reply.triple()))
            rows.append((f"members after prune={value}", before,
                         {k: v for k, v in (await _statuses(a)).items() if k in before}))
        for value in ("", "1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
            reply = await a.call("PUT", f"/v1/agent/force-leave?node=nobody.global&prune={value}")
            rows.append((f"prune={value!r} accepted", (200, b""), (reply.status, reply.body)))
        assert not mismatches(rows), mismatches(rows)


# --- 3.2: PUT /v1/agent/servers -----------------------------------------------------


async def test_servers_put_bad_addresses_keep_the_list() -> None:
    """No address: 400; every address failing: 400 with go-multierror text; the list is kept."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        client = await ag.client("c1", (server,))
        known = await wait_known_servers(client)
        missing = await client.call("PUT", "/v1/agent/servers?addr=x")
        assert missing.triple() == (400, b"missing server address", TEXT)
        dead = await client.call("POST", "/v1/agent/servers?address=127.0.0.1:1")
        assert dead.status == 400 and dead.content_type == TEXT
        assert dead.text.startswith("1 error occurred:\n\t* Server at address 127.0.0.1:1 failed ping: ")
        assert dead.text.endswith("\n\n")
        two = await client.call("PUT", "/v1/agent/servers?address=127.0.0.1:1,127.0.0.1:2&address=127.0.0.1:3")
        assert two.status == 400 and two.text.startswith("2 errors occurred:\n"), two
        assert (await client.call("GET", "/v1/agent/servers")).json() == known


# --- 3.7 / 3.8 / 3.9: host, monitor, pprof parameters ---------------------------------

MONITOR_RULES = [
    ("log_level=verbose", "Unknown log level: verbose"),
    ("log_level=%20nope%20", "Unknown log level:  nope "),
    ("log_json=maybe", "Unknown option for log json: " + PARSE.format("maybe")),
    ("plain=yes", "Unknown option for plain: " + PARSE.format("yes")),
    ("log_include_location=2", "Unknown option for log_include_location: " + PARSE.format("2")),
    ("log_level=bad&log_json=maybe", "Unknown log level: bad"),              # log_level is checked first
    ("log_json=maybe&plain=maybe", "Unknown option for log json: " + PARSE.format("maybe")),
    ("node_id=a&server_id=b", "Cannot target node and server simultaneously"),
]


@pytest.mark.parametrize(("query", "message"), MONITOR_RULES, ids=[q for q, _ in MONITOR_RULES])
async def test_monitor_parameter_rules(query: str, message: str) -> None:
    """Each monitor parameter rule of 3.8, in Nomad's order, before any streaming."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        reply = await server.call("GET", f"/v1/agent/monitor?{query}")
        assert reply.triple() == (400, message.encode(), TEXT)


async def test_host_and_pprof_target_conflicts() -> None:
    """Both node_id and server_id: 400 with the endpoint's own message (3.7, 3.9)."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0, enable_debug=True)
        host = await server.call("GET", "/v1/agent/host?node_id=a&server_id=b")
        assert host.triple() == (400, b"Can only forward to either client node or server", TEXT)
        pprof = await server.call("GET", "/v1/agent/pprof/goroutine?node_id=a&server_id=b")
        assert pprof.triple() == (400, b"Cannot target node and server simultaneously", TEXT)
        # Empty values mean "not given" (the Go client sends them): the local agent answers.
        local = await server.call("GET", "/v1/agent/pprof/goroutine?debug=1&node_id=&server_id=")
        assert local.status == 200


# --- 3.11: scheduler configuration bodies ---------------------------------------------

SCHEDULER_BODIES = [
    (b"", "Invalid request: Request body is empty"),
    (b"{", "Invalid request: unexpected EOF"),
    (b"not json", "Invalid request: invalid character 'o' in literal null (expecting 'u')"),
    (b'{"num_schedulers": "2", "enabled_schedulers": ["_core"]}',
     "Invalid request: json: cannot unmarshal string into Go struct field "
     "AgentSchedulerWorkerConfigRequest.num_schedulers of type int"),
    (b'{"num_schedulers": 2, "enabled_schedulers": ["service"]}', "Invalid request"),
    (b'{"num_schedulers": -1, "enabled_schedulers": ["_core"]}', "Invalid request"),
    (b'{"num_schedulers": 2, "enabled_schedulers": ["_core", "all"]}', "Invalid request"),
    (b'{"num_schedulers": 2}', "Invalid request"),
]


async def test_scheduler_config_bad_bodies_change_nothing() -> None:
    """Empty, malformed, mistyped and invalid bodies: 400, same config and same worker ids."""
    async with agents() as ag:
        server = await ag.server("s1", "-num-schedulers", "3", expect=0)
        before = await _pool(server)
        rows = []
        for method in ("PUT", "POST"):
            for body, message in SCHEDULER_BODIES:
                reply = await server.call(method, "/v1/agent/schedulers/config", body)
                rows.append((f"{method} {body[:40]!r}", (400, message.encode(), TEXT), reply.triple()))
        oversized = await server.call("PUT", "/v1/agent/schedulers/config", b" " * MAX_BODY_BYTES + b"{}")
        rows.append(("oversized", TOO_LARGE, oversized.triple()))
        rows.append(("pool unchanged", before, await _pool(server)))
        assert not mismatches(rows), mismatches(rows)
        assert before[0] == {"server_id": server.name, "num_schedulers": 3, "enabled_schedulers": DEFAULT_SCHEDULERS}


# --- ACL bodies -----------------------------------------------------------------------


def _one_line_400(reply: Any) -> bool:
    return reply.status == 400 and reply.content_type == TEXT and reply.body != b"" and b"\n" not in reply.body


async def test_acl_bodies_and_parameter_order() -> None:
    """Malformed policy/token/bootstrap bodies: 400, nothing created; servers' 400 comes before the ACL check."""
    async with agents(timeout=90) as ag:
        server = await ag.server("s1", acl_enabled=True)
        client = await ag.client("c1", (server,), acl_enabled=True)
        await wait_known_servers(client)
        await wait_leader(server)
        early = await server.call("POST", "/v1/acl/bootstrap", b"{")
        assert _one_line_400(early), early      # Nomad: "failed to decode request body: unexpected EOF"
        huge = await server.call("POST", "/v1/acl/bootstrap", b" " * (MAX_BODY_BYTES + 1))
        assert huge.triple() == TOO_LARGE
        tokens = await acl_tokens(server)            # the refused bootstraps did not use up the one
        management = tokens["management"]
        listed = (await server.call("GET", "/v1/acl/tokens", token=management)).json()
        rows = []
        # The spec does not fix these texts; Nomad writes the Go decoder's message
        # ("unexpected EOF", "invalid character 'x' looking for beginning of value").
        for body in (b"{", b"x", b"[1]"):
            reply = await server.call("PUT", "/v1/acl/policy/p1", body, token=management)
            rows.append((f"policy {body!r}", True, _one_line_400(reply)))
        mismatch = await server.call("PUT", "/v1/acl/policy/p1", {"Name": "other", "Rules": ""}, token=management)
        rows.append(("policy name mismatch", (400, b"ACL policy name does not match request path", TEXT),
                     mismatch.triple()))
        big_policy = {"Name": "p1", "Rules": 'agent { policy = "read" }\n' + "#" * MAX_BODY_BYTES}
        rows.append(("policy oversized", TOO_LARGE,
                     (await server.call("PUT", "/v1/acl/policy/p1", big_policy, token=management)).triple()))
        missing = await server.call("GET", "/v1/acl/policy/p1", token=management)
        rows.append(("policy not created", (404, b"ACL policy not found", TEXT), missing.triple()))
        for body in (b"{", b"[1]", b"not json"):
            reply = await server.call("POST", "/v1/acl/token", body, token=management)
            rows.append((f"token {body!r}", True, _one_line_400(reply)))
        big_token = {"Name": "x" * (MAX_BODY_BYTES + 1), "Type": "client", "Policies": ["agent-read"]}
        rows.append(("token oversized", TOO_LARGE,
                     (await server.call("POST", "/v1/acl/token", big_token, token=management)).triple()))
        rows.append(("tokens unchanged", listed,
                     (await server.call("GET", "/v1/acl/tokens", token=management)).json()))
        # 3.2: the address check comes before the ACL check, so no token still gets the 400.
        rows.append(("servers no address, no token", (400, b"missing server address", TEXT),
                     (await client.call("PUT", "/v1/agent/servers")).triple()))
        rows.append(("force-leave no node, no token", (403, b"Permission denied", TEXT),
                     (await server.call("PUT", "/v1/agent/force-leave")).triple()))   # ACL before node
        assert not mismatches(rows), mismatches(rows)


# --- variables --------------------------------------------------------------------------


async def test_variable_bad_bodies_create_nothing() -> None:
    """Malformed and oversized variable bodies are refused and no variable appears."""
    async with agents() as ag:
        server = await ag.server("s1")
        await wait_leader(server)
        for body in (b"{", b"[1]", b'{"Items": {"k": 1}}', b""):
            reply = await server.call("PUT", "/v1/var/app/x", body)
            assert reply.status == 400 and reply.content_type == TEXT and b"\n" not in reply.body, reply
        huge = await server.call("PUT", "/v1/var/app/x", {"Items": {"k": "v" * MAX_BODY_BYTES}})
        assert huge.triple() == TOO_LARGE
        assert (await server.call("GET", "/v1/var/app/x")).triple() == (404, b"variable not found", TEXT)
        assert (await server.call("GET", "/v1/vars")).json() == []
        exact = await server.call("PUT", "/v1/var/app/x", b" " * (MAX_BODY_BYTES - 20) + b'{"Items":{"k":"v"}}')
        assert exact.status == 200, exact               # a body of exactly the limit is read
