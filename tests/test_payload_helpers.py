"""The leak tests' search must answer exactly as ``needle in data`` does, or they would pass vacuously."""

import os

from tests.payload_helpers import SentBytes


def test_it_finds_what_bytes_search_finds_and_nothing_else():
    for size in (0, 1, 3, 4, 5, 7, 100, 10_000):
        data = os.urandom(size)
        sent = SentBytes(data)
        present = [data[i:i + n] for i in range(0, size, max(1, size // 50)) for n in (1, 3, 4, 5, 8, 13)]
        absent = [os.urandom(n) for n in (1, 4, 8, 20) for _ in range(20)]
        for needle in present + absent:
            assert (needle in sent) == (needle in data), (size, needle)
