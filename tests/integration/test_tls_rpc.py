"""The rpc port under ``tls.rpc`` (agent/rpc.py + agent/tlsutil.py), in process.

Two endpoints with certificates of one CA speak RPC and Raft through ``0x04`` + mutual
TLS; a plain dialler, a dialler whose certificate comes from another CA, and (with
``verify_server_hostname``) a Raft dialler holding a client certificate are refused
and counted, and the server keeps serving the good peer.
"""

from __future__ import annotations

import datetime
import json
import ssl
import urllib.request
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import trio

from agent.cli_tls import build_ca, build_cert, cert_profile, load_ca
from agent.config import AgentConfig, parse_agent_args
from agent.rpc import RaftTransport, RpcPool, RpcServer, RpcUnavailable
from agent.runtime import AgentRuntime, StartupError
from agent.tlsutil import TLSConfigError, http_ssl_config, rpc_tls
from raftlite.messages import RequestVote

from .helpers import wait_until, wait_until_async

DEADLINE = 20.0


@dataclass(frozen=True)
class Pki:
    """One CA on disk and a helper to issue certificates from it."""

    folder: Path
    ca_file: Path
    ca_key: Path

    def issue(self, kind: str, name: str) -> tuple[str, str]:
        ca_cert, ca_key = load_ca(self.ca_file.read_bytes(), self.ca_key.read_bytes())
        cert, key = build_cert(cert_profile(kind, region="global", domain="nomad"), ca_cert, ca_key,
                               days=1, now=datetime.datetime.now(datetime.timezone.utc))
        cert_path, key_path = self.folder / f"{name}.pem", self.folder / f"{name}-key.pem"
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        return str(cert_path), str(key_path)


def make_pki(folder: Path) -> Pki:
    folder.mkdir()
    cert, key = build_ca(common_name=f"test CA {folder.name}", domain="nomad", days=1,
                         now=datetime.datetime.now(datetime.timezone.utc))
    (folder / "ca.pem").write_bytes(cert)
    (folder / "ca-key.pem").write_bytes(key)
    return Pki(folder, folder / "ca.pem", folder / "ca-key.pem")


def tls_config(pki: Pki, cert: tuple[str, str], *, verify_hostname: bool = False,
               ca: Pki | None = None) -> AgentConfig:
    return AgentConfig(node="t", tls_rpc=True, tls_ca_file=str((ca or pki).ca_file),
                       tls_cert_file=cert[0], tls_key_file=cert[1],
                       tls_verify_server_hostname=verify_hostname)


@asynccontextmanager
async def rpc_server(config: AgentConfig | None) -> AsyncIterator[tuple[RpcServer, str, list[Any]]]:
    """An RpcServer on 127.0.0.1 with an ``Echo`` method; yields it, its address, raft inbox."""
    inbox: list[Any] = []

    async def echo(args: Any) -> Any:
        return {"Echo": args}

    server = RpcServer({"Echo": echo}, inbox.append, tls=None if config is None else rpc_tls(config))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners[0])
        yield server, f"127.0.0.1:{port}", inbox
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def pool(config: AgentConfig | None) -> AsyncIterator[RpcPool]:
    rpc = RpcPool(tls=None if config is None else rpc_tls(config))
    async with trio.open_nursery() as nursery:
        await nursery.start(rpc.run)
        yield rpc
        nursery.cancel_scope.cancel()


def vote(source: str) -> RequestVote:
    return RequestVote(term=1, source_id=source, source_address=source, last_log_index=0,
                       last_log_term=0)


@pytest.fixture
def two_cas(tmp_path: Path) -> tuple[Pki, Pki]:
    return make_pki(tmp_path / "cluster"), make_pki(tmp_path / "other")


