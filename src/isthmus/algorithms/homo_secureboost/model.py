"""The horizontal SecureBoost model: agreed bins, trees and split rules that every party holds whole.

In horizontal SecureBoost nothing about a split is private (all parties share the columns and the
bins), so one :class:`HomoTreeModel` is built by the aggregator and, split by split from its
messages, by every client. :class:`TreeRecord` is that message form; replaying a model's records
rebuilds it, which is how a client checks and keeps the final model the aggregator announces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isthmus.errors import ProtocolError
from isthmus.ml.binning import QuantileBinner
from isthmus.tree.booster import Ensemble, to_prediction, to_proba
from isthmus.tree.objectives import Objective
from isthmus.tree.party import LocalRouter
from isthmus.tree.split_table import SplitTable
from isthmus.tree.tree import Tree

MODEL_FORMAT = "isthmus/homo-secureboost/v1"
#: The single "party" of every split: all columns are everyone's.
FEDERATION = "federation"


@dataclass(frozen=True)
class Split:
    """Split leaf ``node`` of the current tree at ``feature`` after ``bin`` (missing values: ``default_left``)."""

    node: int
    feature: int
    bin: int
    default_left: bool
    gain: float

    def to_wire(self) -> list:
        return [self.node, self.feature, self.bin, self.default_left, self.gain]


@dataclass
class HomoTreeModel:
    feature_names: list[str]
    binner: QuantileBinner
    objective: Objective
    init_score: np.ndarray
    splits: SplitTable = field(default_factory=SplitTable)
    trees: list[Tree] = field(default_factory=list)
    tree_output: list[int] = field(default_factory=list)

    # -- growing (aggregator and clients alike) ---------------------------------------------------
    def start_tree(self, output: int) -> Tree:
        self.trees.append(Tree())
        self.tree_output.append(output)
        return self.trees[-1]

    def split(self, split: Split) -> tuple[int, int]:
        """Apply ``split`` to the current tree; returns the new (left, right) node ids."""
        threshold = float(self.binner.split_points_[split.feature][split.bin])
        split_id = self.splits.add(split.feature, split.bin, threshold, split.default_left)
        return self.trees[-1].add_split(split.node, 0, split_id, split.gain)

    def set_leaf_values(self, values: np.ndarray) -> None:
        self.trees[-1].value = [float(v) for v in values]

    # -- using it ---------------------------------------------------------------------------------
    @property
    def value_bins(self) -> np.ndarray:
        return self.binner.value_bins_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        ensemble = Ensemble(self.objective, self.init_score, [FEDERATION], self.trees, self.tree_output)
        return ensemble.predict_raw([LocalRouter(self.splits, X)], len(X))

    def scores(self, X: np.ndarray) -> np.ndarray:
        """P(y=1) (binary), class probabilities (multiclass) or values (regression)."""
        raw = self.decision_function(np.asarray(X, dtype=np.float64))
        if self.objective.name == "regression":
            return to_prediction(self.objective, raw)
        proba = to_proba(self.objective, raw)
        return proba[:, 1] if self.objective.name == "binary" else proba

    def feature_importance(self) -> dict[str, dict[str, float]]:
        """Split count and total gain per feature, over every split the trees use."""
        importance = {name: {"split_count": 0, "gain": 0.0} for name in self.feature_names}
        for tree in self.trees:
            for node in range(tree.n_nodes):
                if tree.left[node] >= 0:
                    entry = importance[self.feature_names[self.splits.feature[tree.split_id[node]]]]
                    entry["split_count"] += 1
                    entry["gain"] += tree.gain[node]
        return importance

    # -- the message form and the saved form -------------------------------------------------------
    def records(self) -> list[dict]:
        """Every tree as a :class:`TreeRecord` wire map, in order."""
        return [TreeRecord.of(self, t).to_wire() for t in range(len(self.trees))]

    def to_dict(self) -> dict:
        return {"format": MODEL_FORMAT, "feature_names": self.feature_names, "bins": self.binner.bins,
                "split_points": [points.tolist() for points in self.binner.split_points_],
                "ensemble": Ensemble(self.objective, self.init_score, [FEDERATION], self.trees,
                                     self.tree_output).to_dict(),
                "splits": self.splits.to_dict(feature_names=self.feature_names),
                "feature_importance": self.feature_importance()}

    @classmethod
    def from_dict(cls, d: dict) -> HomoTreeModel:
        ensemble = Ensemble.from_dict(d["ensemble"])
        binner = QuantileBinner.from_split_points(d["bins"], [np.asarray(p, dtype=np.float64) for p in d["split_points"]])
        return cls(list(d["feature_names"]), binner, ensemble.objective, ensemble.init_score,
                   SplitTable.from_dict(d["splits"]), ensemble.trees, ensemble.tree_output)


@dataclass(frozen=True)
class TreeRecord:
    """One tree as the aggregator announces it: its output, its splits in the order made, its leaf values."""

    output: int
    splits: list[Split]
    values: np.ndarray

    @classmethod
    def of(cls, model: HomoTreeModel, index: int) -> TreeRecord:
        tree = model.trees[index]
        splits = [Split(node, model.splits.feature[tree.split_id[node]], model.splits.bin[tree.split_id[node]],
                        model.splits.default_left[tree.split_id[node]], tree.gain[node])
                  for node in _nodes_in_split_order(tree)]
        return cls(model.tree_output[index], splits, np.asarray(tree.value, dtype=np.float64))

    def to_wire(self) -> dict:
        return {"output": self.output, "splits": [s.to_wire() for s in self.splits], "values": self.values}


def _nodes_in_split_order(tree: Tree) -> list[int]:
    """Split nodes in the order they were split: children get ids in that order, so by their left child."""
    return sorted((node for node in range(tree.n_nodes) if tree.left[node] >= 0), key=lambda node: tree.left[node])


class WireReader:
    """Checks what the aggregator says about the model before a client applies it."""

    def __init__(self, model: HomoTreeModel, peer: str, tag: str):
        self.model, self.peer, self.tag = model, peer, tag

    def fail(self, message: str) -> ProtocolError:
        return ProtocolError(message, peer=self.peer, tag=self.tag)

    def apply_splits(self, obj: Any) -> list[tuple[Split, int, int]]:
        """Apply each split (a leaf of the current tree, a known feature and threshold) in turn;
        returns them with their new (left, right) node ids."""
        if not isinstance(obj, list) or not self.model.trees:
            raise self.fail("splits must be a list, within a tree")
        applied = []
        for item in obj:
            if not (isinstance(item, list) and len(item) == 5 and all(type(v) is int for v in item[:3])
                    and type(item[3]) is bool and type(item[4]) is float):
                raise self.fail("a split is [node, feature, bin, default_left, gain]")
            split = Split(*item)
            tree, value_bins = self.model.trees[-1], self.model.value_bins
            if not (0 <= split.node < tree.n_nodes and tree.left[split.node] < 0
                    and 0 <= split.feature < len(value_bins) and 0 <= split.bin < value_bins[split.feature] - 1
                    and np.isfinite(split.gain)):
                raise self.fail(f"split {item!r:.80} names no leaf, feature or threshold of this model")
            applied.append((split, *self.model.split(split)))
        return applied

    def values(self, obj: Any) -> np.ndarray:
        n_nodes = self.model.trees[-1].n_nodes
        if not isinstance(obj, np.ndarray) or obj.dtype != np.float64 or obj.shape != (n_nodes,) \
                or not np.isfinite(obj).all():
            raise self.fail(f"leaf values must be {n_nodes} finite float64 values")
        return obj

    def start_tree(self, output: Any) -> None:
        if type(output) is not int or not 0 <= output < self.model.objective.n_outputs:
            raise self.fail(f"tree output must be an integer in [0, {self.model.objective.n_outputs})")
        self.model.start_tree(output)


def replay(model: HomoTreeModel, records: Any, *, peer: str, tag: str) -> HomoTreeModel:
    """``model``'s bins and objective with the trees of ``records`` (as :meth:`HomoTreeModel.records`), checked."""
    fresh = HomoTreeModel(model.feature_names, model.binner, model.objective, model.init_score)
    reader = WireReader(fresh, peer, tag)
    if not isinstance(records, list):
        raise reader.fail("the model must be a list of trees")
    for record in records:
        if not isinstance(record, dict) or set(record) != {"output", "splits", "values"}:
            raise reader.fail("a tree is a map with output, splits and values")
        reader.start_tree(record["output"])
        reader.apply_splits(record["splits"])
        fresh.set_leaf_values(reader.values(record["values"]))
    return fresh
