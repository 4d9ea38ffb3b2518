"""agent-api.md section 15, one test per checklist line, and the section 9 examples byte for byte.

Every test starts in-process agents on 127.0.0.1 (``conformance_helpers``) and talks to
them over real HTTP, so statuses, Content-Type headers and body bytes are the ones a
Nomad client would see. Line 14 (python-nomad) is tested against real processes in
``tests/cluster/test_python_nomad.py``; ``test_c14`` here is its in-process smoke test.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from .conformance_helpers import (DEFAULT_SCHEDULERS, JSON, TEXT, Agent, Agents, Reply, acl_tokens, agents,
                                  compact_json, decode_frames, log_text, mismatches, open_stream,
                                  pretty_json, wait_known_servers, wait_leader)
from .helpers import wait_until_async

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
marker_log = logging.getLogger("agent.conformance")
marker_log.setLevel(logging.DEBUG)


# --- 1: wrong method (and routing, 1.1) ---------------------------------------------


async def test_c01_wrong_method_and_mode_answers() -> None:
    """405 "Invalid method" per endpoint; 501 for the wrong mode; schedulers' 400 comes first."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        client = await ag.client("c1")
        cases = [
            (server, m, p, 405, b"Invalid method") for m, p in [
                ("DELETE", "/v1/agent/members"), ("PUT", "/v1/agent/members"), ("POST", "/v1/agent/members"),
                ("DELETE", "/v1/agent/self"), ("PUT", "/v1/agent/self"), ("OPTIONS", "/v1/agent/self"),
                ("GET", "/v1/agent/join"), ("DELETE", "/v1/agent/join"),
                ("GET", "/v1/agent/force-leave"), ("DELETE", "/v1/agent/force-leave"),
                ("PUT", "/v1/agent/health"), ("DELETE", "/v1/agent/health"),
                ("PUT", "/v1/agent/host"), ("DELETE", "/v1/agent/host"),
                ("DELETE", "/v1/agent/servers"),            # the method is checked before the mode
                ("PUT", "/v1/agent/schedulers"), ("DELETE", "/v1/agent/schedulers/config"),
                ("PATCH", "/v1/agent/schedulers/config")]]
        cases += [(server, "GET", "/v1/agent/servers", 501, b"Invalid method"),
                  (server, "PUT", "/v1/agent/servers?address=127.0.0.1:4647", 501, b"Invalid method"),
                  (client, "GET", "/v1/agent/join", 405, b"Invalid method"),
                  (client, "DELETE", "/v1/agent/servers", 405, b"Invalid method"),
                  (client, "PUT", "/v1/agent/join?address=127.0.0.1:4648", 501, b"Invalid method"),
                  (client, "POST", "/v1/agent/force-leave?node=x", 501, b"Invalid method"),
                  (client, "PUT", "/v1/agent/force-leave", 501, b"Invalid method"),   # before the node check
                  (client, "PUT", "/v1/agent/schedulers", 400, b"Server only endpoint"),
                  (client, "GET", "/v1/agent/schedulers", 400, b"Server only endpoint"),
                  (client, "DELETE", "/v1/agent/schedulers/config", 400, b"Server only endpoint"),
                  (client, "PUT", "/v1/agent/schedulers/config", 400, b"Server only endpoint")]
        rows = []
        for agent, method, path, status, body in cases:
            reply = await agent.call(method, path)
            rows.append((f"{agent.node} {method} {path}", (status, body, TEXT), reply.triple()))
            assert not any(h.startswith("access-control-") for h in reply.headers), reply.headers
        head = await server.call("HEAD", "/v1/agent/members")
        rows.append(("HEAD members", 405, head.status))
        # 1.1: other paths under /v1/agent/ are an empty 404 without Content-Type; pprof gets a 301.
        for path in ("/v1/agent/members/", "/v1/agent/nosuch", "/v1/agent/self/x"):
            reply = await server.call("GET", path)
            rows.append((f"GET {path}", (404, b"", None), reply.triple()))
        redirect = await server.call("GET", "/v1/agent/pprof")
        rows.append(("GET /v1/agent/pprof", (301, "/v1/agent/pprof/"),
                     (redirect.status, redirect.headers.get("location"))))
        assert not mismatches(rows), mismatches(rows)


# --- 2: error bodies ----------------------------------------------------------------


