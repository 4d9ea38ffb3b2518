"""The ``config`` object of ``GET /v1/agent/self``: the agent configuration with Go names.

agent-api.md section 3.3.1. Nomad serialises its agent ``Config`` struct as it stands
after defaults, config files and flags are merged and addresses are normalised; this
module writes the same object from an ``AgentConfig``:

* keys in Go struct declaration order (Nomad 1.9.7, ``command/agent/config.go`` and
  ``nomad/structs/config/*.go``); fields tagged ``json:"-"`` (the HCL duration strings,
  ``Server.EncryptKey``, ``Server.ProtocolVersion``, ``TLSConfig.KeyLoader``) are absent;
* ``time.Duration`` fields are integer nanoseconds; the fields Nomad keeps as strings
  in the agent config (``Server.NodeGCThreshold`` and the other GC settings,
  ``Client.MaxKillTimeout``, ``Telemetry.CollectionInterval``) stay strings, ``""``
  when unset, as Nomad shows them (the server applies its own defaults later);
* optional pointers Nomad leaves nil are ``null``. shoal's settings have no "unset"
  state, so a setting still at shoal's default counts as unset where Nomad's field is
  a pointer (``RaftMultiplier``, ``NumSchedulers``, ``RaftSnapshotThreshold``,
  ``RaftTrailingLogs``, ``EnabledSchedulers``), and ``NodeName`` is ``""`` while the
  name is the host name (Nomad fills the host name in later, inside the server);
* non-empty secrets become ``"<redacted>"``: ``ACL.ReplicationToken``,
  ``Telemetry.CirconusAPIToken``, every ``Consuls[].Token`` and ``Vaults[].Token``;
* blocks shoal does not implement (Consul, Vault, UI, Telemetry sinks, Audit, ...)
  carry Nomad's defaults, so clients that read them find the shapes they expect.

Whole-number floats (``GCDiskUsageThreshold``) are written as Go writes them, ``80``.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__, revision

if TYPE_CHECKING:
    from ..config import AgentConfig

__all__ = ["go_config", "REDACTED", "nanoseconds", "join_host_port"]

REDACTED = "<redacted>"
_NS = 1_000_000_000
_MINUTE = 60 * _NS
_DEFAULT_SCHEDULERS = ("service", "batch", "system", "sysbatch", "_core")
_DEFAULT_SNAPSHOT_THRESHOLD = 8192
_DEFAULT_TRAILING_LOGS = 10240
_JOB_DEFAULT_TRACKED_VERSIONS = 6


def nanoseconds(seconds: float) -> int:
    """A duration in seconds as Go's ``time.Duration`` integer (nanoseconds)."""
    return int(round(seconds * _NS))


