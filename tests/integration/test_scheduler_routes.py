"""/v1/agent/schedulers and /schedulers/config against a fake facade over a real SupervisorCore (spec 3.10, 3.11)."""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.http.api import ApiError
from agent.http.app import create_app
from agent.http.scheduler_routes import GoJsonError, go_json_decode, register_scheduler_routes
from scheduler.errors import SchedulerConfigError
from scheduler.supervisor import SupervisorCore, WorkerStatus

from .helpers import TEXT, Answer, request_app

LOG = logging.LoggerAdapter(logging.getLogger("test.scheduler_routes"), {"node": "s1"})
DEFAULT = ["service", "batch", "system", "sysbatch", "_core"]
STARTED = "2021-12-21T19:25:00.91189Z"
PREFIX = "Invalid request: "
STRUCT = "AgentSchedulerWorkerConfigRequest"


class FakeAgent:
    """A server agent whose scheduler facade reads and drives a real SupervisorCore."""

    def __init__(self, *, is_server: bool = True, num: int = 4) -> None:
        self.is_server = is_server
        counter = itertools.count(1)
        self.core = SupervisorCore(num, DEFAULT, new_id=lambda: f"id-{next(counter)}", log=LOG)
        self.core.start_pool(STARTED)
        self.calls = 0

    def members(self) -> dict[str, Any]:
        return {"Members": []}

    async def join(self, addresses: Sequence[str]) -> dict[str, Any]:
        return {"num_joined": 0, "error": ""}

    async def force_leave(self, node: str, prune: bool) -> None:
        return None

    def metrics(self) -> dict[str, Any]:
        return {}

    def run_loops(self) -> None:
        """What the worker tasks would do: start and reach a checkpoint."""
        for view in self.core.take_started():
            self.core.loop_started(view.id)
        for view in self.core.workers():
            self.core.checkpoint(view.id)

    def schedulers(self) -> dict[str, Any]:
        return {"server_id": "s1.global",
                "schedulers": [{"id": w.id, "enabled_schedulers": list(w.enabled_schedulers),
                                "started": w.started, "status": w.status,
                                "workload_status": w.workload_status} for w in self.core.workers()]}

    def scheduler_config(self) -> dict[str, Any]:
        return {"server_id": "s1.global", "num_schedulers": self.core.num_schedulers,
                "enabled_schedulers": list(self.core.enabled_schedulers)}

    def set_scheduler_config(self, num: int, enabled: list[str]) -> dict[str, Any]:
        self.calls += 1
        try:
            self.core.reconfigure(num, enabled, "2024-01-01T00:00:00Z")
        except SchedulerConfigError:
            raise ApiError(400, "Invalid request") from None
        return self.scheduler_config()


async def call(api: FakeAgent, method: str, path: str, body: Any = None, *,
               raw: bytes | None = None) -> Answer:
    app = create_app(api)
    register_scheduler_routes(app, api)
    register_scheduler_routes(app, api)           # a second registration is a no-op
    return await request_app(app, method, path, body, raw=raw)


async def put(api: FakeAgent, body: Any = None, *, raw: bytes | None = None,
              method: str = "PUT") -> Answer:
    return await call(api, method, "/v1/agent/schedulers/config", body, raw=raw)


# --- GET /v1/agent/schedulers -------------------------------------------------------


async def test_schedulers_lists_the_pool_in_nomads_shape() -> None:
    """200 compact JSON: server_id (member name), then each worker's five fields in order."""
    api = FakeAgent(num=2)
    answer = await call(api, "GET", "/v1/agent/schedulers")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    assert answer.body == (
        b'{"server_id":"s1.global","schedulers":['
        b'{"id":"id-1","enabled_schedulers":["service","batch","system","sysbatch","_core"],'
        b'"started":"2021-12-21T19:25:00.91189Z","status":"Starting","workload_status":"UnknownStatus"},'
        b'{"id":"id-2","enabled_schedulers":["service","batch","system","sysbatch","_core"],'
        b'"started":"2021-12-21T19:25:00.91189Z","status":"Starting","workload_status":"UnknownStatus"}]}')


async def test_schedulers_on_a_leader_show_three_quarters_paused() -> None:
    """A leader with 4 workers lists 3 Paused/Paused and one Started/Running (5.6.3)."""
    api = FakeAgent(num=4)
    api.core.set_leader(True)
    api.run_loops()
    workers = (await call(api, "GET", "/v1/agent/schedulers")).json["schedulers"]
    assert [(w["status"], w["workload_status"]) for w in workers] == [("Paused", "Paused")] * 3 + [
        ("Started", "Running")]


