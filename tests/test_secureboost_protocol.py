"""Hetero SecureBoost over the in-process hub: same trees as the reference, thresholds stay home,
bad peers and absent hosts give clear errors. 1024-bit keys for speed."""

from __future__ import annotations

import json
import struct
import threading
import time

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris

from isthmus.errors import PeerAbortedError, PeerError, ProtocolError
from isthmus.transport import codec
from isthmus.transport.local import LocalHub
from isthmus.algorithms.hetero_secureboost import tags
from isthmus.tree.booster import SecureBoostReference
from isthmus.tree.gh import SLOT_BITS
from isthmus.algorithms.hetero_secureboost.guest import HeteroSecureBoostGuest
from isthmus.algorithms.hetero_secureboost.host import HeteroSecureBoostHost

KEY_BITS = 1024


def run_parties(*roles, timeout=120):
    """Run each role function in its own thread; returns their results, re-raising the first failure."""
    results, errors = [None] * len(roles), []

    def run(i, fn):
        try:
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - surfaced in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(roles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    return results


def federated(hub, X_guest, y, host_data, *, predict=True, **params):
    """Fit guest and hosts, then (optionally) predict jointly on the training rows."""
    guest = HeteroSecureBoostGuest(key_bits=KEY_BITS, timeout=60, **params)
    hosts = {name: HeteroSecureBoostHost(params.get("bins", 32), encryption=params.get("encryption", "paillier"),
                                         timeout=60) for name in host_data}

    def guest_role():
        channel = hub.channel("guest")
        guest.fit(channel, X_guest, y, hosts=list(host_data))
        return guest.predict_proba(channel, X_guest) if predict else None

    def host_role(name):
        channel = hub.channel(name)
        hosts[name].fit(channel, host_data[name])
        if predict:
            hosts[name].serve_predict(channel, host_data[name])

    proba, *_ = run_parties(guest_role, *[lambda name=name: host_role(name) for name in host_data])
    return guest, hosts, proba


def assert_same_trees(guest, reference):
    assert len(guest.ensemble_.trees) == len(reference.ensemble_.trees)
    for mine, theirs in zip(guest.ensemble_.trees, reference.ensemble_.trees):
        assert mine.left == theirs.left and mine.party == theirs.party and mine.split_id == theirs.split_id
        assert mine.value == theirs.value


@pytest.fixture(scope="module")
def breast():
    X, y = load_breast_cancer(return_X_y=True)
    return X[:, :10], X[:, 10:], y


@pytest.mark.parametrize("encryption", ["paillier", "plaintext"])
def test_federated_trees_equal_reference(breast, encryption):
    X_guest, X_host, y = breast
    params = {"n_trees": 4, "max_depth": 3, "subsample": 0.8, "colsample_bytree": 0.7, "seed": 5}
    guest, hosts, proba = federated(LocalHub(["guest", "host"]), X_guest, y, {"host": X_host},
                                    encryption=encryption, **params)
    reference = SecureBoostReference(**params).fit([X_guest, X_host], y)
    assert_same_trees(guest, reference)
    np.testing.assert_array_equal(proba, reference.predict_proba([X_guest, X_host]))
    assert 1 in {party for tree in guest.ensemble_.trees for party in tree.party}  # the host did split
    assert hosts["host"].feature_importance_["split_count"] == reference.feature_importance()["host1"]["split_count"]


def test_multiclass_with_two_hosts_and_missing_values():
    X, y = load_iris(return_X_y=True)
    X = X.copy()
    X[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    parts = [X[:, :1], X[:, 1:3], X[:, 3:]]
    params = {"n_trees": 3, "max_depth": 3, "objective": "multiclass", "bins": 16}
    guest, _, proba = federated(LocalHub(["guest", "h1", "h2"]), parts[0], y, {"h1": parts[1], "h2": parts[2]},
                                **params)
    reference = SecureBoostReference(**params).fit(parts, y)
    assert_same_trees(guest, reference)
    np.testing.assert_array_equal(proba, reference.predict_proba(parts))
    assert (proba.argmax(axis=1) == y).mean() > 0.9


def test_host_thresholds_never_leave_the_host(tmp_path):
    rng = np.random.default_rng(7)
    X_guest, X_host = rng.normal(size=(300, 2)), rng.normal(size=(300, 3))
    y = (X_host[:, 0] + X_guest[:, 0] > 0).astype(float)
    hub = LocalHub(["guest", "host"], audit_dir=tmp_path, keep_payloads=True)
    _, hosts, _ = federated(hub, X_guest, y, {"host": X_host}, n_trees=3, bins=16)
    splits = hosts["host"].splits_
    assert len(splits) > 0
    thresholds = [t for t in splits.threshold]
    sent = hub.audits["host"].sent_payloads()
    assert sent and len(sent) == len([e for e in hub.audits["host"].entries() if e["direction"] == "send"])
    for threshold in thresholds:
        needles = [struct.pack("<d", threshold), struct.pack(">d", threshold), repr(threshold).encode(),
                   f"{threshold:.6f}".encode()]
        # the search itself works: a payload that does carry the threshold is caught
        assert any(needle in codec.encode(np.array([threshold])) for needle in needles)
        for payload in sent:
            assert not any(needle in payload for needle in needles)


def test_models_are_saved_in_parts_and_predict_after_loading(tmp_path, breast):
    X_guest, X_host, y = breast
    guest, hosts, proba = federated(LocalHub(["guest", "host"]), X_guest, y, {"host": X_host}, n_trees=2)
    (tmp_path / "guest.json").write_text(json.dumps(guest.to_dict()))
    (tmp_path / "host.json").write_text(json.dumps(hosts["host"].to_dict()))
    host_part = json.loads((tmp_path / "host.json").read_text())
    guest_text = (tmp_path / "guest.json").read_text()
    assert host_part["splits"] and all("threshold" in rule for rule in host_part["splits"].values())
    assert not any(repr(rule["threshold"]) in guest_text for rule in host_part["splits"].values())

    guest2 = HeteroSecureBoostGuest.from_dict(json.loads((tmp_path / "guest.json").read_text()), timeout=30)
    host2 = HeteroSecureBoostHost.from_dict(json.loads((tmp_path / "host.json").read_text()), timeout=30)
    hub = LocalHub(["guest", "host"])
    again, _ = run_parties(lambda: guest2.predict_proba(hub.channel("guest"), X_guest),
                           lambda: host2.serve_predict(hub.channel("host"), X_host))
    np.testing.assert_array_equal(again, proba)


def test_prediction_with_a_host_offline_is_a_peer_error(breast):
    X_guest, X_host, y = breast
    guest, _, _ = federated(LocalHub(["guest", "host"]), X_guest, y, {"host": X_host}, n_trees=2,
                            encryption="plaintext", predict=False)
    guest.timeout = 0.5
    with pytest.raises(PeerError, match="host") as caught:
        guest.predict_proba(LocalHub(["guest", "host"]).channel("guest"), X_guest)
    assert caught.value.peer == "host"


def test_encryption_mismatch_is_refused_by_the_host(breast):
    X_guest, X_host, y = breast
    hub = LocalHub(["guest", "host"])
    guest = HeteroSecureBoostGuest(n_trees=1, encryption="plaintext", timeout=30)
    host = HeteroSecureBoostHost(encryption="paillier", timeout=30)
    with pytest.raises((ProtocolError, PeerAbortedError)) as caught:
        run_parties(lambda: host.fit(hub.channel("host"), X_host),
                    lambda: guest.fit(hub.channel("guest"), X_guest, y, hosts=["host"]))
    assert "plaintext" in str(caught.value)


def test_a_forged_histogram_is_detected(breast):
    """A host whose histogram does not add up to the node's gradients is caught, not trusted."""
    X_guest, _, y = breast
    hub = LocalHub(["guest", "host"])

    def forging_host():
        channel = hub.channel("host")
        channel.recv("guest", tags.SETUP, 30)
        channel.send("guest", tags.HELLO, {"value_bins": np.array([4], dtype=np.int64)})
        channel.recv("guest", tags.COMMAND, 30)  # the tree
        channel.recv("guest", tags.COMMAND, 30)  # build the root
        zeros = np.zeros(5, dtype=np.int64)
        channel.send("guest", tags.HISTOGRAMS, [{"grad": zeros, "hess": zeros}])

    guest = HeteroSecureBoostGuest(n_trees=1, encryption="plaintext", timeout=30)
    with pytest.raises(ProtocolError, match="disagree"):
        run_parties(lambda: guest.fit(hub.channel("guest"), X_guest, y, hosts=["host"]), forging_host)


def test_host_refuses_commands_about_unknown_nodes(breast):
    _, X_host, y = breast
    hub = LocalHub(["guest", "host"])

    def bad_guest():
        channel = hub.channel("guest")
        channel.send("host", tags.SETUP, {"cipher": {"mode": "plaintext", "slot_bits": SLOT_BITS}, "n_rows": len(y),
                                         "model_id": "m"})
        channel.recv("host", tags.HELLO, 30)
        sampled = np.arange(len(y), dtype=np.int64)
        zeros = np.zeros(len(y), dtype=np.int64)
        channel.send("host", tags.COMMAND, {"op": "tree", "sampled": sampled, "features": np.array([0], dtype=np.int64),
                                           "gradients": {"grad": zeros, "hess": zeros}})
        channel.send("host", tags.COMMAND, {"op": "level", "partitions": [], "build": np.array([7], dtype=np.int64)})

    host = HeteroSecureBoostHost(encryption="plaintext", timeout=30)
    with pytest.raises(ProtocolError, match="node 7"):
        run_parties(lambda: host.fit(hub.channel("host"), X_host), bad_guest)


def test_a_host_refusing_the_start_fails_the_prediction_at_once_naming_it(breast):
    """The first direction query travels right behind the start: the host's refusal of the start (another
    model here) is still what the guest reads first, and raises at once (not a timeout)."""
    X_guest, X_host, y = breast
    guest, hosts, _ = federated(LocalHub(["guest", "host"]), X_guest, y, {"host": X_host}, n_trees=2,
                                encryption="plaintext", predict=False)
    hosts["host"].model_id_ = "another-model"
    hub = LocalHub(["guest", "host"])
    started = time.monotonic()
    host = threading.Thread(target=lambda: pytest.raises(ProtocolError, hosts["host"].serve_predict,
                                                        hub.channel("host"), X_host))
    host.start()
    with pytest.raises((ProtocolError, PeerAbortedError), match="host refused to predict|another-model") as refused:
        guest.predict_proba(hub.channel("guest"), X_guest)
    host.join()
    assert refused.value.peer == "host" and time.monotonic() - started < 10
