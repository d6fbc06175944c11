"""The host's side of hetero SecureBoost: encrypted histograms in, partitions out; thresholds stay here.

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

import json
from pathlib import Path
from typing import Any

import numpy as np

from isthmus.errors import ConfigError, ProtocolError, for_peer
from isthmus.ml.binning import QuantileBinner
from isthmus.transport.channel import Channel
from isthmus.tree import messages as msg
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
            channel.abort(f"hetero SecureBoost host failed: {for_peer(exc)}")
            raise
        self.feature_names_ = feature_names
        self.splits_ = local.splits
        self.kept_split_ids_ = set(local.kept_splits)
        self.feature_importance_ = {"split_count": local.importance_count.tolist(),
                                    "gain": local.importance_gain.tolist()}
        return self

    def _train(self, channel: Channel, X: np.ndarray, guest: str) -> LocalParty:
        setup = msg.expect_map(channel.recv(guest, msg.SETUP, self.timeout),
                               {"cipher", "n_rows", "model_id"}, peer=guest, tag=msg.SETUP)
        msg.expect_int(setup["n_rows"], len(X), len(X) + 1, "row count (must equal this host's rows)",
                       peer=guest, tag=msg.SETUP)
        if not isinstance(setup["model_id"], str) or not 0 < len(setup["model_id"]) <= 64:
            raise ProtocolError("model id must be a short string", peer=guest, tag=msg.SETUP)
        cipher = host_cipher(self.encryption, setup["cipher"], peer=guest, tag=msg.SETUP)
        self.model_id_ = setup["model_id"]
        local = LocalParty(channel.party, X, self.bins)
        channel.send(guest, msg.HELLO, {"value_bins": local.value_bins})
        _TrainingSession(channel, guest, local, cipher, self.timeout, self.min_node_rows).run()
        return local

    def serve_predict(self, channel: Channel, X: np.ndarray, guest: str = "guest") -> None:
        """Answer the guest's direction queries for rows ``X`` (aligned with the guest's) until it is done."""
        X = np.asarray(X, dtype=np.float64)
        try:
            self._accept_prediction(channel, X, guest)
            self._answer_queries(channel, X, guest)
        except Exception as exc:
            channel.abort(f"hetero SecureBoost host failed to predict: {for_peer(exc)}")
            raise

    def _accept_prediction(self, channel: Channel, X: np.ndarray, guest: str) -> None:
        """Check the guest's request against this model and these rows; tell the guest either way."""
        start = msg.expect_map(channel.recv(guest, msg.PREDICT, self.timeout), {"op", "n_rows", "model_id"},
                               peer=guest, tag=msg.PREDICT)
        n_features = max(self.splits_.feature, default=-1) + 1
        problem = ""
        if start["op"] != "start":
            problem = f"expected op 'start', got {start['op']!r}"
        elif start["model_id"] != self.model_id_:
            problem = f"guest model {start['model_id']!r} is not this host's model {self.model_id_!r}"
        elif X.ndim != 2 or start["n_rows"] != len(X) or X.shape[1] < n_features:
            problem = f"guest has {start['n_rows']} rows, this host features of shape {X.shape} (model uses {n_features})"
        channel.send(guest, msg.ROUTE, {"ok": not problem, "error": problem})
        if problem:
            raise ProtocolError(problem, peer=guest, tag=msg.PREDICT)

    def _answer_queries(self, channel: Channel, X: np.ndarray, guest: str) -> None:
        where = {"peer": guest, "tag": msg.PREDICT}
        while True:
            request = channel.recv(guest, msg.PREDICT, self.timeout)
            if isinstance(request, dict) and isinstance(request.get("op"), str) and request["op"] == "done":
                return
            request = msg.expect_map(request, {"op", "split_ids", "rows"}, **where)
            split_ids = msg.expect_ints(request["split_ids"], 0, len(self.splits_), "split ids", **where)
            rows = msg.expect_ints(request["rows"], 0, len(X), "rows", size=split_ids.size, **where)
            if request["op"] != "route" or not self.splits_.known(split_ids):
                raise ProtocolError("expected a route query over this model's split ids", **where)
            channel.send(guest, msg.ROUTE, self.splits_.go_left(X, split_ids, rows))

    # -- model part ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The host's model part: its split rules (feature, threshold, missing direction) by split id."""
        return {"format": MODEL_FORMAT, "model_id": self.model_id_, "bins": self.bins,
                "feature_names": self.feature_names_,
                "splits": self.splits_.to_dict(self.kept_split_ids_, self.feature_names_),
                "feature_importance": self.feature_importance_}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> HeteroSecureBoostHost:
        model = json.loads(Path(path).read_text(encoding="utf-8"))
        if model.get("format") != MODEL_FORMAT:
            raise ConfigError(f"{path} is not a hetero SecureBoost host model")
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
        handlers = {"tree": self.start_tree, "level": self.level, "split": self.split}
        while True:
            command = self.channel.recv(self.guest, msg.COMMAND, self.timeout)
            op = command.get("op") if isinstance(command, dict) else None
            if op == "finish":
                self.finish(command)
                return
            if op not in handlers:
                raise ProtocolError(f"unknown command {op!r}", peer=self.guest, tag=msg.COMMAND)
            handlers[op](command)

    def _check(self, command: Any, keys: set[str]) -> dict:
        return msg.expect_map(command, keys | {"op"}, peer=self.guest, tag=msg.COMMAND)

    def start_tree(self, command: Any) -> None:
        command = self._check(command, {"sampled", "features", "gradients"})
        where = {"peer": self.guest, "tag": msg.COMMAND}
        self.sampled = msg.expect_ints(command["sampled"], 0, self.n_rows, "sampled rows", increasing=True, **where)
        self.features = msg.expect_ints(command["features"], 0, self.local.n_features, "features", increasing=True, **where)
        self.cipher.load(command["gradients"], self.sampled.size, **where)
        self.gh_position = np.full(self.n_rows, -1, dtype=np.int64)
        self.gh_position[self.sampled] = np.arange(self.sampled.size)
        self.node_rows = {0: np.arange(self.n_rows)}
        self.sibling: dict[int, int] = {}
        self.split_nodes: set[int] = set()
        self.own_partitions: dict[int, np.ndarray] = {}  # this host's splits, until the guest announces them

    def level(self, command: Any) -> None:
        command = self._check(command, {"partitions", "build"})
        where = {"peer": self.guest, "tag": msg.COMMAND}
        for partition in msg.expect_list(command["partitions"], None, "partitions", **where):
            node, left, right, mask = msg.expect_list(partition, 4, "partition", **where)
            rows = self._leaf_rows(node)
            if any(type(c) is not int or c in self.node_rows for c in (left, right)) or left == right:
                raise ProtocolError("partition children must be new, distinct node ids", **where)
            mask = msg.expect_mask(mask, rows.size, "partition mask", **where)
            own = self.own_partitions.pop(node, None)
            if own is not None and not np.array_equal(own, mask):
                raise ProtocolError(f"partition of node {node} differs from this host's split of it", **where)
            self.node_rows[left], self.node_rows[right] = rows[mask], rows[~mask]
            self.sibling[left], self.sibling[right] = right, left
            self.split_nodes.add(node)
        build = msg.expect_ints(command["build"], 0, 2**62, "nodes to build", **where)
        nodes = []
        for node in build.tolist():
            rows = self._sampled_rows(self._leaf_rows(node))
            self._check_node_size(node, rows.size)
            nodes.append((self.gh_position[rows], self.compact_bins[np.ix_(rows, self.features)]))
        n_bins = self.local.value_bins[self.features] + 1
        self.channel.send(self.guest, msg.HISTOGRAMS, self.cipher.histograms(nodes, n_bins))

    def split(self, command: Any) -> None:
        command = self._check(command, {"splits"})
        where = {"peer": self.guest, "tag": msg.COMMAND}
        split_ids, masks = [], []
        for item in msg.expect_list(command["splits"], None, "splits", **where):
            node, feature, bin_, default_left = msg.expect_list(item, 4, "split", **where)
            rows = self._leaf_rows(node)
            if node in self.own_partitions:
                raise ProtocolError(f"node {node} was already split", **where)
            if feature not in set(self.features.tolist()) or type(default_left) is not bool:
                raise ProtocolError("split names a feature outside this tree's sample or a non-bool direction", **where)
            msg.expect_int(bin_, 0, int(self.local.value_bins[feature]) - 1, "split bin", **where)
            split_id, mask = self.local.split(SplitRequest(node, rows, feature, bin_, default_left))
            self.own_partitions[node] = mask
            split_ids.append(split_id)
            masks.append(mask)
        self.channel.send(self.guest, msg.SPLITS, {"split_ids": np.array(split_ids, dtype=np.int64), "masks": masks})

    def finish(self, command: Any) -> None:
        command = self._check(command, {"split_ids", "gains"})
        where = {"peer": self.guest, "tag": msg.COMMAND}
        split_ids = msg.expect_ints(command["split_ids"], 0, len(self.local.splits), "kept split ids", **where)
        gains = command["gains"]
        if not isinstance(gains, np.ndarray) or gains.dtype != np.float64 or gains.shape != split_ids.shape \
                or not np.isfinite(gains).all():
            raise ProtocolError("gains must be finite float64 values, one per split id", **where)
        self.local.finish(dict(zip(split_ids.tolist(), gains.tolist())))

    def _sampled_rows(self, rows: np.ndarray) -> np.ndarray:
        """The rows that carry gradients in this tree: those a histogram sums over."""
        return rows[self.gh_position[rows] >= 0]

    def _check_node_size(self, node: int, size: int) -> None:
        """Refuse a histogram over too few rows, or whose sibling has too few (the guest holds the
        parent's histogram, so one child's gives the other's)."""
        sibling = self.sibling.get(node)
        smallest = size if sibling is None else min(size, self._sampled_rows(self.node_rows[sibling]).size)
        if smallest < self.min_node_rows:
            raise ProtocolError(f"refusing the histogram of node {node}: it or its sibling has {smallest} rows, "
                                f"fewer than min_node_rows {self.min_node_rows}: the guest could read those "
                                "rows' bins off it", peer=self.guest, tag=msg.COMMAND)

    def _leaf_rows(self, node: Any) -> np.ndarray:
        """Rows of a node of the current tree that has not been split yet."""
        if type(node) is not int or node not in self.node_rows or node in self.split_nodes:
            raise ProtocolError(f"node {node!r} is not a leaf of the current tree", peer=self.guest, tag=msg.COMMAND)
        return self.node_rows[node]
