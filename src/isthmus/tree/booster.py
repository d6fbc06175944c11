"""Gradient boosting over feature-holding parties, and the plaintext reference booster.

:func:`train` grows trees level by level against a list of :class:`~isthmus.tree.party.FeatureParty`
objects (the label holder's first). The federated guest calls it with proxies for its hosts; the
:class:`SecureBoostReference` calls it with every column block held locally. Same code path, so with
the same bins both grow the same trees, split for split and leaf for leaf.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from isthmus.errors import ConfigError, DataError, ProtocolError
from isthmus.tree.gh import FixedPointScale, QuantizedGH
from isthmus.tree.objectives import Objective, make_objective, objective_from_dict
from isthmus.tree.params import SAFE_NODE_ROWS, BoostParams, check_min_node_rows
from isthmus.tree.party import (
    FeatureParty,
    LocalParty,
    LocalRouter,
    Router,
    SplitRequest,
)
from isthmus.tree.tree import Histogram, SplitCandidate, Tree, best_split, leaf_weight


@dataclass
class Ensemble:
    """The label holder's part of a boosted model: tree structures, leaf values, party names."""

    objective: Objective
    init_score: np.ndarray
    parties: list[str]
    trees: list[Tree] = field(default_factory=list)
    tree_output: list[int] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)

    def predict_raw(self, routers: Sequence[Router], n_rows: int) -> np.ndarray:
        """Raw scores ``(n_rows, outputs)``. All trees are walked at once, a level at a time, with one
        direction query per party and level (``routers`` in the order of :attr:`parties`)."""
        raw = np.tile(self.init_score, (n_rows, 1))
        if not self.trees:
            return raw
        forest = _Forest(self.trees)
        position = np.repeat(forest.roots[:, None], n_rows, axis=1)  # (trees, rows): each row's current node
        for _ in range(forest.depth):
            at_split = forest.is_split[position]
            asked = {}
            for party in np.unique(forest.party[position[at_split]]).tolist():
                selected = at_split & (forest.party[position] == party)
                routers[party].request_directions(forest.split_id[position[selected]], np.nonzero(selected)[1])
                asked[party] = selected
            for party, selected in asked.items():
                nodes = position[selected]
                position[selected] = np.where(routers[party].collect_directions(), forest.left[nodes], forest.right[nodes])
        leaf_values = forest.value[position]
        for t, output in enumerate(self.tree_output):
            raw[:, output] += leaf_values[t]
        return raw

    def kept_splits(self) -> list[dict[int, float]]:
        """Per party, the split ids the trees use, with their gains."""
        kept: list[dict[int, float]] = [{} for _ in self.parties]
        for tree in self.trees:
            for node in range(tree.n_nodes):
                if tree.left[node] >= 0:
                    kept[tree.party[node]][tree.split_id[node]] = tree.gain[node]
        return kept

    def to_dict(self) -> dict:
        return {"objective": self.objective.to_dict(), "init_score": self.init_score.tolist(),
                "parties": self.parties, "trees": [tree.to_dict() for tree in self.trees],
                "tree_output": self.tree_output, "validation_loss": self.validation_loss}

    @classmethod
    def from_dict(cls, d: dict) -> Ensemble:
        return cls(objective_from_dict(d["objective"]), np.asarray(d["init_score"], dtype=np.float64),
                   list(d["parties"]), [Tree.from_dict(t) for t in d["trees"]], list(d["tree_output"]),
                   list(d.get("validation_loss", [])))


class _Forest:
    """All trees' nodes in flat arrays, node ids made global by offsetting each tree's."""

    def __init__(self, trees: Sequence[Tree]):
        sizes = [tree.n_nodes for tree in trees]
        self.roots = np.cumsum([0] + sizes[:-1])
        offset = np.repeat(self.roots, sizes)
        columns = {name: np.concatenate([np.asarray(getattr(tree, name)) for tree in trees])
                   for name in ("left", "right", "party", "split_id", "value")}
        self.is_split = columns["left"] >= 0
        self.left = columns["left"] + offset
        self.right = columns["right"] + offset
        self.party, self.split_id, self.value = columns["party"], columns["split_id"], columns["value"]
        self.depth = max(tree.depth() for tree in trees)


