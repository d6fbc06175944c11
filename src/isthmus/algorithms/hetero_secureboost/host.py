"""The host's side of vertical SecureBoost: encrypted histograms in, partitions out; thresholds stay here.

The host bins its own columns and shows the guest only how many bins each column has (no names,
no split points), builds encrypted histograms of the nodes the guest asks for, and splits a node
when the guest picks one of its (column, bin) candidates: it records the rule under a fresh split
id and returns only the partition of the node's rows. The saved model part maps split ids to
features and thresholds and never leaves the host. It builds no histogram over fewer than
``min_node_rows`` rows, nor one whose sibling is that small: from the per-bin sums of a few rows'
gradients, which it knows, the guest would read those rows' bins.

Columns are shown in their own order, not shuffled: the guest's column sampling and tie-breaking
then match the plaintext reference booster exactly, and an index says nothing without the name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isthmus.errors import ConfigError
from isthmus.ml.binning import QuantileBinner
from isthmus.protocols.commands import STOP, serve_orders, stop
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel
from isthmus.algorithms.hetero_secureboost import tags
from isthmus.tree.gh_cipher import HostCipher, host_cipher
from isthmus.tree.params import SAFE_NODE_ROWS, check_min_node_rows
from isthmus.tree.party import LocalParty, SplitRequest
from isthmus.tree.split_table import SplitTable

MODEL_FORMAT = "isthmus/hetero-secureboost/host/v1"


class HeteroSecureBoostHost:
    """``fit(channel, X, guest=...)`` trains with the guest; ``serve_predict`` answers its routing queries."""

    def __init__(self, bins: int = 32, *, encryption: str = "paillier", timeout: float | None = None,
                 min_node_rows: int = SAFE_NODE_ROWS):
        QuantileBinner(bins)  # validates bins
        check_min_node_rows(min_node_rows)
        self.bins = bins
        self.encryption = encryption
        self.timeout = timeout
        self.min_node_rows = min_node_rows

    def fit(self, channel: Channel, X: np.ndarray, guest: str = "guest",
            feature_names: list[str] | None = None) -> HeteroSecureBoostHost:
        """Train with ``guest`` on rows aligned with its rows (after PSI); the guest runs ``fit`` meanwhile."""
        X = np.asarray(X, dtype=np.float64)
        try:
            local = self._train(channel, X, guest)
        except Exception as exc:
            channel.abort_after(exc, "vertical SecureBoost host")
            raise
        self.feature_names_ = feature_names
        self.splits_ = local.splits
        self.kept_split_ids_ = set(local.kept_splits)
        self.feature_importance_ = {"split_count": local.importance_count.tolist(),
                                    "gain": local.importance_gain.tolist()}
        return self

    def _train(self, channel: Channel, X: np.ndarray, guest: str) -> LocalParty:
        check = Inspect(guest, tags.SETUP)
        setup = check.mapping(channel.recv(guest, tags.SETUP, self.timeout), {"cipher", "n_rows", "model_id"},
                              exact=True)
        check.integer(setup["n_rows"], len(X), len(X), "row count (must equal this host's rows)")
        check.text(setup["model_id"], "model id", max_length=64)
        cipher = host_cipher(self.encryption, setup["cipher"], peer=guest, tag=tags.SETUP)
        self.model_id_ = setup["model_id"]
        local = LocalParty(channel.party, X, self.bins)
        channel.send(guest, tags.HELLO, {"value_bins": local.value_bins})
        _TrainingSession(channel, guest, local, cipher, self.timeout, self.min_node_rows).run()
        return local

    def serve_predict(self, channel: Channel, X: np.ndarray, guest: str = "guest") -> None:
        """Answer the guest's direction queries for rows ``X`` (aligned with the guest's) until it is done."""
        X = np.asarray(X, dtype=np.float64)
        try:
            self._accept_prediction(channel, X, guest)
            self._answer_queries(channel, X, guest)
        except Exception as exc:
            channel.abort_after(exc, "vertical SecureBoost host's prediction")
            raise

    def _accept_prediction(self, channel: Channel, X: np.ndarray, guest: str) -> None:
        """Check the guest's request against this model and these rows; tell the guest either way."""
        check = Inspect(guest, tags.PREDICT)
        start = check.mapping(channel.recv(guest, tags.PREDICT, self.timeout), {"op", "n_rows", "model_id"}, exact=True)
        n_features = max(self.splits_.feature, default=-1) + 1
        problem = ""
        if start["op"] != "start":
            problem = f"expected op 'start', got {start['op']!r}"
        elif start["model_id"] != self.model_id_:
            problem = f"guest model {start['model_id']!r} is not this host's model {self.model_id_!r}"
        elif X.ndim != 2 or start["n_rows"] != len(X) or X.shape[1] < n_features:
            problem = (f"guest has {start['n_rows']} rows, this host features of shape {X.shape} "
                       f"(model uses {n_features})")
        channel.send(guest, tags.ROUTE, {"ok": not problem, "error": problem})
        if problem:
            check.fail(problem)

    def _answer_queries(self, channel: Channel, X: np.ndarray, guest: str) -> None:
        def route(request: dict, check: Inspect) -> None:
            request = check.mapping(request, {"op", "split_ids", "rows"}, exact=True)
            split_ids = check.indices(request["split_ids"], len(self.splits_), what="split ids")
            rows = check.indices(request["rows"], len(X), size=split_ids.size, what="rows")
            if not self.splits_.known(split_ids):
                check.fail("expected a route query over this model's split ids")
            channel.send(guest, tags.ROUTE, self.splits_.go_left(X, split_ids, rows))

        serve_orders(channel, guest, tags.PREDICT, {"route": route, "done": stop}, timeout=self.timeout)

    # -- model part ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The host's model part: its split rules (feature, threshold, missing direction) by split id."""
        return {"format": MODEL_FORMAT, "model_id": self.model_id_, "bins": self.bins,
                "feature_names": self.feature_names_,
                "splits": self.splits_.to_dict(self.kept_split_ids_, self.feature_names_),
                "feature_importance": self.feature_importance_}

    @classmethod
    def from_dict(cls, model: dict, **kwargs: Any) -> HeteroSecureBoostHost:
        """The host's part as :meth:`to_dict` wrote it (e.g. read back from its ``model.json``)."""
        if model.get("format") != MODEL_FORMAT:
            raise ConfigError("not a vertical SecureBoost host model")
        host = cls(model["bins"], **kwargs)
        host.model_id_ = model["model_id"]
        host.splits_ = SplitTable.from_dict(model["splits"])
        host.kept_split_ids_ = {int(k) for k in model["splits"]}
        host.feature_importance_ = model["feature_importance"]
        host.feature_names_ = model["feature_names"]
        return host


