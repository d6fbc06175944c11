"""The aggregator of horizontal SecureBoost: it grows the trees from securely summed histograms.

Clients hold rows with the same columns. In order:

1. ``hello``: each client names its columns (they must agree).
2. ``init`` (secure sum): row count, label sum and coarse per-feature value counts; then ``refine``
   rounds until the quantile bins are agreed (:mod:`~isthmus.algorithms.homo_secureboost.binning`), announced by ``bins``.
3. Per boosting round, ``gradients`` (secure sum): row count, loss sum, and per output the sums of
   |g| and h, which fix the fixed-point scale every client quantizes its (g, h) with.
4. Per tree, per level, ``level`` (secure sum): the clients apply the last level's splits to their rows
   and send the (G, H) histograms of the nodes asked for; the smaller child (by hessian) is built, its
   sibling is the parent minus it. Splits and leaf weights come from the same code as hetero
   SecureBoost (:func:`~isthmus.tree.tree.best_split`, :func:`~isthmus.tree.tree.leaf_weight`).
   ``tree_done`` announces the last splits and the leaf values.
5. ``stop`` hands every client the whole model.

Integers make the sums exact, so with the same bins and clients the trees are those the plaintext
booster grows on the pooled rows. A client that drops out of the first sum is left out of the job; one
that drops out later ends it, named (see :mod:`~isthmus.algorithms.homo_secureboost.rounds` for why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from isthmus.crypto.secagg import decode_fixed
from isthmus.errors import ConfigError, DataError, ProtocolError, for_peer
from isthmus.horizontal.columns import check_same_columns
from isthmus.horizontal.fleet import ChannelFleet
from isthmus.horizontal.secure_sum import Keyring, SecAggConfig, SecAggTerms
from isthmus.protocols.inspect import MAX_NAME, Inspect
from isthmus.ml.binning import QuantileBinner
from isthmus.transport.channel import Channel
from isthmus.tree.gh import FixedPointScale, fixed_point_exponent
from isthmus.algorithms.homo_secureboost.binning import COARSE_EDGES, PARTS, REFINEMENTS, GridSketch
from isthmus.algorithms.homo_secureboost.model import HomoTreeModel, Split
from isthmus.algorithms.homo_secureboost.rounds import AggregatorRounds
from isthmus.tree.objectives import objective_from_dict
from isthmus.tree.params import BoostParams
from isthmus.tree.tree import Histogram, best_split, leaf_weight

#: Fractional bits of the real-valued sums (labels, losses, |g| and h totals); counts are exact.
STAT_BITS = 16
MAX_FEATURES = 1 << 16


@dataclass(frozen=True)
class _Child:
    """A split made at this level: its parent, new nodes, and the left side's (G, H) it was chosen with."""

    split: Split
    left: int
    right: int
    left_totals: tuple[int, int]


