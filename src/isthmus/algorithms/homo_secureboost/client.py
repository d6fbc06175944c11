"""A client of horizontal SecureBoost: its rows stay here; only masked counts and histograms leave.

The client answers the aggregator's requests (see :mod:`~isthmus.algorithms.homo_secureboost.aggregator` for the
order): it counts its values on the aggregator's grid, computes its rows' gradients with the model
as grown so far, partitions its rows by the announced splits and sends the histograms of the nodes
asked for. Every vector goes into a secure sum. It builds its own copy of the model split by split,
and at the end keeps the whole model the aggregator announces (checked by replaying it).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np

from isthmus.crypto.secagg import encode_fixed
from isthmus.errors import IsthmusError, for_peer
from isthmus.horizontal.participant import REQUEST_TAG, reply_tag
from isthmus.horizontal.secure_sum import SecAggTerms
from isthmus.protocols.inspect import Inspect
from isthmus.ml.binning import QuantileBinner
from isthmus.transport.channel import Channel
from isthmus.tree.gh import SUM_BITS
from isthmus.algorithms.homo_secureboost.aggregator import STAT_BITS
from isthmus.algorithms.homo_secureboost.binning import coarse_counts, refined_counts
from isthmus.algorithms.homo_secureboost.model import HomoTreeModel, WireReader, replay
from isthmus.algorithms.homo_secureboost.rounds import SECURE_STAGES, ClientSums
from isthmus.tree.objectives import Objective, objective_from_dict
from isthmus.tree.tree import build_histogram

log = logging.getLogger("isthmus.tree.homo")

_OBJECTIVES = {"binary", "multiclass", "regression"}
_MAX_CLASSES = 1 << 10


class HomoSecureBoostClient:
    """``serve(channel, aggregator)`` takes part in training and returns this client's copy of the model.

    ``terms`` are this client's own: its signing key, the other clients' pinned keys, and the settings
    and quorum every secure sum must meet.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, *, terms: SecAggTerms, feature_names: list[str] | None = None,
                 timeout: float | None = None):
        self.terms = terms
        self.X = np.asarray(X, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        if self.X.ndim != 2 or len(self.X) != len(self.y) or len(self.y) == 0:
            raise IsthmusError(f"X of shape {self.X.shape} and y of shape {self.y.shape} do not make rows")
        self.feature_names = feature_names or [f"x{i}" for i in range(self.X.shape[1])]
        self.timeout = timeout

    def serve(self, channel: Channel, aggregator: str = "aggregator") -> HomoTreeModel:
        """Answer ``aggregator`` until it stops; a request that fails is reported to it (which drops this
        client) and serving goes on, so the final model still arrives."""
        session = _Session(self, channel.party, aggregator)
        while session.final is None:
            request = channel.recv(aggregator, REQUEST_TAG, self.timeout)
            check = Inspect(aggregator, REQUEST_TAG)
            check.mapping(request, {"op", "round"})
            op, server_round = request["op"], check.integer(request["round"], 0, 1 << 40)
            if op in _Session.NOTIFICATIONS:
                getattr(session, op)(request)
                continue
            try:
                reply = session.answer(op, request, server_round)
            except Exception as exc:  # noqa: BLE001 - the aggregator learns why and leaves this client out
                log.warning("%s: %s (round %d) failed: %s", channel.party, op, server_round, exc)
                reply = {"error": for_peer(exc)}
            channel.send(aggregator, reply_tag(op, server_round), reply)
        return session.final


class _Session:
    """One training run's state at a client, and a handler per request."""

    NOTIFICATIONS = ("bins", "tree_done", "stop")
    CONTRIBUTIONS = ("init", "refine", "gradients", "level")

    def __init__(self, client: HomoSecureBoostClient, name: str, aggregator: str):
        self.client, self.name, self.aggregator = client, name, aggregator
        self.sums = ClientSums(name, aggregator, client.terms)
        self.final: HomoTreeModel | None = None
        self.model: HomoTreeModel | None = None  # this client's copy while it grows
        self.objective: Objective | None = None
        self.sorted_columns: list[np.ndarray] | None = None  # for counting on refined grids
        self.grad: np.ndarray | None = None  # this boosting round's (g, h) of the sampled rows
        self.node_rows: dict[int, np.ndarray] | None = None  # the current tree's rows per node

    def check(self, op: str) -> Inspect:
        return Inspect(self.aggregator, op)

    def answer(self, op: str, request: dict, server_round: int) -> dict:
        if op == "hello":
            return {"features": self.client.feature_names}
        if op in SECURE_STAGES:
            return self.sums.handle(op, request, server_round)
        if op not in self.CONTRIBUTIONS:
            self.check(REQUEST_TAG).fail(f"unknown request {op!r:.40}")
        vector = getattr(self, op)(request, self._summands(request))
        return self.sums.contribute(op, request, server_round, vector)

    def _summands(self, request: dict) -> int:
        check = self.check("secure sum")
        return check.integer(check.mapping(request.get("secure"), {"summands"})["summands"], 1, 1 << 20)

    # -- agreeing on bins -----------------------------------------------------------------------
    def init(self, request: dict, summands: int) -> np.ndarray:
        check = self.check("init")
        setup = check.mapping(check.mapping(request, {"setup"})["setup"], {"objective", "seed", "subsample"})
        spec = check.mapping(setup["objective"], {"name", "n_outputs"})
        if spec["name"] not in _OBJECTIVES:
            check.fail(f"unknown objective {spec['name']!r:.40}")
        check.integer(spec["n_outputs"], 1, _MAX_CLASSES)
        self.objective = objective_from_dict(spec)
        self.objective.check(self.client.y)  # labels this objective cannot take: fail here, before anything is sent
        self.subsample = check.number(setup["subsample"])
        if not 0 < self.subsample <= 1:
            check.fail("subsample must be in (0, 1]")
        # row sampling: deterministic given the job's seed, different at every client
        name_hash = int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:8], "big")
        self.rng = np.random.default_rng([check.integer(setup["seed"], 0, 1 << 63), name_hash])
        y = self.client.y
        stats = encode_fixed(np.array([len(y), y.sum()]), STAT_BITS, summands)
        return np.concatenate([stats, coarse_counts(self.client.X).ravel().view(np.uint64)])

    def refine(self, request: dict, summands: int) -> np.ndarray:
        check = self.check("refine")
        cells = check.mapping(request, {"cells"})["cells"]
        X = self.client.X
        if not isinstance(cells, list) or len(cells) != X.shape[1]:
            check.fail(f"cells must be a list of {X.shape[1]} arrays, one per feature")
        for intervals in cells:
            if not (_array(intervals, np.float64, 2) and intervals.shape[1] == 2 and len(intervals) < 256
                    and np.isfinite(intervals).all() and (intervals[:, 0] < intervals[:, 1]).all()):
                check.fail("cells must be at most 255 finite (lo, hi] intervals with lo < hi")
        if self.sorted_columns is None:
            self.sorted_columns = [np.sort(column[~np.isnan(column)]) for column in X.T]
        return refined_counts(self.sorted_columns, cells).view(np.uint64)

    def bins(self, request: dict) -> None:
        check = self.check("bins")
        check.mapping(request, {"split_points", "init_score", "bins"})
        if self.objective is None:
            check.fail("bins announced before init")
        n_features = self.client.X.shape[1]
        points = request["split_points"]
        if not isinstance(points, list) or len(points) != n_features:
            check.fail(f"split points must be a list of {n_features} arrays")
        bins = check.integer(request["bins"], 2, 255)
        if not all(_array(p, np.float64, 1) for p in points):
            check.fail("split points must be 1-D float64 arrays")
        init_score = check.array(request["init_score"], (self.objective.n_outputs,), dtype=np.float64)
        try:
            binner = QuantileBinner.from_split_points(bins, points)
        except IsthmusError as exc:
            check.fail(str(exc))
        self.model = HomoTreeModel(self.client.feature_names, binner, self.objective, init_score)
        self.binned = binner.transform(self.client.X)
        self.raw = np.tile(init_score, (len(self.client.y), 1))

    # -- boosting -------------------------------------------------------------------------------
    def gradients(self, request: dict, summands: int) -> np.ndarray:
        check = self.check("gradients")
        check.mapping(request, {"boosting_round"})
        if self.model is None:
            check.fail("gradients asked for before the bins were agreed")
        n_rows = len(self.client.y)
        sampled = np.arange(n_rows)
        if self.subsample < 1:
            sampled = np.sort(self.rng.choice(n_rows, size=max(1, round(self.subsample * n_rows)), replace=False))
        self.gh_position = np.full(n_rows, -1, dtype=np.int64)
        self.gh_position[sampled] = np.arange(len(sampled))
        y = self.client.y[sampled]
        self.grad, self.hess = self.objective.gradients(self.raw[sampled], y)
        loss = self.objective.loss(self.raw[sampled], y) * len(sampled)
        # the totals fix the fixed-point scale: rounded up, they bound the true sums, so the scaled
        # (g, h) of all clients together stay below 2**SUM_BITS however small they are
        totals = np.ceil(np.ldexp(np.concatenate([np.abs(self.grad).sum(axis=0), self.hess.sum(axis=0)]), STAT_BITS))
        stats = np.concatenate([[len(sampled), loss], np.ldexp(totals, -STAT_BITS)])
        return encode_fixed(stats, STAT_BITS, summands)

    def level(self, request: dict, summands: int) -> np.ndarray:
        check = self.check("level")
        check.mapping(request, {"splits", "build", "tree"})
        if request["tree"] is not None:
            self._start_tree(request["tree"])
        if self.node_rows is None:
            check.fail("a level asked for before any tree")
        self._apply(request["splits"], "level")
        build = request["build"]
        tree = self.model.trees[-1]
        if not _array(build, np.int64, 1) or len(set(build.tolist())) != build.size or not all(
                0 <= node < tree.n_nodes and tree.left[node] < 0 for node in build.tolist()):
            check.fail("nodes to build must be distinct leaves of the current tree")
        n_columns = self.model.binner.bins + 1
        parts = []
        for node in build.tolist():
            rows = self.node_rows[node]
            positions = self.gh_position[rows]
            rows, positions = rows[positions >= 0], positions[positions >= 0]
            histogram = build_histogram(self.binned[np.ix_(rows, self.features)], self.tree_grad[positions],
                                        self.tree_hess[positions], self.features, n_columns)
            parts += [histogram.grad.ravel(), histogram.hess.ravel()]
        return np.concatenate(parts).view(np.uint64) if parts else np.empty(0, dtype=np.uint64)

    def _start_tree(self, start: Any) -> None:
        check = self.check("level")
        check.mapping(start, {"output", "exponents", "features"})
        if self.grad is None:
            check.fail("a tree started before the gradients were summed")
        exponents = start["exponents"]
        if not (isinstance(exponents, list) and len(exponents) == 2):
            check.fail("exponents must be [grad, hess]")
        grad_exponent, hess_exponent = (check.integer(e, -1100, 1100) for e in exponents)
        features = start["features"]
        n_features = self.client.X.shape[1]
        if not _array(features, np.int64, 1) or features.size == 0 or features.min() < 0 or features.max() >= n_features or (np.diff(features) <= 0).any():
            check.fail("features must be increasing column indices")
        WireReader(self.model, self.aggregator, "level").start_tree(start["output"])
        output = start["output"]
        self.tree_grad = _fixed_point(self.grad[:, output], grad_exponent, check)
        self.tree_hess = _fixed_point(self.hess[:, output], hess_exponent, check)
        self.features = features
        self.node_rows = {0: np.arange(len(self.client.y))}

    def _apply(self, splits: Any, tag: str) -> None:
        """Apply the announced splits to the model copy and partition this client's rows by them."""
        missing_bin = self.model.binner.missing_bin
        for split, left, right in WireReader(self.model, self.aggregator, tag).apply_splits(splits):
            rows = self.node_rows[split.node]
            column = self.binned[rows, split.feature]
            goes_left = np.where(column == missing_bin, split.default_left, column <= split.bin)
            self.node_rows[left], self.node_rows[right] = rows[goes_left], rows[~goes_left]

    def tree_done(self, request: dict) -> None:
        check = self.check("tree_done")
        check.mapping(request, {"splits", "values"})
        if self.node_rows is None:
            check.fail("tree_done before any tree")
        self._apply(request["splits"], "tree_done")
        tree = self.model.trees[-1]
        values = WireReader(self.model, self.aggregator, "tree_done").values(request["values"])
        self.model.set_leaf_values(values)
        output = self.model.tree_output[-1]
        for node in range(tree.n_nodes):
            if tree.left[node] < 0:
                self.raw[self.node_rows[node], output] += values[node]
        self.node_rows = None

    def stop(self, request: dict) -> None:
        check = self.check("stop")
        check.mapping(request, {"model", "reason"})
        if request["model"] is None or self.model is None:
            raise IsthmusError(f"aggregator {self.aggregator!r} ended the job without a model: "
                               f"{str(request['reason'])[:500]}")
        self.final = replay(self.model, request["model"], peer=self.aggregator, tag="stop")


def _fixed_point(values: np.ndarray, exponent: int, check: Inspect) -> np.ndarray:
    """This client's share of a tree's (g or h) at the agreed scale; its own sum must fit, too."""
    scaled = np.rint(np.ldexp(values, exponent))
    if not np.abs(scaled).sum() < 2.0**SUM_BITS:
        check.fail(f"scale 2**{exponent} makes this client's gradients overflow")
    return scaled.astype(np.int64)


def _array(obj: Any, dtype: type, ndim: int) -> bool:
    return isinstance(obj, np.ndarray) and obj.dtype == dtype and obj.ndim == ndim
