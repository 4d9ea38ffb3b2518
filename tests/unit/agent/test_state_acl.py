"""agent/state_acl.py through StateStore: bootstrap once, policies and tokens, snapshots, bad commands."""

from __future__ import annotations

import datetime

import pytest

from agent.cli_acl import format_token, format_token_list, go_time
from agent.state import StateStore, encode_command

ROOT = {"AccessorID": "00000000-0000-4000-8000-000000000001",
        "SecretID": "00000000-0000-4000-8000-000000000002", "Name": "Bootstrap Token",
        "Type": "management", "Global": True}
CLIENT = {"AccessorID": "00000000-0000-4000-8000-000000000003",
          "SecretID": "00000000-0000-4000-8000-000000000004", "Name": "reader", "Type": "client",
          "Policies": ["readers"]}


class Store:
    """A StateStore fed numbered entries, as Raft would."""

    def __init__(self) -> None:
        self.state = StateStore()
        self.index = 0

    def apply(self, **command: object) -> dict:
        self.index += 1
        return self.state.apply(self.index, encode_command(command))

    def query(self, **query: object) -> dict:
        return self.state.query(query)


def test_bootstrap_happens_once_with_nomads_message() -> None:
    """The first bootstrap writes the token; the next one names the reset index and changes nothing."""
    store = Store()
    first = store.apply(Type="acl_bootstrap", Token=ROOT, Time=5)
    assert first["Token"]["CreateIndex"] == 1 and first["Token"]["CreateTime"] == 5
    again = store.apply(Type="acl_bootstrap", Token=dict(ROOT, AccessorID=CLIENT["AccessorID"],
                                                         SecretID=CLIENT["SecretID"]), Time=6)
    assert again == {"Error": "ACL bootstrap already done (reset index: 1)"}
    assert [t["AccessorID"] for t in store.query(Type="acl_token_list")["Tokens"]] == [ROOT["AccessorID"]]
    assert store.query(Type="acl_bootstrap_status")["BootstrapIndex"] == 1


def test_policies_and_tokens_write_read_and_resolve() -> None:
    """Upserts keep CreateIndex; resolve finds a token by secret with its (existing) policies."""
    store = Store()
    assert "Error" not in store.apply(Type="acl_policy_upsert",
                                      Policies=[{"Name": "readers", "Rules": 'agent { policy = "read" }'}])
    store.apply(Type="acl_policy_upsert", Policies=[{"Name": "readers", "Description": "d",
                                                     "Rules": 'agent { policy = "write" }'}])
    policy = store.query(Type="acl_policy_get", Name="readers")["Policy"]
    assert (policy["CreateIndex"], policy["ModifyIndex"], policy["Description"]) == (1, 2, "d")
    store.apply(Type="acl_token_upsert", Tokens=[dict(CLIENT, Policies=["readers", "missing"])], Time=9)
    resolved = store.query(Type="acl_resolve", SecretID=CLIENT["SecretID"])
    assert resolved["Token"]["AccessorID"] == CLIENT["AccessorID"]
    assert [p["Name"] for p in resolved["Policies"]] == ["readers"]
    assert store.query(Type="acl_resolve", SecretID="nope")["Token"] is None
    anonymous = store.query(Type="acl_resolve", SecretID="")
    assert anonymous["Token"]["AccessorID"] == "anonymous" and anonymous["Policies"] == []
    store.apply(Type="acl_token_delete", AccessorIDs=[CLIENT["AccessorID"]])
    store.apply(Type="acl_policy_delete", Names=["readers"])
    assert store.query(Type="acl_token_get", AccessorID=CLIENT["AccessorID"])["Token"] is None
    assert store.query(Type="acl_policy_list")["Policies"] == []
    assert store.query(Type="acl_policy_list")["Index"] == 5