class HomoSecureBoostAggregator:
    """``fit(channel, clients)`` grows the model; each client runs :class:`HomoSecureBoostClient.serve`.

    Row and column subsampling, L2, min_child_weight and min_split_gain work as in vertical SecureBoost;
    early stopping does not (no party holds a shared validation set).
    """

    def __init__(self, params: BoostParams, *, bins: int = 32, secagg: SecAggConfig | None = None,
                 min_clients: int = 2, round_timeout: float = 300.0, keyring: Keyring | None = None,
                 job: str = "isthmus"):
        if params.early_stopping_rounds or params.validation_fraction:
            raise ConfigError("horizontal SecureBoost has no early stopping: drop early_stopping_rounds "
                              "and validation_fraction")
        if params.objective == "multiclass" and params.n_classes is None:
            raise ConfigError("horizontal multiclass SecureBoost needs n_classes (labels 0 .. n_classes-1)")
        if min_clients < 2:
            raise ConfigError("min_clients must be at least 2: a secure sum over one client is that client's data")
        QuantileBinner(bins)  # validates bins
        self.params, self.bins = params, bins
        self.secagg = secagg or SecAggConfig()
        self.min_clients, self.round_timeout = min_clients, round_timeout
        self.keyring, self.job = keyring, job

    def fit(self, channel: Channel, clients: list[str],
            progress: Callable[[dict], None] | None = None) -> HomoTreeModel:
        """Grow the model with ``clients``; every secure sum holds the quorum of the clients it started with."""
        if self.keyring is None:
            raise ConfigError("horizontal SecureBoost needs the clients' pinned signing keys (keyring)")
        quorum = self.secagg.quorum(len(clients), self.min_clients)
        terms = SecAggTerms(self.keyring.public(), self.secagg, quorum, self.job)
        rounds = AggregatorRounds(ChannelFleet(channel), sorted(clients), terms, self.round_timeout)
        self._progress = progress or (lambda record: None)
        try:
            model = self._train(rounds)
        except Exception as exc:
            rounds.notify({"op": "stop", "model": None, "reason": f"aborted: {for_peer(exc)}"}, clients)
            raise
        rounds.notify({"op": "stop", "model": model.records(), "reason": "finished"})
        for client, why in rounds.left.items():  # told, not left waiting for a request that never comes
            rounds.notify({"op": "stop", "model": None, "reason": f"left the job: {why}"[:2000]}, [client])
        self.history_ = {"finished_with": rounds.members, "left": rounds.left}
        return model

    # -- setup ------------------------------------------------------------------------------------
    def _train(self, rounds: AggregatorRounds) -> HomoTreeModel:
        features = self._agree_on_columns(rounds)
        objective = objective_from_dict({"name": self.params.objective, "n_outputs": self.params.n_classes or 1})
        setup = {"objective": objective.to_dict(), "seed": self.params.seed, "subsample": self.params.subsample}
        rows, label_sum, binner = self._agree_on_bins(rounds, setup, len(features))
        if rows == 0:
            raise DataError("the clients hold no rows")
        # every objective's starting score depends on the labels only through their mean
        init_score = objective.init_score(np.array([label_sum / rows]))
        model = HomoTreeModel(features, binner, objective, init_score)
        rounds.notify({"op": "bins", "bins": self.bins, "split_points": binner.split_points_, "init_score": init_score})
        self._boost(rounds, model)
        return model

    def _agree_on_columns(self, rounds: AggregatorRounds) -> list[str]:
        agreed, first = None, None
        for client, reply in sorted(rounds.ask("hello", {}).items()):
            check = Inspect(client, "hello")
            names = check.mapping(reply, {"features"})["features"]
            if not (isinstance(names, list) and 0 < len(names) <= MAX_FEATURES
                    and all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in names)):
                check.fail("expected a non-empty list of column names")
            if agreed is None:
                agreed, first = names, client
            else:
                check_same_columns(first, agreed, client, names)
        return agreed

    def _agree_on_bins(self, rounds: AggregatorRounds, setup: dict, n_features: int):
        width = len(COARSE_EDGES) + 1
        total = rounds.secure_sum("init", {"setup": setup}, 2 + n_features * width)
        stats = decode_fixed(total[:2], STAT_BITS)
        counts = total[2:].view(np.int64).reshape(n_features, width)
        sketches = [GridSketch(c) for c in counts]
        for _ in range(REFINEMENTS):
            cells = [sketch.cells_to_refine(self.bins) for sketch in sketches]
            length = PARTS * sum(len(c) for c in cells)
            parts = rounds.secure_sum("refine", {"cells": cells}, length).view(np.int64)
            bounds = np.cumsum([0] + [PARTS * len(c) for c in cells])
            try:
                for sketch, lo, hi in zip(sketches, bounds[:-1], bounds[1:]):
                    sketch.refine(parts[lo:hi])
            except ValueError as exc:
                raise ProtocolError(f"refined counts are inconsistent: {exc}", peer=",".join(rounds.members),
                                    tag="refine") from None
        binner = QuantileBinner.from_split_points(self.bins, [s.split_points(self.bins) for s in sketches])
        return round(stats[0]), float(stats[1]), binner

    # -- boosting ---------------------------------------------------------------------------------
    def _boost(self, rounds: AggregatorRounds, model: HomoTreeModel) -> None:
        rng = np.random.default_rng(self.params.seed)
        n_outputs = model.objective.n_outputs
        for round_ in range(self.params.n_trees):
            stats = decode_fixed(rounds.secure_sum("gradients", {"boosting_round": round_}, 2 + 2 * n_outputs), STAT_BITS)
            rows, loss = stats[0], stats[1] / max(stats[0], 1)
            self._progress({"epoch": round_ + 1, "epochs": self.params.n_trees, "loss": float(loss),
                            "clients": len(rounds.members)})
            for output in range(n_outputs):
                scale = FixedPointScale(fixed_point_exponent(float(stats[2 + output]), round(rows)),
                                        fixed_point_exponent(float(stats[2 + n_outputs + output]), round(rows)))
                features = self._sample_columns(rng, len(model.feature_names))
                _TreeGrowth(self, rounds, model, output, scale, features).grow()

    def _sample_columns(self, rng: np.random.Generator, n_features: int) -> np.ndarray:
        if self.params.colsample_bytree >= 1:
            return np.arange(n_features)
        size = max(1, round(self.params.colsample_bytree * n_features))
        return np.sort(rng.choice(n_features, size=size, replace=False))


