"""What the tree grower needs from a party that holds features, and the in-process implementation.

The grower (``booster.py``) talks to every feature-holding party through :class:`FeatureParty`: the
guest's own columns and the reference booster's column blocks are :class:`LocalParty` objects; a
remote host is a proxy that turns the same calls into protocol messages (``hetero_guest.py``). So the
plaintext reference and the federated guest run one code path, and a horizontal variant can plug in
its own party objects.

Calls come in request/collect pairs so that the grower can ask every host before waiting for any.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from isthmus.ml.binning import QuantileBinner
from isthmus.tree.gh import QuantizedGH
from isthmus.tree.split_table import SplitTable
from isthmus.tree.tree import Histogram, build_histogram


@dataclass(frozen=True)
class SplitRequest:
    """Split ``node`` (whose rows are ``rows``, ascending) at the party's ``feature`` after ``bin``."""

    node: int
    rows: np.ndarray
    feature: int
    bin: int
    default_left: bool


class FeatureParty(ABC):
    """One party's feature columns, as the tree grower sees them during training."""

    name: str
    #: Value bins per feature (the missing-value bin not counted).
    value_bins: np.ndarray
    #: Columns of a histogram: the largest value-bin count plus the missing bin.
    n_columns: int

    @property
    def n_features(self) -> int:
        return len(self.value_bins)

    @abstractmethod
    def start_tree(self, gh: QuantizedGH, sampled: np.ndarray, features: np.ndarray) -> None:
        """A new tree: ``gh`` holds the gradients of rows ``sampled`` (ascending), histograms cover ``features``."""

    @abstractmethod
    def request_histograms(self, nodes: list[tuple[int, np.ndarray]]) -> None:
        """Start building histograms of ``(node, rows)`` pairs; ``rows`` are all the node's rows, ascending."""

    @abstractmethod
    def collect_histograms(self) -> list[Histogram]:
        """The histograms asked for, in request order."""

    @abstractmethod
    def request_splits(self, splits: list[SplitRequest]) -> None:
        """Ask the party to split nodes at its own features."""

    @abstractmethod
    def collect_splits(self) -> list[tuple[int, np.ndarray]]:
        """Per request: (split id, bool mask over the node's rows, True = left)."""

    def observe_partition(self, node: int, left: int, right: int, left_mask: np.ndarray) -> None:
        """Node ``node`` was split (by any party) into ``left`` and ``right``; ``left_mask`` over its rows."""

    def finish(self, kept_splits: dict[int, float]) -> None:
        """Training is over; ``kept_splits`` maps each of this party's split ids in the final model to its gain."""


class LocalParty(FeatureParty):
    """Features held in this process: plaintext histograms, splits resolved against local bins."""

    def __init__(self, name: str, X: np.ndarray, bins: int = 32, *, binner: QuantileBinner | None = None):
        self.name = name
        self.binner = binner or QuantileBinner(bins).fit(X)
        self.binned = self.binner.transform(X)
        self.value_bins = self.binner.value_bins_
        self.n_columns = self.binner.bins + 1
        self.splits = SplitTable()
        self.importance_gain = np.zeros(self.n_features)
        self.importance_count = np.zeros(self.n_features, dtype=np.int64)
        self._gh_position = np.empty(0, dtype=np.int64)
        self._pending: list = []

    def start_tree(self, gh: QuantizedGH, sampled: np.ndarray, features: np.ndarray) -> None:
        self._gh = gh
        self._features = np.asarray(features, dtype=np.int64)
        self._gh_position = np.full(len(self.binned), -1, dtype=np.int64)
        self._gh_position[sampled] = np.arange(len(sampled))

    def histogram(self, rows: np.ndarray) -> Histogram:
        positions = self._gh_position[rows]
        with_gradients = positions >= 0
        rows, positions = rows[with_gradients], positions[with_gradients]
        binned = self.binned[np.ix_(rows, self._features)]
        return build_histogram(binned, self._gh.grad[positions], self._gh.hess[positions], self._features,
                               self.n_columns)

    def request_histograms(self, nodes: list[tuple[int, np.ndarray]]) -> None:
        self._pending = [self.histogram(rows) for _, rows in nodes]

    def collect_histograms(self) -> list[Histogram]:
        return self._pending

    def split(self, request: SplitRequest) -> tuple[int, np.ndarray]:
        threshold = self.binner.split_points_[request.feature][request.bin]
        split_id = self.splits.add(request.feature, request.bin, threshold, request.default_left)
        column = self.binned[request.rows, request.feature]
        return split_id, self.splits.partition(split_id, column, self.binner.missing_bin)

    def request_splits(self, splits: list[SplitRequest]) -> None:
        self._pending = [self.split(request) for request in splits]

    def collect_splits(self) -> list[tuple[int, np.ndarray]]:
        return self._pending

    def finish(self, kept_splits: dict[int, float]) -> None:
        self.kept_splits = kept_splits
        for split_id, gain in kept_splits.items():
            feature = self.splits.feature[split_id]
            self.importance_count[feature] += 1
            self.importance_gain[feature] += gain


class Router(ABC):
    """One party's side of prediction: which way given rows go at given splits of that party."""

    @abstractmethod
    def request_directions(self, split_ids: np.ndarray, rows: np.ndarray) -> None:
        """Start answering, for each pair ``(split_ids[i], rows[i])``, whether the row goes left."""

    @abstractmethod
    def collect_directions(self) -> np.ndarray:
        """Bool array, one per requested pair."""


class LocalRouter(Router):
    """Splits resolved in this process against raw feature values."""

    def __init__(self, splits: SplitTable, X: np.ndarray):
        self.splits = splits
        self.X = np.asarray(X, dtype=np.float64)
        self._pending = np.empty(0, dtype=bool)

    def request_directions(self, split_ids: np.ndarray, rows: np.ndarray) -> None:
        self._pending = self.splits.go_left(self.X, split_ids, rows)

    def collect_directions(self) -> np.ndarray:
        return self._pending
