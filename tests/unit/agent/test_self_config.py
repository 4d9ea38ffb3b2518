"""The ``config`` object of /v1/agent/self: Go key order, nanoseconds, redaction, Files."""

from __future__ import annotations

from dataclasses import replace

from agent.config import parse_agent_args
from agent.http.self_config import REDACTED, go_config, join_host_port

TOP_LEVEL = ("Region, Datacenter, NodeName, DataDir, PluginDir, LogLevel, LogJson, LogFile, "
             "LogIncludeLocation, LogRotateDuration, LogRotateBytes, LogRotateMaxFiles, BindAddr, "
             "EnableDebug, Ports, Addresses, AdvertiseAddrs, Client, Server, ACL, Telemetry, "
             "LeaveOnInt, LeaveOnTerm, EnableSyslog, SyslogFacility, DisableUpdateCheck, "
             "DisableAnonymousSignature, Consuls, Vaults, UI, DevMode, Version, Files, TLSConfig, "
             "HTTPAPIResponseHeaders, Sentinel, Autopilot, Plugins, Limits, Audit, Reporting, "
             "KEKProviders").split(", ")
SERVER = ("Enabled, AuthoritativeRegion, BootstrapExpect, DataDir, RaftProtocol, RaftMultiplier, "
          "NumSchedulers, EnabledSchedulers, NodeGCThreshold, JobGCInterval, JobGCThreshold, "
          "EvalGCThreshold, BatchEvalGCThreshold, DeploymentGCThreshold, CSIVolumeClaimGCInterval, "
          "CSIVolumeClaimGCThreshold, CSIPluginGCThreshold, ACLTokenGCThreshold, RootKeyGCInterval, "
          "RootKeyGCThreshold, RootKeyRotationThreshold, HeartbeatGrace, MinHeartbeatTTL, "
          "MaxHeartbeatsPerSecond, FailoverHeartbeatTTL, StartJoin, RetryJoin, RetryMaxAttempts, "
          "RetryInterval, RejoinAfterLeave, NonVotingServer, RedundancyZone, UpgradeVersion, "
          "ServerJoin, DefaultSchedulerConfig, PlanRejectionTracker, EnableEventBroker, "
          "EventBufferSize, LicensePath, LicenseEnv, Search, DeploymentQueryRateLimit, "
          "RaftBoltConfig, RaftSnapshotThreshold, RaftSnapshotInterval, RaftTrailingLogs, "
          "JobDefaultPriority, JobMaxPriority, JobMaxSourceSize, JobTrackedVersions, "
          "OIDCIssuer").split(", ")


def config(*argv: str):
    return parse_agent_args(["-bind", "127.0.0.1", *argv])


def test_key_order_follows_nomad_structs() -> None:
    """Top level, Server and ACL keys come in Go declaration order; hidden fields are absent."""
    document = go_config(config("-server", "-node", "s1"))
    assert list(document) == TOP_LEVEL
    assert list(document["Server"]) == SERVER
    assert "EncryptKey" not in document["Server"] and "ProtocolVersion" not in document["Server"]
    assert list(document["ACL"]) == ["Enabled", "TokenTTL", "PolicyTTL", "RoleTTL", "ReplicationToken",
                                     "TokenMinExpirationTTL", "TokenMaxExpirationTTL"]
    assert list(document["Server"]["ServerJoin"]) == ["StartJoin", "RetryJoin", "RetryMaxAttempts",
                                                      "RetryInterval"]
    assert len(document["Client"]) == 48
    assert list(document["Version"]) == ["BuildDate", "Revision", "Version", "VersionPrerelease",
                                          "VersionMetadata"]
    assert list(document["TLSConfig"])[:6] == ["EnableHTTP", "EnableRPC", "VerifyServerHostname",
                                                "CAFile", "CertFile", "KeyFile"]


