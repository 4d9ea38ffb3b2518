"""`shoal tls ca create` / `shoal tls cert create` (agent/cli_tls.py): the files they
write, the names and usages in the certificates (as `nomad tls`), and refusals that
write nothing."""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.cli import CommandError, main
from agent.cli_tls import cert_profile, run_tls_command
from agent.config import UsageError


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (names.get_values_for_type(x509.DNSName),
            [str(ip) for ip in names.get_values_for_type(x509.IPAddress)])


def usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_create_writes_a_p256_ca(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CA is self-signed, a critical CA:TRUE, may sign certificates, has an ECDSA
    P-256 key (mode 0600) and the default Nomad common name."""
    assert run_tls_command(["ca", "create"]) == 0
    out = capsys.readouterr().out
    assert out == ("==> CA certificate saved to: nomad-agent-ca.pem\n"
                   "==> CA certificate key saved to: nomad-agent-ca-key.pem\n")
    ca = load(folder / "nomad-agent-ca.pem")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    ca.verify_directly_issued_by(ca)
    common_name = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert str(common_name).startswith("Nomad Agent CA ")
    assert 1824 <= (ca.not_valid_after_utc - ca.not_valid_before_utc).days <= 1825
    key = serialization.load_pem_private_key((folder / "nomad-agent-ca-key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key() == ca.public_key()
    assert stat.S_IMODE(os.stat(folder / "nomad-agent-ca-key.pem").st_mode) == 0o600


def test_ca_create_options(folder: Path) -> None:
    """-domain names the files; -common-name and -days are used; -name-constraint
    permits only the domain, localhost and -additional-domain."""
    assert run_tls_command(["ca", "create", "-domain", "shoal", "-common-name", "Test CA",
                            "-days=10", "-name-constraint", "-additional-domain", "example.com"]) == 0
    ca = load(folder / "shoal-agent-ca.pem")
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test CA"
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == 10
    permitted = ca.extensions.get_extension_for_class(x509.NameConstraints).value.permitted_subtrees
    assert [name.value for name in permitted or []] == ["shoal", "localhost", "example.com"]
    assert (folder / "shoal-agent-ca-key.pem").exists()


@pytest.mark.parametrize("kind, dns, ips, server_auth", [
    ("server", ["server.global.nomad", "localhost"], ["127.0.0.1"], True),
    ("client", ["client.global.nomad", "localhost"], ["127.0.0.1"], True),
    ("cli", ["cli.global.nomad", "localhost"], [], False),
])
def test_cert_create_kinds(folder: Path, capsys: pytest.CaptureFixture[str], kind: str,
                           dns: list[str], ips: list[str], server_auth: bool) -> None:
    """Each kind gets nomad's file names, names and usages, signed by the CA."""
    run_tls_command(["ca", "create"])
    capsys.readouterr()
    assert run_tls_command(["cert", "create", f"-{kind}"]) == 0
    title = {"server": "Server", "client": "Client", "cli": "Cli"}[kind]
    assert capsys.readouterr().out == (
        "==> Using CA file nomad-agent-ca.pem and CA key nomad-agent-ca-key.pem\n"
        f"==> {title} Certificate saved to global-{kind}-nomad.pem\n"
        f"==> {title} Certificate key saved to global-{kind}-nomad-key.pem\n")
    cert = load(folder / f"global-{kind}-nomad.pem")
    cert.verify_directly_issued_by(load(folder / "nomad-agent-ca.pem"))
    assert sans(cert) == (dns, ips)
    expected = {ExtendedKeyUsageOID.CLIENT_AUTH} | ({ExtendedKeyUsageOID.SERVER_AUTH} if server_auth else set())
    assert usages(cert) == expected
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == dns[0]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key((folder / f"global-{kind}-nomad-key.pem").read_bytes(), None)
    assert key.public_key() == cert.public_key()
    assert stat.S_IMODE(os.stat(folder / f"global-{kind}-nomad-key.pem").st_mode) == 0o600


def test_cert_create_options(folder: Path) -> None:
    """-region, -domain, -ca/-key, extra names and IPs, and -days shape the certificate."""
    run_tls_command(["ca", "create", "-domain", "corp"])
    os.rename("corp-agent-ca.pem", "my-ca.pem")
    os.rename("corp-agent-ca-key.pem", "my-ca-key.pem")
    assert run_tls_command(["cert", "create", "-server", "-region", "eu", "-domain", "corp",
                            "-ca", "my-ca.pem", "-key=my-ca-key.pem", "-days", "30",
                            "-additional-dnsname", "node1.example", "-additional-dnsname=n2",
                            "-additional-ipaddress", "10.1.2.3",
                            "-additional-ipaddress", "::1"]) == 0
    cert = load(folder / "eu-server-corp.pem")
    assert sans(cert) == (["server.eu.corp", "localhost", "node1.example", "n2"],
                          ["127.0.0.1", "10.1.2.3", "::1"])
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert run_tls_command(["cert", "create", "-client", "-cluster-region", "us", "-domain", "corp",
                            "-ca", "my-ca.pem", "-key", "my-ca-key.pem"]) == 0
    assert sans(load(folder / "us-client-corp.pem"))[0][0] == "client.us.corp"


def test_refuses_to_overwrite(folder: Path) -> None:
    """An existing output file stops the command and nothing is changed."""
    run_tls_command(["ca", "create"])
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(CommandError, match="nomad-agent-ca.pem already exists"):
        run_tls_command(["ca", "create"])
    run_tls_command(["cert", "create", "-server"])
    server = (folder / "global-server-nomad.pem").read_bytes()
    (folder / "global-server-nomad.pem").unlink()
    with pytest.raises(CommandError, match="global-server-nomad-key.pem already exists"):
        run_tls_command(["cert", "create", "-server"])
    assert not (folder / "global-server-nomad.pem").exists()
    assert {k: (folder / k).read_bytes() for k in before} == before
    assert server  # the first run wrote a certificate


def test_bad_input_writes_nothing(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing kind, two kinds, bad values, a missing CA and a key of another CA fail
    with one line and exit 1 (through `shoal`), writing nothing."""
    assert main(["tls", "cert", "create", "-server"]) == 1
    assert "Error reading CA: nomad-agent-ca.pem" in capsys.readouterr().err
    run_tls_command(["ca", "create"])
    run_tls_command(["ca", "create", "-domain", "other"])
    files = sorted(p.name for p in folder.iterdir())
    bad = [
        (["cert", "create"], "Please provide either -server, -client, or -cli"),
        (["cert", "create", "-server", "-cli"], "Please provide either -server, -client, or -cli"),
        (["cert", "create", "-server", "-days", "0"], "invalid -days"),
        (["cert", "create", "-server", "-days", "x"], "invalid -days"),
        (["cert", "create", "-server", "-additional-ipaddress", "1.2.3"], "not an IP address"),
        (["cert", "create", "-server", "-additional-dnsname", "a b"], "expected a DNS name"),
        (["cert", "create", "-server", "-key", "other-agent-ca-key.pem"], "does not match the CA"),
        (["cert", "create", "-server", "-ca", "nomad-agent-ca-key.pem"], "is not a PEM certificate"),
        (["cert", "create", "-server", "-bogus"], "unrecognized arguments"),
        (["ca", "create", "-domain", ""], "invalid -domain"),
        (["ca", "delete"], "unknown tls subcommand"),
    ]
    for argv, message in bad:
        assert main(["tls", *argv]) == 1, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
    assert sorted(p.name for p in folder.iterdir()) == files


def test_profile_table() -> None:
    """The pure profile: names de-duplicated in order, file prefix, unknown kind refused."""
    profile = cert_profile("server", region="global", domain="nomad",
                           additional_dns=["localhost", "a"], additional_ips=["127.0.0.1"])
    assert profile.dns_names == ("server.global.nomad", "localhost", "a")
    assert profile.ip_addresses == ("127.0.0.1",)
    assert profile.prefix == "global-server-nomad"
    assert all(ipaddress.ip_address(ip) for ip in profile.ip_addresses)
    with pytest.raises(UsageError):
        cert_profile("agent", region="global", domain="nomad")