@pytest.mark.parametrize("command,error", [
    (dict(Type="acl_policy_upsert", Policies=[{"Name": "bad name", "Rules": 'agent { policy = "read" }'}]),
     "invalid name 'bad name'"),
    (dict(Type="acl_policy_upsert", Policies=[{"Name": "p", "Rules": 'agent { policy = "x" }'}]),
     "failed to parse rules: Invalid agent policy"),
    (dict(Type="acl_policy_upsert", Policies=[{"Name": "p", "Rules": 'node { policy = "read" }',
                                               "Description": "x" * 257}]), "description longer than 256"),
    (dict(Type="acl_policy_upsert", Policies=[]), "must specify as least one policy"),
    (dict(Type="acl_token_upsert", Tokens=[dict(CLIENT, Policies=[])], Time=1),
     "client token missing policies or roles"),
    (dict(Type="acl_token_upsert", Tokens=[dict(CLIENT, Type="root")], Time=1),
     "token type must be client or management"),
    (dict(Type="acl_token_upsert", Tokens=[dict(CLIENT, SecretID="short")], Time=1),
     "token SecretID must be a UUID"),
    (dict(Type="acl_token_upsert", Tokens=[dict(CLIENT, SecretID=ROOT["SecretID"])], Time=1),
     "token SecretID already in use"),
    (dict(Type="acl_token_upsert", Tokens=[CLIENT], Time=-1), "Time must be"),
    (dict(Type="acl_token_delete", AccessorIDs="x"), "must specify as least one token"),
])
def test_bad_commands_change_nothing(command: dict, error: str) -> None:
    """Every refused command answers {"Error": ...} and leaves the tables as they were."""
    store = Store()
    store.apply(Type="acl_bootstrap", Token=ROOT, Time=1)
    before = StateStore()
    before.restore(store.state.snapshot())
    result = store.apply(**command)
    assert error in result["Error"]
    assert store.state._acl.equal(before._acl)
    assert store.state.table_index("acl_token") == 1 and store.state.table_index("acl_policy") == 1


def test_snapshot_restores_acl_tables_and_old_snapshots_have_none() -> None:
    """restore(snapshot()) keeps tokens, policies, the secret index and the bootstrap mark."""
    store = Store()
    store.apply(Type="acl_bootstrap", Token=ROOT, Time=1)
    store.apply(Type="acl_policy_upsert", Policies=[{"Name": "readers", "Rules": 'node { policy = "read" }'}])
    store.apply(Type="acl_token_upsert", Tokens=[CLIENT], Time=2)
    copy = StateStore()
    copy.restore(store.state.snapshot())
    assert copy.state_equal(store.state)
    assert copy.query({"Type": "acl_resolve", "SecretID": CLIENT["SecretID"]})["Token"]["Name"] == "reader"
    again = copy.apply(4, encode_command({"Type": "acl_bootstrap", "Token": ROOT, "Time": 3}))
    assert again == {"Error": "ACL bootstrap already done (reset index: 1)"}
    assert StateStore().query({"Type": "acl_bootstrap_status"})["BootstrapIndex"] == 0


def test_cli_formats_tokens_as_nomad() -> None:
    """`shoal acl` prints the token block and the list table with Nomad's labels."""
    token = {"AccessorID": "a", "SecretID": "s", "Name": "n", "Type": "client", "Policies": ["p", "q"],
             "Global": False, "CreateTime": "2024-01-02T03:04:05.5Z", "CreateIndex": 7, "ModifyIndex": 8}
    assert format_token(token).splitlines() == [
        "Accessor ID  = a", "Secret ID    = s", "Name         = n", "Type         = client",
        "Global       = false", "Create Time  = 2024-01-02 03:04:05.5 +0000 UTC",
        "Expiry Time  = <none>", "Create Index = 7", "Modify Index = 8", "Policies     = [p q]"]
    assert go_time("2024-01-02T03:04:05Z") == "2024-01-02 03:04:05 +0000 UTC"
    now = datetime.datetime(2024, 1, 3, tzinfo=datetime.timezone.utc)
    table = format_token_list([dict(token, ExpirationTime="2024-01-02T04:00:00Z")], now)
    assert table.splitlines() == ["Name  Type    Global  Accessor ID  Expired",
                                  "n     client  false   a            true"]
    assert format_token_list([], now) == "No tokens found"
