"""Real `shoal agent -config` processes: the documented example files start agents whose
settings show in the API, and bad files stop start-up with their one-line message."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from harness import (PYTHON, REPO, START_DEADLINE, LoopbackAllocator, Proc, ProcSet, free_port,
                     http, http_json, wait_until)

EXAMPLES = REPO / "docs" / "examples"


def start_agent(procs: ProcSet, tmp_path: Path, name: str, argv: list[str]) -> Proc:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = Proc(name=name, argv=[PYTHON, "-m", "agent", "agent", *argv],
                log_path=tmp_path / f"{name}.log", env=env, stop_signal=signal.SIGINT)
    procs.add(proc)
    return proc.start()


def agent_self(url: str) -> dict:
    return http_json("GET", f"{url}/v1/agent/self")


def test_example_files_start_a_server_and_its_client(procs: ProcSet, loopback: LoopbackAllocator,
                                                      tmp_path: Path) -> None:
    """agent-server.hcl and agent-client.json start agents (ports moved by flags) whose
    region, datacenter, name and config files show in /v1/agent/self.

    The client's file lists 127.0.0.1:4647 and -servers adds the test server (lists
    append); only the client's own settings are checked, so whatever listens on
    127.0.0.1:4647 on this host does not matter."""
    ip = loopback.next()
    http_port, rpc_port, serf_port = free_port(ip), free_port(ip), free_port(ip, udp=True)
    server_file = str(EXAMPLES / "agent-server.hcl")
    server = start_agent(procs, tmp_path, "cfg-server", [
        "-config", server_file, "-bind", ip, "-http-port", str(http_port),
        "-rpc-port", str(rpc_port), "-serf-port", str(serf_port), "-num-schedulers", "1"])
    server_url = f"http://{ip}:{http_port}"
    body = wait_until("the server's /v1/agent/self", lambda: agent_self(server_url),
                      timeout=START_DEADLINE, watch=[server])
    config = body["config"]
    assert (config["Region"], config["Datacenter"], config["NodeName"]) == \
        ("europe", "dc-west", "server-1")
    assert config["Ports"]["HTTP"] == http_port and config["BindAddr"] == ip
    assert config["Files"] == [server_file]
    assert body["member"]["Name"] == "server-1.europe"
    assert body["member"]["Tags"]["dc"] == "dc-west"

    client_ip = loopback.next()
    client_http, client_rpc = free_port(client_ip), free_port(client_ip)
    client = start_agent(procs, tmp_path, "cfg-client", [
        "-config", str(EXAMPLES / "agent-client.json"), "-bind", client_ip,
        "-http-port", str(client_http), "-rpc-port", str(client_rpc),
        "-servers", f"{ip}:{rpc_port}"])
    client_url = f"http://{client_ip}:{client_http}"
    body = wait_until("the client's /v1/agent/self", lambda: agent_self(client_url),
                      timeout=START_DEADLINE, watch=[client])
    assert (body["config"]["Region"], body["config"]["Datacenter"], body["config"]["NodeName"]) == \
        ("europe", "dc-east", "client-1")
    client_config = body["config"]["Client"]
    assert (client_config["Enabled"], client_config["NodeClass"]) == (True, "batch-workers")
    assert client_config["Meta"] == {"rack": "r1", "owner": "team-a"}
    assert client_config["Servers"] == ["127.0.0.1:4647", f"{ip}:{rpc_port}"]


def test_dev_example_on_top_of_dev(procs: ProcSet, loopback: LoopbackAllocator,
                                   tmp_path: Path) -> None:
    """-dev with agent-dev.hcl: still a server and client on its own, with the file's settings."""
    ip = loopback.next()
    http_port = free_port(ip)
    agent = start_agent(procs, tmp_path, "cfg-dev", [
        "-dev", "-config", str(EXAMPLES / "agent-dev.hcl"), "-bind", ip,
        "-http-port", str(http_port), "-rpc-port", str(free_port(ip)),
        "-serf-port", str(free_port(ip, udp=True)), "-node", "dev-1"])
    url = f"http://{ip}:{http_port}"
    wait_until("the dev agent to be healthy", lambda: http("GET", f"{url}/v1/agent/health"),
               lambda answer: answer[0] == 200, timeout=START_DEADLINE, watch=[agent])
    # acl.enabled came from the file: without a token the agent's config is not shown.
    status, body = http("GET", f"{url}/v1/agent/self")
    assert status == 403, (status, body[:200])
    # http_api_response_headers came from the file.
    with urllib.request.urlopen(f"{url}/v1/agent/health", timeout=5) as response:
        assert response.headers.get("X-Shoal-Env") == "dev"


BAD_FILES = [
    ("unknown.hcl", "server {\n  enabled = true\n  foo = 1\n}\n", "unexpected keys server.foo"),
    ("old.hcl", "server {\n  enabled = true\n  protocol_version = 3\n}\n",
     "server.protocol_version was removed"),
    ("raft.hcl", "server {\n  enabled = true\n  raft_protocol = 4\n}\n",
     "raft_protocol must be 2 or 3, got 4"),
    ("types.json", '{"server": {"enabled": true}, "ports": {"http": "4646"}}',
     "ports.http must be a whole number"),
]


@pytest.mark.parametrize("name,text,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_stop_start_up(tmp_path: Path, name: str, text: str, message: str) -> None:
    """A bad file: exit status 1, one line on stderr naming the file and the problem."""
    path = tmp_path / name
    path.write_text(text)
    done = subprocess.run([PYTHON, "-m", "agent", "agent", "-config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"Error loading configuration from {path}: ")
    assert message in lines[0]
    assert done.stdout == ""
