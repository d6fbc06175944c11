"""IdBudget: ids per peer within a sliding window."""

from __future__ import annotations

from isthmus.budget import IdBudget


def test_a_peer_gets_its_limit_per_window_and_the_window_slides():
    budget = IdBudget(limit=10, window_seconds=60)
    assert budget.take("bank1", 6, now=0) and budget.take("bank1", 4, now=30)
    assert not budget.take("bank1", 1, now=59.9) and budget.spent("bank1", now=59.9) == 10
    assert budget.left("bank1", now=59.9) == 0 and budget.left("bank2", now=59.9) == 10
    assert budget.take("bank2", 10, now=59.9)  # each peer its own
    assert budget.take("bank1", 6, now=60) and budget.spent("bank1", now=60) == 10  # the first 6 left the window
    assert not budget.take("bank1", 11, now=10_000)  # never more than the limit at once
    assert budget.spent("bank1", now=10_000) == 0  # a refused request spends nothing
