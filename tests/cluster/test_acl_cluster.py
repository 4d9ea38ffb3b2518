"""ACLs across three real `shoal agent -server` processes started with `-config` (acl { enabled = true })."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

import pytest

from harness import CONVERGE_DEADLINE, PYTHON, REPO, START_DEADLINE, ShoalNode, make_shoal, wait_until
from raft_procs import wait_one_leader

pytestmark = pytest.mark.cluster


def shoal_cli(node: ShoalNode, args: Sequence[str], token: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``shoal <args>`` against ``node`` with ``SHOAL_TOKEN`` set to ``token``."""
    env = dict(os.environ, SHOAL_ADDR=node.url, SHOAL_TOKEN=token)
    return subprocess.run([PYTHON, "-m", "agent", *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env=env)


def secret_of(output: str) -> str:
    found = re.search(r"^Secret ID\s+= (\S+)$", output, re.M)
    assert found, output
    return found.group(1)


def status_of(node: ShoalNode, path: str, token: str = "") -> tuple[int, bytes]:
    """GET ``path`` with the token in ``X-Nomad-Token``: (status, body)."""
    headers = {"X-Nomad-Token": token} if token else {}
    request = urllib.request.Request(f"{node.url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_bootstrap_on_one_server_tokens_work_on_the_others(procs, loopback, tmp_path: Path):
    """A token bootstrapped on one server, and one made on a second, are honoured by the third."""
    config = tmp_path / "acl.hcl"
    config.write_text("acl {\n  enabled = true\n}\n")
    nodes = [make_shoal(procs, tmp_path, loopback.next(), name,
                        extra=["-bootstrap-expect", "3", "-config", str(config)])
             for name in ("a1", "a2", "a3")]
    for node in nodes:
        node.start()
    for node in nodes:       # /v1/status/leader needs no token: it shows the HTTP server is up
        wait_until(f"{node.name} to serve HTTP", lambda node=node: status_of(node, "/v1/status/leader")[0],
                   lambda status: status == 200, timeout=START_DEADLINE, watch=[node])
    for node in nodes[1:]:
        status, body = node.join(nodes[0].serf_addr)
        assert status == 200 and body == {"num_joined": 1, "error": ""}, (status, body)
    wait_one_leader(nodes, timeout=CONVERGE_DEADLINE + 30)

    assert status_of(nodes[2], "/v1/agent/self") == (403, b"Permission denied")
    done = shoal_cli(nodes[0], ["acl", "bootstrap"])
    assert done.returncode == 0, done.stderr
    root = secret_of(done.stdout)
    assert "Type         = management" in done.stdout

    rules = tmp_path / "readers.hcl"
    rules.write_text('agent {\n  policy = "read"\n}\n')
    done = shoal_cli(nodes[1], ["acl", "policy", "apply", "-description", "agent readers", "readers",
                                str(rules)], token=root)
    assert (done.returncode, done.stdout.strip()) == (0, 'Successfully wrote "readers" ACL policy!'), done.stderr
    done = shoal_cli(nodes[1], ["acl", "token", "create", "-name", "reader", "-policy", "readers"], token=root)
    assert done.returncode == 0, done.stderr
    reader = secret_of(done.stdout)

    # Replicated: the third server resolves both tokens from its own copy of the state.
    wait_until("the reader token to work on the third server",
               lambda: status_of(nodes[2], "/v1/agent/self", reader)[0], lambda status: status == 200,
               timeout=CONVERGE_DEADLINE, watch=nodes)
    assert status_of(nodes[2], "/v1/agent/members", reader) == (403, b"Permission denied")
    assert status_of(nodes[2], "/v1/agent/members", root)[0] == 200
    assert status_of(nodes[2], "/v1/agent/self", "9b1a2c3d-0000-4000-8000-000000000000") == \
        (403, b"ACL token not found")

    done = shoal_cli(nodes[2], ["acl", "token", "self"], token=reader)
    assert done.returncode == 0 and "Name         = reader" in done.stdout, done.stderr
    assert "Policies     = [readers]" in done.stdout
    done = shoal_cli(nodes[2], ["acl", "token", "list"], token=reader)
    assert done.returncode == 1 and "403 (Permission denied)" in done.stderr
    done = shoal_cli(nodes[2], ["acl", "token", "list"], token=root)
    assert done.returncode == 0, done.stderr
    assert sorted(line.split("  ")[0] for line in done.stdout.splitlines()[1:]) == \
        ["Bootstrap Token", "reader"], done.stdout
    done = shoal_cli(nodes[2], ["acl", "bootstrap"])
    assert done.returncode == 1 and "ACL bootstrap already done (reset index:" in done.stderr