class _TreeGrowth:
    """One tree, level by level, from the members' summed histograms."""

    def __init__(self, owner: HomoSecureBoostAggregator, rounds: AggregatorRounds, model: HomoTreeModel,
                 output: int, scale: FixedPointScale, features: np.ndarray):
        self.params, self.rounds, self.model = owner.params, rounds, model
        self.scale, self.features = scale, features
        self.n_columns = owner.bins + 1
        self.tree = model.start_tree(output)
        self.totals: dict[int, tuple[int, int]] = {}  # every node's (G, H) over the rows that reached it
        self._start = {"output": output, "exponents": [scale.grad_exponent, scale.hess_exponent],
                       "features": features.astype(np.int64)}

    def grow(self) -> None:
        histograms = self._histograms([], [0], start=True)
        frontier, unannounced = [0], []
        for depth in range(self.params.max_depth):
            children = self._split_level(frontier, histograms)
            if not children:
                break
            if depth + 1 < self.params.max_depth:
                histograms = self._children_histograms(children, histograms)
            else:  # leaves need only their totals: the split's own sums give them
                for child in children:
                    parent = self.totals[child.split.node]
                    self.totals[child.left] = child.left_totals
                    self.totals[child.right] = (parent[0] - child.left_totals[0], parent[1] - child.left_totals[1])
                unannounced = children
            frontier = [node for child in children for node in (child.left, child.right)]
        values = np.zeros(self.tree.n_nodes)
        for node in range(self.tree.n_nodes):
            if self.tree.left[node] < 0:
                values[node] = leaf_weight(*self.totals[node], self.scale, self.params)
        self.model.set_leaf_values(values)
        self.rounds.notify({"op": "tree_done", "splits": [c.split.to_wire() for c in unannounced], "values": values})

    def _split_level(self, frontier: list[int], histograms: dict[int, Histogram]) -> list[_Child]:
        children = []
        for node in frontier:
            best = best_split(histograms[node], self.model.value_bins, *self.totals[node], self.scale, self.params)
            if best is not None:
                split = Split(node, best.feature, best.bin, best.default_left, best.gain)
                children.append(_Child(split, *self.model.split(split), (best.left_grad, best.left_hess)))
        return children

    def _children_histograms(self, children: list[_Child], parents: dict[int, Histogram]) -> dict[int, Histogram]:
        """The new level's histograms: the smaller child of each split built, its sibling derived."""
        smaller = [child.left if child.left_totals[1] <= self.totals[child.split.node][1] - child.left_totals[1]
                   else child.right for child in children]
        built = self._histograms([c.split.to_wire() for c in children], smaller)
        histograms = {}
        for child, small in zip(children, smaller):
            parent, sibling = child.split.node, child.right if small == child.left else child.left
            chosen = child.left_totals if small == child.left else \
                (self.totals[parent][0] - child.left_totals[0], self.totals[parent][1] - child.left_totals[1])
            if self.totals[small] != chosen:
                raise ProtocolError(f"the clients' rows of node {small} disagree with the split chosen for them",
                                    peer=",".join(self.rounds.members), tag="level")
            histograms[small] = built[small]
            histograms[sibling] = parents[parent] - built[small]
            self.totals[sibling] = (self.totals[parent][0] - chosen[0], self.totals[parent][1] - chosen[1])
        return histograms

    def _histograms(self, splits: list[list], build: list[int], *, start: bool = False) -> dict[int, Histogram]:
        """Summed histograms of the nodes ``build`` over the members, once they applied ``splits``;
        sets those nodes' totals."""
        message = {"splits": splits, "build": np.asarray(build, dtype=np.int64), "tree": self._start if start else None}
        size = len(self.features) * self.n_columns
        total = self.rounds.secure_sum("level", message, 2 * size * len(build)).view(np.int64)
        histograms = {}
        for node, sums in zip(build, total.reshape(len(build), 2, len(self.features), self.n_columns)):
            histograms[node] = Histogram(self.features, sums[0].copy(), sums[1].copy())
            self.totals[node] = (int(sums[0][0].sum()), int(sums[1][0].sum()))
        return histograms
