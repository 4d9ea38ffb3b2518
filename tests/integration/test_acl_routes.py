"""ACLs end to end on an in-process -dev agent: /v1/acl/* and the agent endpoint matrix (spec 1.4, 1.5)."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, AsyncIterator

import trio

from agent.config import parse_agent_args
from agent.runtime import AgentRuntime, RunningAgent

from .helpers import wait_until_async
from .test_agent_runtime import FAST

TEXT = "text/plain; charset=utf-8"
PD, NOT_FOUND, EXPIRED = "Permission denied", "ACL token not found", "ACL token expired"
NO_FAULTS = "fault injection is disabled on this agent (start it with -fault-injection)"
SCHEDULERS = ["service", "batch", "system", "sysbatch", "_core"]


@asynccontextmanager
async def dev_agent(acl: bool) -> AsyncIterator[RunningAgent]:
    """One -dev agent on 127.0.0.1 (ports 0), ACLs on or off, with a leader."""
    config = parse_agent_args(["-dev", "-node", "d", "-bind", "127.0.0.1", "-http-port", "0",
                               "-serf-port", "0", "-rpc-port", "0"])
    config = replace(config, acl_enabled=acl)
    async with trio.open_nursery() as nursery:
        running = await nursery.start(AgentRuntime(config, gossip_overrides=FAST).run)
        port = running.http_address[1]

        async def leader() -> int:
            return (await http(port, "GET", "/v1/status/leader"))[0]
        await wait_until_async(leader, lambda status: status == 200, timeout=10)
        await wait_until_async(lambda: http(port, "GET", "/v1/status/leader"),
                               lambda answer: answer[1] not in (b'""', b""), timeout=10)
        yield running
        nursery.cancel_scope.cancel()


async def http(port: int, method: str, path: str, *, token: str | None = None,
               headers: dict[str, str] | None = None, body: Any = None) -> tuple[int, bytes, str | None]:
    """One HTTP/1.1 request by hand: (status, body, content type)."""
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    extra = dict(headers or {})
    if token is not None:
        extra["X-Nomad-Token"] = token
    head = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{head}"
                              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += await stream.receive_some(65536)
        top, _, rest = raw.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        found = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(found.get("content-length", "0"))
        while len(rest) < length:
            rest += await stream.receive_some(65536)
    return int(lines[0].split()[1]), rest, found.get("content-type")


async def ok_json(port: int, method: str, path: str, **kwargs: Any) -> Any:
    status, body, content_type = await http(port, method, path, **kwargs)
    assert (status, content_type) == (200, "application/json"), (status, body)
    return json.loads(body)


async def make_token(port: int, management: str, name: str, rules: str) -> str:
    """A policy named ``name`` with ``rules`` and a client token holding it; returns the secret."""
    status, body, _ = await http(port, "PUT", f"/v1/acl/policy/{name}", token=management,
                                 body={"Name": name, "Description": name, "Rules": rules})
    assert status == 200, body
    created = await ok_json(port, "PUT", "/v1/acl/token", token=management,
                            body={"Name": f"{name} token", "Type": "client", "Policies": [name]})
    return created["SecretID"]


async def test_bootstrap_policy_token_self_and_listing() -> None:
    """Bootstrap answers a management token once; policies and tokens are written and read back."""
    with trio.fail_after(40):
        async with dev_agent(acl=True) as dev:
            port = dev.http_address[1]
            root = await ok_json(port, "POST", "/v1/acl/bootstrap")
            assert (root["Name"], root["Type"], root["Global"], root["Policies"]) == \
                ("Bootstrap Token", "management", True, None)
            assert list(root) == ["AccessorID", "SecretID", "Name", "Type", "Policies", "Global",
                                  "CreateTime", "CreateIndex", "ModifyIndex"]
            status, body, content_type = await http(port, "POST", "/v1/acl/bootstrap")
            assert (status, body.decode(), content_type) == \
                (400, f"ACL bootstrap already done (reset index: {root['CreateIndex']})", TEXT)

            rules = 'agent { policy = "read" }\nnode { policy = "read" }'
            secret = await make_token(port, root["SecretID"], "readers", rules)
            policy = await ok_json(port, "GET", "/v1/acl/policy/readers", token=root["SecretID"])
            assert (policy["Name"], policy["Rules"], policy["Description"]) == ("readers", rules, "readers")
            listed = await ok_json(port, "GET", "/v1/acl/policies", token=secret)
            assert [p["Name"] for p in listed] == ["readers"] and "Rules" not in listed[0]

            me = await ok_json(port, "GET", "/v1/acl/token/self", token=secret)
            assert (me["SecretID"], me["Type"], me["Policies"]) == (secret, "client", ["readers"])
            bearer = await ok_json(port, "GET", "/v1/acl/token/self",
                                   headers={"Authorization": f"bEaReR {secret} extra"})
            assert bearer["AccessorID"] == me["AccessorID"]
            tokens = await ok_json(port, "GET", "/v1/acl/tokens", token=root["SecretID"])
            assert {t["AccessorID"] for t in tokens} == {root["AccessorID"], me["AccessorID"]}
            assert all("SecretID" not in t for t in tokens)
            one = await ok_json(port, "GET", f"/v1/acl/token/{me['AccessorID']}", token=secret)
            assert one["Name"] == "readers token"

            assert (await http(port, "GET", "/v1/acl/tokens", token=secret))[:2] == (403, PD.encode())
            assert (await http(port, "GET", "/v1/acl/token/self", token=str(uuid.uuid4())))[:2] == \
                (403, NOT_FOUND.encode())
            assert (await http(port, "GET", "/v1/acl/token/self"))[:2] == (403, NOT_FOUND.encode())
            status, body, _ = await http(port, "DELETE", f"/v1/acl/token/{me['AccessorID']}",
                                         token=root["SecretID"])
            assert (status, body) == (200, b"")
            assert (await http(port, "GET", "/v1/agent/self", token=secret))[:2] == \
                (403, NOT_FOUND.encode())


async def test_bad_policies_and_tokens_are_refused_and_change_nothing() -> None:
    """Invalid rules, a name mismatch and invalid tokens are 400s; the tables stay as they were."""
    with trio.fail_after(40):
        async with dev_agent(acl=True) as dev:
            port = dev.http_address[1]
            root = (await ok_json(port, "POST", "/v1/acl/bootstrap"))["SecretID"]
            cases = [
                ("x", {"Name": "y", "Rules": 'agent { policy = "read" }'},
                 "ACL policy name does not match request path"),
                ("x", {"Name": "x", "Rules": 'agent { policy = "admin" }'},
                 'policy 0 invalid: 1 error occurred:\n\t* failed to parse rules: '
                 'Invalid agent policy: &acl.AgentPolicy{Policy:"admin"}\n\n'),
                ("x", {"Name": "x", "Rules": 'keyring { policy = "read" }'},
                 'policy 0 invalid: 1 error occurred:\n\t* failed to parse rules: Failed to parse ACL '
                 'Policy: Unsupported block type "keyring": blocks of type "keyring" are not expected here\n\n'),
            ]
            for name, body, message in cases:
                status, text, content_type = await http(port, "PUT", f"/v1/acl/policy/{name}",
                                                        token=root, body=body)
                assert (status, text.decode(), content_type) == (400, message, TEXT)
            status, text, _ = await http(port, "PUT", "/v1/acl/policy/x", token=root, body=b"{nope")
            assert status == 400
            assert await ok_json(port, "GET", "/v1/acl/policies", token=root) == []
            for body, message in [
                ({"Type": "client", "Policies": []}, "token 0 invalid: client token missing policies or roles"),
                ({"Type": "management", "Policies": ["p"]},
                 "token 0 invalid: management token cannot be associated with policies or roles"),
                ({"Type": "root"}, "token 0 invalid: token type must be client or management"),
                ({"Type": "client", "Policies": ["p"], "ExpirationTTL": "1s"},
                 "token 0 invalid: expiration time cannot be less than 1m0s or more than 24h0m0s in the future"),
            ]:
                status, text, _ = await http(port, "PUT", "/v1/acl/token", token=root, body=body)
                assert (status, text.decode()) == (400, message)
            assert len(await ok_json(port, "GET", "/v1/acl/tokens", token=root)) == 1
            with_ttl = await ok_json(port, "PUT", "/v1/acl/token", token=root,
                                     body={"Type": "client", "Policies": ["p"], "ExpirationTTL": "1h"})
            assert "ExpirationTime" in with_ttl


async def test_acl_endpoints_with_acls_off_say_disabled() -> None:
    """With ACLs disabled every /v1/acl endpoint answers 400 "ACL support disabled"."""
    with trio.fail_after(40):
        async with dev_agent(acl=False) as dev:
            port = dev.http_address[1]
            for method, path in [("POST", "/v1/acl/bootstrap"), ("GET", "/v1/acl/policies"),
                                 ("GET", "/v1/acl/policy/x"), ("PUT", "/v1/acl/token"),
                                 ("GET", "/v1/acl/token/self"), ("GET", "/v1/acl/tokens")]:
                assert (await http(port, method, path)) == (400, b"ACL support disabled", TEXT), path
            assert (await http(port, "GET", "/v1/acl/bootstrap"))[:2] == (405, b"Invalid method")


# endpoint -> expected (status, body or None for "any 200") per caller
ENDPOINTS: dict[str, tuple[str, str, Any]] = {
    "members": ("GET", "/v1/agent/members", None),
    "self": ("GET", "/v1/agent/self", None),
    "force-leave": ("PUT", "/v1/agent/force-leave?node=nosuch.global", None),
    "servers": ("GET", "/v1/agent/servers", None),
    "schedulers": ("GET", "/v1/agent/schedulers", None),
    "schedulers-config": ("GET", "/v1/agent/schedulers/config", None),
    "schedulers-config-put": ("PUT", "/v1/agent/schedulers/config",
                              {"num_schedulers": 2, "enabled_schedulers": SCHEDULERS}),
    "faults": ("GET", "/v1/agent/faults", None),
}
OK = (200, None)
FAULTS_OFF = (403, NO_FAULTS)
ALLOWED = {"members": "node:read", "self": "agent:read", "force-leave": "agent:write",
           "servers": "agent:read", "schedulers": "agent:read", "schedulers-config": "agent:read",
           "schedulers-config-put": "agent:write", "faults": "agent:write"}
GRANTS = {"agent:read": {"agent:read"}, "agent:write": {"agent:read", "agent:write"},
          "node:read": {"node:read"}, "management": {"agent:read", "agent:write", "node:read"}}


def expected(endpoint: str, caller: str) -> tuple[int, str | None]:
    """The spec's answer (1.5, with shoal's 403 for Q1) for one endpoint and caller."""
    success = FAULTS_OFF if endpoint == "faults" else OK
    if caller == "off":
        return success
    if caller == "unknown":
        return (403, PD if endpoint == "members" else NOT_FOUND)
    if caller == "anonymous":
        return (403, PD)
    return success if ALLOWED[endpoint] in GRANTS[caller] else (403, PD)


async def run_matrix(port: int, callers: dict[str, str | None]) -> list[str]:
    wrong = []
    for endpoint, (method, path, body) in ENDPOINTS.items():
        for caller, secret in callers.items():
            status, text, content_type = await http(port, method, path, token=secret, body=body)
            want_status, want_body = expected(endpoint, caller)
            got_body = text.decode() if status != 200 else None
            if (status, got_body if want_body is not None else None) != (want_status, want_body) \
                    or (status != 200 and content_type != TEXT):
                wrong.append(f"{endpoint} as {caller}: {status} {text[:80]!r}, want {want_status} {want_body}")
    return wrong


async def test_agent_endpoint_matrix_with_acls_on() -> None:
    """Every agent endpoint x (no token, unknown, agent:read, agent:write, node:read, management)."""
    with trio.fail_after(60):
        async with dev_agent(acl=True) as dev:
            port = dev.http_address[1]
            root = (await ok_json(port, "POST", "/v1/acl/bootstrap"))["SecretID"]
            callers = {
                "anonymous": None, "unknown": str(uuid.uuid4()),
                "agent:read": await make_token(port, root, "agent-read", 'agent { policy = "read" }'),
                "agent:write": await make_token(port, root, "agent-write", 'agent { policy = "write" }'),
                "node:read": await make_token(port, root, "node-read", 'node { policy = "read" }'),
                "management": root,
            }
            assert await run_matrix(port, callers) == []


async def test_agent_endpoint_matrix_with_acls_off() -> None:
    """With ACLs off every agent endpoint answers whatever token is sent."""
    with trio.fail_after(60):
        async with dev_agent(acl=False) as dev:
            wrong = await run_matrix(dev.http_address[1], {"off": None})
            wrong += await run_matrix(dev.http_address[1], {"off": str(uuid.uuid4())})
            assert wrong == []


async def test_token_sources_expiry_deny_and_order() -> None:
    """Bearer works, ?token= is ignored, deny wins, expired tokens are refused, checks keep Nomad's order."""
    with trio.fail_after(40):
        async with dev_agent(acl=True) as dev:
            port = dev.http_address[1]
            root = (await ok_json(port, "POST", "/v1/acl/bootstrap"))["SecretID"]
            reader = await make_token(port, root, "agent-read", 'agent { policy = "read" }')
            assert (await http(port, "GET", "/v1/agent/self",
                               headers={"Authorization": f"Bearer {reader}"}))[0] == 200
            assert (await http(port, "GET", "/v1/agent/self",
                               headers={"Authorization": f"Basic {reader}"}))[:2] == (403, PD.encode())
            assert (await http(port, "GET", f"/v1/agent/self?token={root}"))[:2] == (403, PD.encode())
            # Two policies on one token: deny in either wins over write in the other.
            await make_token(port, root, "agent-deny", 'agent { policy = "deny" }')
            mixed = await ok_json(port, "PUT", "/v1/acl/token", token=root,
                                  body={"Type": "client", "Policies": ["agent-read", "agent-deny"]})
            assert (await http(port, "GET", "/v1/agent/self", token=mixed["SecretID"]))[:2] == \
                (403, PD.encode())
            # An expired token, written straight into the replicated state.
            expired = str(uuid.uuid4())
            result = await dev.api.state_apply({"Type": "acl_token_upsert", "Time": time.time_ns(), "Tokens": [{
                "AccessorID": str(uuid.uuid4()), "SecretID": expired, "Name": "old", "Type": "management",
                "ExpirationTime": time.time_ns() - 1}]})
            assert "Error" not in result
            assert (await http(port, "GET", "/v1/agent/self", token=expired))[:2] == (403, EXPIRED.encode())
            assert (await http(port, "GET", "/v1/agent/members", token=expired))[:2] == (403, PD.encode())
            # Order: servers PUT checks `address` before the ACL; force-leave the ACL before `node`.
            assert (await http(port, "PUT", "/v1/agent/servers"))[:2] == (400, b"missing server address")
            assert (await http(port, "PUT", "/v1/agent/force-leave"))[:2] == (403, PD.encode())
            assert (await http(port, "PUT", "/v1/agent/force-leave", token=root))[:2] == \
                (400, b"missing node to force leave")
            # join needs no token even with ACLs on (spec 11 Q11).
            assert (await http(port, "PUT", "/v1/agent/join"))[:2] == (400, b"missing address to join")
            # The anonymous policy gives rights to requests without a token.
            status, _, _ = await http(port, "PUT", "/v1/acl/policy/anonymous", token=root,
                                      body={"Name": "anonymous", "Rules": 'node { policy = "read" }'})
            assert status == 200
            assert (await http(port, "GET", "/v1/agent/members"))[0] == 200


