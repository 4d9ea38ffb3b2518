"""Runs the raftlite transcripts in tests/transcripts/raft/*.txt (docs/raft-transcripts.md).

A transcript is a list of blocks: optional ``#`` comment lines, one command line,
``----``, then the expected printout up to a blank line. With ``SHOAL_REWRITE=1`` in
the environment the runner writes the actual printout into the file instead of
failing; review the diff like code before keeping it.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from .raft_env import RaftEnv

FOLDER = Path(__file__).parent / "raft"
REWRITE = os.environ.get("SHOAL_REWRITE") == "1"

# Transcripts whose expected trace is the correct behaviour the core does not show yet.
# The reason names the bug; the rewrite mode leaves these files alone.
KNOWN_BUGS: dict[str, str] = {}


@dataclass
class Block:
    comments: list[str]
    command: str
    expected: str


def parse(text: str, name: str) -> list[Block]:
    """Split a transcript into blocks; ValueError names the line that is malformed."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        comments = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
            if lines[i].startswith("#"):
                comments.append(lines[i])
            i += 1
        if i >= len(lines):
            if comments:
                blocks.append(Block(comments, "", ""))
            break
        command = lines[i]
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"{name}:{i + 2}: expected ---- after the command {command!r}")
        i += 2
        expected = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        blocks.append(Block(comments, command, "\n".join(expected)))
    return blocks


def render(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        head = "\n".join(block.comments)
        if not block.command:
            parts.append(head)
            continue
        body = f"{block.command}\n----\n{block.expected}"
        parts.append(f"{head}\n{body}" if head else body)
    return "\n\n".join(parts) + "\n"


def run_transcript(path: Path) -> tuple[str, str]:
    """Return (expected file text, actual file text) for one transcript."""
    text = path.read_text()
    blocks = parse(text, path.name)
    env = RaftEnv()
    actual = []
    for block in blocks:
        if not block.command:
            actual.append(block)
            continue
        actual.append(Block(block.comments, block.command, env.run(block.command)))
    return render(blocks), render(actual)


def transcripts() -> list:
    params = []
    for path in sorted(FOLDER.glob("*.txt")):
        marks = []
        if path.stem in KNOWN_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[path.stem]))
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


@pytest.mark.parametrize("path", transcripts())
def test_transcript(path: Path) -> None:
    """The cores print exactly the trace recorded in the transcript, with no safety violation."""
    expected, actual = run_transcript(path)
    if REWRITE and path.stem not in KNOWN_BUGS:
        if actual != expected:
            path.write_text(actual)
        expected = actual
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                        f"{path.name} (expected)", f"{path.name} (actual)"))
    assert actual == expected, f"transcript differs (SHOAL_REWRITE=1 to rewrite):\n{diff}"
    violations = [line for line in actual.splitlines() if line.lstrip().startswith("!!")]
    assert not violations, "safety violations in the trace:\n" + "\n".join(violations)


def test_parse_render_round_trip() -> None:
    """A transcript renders back to the same text it was parsed from."""
    text = "# a comment\nstatus\n----\ns1 down\n\nheal\n----\nok\n"
    assert render(parse(text, "x")) == text
    with pytest.raises(ValueError, match="x:2"):
        parse("status\nnot a separator\n", "x")


def test_disk_reports_gaps_and_falling_terms() -> None:
    """The private disk applies Persist fields in order and reports impossible batches."""
    from raftlite.events import Persist
    from raftlite.types import Entry, EntryKind

    from .raft_env import Disk

    disk = Disk()
    entry = lambda i, t: Entry(i, t, EntryKind.NOOP)  # noqa: E731
    assert disk.apply(Persist(2, "s1", entries=(entry(1, 1), entry(2, 2)))) == []
    assert disk.apply(Persist(2, "s1", truncate_from=2, entries=(entry(2, 2),))) == []
    assert disk.apply(Persist(1, None, entries=(entry(4, 2),))) == [
        "persist appends 4 after last index 2", "persisted term falls from 2 to 1"]


def test_safety_checks_flag_a_changed_committed_entry() -> None:
    """The environment prints a !! line when a server commits over a committed entry."""
    env = RaftEnv()
    env.run("add-servers 3")
    env.run("bootstrap s1 s2 s3")
    env.run("campaign s1")
    env.run("stabilize")
    assert "!!" not in env.run("status")
    env.committed[2] = (7, "2/7 noop")        # pretend another entry was committed at 2
    env.nodes["s1"].commit_seen = 1
    env.out = []
    env.check(env.nodes["s1"], "")
    assert env.out == ["!! s1 commits 2/2 noop but 2/7 noop was committed"]
