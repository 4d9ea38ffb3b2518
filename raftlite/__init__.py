"""raftlite: the Raft peer set (issue 3). Nothing here is public yet."""

__all__: list[str] = []