async def test_c02_error_bodies_are_exact_plain_text() -> None:
    """Errors are text/plain; charset=utf-8, exact text, no trailing newline, right length."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        client = await ag.client("c1")
        parse = 'strconv.ParseBool: parsing "maybe": invalid syntax'
        cases = [
            (server, "PUT", "/v1/agent/join", 400, "missing address to join"),
            (server, "PUT", "/v1/agent/force-leave", 400, "missing node to force leave"),
            (server, "PUT", "/v1/agent/force-leave?node=x&prune=maybe", 400, "invalid prune value"),
            (client, "PUT", "/v1/agent/servers", 400, "missing server address"),
            (client, "GET", "/v1/agent/schedulers", 400, "Server only endpoint"),
            (server, "GET", "/v1/agent/monitor?log_level=verbose", 400, "Unknown log level: verbose"),
            (server, "GET", "/v1/agent/monitor?log_json=maybe", 400, f"Unknown option for log json: {parse}"),
            (server, "GET", "/v1/agent/monitor?plain=maybe", 400, f"Unknown option for plain: {parse}"),
            (server, "GET", "/v1/agent/monitor?log_include_location=maybe", 400,
             f"Unknown option for log_include_location: {parse}"),
            (server, "GET", "/v1/agent/monitor?node_id=a&server_id=b", 400,
             "Cannot target node and server simultaneously"),
            (server, "GET", "/v1/agent/pprof/", 404, "Invalid method"),
            (server, "PUT", "/v1/agent/schedulers/config", 400, "Invalid request: Request body is empty"),
            (server, "GET", "/v1/agent/members?wait=soon", 400, "Invalid wait time"),
            (server, "GET", "/v1/agent/members?index=x", 400, "Invalid index"),
            (server, "GET", "/v1/agent/members?stale=maybe", 400,
             "Expect `true` or `false` for `stale` query string parameter"),
            (server, "GET", "/v1/agent/members?per_page=x", 400,
             "Expect a number for `per_page` query string parameter"),
            (server, "GET", "/v1/agent/health?type=client", 500,
             '{"client":{"ok":false,"message":"client not enabled"}}'),
        ]
        rows = []
        for agent, method, path, status, text in cases:
            reply = await agent.call(method, path)
            rows.append((f"{agent.node} {method} {path}", (status, text.encode(), TEXT), reply.triple()))
            if reply.status >= 400:
                rows.append((f"{path} length", str(len(reply.body)), reply.headers.get("content-length")))
                rows.append((f"{path} newline", False, reply.body.endswith(b"\n")))
        assert not mismatches(rows), mismatches(rows)


# --- 3: pretty ----------------------------------------------------------------------


async def test_c03_pretty_and_compact_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """?pretty (any value but 0) indents by 4 and ends with a newline; compact has neither."""
    monkeypatch.setenv("SHOAL_CONFORMANCE_TOKEN", "hidden-value")
    async with agents() as ag:
        server = await ag.server("s1", "-client", enable_debug=True)
        for path in ("/v1/agent/members", "/v1/agent/schedulers/config", "/v1/agent/servers"):
            compact = await server.call("GET", path)
            assert compact.status == 200 and compact.content_type == JSON, compact
            assert compact.body == compact_json(json.loads(compact.body)) and not compact.body.endswith(b"\n")
            for query in ("?pretty", "?pretty=", "?pretty=1", "?pretty=false", "?pretty=true&x=1"):
                pretty = await server.call("GET", path + query)
                assert pretty.body == pretty_json(json.loads(pretty.body)), (query, pretty.body)
                assert json.loads(pretty.body) == json.loads(compact.body)
            zero = await server.call("GET", path + "?pretty=0")
            assert zero.body == compact.body
        self_doc = await server.call("GET", "/v1/agent/self?pretty")
        assert self_doc.body == pretty_json(json.loads(self_doc.body))
        # "<", ">" and "&" are written as-is: redacted values read "<redacted>" literally.
        host = await server.call("GET", "/v1/agent/host")
        assert host.status == 200, host
        assert b'"SHOAL_CONFORMANCE_TOKEN":"<redacted>"' in host.body and b"\\u003c" not in host.body
        assert b"hidden-value" not in host.body


# --- 4: ACL matrix ------------------------------------------------------------------

TOKENS = ["none", "unknown", "agent-read", "agent-write", "node-read", "management"]
GRANTS = {None: set(TOKENS), "agent:read": {"agent-read", "agent-write", "management"},
          "agent:write": {"agent-write", "management"}, "node:read": {"node-read", "management"}}


def matrix_rows(server: Agent, client: Agent) -> list[tuple[Agent, str, str, Any, str | None, str]]:
    """(agent, method, path, body, capability, unknown-token message) per endpoint (1.5, Q1, Q3)."""
    config = {"num_schedulers": 2, "enabled_schedulers": DEFAULT_SCHEDULERS}
    found, permission = "ACL token not found", "Permission denied"
    return [
        (server, "GET", "/v1/agent/members", b"", "node:read", permission),
        (client, "GET", "/v1/agent/members", b"", "node:read", permission),
        (client, "GET", "/v1/agent/servers", b"", "agent:read", found),
        (client, "PUT", f"/v1/agent/servers?address={server.rpc_address}", b"", "agent:write", found),
        (server, "GET", "/v1/agent/self", b"", "agent:read", found),
        (client, "GET", "/v1/agent/self", b"", "agent:read", found),
        (server, "PUT", "/v1/agent/join?address=127.0.0.1:1", b"", None, ""),
        (server, "PUT", "/v1/agent/force-leave?node=nobody.global", b"", "agent:write", found),
        (server, "GET", "/v1/agent/health", b"", None, ""),
        (server, "GET", "/v1/agent/host", b"", "agent:read", found),
        (server, "GET", "/v1/agent/monitor", b"", "agent:read", permission),
        (client, "GET", "/v1/agent/monitor", b"", "agent:read", found),
        (server, "GET", "/v1/agent/pprof/cmdline", b"", "agent:write", permission),
        (server, "GET", "/v1/agent/schedulers", b"", "agent:read", found),
        (server, "GET", "/v1/agent/schedulers/config", b"", "agent:read", found),
        (server, "PUT", "/v1/agent/schedulers/config", config, "agent:write", found),
    ]


async def status_of(agent: Agent, method: str, path: str, body: Any, token: str | None) -> tuple[int, bytes]:
    """Status and body; a streaming 200 (monitor) is read no further than its head."""
    if path.startswith("/v1/agent/monitor"):
        async with open_stream(agent.port, path, token=token) as stream:
            return stream.status, (b"" if stream.status == 200 else stream.data)
    reply = await agent.call(method, path, body, token=token)
    return reply.status, (b"" if reply.status == 200 else reply.body)


async def _matrix_pair(ag: Agents, acl: bool) -> tuple[Agent, Agent]:
    server = await ag.server("s1", "-num-schedulers", "2", acl_enabled=acl, enable_debug=not acl)
    client = await ag.client("c1", (server,), acl_enabled=acl, enable_debug=not acl)
    await wait_known_servers(client)
    return server, client


async def test_c04_acl_matrix() -> None:
    """Every endpoint x token with ACLs on, and with ACLs off (every token passes); Bearer; no ?token=."""
    async with agents(timeout=90) as ag:
        server, client = await _matrix_pair(ag, acl=True)
        secrets = await acl_tokens(server)
        rows = []
        for agent, method, path, body, capability, unknown in matrix_rows(server, client):
            for token in TOKENS:
                secret = None if token == "none" else secrets[token]
                if token in GRANTS[capability]:
                    want: tuple[int, bytes] = (200, b"")
                else:
                    want = (403, (unknown if token == "unknown" else "Permission denied").encode())
                got = await status_of(agent, method, path, body, secret)
                rows.append((f"ACLs on {agent.node} {method} {path} token={token}", want, got))
        self_path = "/v1/agent/self"
        for headers, want in [
            ({"Authorization": f"Bearer {secrets['agent-read']}"}, 200),
            ({"Authorization": f"bearer {secrets['agent-read']} trailing"}, 200),
            ({"X-Nomad-Token": f"  {secrets['agent-read']}  "}, 200),
            ({"Authorization": f"Basic {secrets['management']}"}, 403),
            ({"X-Nomad-Token": secrets["unknown"], "Authorization": f"Bearer {secrets['management']}"}, 403),
        ]:
            rows.append((f"headers {list(headers)}", want, (await server.call("GET", self_path, headers=headers)).status))
        ignored = await server.call("GET", f"{self_path}?token={secrets['management']}")
        rows.append(("?token= is ignored", (403, b"Permission denied"), (ignored.status, ignored.body)))
    async with agents() as ag:
        server, client = await _matrix_pair(ag, acl=False)
        await wait_leader(server)
        for agent, method, path, body, _capability, _unknown in matrix_rows(server, client):
            for token in ("none", "unknown"):
                got = await status_of(agent, method, path, body, None if token == "none" else "x-y-z")
                rows.append((f"ACLs off {agent.node} {method} {path} token={token}", (200, b""), got))
    assert not mismatches(rows), mismatches(rows)


# --- 5: host and pprof need enable_debug with ACLs off ------------------------------


async def test_c05_debug_endpoints_need_enable_debug_or_a_token() -> None:
    """ACLs off: 403 unless enable_debug; ACLs on: the token decides, enable_debug does not."""
    async with agents(timeout=90) as ag:
        plain = await ag.server("s1", expect=0, enable_debug=False)
        debug = await ag.server("s2", expect=0, enable_debug=True)
        guarded = await ag.server("s3", acl_enabled=True, enable_debug=False)
        secrets = await acl_tokens(guarded)
        rows = []
        for path in ("/v1/agent/host", "/v1/agent/pprof/cmdline", "/v1/agent/pprof/goroutine?debug=1"):
            refused = await plain.call("GET", path)
            rows.append((f"debug off {path}", (403, b"Permission denied", TEXT), refused.triple()))
            rows.append((f"debug on {path}", 200, (await debug.call("GET", path)).status))
        rows.append(("acl host agent-read", 200,
                     (await guarded.call("GET", "/v1/agent/host", token=secrets["agent-read"])).status))
        for token, want in (("agent-read", 403), ("agent-write", 200), ("management", 200), ("none", 403)):
            secret = None if token == "none" else secrets[token]
            got = (await guarded.call("GET", "/v1/agent/pprof/cmdline", token=secret)).status
            rows.append((f"acl pprof {token}", want, got))
        assert not mismatches(rows), mismatches(rows)


# --- 6: members ---------------------------------------------------------------------


async def test_c06_members_names_ports_tags_and_leader_column() -> None:
    """Name is name.region, Port the serf port, the 2.2 tags (vsn "1", no mvn); the CLI marks the leader."""
    async with agents() as ag:
        a = await ag.server("a")                          # bootstrap_expect 1: bootstrap + expect
        b = await ag.server("b", "-region", "r2", "-dc", "d2", expect=0)
        c = await ag.server("c", expect=3)                # alone: expect 3, no bootstrap
        joined = (await b.call("PUT", f"/v1/agent/join?address={a.serf_address}")).json()
        assert joined == {"num_joined": 1, "error": ""}
        await wait_leader(a)

        async def view() -> dict[str, Any]:
            return {m["Name"]: m for m in (await a.call("GET", "/v1/agent/members")).json()["Members"]}
        members = await wait_until_async(view, lambda v: {"a.global", "b.r2"} <= set(v), timeout=10)
        body = (await a.call("GET", "/v1/agent/members")).json()
        assert [body[k] for k in ("ServerName", "ServerRegion", "ServerDC")] == ["a", "global", "dc1"]
        for agent, name in ((a, "a.global"), (b, "b.r2")):
            member = members[name]
            assert list(member) == ["Name", "Addr", "Port", "Tags", "Status", "ProtocolMin", "ProtocolMax",
                                    "ProtocolCur", "DelegateMin", "DelegateMax", "DelegateCur"]
            assert (member["Addr"], member["Port"], member["Status"]) == ("127.0.0.1", agent.serf_port, "alive")
            tags = member["Tags"]
            assert {"role", "region", "dc", "build", "revision", "vsn", "raft_vsn", "id", "rpc_addr",
                    "port"} <= set(tags) and "mvn" not in tags
            assert (tags["role"], tags["vsn"], tags["raft_vsn"], tags["rpc_addr"], tags["port"]) == (
                "nomad", "1", "3", "127.0.0.1", str(agent.runtime.config.rpc_port))
        assert (members["a.global"]["Tags"]["bootstrap"], members["a.global"]["Tags"]["expect"]) == ("1", "1")
        assert "bootstrap" not in members["b.r2"]["Tags"] and "expect" not in members["b.r2"]["Tags"]
        assert (members["b.r2"]["Tags"]["region"], members["b.r2"]["Tags"]["dc"]) == ("r2", "d2")
        c_tags = (await c.call("GET", "/v1/agent/members")).json()["Members"][0]["Tags"]
        assert c_tags["expect"] == "3" and "bootstrap" not in c_tags
        done = await trio.run_process([sys.executable, "-m", "agent", "server", "members",
                                       "-address", f"http://127.0.0.1:{a.port}"],
                                      capture_stdout=True, capture_stderr=True, check=False,
                                      cwd=str(Path(__file__).resolve().parents[2]))
        lines = done.stdout.decode().splitlines()
        assert re.split(r"\s{2,}", lines[0].strip()) == ["Name", "Address", "Port", "Status", "Leader",
                                                         "Raft Version", "Build", "Datacenter", "Region"]
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        assert rows["a.global"][4] == "true" and rows["b.r2"][4] == "false", lines


# --- 7: join ------------------------------------------------------------------------


async def test_c07_join_answers() -> None:
    """200 with num_joined/error even when all fail; partial success hides errors; 400; 501."""
    async with agents() as ag:
        a = await ag.server("a", expect=0)
        b = await ag.server("b", expect=0)
        client = await ag.client("c1")
        dead = "127.0.0.1:1"
        ok = await b.call("POST", f"/v1/agent/join?address={a.serf_address}&address={dead}&region=elsewhere")
        assert ok.triple() == (200, b'{"num_joined":1,"error":""}', JSON)
        failed = await b.call("PUT", f"/v1/agent/join?address={dead}&address=127.0.0.1:2")
        assert failed.status == 200 and list(failed.json()) == ["num_joined", "error"]
        error = failed.json()["error"]
        assert failed.json()["num_joined"] == 0
        assert error.startswith("2 errors occurred:\n\t* Failed to join 127.0.0.1:1: ") and error.endswith("\n\n")
        assert "\n\t* Failed to join 127.0.0.1:2: " in error
        one = (await b.call("PUT", f"/v1/agent/join?address={dead}")).json()["error"]
        assert one.startswith("1 error occurred:\n\t* Failed to join 127.0.0.1:1: ")
        assert (await b.call("PUT", "/v1/agent/join")).triple() == (400, b"missing address to join", TEXT)
        refused = await client.call("PUT", f"/v1/agent/join?address={a.serf_address}")
        assert refused.triple() == (501, b"Invalid method", TEXT)


# --- 8: force-leave -----------------------------------------------------------------


async def _statuses(agent: Agent) -> dict[str, str]:
    return {m["Name"]: m["Status"] for m in (await agent.call("GET", "/v1/agent/members")).json()["Members"]}


async def _raft_nodes(agent: Agent) -> set[str]:
    reply = await agent.call("GET", "/v1/operator/raft/configuration?stale")
    return {s["Node"] for s in reply.json()["Servers"]}


async def test_c08_force_leave_unknown_alive_failed_and_prune() -> None:
    """Unknown name 200; an alive member refutes; failed -> left -> out of raft; prune erases at once."""
    async with agents(timeout=120) as ag:
        servers = [await ag.server(f"s{i}", expect=3) for i in (1, 2, 3)]
        s1, s2, s3 = servers
        for other in (s2, s3):
            assert (await other.call("PUT", f"/v1/agent/join?address={s1.serf_address}")).json()["num_joined"] == 1
        await wait_leader(s1, timeout=30)
        await wait_until_async(lambda: _raft_nodes(s1), lambda n: len(n) == 3, timeout=30)
        unknown = await s1.call("PUT", "/v1/agent/force-leave?node=nobody.global")
        assert unknown.triple() == (200, b"", None)
        alive = await s1.call("POST", f"/v1/agent/force-leave?node={s2.name}")
        assert alive.triple() == (200, b"", None)
        await wait_until_async(lambda: _statuses(s1), lambda v: v.get(s2.name) == "alive", timeout=15)
        s3.stop()
        await wait_until_async(lambda: _statuses(s1), lambda v: v.get(s3.name) == "failed", timeout=30)
        leader_agent = s1 if await wait_leader(s1) == s1.rpc_address else s2
        assert (await s1.call("PUT", f"/v1/agent/force-leave?node={s3.name}")).triple() == (200, b"", None)
        await wait_until_async(lambda: _statuses(s1), lambda v: v.get(s3.name) == "left", timeout=10)
        await wait_until_async(lambda: _raft_nodes(leader_agent), lambda n: s3.name not in n, timeout=20)
        pruned = await s1.call("PUT", f"/v1/agent/force-leave?node={s3.name}&prune=true")
        assert pruned.triple() == (200, b"", None)
        assert s3.name not in await _statuses(s1)                    # erased at once, no wait
        assert (await _statuses(s1))[s2.name] == "alive"


# --- 9: health ----------------------------------------------------------------------


async def test_c09_health_rules() -> None:
    """type filters, "not enabled", "no known servers", "No cluster leader" after ~5 s, 500 as text."""
    async with agents(timeout=60) as ag:
        leaderless = await ag.server("lonely", expect=3)
        results: dict[str, Reply] = {}

        async def slow() -> None:
            results["slow"] = await leaderless.call("GET", "/v1/agent/health", timeout=20)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            server = await ag.server("s1")
            await wait_leader(server)
            lost = await ag.client("c0")
            client = await ag.client("c1", (server,))
            await wait_known_servers(client)
            ok, bad = '{"ok":true,"message":"ok"}', '{"ok":false,"message":"%s"}'
            cases = [
                (server, "", 200, f'{{"server":{ok}}}', JSON),
                (server, "?type=server", 200, f'{{"server":{ok}}}', JSON),
                (server, "?type=client", 500, f'{{"client":{bad % "client not enabled"}}}', TEXT),
                (server, "?type=client&type=server", 500,
                 f'{{"client":{bad % "client not enabled"},"server":{ok}}}', TEXT),
                (server, "?type=foo", 200, "{}", JSON),
                (server, "?type=", 200, "{}", JSON),
                (client, "", 200, f'{{"client":{ok}}}', JSON),
                (client, "?type=server", 500, f'{{"server":{bad % "server not enabled"}}}', TEXT),
                (lost, "", 500, f'{{"client":{bad % "no known servers"}}}', TEXT),
                (leaderless, "?stale", 500, f'{{"server":{bad % "no leader"}}}', TEXT),
            ]
            rows = []
            for agent, query, status, body, content_type in cases:
                reply = await agent.call("GET", f"/v1/agent/health{query}")
                rows.append((f"{agent.node} {query}", (status, body.encode(), content_type), reply.triple()))
        slow_reply = results["slow"]
        rows.append(("no leader", (500, f'{{"server":{bad % "No cluster leader"}}}'.encode(), TEXT),
                     slow_reply.triple()))
        rows.append(("no leader only after the ~5 s hold", True, slow_reply.elapsed >= 4.0))
        assert not mismatches(rows), (mismatches(rows), slow_reply.elapsed)


# --- 10: self -----------------------------------------------------------------------


async def test_c10_self_document(tmp_path: Path) -> None:
    """Stats are strings, sections per mode, the empty member, redacted secrets, durations in ns."""
    config_file = tmp_path / "agent.hcl"
    config_file.write_text('acl {\n  replication_token = "s3cret-replication"\n}\n')
    async with agents() as ag:
        server = await ag.server("s1", "-encrypt", KEY, "-config", str(config_file))
        both = await ag.server("s2", "-client", expect=0)
        client = await ag.client("c1")
        expected = [(server, {"nomad", "raft", "serf", "runtime", "vault"}),
                    (both, {"nomad", "raft", "serf", "runtime", "vault", "client"}),
                    (client, {"client", "runtime"})]
        for agent, sections in expected:
            reply = await agent.call("GET", "/v1/agent/self")
            doc = reply.json()
            assert list(doc) == ["config", "member", "stats"]
            assert set(doc["stats"]) == sections, (agent.node, sorted(doc["stats"]))
            assert doc["stats"].get("vault", None) is None
            for name, section in doc["stats"].items():
                if section is not None:
                    assert all(isinstance(v, str) for v in section.values()), (name, section)
            assert doc["config"]["ACL"]["TokenTTL"] == 30_000_000_000
            assert doc["config"]["Server"]["RetryInterval"] == 30_000_000_000
        self_doc = await server.call("GET", "/v1/agent/self")
        doc = self_doc.json()
        assert (doc["member"]["Name"], doc["member"]["Status"], doc["member"]["Port"]) == (
            "s1.global", "alive", server.serf_port)
        assert doc["stats"]["serf"]["encrypted"] == "true"
        assert doc["config"]["ACL"]["ReplicationToken"] == "<redacted>"
        assert b'"<redacted>"' in self_doc.body and b"s3cret-replication" not in self_doc.body
        assert KEY.encode() not in self_doc.body
        assert doc["config"]["Files"] == [str(config_file)]
        assert (await both.call("GET", "/v1/agent/self")).json()["config"]["ACL"]["ReplicationToken"] == ""
        assert (await client.call("GET", "/v1/agent/self")).json()["member"] == {
            "Name": "", "Addr": None, "Port": 0, "Tags": None, "Status": "none", "ProtocolMin": 0,
            "ProtocolMax": 0, "ProtocolCur": 0, "DelegateMin": 0, "DelegateMax": 0, "DelegateCur": 0}


# --- 11: monitor --------------------------------------------------------------------


async def _watch_for(stream: Any, marker: str, level: int = logging.INFO, timeout: float = 5.0,
                     decode: Any = None) -> bytes:
    """Log ``marker`` every 200 ms until the stream shows it (the subscription may lag the head)."""
    found: list[bytes] = []

    async def emit() -> None:
        while not found:
            marker_log.log(level, marker)
            await trio.sleep(0.2)  # re-log interval while waiting, not a wait for an outcome
    async with trio.open_nursery() as nursery:
        nursery.start_soon(emit)
        data = await stream.read_until(lambda body: marker.encode() in (decode or bytes)(body), timeout)
        found.append(data)
        nursery.cancel_scope.cancel()
    return found[0]


async def test_c11_monitor_frames_heartbeats_plain_and_levels() -> None:
    """Frames are back-to-back JSON with base64 Data, {} heartbeats within ~1 s, plain text, levels."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0)
        async with open_stream(server.port, "/v1/agent/monitor?log_level=debug") as stream:
            assert (stream.status, stream.headers.get("content-type")) == (200, JSON)
            await stream.read_until(lambda body: b"{}" in body, timeout=2.5)
            assert trio.current_time() - stream.opened_at <= 2.0
            await _watch_for(stream, "conformance-json-frames", decode=log_text)
            frames = decode_frames(stream.data)
            data_frames = [f for f in frames if f]
            assert all(set(f) == {"Data", "FileEvent"} and f["FileEvent"] == "log" for f in data_frames)
            lines = log_text(stream.data).decode().splitlines()
            line = next(x for x in lines if "conformance-json-frames" in x)
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4}) \[INFO\]  \S+", line), line
        async with open_stream(server.port, "/v1/agent/monitor?plain=true") as stream:
            assert (stream.status, stream.headers.get("content-type")) == (200, "text/plain")
            data = await _watch_for(stream, "conformance-plain")
            assert b"{}" not in data and b'"Data"' not in data
        async with open_stream(server.port, "/v1/agent/monitor?log_json=true&plain=true") as stream:
            data = await _watch_for(stream, "conformance-json-line")
            line = next(x for x in data.splitlines() if b"conformance-json-line" in x)
            parsed = json.loads(line)
            assert (parsed["@level"], parsed["@message"]) == ("info", "conformance-json-line")
        async with open_stream(server.port, "/v1/agent/monitor?log_level=%20WARN%20&plain=1") as stream:
            marker_log.info("conformance-filtered-info")
            data = await _watch_for(stream, "conformance-warn", level=logging.WARNING)
            assert b"conformance-filtered-info" not in data
        bad = await server.call("GET", "/v1/agent/monitor?log_level=verbose")
        assert bad.triple() == (400, b"Unknown log level: verbose", TEXT)