async def test_rpc_and_raft_over_mutual_tls(two_cas: tuple[Pki, Pki]) -> None:
    """Same-CA peers call RPC and deliver Raft frames over 0x04 + TLS."""
    cluster, _other = two_cas
    server_config = tls_config(cluster, cluster.issue("server", "s1"))
    peer_config = tls_config(cluster, cluster.issue("server", "s2"))
    with trio.fail_after(DEADLINE):
        async with rpc_server(server_config) as (server, address, inbox), pool(peer_config) as rpc:
            assert await rpc.call(address, "Echo", {"A": 1}) == {"Echo": {"A": 1}}
            transport = RaftTransport(tls=rpc_tls(peer_config))
            async with trio.open_nursery() as nursery:
                await nursery.start(transport.run)
                transport.send_nowait("s1", address, vote("s2"))
                await wait_until(lambda: len(inbox) == 1, timeout=10, describe=lambda: server.counters)
                nursery.cancel_scope.cancel()
            assert inbox[0] == vote("s2")
            assert not [k for k in server.counters if k.startswith("dropped.")]


async def test_plain_and_foreign_ca_peers_are_refused_and_counted(two_cas: tuple[Pki, Pki]) -> None:
    """A plain dialler gets dropped.tls_required; a certificate from another CA fails
    the handshake whichever CA the dialler trusts; the good peer still gets answers."""
    cluster, other = two_cas
    server_config = tls_config(cluster, cluster.issue("server", "s1"))
    foreign_cert = other.issue("server", "x1")
    with trio.fail_after(DEADLINE):
        async with rpc_server(server_config) as (server, address, inbox):
            async with pool(None) as plain:
                with pytest.raises(RpcUnavailable):
                    await plain.call(address, "Echo", 1, timeout=5)
            assert server.counters["dropped.tls_required"] == 1
            # trusts only its own CA: rejects our server's certificate itself
            async with pool(tls_config(other, foreign_cert)) as foreign:
                with pytest.raises(RpcUnavailable) as caught:
                    await foreign.call(address, "Echo", 1, timeout=5)
                assert caught.value.sent is False
                assert "certificate verify failed" in str(caught.value), caught.value
            # trusts our CA but presents a foreign certificate: our server refuses it
            async with pool(tls_config(other, foreign_cert, ca=cluster)) as sneaky:
                with pytest.raises(RpcUnavailable):
                    await sneaky.call(address, "Echo", 1, timeout=5)
            await wait_until(lambda: server.counters["dropped.tls_handshake"] == 2, timeout=10,
                             describe=lambda: dict(server.counters))
            transport = RaftTransport(tls=rpc_tls(tls_config(other, foreign_cert, ca=cluster)))
            async with trio.open_nursery() as nursery:
                await nursery.start(transport.run)
                transport.send_nowait("s1", address, vote("x1"))
                await wait_until(lambda: server.counters["dropped.tls_handshake"] == 3, timeout=10,
                                 describe=lambda: dict(server.counters))
                nursery.cancel_scope.cancel()
            assert inbox == []
            async with pool(tls_config(cluster, cluster.issue("client", "c1"))) as good:
                assert await good.call(address, "Echo", "ok") == {"Echo": "ok"}


async def test_verify_server_hostname(two_cas: tuple[Pki, Pki]) -> None:
    """With verify_server_hostname a client certificate may call RPC but not open Raft,
    and a dialler refuses a server whose certificate does not name server.global.nomad."""
    cluster, _other = two_cas
    client_cert = cluster.issue("client", "c1")
    with trio.fail_after(DEADLINE):
        async with rpc_server(tls_config(cluster, cluster.issue("server", "s1"),
                                         verify_hostname=True)) as (server, address, inbox):
            client_config = tls_config(cluster, client_cert, verify_hostname=True)
            async with pool(client_config) as rpc:
                assert await rpc.call(address, "Echo", 2) == {"Echo": 2}
            transport = RaftTransport(tls=rpc_tls(client_config))
            async with trio.open_nursery() as nursery:
                await nursery.start(transport.run)
                transport.send_nowait("s1", address, vote("c1"))
                await wait_until(lambda: server.counters["dropped.raft_tls_name"] == 1, timeout=10,
                                 describe=lambda: dict(server.counters))
                nursery.cancel_scope.cancel()
            assert inbox == []
        # a "server" presenting a client certificate fails the dialler's name check
        async with rpc_server(tls_config(cluster, client_cert)) as (server, address, _inbox):
            async with pool(tls_config(cluster, cluster.issue("server", "s2"),
                                       verify_hostname=True)) as rpc:
                with pytest.raises(RpcUnavailable) as caught:
                    await rpc.call(address, "Echo", 3, timeout=5)
                assert caught.value.sent is False
                assert "Hostname mismatch" in str(caught.value), caught.value