class _TrainingSession:
    """One fit: follows the guest's commands, checking each against what it already knows."""

    def __init__(self, channel: Channel, guest: str, local: LocalParty, cipher: HostCipher, timeout: float | None,
                 min_node_rows: int):
        self.channel, self.guest, self.local = channel, guest, local
        self.cipher = cipher
        self.timeout = timeout
        self.min_node_rows = min_node_rows
        self.n_rows = len(local.binned)
        # bins with the missing bin moved next to the value bins: the wire layout of a histogram
        missing = local.binned == local.binner.missing_bin
        self.compact_bins = np.where(missing, local.value_bins[None, :], local.binned).astype(np.uint8)
        self.node_rows: dict[int, np.ndarray] = {}

    def run(self) -> None:
        serve_orders(self.channel, self.guest, tags.COMMAND,
                     {"tree": self.start_tree, "level": self.level, "split": self.split, "finish": self.finish},
                     timeout=self.timeout)

    def start_tree(self, command: dict, check: Inspect) -> None:
        command = check.mapping(command, {"op", "sampled", "features", "gradients"}, exact=True)
        self.sampled = check.indices(command["sampled"], self.n_rows, increasing=True, what="sampled rows")
        self.features = check.indices(command["features"], self.local.n_features, increasing=True, what="features")
        self.cipher.load(command["gradients"], self.sampled.size, peer=check.peer, tag=check.tag)
        self.gh_position = np.full(self.n_rows, -1, dtype=np.int64)
        self.gh_position[self.sampled] = np.arange(self.sampled.size)
        self.node_rows = {0: np.arange(self.n_rows)}
        self.sibling: dict[int, int] = {}
        self.split_nodes: set[int] = set()
        self.own_partitions: dict[int, np.ndarray] = {}  # this host's splits, until the guest announces them

    def level(self, command: dict, check: Inspect) -> None:
        command = check.mapping(command, {"op", "partitions", "build"}, exact=True)
        for partition in check.sequence(command["partitions"], what="partitions"):
            node, left, right, mask = check.sequence(partition, 4, "partition")
            rows = self._leaf_rows(node, check)
            if any(type(c) is not int or c in self.node_rows for c in (left, right)) or left == right:
                check.fail("partition children must be new, distinct node ids")
            mask = check.mask(mask, rows.size, "partition mask")
            own = self.own_partitions.pop(node, None)
            if own is not None and not np.array_equal(own, mask):
                check.fail(f"partition of node {node} differs from this host's split of it")
            self.node_rows[left], self.node_rows[right] = rows[mask], rows[~mask]
            self.sibling[left], self.sibling[right] = right, left
            self.split_nodes.add(node)
        build = check.indices(command["build"], 2**62, what="nodes to build")
        nodes = []
        for node in build.tolist():
            rows = self._sampled_rows(self._leaf_rows(node, check))
            self._check_node_size(node, rows.size, check)
            nodes.append((self.gh_position[rows], self.compact_bins[np.ix_(rows, self.features)]))
        n_bins = self.local.value_bins[self.features] + 1
        self.channel.send(self.guest, tags.HISTOGRAMS, self.cipher.histograms(nodes, n_bins))

    def split(self, command: dict, check: Inspect) -> None:
        command = check.mapping(command, {"op", "splits"}, exact=True)
        split_ids, masks = [], []
        for item in check.sequence(command["splits"], what="splits"):
            node, feature, bin_, default_left = check.sequence(item, 4, "split")
            rows = self._leaf_rows(node, check)
            if node in self.own_partitions:
                check.fail(f"node {node} was already split")
            if feature not in set(self.features.tolist()) or type(default_left) is not bool:
                check.fail("split names a feature outside this tree's sample or a non-bool direction")
            check.integer(bin_, 0, int(self.local.value_bins[feature]) - 2, "split bin")
            split_id, mask = self.local.split(SplitRequest(node, rows, feature, bin_, default_left))
            self.own_partitions[node] = mask
            split_ids.append(split_id)
            masks.append(mask)
        self.channel.send(self.guest, tags.SPLITS, {"split_ids": np.array(split_ids, dtype=np.int64), "masks": masks})

    def finish(self, command: dict, check: Inspect) -> object:
        command = check.mapping(command, {"op", "split_ids", "gains"}, exact=True)
        split_ids = check.indices(command["split_ids"], len(self.local.splits), what="kept split ids")
        gains = check.array(command["gains"], split_ids.shape, dtype=np.float64, what="gains")
        self.local.finish(dict(zip(split_ids.tolist(), gains.tolist())))
        return STOP

    def _sampled_rows(self, rows: np.ndarray) -> np.ndarray:
        """The rows that carry gradients in this tree: those a histogram sums over."""
        return rows[self.gh_position[rows] >= 0]

    def _check_node_size(self, node: int, size: int, check: Inspect) -> None:
        """Refuse a histogram over too few rows, or whose sibling has too few (the guest holds the
        parent's histogram, so one child's gives the other's)."""
        sibling = self.sibling.get(node)
        smallest = size if sibling is None else min(size, self._sampled_rows(self.node_rows[sibling]).size)
        if smallest < self.min_node_rows:
            check.fail(f"refusing the histogram of node {node}: it or its sibling has {smallest} rows, fewer than "
                       f"min_node_rows {self.min_node_rows}: the guest could read those rows' bins off it")

    def _leaf_rows(self, node: Any, check: Inspect) -> np.ndarray:
        """Rows of a node of the current tree that has not been split yet."""
        if type(node) is not int or node not in self.node_rows or node in self.split_nodes:
            check.fail(f"node {node!r} is not a leaf of the current tree")
        return self.node_rows[node]