def train(params: BoostParams, y: np.ndarray, parties: Sequence[FeatureParty], *, min_node_rows: int = 1) -> Ensemble:
    """Boost ``params.n_trees`` rounds (one tree per class and round) on rows aligned across ``parties``.

    Nodes with fewer than ``min_node_rows`` rows get no histograms and stay leaves, and so do both
    children of a split whose smaller child is that small (the larger one's histogram is the parent's
    minus the smaller one's): vertical SecureBoost shows the guest every histogram it builds."""
    y = np.asarray(y, dtype=np.float64)
    objective = make_objective(params.objective, y, params.n_classes)
    rng = np.random.default_rng(params.seed)
    n_rows = len(y)
    validation = _holdout(rng, n_rows, params.validation_fraction)
    training = np.setdiff1d(np.arange(n_rows), validation)
    ensemble = Ensemble(objective, objective.init_score(y[training]), [p.name for p in parties])
    raw = np.tile(ensemble.init_score, (n_rows, 1))
    best_loss, best_round = np.inf, 0
    for round_ in range(params.n_trees):
        sampled = training
        if params.subsample < 1:
            size = max(1, round(params.subsample * len(training)))
            sampled = np.sort(rng.choice(training, size=size, replace=False))
        grad, hess = objective.gradients(raw[sampled], y[sampled])
        for output in range(objective.n_outputs):
            gh = QuantizedGH.quantize(grad[:, output], hess[:, output])
            features = _sample_columns(rng, parties, params.colsample_bytree)
            tree, leaf_of_row = grow_tree(params, gh, sampled, features, parties, n_rows, min_node_rows)
            raw[:, output] += np.asarray(tree.value)[leaf_of_row]
            ensemble.trees.append(tree)
            ensemble.tree_output.append(output)
        if validation.size:
            loss = objective.loss(raw[validation], y[validation])
            ensemble.validation_loss.append(loss)
            if loss < best_loss:
                best_loss, best_round = loss, round_
            elif params.early_stopping_rounds and round_ - best_round >= params.early_stopping_rounds:
                break
    if params.early_stopping_rounds:
        kept_trees = (best_round + 1) * objective.n_outputs
        del ensemble.trees[kept_trees:], ensemble.tree_output[kept_trees:]
    for party, kept in zip(parties, ensemble.kept_splits()):
        party.finish(kept)
    return ensemble


def _holdout(rng: np.random.Generator, n_rows: int, fraction: float) -> np.ndarray:
    return np.sort(rng.permutation(n_rows)[: round(fraction * n_rows)])


def holdout_rows(params: BoostParams, n_rows: int) -> np.ndarray:
    """The rows :func:`train` holds out for validation (ascending): what a job evaluates the model on."""
    return _holdout(np.random.default_rng(params.seed), n_rows, params.validation_fraction)


def _sample_columns(rng: np.random.Generator, parties: Sequence[FeatureParty], fraction: float) -> list[np.ndarray]:
    """Per party, the feature indices one tree may split on (``colsample_bytree`` over all parties' columns)."""
    sizes = [p.n_features for p in parties]
    total = sum(sizes)
    if total == 0:
        raise DataError("no party holds any feature")
    chosen = np.arange(total)
    if fraction < 1:
        chosen = np.sort(rng.choice(total, size=max(1, round(fraction * total)), replace=False))
    bounds = np.cumsum([0] + sizes)
    return [chosen[(chosen >= lo) & (chosen < hi)] - lo for lo, hi in pairwise(bounds)]


def grow_tree(params: BoostParams, gh: QuantizedGH, sampled: np.ndarray, features: list[np.ndarray],
              parties: Sequence[FeatureParty], n_rows: int, min_node_rows: int = 1) -> tuple[Tree, np.ndarray]:
    """One tree, depth-wise. Returns it with each row's leaf (every row, sampled or not, is routed)."""
    return _TreeGrower(params, gh, sampled, features, parties, n_rows, min_node_rows).grow()


