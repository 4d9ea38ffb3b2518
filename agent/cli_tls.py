"""`shoal tls ca create` and `shoal tls cert create`: a private CA and agent certificates.

Like ``nomad tls`` (``command/tls_ca_create.go``, ``tls_cert_create.go``), with the
``cryptography`` package and ECDSA P-256 keys:

* ``shoal tls ca create [-days 1825] [-domain nomad] [-common-name NAME]
  [-name-constraint] [-additional-domain D]...`` writes ``<domain>-agent-ca.pem`` and
  ``<domain>-agent-ca-key.pem`` in the current folder.
* ``shoal tls cert create -server|-client|-cli [-region global] [-domain nomad]
  [-ca FILE] [-key FILE] [-additional-dnsname N]... [-additional-ipaddress IP]...
  [-days 365]`` signs a certificate with that CA and writes
  ``<region>-<kind>-<domain>.pem`` and ``<region>-<kind>-<domain>-key.pem``.

What each kind of certificate holds (the names Nomad checks with
``verify_server_hostname``):

| kind | DNS names | IPs | extended key usage |
| --- | --- | --- | --- |
| server | ``server.<region>.<domain>``, ``localhost`` | 127.0.0.1 | server + client auth |
| client | ``client.<region>.<domain>``, ``localhost`` | 127.0.0.1 | server + client auth |
| cli | ``cli.<region>.<domain>``, ``localhost`` | | client auth |

An existing output file is never overwritten: the command fails naming it and writes
nothing. Keys are written with mode 0600. The certificate contents are decided by pure
functions (``cert_profile``, ``build_ca``, ``build_cert``) that tests call directly.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .cli import CommandError, _parse
from .config import UsageError, _Parser, normalise_flags

__all__ = ["CertProfile", "build_ca", "build_cert", "cert_profile", "run_tls_command"]

CA_DAYS = 1825
CERT_DAYS = 365
_BACKDATE = datetime.timedelta(minutes=1)
"""Certificates start a minute in the past, so a peer's slightly slow clock accepts them."""

USAGE = """Usage: shoal tls <subcommand> [options]

    shoal tls ca create [-days 1825] [-domain nomad] [-common-name NAME]
                        [-name-constraint] [-additional-domain DOMAIN]...
    shoal tls cert create -server|-client|-cli [-region global] [-domain nomad]
                        [-ca FILE] [-key FILE] [-days 365]
                        [-additional-dnsname NAME]... [-additional-ipaddress IP]...
"""


@dataclass(frozen=True)
class CertProfile:
    """What a ``tls cert create`` certificate holds and where it is written."""

    kind: str                                # "server" | "client" | "cli"
    common_name: str                         # <kind>.<region>.<domain>
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    server_auth: bool                        # extended key usage serverAuth (clientAuth always)
    prefix: str                              # <region>-<kind>-<domain>: files <prefix>.pem, <prefix>-key.pem


