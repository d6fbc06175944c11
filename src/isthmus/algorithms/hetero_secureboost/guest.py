"""The guest's side of vertical SecureBoost: labels, gradients, split choice, tree structure.

The guest runs the same booster as :class:`~isthmus.tree.booster.SecureBoostReference`; each host
takes part through a :class:`RemoteHost` proxy that turns the booster's calls into messages. The
guest sees a host's histograms (decrypted sums per feature slot and bin), chooses splits, and keeps
only ``(host, split id)`` in its trees; prediction asks each host, once per tree level, which way
the rows go at its splits.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

from isthmus.errors import ConfigError, PeerTimeoutError, ProtocolError
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel
from isthmus.algorithms.hetero_secureboost import tags
from isthmus.tree.booster import Ensemble, to_prediction, to_proba, train
from isthmus.tree.gh import QuantizedGH
from isthmus.tree.gh_cipher import GuestCipher, dense_histogram, guest_cipher
from isthmus.tree.params import SAFE_NODE_ROWS, BoostParams, check_min_node_rows
from isthmus.tree.party import (
    FeatureParty,
    LocalParty,
    LocalRouter,
    Router,
    SplitRequest,
)
from isthmus.tree.split_table import SplitTable
from isthmus.tree.tree import Histogram

MODEL_FORMAT = "isthmus/hetero-secureboost/guest/v1"


class HeteroSecureBoostGuest:
    """Hetero SecureBoost, label holder's role. Hyper-parameters as in :class:`BoostParams`.

    ``encryption="plaintext"`` runs the protocol without encryption (benchmarks only: it shows the
    hosts every gradient); ``key_bits`` sizes the Paillier key generated for each fit. Nodes of fewer
    than ``min_node_rows`` rows stay leaves (:func:`~isthmus.tree.booster.train`); hosts refuse the
    histograms of smaller nodes, so each must be given at most this value.

    After ``fit``: ``feature_importance_`` holds split count and total gain per guest feature, and
    per host in total (each host keeps its per-feature figures).
    """

    def __init__(self, n_trees: int = 10, max_depth: int = 3, learning_rate: float = 0.3, bins: int = 32, *,
                 encryption: str = "paillier", key_bits: int = 2048, timeout: float | None = None,
                 min_node_rows: int = SAFE_NODE_ROWS, **params: Any):
        self.params = BoostParams(n_trees=n_trees, max_depth=max_depth, learning_rate=learning_rate, **params)
        self.min_node_rows = check_min_node_rows(min_node_rows)
        self.bins = bins
        self.encryption = encryption
        self.key_bits = key_bits
        self.timeout = timeout

    @property
    def secure(self) -> bool:
        """False in the benchmark-only plaintext mode; production jobs must refuse such a model."""
        return self.encryption != "plaintext"

    def fit(self, channel: Channel, X: np.ndarray, y: np.ndarray, hosts: Sequence[str],
            feature_names: list[str] | None = None) -> HeteroSecureBoostGuest:
        """Train with ``hosts`` on rows aligned with theirs (after PSI); each host runs ``fit`` meanwhile."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if len(X) != len(y):
            raise ConfigError(f"X has {len(X)} rows, y {len(y)}")
        if not hosts or len(set(hosts)) != len(hosts) or channel.party in hosts:
            raise ConfigError(f"vertical SecureBoost needs distinct hosts other than the guest, got {list(hosts)}")
        try:
            cipher = guest_cipher(self.encryption, self.key_bits)
            model_id = secrets.token_hex(16)
            local = LocalParty(channel.party, X, self.bins)
            remotes = [RemoteHost(channel, host, cipher, self.timeout) for host in hosts]
            for remote in remotes:
                remote.send_setup(len(X), model_id)
            for remote in remotes:
                remote.receive_hello()
            self.ensemble_ = train(self.params, y, [local, *remotes], min_node_rows=self.min_node_rows)
        except Exception as exc:
            channel.abort_after(exc, "vertical SecureBoost training")
            raise
        self.model_id_ = model_id
        self.hosts_ = list(hosts)
        self.splits_ = local.splits
        self.feature_names_ = feature_names
        self.feature_importance_ = {channel.party: {"split_count": local.importance_count.tolist(),
                                                    "gain": local.importance_gain.tolist()},
                                    **{remote.name: remote.importance for remote in remotes}}
        return self

    # -- prediction ----------------------------------------------------------------------------
    def decision_function(self, channel: Channel, X: np.ndarray) -> np.ndarray:
        """Raw scores ``(rows, outputs)``; every host of the model must be running ``serve_predict``."""
        X = np.asarray(X, dtype=np.float64)
        remotes = [RemoteRouter(channel, host, self.timeout) for host in self.hosts_]
        for remote in remotes:
            remote.send_start(len(X), self.model_id_)
        try:  # each host's answer to the start is read before its first directions (one round trip less)
            raw = self.ensemble_.predict_raw([LocalRouter(self.splits_, X), *remotes], len(X))
            for remote in remotes:
                remote.receive_ready()  # a host asked for no directions answers its start here
        except Exception as exc:
            channel.abort_after(exc, "vertical SecureBoost prediction")
            raise
        for remote in remotes:
            remote.send_done()
        return raw

    def predict_proba(self, channel: Channel, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(rows, classes)``."""
        return to_proba(self.ensemble_.objective, self.decision_function(channel, X))

    def predict(self, channel: Channel, X: np.ndarray) -> np.ndarray:
        """Class labels, or values for regression."""
        return to_prediction(self.ensemble_.objective, self.decision_function(channel, X))

    # -- model part ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The guest's model part: tree structures, leaf values, its own split rules; hosts by name only."""
        return {"format": MODEL_FORMAT, "model_id": self.model_id_, "hosts": self.hosts_,
                "params": self.params.to_dict(), "bins": self.bins, "encryption": self.encryption,
                "min_node_rows": self.min_node_rows,
                "ensemble": self.ensemble_.to_dict(), "feature_names": self.feature_names_,
                "splits": self.splits_.to_dict(feature_names=self.feature_names_),
                "feature_importance": self.feature_importance_}

    @classmethod
    def from_dict(cls, model: dict, *, timeout: float | None = None) -> HeteroSecureBoostGuest:
        """The guest's part as :meth:`to_dict` wrote it (e.g. read back from its ``model.json``)."""
        if model.get("format") != MODEL_FORMAT:
            raise ConfigError("not a vertical SecureBoost guest model")
        params = dict(model["params"])
        guest = cls(params.pop("n_trees"), params.pop("max_depth"), params.pop("learning_rate"), model["bins"],
                    encryption=model["encryption"], timeout=timeout,
                    min_node_rows=model.get("min_node_rows", SAFE_NODE_ROWS), **params)
        guest.model_id_ = model["model_id"]
        guest.hosts_ = list(model["hosts"])
        guest.ensemble_ = Ensemble.from_dict(model["ensemble"])
        guest.splits_ = SplitTable.from_dict(model["splits"])
        guest.feature_importance_ = model["feature_importance"]
        guest.feature_names_ = model["feature_names"]
        return guest


class RemoteHost(FeatureParty):
    """A host as the booster sees it: each call becomes a command, each answer is checked."""

    def __init__(self, channel: Channel, name: str, cipher: GuestCipher, timeout: float | None):
        self.channel, self.name, self.cipher, self.timeout = channel, name, cipher, timeout
        self._partitions: list[list] = []
        self.importance: dict[str, float] = {"split_count": 0, "gain": 0.0}

    def send_setup(self, n_rows: int, model_id: str) -> None:
        self.n_rows = n_rows
        self.channel.send(self.name, tags.SETUP, {"cipher": self.cipher.setup(), "n_rows": n_rows, "model_id": model_id})

    def receive_hello(self) -> None:
        check = Inspect(self.name, tags.HELLO)
        hello = check.mapping(self._recv(tags.HELLO), {"value_bins"}, exact=True)
        self.value_bins = check.integers(hello["value_bins"], 1, 255, what="value bins per feature")
        self.n_columns = int(self.value_bins.max(initial=0)) + 1

    def _recv(self, tag: str) -> Any:
        return self.channel.recv(self.name, tag, self.timeout)

    def start_tree(self, gh: QuantizedGH, sampled: np.ndarray, features: np.ndarray) -> None:
        self._gh, self._features = gh, features
        self._gh_position = np.full(self.n_rows, -1, dtype=np.int64)
        self._gh_position[sampled] = np.arange(len(sampled))
        self._partitions = []
        self.channel.send(self.name, tags.COMMAND, {"op": "tree", "sampled": sampled.astype(np.int64),
                                                   "features": features.astype(np.int64),
                                                   "gradients": self.cipher.encrypt(gh)})

    def observe_partition(self, node: int, left: int, right: int, left_mask: np.ndarray) -> None:
        self._partitions.append([node, left, right, left_mask])

    def request_histograms(self, nodes: list[tuple[int, np.ndarray]]) -> None:
        self.channel.send(self.name, tags.COMMAND, {"op": "level", "partitions": self._partitions,
                                                   "build": np.array([node for node, _ in nodes], dtype=np.int64)})
        self._partitions = []
        self._building = [rows for _, rows in nodes]

    def collect_histograms(self) -> list[Histogram]:
        payloads = Inspect(self.name, tags.HISTOGRAMS).sequence(self._recv(tags.HISTOGRAMS), len(self._building),
                                                               "histograms")
        value_bins = self.value_bins[self._features]
        histograms = []
        for payload, rows in zip(payloads, self._building):
            grad, hess = self.cipher.decode(payload, value_bins + 1, peer=self.name, tag=tags.HISTOGRAMS)
            histogram = Histogram(self._features, dense_histogram(grad, value_bins, self.n_columns),
                                  dense_histogram(hess, value_bins, self.n_columns))
            self._check_totals(histogram, rows)
            histograms.append(histogram)
        return histograms

    def _check_totals(self, histogram: Histogram, rows: np.ndarray) -> None:
        """Every feature's bins must add up to the node's gradients: catches a wrong or forged histogram."""
        positions = self._gh_position[rows]
        positions = positions[positions >= 0]
        expected = (self._gh.grad[positions].sum(), self._gh.hess[positions].sum())
        if not ((histogram.grad.sum(axis=1) == expected[0]).all() and (histogram.hess.sum(axis=1) == expected[1]).all()):
            raise ProtocolError("histogram sums disagree with the node's gradients", peer=self.name, tag=tags.HISTOGRAMS)

    def request_splits(self, splits: list[SplitRequest]) -> None:
        self.channel.send(self.name, tags.COMMAND, {"op": "split", "splits": [
            [s.node, s.feature, s.bin, s.default_left] for s in splits]})
        self._splitting = [s.rows.size for s in splits]

    def collect_splits(self) -> list[tuple[int, np.ndarray]]:
        check = Inspect(self.name, tags.SPLITS)
        reply = check.mapping(self._recv(tags.SPLITS), {"split_ids", "masks"}, exact=True)
        split_ids = check.indices(reply["split_ids"], 2**62, size=len(self._splitting), what="split ids")
        masks = check.sequence(reply["masks"], len(self._splitting), "partition masks")
        return [(split_id, check.mask(mask, size, "partition mask"))
                for split_id, mask, size in zip(split_ids.tolist(), masks, self._splitting)]

    def finish(self, kept_splits: dict[int, float]) -> None:
        self.importance = {"split_count": len(kept_splits), "gain": float(sum(kept_splits.values()))}
        self.channel.send(self.name, tags.COMMAND, {"op": "finish",
                                                   "split_ids": np.array(list(kept_splits), dtype=np.int64),
                                                   "gains": np.array(list(kept_splits.values()), dtype=np.float64)})


class RemoteRouter(Router):
    """A host's side of prediction; its silence is a PeerError naming it."""

    def __init__(self, channel: Channel, host: str, timeout: float | None):
        self.channel, self.host, self.timeout = channel, host, timeout

    def _recv(self, what: str) -> Any:
        try:
            return self.channel.recv(self.host, tags.ROUTE, self.timeout)
        except PeerTimeoutError as exc:
            raise PeerTimeoutError(f"host did not answer {what} (is it running serve_predict?): {exc}",
                                   peer=self.host, address=exc.address, tag=tags.ROUTE) from exc

    def _send(self, message: dict) -> None:
        self.channel.send(self.host, tags.PREDICT, message)

    def send_start(self, n_rows: int, model_id: str) -> None:
        self._send({"op": "start", "n_rows": n_rows, "model_id": model_id})
        self._ready = False

    def receive_ready(self) -> None:
        """The host's answer to the start (once): it checked the model and rows before any query."""
        if self._ready:
            return
        reply = Inspect(self.host, tags.ROUTE).mapping(self._recv("the prediction request"), {"ok", "error"}, exact=True)
        if reply["ok"] is not True:
            raise ProtocolError(f"host refused to predict: {reply['error']}", peer=self.host, tag=tags.ROUTE)
        self._ready = True

    def request_directions(self, split_ids: np.ndarray, rows: np.ndarray) -> None:
        self._send({"op": "route", "split_ids": split_ids.astype(np.int64), "rows": rows.astype(np.int64)})
        self._expected = split_ids.size

    def collect_directions(self) -> np.ndarray:
        self.receive_ready()  # the first query travelled right behind the start; the start's answer comes first
        return Inspect(self.host, tags.ROUTE).mask(self._recv("a routing query"), self._expected, "directions")

    def send_done(self) -> None:
        self._send({"op": "done"})
