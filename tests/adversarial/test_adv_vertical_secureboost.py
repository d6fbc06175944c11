"""Hetero SecureBoost against a curious and a deviating guest (in-process channel).

The guest knows every row's exact (g, h) and decrypts per-bin sums of them over a node's rows, for
every host column. Over a node of a handful of rows it solves those sums for which row sits in which
bin (one row: its bin in every host column). Such nodes must get no histograms, and the host must
refuse to build one for a guest that asks anyway.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from isthmus.errors import ProtocolError
from isthmus.ml.binning import QuantileBinner
from isthmus.transport.local import LocalHub
from isthmus.algorithms.hetero_secureboost import tags
from isthmus.tree.gh import SLOT_BITS
from isthmus.algorithms.hetero_secureboost.guest import HeteroSecureBoostGuest, RemoteHost
from isthmus.algorithms.hetero_secureboost.host import HeteroSecureBoostHost
from isthmus.tree.params import SAFE_NODE_ROWS

BINS = 8


def small_regression(n=160, seed=0):
    """Deep trees with unit hessians: without a floor, nodes shrink to a row or two."""
    rng = np.random.default_rng(seed)
    X_guest, X_host = rng.normal(size=(n, 2)), rng.normal(size=(n, 3))
    y = X_guest[:, 0] + np.sin(3 * X_host[:, 0]) + X_host[:, 1] ** 2 + 0.1 * rng.normal(size=n)
    return X_guest, X_host, y


def read_bins_off(histogram, grad, hess):
    """The curious guest's subset-sum attack on one small node: for each host column and bin, the
    unique subset of the node's rows whose (g, h) add up to the bin's sums. Returns {row: bins}."""
    rows = range(len(grad))
    found = {}
    for column in range(histogram.grad.shape[0]):
        for bin_ in range(histogram.grad.shape[1]):
            target = (histogram.grad[column, bin_], histogram.hess[column, bin_])
            if target == (0, 0):
                continue
            matches = [subset for size in range(1, len(grad) + 1) for subset in itertools.combinations(rows, size)
                       if (grad[list(subset)].sum(), hess[list(subset)].sum()) == target]
            if len(matches) == 1:
                for row in matches[0]:
                    found.setdefault(row, {})[column] = bin_
    return found


def test_a_curious_guest_reads_no_host_bins_off_small_nodes(monkeypatch):
    X_guest, X_host, y = small_regression()
    seen = []  # (node rows, histogram, g and h of those rows) of every histogram the guest decrypted
    collect = RemoteHost.collect_histograms

    def curious_collect(self):
        histograms = collect(self)
        for rows, histogram in zip(self._building, histograms):
            positions = self._gh_position[rows]
            seen.append((rows, histogram, self._gh.grad[positions], self._gh.hess[positions]))
        return histograms

    monkeypatch.setattr(RemoteHost, "collect_histograms", curious_collect)
    hub = LocalHub(["guest", "host"])
    guest = HeteroSecureBoostGuest(n_trees=3, max_depth=6, bins=BINS, objective="regression", encryption="plaintext",
                                   timeout=30)
    host = HeteroSecureBoostHost(BINS, encryption="plaintext", timeout=30)
    errors = []
    thread = threading.Thread(target=lambda: _collect_error(errors, lambda: host.fit(hub.channel("host"), X_host)))
    thread.start()
    guest.fit(hub.channel("guest"), X_guest, y, hosts=["host"])
    thread.join(30)
    assert not errors

    true_bins = QuantileBinner(BINS).fit(X_host).transform(X_host)
    read = 0
    for rows, histogram, grad, hess in seen:
        if len(rows) > 4:
            continue  # the attack's brute force stays cheap below 5 rows; a floor of 64 leaves none anyway
        for row, bins in read_bins_off(histogram, grad, hess).items():
            assert all(true_bins[rows[row], column] == bin_ for column, bin_ in bins.items())
            read += len(bins) == X_host.shape[1]
    assert read == 0, f"the guest read all host bins of {read} rows"
    assert min(len(rows) for rows, *_ in seen) >= SAFE_NODE_ROWS


def _collect_error(errors, fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - inspected by the test
        errors.append(exc)


class DeviatingGuest:
    """Drives an honest host through SETUP and one tree, then asks what the test says."""

    def __init__(self, hub: LocalHub, n_rows: int, sampled: np.ndarray):
        self.channel = hub.channel("guest")
        self.channel.send("host", tags.SETUP, {"cipher": {"mode": "plaintext", "slot_bits": SLOT_BITS}, "n_rows": n_rows,
                                              "model_id": "m"})
        self.channel.recv("host", tags.HELLO, 30)
        gradients = {"grad": np.arange(1, sampled.size + 1, dtype=np.int64), "hess": np.ones(sampled.size, dtype=np.int64)}
        self.channel.send("host", tags.COMMAND, {"op": "tree", "sampled": sampled.astype(np.int64),
                                                "features": np.arange(3, dtype=np.int64), "gradients": gradients})

    def level(self, partitions, build):
        self.channel.send("host", tags.COMMAND, {"op": "level", "partitions": partitions,
                                                "build": np.array(build, dtype=np.int64)})


def refused_by_host(X_host, deviate) -> ProtocolError:
    hub = LocalHub(["guest", "host"])
    host = HeteroSecureBoostHost(BINS, encryption="plaintext", timeout=30)
    errors = []
    thread = threading.Thread(target=lambda: _collect_error(errors, lambda: host.fit(hub.channel("host"), X_host)))
    thread.start()
    deviate(hub)
    thread.join(30)
    assert not thread.is_alive() and len(errors) == 1 and isinstance(errors[0], ProtocolError), errors
    return errors[0]


def test_the_host_refuses_the_histogram_of_a_one_row_node():
    _, X_host, _ = small_regression()
    n = len(X_host)
    # a tree whose only row with gradients is row 5: the root's histogram would be row 5's bins
    error = refused_by_host(X_host, lambda hub: DeviatingGuest(hub, n, np.array([5])).level([], [0]))
    assert error.peer == "guest" and "node 0" in str(error) and "1 rows" in str(error)


def test_the_host_refuses_a_large_node_whose_sibling_is_small():
    """The guest holds the root's histogram: the larger child's gives the 2-row child's by subtraction."""
    _, X_host, _ = small_regression()
    n = len(X_host)
    left = np.zeros(n, dtype=bool)
    left[:2] = True

    def deviate(hub):
        guest = DeviatingGuest(hub, n, np.arange(n))
        guest.level([], [0])
        guest.channel.recv("host", tags.HISTOGRAMS, 30)
        guest.level([[0, 1, 2, left]], [2])  # asks only for the large right child

    error = refused_by_host(X_host, deviate)
    assert error.peer == "guest" and "node 2" in str(error) and "2 rows" in str(error)


def test_a_floor_below_one_row_is_a_config_error():
    with pytest.raises(Exception, match="min_node_rows"):
        HeteroSecureBoostHost(BINS, min_node_rows=0)


def test_a_job_lowering_the_node_floor_needs_the_benchmark_switch(tmp_path):
    from isthmus.errors import ConfigError
    from isthmus.jobs.plan import make_plan
    from isthmus.jobs.spec import parse_job

    train = {"model": "hetero_secureboost", "min_node_rows": 8}
    parties = {"guest": {"address": "127.0.0.1:1", "data": {"path": str(tmp_path / "g.csv"), "id": "id", "label": "y"}},
               "host": {"address": "127.0.0.1:2", "data": {"path": str(tmp_path / "h.csv"), "id": "id"}}}
    spec = parse_job({"job": "unsafe", "parties": parties, "steps": [{"train": train}]}, base_dir=tmp_path)
    for party in spec.parties:
        with pytest.raises(ConfigError, match=f"party '{party}'.*min_node_rows 8"):
            make_plan(spec, party)
