"""agent/acl.py: Nomad's policy language parsed and checked, policies merged, capabilities answered."""

from __future__ import annotations

import pytest

from agent.acl import (MANAGEMENT_ACL, PolicyError, capabilities, compile_acl, parse_policy,
                       token_expired)


def acl_of(*rules: str):
    return compile_acl([parse_policy(text) for text in rules])


def test_every_block_nomad_accepts_parses() -> None:
    """All of Nomad's block types parse; levels and expanded capabilities are kept."""
    policy = parse_policy('''
        namespace "default" {
          policy = "read"
          capabilities = ["submit-job"]
          variables { path "app/*" { capabilities = ["read"] } }
        }
        namespace "prod-*" { policy = "write" }
        host_volume "data" { policy = "write" }
        node_pool "*" { policy = "read" }
        agent { policy = "read" }
        node { policy = "write" }
        operator { policy = "deny" }
        quota { policy = "read" }
        plugin { policy = "list" }
    ''')
    assert policy.levels == {"agent": "read", "node": "write", "operator": "deny", "quota": "read",
                             "plugin": "list"}
    assert {"read-job", "list-jobs", "submit-job"} <= policy.namespaces["default"]
    assert "dispatch-job" not in policy.namespaces["default"]
    assert policy.variables["default"]["app/*"] == {"read", "list"}     # read implies list
    assert policy.host_volumes["data"] == {"mount-readonly", "mount-readwrite"}


def test_json_rules_parse_like_hcl() -> None:
    """Rules starting with "{" are JSON, as in Nomad."""
    assert parse_policy('{"agent": {"policy": "write"}, "namespace": {"default": {"policy": "read"}}}') \
        == parse_policy('agent { policy = "write" }\nnamespace "default" { policy = "read" }')


@pytest.mark.parametrize("rules,message", [
    ('agent { policy = "admin" }', 'Invalid agent policy: &acl.AgentPolicy{Policy:"admin"}'),
    ('node { policy = "list" }', 'Invalid node policy: &acl.NodePolicy{Policy:"list"}'),
    ('operator { policy = "scale" }', 'Invalid operator policy: &acl.OperatorPolicy{Policy:"scale"}'),
    ('plugin { policy = "write" }', 'Invalid plugin policy: &acl.PluginPolicy{Policy:"write"}'),
    ('keyring { policy = "read" }', 'Unsupported block type "keyring"'),
    ('agent { policy = "read"\n level = 2 }', 'Unsupported argument or block "level" in "agent"'),
    ('agent { }', 'The argument "policy" is required in the "agent" block'),
    ('agent = "read"', '"agent" must be a block'),
    ('namespace "default" { policy = "admin" }', "Invalid namespace policy"),
    ('namespace "default" { capabilities = ["fly"] }', "Invalid namespace capability 'fly'"),
    ('namespace "a b" { policy = "read" }', "Invalid namespace name"),
    ('namespace "default" { variables { path "x" { capabilities = ["own"] } } }',
     "Invalid variable capability 'own' in namespace default"),
    ('namespace "default" { variables { } }', "Invalid variable policy: no variable paths"),
    ('agent { policy = ', "Failed to parse ACL Policy"),
    ('', "Invalid policy"),
    ('{"agent": ', "Failed to parse ACL Policy"),
])
def test_bad_rules_are_refused_naming_the_problem(rules: str, message: str) -> None:
    """Unknown blocks, bad levels or capabilities and syntax errors raise PolicyError."""
    with pytest.raises(PolicyError) as info:
        parse_policy(rules)
    assert message in str(info.value)


@pytest.mark.parametrize("levels,capability,allowed", [
    (["read"], "agent:read", True),
    (["read"], "agent:write", False),
    (["write"], "agent:read", True),
    (["read", "write"], "agent:write", True),        # the highest level wins
    (["write", "deny"], "agent:read", False),        # deny wins whatever the order
    (["deny", "write"], "agent:write", False),
    ([], "agent:read", False),                       # no rule: nothing
])
def test_merge_takes_the_highest_level_unless_one_denies(levels: list[str], capability: str,
                                                         allowed: bool) -> None:
    """Merging coarse blocks: deny wins, else the highest level (Nomad's NewACL)."""
    acl = acl_of(*(f'agent {{ policy = "{level}" }}' for level in levels), 'quota { policy = "read" }')
    assert acl.allows(capability) is allowed


def test_namespace_capabilities_union_glob_and_deny() -> None:
    """Namespace capabilities are unioned; a deny wipes them; exact names beat globs."""
    acl = acl_of('namespace "default" { policy = "read" }',
                 'namespace "default" { capabilities = ["submit-job"] }',
                 'namespace "prod-*" { policy = "write" }',
                 'namespace "*" { policy = "read" }',
                 'namespace "secret" { policy = "write" }', 'namespace "secret" { policy = "deny" }')
    assert acl.allows("namespace:default:submit-job") and acl.allows("namespace:default:read-job")
    assert not acl.allows("namespace:default:dispatch-job")
    assert acl.allows("namespace:prod-web:dispatch-job")       # closest glob: prod-*
    assert acl.allows("namespace:other:read-job") and not acl.allows("namespace:other:submit-job")
    assert not acl.allows("namespace:secret:read-job")


def test_variables_by_path_and_namespace_shorthand() -> None:
    """Path rules decide for their paths; plain namespace policies cover the rest (docs/acl.md)."""
    acl = acl_of('namespace "default" {\n policy = "read"\n'
                 ' variables { path "app/*" { capabilities = ["write"] }\n'
                 '             path "app/secret" { capabilities = ["deny"] } } }',
                 'namespace "ops" { policy = "write" }')
    assert acl.allows("variable:default:app/x:write") and not acl.allows("variable:default:app/x:read")
    assert not acl.allows("variable:default:app/secret:write")
    assert acl.allows("variable:default:other:read") and not acl.allows("variable:default:other:write")
    assert acl.allows("variable:ops:any:destroy")
    assert not acl.allows("variable:elsewhere:any:read")


def test_management_passes_everything_and_unknown_capabilities_are_bugs() -> None:
    """A management token is allowed every capability; a made-up capability raises."""
    for capability in ("agent:write", "node:write", "operator:write", "management",
                       "namespace:x:submit-job", "variable:x:y:destroy"):
        assert MANAGEMENT_ACL.allows(capability)
    assert not acl_of('agent { policy = "write" }').allows("management")
    with pytest.raises(ValueError):
        MANAGEMENT_ACL.allows("agent:fly")


def test_capabilities_of_tokens_and_expiry() -> None:
    """capabilities(): management tokens skip policies; client tokens merge theirs; expiry by clock."""
    records = [{"Name": "r", "Rules": 'node { policy = "read" }'}]
    assert capabilities({"Type": "management"}, []) is MANAGEMENT_ACL
    client = capabilities({"Type": "client", "Policies": ["r"]}, records)
    assert client.allows("node:read") and not client.allows("agent:read")
    assert not token_expired({"ExpirationTime": 0}, 10) and not token_expired({}, 10)
    assert token_expired({"ExpirationTime": 10}, 10) and not token_expired({"ExpirationTime": 11}, 10)
