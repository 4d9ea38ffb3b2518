"""StateStore: Nomad Variables as a replicated state machine (commands, queries, snapshots)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.state import (StateStore, encode_command, validate_path, validate_variable,
                         variable_metadata)

T0 = 1_700_000_000_000_000_000


def upsert(path: str, items: dict[str, str] | None = None, *, cas: int | None = None,
           namespace: str = "default", time: int = T0) -> bytes:
    var = {"Namespace": namespace, "Path": path, "Items": items or {"k": "v"}}
    return encode_command({"Type": "var_upsert", "Var": var, "Cas": cas, "Time": time})


def delete(path: str, *, cas: int | None = None, namespace: str = "default") -> bytes:
    return encode_command({"Type": "var_delete", "Namespace": namespace, "Path": path, "Cas": cas})


def test_upsert_creates_then_updates_with_raft_indexes_and_times() -> None:
    """A create stamps Create/Modify index and time from the entry; an update keeps Create*."""
    store = StateStore()
    first = store.apply(3, upsert("app/db", {"user": "me"}, time=T0))
    assert first == {"Ok": True, "Var": {
        "Namespace": "default", "Path": "app/db", "CreateIndex": 3, "CreateTime": T0,
        "ModifyIndex": 3, "ModifyTime": T0, "Items": {"user": "me"}}}
    second = store.apply(5, upsert("app/db", {"user": "you"}, time=T0 + 7))
    assert second["Var"]["CreateIndex"] == 3 and second["Var"]["CreateTime"] == T0
    assert second["Var"]["ModifyIndex"] == 5 and second["Var"]["ModifyTime"] == T0 + 7
    assert store.query({"Type": "var_get", "Namespace": "default", "Path": "app/db"}) == {
        "Index": 5, "Var": second["Var"]}
    assert store.index == 5


@pytest.mark.parametrize(("existing", "cas", "ok"), [
    (False, 0, True),      # create-if-absent on absent
    (True, 0, False),      # create-if-absent on present
    (True, 2, True),       # matching ModifyIndex
    (True, 1, False),      # stale ModifyIndex
    (False, 2, False),     # expected a variable that is not there
])
def test_upsert_cas_table(existing: bool, cas: int, ok: bool) -> None:
    """Cas 0 means must-not-exist, n means ModifyIndex must be n; a conflict returns the current value."""
    store = StateStore()
    if existing:
        store.apply(2, upsert("a"))
    result = store.apply(9, upsert("a", {"x": "y"}, cas=cas))
    assert result["Ok"] is ok
    if not ok:
        assert result["Conflict"] == (store.get_variable("default", "a") if existing else None)
        assert store.index == 9
        expected_modify = 2 if existing else None
        current = store.get_variable("default", "a")
        assert (current["ModifyIndex"] if current else None) == expected_modify


@pytest.mark.parametrize(("existing", "cas", "ok"), [
    (False, None, True), (True, None, True), (False, 0, True), (True, 0, False),
    (True, 4, True), (True, 3, False), (False, 4, False)])
def test_delete_cas_table(existing: bool, cas: int | None, ok: bool) -> None:
    """Deletes follow Nomad's delete-cas rules; an absent variable deletes as a no-op."""
    store = StateStore()
    if existing:
        store.apply(4, upsert("a"))
    result = store.apply(6, delete("a", cas=cas))
    assert result["Ok"] is ok
    gone = store.get_variable("default", "a") is None
    assert gone == (ok or not existing)
    if ok and existing:
        assert store.table_index("variables") == 6


@pytest.mark.parametrize("path", ["a", "a/b-c_d~e", "nomad/jobs", "nomad/jobs/x/y",
                                  "nomad/job-templates/t", "x" * 128])
def test_valid_paths(path: str) -> None:
    """Paths Nomad accepts pass validation."""
    assert validate_path(path) is None


