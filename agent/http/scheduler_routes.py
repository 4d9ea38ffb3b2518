"""Routes for the scheduler workers: ``/v1/agent/schedulers`` and ``/schedulers/config``.

``register_scheduler_routes(app, api)`` adds them to the app of ``agent.http.app``
(agent-api.md 3.10, 3.11). Checks run in Nomad's order: the server check first (a
client-only agent answers 400 "Server only endpoint" even to a wrong method), then the
method (405 "Invalid method"), then the ACL (GET agent:read, PUT/POST agent:write; an
unknown or expired token is 403, where Nomad 1.9.7 answers 500: agent-api.md 11 Q1),
then the body.

The PUT/POST body is decoded the way Go's ``json.Decoder`` fills Nomad's
``api.AgentSchedulerWorkerConfigRequest``, so the error texts match:

- only the first JSON value is read (anything after it is ignored);
- field names match case-insensitively (``NUM_SCHEDULERS`` works, ``NumSchedulers``
  does not), unknown fields are ignored, missing ones take zero values, the last of
  duplicate fields wins, ``null`` leaves a field at its zero value;
- a zero-length body is 400 "Invalid request: Request body is empty"; a syntax error
  or a wrong type is 400 "Invalid request: <Go's decoder message>", for example
  ``invalid character 'x' looking for beginning of value``, ``unexpected EOF`` or
  ``json: cannot unmarshal string into Go struct field
  AgentSchedulerWorkerConfigRequest.num_schedulers of type int``;
- values that fail validation are 400 "Invalid request" (raised by the facade).
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from quart import Response, request
from quart_trio import QuartTrio

from .api import ApiError
from .app import ALL_METHODS, AgentFacade, _require_method, json_response
from .auth import require

__all__ = ["register_scheduler_routes", "SchedulerFacade", "decode_scheduler_config",
           "GoJsonError", "go_json_decode"]

_STRUCT = "AgentSchedulerWorkerConfigRequest"
_INT64 = 2**63


class SchedulerFacade(AgentFacade, Protocol):
    """What these routes need of ``AgentAPI``."""

    def schedulers(self) -> dict[str, Any]: ...

    def scheduler_config(self) -> dict[str, Any]: ...

    def set_scheduler_config(self, num: int, enabled: list[str]) -> dict[str, Any]: ...


def register_scheduler_routes(app: QuartTrio, api: SchedulerFacade) -> None:
    """Add ``/v1/agent/schedulers`` and ``/v1/agent/schedulers/config`` (once per app)."""
    if app.extensions.get("shoal.scheduler_routes"):
        return
    app.extensions["shoal.scheduler_routes"] = True

    @app.route("/v1/agent/schedulers", methods=ALL_METHODS)
    async def schedulers() -> Response:
        _require_server_only(api)
        _require_method("GET")
        await require(api, "agent:read")     # unknown token: 403, not Nomad's 500 (spec 11 Q1)
        return json_response(schedulers_json(api.schedulers()))

    @app.route("/v1/agent/schedulers/config", methods=ALL_METHODS)
    async def scheduler_config() -> Response:
        _require_server_only(api)
        _require_method("GET", "PUT", "POST")
        await require(api, "agent:read" if request.method == "GET" else "agent:write")
        if request.method == "GET":
            return json_response(config_json(api.scheduler_config()))
        num, enabled = decode_scheduler_config(await request.get_data())
        try:
            result = api.set_scheduler_config(num, enabled)
        except ValueError:      # SchedulerConfigError passed through by the facade
            raise ApiError(400, "Invalid request") from None
        return json_response(config_json(result))


def _require_server_only(api: AgentFacade) -> None:
    if not api.is_server:
        raise ApiError(400, "Server only endpoint")


def schedulers_json(result: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``AgentSchedulerWorkersInfo``: server_id, then schedulers (never null)."""
    return {"server_id": result.get("server_id", ""),
            "schedulers": [worker_json(w) for w in result.get("schedulers") or []]}


def worker_json(worker: Any) -> dict[str, Any]:
    """One ``AgentSchedulerWorkerInfo`` from a dict or a ``scheduler.supervisor.WorkerView``."""
    get = worker.get if isinstance(worker, dict) else (lambda key: getattr(worker, key))
    return {"id": get("id"), "enabled_schedulers": list(get("enabled_schedulers") or []),
            "started": get("started"), "status": str(get("status")),
            "workload_status": str(get("workload_status"))}


