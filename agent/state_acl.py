"""The ACL tables of the replicated state: tokens, policies, the bootstrap mark (pure).

Theory of operation
-------------------
``AclTables`` holds Nomad's ``acl_token`` and ``acl_policy`` tables (keyed by
AccessorID and by Name, with a SecretID index) and the index of the bootstrap
entry. ``agent/state.py`` owns one ``AclTables`` per ``StateStore`` and dispatches
the ``COMMANDS`` (writes, from committed Raft entries) and ``QUERIES`` (reads)
below to it; the table index map is shared with the store, so ``X-Nomad-Index``
works as for every other table.

Every command validates everything first and then writes (``{"Error": msg}`` and
no change on any failure), and carries every value that varies between servers:
the proposer draws the AccessorID and SecretID (``uuid4``) and stamps ``"Time"``
(Unix ns), as Nomad's RPC layer does, so every server applies the same bytes to
the same result.

Records (Nomad's field names, ``nomad/structs/acl.go``):

- token ``{AccessorID, SecretID, Name, Type ("client"|"management"), Policies,
  Global, CreateTime (ns), ExpirationTime (ns, only when set), CreateIndex,
  ModifyIndex}``;
- policy ``{Name, Description, Rules, CreateIndex, ModifyIndex}``.

Bootstrap happens once: the first ``acl_bootstrap`` writes the management token and
records its index; any later one fails with Nomad's text
``ACL bootstrap already done (reset index: N)`` where N is that index. (Nomad can
re-arm bootstrap through a reset file in its data dir; shoal has no reset.)

Invariants: SecretIDs are unique across tokens; ``CreateIndex <= ModifyIndex``;
a management token lists no policies, a client token lists at least one.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

from .acl import PolicyError, parse_policy

__all__ = ["AclTables", "COMMANDS", "QUERIES", "ANONYMOUS_TOKEN", "ACL_TOKENS", "ACL_POLICIES",
           "ACL_BOOTSTRAP", "validate_policy", "validate_token", "InvalidAcl"]

ACL_TOKENS, ACL_POLICIES, ACL_BOOTSTRAP = "acl_token", "acl_policy", "acl_token_bootstrap"
MAX_NAME_LENGTH = 256                       # Nomad's maxTokenNameLength
MAX_DESCRIPTION_LENGTH = 256                # Nomad's maxPolicyDescriptionLength
_POLICY_NAME_RE = re.compile(r"[a-zA-Z0-9-]{1,128}")   # Nomad's ValidPolicyName
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

ANONYMOUS_TOKEN: dict[str, Any] = {
    "AccessorID": "anonymous", "SecretID": "anonymous", "Name": "Anonymous Token",
    "Type": "client", "Policies": ["anonymous"], "Global": False, "CreateTime": 0,
    "CreateIndex": 0, "ModifyIndex": 0}
"""Nomad's ``structs.AnonymousACLToken``: what a request without a token resolves to."""

Record = dict[str, Any]


class InvalidAcl(Exception):
    """A command's token or policy is invalid (turned into ``{"Error": msg}``)."""


def validate_policy(policy: Any) -> str | None:
    """Nomad's ``ACLPolicy.Validate``: an error message, or None. Parses the rules."""
    if not isinstance(policy, Mapping):
        return "policy must be an object"
    errors = []
    name = policy.get("Name")
    if not isinstance(name, str) or _POLICY_NAME_RE.fullmatch(name) is None:
        errors.append(f"invalid name '{name if isinstance(name, str) else ''}'")
    rules = policy.get("Rules")
    try:
        parse_policy(rules if isinstance(rules, str) else "")
    except PolicyError as exc:
        errors.append(f"failed to parse rules: {exc}")
    description = policy.get("Description", "")
    if not isinstance(description, str):
        errors.append("description must be a string")
    elif len(description) > MAX_DESCRIPTION_LENGTH:
        errors.append(f"description longer than {MAX_DESCRIPTION_LENGTH}")
    if not errors:
        return None
    items = "".join(f"\t* {error}\n" for error in errors)
    count = "1 error occurred" if len(errors) == 1 else f"{len(errors)} errors occurred"
    return f"{count}:\n{items}\n"


def validate_token(token: Any) -> str | None:
    """Nomad's ``ACLToken.Validate`` (name, type, policies) plus shoal's field checks."""
    if not isinstance(token, Mapping):
        return "token must be an object"
    name = token.get("Name", "")
    if not isinstance(name, str):
        return "token name must be a string"
    if len(name) > MAX_NAME_LENGTH:
        return "token name too long"
    policies = token.get("Policies") or []
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        return "token policies must be a list of names"
    kind = token.get("Type")
    if kind == "client":
        if not policies:
            return "client token missing policies or roles"
    elif kind == "management":
        if policies:
            return "management token cannot be associated with policies or roles"
    else:
        return "token type must be client or management"
    for key in ("AccessorID", "SecretID"):
        if not isinstance(token.get(key), str) or _UUID_RE.fullmatch(token[key]) is None:
            return f"token {key} must be a UUID"
    expires = token.get("ExpirationTime")
    if expires is not None and not _is_uint(expires):
        return "token ExpirationTime must be a non-negative integer (ns)"
    if not isinstance(token.get("Global", False), bool):
        return "token Global must be a boolean"
    return None


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