@pytest.mark.parametrize(("path", "message"), [
    ("", "variable requires path"),
    ("x" * 129, 'invalid path "' + "x" * 129 + '"'),
    ("a b", 'invalid path "a b"'),
    ("a.b", 'invalid path "a.b"'),
    ("/a", 'invalid path "/a"'),
    ("a/", 'invalid path "a/"'),
    ("a//b", 'invalid path "a//b"'),
    ("nomad", '"nomad" is a reserved top-level directory path'),
    ("nomad/other", 'only paths at "nomad/jobs"'),
    ("nomad/job-templates", '"nomad/job-templates" is a reserved directory path'),
    ("nomad/job-templates/a/b", '"nomad/job-templates" is a reserved directory path'),
])
def test_invalid_paths(path: str, message: str) -> None:
    """Bad paths are refused with Nomad's messages."""
    error = validate_path(path)
    assert error is not None and error.startswith(message)


@pytest.mark.parametrize(("var", "message"), [
    ({"Namespace": "default", "Path": "a", "Items": {}}, "empty variables are invalid"),
    ({"Namespace": "default", "Path": "a"}, "empty variables are invalid"),
    ({"Namespace": "default", "Path": "a", "Items": {"k": 1}}, "variable items must be strings"),
    ({"Namespace": "*", "Path": "a", "Items": {"k": "v"}}, 'can not target wildcard ("*")namespace'),
    ({"Namespace": "", "Path": "a", "Items": {"k": "v"}}, "invalid namespace ''"),
    ({"Namespace": "default", "Path": "a", "Items": {"k": "v" * 65536}},
     "variables are limited to 64KiB in total size"),
    ("nope", "variable must be an object"),
])
def test_invalid_variables(var: Any, message: str) -> None:
    """validate_variable names the first problem, in Nomad's wording."""
    assert validate_variable(var) == message


@pytest.mark.parametrize("data", [
    b"\xc1", b"", msgpack.packb([1, 2]), encode_command({"Type": "nope"}),
    encode_command({"Type": 5}),
    encode_command({"Type": "var_upsert", "Var": {"Namespace": "default", "Path": "/bad",
                                                  "Items": {"k": "v"}}, "Cas": None, "Time": T0}),
    encode_command({"Type": "var_upsert", "Var": {"Namespace": "default", "Path": "ok",
                                                  "Items": {"k": "v"}}, "Cas": -1, "Time": T0}),
    encode_command({"Type": "var_upsert", "Var": {"Namespace": "default", "Path": "ok",
                                                  "Items": {"k": "v"}}, "Cas": None}),
    encode_command({"Type": "var_delete", "Namespace": "default", "Path": 7, "Cas": None}),
])
def test_bad_commands_give_error_and_change_nothing(data: bytes) -> None:
    """Undecodable or invalid commands return {"Error"} and leave the tables as they were."""
    store = StateStore()
    store.apply(1, upsert("keep"))
    before = store.snapshot()
    result = store.apply(2, data)
    assert set(result) == {"Error"} and isinstance(result["Error"], str)
    assert store.index == 2
    assert msgpack.unpackb(store.snapshot())["Variables"] == msgpack.unpackb(before)["Variables"]
    assert store.table_index("variables") == 1


def test_apply_out_of_order_is_a_caller_bug() -> None:
    """Raft hands entries in index order; an older index trips an assertion."""
    store = StateStore()
    store.apply(5, upsert("a"))
    with pytest.raises(AssertionError):
        store.apply(5, upsert("b"))


def test_list_filters_by_namespace_and_prefix_sorted_metadata_only() -> None:
    """var_list returns metadata (no Items) sorted by path, filtered by prefix and namespace."""
    store = StateStore()
    for index, (ns, path) in enumerate([("default", "b/2"), ("default", "a"), ("other", "b/1"),
                                        ("default", "b/1")], start=1):
        store.apply(index, upsert(path, namespace=ns))
    listed = store.query({"Type": "var_list", "Namespace": "default", "Prefix": "b/"})
    assert [v["Path"] for v in listed["Vars"]] == ["b/1", "b/2"]
    assert listed["Index"] == 4
    assert all("Items" not in v for v in listed["Vars"])
    every = store.query({"Type": "var_list", "Namespace": "*", "Prefix": ""})
    assert [(v["Namespace"], v["Path"]) for v in every["Vars"]] == [
        ("default", "a"), ("default", "b/1"), ("default", "b/2"), ("other", "b/1")]
    assert list(every["Vars"][0]) == ["Namespace", "Path", "CreateIndex", "CreateTime",
                                      "ModifyIndex", "ModifyTime"]


