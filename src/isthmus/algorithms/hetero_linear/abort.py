"""A failing party tells its peers at once, so that none of them waits for a message that never comes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from isthmus.transport.channel import Channel


@contextmanager
def aborting_peers(channel: Channel, role: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        channel.abort_after(exc, f"vertical linear {role}")
        raise
