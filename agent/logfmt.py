"""hclog's two line formats for Python log records: text and JSON (agent-api.md 3.8).

Nomad's agent writes its log with HashiCorp's ``go-hclog``; ``/v1/agent/monitor`` and
the agent's stderr carry those lines, so shoal writes the same shapes:

* text: ``<time> <LEVEL> <module>: <message>: key=value key=value\\n``

  - ``<time>``: local time, millisecond precision, numeric zone (hclog's
    ``2006-01-02T15:04:05.000Z0700``): ``2024-05-01T12:00:00.123Z`` in UTC,
    ``2024-05-01T14:00:00.123+0200`` elsewhere;
  - ``<LEVEL>``: ``[TRACE]``, ``[DEBUG]``, ``[INFO] ``, ``[WARN] ``, ``[ERROR]`` (INFO and
    WARN padded to the same width, so two spaces follow them);
  - with ``include_location``, `` <dir>/<file>.py:<line>:`` follows the level token
    (hclog keeps the last two path segments);
  - ``<module>: `` is the logger name, left out for the root logger;
  - ``: key=value...`` only when the record has fields; a value holding whitespace, a
    double quote or an unprintable character is double-quoted with Go's escapes
    (``strconv.Quote``), so one entry stays one line;
  - a traceback (``log.exception``) follows the line, as hclog writes a stack trace.

* JSON: one object per line, keys sorted (Go encodes a map so):
  ``@level`` (``trace``...``error``), ``@message``, ``@module`` (left out for the root
  logger), ``@timestamp`` (microseconds, ``2024-05-01T12:00:00.123456Z`` or
  ``+02:00``), ``@caller`` (``/full/path.py:123``, only with ``include_location``),
  ``stacktrace`` (a traceback, when there is one), and one key per field. ``<``, ``>``
  and ``&`` are written ``\\u003c``, ``\\u003e``, ``\\u0026`` as Go's encoder does.

Fields. hclog takes key/value pairs as arguments; shoal's modules write them into the
message instead, as ``"short phrase key=value key=value"`` (STYLE.md 8). ``split_fields``
cuts the trailing pairs off: a key is a word of letters, digits, ``_ . - /`` that does
not start with a digit, preceded by whitespace and followed by ``=``, outside brackets
and quotes (so a logged ``repr`` such as ``Fact(a=1, b='x y')`` stays whole); its value
runs to the next key. A message without such a pair, or one that starts with a pair,
has no fields. Values stay strings (JSON included).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import traceback

__all__ = ["HclogFormatter", "MONITOR_LEVELS", "OFF", "TRACE", "format_json", "format_text", "go_json", "go_quote",
           "json_time", "level_bracket", "level_name", "parse_monitor_level", "split_fields",
           "text_time"]

TRACE = 5
"""shoal's TRACE level number (``agent.config.LOG_LEVELS["TRACE"]``)."""

OFF = 100
"""A level above every record: ``log_level=off`` streams nothing."""

MONITOR_LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO,
                  "warn": logging.WARNING, "error": logging.ERROR, "off": OFF}
"""hclog's ``LevelFromString`` names (trimmed, lower-cased) -> Python level numbers."""

_BRACKETS = {"TRACE": "[TRACE]", "DEBUG": "[DEBUG]", "INFO": "[INFO] ", "WARN": "[WARN] ",
             "ERROR": "[ERROR]"}

_FIELD_KEY = re.compile(r"(?<!\S)([A-Za-z_][A-Za-z0-9_.\-/]*)=")

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}

_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}


def parse_monitor_level(text: str) -> int | None:
    """The level of a monitor ``log_level`` value, or None when hclog would not know it."""
    return MONITOR_LEVELS.get(text.strip().lower())


def level_name(levelno: int) -> str:
    """hclog's level for a Python level number: ERROR, WARN, INFO, DEBUG or TRACE."""
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    if levelno >= logging.DEBUG:
        return "DEBUG"
    return "TRACE"


def level_bracket(levelno: int) -> str:
    """The bracketed, padded level token of a text line (``[INFO] ``)."""
    return _BRACKETS[level_name(levelno)]


def _top_level(message: str) -> list[bool]:
    """For each position: is it outside brackets and quotes?

    Brackets are ``() [] {}``; a quote (``'`` or ``"``) opens only where a value could
    start (not after a letter or digit, so ``can't`` opens nothing) and closes at the
    same unescaped quote. A ``key=`` inside ``Fact(a=1, b=2)`` or ``'x=1'`` is no key.
    """
    flags, depth, quote, escaped = [], 0, "", False
    for index, char in enumerate(message):
        flags.append(depth == 0 and not quote)
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"" and (index == 0 or not message[index - 1].isalnum()):
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}" and depth > 0:
            depth -= 1
    return flags


