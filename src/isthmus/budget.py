"""How many ids each peer may have looked up within a sliding window.

Every answer about an id tells the asker something: whether a host serving a model holds that customer,
whether anyone in a lending consortium does. Enough of them enumerate a table. A budget per peer keeps
what the real use needs (scoring applicants, checking them) and stops the enumeration. It lives in
memory: its owner charges it again at start from what it logged (a query log, the serving log, a node's
job store), so a restart does not give every peer a fresh window. Written here, not taken from a library: the rate
limiters on PyPI meter requests for web frameworks, and these are counted in ids per peer inside one
process, which a deque does in a few lines.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class IdBudget:
    def __init__(self, limit: int, window_seconds: float):
        self.limit = limit
        self.window_seconds = window_seconds
        self._taken: dict[str, deque[tuple[float, int]]] = {}
        self._spent: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, peer: str, ids: int, now: float | None = None) -> bool:
        """Spend ``ids`` of ``peer``'s budget if they fit in its window; False (nothing spent) otherwise."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._spent_in_window(peer, now) + ids > self.limit:
                return False
            self._taken[peer].append((now, ids))
            self._spent[peer] += ids
            return True

    def spent(self, peer: str, now: float | None = None) -> int:
        """How many ids ``peer`` has had answered within the window."""
        with self._lock:
            return self._spent_in_window(peer, time.monotonic() if now is None else now)

    def left(self, peer: str, now: float | None = None) -> int:
        """How many more ids ``peer`` may have answered within the window."""
        return self.limit - self.spent(peer, now)

    def _spent_in_window(self, peer: str, now: float) -> int:
        taken = self._taken.setdefault(peer, deque())
        while taken and taken[0][0] <= now - self.window_seconds:
            self._spent[peer] -= taken.popleft()[1]
        return self._spent.setdefault(peer, 0)