# --- 12: pprof ----------------------------------------------------------------------


async def test_c12_pprof_names_seconds_and_headers() -> None:
    """Empty name 404 "Invalid method"; unknown 404; seconds default (and invalid) 1 s; 3.9 headers."""
    async with agents() as ag:
        server = await ag.server("s1", expect=0, enable_debug=True)
        assert (await server.call("GET", "/v1/agent/pprof/")).triple() == (404, b"Invalid method", TEXT)
        assert (await server.call("GET", "/v1/agent/pprof/nosuch")).triple() == (
            404, b"Pprof profile not found profile: nosuch", TEXT)
        cmdline = await server.call("GET", "/v1/agent/pprof/cmdline")
        assert (cmdline.status, cmdline.content_type) == (200, TEXT)
        assert cmdline.headers.get("x-content-type-options") == "nosniff"
        import psutil
        candidates = [sys.argv, list(getattr(sys, "orig_argv", [])), psutil.Process().cmdline()]
        assert cmdline.body.decode().split("\0") in candidates, cmdline.body[:300]
        results: dict[str, Reply] = {}

        async def profile(query: str) -> None:
            results[query] = await server.call("GET", f"/v1/agent/pprof/profile{query}")
        async with trio.open_nursery() as nursery:
            for query in ("", "?seconds=abc", "?seconds=0", "?seconds=-3"):
                nursery.start_soon(profile, query)
        for query, reply in results.items():
            assert reply.status == 200, (query, reply)
            assert reply.headers.get("x-shoal-profile-seconds") == "1", (query, reply.headers)
            assert reply.elapsed >= 0.9, (query, reply.elapsed)
            assert reply.content_type == "application/octet-stream"
            assert reply.headers.get("content-disposition") == 'attachment; filename="profile"'
            assert reply.headers.get("x-content-type-options") == "nosniff"
        for name in ("goroutine", "heap"):
            binary = await server.call("GET", f"/v1/agent/pprof/{name}")
            assert (binary.status, binary.content_type) == (200, "application/octet-stream"), binary
            assert binary.headers.get("content-disposition") == f'attachment; filename="{name}"'
            text = await server.call("GET", f"/v1/agent/pprof/{name}?debug=1")
            assert (text.status, text.content_type) == (200, TEXT), text
            assert text.headers.get("x-content-type-options") == "nosniff"
        path_wins = await server.call("GET", "/v1/agent/pprof/heap?profile=goroutine")
        assert path_wins.headers.get("content-disposition") == 'attachment; filename="heap"'
        both = await server.call("GET", "/v1/agent/pprof/heap?node_id=a&server_id=b")
        assert both.triple() == (400, b"Cannot target node and server simultaneously", TEXT)