def cert_profile(kind: str, *, region: str, domain: str, additional_dns: Sequence[str] = (),
                 additional_ips: Sequence[str] = ()) -> CertProfile:
    """The names, usages and file prefix of a certificate of ``kind``, as ``nomad tls``."""
    if kind not in ("server", "client", "cli"):
        raise UsageError("Please provide either -server, -client, or -cli")
    name = f"{kind}.{region}.{domain}"
    dns = [name, "localhost", *additional_dns]
    ips = [] if kind == "cli" else ["127.0.0.1"]
    ips += list(additional_ips)
    return CertProfile(kind=kind, common_name=name, dns_names=tuple(dict.fromkeys(dns)),
                       ip_addresses=tuple(dict.fromkeys(ips)), server_auth=kind != "cli",
                       prefix=f"{region}-{kind}-{domain}")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def build_ca(*, common_name: str, domain: str, days: int, now: datetime.datetime,
             name_constraint: bool = False, additional_domains: Sequence[str] = ()
             ) -> tuple[bytes, bytes]:
    """A self-signed CA certificate and its key, both PEM.

    With ``name_constraint`` the CA may only sign names under ``domain``,
    ``localhost`` and ``additional_domains`` (RFC 5280 permitted subtrees).
    """
    key = _new_key()
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "San Francisco"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HashiCorp Inc."),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    public = key.public_key()
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(subject).public_key(public)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - _BACKDATE)
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                              critical=False))
    if name_constraint:
        permitted = [x509.DNSName(name) for name in dict.fromkeys([domain, "localhost",
                                                                    *additional_domains])]
        builder = builder.add_extension(x509.NameConstraints(permitted_subtrees=permitted,
                                                             excluded_subtrees=None), critical=True)
    certificate = builder.sign(key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def load_ca(cert_pem: bytes, key_pem: bytes, *, cert_path: str = "CA certificate",
            key_path: str = "CA key") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Parse a CA pair; CommandError when either is not PEM or they do not belong together."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise CommandError(f"Error reading CA: {cert_path} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CommandError(f"Error reading CA key: {key_path} is not an unencrypted PEM "
                           f"private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
        raise CommandError(f"Error reading CA key: {key_path} does not match the CA "
                           f"certificate {cert_path}")
    return certificate, key


def build_cert(profile: CertProfile, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
               *, days: int, now: datetime.datetime) -> tuple[bytes, bytes]:
    """A certificate for ``profile`` signed by the CA, and its new key, both PEM."""
    key = _new_key()
    public = key.public_key()
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in profile.dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in profile.ip_addresses]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if profile.server_auth else []
    usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    certificate = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                               profile.common_name)]))
                   .issuer_name(ca_cert.subject).public_key(public)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - _BACKDATE)
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=True, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False,
                                                crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                   .add_extension(authority, critical=False)
                   .sign(ca_key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key)


# ------------------------------------------------------------------ the commands


def run_tls_command(argv: Sequence[str]) -> int:
    """``shoal tls ca create`` / ``shoal tls cert create``; returns the exit status."""
    if len(argv) < 2 or argv[0] in ("-h", "-help", "--help"):
        print(USAGE, end="")
        return 0 if argv and argv[0] in ("-h", "-help", "--help") else 1
    noun, verb, rest = argv[0], argv[1], argv[2:]
    if (noun, verb) == ("ca", "create"):
        return ca_create(rest)
    if (noun, verb) == ("cert", "create"):
        return cert_create(rest)
    raise UsageError(f"unknown tls subcommand {' '.join(argv[:2])!r}\n{USAGE}")


def _days(text: str) -> int:
    if not text.isdigit() or int(text) == 0 or int(text) > 36500:
        raise UsageError(f"invalid -days {text!r}: a whole number of days from 1 to 36500")
    return int(text)


def _name(flag: str, text: str) -> str:
    """A DNS name or label: non-empty, letters, digits, '-', '.', '*' only."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.*")
    if not text or not set(text) <= allowed or text.startswith(".") or text.endswith("."):
        raise UsageError(f"invalid -{flag} {text!r}: expected a DNS name")
    return text


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise UsageError(f"invalid -additional-ipaddress {text!r}: not an IP address") from None


def _refuse_existing(*paths: str) -> None:
    for path in paths:
        if os.path.lexists(path):
            raise CommandError(f"{path} already exists.")


def _write(path: str, data: bytes, mode: int) -> None:
    """Create ``path`` (never replacing a file) with ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_pair(cert_path: str, cert: bytes, key_path: str, key: bytes) -> None:
    _refuse_existing(cert_path, key_path)
    try:
        _write(cert_path, cert, 0o644)
    except OSError as exc:
        raise CommandError(f"Error writing {cert_path}: {exc.strerror or exc}") from None
    try:
        _write(key_path, key, 0o600)
    except OSError as exc:
        os.unlink(cert_path)   # both or neither
        raise CommandError(f"Error writing {key_path}: {exc.strerror or exc}") from None