def test_durations_are_integer_nanoseconds() -> None:
    """time.Duration fields are ints in ns; Nomad's string-typed GC settings stay strings."""
    document = go_config(replace(config("-server", "-retry-interval", "1m30s"), acl_token_ttl=2.5))
    assert document["Server"]["RetryInterval"] == 90_000_000_000
    assert document["Server"]["ServerJoin"]["RetryInterval"] == 90_000_000_000
    assert document["ACL"]["TokenTTL"] == 2_500_000_000
    assert document["ACL"]["PolicyTTL"] == 30_000_000_000
    assert document["Client"]["GCInterval"] == 60_000_000_000
    assert document["Autopilot"]["LastContactThreshold"] == 200_000_000
    assert document["Server"]["NodeGCThreshold"] == ""
    assert all(isinstance(v, int) for v in (document["Server"]["RetryInterval"],
                                            document["ACL"]["RoleTTL"]))


def test_unset_pointers_are_null_and_set_values_show() -> None:
    """Settings at shoal's defaults stand for Nomad's nil pointers; changed ones are shown."""
    plain = go_config(config("-server"))["Server"]
    assert (plain["RaftMultiplier"], plain["NumSchedulers"], plain["EnabledSchedulers"],
            plain["RaftSnapshotThreshold"], plain["RaftTrailingLogs"]) == (None,) * 5
    tuned = go_config(config("-server", "-raft-multiplier", "3", "-num-schedulers", "0",
                             "-enabled-schedulers", "batch", "-raft-trailing-logs", "5"))["Server"]
    assert (tuned["RaftMultiplier"], tuned["NumSchedulers"], tuned["EnabledSchedulers"],
            tuned["RaftTrailingLogs"]) == (3, 0, ["batch", "_core"], 5)


def test_secrets_are_redacted_only_when_set() -> None:
    """A configured replication token shows as "<redacted>"; an empty one stays empty."""
    base = config("-server")
    assert go_config(base)["ACL"]["ReplicationToken"] == ""
    secret = replace(base)
    object.__setattr__(secret, "acl_replication_token", "s3cr3t")
    document = go_config(secret)
    assert document["ACL"]["ReplicationToken"] == REDACTED
    assert "s3cr3t" not in repr(document)
    assert document["Consuls"][0]["Token"] == "" and document["Vaults"][0]["Token"] == ""


def test_files_headers_addresses_and_modes() -> None:
    """Files is null until -config loads some; addresses default to bind; Serf is "" client-only."""
    server = config("-server", "-http-port", "5646")
    document = go_config(server)
    assert document["Files"] is None
    assert document["Addresses"] == {"HTTP": "127.0.0.1", "RPC": "127.0.0.1", "Serf": "127.0.0.1"}
    assert document["AdvertiseAddrs"] == {"HTTP": "127.0.0.1:5646", "RPC": "127.0.0.1:4647",
                                          "Serf": "127.0.0.1:4648"}
    loaded = replace(server, config_files=("/etc/shoal/a.hcl", "/etc/shoal/b.json"),
                     http_api_response_headers=(("X-A", "1"),), http_bind="127.0.0.1 127.0.0.2",
                     advertise_http="10.0.0.1")
    document = go_config(loaded)
    assert document["Files"] == ["/etc/shoal/a.hcl", "/etc/shoal/b.json"]
    assert document["HTTPAPIResponseHeaders"] == {"X-A": "1"}
    assert document["Addresses"]["HTTP"] == "127.0.0.1 127.0.0.2"
    assert document["AdvertiseAddrs"]["HTTP"] == "10.0.0.1:5646"
    client = go_config(config("-client"))
    assert client["AdvertiseAddrs"]["Serf"] == "" and client["Client"]["Enabled"] is True
    assert client["Server"]["Enabled"] is False
    assert join_host_port("::1", 4647) == "[::1]:4647"


def test_dev_mode_values() -> None:
    """-dev: DevMode, EnableDebug, Nomad's dev GC values and telemetry switches."""
    document = go_config(config("-dev"))
    assert (document["DevMode"], document["EnableDebug"], document["Client"]["Enabled"],
            document["Server"]["Enabled"]) == (True, True, True, True)
    assert document["Client"]["GCDiskUsageThreshold"] == 99
    assert document["Telemetry"]["PrometheusMetrics"] is True
