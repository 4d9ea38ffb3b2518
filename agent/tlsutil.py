"""TLS for the agent's two listeners: HTTPS (hypercorn) and the rpc port (RPC + Raft).

Settings come from the ``tls { ... }`` block of the agent configuration
(``AgentConfig.tls_*``), with Nomad's meaning:

* ``http = true``: the HTTP API is served over HTTPS with ``cert_file``/``key_file``;
  with ``verify_https_client = true`` callers must present a certificate signed by
  ``ca_file``.
* ``rpc = true``: every rpc-port connection (RPC and Raft, between servers and from
  clients) is TLS. Both sides present their certificate and verify the other's against
  ``ca_file`` (mutual TLS), so a server holding a certificate from another CA can
  neither dial nor be dialled: it cannot join Raft. With ``verify_server_hostname =
  true`` the dialler also checks that the server's certificate names
  ``server.<region>.nomad``, and the rpc port only accepts Raft connections whose
  certificate carries that name (Nomad's ``validateRaftTLS``).

Every file is checked here, before any listener starts: a missing or unreadable file,
a file that is not PEM, or a key that does not belong to the certificate raises
``TLSConfigError`` with one line naming the setting and the file (the runtime turns it
into a ``StartupError``).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["HttpTLS", "RpcTLS", "TLSConfigError", "http_ssl_config", "rpc_client_context",
           "rpc_server_context", "rpc_server_name", "rpc_tls", "verify_peer_name"]

log = logging.getLogger(__name__)


class TLSConfigError(Exception):
    """The ``tls`` settings cannot be used (one line: which setting, which file, why)."""


@dataclass(frozen=True)
class HttpTLS:
    """What hypercorn's ``Config`` needs to serve HTTPS (its field names)."""

    certfile: str
    keyfile: str
    ca_certs: str | None
    """The CA that signs client certificates (None when ``ca_file`` is unset)."""
    verify_mode: ssl.VerifyMode
    """``CERT_REQUIRED`` with ``verify_https_client``, else ``CERT_NONE``."""


@dataclass(frozen=True)
class RpcTLS:
    """Everything the rpc port and its dialers need when ``tls.rpc`` is on."""

    server: ssl.SSLContext
    """Accepting side: presents our certificate, requires one signed by the CA."""
    client: ssl.SSLContext
    """Dialling side: presents our certificate, verifies the server against the CA."""
    server_name: str
    """``server.<region>.nomad``: sent as SNI, checked on the server's certificate when
    ``verify_server_hostname``, and required of Raft peers then."""
    verify_server_hostname: bool


def rpc_server_name(config: Any) -> str:
    """The name every server certificate of ``config.region`` carries, as Nomad's."""
    return f"server.{config.region}.nomad"


# ------------------------------------------------------------------ file checks


def _read(setting: str, path: str) -> bytes:
    if not path:
        raise TLSConfigError(f"Error loading TLS configuration: tls.{setting} is required")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise TLSConfigError(f"Error loading TLS configuration: cannot read tls.{setting} "
                             f"{path}: {exc.strerror or exc}") from None