async def test_schedulers_empty_pool_is_an_empty_list() -> None:
    """With num_schedulers 0 the list is [] (never null)."""
    api = FakeAgent(num=0)
    assert (await call(api, "GET", "/v1/agent/schedulers")).json == {"server_id": "s1.global",
                                                                      "schedulers": []}


async def test_schedulers_pretty() -> None:
    """?pretty indents by 4 and ends with a newline."""
    api = FakeAgent(num=0)
    answer = await call(api, "GET", "/v1/agent/schedulers?pretty")
    assert answer.body == b'{\n    "server_id": "s1.global",\n    "schedulers": []\n}\n'


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_schedulers_wrong_method_is_405(method: str) -> None:
    """Anything but GET on /schedulers is 405 "Invalid method" in plain text."""
    answer = await call(FakeAgent(), method, "/v1/agent/schedulers")
    assert answer.status == 405
    if method != "HEAD":
        assert answer.text == "Invalid method"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/agent/schedulers"), ("DELETE", "/v1/agent/schedulers"),
    ("GET", "/v1/agent/schedulers/config"), ("PUT", "/v1/agent/schedulers/config"),
    ("POST", "/v1/agent/schedulers/config"), ("DELETE", "/v1/agent/schedulers/config"),
])
async def test_client_only_agent_is_server_only_endpoint_first(method: str, path: str) -> None:
    """A client-only agent answers 400 "Server only endpoint", before the method check (spec 9)."""
    api = FakeAgent(is_server=False)
    answer = await call(api, method, path, raw=b"not json")
    assert (answer.status, answer.text) == (400, "Server only endpoint")
    assert api.calls == 0


# --- GET /v1/agent/schedulers/config ------------------------------------------------


async def test_config_get_shows_values_in_force() -> None:
    """GET answers server_id, num_schedulers, enabled_schedulers in Nomad's order."""
    answer = await call(FakeAgent(num=4), "GET", "/v1/agent/schedulers/config")
    assert answer.body == (b'{"server_id":"s1.global","num_schedulers":4,'
                           b'"enabled_schedulers":["service","batch","system","sysbatch","_core"]}')


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_config_wrong_method_is_405(method: str) -> None:
    """Only GET, PUT and POST are accepted on /schedulers/config."""
    answer = await call(FakeAgent(), method, "/v1/agent/schedulers/config")
    assert answer.status == 405
    if method != "HEAD":
        assert answer.text == "Invalid method"


# --- PUT|POST /v1/agent/schedulers/config: effects ----------------------------------


@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_config_update_rebuilds_the_pool(method: str) -> None:
    """A change answers the values in force and the pool gets new ids; GET shows the change."""
    api = FakeAgent(num=2)
    old = {w.id for w in api.core.workers()}
    answer = await put(api, {"num_schedulers": 3, "enabled_schedulers": ["_core", "batch"]},
                       method=method)
    assert answer.json == {"server_id": "s1.global", "num_schedulers": 3,
                           "enabled_schedulers": ["_core", "batch"]}
    workers = (await call(api, "GET", "/v1/agent/schedulers")).json["schedulers"]
    assert len(workers) == 3 and not {w["id"] for w in workers} & old
    assert (await call(api, "GET", "/v1/agent/schedulers/config")).json == answer.json


async def test_config_update_with_same_values_changes_nothing() -> None:
    """The same count and the same list in another order keep the pool (and its ids)."""
    api = FakeAgent(num=2)
    before = api.core.workers()
    answer = await put(api, {"num_schedulers": 2, "enabled_schedulers": list(reversed(DEFAULT))})
    assert answer.json["enabled_schedulers"] == DEFAULT     # the values in force: the old ones
    assert api.core.workers() == before


async def test_config_get_response_round_trips_server_id_ignored() -> None:
    """A GET body sent back unchanged (server_id included) is accepted and changes nothing."""
    api = FakeAgent(num=2)
    got = (await call(api, "GET", "/v1/agent/schedulers/config")).json
    got["server_id"] = "someone-else.global"
    answer = await put(api, got)
    assert answer.status == 200 and answer.json["server_id"] == "s1.global"


