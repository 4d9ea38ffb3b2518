"""hclog text and JSON lines from Python log records (agent/logfmt.py, agent-api.md 3.8)."""

from __future__ import annotations

import datetime
import json
import logging
import sys

import pytest

from agent.logfmt import (OFF, TRACE, HclogFormatter, format_json, format_text, go_quote,
                          level_bracket, parse_monitor_level, split_fields)

UTC = datetime.timezone.utc
PLUS2 = datetime.timezone(datetime.timedelta(hours=2))
MINUS530 = datetime.timezone(-datetime.timedelta(hours=5, minutes=30))
# 2024-05-01T12:00:00.123456Z
CREATED = datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC).timestamp()


def record(message: str, *args: object, level: int = logging.INFO, name: str = "agent.runtime",
           exc_info: object = None) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, "/src/shoal/agent/runtime.py", 42, message, args,
                            exc_info)  # type: ignore[arg-type]
    rec.created = CREATED
    return rec


def test_text_line_has_time_level_module_message_and_fields() -> None:
    """A shoal-style message becomes hclog's `<time> [INFO]  module: message: k=v` line."""
    line = format_text(record("join completed num_joined=%d", 2), tz=UTC)
    assert line == "2024-05-01T12:00:00.123Z [INFO]  agent.runtime: join completed: num_joined=2\n"


@pytest.mark.parametrize("level,token", [
    (TRACE, "[TRACE]"), (logging.DEBUG, "[DEBUG]"), (logging.INFO, "[INFO] "),
    (logging.WARNING, "[WARN] "), (logging.ERROR, "[ERROR]"), (logging.CRITICAL, "[ERROR]"),
])
def test_level_tokens_are_padded_to_one_width(level: int, token: str) -> None:
    """INFO and WARN carry a trailing space so every token is seven characters wide."""
    assert level_bracket(level) == token
    line = format_text(record("hello", level=level), tz=UTC)
    assert line == f"2024-05-01T12:00:00.123Z {token} agent.runtime: hello\n"


def test_no_fields_means_no_colon_after_the_message() -> None:
    """The `: key=value` part appears only when there are fields."""
    assert format_text(record("serving"), tz=UTC).endswith("agent.runtime: serving\n")


def test_numeric_zone_in_text_and_json() -> None:
    """Text time uses `+0200`, JSON time `+02:00`; negative zones too; UTC is `Z`."""
    assert format_text(record("x"), tz=PLUS2).startswith("2024-05-01T14:00:00.123+0200 ")
    assert format_text(record("x"), tz=MINUS530).startswith("2024-05-01T06:30:00.123-0530 ")
    entry = json.loads(format_json(record("x"), tz=PLUS2))
    assert entry["@timestamp"] == "2024-05-01T14:00:00.123456+02:00"
    assert json.loads(format_json(record("x"), tz=UTC))["@timestamp"] == "2024-05-01T12:00:00.123456Z"


def test_location_follows_the_level_token() -> None:
    """With include_location, ` dir/file.py:line:` (last two path segments) follows the level."""
    line = format_text(record("hello a=1"), include_location=True, tz=UTC)
    assert line == "2024-05-01T12:00:00.123Z [INFO]  agent/runtime.py:42: agent.runtime: hello: a=1\n"


def test_root_logger_has_no_module() -> None:
    """The root logger is unnamed: no `module: ` in text, no @module in JSON."""
    assert format_text(record("hi", name="root"), tz=UTC) == "2024-05-01T12:00:00.123Z [INFO]  hi\n"
    assert "@module" not in json.loads(format_json(record("hi", name="root"), tz=UTC))


def test_values_with_whitespace_or_quotes_are_go_quoted() -> None:
    """Whitespace, a double quote or a control character make a value quoted with Go's escapes."""
    line = format_text(record("join failed error=%s peer=%s", 'dial "x": refused\tnow', "1.2.3.4:1"),
                       tz=UTC)
    assert line.endswith(': join failed: error="dial \\"x\\": refused\\tnow" peer=1.2.3.4:1\n')
    assert line.count("\n") == 1


@pytest.mark.parametrize("value,quoted", [
    ("a b", '"a b"'), ('say "hi"', '"say \\"hi\\""'), ("line1\nline2", '"line1\\nline2"'),
    ("back\\slash", '"back\\\\slash"'), ("\x01", '"\\x01"'), ("é ü", '"é ü"'),
    ("\u200b", '"\\u200b"'),
])
def test_go_quote(value: str, quoted: str) -> None:
    """go_quote escapes as Go's strconv.Quote does, keeping printable non-ASCII."""
    assert go_quote(value) == quoted


