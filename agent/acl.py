"""Nomad's ACL policy language and the capability checks built from it (pure).

Theory of operation
-------------------
A policy is a named document of rules in HCL (or JSON, when the text starts with
``{``), as ``hashicorp/nomad:acl/policy.go`` reads it:

```hcl
namespace "default" {
  policy       = "read"                      # deny | read | write | scale
  capabilities = ["submit-job"]              # fine-grained, added to the policy's
  variables { path "app/*" { capabilities = ["read", "write"] } }
}
host_volume "data" { policy = "write" }      # deny | read | write (+ capabilities)
node_pool "*" { policy = "read" }            # deny | read | write (+ capabilities)
agent    { policy = "read" }                 # deny | read | write
node     { policy = "write" }
operator { policy = "read" }
quota    { policy = "read" }
plugin   { policy = "list" }                 # deny | list | read
```

``parse_policy`` checks every block and value and raises ``PolicyError`` naming
the first bad one (unknown block or attribute, bad policy level, bad capability,
bad name), so an invalid policy is never stored. ``compile_acl`` merges the
parsed policies of one token the way ``acl.NewACL`` does: for the coarse blocks
(agent, node, operator, quota, plugin) **deny wins**, otherwise the highest level;
namespace and host-volume capabilities are unioned, and a ``deny`` capability
wipes the others. Namespace names may be globs (``*``, ``prod-*``); an exact name
wins, else the closest glob (the one matching with the fewest characters left to
the wildcards), as Nomad's ``findClosestMatchingGlob``.

``ACL.allows(capability)`` answers the checks the HTTP layer asks for:

| capability string | true when |
| --- | --- |
| ``agent:read`` / ``agent:write`` | agent policy read-or-write / write (same for ``node``, ``operator``, ``quota``) |
| ``plugin:list`` / ``plugin:read`` | plugin policy list-or-read / read |
| ``namespace:<ns>:<capability>`` | the namespace rule for ``<ns>`` holds the capability (``read-job``, ``submit-job``, ...) |
| ``variable:<ns>:<path>:<op>`` | ``<op>`` in read, list, write, destroy is granted for the path (see below) |
| ``management`` | management tokens only |

Variables: Nomad grants them only through ``variables { path ... }`` blocks (the
closest path glob wins). shoal adds one documented shorthand so plain namespace
policies are usable on ``/v1/var``: a namespace ``read`` policy grants ``read`` and
``list`` on every path, ``write`` grants every variable operation; an explicit
``deny`` (policy or capability) grants none.

A management token passes everything. Expiry is decided by the caller's clock:
``token_expired(token, now_ns)`` compares ``ExpirationTime`` (Unix ns, 0 or absent
= never) with ``now_ns``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PolicyError", "Policy", "ACL", "parse_policy", "compile_acl", "capabilities",
           "token_expired", "MANAGEMENT_ACL", "LEVELS", "NAMESPACE_CAPABILITIES"]

DENY, LIST, READ, WRITE, SCALE = "deny", "list", "read", "write", "scale"
LEVELS = (DENY, READ, WRITE)
"""Valid values of ``policy`` in the agent, node, operator and quota blocks."""
_RANK = {LIST: 1, READ: 2, WRITE: 3}        # deny is handled apart: it always wins

NAMESPACE_CAPABILITIES = (
    "deny", "list-jobs", "parse-job", "read-job", "submit-job", "dispatch-job", "read-logs",
    "read-fs", "alloc-exec", "alloc-node-exec", "alloc-lifecycle", "sentinel-override",
    "csi-register-plugin", "csi-write-volume", "csi-read-volume", "csi-list-volume",
    "csi-mount-volume", "list-scaling-policies", "read-scaling-policy", "read-job-scaling",
    "scale-job", "submit-recommendation")
_NS_READ = ("list-jobs", "parse-job", "read-job", "csi-list-volume", "csi-read-volume",
            "read-job-scaling", "list-scaling-policies", "read-scaling-policy")
_NS_WRITE = _NS_READ + ("scale-job", "submit-job", "dispatch-job", "read-logs", "read-fs",
                        "alloc-exec", "alloc-lifecycle", "csi-mount-volume", "csi-write-volume",
                        "submit-recommendation")
_NS_EXPAND = {DENY: ("deny",), READ: _NS_READ, WRITE: _NS_WRITE,
              SCALE: ("list-scaling-policies", "read-scaling-policy", "read-job-scaling", "scale-job")}
_VOLUME_CAPABILITIES = ("deny", "mount-readonly", "mount-readwrite")
_VOLUME_EXPAND = {DENY: ("deny",), READ: ("mount-readonly",),
                  WRITE: ("mount-readonly", "mount-readwrite")}
_POOL_CAPABILITIES = ("deny", "delete", "read", "write")
_POOL_EXPAND = {DENY: ("deny",), READ: ("read",), WRITE: ("read", "write", "delete")}
_VARIABLE_CAPABILITIES = ("read", "write", "list", "destroy", "deny")
_VARIABLE_SHORTHAND = {READ: ("read", "list"), WRITE: ("read", "list", "write", "destroy"),
                       SCALE: (), DENY: ("deny",)}
_NAME_RE = re.compile(r"[a-zA-Z0-9*-]{1,128}")
_COARSE = {"agent": LEVELS, "node": LEVELS, "operator": LEVELS, "quota": LEVELS,
           "plugin": (DENY, LIST, READ)}
_LABELED = ("namespace", "host_volume", "node_pool")


class PolicyError(ValueError):
    """The rules of a policy are invalid; the message names the block or value."""


@dataclass(frozen=True)
class Policy:
    """One parsed policy: capability sets per labelled block, a level per coarse block."""

    namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # namespace -> path glob -> variable capabilities
    variables: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    host_volumes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    node_pools: Mapping[str, frozenset[str]] = field(default_factory=dict)
    levels: Mapping[str, str] = field(default_factory=dict)   # agent/node/operator/quota/plugin


# --- parsing ------------------------------------------------------------------------


def parse_policy(rules: str) -> Policy:
    """Parse and check ``rules`` (HCL, or JSON when it starts with ``{``).

    Raises:
        PolicyError: syntax error, unknown block or attribute, invalid level or
            capability, or no rule at all (Nomad's ``Invalid policy``).
    """
    if not isinstance(rules, str):
        raise PolicyError("Rules must be a string")
    document = _decode(rules)
    levels: dict[str, str] = {}
    labeled: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in _LABELED}
    for kind, value in document.items():
        if kind in _COARSE:
            levels[kind] = _coarse_level(kind, value)
        elif kind in _LABELED:
            for label, body in _labeled_blocks(kind, value):
                labeled[kind][label] = body
        else:
            raise PolicyError(f'Failed to parse ACL Policy: Unsupported block type "{kind}": '
                              f'blocks of type "{kind}" are not expected here')
    if not levels and not any(labeled.values()):
        raise PolicyError(f"Invalid policy: {rules}")
    namespaces, variables = {}, {}
    for name, body in labeled["namespace"].items():
        namespaces[name], paths = _namespace_rule(name, body)
        if paths is not None:
            variables[name] = paths
    host_volumes = {name: _capability_rule("host volume", name, body, _VOLUME_CAPABILITIES,
                                           _VOLUME_EXPAND)
                    for name, body in labeled["host_volume"].items()}
    node_pools = {name: _capability_rule("node pool", name, body, _POOL_CAPABILITIES, _POOL_EXPAND)
                  for name, body in labeled["node_pool"].items()}
    return Policy(namespaces=namespaces, variables=variables, host_volumes=host_volumes,
                  node_pools=node_pools, levels=levels)


def _decode(rules: str) -> dict[str, Any]:
    if rules.strip() == "":
        raise PolicyError(f"Invalid policy: {rules}")
    if rules.strip().startswith("{"):
        try:
            document = json.loads(rules)
        except ValueError as exc:
            raise PolicyError(f"Failed to parse ACL Policy: {exc}") from None
    else:
        import hcl2

        options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False,
                                            with_comments=False)
        try:
            document = hcl2.loads(rules, serialization_options=options)
        except Exception as exc:  # noqa: BLE001 - lark raises many kinds; all mean bad syntax
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PolicyError(f"Failed to parse ACL Policy: {first_line}") from None
    if not isinstance(document, dict):
        raise PolicyError("Failed to parse ACL Policy: the rules must be a set of blocks")
    return document


def _blocks(kind: str, value: Any) -> list[dict[str, Any]]:
    """A block's bodies: HCL gives a list of maps, JSON a map or a list of maps."""
    bodies = value if isinstance(value, list) else [value]
    if not bodies or not all(isinstance(body, dict) for body in bodies):
        raise PolicyError(f'Failed to parse ACL Policy: "{kind}" must be a block, not an attribute')
    return bodies


def _coarse_level(kind: str, value: Any) -> str:
    level = None
    for body in _blocks(kind, value):
        _only_keys(kind, body, ("policy",))
        if "policy" not in body:
            raise PolicyError(f'Failed to parse ACL Policy: Missing required argument: '
                              f'The argument "policy" is required in the "{kind}" block')
        level = body["policy"]
        if level not in _COARSE[kind]:
            struct = {"agent": "AgentPolicy", "node": "NodePolicy", "operator": "OperatorPolicy",
                      "quota": "QuotaPolicy", "plugin": "PluginPolicy"}[kind]
            raise PolicyError(f"Invalid {kind} policy: &acl.{struct}{{Policy:{_go_quote(level)}}}")
    assert level is not None
    return level


def _labeled_blocks(kind: str, value: Any) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for body in _blocks(kind, value):
        for label, inner in body.items():
            if not isinstance(inner, dict):
                raise PolicyError(f'Failed to parse ACL Policy: Missing name for {kind}: '
                                  f'all {kind} blocks must have 1 label (the name)')
            if not isinstance(label, str) or _NAME_RE.fullmatch(label) is None:
                raise PolicyError(f"Invalid {kind.replace('_', ' ')} name: {_go_quote(label)}")
            found.append((label, inner))
    return found


def _namespace_rule(name: str, body: dict[str, Any]) -> tuple[frozenset[str], dict[str, frozenset[str]] | None]:
    caps = _capability_rule("namespace", name, {k: v for k, v in body.items() if k != "variables"},
                            NAMESPACE_CAPABILITIES, _NS_EXPAND, extra_levels=(SCALE,))
    paths: dict[str, frozenset[str]] | None = None
    if "variables" in body:
        paths = {}
        for variables in _blocks("variables", body["variables"]):
            _only_keys("variables", variables, ("path",))
            for path, rule in _labeled_paths(name, variables.get("path")):
                _only_keys("path", rule, ("capabilities",))
                granted = _string_list(rule.get("capabilities", []), f"variables path {path!r}")
                for cap in granted:
                    if cap not in _VARIABLE_CAPABILITIES:
                        raise PolicyError(f"Invalid variable capability '{cap}' in namespace {name}")
                paths[path] = frozenset(("deny",) if "deny" in granted else
                                        granted + (["list"] if "read" in granted else []))
        if not paths:
            raise PolicyError(f"Invalid variable policy: no variable paths in namespace {name}")
    return caps, paths


def _labeled_paths(namespace: str, value: Any) -> list[tuple[str, dict[str, Any]]]:
    if value is None:
        return []
    found = []
    for body in _blocks("path", value):
        for path, rule in body.items():
            if not isinstance(rule, dict) or not isinstance(path, str) or path == "":
                raise PolicyError(f"Invalid missing variable path in namespace {namespace}")
            found.append((path, rule))
    return found


def _capability_rule(what: str, name: str, body: dict[str, Any], valid: tuple[str, ...],
                     expand: Mapping[str, tuple[str, ...]], extra_levels: tuple[str, ...] = ()) -> frozenset[str]:
    _only_keys(what.replace(" ", "_"), body, ("policy", "capabilities"))
    level = body.get("policy", "")
    if level != "" and level not in LEVELS + extra_levels:
        raise PolicyError(f"Invalid {what} policy: {_go_quote(name)} has policy {_go_quote(level)}")
    granted = _string_list(body.get("capabilities", []), f"{what} {name!r} capabilities")
    for cap in granted:
        if cap not in valid:
            raise PolicyError(f"Invalid {what} capability '{cap}': {_go_quote(name)}")
    caps = set(granted) | set(expand.get(level, ()))
    if level in _VARIABLE_SHORTHAND and what == "namespace":
        caps |= {f"variables-{v}" for v in _VARIABLE_SHORTHAND[level] if v != "deny"}
    return frozenset(caps)


def _only_keys(kind: str, body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise PolicyError(f'Failed to parse ACL Policy: Unsupported argument or block "{key}" '
                              f'in "{kind}"')


def _string_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"Failed to parse ACL Policy: {what} must be a list of strings")
    return list(value)


def _go_quote(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


# --- merging and checking --------------------------------------------------------------


def _merge_sets(target: dict[str, set[str]], source: Mapping[str, Iterable[str]]) -> None:
    for name, caps in source.items():
        target.setdefault(name, set()).update(caps)


def _finish(sets: Mapping[str, set[str]]) -> dict[str, frozenset[str]]:
    """Deny in a set wipes every other capability of that name (Nomad's NewACL)."""
    return {name: frozenset({"deny"} if "deny" in caps else caps) for name, caps in sets.items()}


def _closest(table: Mapping[str, Any], name: str) -> Any:
    """Exact name, else the glob leaving the fewest characters to its wildcards."""
    if name in table:
        return table[name]
    best, best_left = None, None
    for pattern in sorted(table):
        if "*" in pattern and fnmatch.fnmatchcase(name, pattern):
            left = len(name) - len(pattern.replace("*", ""))
            if best_left is None or left < best_left:
                best, best_left = table[pattern], left
    return best


@dataclass(frozen=True)
class ACL:
    """The merged rights of one token; ``allows`` answers one capability."""

    management: bool = False
    levels: Mapping[str, str] = field(default_factory=dict)
    namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    variables: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    host_volumes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    node_pools: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def allows(self, capability: str) -> bool:
        """True if the token may do ``capability`` (table in the module docstring).

        Raises:
            ValueError: ``capability`` is not a known capability string (a caller bug).
        """
        if capability == "management":
            return self.management
        parts = capability.split(":")
        if len(parts) == 2 and parts[0] in _COARSE and parts[1] in _RANK:
            if self.management:
                return True
            level = self.levels.get(parts[0], DENY)
            return level != DENY and _RANK[level] >= _RANK[parts[1]]
        if len(parts) == 3 and parts[0] == "namespace":
            if self.management:
                return True
            caps = _closest(self.namespaces, parts[1]) or frozenset()
            return "deny" not in caps and parts[2] in caps
        if len(parts) == 4 and parts[0] == "variable" and parts[3] in _VARIABLE_CAPABILITIES:
            return self.management or self._allows_variable(parts[1], parts[2], parts[3])
        raise ValueError(f"unknown capability {capability!r}")

    def allows_any_namespace(self, capability: str) -> bool:
        """True if some namespace rule (or management) grants ``capability``."""
        return self.management or any("deny" not in caps and capability in caps
                                      for caps in self.namespaces.values())

    def _allows_variable(self, namespace: str, path: str, operation: str) -> bool:
        ns_caps = _closest(self.namespaces, namespace) or frozenset()
        if "deny" in ns_caps:
            return False
        paths = _closest(self.variables, namespace)
        rule = _closest(paths, path) if paths else None
        if rule is not None:
            return "deny" not in rule and operation in rule
        return f"variables-{operation}" in ns_caps


MANAGEMENT_ACL = ACL(management=True)


def compile_acl(policies: Iterable[Policy]) -> ACL:
    """Merge the policies of one client token (deny wins, else the highest level)."""
    levels: dict[str, str] = {}
    namespaces: dict[str, set[str]] = {}
    host_volumes: dict[str, set[str]] = {}
    node_pools: dict[str, set[str]] = {}
    variables: dict[str, dict[str, set[str]]] = {}
    for policy in policies:
        for kind, level in policy.levels.items():
            current = levels.get(kind)
            if current == DENY or level == DENY:
                levels[kind] = DENY
            elif current is None or _RANK[level] > _RANK[current]:
                levels[kind] = level
        _merge_sets(namespaces, policy.namespaces)
        _merge_sets(host_volumes, policy.host_volumes)
        _merge_sets(node_pools, policy.node_pools)
        for namespace, paths in policy.variables.items():
            _merge_sets(variables.setdefault(namespace, {}), paths)
    return ACL(levels=levels, namespaces=_finish(namespaces),
               variables={ns: _finish(paths) for ns, paths in variables.items()},
               host_volumes=_finish(host_volumes), node_pools=_finish(node_pools))


def token_expired(token: Mapping[str, Any], now_ns: int) -> bool:
    """True when the token has an ``ExpirationTime`` (Unix ns) at or before ``now_ns``."""
    expires = token.get("ExpirationTime") or 0
    return bool(expires) and expires <= now_ns


def capabilities(token: Mapping[str, Any] | None, policies: Iterable[Mapping[str, Any] | Policy]) -> ACL:
    """The ACL of ``token`` (None: anonymous) given its policy records (or parsed policies).

    A management token gets ``MANAGEMENT_ACL``; a client token (or the anonymous one)
    gets the merge of the policies given, which the caller has looked up by name
    (missing policies are simply absent, as in Nomad). Raises PolicyError if a
    stored policy's rules no longer parse.
    """
    if token is not None and token.get("Type") == "management":
        return MANAGEMENT_ACL
    parsed = [p if isinstance(p, Policy) else parse_policy(p["Rules"]) for p in policies]
    return compile_acl(parsed)