def config_json(result: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``AgentSchedulerWorkerConfigResponse`` field order."""
    return {"server_id": result.get("server_id", ""),
            "num_schedulers": int(result.get("num_schedulers", 0)),
            "enabled_schedulers": list(result.get("enabled_schedulers") or [])}


# --- the request body, as Go's encoding/json decodes it ------------------------------


def decode_scheduler_config(data: bytes) -> tuple[int, list[str]]:
    """``(num_schedulers, enabled_schedulers)`` from a PUT body, or ApiError 400 with Go's text."""
    if len(data) == 0:
        raise ApiError(400, "Invalid request: Request body is empty")
    try:
        value = go_json_decode(data)
        return _fill_request(value)
    except GoJsonError as exc:
        raise ApiError(400, f"Invalid request: {exc}") from None


def _fill_request(value: Any) -> tuple[int, list[str]]:
    """Go's unmarshal into the request struct; the first type error wins."""
    num, enabled = 0, []
    if value is None:
        return num, enabled
    if not isinstance(value, _Object):
        raise GoJsonError(f"json: cannot unmarshal {_kind(value)} into Go value of type api.{_STRUCT}")
    for key, item in value:
        folded = key.upper().lower()
        if folded == "num_schedulers" and item is not None:
            num = _go_int(item)
        elif folded == "enabled_schedulers":
            enabled = _go_strings(item)
    return num, enabled


def _go_int(item: Any) -> int:
    if isinstance(item, _Number):
        if re.fullmatch(r"-?[0-9]+", item) and -_INT64 <= int(item) < _INT64:
            return int(item)
        kind = f"number {item}"
    else:
        kind = _kind(item)
    raise GoJsonError(f"json: cannot unmarshal {kind} into Go struct field {_STRUCT}.num_schedulers"
                      " of type int")


def _go_strings(item: Any) -> list[str]:
    if item is None:
        return []
    if isinstance(item, _Object) or not isinstance(item, list):
        raise GoJsonError(f"json: cannot unmarshal {_kind(item)} into Go struct field "
                          f"{_STRUCT}.enabled_schedulers of type []string")
    for element in item:
        if element is not None and (not isinstance(element, str) or isinstance(element, _Number)):
            raise GoJsonError(f"json: cannot unmarshal {_kind(element)} into Go struct field "
                              f"{_STRUCT}.enabled_schedulers of type string")
    return ["" if element is None else str(element) for element in item]


def _kind(value: Any) -> str:
    if isinstance(value, _Number):
        return "number"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _Object):
        return "object"
    return "array"


class GoJsonError(ValueError):
    """A body Go's decoder refuses; the message is Go's text."""


class _Number(str):
    """A JSON number kept as its literal text (Go decides per target type)."""


class _Object(list):
    """A JSON object as its (key, value) pairs in document order, duplicates kept."""


_WHITESPACE = b" \t\r\n"
_MAX_DEPTH = 10_000
_ESCAPES = b'bfnrt\\/"'
_HEX = b"0123456789abcdefABCDEF"


def _quote_char(c: int) -> str:
    """Go's ``quoteChar``: a byte as a single-quoted Go character literal."""
    if c == ord("'"):
        return "'\\''"
    if c == ord('"'):
        return "'\"'"
    char = chr(c)
    if char.isprintable():
        return f"'{char}'"
    named = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}
    if c in named:
        return f"'{named[c]}'"
    return f"'\\x{c:02x}'" if c < 0x80 else f"'\\u{c:04x}'"