# --- 13: schedulers -----------------------------------------------------------------

STATUSES = {"Unknown", "Starting", "Started", "Pausing", "Paused", "Resuming", "Stopping", "Stopped"}
WORKLOADS = {"UnknownStatus", "Running", "WaitingToDequeue", "WaitingForRaft", "Scheduling", "Submitting",
             "Backoff", "Stopped", "Paused"}


async def _workers(agent: Agent) -> list[dict[str, Any]]:
    body = (await agent.call("GET", "/v1/agent/schedulers")).json()
    assert body["server_id"] == agent.name
    return body["schedulers"]


async def test_c13_schedulers_pause_rule_rebuild_and_validation() -> None:
    """Leader pauses floor(3n/4), followers none; a PUT rebuilds with new ids; 400s change nothing."""
    async with agents() as ag:
        leader = await ag.server("s1", "-num-schedulers", "4")
        follower = await ag.server("s2", "-num-schedulers", "4", expect=0)
        await follower.call("PUT", f"/v1/agent/join?address={leader.serf_address}")
        await wait_leader(leader)
        paused = await wait_until_async(lambda: _workers(leader),
                                        lambda ws: sum(w["status"] == "Paused" for w in ws) == 3, timeout=10)
        assert len(paused) == 4
        for agent in (leader, follower):
            for worker in await _workers(agent):
                assert list(worker) == ["id", "enabled_schedulers", "started", "status", "workload_status"]
                assert worker["status"] in STATUSES and worker["workload_status"] in WORKLOADS, worker
                assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$", worker["started"]), worker
        assert all(w["status"] != "Paused" for w in await _workers(follower))
        before = {w["id"] for w in await _workers(leader)}
        put = await leader.call("PUT", "/v1/agent/schedulers/config",
                                {"server_id": "someone.else", "num_schedulers": 8,
                                 "enabled_schedulers": ["_core", "batch"]})
        assert put.triple() == (200, compact_json({"server_id": leader.name, "num_schedulers": 8,
                                               "enabled_schedulers": ["_core", "batch"]}), JSON)
        rebuilt = await wait_until_async(lambda: _workers(leader),
                                         lambda ws: sum(w["status"] == "Paused" for w in ws) == 6, timeout=10)
        assert len(rebuilt) == 8 and not before & {w["id"] for w in rebuilt}
        kept = {w["id"] for w in rebuilt}
        for body in ({"num_schedulers": 2, "enabled_schedulers": ["service"]},
                     {"num_schedulers": -1, "enabled_schedulers": DEFAULT_SCHEDULERS},
                     {"num_schedulers": 2, "enabled_schedulers": ["_core", "all"]}):
            refused = await leader.call("POST", "/v1/agent/schedulers/config", body)
            assert refused.triple() == (400, b"Invalid request", TEXT)
        assert {w["id"] for w in await _workers(leader)} == kept
        config = (await leader.call("GET", "/v1/agent/schedulers/config")).json()
        assert config == {"server_id": leader.name, "num_schedulers": 8, "enabled_schedulers": ["_core", "batch"]}