async def test_config_field_names_fold_case_but_keep_underscores() -> None:
    """NUM_SCHEDULERS matches; NumSchedulers is an unknown field, so num_schedulers is 0."""
    api = FakeAgent(num=2)
    answer = await put(api, {"NUM_SCHEDULERS": 5, "Enabled_Schedulers": ["_core"]})
    assert answer.json["num_schedulers"] == 5 and answer.json["enabled_schedulers"] == ["_core"]
    answer = await put(api, {"NumSchedulers": 3, "enabled_schedulers": ["_core"]})
    assert answer.json["num_schedulers"] == 0
    assert (await call(api, "GET", "/v1/agent/schedulers")).json["schedulers"] == []


async def test_config_unknown_fields_ignored_and_missing_are_zero() -> None:
    """Unknown fields are ignored; a missing num_schedulers means 0 (allowed)."""
    api = FakeAgent(num=2)
    answer = await put(api, {"enabled_schedulers": ["_core"], "bogus": [1, {"x": None}]})
    assert answer.json["num_schedulers"] == 0


async def test_config_missing_enabled_list_is_invalid() -> None:
    """A missing enabled_schedulers is an empty list, which fails validation."""
    answer = await put(FakeAgent(), {"num_schedulers": 2})
    assert (answer.status, answer.text) == (400, "Invalid request")


async def test_config_duplicates_and_large_counts_accepted() -> None:
    """Duplicates are accepted and there is no upper limit on num_schedulers."""
    api = FakeAgent(num=1)
    answer = await put(api, {"num_schedulers": 40, "enabled_schedulers": ["_core", "_core", "batch"]})
    assert answer.json["enabled_schedulers"] == ["_core", "_core", "batch"]
    assert len(api.core.workers()) == 40


async def test_config_last_duplicate_field_wins_and_null_keeps_zero() -> None:
    """As Go's decoder: a repeated field's last value wins; null leaves a field unchanged."""
    raw = b'{"num_schedulers": 1, "num_schedulers": 3, "NUM_SCHEDULERS": null, "enabled_schedulers": ["_core"]}'
    assert (await put(FakeAgent(), raw=raw)).json["num_schedulers"] == 3


async def test_config_rebuild_on_leader_pauses_new_pool() -> None:
    """After a PUT on the leader the new pool's leader slice is paused at once."""
    api = FakeAgent(num=2)
    api.core.set_leader(True)
    await put(api, {"num_schedulers": 8, "enabled_schedulers": DEFAULT})
    workers = (await call(api, "GET", "/v1/agent/schedulers")).json["schedulers"]
    assert [w["status"] for w in workers].count(str(WorkerStatus.PAUSING)) == 6


async def test_config_only_first_json_value_is_read() -> None:
    """Bytes after the first JSON value are ignored, as json.Decoder.Decode does."""
    raw = b'{"num_schedulers": 1, "enabled_schedulers": ["_core"]} trailing garbage {'
    assert (await put(FakeAgent(), raw=raw)).json["num_schedulers"] == 1


# --- PUT|POST /v1/agent/schedulers/config: errors ------------------------------------


async def test_config_empty_body() -> None:
    """A zero-length body is 400 "Invalid request: Request body is empty"."""
    answer = await put(FakeAgent(), raw=b"")
    assert (answer.status, answer.text) == (400, "Invalid request: Request body is empty")


