"""Quantile bins per feature, and weight of evidence (WOE) / information value (IV) per bin.

Tree models split on bin boundaries and WOE/IV are computed per bin, so every party bins its own
columns locally: a bin index says which of a feature's split points a value lies under, and the
split points themselves never need to leave the party.

Layout of a binned matrix: value bins of feature ``f`` are ``0 .. value_bins[f]-1`` and missing values
(NaN) sit in one extra bin at the fixed column :attr:`QuantileBinner.missing_bin` (= ``bins``), so a
histogram of every feature fits one dense ``(features, bins + 1)`` array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isthmus.compute.blocks import map_blocks
from isthmus.errors import ConfigError, DataError

#: WOE needs a non-zero count on both sides of the ratio; FATE's convention adds this to both.
WOE_ADJUSTMENT = 0.5


class QuantileBinner:
    """Equal-frequency bins of each feature: value ``x`` falls in bin ``b`` when
    ``split_points[b-1] < x <= split_points[b]``, so "bin <= b" is exactly "x <= split_points[b]".
    """

    def __init__(self, bins: int = 32):
        if not 2 <= bins <= 255:
            raise ConfigError(f"bins must be in [2, 255] (bin indices are uint8), got {bins}")
        self.bins = bins

    @property
    def missing_bin(self) -> int:
        return self.bins

    def fit(self, X: np.ndarray) -> QuantileBinner:
        """Split points per feature; a big table's features go to the party's cluster in column blocks."""
        X = _as_features(X)
        self.split_points_ = [points for block in map_blocks(_columns_split_points, X, self.bins, axis=1)
                              for points in block]
        return self

    @classmethod
    def from_split_points(cls, bins: int, split_points: list[np.ndarray]) -> QuantileBinner:
        """A binner with split points agreed elsewhere (horizontal parties bin with the federation's)."""
        binner = cls(bins)
        for points in split_points:
            if points.ndim != 1 or len(points) > bins - 1 or not np.isfinite(points).all() \
                    or (np.diff(points) <= 0).any():
                raise DataError(f"split points must be at most {bins - 1} increasing finite values per feature")
        binner.split_points_ = list(split_points)
        return binner

    @property
    def value_bins_(self) -> np.ndarray:
        """Number of value bins per feature (missing bin not counted)."""
        return np.array([len(points) + 1 for points in self.split_points_], dtype=np.int64)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Bin indices as a ``(rows, features)`` uint8 array; NaN goes to :attr:`missing_bin`."""
        X = _as_features(X)
        if X.shape[1] != len(self.split_points_):
            raise DataError(f"binner was fitted on {len(self.split_points_)} features, got {X.shape[1]}")
        return np.concatenate(map_blocks(_bin_rows, X, self.split_points_, self.missing_bin))

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)


def _as_features(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"features must be a 2-D array, got shape {X.shape}")
    if np.isinf(X).any():
        raise DataError("features hold infinite values; only NaN is accepted as missing")
    return X


def _columns_split_points(bins: int, X: np.ndarray) -> list[np.ndarray]:
    """Task entry point: split points of each column of a block of features."""
    return [_quantile_split_points(column, bins) for column in X.T]


def _bin_rows(split_points: list[np.ndarray], missing_bin: int, X: np.ndarray) -> np.ndarray:
    """Task entry point: bin indices of a block of rows."""
    binned = np.empty(X.shape, dtype=np.uint8)
    for f, points in enumerate(split_points):
        column = X[:, f]
        binned[:, f] = np.searchsorted(points, column, side="left")
        binned[np.isnan(column), f] = missing_bin
    return binned


def _quantile_split_points(column: np.ndarray, bins: int) -> np.ndarray:
    """Split points that are data values, so a split never sits between two observed values.

    A feature with at most ``bins`` distinct values gets one bin per value; otherwise the points are
    the (lower) quantiles at ``1/bins, 2/bins, ...``, deduplicated. The largest value is never a split
    point: splitting there would leave the right side empty.
    """
    values = column[~np.isnan(column)]
    if values.size == 0:
        return np.empty(0)
    distinct = np.unique(values)
    if distinct.size <= bins:
        return distinct[:-1]
    points = np.unique(np.quantile(values, np.arange(1, bins) / bins, method="lower"))
    return points[points < distinct[-1]]


@dataclass(frozen=True)
class WoeIv:
    """Per-bin counts, WOE and per-feature IV, arrays shaped like a histogram ``(features, bins + 1)``."""

    events: np.ndarray
    non_events: np.ndarray
    woe: np.ndarray
    iv: np.ndarray


def woe_iv_from_counts(events: np.ndarray, non_events: np.ndarray) -> WoeIv:
    """WOE = ln(P(bin | event) / P(bin | non-event)); IV = sum over bins of (difference) x WOE.

    Bins where one count is zero get :data:`WOE_ADJUSTMENT` added to both counts (as FATE does);
    empty bins get WOE 0 and add nothing to IV. Shared by the plaintext and encrypted protocols.
    """
    events = np.asarray(events, dtype=np.float64)
    non_events = np.asarray(non_events, dtype=np.float64)
    total_events = events.sum(axis=1, keepdims=True)
    total_non_events = non_events.sum(axis=1, keepdims=True)
    if (total_events == 0).any() or (total_non_events == 0).any():
        raise DataError("WOE needs both label classes present")
    occupied = (events + non_events) > 0
    needs_adjustment = occupied & ((events == 0) | (non_events == 0))
    adjusted_events = np.where(needs_adjustment, events + WOE_ADJUSTMENT, events)
    adjusted_non_events = np.where(needs_adjustment, non_events + WOE_ADJUSTMENT, non_events)
    event_rate = adjusted_events / total_events
    non_event_rate = adjusted_non_events / total_non_events
    with np.errstate(divide="ignore", invalid="ignore"):
        woe = np.where(occupied, np.log(event_rate / non_event_rate), 0.0)
    iv = np.where(occupied, (event_rate - non_event_rate) * woe, 0.0).sum(axis=1)
    return WoeIv(events=events, non_events=non_events, woe=woe, iv=iv)


def woe_iv(binned: np.ndarray, y: np.ndarray, n_columns: int) -> WoeIv:
    """WOE/IV of a party's own binned features against its own 0/1 label (the guest's local case)."""
    y = np.asarray(y)
    if not np.isin(y, (0, 1)).all():
        raise DataError("WOE/IV needs a 0/1 label")
    events = bin_sums(binned, y.astype(np.float64), n_columns)
    counts = bin_sums(binned, np.ones(len(y)), n_columns)
    return woe_iv_from_counts(events, counts - events)


def bin_sums(binned: np.ndarray, weights: np.ndarray, n_columns: int) -> np.ndarray:
    """Sum of ``weights`` per (feature, bin) as a ``(features, n_columns)`` float64 array."""
    sums = np.empty((binned.shape[1], n_columns))
    for f in range(binned.shape[1]):
        sums[f] = np.bincount(binned[:, f], weights, minlength=n_columns)
    return sums


def select_by_iv(iv: np.ndarray, *, threshold: float | None = None, top_k: int | None = None) -> np.ndarray:
    """Keep mask: IV at or above ``threshold`` and/or among the ``top_k`` largest (ties by position)."""
    if threshold is None and top_k is None:
        raise ConfigError("select needs an IV threshold, a top_k, or both")
    iv = np.asarray(iv, dtype=np.float64)
    keep = np.ones(iv.shape, dtype=bool)
    if threshold is not None:
        keep &= iv >= threshold
    if top_k is not None:
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        ranked = np.argsort(-iv, kind="stable")[:top_k]
        top = np.zeros(iv.shape, dtype=bool)
        top[ranked] = True
        keep &= top
    return keep