class AclTables:
    """Tokens, policies and the bootstrap index; ``table_index`` is shared with the store."""

    def __init__(self, table_index: dict[str, int]) -> None:
        self.table_index = table_index
        self.tokens: dict[str, Record] = {}          # AccessorID -> token
        self.policies: dict[str, Record] = {}        # Name -> policy
        self._by_secret: dict[str, str] = {}         # SecretID -> AccessorID

    @property
    def bootstrap_index(self) -> int:
        """Index of the bootstrap entry; 0 while ACLs were never bootstrapped."""
        return self.table_index.get(ACL_BOOTSTRAP, 0)

    # --- writes ---------------------------------------------------------------------

    def put_token(self, token: Record, index: int, now: int) -> Record:
        old = self.tokens.get(token["AccessorID"])
        if old is not None:
            self._by_secret.pop(old["SecretID"], None)
        stored = {"AccessorID": token["AccessorID"], "SecretID": token["SecretID"],
                  "Name": token.get("Name", ""), "Type": token["Type"],
                  "Policies": list(token.get("Policies") or []),
                  "Global": bool(token.get("Global", False)),
                  "CreateTime": old["CreateTime"] if old else int(token.get("CreateTime") or now),
                  "CreateIndex": old["CreateIndex"] if old else index, "ModifyIndex": index}
        if token.get("ExpirationTime"):
            stored["ExpirationTime"] = int(token["ExpirationTime"])
        self.tokens[stored["AccessorID"]] = stored
        self._by_secret[stored["SecretID"]] = stored["AccessorID"]
        self.table_index[ACL_TOKENS] = index
        return stored

    def token_by_secret(self, secret: str) -> Record | None:
        accessor = self._by_secret.get(secret)
        return self.tokens.get(accessor) if accessor is not None else None

    # --- snapshots --------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, list[Record]]:
        return {"ACLTokens": [self.tokens[k] for k in sorted(self.tokens)],
                "ACLPolicies": [self.policies[k] for k in sorted(self.policies)]}

    @classmethod
    def from_snapshot(cls, obj: Mapping[str, Any], table_index: dict[str, int]) -> AclTables:
        """Tables from a snapshot map (older snapshots have none); KeyError/TypeError if bad."""
        tables = cls(table_index)
        for token in obj.get("ACLTokens", ()):
            tables.tokens[token["AccessorID"]] = dict(token)
            tables._by_secret[token["SecretID"]] = token["AccessorID"]
        tables.policies = {p["Name"]: dict(p) for p in obj.get("ACLPolicies", ())}
        return tables

    def equal(self, other: AclTables) -> bool:
        return self.tokens == other.tokens and self.policies == other.policies


# --- commands ---------------------------------------------------------------------------

Command = Callable[[AclTables, int, dict[str, Any]], dict[str, Any]]