def split_fields(message: str) -> tuple[str, list[tuple[str, str]]]:
    """``"join completed num_joined=2"`` -> ``("join completed", [("num_joined", "2")])``."""
    matches = list(_FIELD_KEY.finditer(message))
    if matches:
        top = _top_level(message)
        matches = [match for match in matches if top[match.start()]]
    if not matches:
        return message, []
    head = message[:matches[0].start()].rstrip()
    if not head:
        return message, []
    fields = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(message)
        fields.append((match.group(1), message[match.end():end].rstrip()))
    return head, fields


def go_quote(value: str) -> str:
    """Go's ``strconv.Quote``: double quotes, backslash escapes for the unprintable."""
    out = ['"']
    for char in value:
        escaped = _GO_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def _needs_quoting(value: str) -> bool:
    return any(char.isspace() or char == '"' or not char.isprintable() for char in value)


def _when(record: logging.LogRecord, tz: datetime.tzinfo | None) -> datetime.datetime:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc)
    return moment.astimezone(tz)   # tz None: the local zone, as hclog's time.Now()


def _zone(moment: datetime.datetime, *, colon: bool) -> str:
    offset = moment.utcoffset() or datetime.timedelta(0)
    if offset == datetime.timedelta(0):
        return "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}" if colon else f"{sign}{hours:02d}{minutes:02d}"


def text_time(moment: datetime.datetime) -> str:
    """hclog's ``TimeFormat``: milliseconds and a ``Z0700`` zone."""
    return (moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}"
            + _zone(moment, colon=False))


def json_time(moment: datetime.datetime) -> str:
    """hclog's JSON ``@timestamp``: microseconds and a ``Z07:00`` zone."""
    return (moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}"
            + _zone(moment, colon=True))


def _module(record: logging.LogRecord) -> str:
    return "" if record.name == "root" else record.name


def _short_path(path: str) -> str:
    """The last two segments of a path, as hclog's ``trimCallerPath``."""
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def _stacktrace(record: logging.LogRecord) -> str:
    parts = []
    if record.exc_info and record.exc_info[0] is not None:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    text = "\n".join(part.rstrip("\n") for part in parts)
    return text + "\n" if text else ""


def format_text(record: logging.LogRecord, *, include_location: bool = False,
                tz: datetime.tzinfo | None = None) -> str:
    """One hclog text entry for ``record``, ending in a newline.

    Args:
        include_location: add `` dir/file.py:line:`` after the level token.
        tz: the zone of the timestamp; None for the local zone.
    """
    message, fields = split_fields(record.getMessage())
    out = [text_time(_when(record, tz)), " ", level_bracket(record.levelno)]
    if include_location:
        out.append(f" {_short_path(record.pathname)}:{record.lineno}:")
    out.append(" ")
    module = _module(record)
    if module:
        out.append(f"{module}: ")
    out.append(message)
    if fields:
        out.append(":")
        for key, value in fields:
            out.append(f" {key}={go_quote(value) if _needs_quoting(value) else value}")
    out.append("\n")
    out.append(_stacktrace(record))
    return "".join(out)


def format_json(record: logging.LogRecord, *, include_location: bool = False,
                tz: datetime.tzinfo | None = None) -> str:
    """One hclog JSON entry for ``record`` (an object and a newline), keys sorted."""
    message, fields = split_fields(record.getMessage())
    entry: dict[str, str] = {"@level": level_name(record.levelno).lower(), "@message": message,
                             "@timestamp": json_time(_when(record, tz))}
    module = _module(record)
    if module:
        entry["@module"] = module
    if include_location:
        entry["@caller"] = f"{record.pathname}:{record.lineno}"
    stack = _stacktrace(record)
    if stack:
        entry["stacktrace"] = stack
    for key, value in fields:   # as in hclog, a field may shadow a reserved key
        entry[key] = value
    return go_json(entry) + "\n"


def go_json(value: object) -> str:
    """Compact JSON with sorted keys and Go's HTML-safe escapes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _HTML_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


class HclogFormatter(logging.Formatter):
    """A ``logging.Formatter`` writing ``format_text`` or ``format_json`` lines.

    The stream handler adds the final newline itself, so it is left off here.
    """

    def __init__(self, *, json: bool = False, include_location: bool = False,
                 tz: datetime.tzinfo | None = None) -> None:
        super().__init__()
        self.json = json
        self.include_location = include_location
        self.tz = tz

    def format(self, record: logging.LogRecord) -> str:
        render = format_json if self.json else format_text
        return render(record, include_location=self.include_location, tz=self.tz).removesuffix("\n")
