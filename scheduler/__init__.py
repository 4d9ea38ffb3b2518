"""scheduler: workers, eval broker and simulated placement (issue 4). Nothing here is public yet."""

__all__: list[str] = []
