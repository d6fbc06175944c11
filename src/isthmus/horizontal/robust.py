"""Defences against a hostile client's update: robust averaging in the clear, a norm bound under secure aggregation.

Without secure aggregation the aggregator sees every update, so it can replace the weighted mean by a
coordinate-wise median or trimmed mean (Yin et al. 2018): a minority of clients, however large their
updates or claimed example counts, cannot drag a coordinate past the honest ones. Both ignore the
example counts (a count is the client's own claim) and keep clients with less data at equal weight.

Under secure aggregation the aggregator sees only the sum, so no rule can look at one update. What
it can do is bound the step: every client clips its own update to ``update_clip`` (its job file says
so), hence the weighted mean of honest updates has norm at most ``update_clip``; a recovered mean
that is longer proves that someone did not clip, and the round is not applied. A cheating client can
still move the model by up to ``update_clip`` a round, in a direction of its choosing; nothing
smaller is possible without zero-knowledge range proofs, which isthmus does not have.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

RobustRule = Literal["median", "trimmed_mean"]


def robust_center(rule: RobustRule, deltas: np.ndarray, trim_fraction: float = 0.1) -> np.ndarray:
    """The coordinate-wise median, or mean after dropping the ``trim_fraction`` highest and lowest values,
    of the rows of ``deltas`` (one flattened update per client)."""
    if rule == "median":
        return np.median(deltas, axis=0)
    cut = int(trim_fraction * len(deltas))
    ordered = np.sort(deltas, axis=0)
    return ordered[cut:len(deltas) - cut].mean(axis=0)


def within_bound(mean_update: np.ndarray, bound: float, fractional_bits: int, contributors: int) -> bool:
    """Whether a securely summed mean update respects ``bound``, allowing for fixed-point rounding."""
    slack = np.sqrt(mean_update.size) * contributors * 2.0 ** -fractional_bits
    return float(np.linalg.norm(mean_update)) <= bound * (1 + 1e-9) + slack