class _TreeGrower:
    """One tree while it grows: each node's rows and integer (G, H) totals, the open level's histograms.

    Per level: the best split of each node over all parties; the owners split and return partitions;
    every party learns them; the smaller child of each split gets its histograms built, its sibling's
    are the parent's minus those (histogram subtraction).
    """

    def __init__(self, params: BoostParams, gh: QuantizedGH, sampled: np.ndarray, features: list[np.ndarray],
                 parties: Sequence[FeatureParty], n_rows: int, min_node_rows: int):
        self.params, self.gh, self.parties = params, gh, parties
        self.min_node_rows = min_node_rows
        self.active = [p for p in range(len(parties)) if features[p].size]
        for p in self.active:
            parties[p].start_tree(gh, sampled, features[p])
        self.gh_position = np.full(n_rows, -1, dtype=np.int64)
        self.gh_position[sampled] = np.arange(len(sampled))
        self.tree = Tree()
        self.rows = {0: np.arange(n_rows)}
        self.totals = {0: self._sum_gradients(self.rows[0])}

    def grow(self) -> tuple[Tree, np.ndarray]:
        histograms = {}
        if self._sampled(0) >= self.min_node_rows:
            histograms[0] = _histograms(self.parties, self.active, [(0, self.rows[0])])[0]
        frontier = list(histograms)
        for depth in range(self.params.max_depth):
            children = self._split_level(frontier, histograms)
            if depth + 1 < self.params.max_depth and children:
                histograms = self._children_histograms(children, histograms)
            frontier = [child for _, left, right in children for child in (left, right) if child in histograms]
        leaf_of_row = np.empty(len(self.rows[0]), dtype=np.int64)
        for node in range(self.tree.n_nodes):
            if self.tree.left[node] < 0:
                self.tree.value[node] = leaf_weight(*self.totals[node], self.gh.scale, self.params)
                leaf_of_row[self.rows[node]] = node
        return self.tree, leaf_of_row

    def _sum_gradients(self, rows: np.ndarray) -> tuple[int, int]:
        positions = self.gh_position[rows]
        positions = positions[positions >= 0]
        return int(self.gh.grad[positions].sum()), int(self.gh.hess[positions].sum())

    def _sampled(self, node: int) -> int:
        """Rows of ``node`` that carry gradients: what building its histogram costs."""
        return int((self.gh_position[self.rows[node]] >= 0).sum())

    def _split_level(self, frontier: list[int], histograms: dict[int, dict[int, Histogram]]) -> list[tuple[int, int, int]]:
        """Split what gains; returns (parent, left, right) per split, in frontier order."""
        chosen = {}
        for node in frontier:
            best = _best_over_parties(self.parties, self.active, histograms[node], self.totals[node],
                                      self.gh.scale, self.params)
            if best is not None:
                chosen[node] = best
        partitions = _split(self.parties, chosen, self.rows)
        children = []
        for node in (node for node in frontier if node in partitions):
            owner, split_id, mask = partitions[node]
            candidate = chosen[node][1]
            left, right = self.tree.add_split(node, owner, split_id, candidate.gain)
            self.rows[left], self.rows[right] = self.rows[node][mask], self.rows[node][~mask]
            self.totals[left] = self._sum_gradients(self.rows[left])
            if self.totals[left] != (candidate.left_grad, candidate.left_hess):
                raise ProtocolError(f"partition of node {node} disagrees with the histogram it was chosen from",
                                    peer=self.parties[owner].name)
            self.totals[right] = (self.totals[node][0] - self.totals[left][0], self.totals[node][1] - self.totals[left][1])
            for p in self.active:
                self.parties[p].observe_partition(node, left, right, mask)
            children.append((node, left, right))
        return children

    def _children_histograms(self, children: list[tuple[int, int, int]],
                             parents: dict[int, dict[int, Histogram]]) -> dict[int, dict[int, Histogram]]:
        """Histograms of both children of each split whose smaller child has ``min_node_rows`` rows;
        the other splits' children stay leaves (the larger one's histogram would reveal the smaller's)."""
        children = [c for c in children if min(self._sampled(c[1]), self._sampled(c[2])) >= self.min_node_rows]
        smaller = [left if self._sampled(left) <= self._sampled(right) else right for _, left, right in children]
        built = _histograms(self.parties, self.active, [(node, self.rows[node]) for node in smaller]) if children else []
        histograms = {}
        for (parent, left, right), small, hist in zip(children, smaller, built):
            histograms[small] = hist
            histograms[right if small == left else left] = {p: parents[parent][p] - hist[p] for p in self.active}
        return histograms