def _command(fn: Callable[[AclTables, int, dict[str, Any]], dict[str, Any]]) -> Command:
    """Turn ``InvalidAcl`` into ``{"Error": msg}`` (nothing was written before it)."""
    def run(t: AclTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
        try:
            return fn(t, index, command)
        except InvalidAcl as exc:
            return {"Error": str(exc)}
    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def _time(command: Mapping[str, Any]) -> int:
    now = command.get("Time")
    if not _is_uint(now):
        raise InvalidAcl("Time must be a non-negative integer (ns)")
    return now


def _checked_tokens(t: AclTables, tokens: Any) -> list[Record]:
    if not isinstance(tokens, list) or not tokens:
        raise InvalidAcl("must specify as least one token")
    seen: dict[str, str] = {}
    for token in tokens:
        error = validate_token(token)
        if error:
            raise InvalidAcl(error)
        owner = t._by_secret.get(token["SecretID"], token["AccessorID"])
        if owner != token["AccessorID"] or seen.get(token["SecretID"], owner) != owner:
            raise InvalidAcl("token SecretID already in use")
        old = t.tokens.get(token["AccessorID"])
        if old is not None and old["SecretID"] != token["SecretID"]:
            raise InvalidAcl("cannot change the SecretID of a token")
        if old is not None and old["Type"] != token["Type"]:
            raise InvalidAcl("cannot change token type")
        seen[token["SecretID"]] = token["AccessorID"]
    return tokens


@_command
def acl_bootstrap(t: AclTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Write the first management token; refused once bootstrap has happened."""
    now = _time(command)
    if t.bootstrap_index:
        raise InvalidAcl(f"ACL bootstrap already done (reset index: {t.bootstrap_index})")
    token = command.get("Token")
    (token,) = _checked_tokens(t, [token])
    if token["Type"] != "management":
        raise InvalidAcl("bootstrap token must be a management token")
    stored = t.put_token(token, index, now)
    t.table_index[ACL_BOOTSTRAP] = index
    return {"Index": index, "Token": copy.deepcopy(stored)}


@_command
def acl_token_upsert(t: AclTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Create or update tokens (a token's CreateIndex and CreateTime are kept)."""
    now = _time(command)
    tokens = _checked_tokens(t, command.get("Tokens"))
    written = [t.put_token(token, index, now) for token in tokens]
    return {"Index": index, "Tokens": copy.deepcopy(written)}


@_command
def acl_token_delete(t: AclTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Delete tokens by AccessorID; unknown ones are ignored (as Nomad's DeleteAll)."""
    accessors = command.get("AccessorIDs")
    if not isinstance(accessors, list) or not accessors or not all(isinstance(a, str) for a in accessors):
        raise InvalidAcl("must specify as least one token")
    for accessor in accessors:
        token = t.tokens.pop(accessor, None)
        if token is not None:
            t._by_secret.pop(token["SecretID"], None)
            t.table_index[ACL_TOKENS] = index
    return {"Index": index}


@_command
def acl_policy_upsert(t: AclTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Create or update policies; every policy's rules must parse."""
    policies = command.get("Policies")
    if not isinstance(policies, list) or not policies:
        raise InvalidAcl("must specify as least one policy")
    for number, policy in enumerate(policies):
        error = validate_policy(policy)
        if error:
            raise InvalidAcl(f"policy {number} invalid: {error}")
    for policy in policies:
        old = t.policies.get(policy["Name"])
        t.policies[policy["Name"]] = {
            "Name": policy["Name"], "Description": policy.get("Description", ""),
            "Rules": policy["Rules"], "CreateIndex": old["CreateIndex"] if old else index,
            "ModifyIndex": index}
    t.table_index[ACL_POLICIES] = index
    return {"Index": index}


@_command
def acl_policy_delete(t: AclTables, index: int, command: dict[str, Any]) -> dict[str, Any]:
    """Delete policies by name; unknown names are ignored."""
    names = command.get("Names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidAcl("must specify as least one policy")
    for name in names:
        if t.policies.pop(name, None) is not None:
            t.table_index[ACL_POLICIES] = index
    return {"Index": index}


COMMANDS: dict[str, Command] = {
    "acl_bootstrap": acl_bootstrap, "acl_token_upsert": acl_token_upsert,
    "acl_token_delete": acl_token_delete, "acl_policy_upsert": acl_policy_upsert,
    "acl_policy_delete": acl_policy_delete,
}


# --- queries (records are copies; Index is the table's index, at least 1) ----------------

Query = Callable[[AclTables, Mapping[str, Any]], dict[str, Any]]


def _string(query: Mapping[str, Any], key: str) -> str:
    value = query.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{query.get('Type')} needs a string {key}")
    return value


def _index(t: AclTables, table: str) -> int:
    return max(1, t.table_index.get(table, 0))


def acl_resolve(t: AclTables, query: Mapping[str, Any]) -> dict[str, Any]:
    """A secret's token (the anonymous token for ``""``; None if unknown) and its policies."""
    secret = _string(query, "SecretID")
    token = copy.deepcopy(ANONYMOUS_TOKEN) if secret == "" else copy.deepcopy(t.token_by_secret(secret))
    names = token["Policies"] if token is not None and token["Type"] == "client" else []
    policies = [copy.deepcopy(t.policies[name]) for name in sorted(set(names)) if name in t.policies]
    return {"Index": max(_index(t, ACL_TOKENS), _index(t, ACL_POLICIES)), "Token": token,
            "Policies": policies}


def acl_token_get(t: AclTables, query: Mapping[str, Any]) -> dict[str, Any]:
    return {"Index": _index(t, ACL_TOKENS),
            "Token": copy.deepcopy(t.tokens.get(_string(query, "AccessorID")))}


def acl_token_list(t: AclTables, query: Mapping[str, Any]) -> dict[str, Any]:
    """Every token, ordered by AccessorID (as Nomad's id index)."""
    return {"Index": _index(t, ACL_TOKENS),
            "Tokens": [copy.deepcopy(t.tokens[k]) for k in sorted(t.tokens)]}


def acl_policy_get(t: AclTables, query: Mapping[str, Any]) -> dict[str, Any]:
    return {"Index": _index(t, ACL_POLICIES),
            "Policy": copy.deepcopy(t.policies.get(_string(query, "Name")))}


def acl_policy_list(t: AclTables, query: Mapping[str, Any]) -> dict[str, Any]:
    """Every policy, ordered by name."""
    return {"Index": _index(t, ACL_POLICIES),
            "Policies": [copy.deepcopy(t.policies[k]) for k in sorted(t.policies)]}


def acl_bootstrap_status(t: AclTables, query: Mapping[str, Any]) -> dict[str, Any]:
    return {"Index": _index(t, ACL_BOOTSTRAP), "BootstrapIndex": t.bootstrap_index}


QUERIES: dict[str, Query] = {
    "acl_resolve": acl_resolve, "acl_token_get": acl_token_get, "acl_token_list": acl_token_list,
    "acl_policy_get": acl_policy_get, "acl_policy_list": acl_policy_list,
    "acl_bootstrap_status": acl_bootstrap_status,
}