# --- 14: python-nomad (full test: tests/cluster/test_python_nomad.py) ------------------


async def test_c14_python_nomad_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every agent method of python-nomad 2.1.0 returns without exception on a healthy agent.

    The real-process version (3 servers + 1 client, error classes, ACLs) is
    tests/cluster/test_python_nomad.py; this one runs the library in a worker thread.
    """
    nomad = pytest.importorskip("nomad")
    for name in ("NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_REGION", "NOMAD_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    async with agents() as ag:
        server = await ag.server("s1", "-client")
        await wait_leader(server)
        await wait_known_servers(server)
        api = nomad.Nomad(address=f"http://127.0.0.1:{server.port}", region="global").agent

        def run_all() -> list[Any]:
            return [api.get_agent(), api.get_members(), api.get_servers(),
                    api.join_agent([server.serf_address]), api.update_servers([server.rpc_address]),
                    api.force_leave("nobody.global")]
        agent_doc, members, servers, joined, updated, left = await trio.to_thread.run_sync(run_all)
        assert list(agent_doc) == ["config", "member", "stats"]
        assert list(members) == ["ServerName", "ServerRegion", "ServerDC", "Members"]
        assert servers == [server.rpc_address]
        assert joined == {"num_joined": 1, "error": ""}
        assert (updated, left) == (200, 200)


# --- section 9: the examples, byte for byte ------------------------------------------

EXAMPLES = [
    ("client", "GET", "/v1/agent/schedulers", None, 400, "Server only endpoint"),
    ("server", "DELETE", "/v1/agent/self", None, 405, "Invalid method"),
    ("client", "POST", "/v1/agent/join?address=127.0.0.1:4648", None, 501, "Invalid method"),
    ("server", "POST", "/v1/agent/join", None, 400, "missing address to join"),
    ("server", "PUT", "/v1/agent/force-leave?node=x&prune=maybe", None, 400, "invalid prune value"),
    ("acl", "GET", "/v1/agent/self", "unknown", 403, "ACL token not found"),
    ("acl", "GET", "/v1/agent/members", "agent-write", 403, "Permission denied"),
    ("server", "GET", "/v1/agent/host", None, 403, "Permission denied"),
    ("server", "GET", "/v1/agent/health?type=client", None, 500,
     '{"client":{"ok":false,"message":"client not enabled"}}'),
    ("server", "GET", "/v1/agent/monitor?log_level=verbose", None, 400, "Unknown log level: verbose"),
    ("server", "GET", "/v1/agent/pprof/", None, 404, "Invalid method"),
    ("debug", "GET", "/v1/agent/pprof/nosuch", None, 404, "Pprof profile not found profile: nosuch"),
    ("server", "PUT", "/v1/agent/schedulers/config",
     {"num_schedulers": 2, "enabled_schedulers": ["service"]}, 400, "Invalid request"),
]


@pytest.mark.parametrize(("kind", "method", "path", "extra", "status", "text"), EXAMPLES,
                         ids=[f"{e[1]} {e[2]} ({e[0]})" for e in EXAMPLES])
async def test_section9_example(kind: str, method: str, path: str, extra: Any, status: int, text: str) -> None:
    """Each section 9 example: exact status, body bytes and Content-Type."""
    async with agents() as ag:
        token = None
        body: Any = b""
        if kind == "client":
            agent = await ag.client("c1")
        elif kind == "acl":
            agent = await ag.server("s1", acl_enabled=True)
            token = (await acl_tokens(agent))[extra]
        else:
            agent = await ag.server("s1", expect=0, enable_debug=kind == "debug")
            body = extra if isinstance(extra, dict) else b""
        reply = await agent.call(method, path, body, token=token)
        assert reply.triple() == (status, text.encode(), TEXT)