def test_queries_on_empty_store_and_bad_queries() -> None:
    """An empty store reports index 1 and no variable; unknown or malformed queries raise ValueError."""
    store = StateStore()
    assert store.query({"Type": "var_get", "Namespace": "default", "Path": "a"}) == {
        "Index": 1, "Var": None}
    assert store.query({"Type": "var_list", "Namespace": "default", "Prefix": ""}) == {
        "Index": 1, "Vars": []}
    with pytest.raises(ValueError):
        store.query({"Type": "nope"})
    with pytest.raises(ValueError):
        store.query({"Type": "var_get", "Namespace": "default", "Path": 3})


def test_snapshot_round_trip_and_bad_snapshot() -> None:
    """restore(snapshot()) gives an equal store; garbage raises ValueError and keeps the state."""
    store = StateStore()
    store.apply(1, upsert("a", {"x": "1"}))
    store.apply(2, upsert("b"))
    store.apply(3, delete("b"))
    copy = StateStore()
    copy.restore(store.snapshot())
    assert copy.state_equal(store) and copy.index == 3
    assert copy.get_variable("default", "a") == store.get_variable("default", "a")
    for bad in (b"\xc1", msgpack.packb({"Version": 99}), msgpack.packb({"Version": 1})):
        with pytest.raises(ValueError):
            copy.restore(bad)
    assert copy.state_equal(store)


def test_returned_variables_are_copies() -> None:
    """Mutating a result never changes the store."""
    store = StateStore()
    result = store.apply(1, upsert("a", {"x": "1"}))
    result["Var"]["Items"]["x"] = "changed"
    assert store.get_variable("default", "a")["Items"] == {"x": "1"}
    assert variable_metadata(store.get_variable("default", "a"))["Path"] == "a"


# --- property: replicas that restore midway end equal --------------------------------

PATHS = st.sampled_from(["a", "b", "a/b", "c/d/e", "nomad/jobs/x", "bad//path", "nomad/x"])
NAMESPACES = st.sampled_from(["default", "prod"])
ITEMS = st.dictionaries(st.sampled_from(["k", "user", "pw"]), st.text(max_size=5), max_size=3)
CAS = st.one_of(st.none(), st.integers(min_value=0, max_value=12))
COMMANDS = st.one_of(
    st.builds(lambda ns, p, items, cas, t: encode_command(
        {"Type": "var_upsert", "Var": {"Namespace": ns, "Path": p, "Items": items},
         "Cas": cas, "Time": t}), NAMESPACES, PATHS, ITEMS, CAS,
        st.integers(min_value=0, max_value=2**62)),
    st.builds(lambda ns, p, cas: encode_command(
        {"Type": "var_delete", "Namespace": ns, "Path": p, "Cas": cas}), NAMESPACES, PATHS, CAS),
    st.binary(max_size=8),
)


@settings(max_examples=150, deadline=None)
@given(commands=st.lists(COMMANDS, max_size=30), cut=st.integers(min_value=0, max_value=30),
       gaps=st.lists(st.integers(min_value=1, max_value=3), min_size=30, max_size=30))
def test_replica_restored_midway_ends_equal(commands: list[bytes], cut: int, gaps: list[int]) -> None:
    """A store fed every command and one restored from its snapshot midway end equal, result for result."""
    leader, follower = StateStore(), StateStore()
    cut = min(cut, len(commands))
    index = 0
    for position, data in enumerate(commands):
        if position == cut:
            follower.restore(leader.snapshot())
        index += gaps[position]          # NOOP and configuration entries skip indexes
        expected = leader.apply(index, data)
        if position >= cut:
            assert follower.apply(index, data) == expected
    if cut == len(commands):
        follower.restore(leader.snapshot())
    assert follower.state_equal(leader)
    assert follower.snapshot() == leader.snapshot()
    for var in leader.query({"Type": "var_list", "Namespace": "*", "Prefix": ""})["Vars"]:
        assert var["CreateIndex"] <= var["ModifyIndex"] <= leader.index
        assert validate_path(var["Path"]) is None