def _histograms(parties: Sequence[FeatureParty], active: list[int],
                nodes: list[tuple[int, np.ndarray]]) -> list[dict[int, Histogram]]:
    """Per node, each active party's histogram; every party is asked before any is waited for."""
    for p in active:
        parties[p].request_histograms(nodes)
    per_party = {p: parties[p].collect_histograms() for p in active}
    return [{p: per_party[p][i] for p in active} for i in range(len(nodes))]


def _best_over_parties(parties: Sequence[FeatureParty], active: list[int], histograms: dict[int, Histogram],
                       node_totals: tuple[int, int], scale: FixedPointScale,
                       params: BoostParams) -> tuple[int, SplitCandidate] | None:
    """Highest gain over all parties; on a tie the earlier party (the guest first) wins."""
    best = None
    for p in active:
        candidate = best_split(histograms[p], parties[p].value_bins, *node_totals, scale, params)
        if candidate is not None and (best is None or candidate.gain > best[1].gain):
            best = (p, candidate)
    return best


def _split(parties: Sequence[FeatureParty], chosen: dict[int, tuple[int, SplitCandidate]],
           rows: dict[int, np.ndarray]) -> dict[int, tuple[int, int, np.ndarray]]:
    """Have each split's owner split its nodes; returns node -> (owner, split id, left mask)."""
    requests: dict[int, list[SplitRequest]] = defaultdict(list)
    for node, (owner, candidate) in chosen.items():
        requests[owner].append(SplitRequest(node, rows[node], candidate.feature, candidate.bin, candidate.default_left))
    for owner, batch in requests.items():
        parties[owner].request_splits(batch)
    partitions = {}
    for owner, batch in requests.items():
        for request, (split_id, mask) in zip(batch, parties[owner].collect_splits()):
            partitions[request.node] = (owner, split_id, mask)
    return partitions


def party_names(n_parts: int) -> list[str]:
    """Names the reference booster gives column blocks: the label holder first, as in a federated job."""
    return ["guest"] + [f"host{i}" for i in range(1, n_parts)]


class SecureBoostReference:
    """The centralised twin of vertical SecureBoost: column blocks in one process, no crypto, same trees.

    ``X_parts[0]`` plays the guest's columns, the rest the hosts' in order.
    """

    def __init__(self, *, bins: int = 32, min_node_rows: int = SAFE_NODE_ROWS, **params):
        self.bins = bins
        self.min_node_rows = check_min_node_rows(min_node_rows)
        self.params = BoostParams(**params)

    def fit(self, X_parts: Sequence[np.ndarray], y: np.ndarray) -> SecureBoostReference:
        if not X_parts:
            raise ConfigError("fit needs at least one column block")
        self.parties_ = [LocalParty(name, X, self.bins) for name, X in zip(party_names(len(X_parts)), X_parts)]
        self.ensemble_ = train(self.params, y, self.parties_, min_node_rows=self.min_node_rows)
        return self

    def decision_function(self, X_parts: Sequence[np.ndarray]) -> np.ndarray:
        routers = [LocalRouter(party.splits, X) for party, X in zip(self.parties_, X_parts)]
        return self.ensemble_.predict_raw(routers, len(X_parts[0]))

    def predict_proba(self, X_parts: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``(rows, classes)``, as scikit-learn returns them."""
        return to_proba(self.ensemble_.objective, self.decision_function(X_parts))

    def predict(self, X_parts: Sequence[np.ndarray]) -> np.ndarray:
        return to_prediction(self.ensemble_.objective, self.decision_function(X_parts))

    def feature_importance(self) -> dict[str, dict[str, list[float]]]:
        return {party.name: {"split_count": party.importance_count.tolist(), "gain": party.importance_gain.tolist()}
                for party in self.parties_}


def to_proba(objective: Objective, raw: np.ndarray) -> np.ndarray:
    if objective.name == "regression":
        raise ConfigError("a regression model has no class probabilities; use predict")
    p = objective.transform(raw)
    return np.column_stack([1 - p, p]) if p.ndim == 1 else p


def to_prediction(objective: Objective, raw: np.ndarray) -> np.ndarray:
    """Class labels for classifiers (0/1, or argmax), values for regression."""
    if objective.name == "regression":
        return objective.transform(raw)
    return np.argmax(to_proba(objective, raw), axis=1)