async def test_tls_byte_to_a_plain_server_is_refused() -> None:
    """0x04 to an rpc port without tls.rpc is dropped as tls_not_configured."""
    with trio.fail_after(DEADLINE):
        async with rpc_server(None) as (server, address, _inbox):
            host, port = address.rsplit(":", 1)
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                await stream.send_all(b"\x04")
                assert await stream.receive_some(10) == b""
            assert server.counters["dropped.tls_not_configured"] == 1


def test_bad_files_give_one_line_errors(two_cas: tuple[Pki, Pki], tmp_path: Path) -> None:
    """Missing files, a non-PEM file and a key of another certificate name the setting and file."""
    cluster, _other = two_cas
    cert, key = cluster.issue("server", "s1")
    _cert2, key2 = cluster.issue("server", "s2")
    good = tls_config(cluster, (cert, key))
    cases = [
        (replace(good, tls_cert_file=str(tmp_path / "nope.pem")), "cannot read tls.cert_file"),
        (replace(good, tls_key_file=""), "tls.key_file is required"),
        (replace(good, tls_ca_file=key), "tls.ca_file"),
        (replace(good, tls_cert_file=key), "is not a PEM certificate"),
        (replace(good, tls_key_file=key2), "does not match the certificate"),
    ]
    for config, message in cases:
        with pytest.raises(TLSConfigError) as caught:
            rpc_tls(config)
        assert message in str(caught.value) and "\n" not in str(caught.value)
    http = replace(good, tls_rpc=False, tls_http=True, tls_ca_file="", tls_verify_https_client=True)
    with pytest.raises(TLSConfigError, match="verify_https_client needs tls.ca_file"):
        http_ssl_config(http)
    assert http_ssl_config(replace(http, tls_verify_https_client=False)) is not None
    assert rpc_tls(replace(good, tls_rpc=False)) is None


def _https_get(url: str, ca: str, cert: tuple[str, str] | None) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(*cert)
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        return response.status, json.loads(response.read())


async def test_dev_agent_with_https_client_certs_and_rpc_tls(two_cas: tuple[Pki, Pki]) -> None:
    """A -dev agent with tls.http (verify_https_client) and tls.rpc: its client registers
    with its server over TLS rpc; HTTPS answers a caller with a CA-signed client
    certificate and refuses one without; a bad key file is a one-line StartupError."""
    cluster, _other = two_cas
    server_cert = cluster.issue("server", "dev")
    cli_cert = cluster.issue("cli", "cli")
    config = replace(parse_agent_args(["-dev", "-bind", "127.0.0.1", "-http-port", "0",
                                       "-serf-port", "0", "-rpc-port", "0"]),
                     tls_http=True, tls_rpc=True, tls_ca_file=str(cluster.ca_file),
                     tls_cert_file=server_cert[0], tls_key_file=server_cert[1],
                     tls_verify_server_hostname=True, tls_verify_https_client=True)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            runtime = AgentRuntime(config)
            running = await nursery.start(runtime.run)
            host, port = running.http_address
            url = f"https://{host}:{port}/v1/nodes"

            async def nodes() -> Any:
                try:
                    return await trio.to_thread.run_sync(_https_get, url, str(cluster.ca_file), cli_cert)
                except OSError as exc:
                    return exc

            status, body = await wait_until_async(
                nodes, lambda got: isinstance(got, tuple) and len(got[1]) == 1, timeout=15)
            assert status == 200 and body[0]["Status"] == "ready"
            with pytest.raises((ssl.SSLError, OSError)):
                await trio.to_thread.run_sync(_https_get, url, str(cluster.ca_file), None)
            assert runtime.server is not None
            assert runtime.server.rpc.counters["dropped.tls_handshake"] == 0
            assert runtime.server.rpc.counters["rpc_served"] > 0
            nursery.cancel_scope.cancel()
    bad = replace(config, tls_key_file=cli_cert[1])
    with pytest.raises(StartupError, match="does not match the certificate"):
        await AgentRuntime(bad).run()
