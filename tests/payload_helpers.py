"""Searching the bytes that left a party for thousands of values at once.

A leak test asks whether any of thousands of values (ids, their hashes, feature values as float64 and
as text) occurs in megabytes of sent payloads; ``needle in data`` scans all of them per needle (25 s
for test_e2e_vertical's). An index of every 4-byte window rules out nearly every absent needle at
once; only the few whose first four bytes occur somewhere are scanned.
"""

from __future__ import annotations

import numpy as np


class SentBytes:
    def __init__(self, data: bytes):
        self.data = data
        offsets = [np.frombuffer(data, dtype="<u4", offset=k, count=(len(data) - k) // 4)
                   for k in range(min(4, len(data)))]
        self._windows = np.sort(np.concatenate(offsets)) if offsets else np.empty(0, dtype="<u4")

    def __contains__(self, needle: bytes) -> bool:
        if len(needle) < 4:
            return needle in self.data
        head = np.frombuffer(needle, dtype="<u4", count=1)[0]
        at = np.searchsorted(self._windows, head)
        return at < len(self._windows) and self._windows[at] == head and needle in self.data

    def __len__(self) -> int:
        return len(self.data)