def go_json_decode(data: bytes) -> Any:
    """The first JSON value of ``data`` as Go's ``json.Decoder`` reads it.

    Numbers come back as ``_Number`` (their literal), objects as ``_Object`` pairs.
    Raises ``GoJsonError`` with Go's message on a syntax error ("EOF" when there is no
    value at all, "unexpected EOF" when it is cut short). Iterative, so deep nesting
    cannot exhaust the Python stack.
    """
    return _Parser(data).parse()


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def parse(self) -> Any:
        self._skip()
        if self.pos == len(self.data):
            raise GoJsonError("EOF")
        stack: list[list[Any]] = []        # open containers: [container, pending key]
        while True:
            value, opened = self._begin_value(len(stack))
            if opened is not None:
                stack.append(opened)
                continue
            while True:                    # a value is complete: close what it completes
                if not stack:
                    return value
                container, key = stack[-1]
                container.append((key, value) if isinstance(container, _Object) else value)
                if not self._after_element(stack[-1]):
                    break
                value = stack.pop()[0]

    def _after_element(self, frame: list[Any]) -> bool:
        """After a container element: True when the container closed, False for a next element."""
        is_object = isinstance(frame[0], _Object)
        c = self._next_byte()
        if c == ord(","):
            self.pos += 1
            if is_object:
                frame[1] = self._key(self._next_byte())
            return False
        if c == ord("}" if is_object else "]"):
            self.pos += 1
            return True
        raise self._error(c, "after object key:value pair" if is_object else "after array element")

    def _begin_value(self, depth: int) -> tuple[Any, list[Any] | None]:
        c = self._next_byte()
        if c in (ord("{"), ord("[")) and depth == _MAX_DEPTH:
            raise self._error(c, "exceeded max depth")       # Go's maxNestingDepth
        if c == ord("{"):
            self.pos += 1
            c = self._next_byte()
            if c == ord("}"):
                self.pos += 1
                return _Object(), None
            return None, [_Object(), self._key(c)]
        if c == ord("["):
            self.pos += 1
            if self._next_byte() == ord("]"):
                self.pos += 1
                return [], None
            return None, [[], None]
        if c == ord('"'):
            return self._string(), None
        if c == ord("-") or ord("0") <= c <= ord("9"):
            return self._number(), None
        for word, value in ((b"true", True), (b"false", False), (b"null", None)):
            if c == word[0]:
                self._literal(word)
                return value, None
        raise self._error(c, "looking for beginning of value")

    def _key(self, c: int) -> str:
        """An object key and its colon, ``c`` being the byte where the key must start."""
        if c != ord('"'):
            raise self._error(c, "looking for beginning of object key string")
        key = self._string()
        c = self._next_byte()
        if c != ord(":"):
            raise self._error(c, "after object key")
        self.pos += 1
        return key

    def _string(self) -> str:
        start = self.pos
        self.pos += 1
        while True:
            c = self._byte()
            self.pos += 1
            if c == ord('"'):
                break
            if c == ord("\\"):
                escape = self._byte()
                self.pos += 1
                if escape == ord("u"):
                    for _ in range(4):
                        if self._byte() not in _HEX:
                            raise self._error(self._byte(), "in \\u hexadecimal character escape")
                        self.pos += 1
                elif escape not in _ESCAPES:
                    raise self._error(escape, "in string escape code")
            elif c < 0x20:
                raise self._error(c, "in string literal")
        raw = self.data[start:self.pos].decode("utf-8", errors="replace")
        return str(json.loads(raw))

    def _number(self) -> _Number:
        start = self.pos
        if self._byte() == ord("-"):
            self.pos += 1
            if not self._is_digit(self._byte()):
                raise self._error(self._byte(), "in numeric literal")
        if self._byte() == ord("0"):
            self.pos += 1
        else:
            self._digits()
        if self._peek() == ord("."):
            self.pos += 1
            if not self._is_digit(self._byte()):
                raise self._error(self._byte(), "after decimal point in numeric literal")
            self._digits()
        if self._peek() in (ord("e"), ord("E")):
            self.pos += 1
            if self._byte() in (ord("+"), ord("-")):
                self.pos += 1
            if not self._is_digit(self._byte()):
                raise self._error(self._byte(), "in exponent of numeric literal")
            self._digits()
        return _Number(self.data[start:self.pos].decode("ascii"))

    def _literal(self, word: bytes) -> None:
        self.pos += 1
        for expected in word[1:]:
            c = self._byte()
            if c != expected:
                raise self._error(c, f"in literal {word.decode()} (expecting {_quote_char(expected)})")
            self.pos += 1

    # byte access: `_byte` treats the end of input as "unexpected EOF", `_peek` does not

    def _digits(self) -> None:
        while self._is_digit(self._peek()):
            self.pos += 1

    @staticmethod
    def _is_digit(c: int) -> bool:
        return ord("0") <= c <= ord("9")

    def _peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise GoJsonError("unexpected EOF")
        return self.data[self.pos]

    def _skip(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] in _WHITESPACE:
            self.pos += 1

    def _next_byte(self) -> int:
        self._skip()
        return self._byte()

    @staticmethod
    def _error(c: int, context: str) -> GoJsonError:
        return GoJsonError(f"invalid character {_quote_char(c)} {context}")