def _check_ca(path: str) -> None:
    data = _read("ca_file", path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise TLSConfigError(f"Error loading TLS configuration: tls.ca_file {path} holds no "
                             "PEM certificate")


def _check_pair(cert_path: str, key_path: str) -> None:
    """The certificate and key files parse and the key is the certificate's own."""
    cert_data = _read("cert_file", cert_path)
    key_data = _read("key_file", key_path)
    try:
        certificate = x509.load_pem_x509_certificates(cert_data)[0]
    except (ValueError, IndexError):
        raise TLSConfigError(f"Error loading TLS configuration: tls.cert_file {cert_path} is not "
                             "a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as exc:
        raise TLSConfigError(f"Error loading TLS configuration: tls.key_file {key_path} is not "
                             f"an unencrypted PEM private key ({exc})") from None
    if key.public_key() != certificate.public_key():
        raise TLSConfigError(f"Error loading TLS configuration: tls.key_file {key_path} does not "
                             f"match the certificate in tls.cert_file {cert_path}")


def _load_chain(context: ssl.SSLContext, config: Any) -> None:
    try:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except (OSError, ssl.SSLError) as exc:  # checked already: only a race or an odd file gets here
        raise TLSConfigError(f"Error loading TLS configuration: tls.cert_file "
                             f"{config.tls_cert_file}: {exc}") from None


def _load_ca(context: ssl.SSLContext, config: Any) -> None:
    try:
        context.load_verify_locations(config.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"Error loading TLS configuration: tls.ca_file "
                             f"{config.tls_ca_file}: {exc}") from None


# ------------------------------------------------------------------ HTTPS


def http_ssl_config(config: Any) -> HttpTLS | None:
    """Hypercorn's TLS settings for ``tls.http`` (None when it is off).

    Raises:
        TLSConfigError: a file is missing, unreadable or not PEM, or the key does not
            match the certificate; or ``verify_https_client`` without ``ca_file``.
    """
    if not config.tls_http:
        return None
    _check_pair(config.tls_cert_file, config.tls_key_file)
    if config.tls_verify_https_client and not config.tls_ca_file:
        raise TLSConfigError("Error loading TLS configuration: tls.verify_https_client needs "
                             "tls.ca_file")
    if config.tls_ca_file:
        _check_ca(config.tls_ca_file)
    settings = HttpTLS(certfile=config.tls_cert_file, keyfile=config.tls_key_file,
                       ca_certs=config.tls_ca_file or None,
                       verify_mode=(ssl.CERT_REQUIRED if config.tls_verify_https_client
                                    else ssl.CERT_NONE))
    # Build a context once as hypercorn will, so any remaining error is a startup error.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(context, config)
    if settings.ca_certs:
        _load_ca(context, config)
    return settings


# ------------------------------------------------------------------ RPC


def _rpc_files(config: Any) -> None:
    _check_pair(config.tls_cert_file, config.tls_key_file)
    _check_ca(config.tls_ca_file)


def rpc_server_context(config: Any) -> ssl.SSLContext:
    """The accepting side of the rpc port under ``tls.rpc`` (mutual TLS).

    Raises:
        TLSConfigError: as ``http_ssl_config``; ``ca_file`` is required.
    """
    _rpc_files(config)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, config)
    _load_ca(context, config)
    context.verify_mode = ssl.CERT_REQUIRED   # every peer presents a certificate of the CA
    context.num_tickets = 0   # no resumption: raft diallers never read, tickets would sit unread
    return context


def rpc_client_context(config: Any) -> ssl.SSLContext:
    """The dialling side under ``tls.rpc``: our certificate out, the server's checked.

    The server's chain is always verified against ``ca_file``; its name
    (``server.<region>.nomad``) only with ``verify_server_hostname``, as in Nomad.

    Raises:
        TLSConfigError: as ``rpc_server_context``.
    """
    _rpc_files(config)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = bool(config.tls_verify_server_hostname)
    context.verify_mode = ssl.CERT_REQUIRED
    _load_chain(context, config)
    _load_ca(context, config)
    return context


def rpc_tls(config: Any) -> RpcTLS | None:
    """Both rpc contexts and the server name for ``tls.rpc`` (None when it is off)."""
    if not config.tls_rpc:
        return None
    return RpcTLS(server=rpc_server_context(config), client=rpc_client_context(config),
                  server_name=rpc_server_name(config),
                  verify_server_hostname=bool(config.tls_verify_server_hostname))


def verify_peer_name(peer_certificate: dict[str, Any] | None, name: str) -> bool:
    """Whether a verified peer certificate (``SSLObject.getpeercert()``) names ``name``.

    DNS subject alternative names are compared case-insensitively, with a leading
    ``*.`` wildcard matching one label; the common name counts only when the
    certificate has no DNS names (RFC 6125 6.4.4).
    """
    if not peer_certificate:
        return False
    wanted = name.lower()
    dns = [value.lower() for kind, value in peer_certificate.get("subjectAltName", ()) if kind == "DNS"]
    if not dns:
        dns = [value.lower() for rdn in peer_certificate.get("subject", ())
               for key, value in rdn if key == "commonName"]
    for candidate in dns:
        if candidate == wanted:
            return True
        if candidate.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == candidate[2:]:
            return True
    return False