@pytest.mark.parametrize(("raw", "message"), [
    (b"   \n", "EOF"),
    (b"{", "unexpected EOF"),
    (b'{"num_schedulers": 2', "unexpected EOF"),
    (b"not json", "invalid character 'o' in literal null (expecting 'u')"),
    (b"x", "invalid character 'x' looking for beginning of value"),
    (b'{"num_schedulers": 12 "enabled_schedulers": []}',       # the docs' sample (section 10)
     "invalid character '\"' after object key:value pair"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b"{'a': 1}", "invalid character '\\'' looking for beginning of object key string"),
    (b'{"a": [1 2]}', "invalid character '2' after array element"),
    (b'{"a": -x}', "invalid character 'x' in numeric literal"),
    (b'{"a": 1.}', "invalid character '}' after decimal point in numeric literal"),
    (b'{"a": 1e}', "invalid character '}' in exponent of numeric literal"),
    (b'{"a": "\\q"}', "invalid character 'q' in string escape code"),
    (b'{"a": "\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"),
    (b'{"a": "\x01"}', "invalid character '\\x01' in string literal"),
    (b'{"a": tru}', "invalid character '}' in literal true (expecting 'e')"),
    (b'{"a": NaN}', "invalid character 'N' looking for beginning of value"),
    (b"[" * 10001, "invalid character '[' exceeded max depth"),
])
async def test_config_malformed_json(raw: bytes, message: str) -> None:
    """Syntax errors are 400 "Invalid request: " plus Go's decoder message."""
    api = FakeAgent()
    answer = await put(api, raw=raw)
    assert (answer.status, answer.text) == (400, PREFIX + message)
    assert api.calls == 0


@pytest.mark.parametrize(("body", "message"), [
    (b'{"num_schedulers": "2", "enabled_schedulers": ["_core"]}',
     f"json: cannot unmarshal string into Go struct field {STRUCT}.num_schedulers of type int"),
    (b'{"num_schedulers": 1.5}',
     f"json: cannot unmarshal number 1.5 into Go struct field {STRUCT}.num_schedulers of type int"),
    (b'{"num_schedulers": 1e2}',
     f"json: cannot unmarshal number 1e2 into Go struct field {STRUCT}.num_schedulers of type int"),
    (b'{"num_schedulers": 9223372036854775808}',
     f"json: cannot unmarshal number 9223372036854775808 into Go struct field {STRUCT}.num_schedulers"
     " of type int"),
    (b'{"num_schedulers": true}',
     f"json: cannot unmarshal bool into Go struct field {STRUCT}.num_schedulers of type int"),
    (b'{"enabled_schedulers": "_core"}',
     f"json: cannot unmarshal string into Go struct field {STRUCT}.enabled_schedulers of type []string"),
    (b'{"enabled_schedulers": {"a": 1}}',
     f"json: cannot unmarshal object into Go struct field {STRUCT}.enabled_schedulers of type []string"),
    (b'{"enabled_schedulers": ["_core", 7]}',
     f"json: cannot unmarshal number into Go struct field {STRUCT}.enabled_schedulers of type string"),
    (b'{"enabled_schedulers": [["_core"]], "num_schedulers": "x"}',     # the first error wins
     f"json: cannot unmarshal array into Go struct field {STRUCT}.enabled_schedulers of type string"),
    (b"[1, 2]", f"json: cannot unmarshal array into Go value of type api.{STRUCT}"),
    (b"42", f"json: cannot unmarshal number into Go value of type api.{STRUCT}"),
])
async def test_config_wrong_types(body: bytes, message: str) -> None:
    """Wrong types are 400 "Invalid request: " plus Go's UnmarshalTypeError text."""
    api = FakeAgent()
    answer = await put(api, raw=body)
    assert (answer.status, answer.text) == (400, PREFIX + message)
    assert api.calls == 0


@pytest.mark.parametrize("body", [
    {"num_schedulers": 2, "enabled_schedulers": ["service"]},        # spec section 9 example
    {"num_schedulers": -1, "enabled_schedulers": DEFAULT},
    {"num_schedulers": 2, "enabled_schedulers": ["_core", "all"]},
    {"num_schedulers": 2, "enabled_schedulers": []},
    {"num_schedulers": 2, "enabled_schedulers": ["_core", None]},    # null element: "" (unknown)
    None,                                                             # JSON null: zero values
])
async def test_config_validation_failures_change_nothing(body: Any) -> None:
    """Invalid values are 400 "Invalid request" with no detail, and the pool is unchanged."""
    api = FakeAgent(num=2)
    before = api.core.workers()
    answer = await put(api, raw=json.dumps(body).encode())
    assert (answer.status, answer.text) == (400, "Invalid request")
    assert api.core.workers() == before and api.core.num_schedulers == 2


# --- the decoder itself -------------------------------------------------------------


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_go_json_error(data: bytes) -> None:
    """Any body either decodes or raises GoJsonError, never another exception."""
    try:
        go_json_decode(data)
    except GoJsonError:
        pass


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20)


def _plain(value: Any) -> Any:
    """go_json_decode's result in json.loads terms (numbers parsed, objects as dicts)."""
    if isinstance(value, str) and type(value).__name__ == "_Number":
        return json.loads(value)
    if type(value).__name__ == "_Object":
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@given(JSON_VALUES, st.sampled_from(["", " ", "\n\t "]))
def test_valid_json_decodes_like_the_stdlib(value: Any, space: str) -> None:
    """Whatever json.dumps writes, go_json_decode reads back to the same value."""
    text = json.dumps(value, indent=1 if space else None)
    assert _plain(go_json_decode((space + text + space).encode())) == json.loads(text)
