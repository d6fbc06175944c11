"""Encrypted WOE/IV of host features and IV selection across parties (isthmus.protocols.binning)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from isthmus.errors import DataError
from isthmus.ml.binning import woe_iv
from isthmus.transport.local import LocalHub
from isthmus.protocols.binning import (
    hetero_woe_iv_guest,
    hetero_woe_iv_host,
    select_features_guest,
    select_features_host,
)


def run_parties(**roles):
    """Run each role function in its own thread; returns their results, re-raising the first failure."""
    results, errors = {}, []

    def run(name, fn):
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - surfaced in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in roles.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def data(rows=300, seed=0, y=None):
    """Host columns: the first tracks the label, the second is noise with missing values, the third noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows) if y is None else y
    X_host = np.column_stack([y + rng.normal(0, 1, rows), rng.normal(size=rows), rng.integers(0, 3, rows)])
    X_host[rng.random(rows) < 0.1, 1] = np.nan
    return X_host, y


@pytest.mark.parametrize("encryption", ["paillier", "plaintext"])
def test_host_woe_iv_equals_plaintext_computation(encryption):
    X_host, y = data()
    hub = LocalHub(["guest", "host"])
    results = run_parties(
        guest=lambda: hetero_woe_iv_guest(hub.channel("guest"), y, ["host"], encryption=encryption, key_bits=1024),
        host=lambda: hetero_woe_iv_host(hub.channel("host"), X_host, bins=8, encryption=encryption),
    )
    binner = results["host"]
    expected = woe_iv(binner.transform(X_host), y, binner.bins + 1)
    got = results["guest"]["host"]
    np.testing.assert_array_equal(got.events, expected.events)
    np.testing.assert_array_equal(got.non_events, expected.non_events)
    np.testing.assert_allclose(got.iv, expected.iv)
    assert got.iv[0] > 0.3 > got.iv[1]


def test_two_hosts_and_selection_across_parties():
    X_a, y = data(seed=1)
    X_b, _ = data(seed=2, y=y)
    hub = LocalHub(["guest", "a", "b"])
    guest_channel = hub.channel("guest")

    def guest():
        ivs = hetero_woe_iv_guest(guest_channel, y, ["a", "b"], key_bits=1024)
        return select_features_guest(guest_channel, {"guest": np.array([0.05]), **{h: r.iv for h, r in ivs.items()}},
                                     top_k=2)

    def host(name, X):
        channel = hub.channel(name)
        hetero_woe_iv_host(channel, X, bins=8)
        return select_features_host(channel, X.shape[1])

    results = run_parties(guest=guest, a=lambda: host("a", X_a), b=lambda: host("b", X_b))
    masks = results["guest"]
    assert masks["guest"].tolist() == [False]
    assert results["a"].tolist() == masks["a"].tolist() == [True, False, False]
    assert results["b"].tolist() == masks["b"].tolist() == [True, False, False]


def test_labels_must_be_binary():
    hub = LocalHub(["guest", "host"])
    with pytest.raises(DataError):
        hetero_woe_iv_guest(hub.channel("guest"), np.array([0, 1, 2]), ["host"], encryption="plaintext")