def _ca_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shoal tls ca create", add_help=False)
    parser.add_argument("--days", default=str(CA_DAYS))
    parser.add_argument("--domain", default="nomad")
    parser.add_argument("--common-name", default="")
    parser.add_argument("--name-constraint", action="store_true")
    parser.add_argument("--additional-domain", action="append", default=[])
    return parser


def ca_create(argv: Sequence[str]) -> int:
    """Write ``<domain>-agent-ca.pem`` and ``<domain>-agent-ca-key.pem`` in the current folder."""
    args = _parse(_ca_parser(), argv)
    domain = _name("domain", args.domain)
    days = _days(args.days)
    extra = [_name("additional-domain", d) for d in args.additional_domain]
    common_name = args.common_name or f"Nomad Agent CA {x509.random_serial_number()}"
    cert_path, key_path = f"{domain}-agent-ca.pem", f"{domain}-agent-ca-key.pem"
    _refuse_existing(cert_path, key_path)
    cert, key = build_ca(common_name=common_name, domain=domain, days=days,
                         now=datetime.datetime.now(datetime.timezone.utc),
                         name_constraint=args.name_constraint, additional_domains=extra)
    _write_pair(cert_path, cert, key_path, key)
    print(f"==> CA certificate saved to: {cert_path}")
    print(f"==> CA certificate key saved to: {key_path}")
    return 0


def _cert_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="shoal tls cert create", add_help=False)
    for kind in ("server", "client", "cli"):
        parser.add_argument(f"--{kind}", action="store_true")
    parser.add_argument("--region", "--cluster-region", dest="region", default="global")
    parser.add_argument("--domain", default="nomad")
    parser.add_argument("--ca", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--days", default=str(CERT_DAYS))
    parser.add_argument("--additional-dnsname", action="append", default=[])
    parser.add_argument("--additional-ipaddress", action="append", default=[])
    return parser


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CommandError(f"Error reading {what}: {path}: {exc.strerror or exc}") from None


def cert_create(argv: Sequence[str]) -> int:
    """Sign a server, client or cli certificate with the CA; write it and its key."""
    parser = _cert_parser()
    longs = [option[2:] for action in parser._actions for option in action.option_strings]
    args = parser.parse_args(normalise_flags(argv, longs))
    kinds = [kind for kind in ("server", "client", "cli") if getattr(args, kind)]
    if len(kinds) != 1:
        raise UsageError("Please provide either -server, -client, or -cli")
    domain = _name("domain", args.domain)
    profile = cert_profile(kinds[0], region=_name("region", args.region), domain=domain,
                           additional_dns=[_name("additional-dnsname", n) for n in args.additional_dnsname],
                           additional_ips=[_ip(ip) for ip in args.additional_ipaddress])
    days = _days(args.days)
    ca_path = args.ca or f"{domain}-agent-ca.pem"
    ca_key_path = args.key or f"{domain}-agent-ca-key.pem"
    cert_path, key_path = f"{profile.prefix}.pem", f"{profile.prefix}-key.pem"
    _refuse_existing(cert_path, key_path)
    ca_cert, ca_key = load_ca(_read_file(ca_path, "CA"), _read_file(ca_key_path, "CA key"),
                             cert_path=ca_path, key_path=ca_key_path)
    cert, key = build_cert(profile, ca_cert, ca_key, days=days,
                           now=datetime.datetime.now(datetime.timezone.utc))
    _write_pair(cert_path, cert, key_path, key)
    title = {"server": "Server", "client": "Client", "cli": "Cli"}[profile.kind]
    print(f"==> Using CA file {ca_path} and CA key {ca_key_path}")
    print(f"==> {title} Certificate saved to {cert_path}")
    print(f"==> {title} Certificate key saved to {key_path}")
    return 0
