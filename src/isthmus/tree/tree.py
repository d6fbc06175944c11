"""Tree structures, gains and split finding from histograms: the part every SecureBoost variant shares.

Nothing here knows about parties' raw values or crypto: a split is found from integer (G, H) sums per
(feature, bin) — whether they were summed in the clear, decrypted from a host's Paillier histogram or
(later) unmasked from a secure aggregation — and a tree node refers to a split only by the owning
party's index and that party's split id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isthmus.ml.binning import bin_sums
from isthmus.tree.gh import FixedPointScale
from isthmus.tree.params import BoostParams


@dataclass(frozen=True)
class Histogram:
    """Integer (G, H) sums of one node over a party's selected features: arrays ``(features, bins + 1)``,
    value bins first and the missing-value bin in the last column."""

    features: np.ndarray
    grad: np.ndarray
    hess: np.ndarray

    def __sub__(self, other: Histogram) -> Histogram:
        """The sibling's histogram from the parent's (histogram subtraction)."""
        if not np.array_equal(self.features, other.features):
            raise ValueError("histograms over different features cannot be subtracted")
        return Histogram(self.features, self.grad - other.grad, self.hess - other.hess)


def build_histogram(binned: np.ndarray, grad: np.ndarray, hess: np.ndarray, features: np.ndarray,
                    n_columns: int) -> Histogram:
    """Plaintext histogram of some rows: ``binned`` holds those rows' bins of the ``features`` columns.

    float64 bincount is exact here: quantized gradients keep every partial sum below 2**52.
    """
    grad_sums = bin_sums(binned, grad.astype(np.float64), n_columns).astype(np.int64)
    hess_sums = bin_sums(binned, hess.astype(np.float64), n_columns).astype(np.int64)
    return Histogram(np.asarray(features, dtype=np.int64), grad_sums, hess_sums)


@dataclass(frozen=True)
class SplitCandidate:
    gain: float
    feature: int
    bin: int
    default_left: bool
    #: Integer (G, H) sums of the left child: the owner's partition must reproduce them.
    left_grad: int
    left_hess: int


def best_split(hist: Histogram, value_bins: np.ndarray, node_grad: int, node_hess: int, scale: FixedPointScale,
               params: BoostParams) -> SplitCandidate | None:
    """The best "bin <= b" split of a node over one party's features, missing values going left or right.

    ``value_bins[f]`` is the number of value bins of the party's feature ``f``; thresholds exist for
    ``b < value_bins[f] - 1``. Ties go to the first feature, then the lowest bin, then missing-right,
    so every party computing this on the same integers picks the same split.
    """
    if hist.features.size == 0:
        return None
    n_value_columns = hist.grad.shape[1] - 1
    left_grad = np.cumsum(hist.grad[:, :n_value_columns], axis=1)[:, :-1]
    left_hess = np.cumsum(hist.hess[:, :n_value_columns], axis=1)[:, :-1]
    missing_grad = hist.grad[:, -1:]
    missing_hess = hist.hess[:, -1:]
    # axis 2: 0 = missing values go right, 1 = missing values go left
    left_grad = np.stack([left_grad, left_grad + missing_grad], axis=2)
    left_hess = np.stack([left_hess, left_hess + missing_hess], axis=2)
    right_grad = node_grad - left_grad
    right_hess = node_hess - left_hess

    gl, hl = scale.to_float(left_grad, left_hess)
    gr, hr = scale.to_float(right_grad, right_hess)
    g, h = scale.to_float(node_grad, node_hess)
    lam = params.reg_lambda
    with np.errstate(divide="ignore", invalid="ignore"):  # empty sides with lambda = 0; masked below
        gain = gl * gl / (hl + lam) + gr * gr / (hr + lam) - g * g / (h + lam)

    thresholds = np.arange(n_value_columns - 1)[None, :, None]
    valid = ((thresholds < value_bins[hist.features][:, None, None] - 1)
             & (left_hess > 0) & (right_hess > 0)
             & (hl >= params.min_child_weight) & (hr >= params.min_child_weight))
    gain = np.where(valid, gain, -np.inf)
    best = int(np.argmax(gain))
    feature_row, bin_, direction = np.unravel_index(best, gain.shape)
    if not gain.flat[best] > params.min_split_gain:
        return None
    return SplitCandidate(float(gain.flat[best]), int(hist.features[feature_row]), int(bin_), bool(direction),
                          int(left_grad.flat[best]), int(left_hess.flat[best]))


def leaf_weight(node_grad: int, node_hess: int, scale: FixedPointScale, params: BoostParams) -> float:
    g, h = scale.to_float(node_grad, node_hess)
    return float(-params.learning_rate * g / (h + params.reg_lambda))


@dataclass
class Tree:
    """A tree as parallel node arrays; node 0 is the root, ``left[i] == -1`` marks a leaf.

    An internal node names its split by ``party[i]`` (index into the model's party list) and
    ``split_id[i]`` (an id only that party can resolve to a feature and threshold).
    """

    left: list[int] = field(default_factory=lambda: [-1])
    right: list[int] = field(default_factory=lambda: [-1])
    party: list[int] = field(default_factory=lambda: [-1])
    split_id: list[int] = field(default_factory=lambda: [-1])
    gain: list[float] = field(default_factory=lambda: [0.0])
    value: list[float] = field(default_factory=lambda: [0.0])

    def add_split(self, node: int, party: int, split_id: int, gain: float) -> tuple[int, int]:
        """Turn leaf ``node`` into a split; returns the ids of its new (left, right) children."""
        children = []
        for _ in range(2):
            children.append(len(self.left))
            for column, blank in ((self.left, -1), (self.right, -1), (self.party, -1), (self.split_id, -1),
                                  (self.gain, 0.0), (self.value, 0.0)):
                column.append(blank)
        self.left[node], self.right[node] = children
        self.party[node], self.split_id[node], self.gain[node] = party, split_id, gain
        return children[0], children[1]

    @property
    def n_nodes(self) -> int:
        return len(self.left)

    def depth(self) -> int:
        depth = [0] * self.n_nodes
        for node in range(self.n_nodes):  # children always come after their parent
            if self.left[node] >= 0:
                depth[self.left[node]] = depth[self.right[node]] = depth[node] + 1
        return max(depth)

    def to_dict(self) -> dict:
        return {"left": self.left, "right": self.right, "party": self.party, "split_id": self.split_id,
                "gain": self.gain, "value": self.value}

    @classmethod
    def from_dict(cls, d: dict) -> Tree:
        tree = cls(*(list(d[key]) for key in ("left", "right", "party", "split_id", "gain", "value")))
        if len({len(column) for column in (tree.left, tree.right, tree.party, tree.split_id, tree.gain, tree.value)}) != 1:
            raise ValueError("tree node arrays differ in length")
        return tree