@pytest.mark.parametrize("message,head,fields", [
    ("join completed num_joined=2", "join completed", [("num_joined", "2")]),
    ("rpc connection dropped peer=1.2.3.4:5 reason=oversized detail=bad frame",
     "rpc connection dropped", [("peer", "1.2.3.4:5"), ("reason", "oversized"), ("detail", "bad frame")]),
    ("no fields here", "no fields here", []),
    ("key=value only", "key=value only", []),            # nothing before the first key: no split
    ("GET http://x/?a=b done", "GET http://x/?a=b done", []),  # '=' inside a word is not a key
    ("member joined name=s1.global addr=127.0.0.1:4648", "member joined",
     [("name", "s1.global"), ("addr", "127.0.0.1:4648")]),
    ("join failed retry=1.0s error='2 errors occurred'", "join failed",
     [("retry", "1.0s"), ("error", "'2 errors occurred'")]),
    ("empty value key= next=1", "empty value", [("key", ""), ("next", "1")]),
    ("digits first 1x=2", "digits first 1x=2", []),
    ("gossip fact JoinFinished(join_id=1, num_joined=1, errors=())",
     "gossip fact JoinFinished(join_id=1, num_joined=1, errors=())", []),
    ("fact seen fact=Fact(a=1, b=[c=2]) n=3", "fact seen", [("fact", "Fact(a=1, b=[c=2])"), ("n", "3")]),
    ("join failed error='a x=1 b' retry=2s", "join failed", [("error", "'a x=1 b'"), ("retry", "2s")]),
    ("rpc: can't find method name=x", "rpc: can't find method", [("name", "x")]),
    ('quoted error="say \\"k=v\\"" n=1', "quoted", [("error", '"say \\"k=v\\""'), ("n", "1")]),
])
def test_split_fields(message: str, head: str, fields: list[tuple[str, str]]) -> None:
    """Trailing `key=value` pairs become fields; the phrase before them is the message."""
    assert split_fields(message) == (head, fields)


def test_json_line_is_sorted_compact_and_carries_fields() -> None:
    """JSON lines: keys sorted as Go writes a map, fields as strings, one object per line."""
    text = format_json(record("join completed num_joined=%d", 2, level=logging.WARNING), tz=UTC)
    assert text == ('{"@level":"warn","@message":"join completed","@module":"agent.runtime",'
                    '"@timestamp":"2024-05-01T12:00:00.123456Z","num_joined":"2"}\n')


def test_json_caller_and_html_escapes() -> None:
    """@caller is the full path with the line; <, > and & are escaped like Go's encoder."""
    text = format_json(record("compare a<b&c>d"), include_location=True, tz=UTC)
    assert "\\u003c" in text and "\\u0026" in text and "\\u003e" in text and "<" not in text
    entry = json.loads(text)
    assert entry["@caller"] == "/src/shoal/agent/runtime.py:42"
    assert entry["@message"] == "compare a<b&c>d"


def test_exception_traceback_follows_the_line() -> None:
    """log.exception's traceback follows the text line, and is `stacktrace` in JSON."""
    try:
        raise ValueError("boom")
    except ValueError:
        info = sys.exc_info()
    rec = record("handler failed method=%s", "Agent.Monitor", level=logging.ERROR, exc_info=info)
    lines = format_text(rec, tz=UTC).splitlines()
    assert lines[0].endswith("[ERROR] agent.runtime: handler failed: method=Agent.Monitor")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"
    entry = json.loads(format_json(rec, tz=UTC))
    assert entry["stacktrace"].rstrip().endswith("ValueError: boom")


@pytest.mark.parametrize("text,level", [
    ("info", logging.INFO), ("INFO", logging.INFO), ("  Debug ", logging.DEBUG),
    ("trace", TRACE), ("warn", logging.WARNING), ("error", logging.ERROR), ("off", OFF),
    ("verbose", None), ("warning", None), ("", None), ("err", None),
])
def test_monitor_levels(text: str, level: int | None) -> None:
    """hclog's level names, trimmed and case-insensitive; anything else is unknown."""
    assert parse_monitor_level(text) == level


def test_formatter_leaves_the_newline_to_the_handler() -> None:
    """HclogFormatter is the stderr formatter: same line, without the final newline."""
    rec = record("hello a=1")
    assert HclogFormatter(tz=UTC).format(rec) == format_text(rec, tz=UTC)[:-1]
    assert json.loads(HclogFormatter(json=True, tz=UTC).format(rec))["a"] == "1"
