"""Agent configuration files (`shoal agent -config PATH`): HCL and JSON, merged like Nomad.

Theory of operation. Each ``-config`` path is a file or a folder; a folder contributes
its ``*.hcl`` and ``*.json`` files (not sub-folders, not editor temporary files) in
lexical order, as Nomad's ``LoadConfigDir`` does. Every file goes through three pure
steps, so any error names the file it came from:

1. **parse** (``parse_config_text``): HCL through python-hcl2, or JSON. Both give nested
   dicts in which a block may come as an object or as a list of objects (HCL2 blocks,
   Nomad's JSON form); ``normalise`` folds each such list into one object, later keys
   winning, and strips quotes that HCL leaves on quoted map keys.
2. **check** against ``SCHEMA``: every key must be known (``unexpected keys
   server.foo, bar``); ``server.protocol_version`` gets its own refusal; each value must
   have the right type (a number where a number is wanted, a Go duration string such as
   ``"10s"`` for durations) and a valid value.
3. **map** to ``AgentConfig`` field names (``FileSettings.values``).

Files then merge in load order with ``merge_settings``: a key a later file sets
replaces the earlier value, maps (``client.meta``, ``http_api_response_headers``) merge
key by key, and lists (``server.start_join``, ``server.retry_join``, ``client.servers``,
``server.enabled_schedulers``) are appended to, which is what Nomad's ``Config.Merge``
does. ``agent/config.py`` merges the flags given on the command line on top the same way.

Only ``load_config_paths`` and ``expand_paths`` touch the file system.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .config import (LOG_LEVELS, SCHEDULER_TYPES, UsageError, decode_encrypt_key,
                     parse_go_duration, parse_raft_protocol)

__all__ = ["FileSettings", "load_config_paths", "expand_paths", "parse_config_text",
           "settings_from_tree", "merge_settings", "LIST_FIELDS", "MAP_FIELDS", "SCHEMA",
           "split_host_port"]

LIST_FIELDS = frozenset({"join", "retry_join", "servers", "enabled_schedulers"})
"""AgentConfig fields whose lists are appended to by later files and flags (Nomad's Merge)."""
MAP_FIELDS = frozenset({"meta", "http_api_response_headers"})
"""AgentConfig fields (tuples of pairs) merged key by key, later values winning."""

_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Leaf:
    """One settable key: its value kind, the AgentConfig field it fills, its limits."""

    kind: str
    """str | int | bool | duration | ip | ips | strings | map | advertise | encrypt |
    log_level | raft_protocol | schedulers | profile | name."""
    target: str
    minimum: int = 0
    maximum: int = _INT_MAX


_PORTS = {"http": Leaf("int", "http_port", 0, 65535), "rpc": Leaf("int", "rpc_port", 0, 65535),
          "serf": Leaf("int", "serf_port", 0, 65535)}
_ADDRESSES = {"http": Leaf("ips", "http_bind"), "rpc": Leaf("ip", "rpc_bind"),
              "serf": Leaf("ip", "serf_bind")}
_ADVERTISE = {"http": Leaf("advertise", "http"), "rpc": Leaf("advertise", "rpc"),
              "serf": Leaf("advertise", "serf")}

SCHEMA: dict[str, Any] = {
    "region": Leaf("name", "region"),
    "datacenter": Leaf("name", "datacenter"),
    "name": Leaf("name", "node"),
    "data_dir": Leaf("str", "data_dir"),
    "bind_addr": Leaf("ip", "bind"),
    "log_level": Leaf("log_level", "log_level"),
    "log_json": Leaf("bool", "log_json"),
    "enable_debug": Leaf("bool", "enable_debug"),
    "leave_on_interrupt": Leaf("bool", "leave_on_interrupt"),
    "leave_on_terminate": Leaf("bool", "leave_on_terminate"),
    "fault_injection": Leaf("bool", "fault_injection"),
    "gossip_profile": Leaf("profile", "gossip_profile"),
    "http_api_response_headers": Leaf("map", "http_api_response_headers"),
    "ports": _PORTS,
    "addresses": _ADDRESSES,
    "advertise": _ADVERTISE,
    "server": {
        "enabled": Leaf("bool", "server"),
        "bootstrap_expect": Leaf("int", "bootstrap_expect"),
        "raft_protocol": Leaf("raft_protocol", "raft_protocol"),
        "raft_multiplier": Leaf("int", "raft_multiplier", 1, 10),
        "num_schedulers": Leaf("int", "num_schedulers"),
        "enabled_schedulers": Leaf("schedulers", "enabled_schedulers"),
        "start_join": Leaf("strings", "join"),
        "retry_join": Leaf("strings", "retry_join"),
        "retry_interval": Leaf("duration", "retry_interval"),
        "retry_max": Leaf("int", "retry_max"),
        "raft_snapshot_threshold": Leaf("int", "raft_snapshot_threshold", 1),
        "raft_trailing_logs": Leaf("int", "raft_trailing_logs"),
        "encrypt": Leaf("encrypt", "encrypt"),
    },
    "client": {
        "enabled": Leaf("bool", "client"),
        "servers": Leaf("strings", "servers"),
        "node_class": Leaf("str", "node_class"),
        "meta": Leaf("map", "meta"),
        "cpu_total_compute": Leaf("int", "cpu_total_compute"),
        "memory_total_mb": Leaf("int", "memory_total_mb"),
    },
    "acl": {
        "enabled": Leaf("bool", "acl_enabled"),
        "token_ttl": Leaf("duration", "acl_token_ttl"),
        "policy_ttl": Leaf("duration", "acl_policy_ttl"),
        "role_ttl": Leaf("duration", "acl_role_ttl"),
        "replication_token": Leaf("str", "acl_replication_token"),
    },
    "tls": {
        "http": Leaf("bool", "tls_http"),
        "rpc": Leaf("bool", "tls_rpc"),
        "ca_file": Leaf("str", "tls_ca_file"),
        "cert_file": Leaf("str", "tls_cert_file"),
        "key_file": Leaf("str", "tls_key_file"),
        "verify_server_hostname": Leaf("bool", "tls_verify_server_hostname"),
        "verify_https_client": Leaf("bool", "tls_verify_https_client"),
    },
}

_REMOVED = {"server.protocol_version": (
    "server.protocol_version was removed in Nomad 1.3 and is not supported; "
    "use server.raft_protocol (2 or 3) to choose the raft protocol")}


@dataclass(frozen=True)
class FileSettings:
    """What one or more config files set.

    ``values`` maps AgentConfig field names to values of the field's type;
    ``advertise_ports`` holds ports given in ``advertise.rpc``/``advertise.serf``
    (``ip:port``), checked against the final ports once flags are applied;
    ``files`` are the absolute paths loaded, in order.
    """

    values: dict[str, Any] = field(default_factory=dict)
    advertise_ports: dict[str, int] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def merged(self, later: "FileSettings") -> "FileSettings":
        """These settings with ``later`` merged on top (Nomad's order)."""
        return FileSettings(values=merge_settings(self.values, later.values),
                            advertise_ports={**self.advertise_ports, **later.advertise_ports},
                            files=self.files + later.files)


def merge_settings(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two AgentConfig value maps: lists append, maps merge, scalars replace."""
    result = dict(earlier)
    for key, value in later.items():
        if key in LIST_FIELDS and key in result:
            combined = tuple(result[key]) + tuple(value)
            if key == "enabled_schedulers":
                combined = tuple(dict.fromkeys(combined))
            result[key] = combined
        elif key in MAP_FIELDS and key in result:
            pairs = dict(result[key])
            pairs.update(dict(value))
            result[key] = tuple(pairs.items())
        else:
            result[key] = value
    return result


# --------------------------------------------------------------------------- loading

def _is_temporary(name: str) -> bool:
    """Editor leftovers Nomad skips in a config folder (vim ``~``, emacs ``#..#``, ``.#``)."""
    return name.endswith("~") or name.startswith(".#") or (name.startswith("#") and name.endswith("#"))


def expand_paths(paths: Sequence[str]) -> list[str]:
    """The absolute files that ``-config`` paths name, in load order.

    Raises:
        UsageError: a path that does not exist or cannot be read.
    """
    files: list[str] = []
    for path in paths:
        absolute = os.path.abspath(path)
        if os.path.isdir(absolute):
            try:
                names = sorted(os.listdir(absolute))
            except OSError as exc:
                raise UsageError(f"Error loading configuration from {absolute}: "
                                 f"{exc.strerror or exc}") from None
            for name in names:
                full = os.path.join(absolute, name)
                if (name.endswith((".hcl", ".json")) and not _is_temporary(name)
                        and not os.path.isdir(full)):
                    files.append(full)
        elif os.path.exists(absolute):
            files.append(absolute)
        else:
            raise UsageError(f"Error loading configuration from {absolute}: no such file or directory")
    return files


def load_config_paths(paths: Sequence[str]) -> FileSettings:
    """Load, check and merge every file the ``-config`` paths name, in the order given.

    Raises:
        UsageError: ``Error loading configuration from <file>: <reason>``, one line.
    """
    result = FileSettings()
    for path in expand_paths(paths):
        try:
            text = _read_text(path)
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise UsageError(f"Error loading configuration from {path}: {reason}") from None
        try:
            tree = parse_config_text(text, json_form=path.endswith(".json"))
            settings = settings_from_tree(tree)
        except ConfigFileError as exc:
            raise UsageError(f"Error loading configuration from {path}: {exc}") from None
        result = result.merged(FileSettings(settings.values, settings.advertise_ports, (path,)))
    return result


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class ConfigFileError(Exception):
    """A problem inside one file; the loader prefixes the file's path."""


# --------------------------------------------------------------------------- parsing

def parse_config_text(text: str, *, json_form: bool) -> dict[str, Any]:
    """Parse one file's text into nested dicts (blocks still possibly lists of objects).

    Raises:
        ConfigFileError: a syntax error, with line and column when the parser gives them.
    """
    if json_form:
        try:
            tree = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConfigFileError(f"JSON syntax error at line {exc.lineno}, column {exc.colno}: "
                                  f"{exc.msg}") from None
    else:
        tree = _parse_hcl(text)
    if not isinstance(tree, dict):
        raise ConfigFileError("the top level must be an object")
    return tree


def _parse_hcl(text: str) -> Any:
    import hcl2

    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False,
                                        with_comments=False)
    try:
        return hcl2.loads(text, serialization_options=options)
    except Exception as exc:  # noqa: BLE001 - lark raises several unrelated classes
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f" at line {line}, column {column}" if isinstance(line, int) and line > 0 else ""
        token = getattr(exc, "token", None)
        char = getattr(exc, "char", None)
        if token is not None:
            kind = getattr(token, "type", "")
            what = "end of file" if kind == "$END" else repr(str(token).strip()[:30])
            detail = f": unexpected {what}"
        elif char is not None:
            detail = f": unexpected character {char!r}"
        else:
            detail = f": {str(exc).splitlines()[0]}" if str(exc) else ""
        raise ConfigFileError(f"HCL syntax error{where}{detail}") from None


def _unquote(key: Any) -> str:
    """A map key without the quotes HCL may leave around a quoted key."""
    text = str(key)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def _as_object(value: Any, path: str) -> dict[str, Any]:
    """A block's body: an object, or a list of objects (merged in order, later keys win)."""
    if isinstance(value, dict):
        return {_unquote(k): v for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        merged: dict[str, Any] = {}
        for item in value:
            for key, inner in item.items():
                merged[_unquote(key)] = inner
        return merged
    raise ConfigFileError(f"{path} must be a block (an object), got {_type_name(value)}")


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a block"
    return "null" if value is None else type(value).__name__


# --------------------------------------------------------------------------- checking

def settings_from_tree(tree: Mapping[str, Any]) -> FileSettings:
    """Check one parsed file against ``SCHEMA`` and map it to AgentConfig fields.

    Raises:
        ConfigFileError: a removed or unknown key, a wrong type or a bad value.
    """
    leaves: list[tuple[str, Leaf, Any]] = []
    unknown: list[str] = []
    _walk(_as_object(tree, "the configuration"), SCHEMA, "", leaves, unknown)
    for dotted in unknown:
        if dotted in _REMOVED:
            raise ConfigFileError(_REMOVED[dotted])
    if unknown:
        raise ConfigFileError(f"unexpected keys {', '.join(unknown)}")
    values: dict[str, Any] = {}
    advertise: dict[str, tuple[str, int | None]] = {}
    for dotted, leaf, raw in leaves:
        if leaf.kind == "advertise":
            advertise[leaf.target] = _advertise_value(dotted, raw)
        else:
            values[leaf.target] = _convert(dotted, leaf, raw)
    ports = _apply_advertise(advertise, values)
    return FileSettings(values=values, advertise_ports=ports)


def _walk(body: Mapping[str, Any], schema: Mapping[str, Any], prefix: str,
          leaves: list[tuple[str, Leaf, Any]], unknown: list[str]) -> None:
    """Collect (dotted key, Leaf, raw value) for known keys and the dotted unknown ones."""
    for key, value in body.items():
        dotted = f"{prefix}{key}"
        spec = schema.get(key)
        if spec is None:
            unknown.append(dotted)
        elif isinstance(spec, Leaf):
            leaves.append((dotted, spec, value))
        else:
            _walk(_as_object(value, dotted), spec, f"{dotted}.", leaves, unknown)


def _wrong(dotted: str, want: str, raw: Any) -> ConfigFileError:
    return ConfigFileError(f"{dotted} must be {want}, got {_type_name(raw)}")


def _convert(dotted: str, leaf: Leaf, raw: Any) -> Any:
    """One checked value of the AgentConfig field ``leaf.target``."""
    kind = leaf.kind
    if kind == "bool":
        if not isinstance(raw, bool):
            raise _wrong(dotted, "a boolean (true or false)", raw)
        return raw
    if kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _wrong(dotted, "a whole number", raw)
        if not leaf.minimum <= raw <= leaf.maximum:
            raise ConfigFileError(f"{dotted} must be in {leaf.minimum}..{leaf.maximum}, got {raw}")
        return raw
    if kind == "raft_protocol":
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise _wrong(dotted, "2 or 3", raw)
        try:
            return parse_raft_protocol(str(raw))
        except UsageError as exc:
            raise ConfigFileError(str(exc)) from None
    if kind == "strings":
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise _wrong(dotted, "a list of strings", raw)
        return tuple(raw)
    if kind == "map":
        return _map_value(dotted, raw)
    if kind == "schedulers":
        return _schedulers(dotted, raw)
    if not isinstance(raw, str):
        raise _wrong(dotted, _STRING_WANTS.get(kind, "a string"), raw)
    return _convert_string(dotted, kind, raw)


_STRING_WANTS = {"duration": 'a duration string such as "10s"', "ip": "an IP address string",
                 "ips": "a string of IP addresses", "encrypt": "a base64 key string",
                 "log_level": "a log level string"}


def _convert_string(dotted: str, kind: str, raw: str) -> Any:
    if kind == "str":
        return raw
    if kind == "name":
        if not raw:
            raise ConfigFileError(f"{dotted} must not be empty")
        return raw
    if kind == "duration":
        try:
            seconds = parse_go_duration(raw)
        except ValueError as exc:
            raise ConfigFileError(f"{dotted}: {exc}") from None
        if seconds < 0 or (dotted == "server.retry_interval" and seconds == 0):
            raise ConfigFileError(f"{dotted} must be positive, got {raw!r}")
        return seconds
    if kind == "ip":
        return _ip(dotted, raw)
    if kind == "ips":
        parts = raw.split()
        if not parts:
            raise ConfigFileError(f"{dotted} must hold at least one IP address")
        return " ".join(_ip(dotted, part) for part in parts)
    if kind == "log_level":
        if raw.upper() not in LOG_LEVELS:
            raise ConfigFileError(f"Invalid log level: {raw}")
        return raw.upper()
    if kind == "profile":
        if raw.lower() not in ("lan", "wan", "local"):
            raise ConfigFileError(f"{dotted} must be lan, wan or local, got {raw!r}")
        return raw.lower()
    assert kind == "encrypt", kind
    try:
        return decode_encrypt_key(raw)
    except UsageError as exc:
        raise ConfigFileError(f"{dotted}: {exc}") from None


def _ip(dotted: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigFileError(f"{dotted} must be an IP address, got {text!r} "
                              "(go-sockaddr templates are not supported)") from None


def _map_value(dotted: str, raw: Any) -> tuple[tuple[str, str], ...]:
    """A string map (``meta``, ``http_api_response_headers``) as ordered pairs."""
    body = _as_object(raw, dotted)
    pairs = []
    for key, value in body.items():
        if not isinstance(value, str):
            raise _wrong(f"{dotted}.{key}", "a string", value)
        pairs.append((key, value))
    return tuple(pairs)


def _schedulers(dotted: str, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise _wrong(dotted, "a list of scheduler names", raw)
    bad = [name for name in raw if name not in SCHEDULER_TYPES]
    if bad:
        raise ConfigFileError(f"{dotted}: invalid scheduler {bad[0]!r} "
                              f"(want {', '.join(SCHEDULER_TYPES[:4])})")
    return tuple(dict.fromkeys([*raw, "_core"]))


# ---------------------------------------------------------------------- advertise

def split_host_port(text: str) -> tuple[str, int | None]:
    """``ip``, ``ip:port``, ``[v6]:port`` or a bare IPv6 -> (ip text, port or None).

    Raises:
        ValueError: a port that is not a number in 0..65535.
    """
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        return text, None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port_text)


def _advertise_value(dotted: str, raw: Any) -> tuple[str, int | None]:
    if not isinstance(raw, str):
        raise _wrong(dotted, 'an address string ("ip" or "ip:port")', raw)
    try:
        host, port = split_host_port(raw)
    except ValueError as exc:
        raise ConfigFileError(f"{dotted}: {exc}") from None
    return _ip(dotted, host), port


def _apply_advertise(advertise: Mapping[str, tuple[str, int | None]],
                     values: dict[str, Any]) -> dict[str, int]:
    """Map ``advertise {rpc serf http}`` onto ``advertise``/``advertise_http``.

    shoal gossips and serves RPC from one advertise IP, so rpc and serf must agree.
    Returns the explicit rpc/serf advertise ports, which must match the final ports.
    """
    rpc, serf = advertise.get("rpc"), advertise.get("serf")
    if rpc and serf and rpc[0] != serf[0]:
        raise ConfigFileError(
            f"advertise.rpc ({rpc[0]}) and advertise.serf ({serf[0]}) differ: shoal "
            "advertises one IP for both gossip and RPC; give them the same IP")
    chosen = rpc or serf
    if chosen:
        values["advertise"] = chosen[0]
    if "http" in advertise:
        host, port = advertise["http"]
        shown = f"[{host}]" if ":" in host else host
        values["advertise_http"] = f"{shown}:{port}" if port is not None else shown
    return {name: entry[1] for name, entry in (("rpc", rpc), ("serf", serf))
            if entry and entry[1] is not None}