async def test_client_only_agent_resolves_tokens_through_its_server() -> None:
    """A client-only agent asks its server (RPC ACL.ResolveToken) and applies the same rules."""
    with trio.fail_after(60):
        async with dev_agent(acl=True) as dev:
            port = dev.http_address[1]
            root = (await ok_json(port, "POST", "/v1/acl/bootstrap"))["SecretID"]
            reader = await make_token(port, root, "agent-read", 'agent { policy = "read" }')
            config = parse_agent_args(["-client", "-node", "c", "-bind", "127.0.0.1", "-http-port", "0",
                                       "-rpc-port", "0", "-servers", dev.api.server.raft_address])
            async with trio.open_nursery() as nursery:
                client = await nursery.start(AgentRuntime(replace(config, acl_enabled=True)).run)
                cport = client.http_address[1]
                assert (await http(cport, "GET", "/v1/agent/self", token=reader))[0] == 200
                assert (await http(cport, "GET", "/v1/agent/servers", token=reader))[0] == 200
                assert (await http(cport, "PUT", "/v1/agent/servers?address=x", token=reader))[:2] == \
                    (403, PD.encode())
                assert (await http(cport, "GET", "/v1/agent/self", token=str(uuid.uuid4())))[:2] == \
                    (403, NOT_FOUND.encode())
                assert (await http(cport, "GET", "/v1/agent/self"))[:2] == (403, PD.encode())
                me = await ok_json(cport, "GET", "/v1/acl/token/self", token=reader)
                assert me["SecretID"] == reader
                nursery.cancel_scope.cancel()
