"""``agent.http.api.member_text``: cached texts are always what encoding the member gives."""

from __future__ import annotations

import json

from agent.http.api import member_json, member_text
from gossip.messages import MemberStatus
from gossip.types import Member


def encoded(member: Member) -> str:
    return json.dumps(member_json(member), separators=(",", ":"), ensure_ascii=False)


def test_every_shown_field_changes_the_text() -> None:
    base = Member("s1.global", "127.0.0.1", 4648, {"role": "nomad", "port": "4647"},
                  MemberStatus.ALIVE)
    variants = [
        base,
        Member("s2.global", "127.0.0.1", 4648, base.tags, MemberStatus.ALIVE),
        Member("s1.global", "127.0.0.2", 4648, base.tags, MemberStatus.ALIVE),
        Member("s1.global", "127.0.0.1", 4649, base.tags, MemberStatus.ALIVE),
        Member("s1.global", "127.0.0.1", 4648, {"port": "4647", "role": "nomad"}, MemberStatus.ALIVE),
        Member("s1.global", "127.0.0.1", 4648, {"role": "nomad", "port": "4647"}, MemberStatus.FAILED),
        Member("s1.global", "127.0.0.1", 4648, base.tags, MemberStatus.LEFT, protocol_cur=3),
        Member("s1.global", "127.0.0.1", 4648, {"région": "ü"}, MemberStatus.LEAVING, delegate_cur=5),
    ]
    for _ in range(2):  # the second round is served from the cache
        texts = [member_text(m) for m in variants]
        assert texts == [encoded(m) for m in variants]
    assert len(set(texts)) == len(texts)