def join_host_port(host: str, port: int) -> str:
    """Go's ``net.JoinHostPort``: IPv6 literals get brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redact(secret: str) -> str:
    return REDACTED if secret else ""


@functools.lru_cache(maxsize=16)
def go_config(config: AgentConfig) -> dict[str, Any]:
    """The ``config`` object of ``/v1/agent/self`` for ``config`` (see the module docstring).

    ``AgentConfig`` is frozen, so the document is built once per config and shared:
    callers must not modify it.
    """
    headers = dict(config.http_api_response_headers)
    return {
        "Region": config.region,
        "Datacenter": config.datacenter,
        "NodeName": "" if config.node == socket.gethostname() else config.node,
        "DataDir": config.data_dir,
        # Nomad's readConfig puts plugins under the data dir when plugin_dir is unset.
        "PluginDir": os.path.join(config.data_dir, "plugins"),
        "LogLevel": config.log_level,
        "LogJson": config.log_json,
        "LogFile": "",
        "LogIncludeLocation": False,
        "LogRotateDuration": "",
        "LogRotateBytes": 0,
        "LogRotateMaxFiles": 0,
        "BindAddr": config.bind,
        "EnableDebug": config.enable_debug,
        "Ports": {"HTTP": config.http_port, "RPC": config.rpc_port, "Serf": config.serf_port},
        "Addresses": addresses(config),
        "AdvertiseAddrs": advertise_addrs(config),
        "Client": client_block(config),
        "Server": server_block(config),
        "ACL": acl_block(config),
        "Telemetry": telemetry_block(config),
        "LeaveOnInt": config.leave_on_interrupt,
        "LeaveOnTerm": config.leave_on_terminate,
        "EnableSyslog": False,
        "SyslogFacility": "LOCAL0",
        "DisableUpdateCheck": False,
        "DisableAnonymousSignature": config.dev,
        "Consuls": [consul_block(config)],
        "Vaults": [vault_block()],
        "UI": ui_block(),
        "DevMode": config.dev,
        "Version": version_block(),
        "Files": list(config.config_files) or None,
        "TLSConfig": tls_block(config),
        "HTTPAPIResponseHeaders": headers,
        "Sentinel": {"Imports": None},
        "Autopilot": {"CleanupDeadServers": None,
                      "ServerStabilizationTime": 10 * _NS,
                      "LastContactThreshold": nanoseconds(0.2),
                      "MaxTrailingLogs": 250, "MinQuorum": 0,
                      "EnableRedundancyZones": None, "DisableUpgradeMigration": None,
                      "EnableCustomUpgrades": None},
        "Plugins": None,
        "Limits": {"HTTPSHandshakeTimeout": "5s", "HTTPMaxConnsPerClient": 100,
                   "RPCHandshakeTimeout": "5s", "RPCMaxConnsPerClient": 100},
        "Audit": {"Enabled": None, "Sinks": None, "Filters": None},
        "Reporting": {"ExportAddress": "", "ExportInterval": 0, "License": {"Enabled": None}},
        "KEKProviders": [],
    }


def addresses(config: AgentConfig) -> dict[str, str]:
    """Bind IPs per service, each defaulting to ``BindAddr`` (HTTP may list several)."""
    return {"HTTP": config.http_bind or config.bind,
            "RPC": config.rpc_bind or config.bind,
            "Serf": config.serf_bind or config.bind}


def advertise_addrs(config: AgentConfig) -> dict[str, str]:
    """``ip:port`` per service; ``Serf`` stays ``""`` on a client-only agent (Nomad skips it)."""
    http = config.advertise_http or join_host_port(config.advertise, config.http_port)
    if not _has_port(http):
        http = join_host_port(http, config.http_port)
    return {"HTTP": http,
            "RPC": join_host_port(config.advertise, config.rpc_port),
            "Serf": join_host_port(config.advertise, config.serf_port) if config.is_server else ""}


def _has_port(address: str) -> bool:
    if address.startswith("["):
        return "]:" in address
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return ":" in address
    return False


def _server_join(config: AgentConfig, *, start: list[str] | None, retry: list[str]) -> dict[str, Any]:
    return {"StartJoin": start, "RetryJoin": retry, "RetryMaxAttempts": config.retry_max,
            "RetryInterval": nanoseconds(config.retry_interval)}


def server_block(config: AgentConfig) -> dict[str, Any]:
    """``Server`` (Nomad's ``ServerConfig``): shoal's settings, Nomad's defaults for the rest."""
    gc_strings = ("NodeGCThreshold", "JobGCInterval", "JobGCThreshold", "EvalGCThreshold",
                  "BatchEvalGCThreshold", "DeploymentGCThreshold", "CSIVolumeClaimGCInterval",
                  "CSIVolumeClaimGCThreshold", "CSIPluginGCThreshold", "ACLTokenGCThreshold",
                  "RootKeyGCInterval", "RootKeyGCThreshold", "RootKeyRotationThreshold")
    block: dict[str, Any] = {
        "Enabled": config.is_server,
        "AuthoritativeRegion": "",
        "BootstrapExpect": config.bootstrap_expect,
        "DataDir": "",
        "RaftProtocol": config.raft_protocol,
        "RaftMultiplier": None if config.raft_multiplier == 1 else config.raft_multiplier,
        "NumSchedulers": (None if config.num_schedulers in (-1, os.cpu_count() or 1)
                          else config.num_schedulers),
        "EnabledSchedulers": (None if tuple(config.enabled_schedulers) == _DEFAULT_SCHEDULERS
                              else list(config.enabled_schedulers)),
    }
    block.update({name: "" for name in gc_strings})
    block.update({
        "HeartbeatGrace": 0, "MinHeartbeatTTL": 0, "MaxHeartbeatsPerSecond": 0,
        "FailoverHeartbeatTTL": 0,
        "StartJoin": list(config.join), "RetryJoin": list(config.retry_join),
        "RetryMaxAttempts": config.retry_max,
        "RetryInterval": nanoseconds(config.retry_interval),
        "RejoinAfterLeave": False, "NonVotingServer": False, "RedundancyZone": "",
        "UpgradeVersion": "",
        "ServerJoin": _server_join(config, start=list(config.join), retry=list(config.retry_join)),
        "DefaultSchedulerConfig": None,
        "PlanRejectionTracker": {"Enabled": False, "NodeThreshold": 100, "NodeWindow": 5 * _MINUTE},
        "EnableEventBroker": True, "EventBufferSize": 100,
        "LicensePath": "", "LicenseEnv": "",
        "Search": {"FuzzyEnabled": True, "LimitQuery": 20, "LimitResults": 100, "MinTermLength": 2},
        "DeploymentQueryRateLimit": 0,
        "RaftBoltConfig": None,
        "RaftSnapshotThreshold": (None if config.raft_snapshot_threshold == _DEFAULT_SNAPSHOT_THRESHOLD
                                  else config.raft_snapshot_threshold),
        "RaftSnapshotInterval": None,
        "RaftTrailingLogs": (None if config.raft_trailing_logs == _DEFAULT_TRAILING_LOGS
                             else config.raft_trailing_logs),
        "JobDefaultPriority": None, "JobMaxPriority": None, "JobMaxSourceSize": "1M",
        "JobTrackedVersions": _JOB_DEFAULT_TRACKED_VERSIONS, "OIDCIssuer": "",
    })
    return block


def client_block(config: AgentConfig) -> dict[str, Any]:
    """``Client`` (Nomad's ``ClientConfig``, 48 keys); ``-dev`` uses Nomad's dev GC values."""
    dev = config.dev
    return {
        "Enabled": config.is_client, "StateDir": "", "AllocDir": "", "AllocMountsDir": "",
        "Servers": list(config.servers) or None, "NodeClass": config.node_class,
        "NodePool": "default", "Options": {}, "Meta": dict(config.meta), "ChrootEnv": {},
        "NetworkInterface": "", "PreferredAddressFamily": "", "NetworkSpeed": 0,
        "CpuCompute": config.cpu_total_compute, "CpuDisableDmidecode": False,
        "MemoryMB": config.memory_total_mb, "DiskTotalMB": 0, "DiskFreeMB": 0,
        "ReservableCores": "", "MaxKillTimeout": "30s",
        "ClientMaxPort": 14512, "ClientMinPort": 14000,
        "MaxDynamicPort": 32000, "MinDynamicPort": 20000,
        "Reserved": {"CPU": 0, "MemoryMB": 0, "DiskMB": 0, "ReservedPorts": "", "Cores": ""},
        "GCInterval": 10 * _MINUTE if dev else _MINUTE,
        "GCParallelDestroys": 2,
        "GCDiskUsageThreshold": 99 if dev else 80,
        "GCInodeUsageThreshold": 99 if dev else 70,
        "GCMaxAllocs": 50, "NoHostUUID": True, "DisableRemoteExec": False,
        "TemplateConfig": _template_config(),
        "ServerJoin": {"StartJoin": None, "RetryJoin": [], "RetryMaxAttempts": 0,
                       "RetryInterval": 30 * _NS},
        "HostVolumes": None, "CNIPath": "/opt/cni/bin", "CNIConfigDir": "/opt/cni/config",
        "BridgeNetworkName": "", "BridgeNetworkSubnet": "", "BridgeNetworkSubnetIPv6": "",
        "BridgeNetworkHairpinMode": False, "HostNetworks": None,
        "BindWildcardDefaultHostNetwork": True, "CgroupParent": "",
        "NomadServiceDiscovery": True,
        "Artifact": {"HTTPReadTimeout": "30m", "HTTPMaxSize": "100GB", "GCSTimeout": "30m",
                     "GitTimeout": "30m", "HgTimeout": "30m", "S3Timeout": "30m",
                     "DecompressionLimitFileCount": 4096, "DecompressionLimitSize": "100GB",
                     "DisableFilesystemIsolation": False, "FilesystemIsolationExtraPaths": None,
                     "SetEnvironmentVariables": ""},
        "Drain": None,
        "Users": {"MinDynamicUser": 80000, "MaxDynamicUser": 89999},
    }


def _template_config() -> dict[str, Any]:
    """Nomad's ``client.DefaultTemplateConfig()``."""
    retry = {"Attempts": 0, "Backoff": nanoseconds(0.25), "MaxBackoff": _MINUTE}
    return {"FunctionDenylist": ["plugin", "writeToFile"], "DisableSandbox": False,
            "MaxStale": 87600 * 60 * _MINUTE, "BlockQueryWaitTime": 5 * _MINUTE,
            "Wait": {"Min": 5 * _NS, "Max": 4 * _MINUTE}, "WaitBounds": None,
            "ConsulRetry": dict(retry), "VaultRetry": dict(retry), "NomadRetry": dict(retry)}


def acl_block(config: AgentConfig) -> dict[str, Any]:
    """``ACL``: TTLs in nanoseconds; the replication token redacted when set."""
    return {
        "Enabled": config.acl_enabled,
        "TokenTTL": nanoseconds(config.acl_token_ttl),
        "PolicyTTL": nanoseconds(config.acl_policy_ttl),
        "RoleTTL": nanoseconds(config.acl_role_ttl),
        "ReplicationToken": _redact(getattr(config, "acl_replication_token", "")),
        "TokenMinExpirationTTL": nanoseconds(getattr(config, "acl_token_min_expiration_ttl", 0.0)),
        "TokenMaxExpirationTTL": nanoseconds(getattr(config, "acl_token_max_expiration_ttl", 0.0)),
    }


def telemetry_block(config: AgentConfig) -> dict[str, Any]:
    """``Telemetry`` with Nomad's defaults (``-dev`` turns on the metrics it turns on)."""
    dev = config.dev
    block: dict[str, Any] = {
        "InMemoryCollectionInterval": "10s", "InMemoryRetentionPeriod": "1m",
        "StatsiteAddr": "", "StatsdAddr": "", "DataDogAddr": "", "DataDogTags": None,
        "PrometheusMetrics": dev, "DisableHostname": False, "UseNodeName": False,
        "CollectionInterval": "1s", "PublishAllocationMetrics": dev, "PublishNodeMetrics": dev,
        "IncludeAllocMetadataInMetrics": dev, "AllowedMetadataKeysInMetrics": [] if dev else None,
        "PrefixFilter": None, "FilterDefault": None,
        "DisableDispatchedJobSummaryMetrics": False, "DisableQuotaUtilizationMetrics": False,
        "DisableRPCRateMetricsLabels": False,
        "CirconusAPIToken": _redact(getattr(config, "telemetry_circonus_api_token", "")),
    }
    for name in ("CirconusAPIApp", "CirconusAPIURL", "CirconusSubmissionInterval",
                 "CirconusCheckSubmissionURL", "CirconusCheckID",
                 "CirconusCheckForceMetricActivation", "CirconusCheckInstanceID",
                 "CirconusCheckSearchTag", "CirconusCheckTags", "CirconusCheckDisplayName",
                 "CirconusBrokerID", "CirconusBrokerSelectTag"):
        block[name] = ""
    return block


def consul_block(config: AgentConfig) -> dict[str, Any]:
    """The default entry of ``Consuls`` (shoal talks to no Consul; ``Token`` is empty)."""
    return {
        "Name": "default", "ServerServiceName": "nomad",
        "ServerHTTPCheckName": "Nomad Server HTTP Check",
        "ServerSerfCheckName": "Nomad Server Serf Check",
        "ServerRPCCheckName": "Nomad Server RPC Check",
        "ClientServiceName": "nomad-client", "ClientHTTPCheckName": "Nomad Client HTTP Check",
        "Tags": None, "AutoAdvertise": True, "ChecksUseAdvertise": False,
        "Addr": "127.0.0.1:8500", "GRPCAddr": "", "Timeout": 5 * _NS, "Token": _redact(""),
        "AllowUnauthenticated": True, "Auth": "", "EnableSSL": False, "ShareSSL": None,
        "VerifySSL": True, "GRPCCAFile": "", "CAFile": "", "CertFile": "", "KeyFile": "",
        "ServerAutoJoin": True, "ClientAutoJoin": True, "Namespace": "",
        "ServiceIdentity": None, "ServiceIdentityAuthMethod": "nomad-workloads",
        "TaskIdentity": None, "TaskIdentityAuthMethod": "nomad-workloads",
    }


def vault_block() -> dict[str, Any]:
    """The default entry of ``Vaults`` (disabled; ``Token`` is empty)."""
    return {
        "Name": "default", "Enabled": None, "Token": _redact(""), "Role": "", "Namespace": "",
        "AllowUnauthenticated": True, "TaskTokenTTL": "",
        "Addr": "https://vault.service.consul:8200", "JWTAuthBackendPath": "jwt-nomad",
        "ConnectionRetryIntv": 30 * _NS, "TLSCaFile": "", "TLSCaPath": "", "TLSCertFile": "",
        "TLSKeyFile": "", "TLSSkipVerify": None, "TLSServerName": "", "DefaultIdentity": None,
    }


def ui_block() -> dict[str, Any]:
    """Nomad's ``DefaultUIConfig()``: no Consul/Vault links, no label."""
    return {
        "Enabled": True,
        "ContentSecurityPolicy": {"ConnectSrc": ["*"], "DefaultSrc": ["'none'"],
                                  "FormAction": ["'none'"], "FrameAncestors": ["'none'"],
                                  "ImgSrc": ["'self'", "data:"], "ScriptSrc": ["'self'"],
                                  "StyleSrc": ["'self'", "'unsafe-inline'"]},
        "Consul": {"BaseUIURL": ""}, "Vault": {"BaseUIURL": ""},
        "Label": {"Text": "", "BackgroundColor": "", "TextColor": ""},
        "ShowCLIHints": True,
    }


def tls_block(config: AgentConfig) -> dict[str, Any]:
    """``TLSConfig`` with Nomad's field names (``KeyLoader`` is not serialised)."""
    return {
        "EnableHTTP": config.tls_http, "EnableRPC": config.tls_rpc,
        "VerifyServerHostname": config.tls_verify_server_hostname,
        "CAFile": config.tls_ca_file, "CertFile": config.tls_cert_file,
        "KeyFile": config.tls_key_file, "RPCUpgradeMode": False,
        "VerifyHTTPSClient": config.tls_verify_https_client,
        "TLSCipherSuites": "", "TLSMinVersion": "", "TLSPreferServerCipherSuites": False,
    }


@functools.lru_cache(maxsize=1)
def version_block() -> dict[str, str]:
    """``Version``: shoal's version and git revision; the build date is when the package
    files were written (Nomad stamps it at compile time), RFC 3339 in UTC."""
    stamp = datetime.datetime.fromtimestamp(Path(__file__).resolve().parent.parent.joinpath(
        "__init__.py").stat().st_mtime, datetime.timezone.utc).replace(microsecond=0)
    return {"BuildDate": stamp.isoformat().replace("+00:00", "Z"), "Revision": revision(),
            "Version": __version__, "VersionPrerelease": "", "VersionMetadata": ""}
