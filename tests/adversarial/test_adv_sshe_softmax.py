"""hetero_lr_sshe's softmax against deviating peers: a wrong class count, and products of shared values of the
wrong size or beyond what an honest peer sends, are refused naming the sender and its tag."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_parties
from isthmus.algorithms.sshe_lr import arith, shares, tags
from isthmus.algorithms.sshe_lr.options import SSHEOptions
from isthmus.algorithms.sshe_lr.roles import fit_guest, fit_host
from isthmus.errors import ProtocolError
from isthmus.transport.local import LocalHub

ROWS, GUEST_FEATURES, HOST_FEATURES, CLASSES = 24, 2, 3, 3
OPTIONS = SSHEOptions(epochs=1, batch_size=0, key_bits=1024)


def tampered(channel, tag: str, change):
    """``channel`` whose first message with ``tag`` goes out as ``change(message)``, the rest untouched."""
    real_send, done = channel.send, []

    def send(to, sent_tag, obj):
        if sent_tag == tag and not done:
            done.append(True)
            obj = change(obj)
        real_send(to, sent_tag, obj)

    channel.send = send
    return channel


def run(guest_change=None, host_change=None) -> dict:
    """An honest softmax run of guest and host but for one message of one of them; each party's error."""
    rng = np.random.default_rng(0)
    hub = LocalHub(["guest", "host"])
    failures = {}

    def party(name, fit, change):
        channel = hub.channel(name)
        if change:
            channel = tampered(channel, *change)
        try:
            fit(channel)
        except Exception as exc:
            failures[name] = exc

    X_guest, X_host, y = rng.normal(size=(ROWS, GUEST_FEATURES)), rng.normal(size=(ROWS, HOST_FEATURES)), np.arange(ROWS) % CLASSES
    run_parties({"guest": lambda: party("guest", lambda ch: fit_guest(OPTIONS, ch, X_guest, y, hosts=["host"]), guest_change),
                 "host": lambda: party("host", lambda ch: fit_host(OPTIONS, ch, X_host, guest="guest"), host_change)},
                timeout=120)
    return failures


def refused(error, sender: str, tag: str, message: str) -> bool:
    return isinstance(error, ProtocolError) and sender in str(error) and tag in str(error) and message in str(error)


@pytest.mark.parametrize("columns", [2, 0, 1001, "3", 3.0])
def test_a_class_count_outside_3_to_1000_from_the_guest_is_refused_by_the_host(columns):
    failures = run(guest_change=(tags.HELLO, lambda hello: {**hello, "columns": columns}))
    assert refused(failures.get("host"), "guest", tags.HELLO, "class count must be an integer in [3, 1000]")


def test_a_host_naming_a_class_count_is_refused_by_the_guest():
    """Only the guest, which holds the labels, says how many classes there are."""
    failures = run(host_change=(tags.HELLO, lambda hello: {**hello, "columns": CLASSES}))
    assert refused(failures.get("guest"), "host", tags.HELLO, "expected a map with keys ['features', 'key']")


def test_weight_shares_for_one_column_too_many_features_are_refused():
    """K columns travel one per exchange, each the size of the receiver's features (+ the intercept)."""
    def more(encrypted):
        return shares.encrypt(encrypted.public_key, [0] * (GUEST_FEATURES + 2))

    failures = run(host_change=(tags.WEIGHT_SHARE, more))
    assert refused(failures.get("guest"), "host", tags.WEIGHT_SHARE, f"expected {GUEST_FEATURES + 1} ciphertexts")


def test_product_shares_of_the_wrong_count_are_refused_by_the_host():
    def fewer(encrypted):
        return encrypted[:-1]

    failures = run(guest_change=(tags.PRODUCT_SHARE, fewer))
    assert refused(failures.get("host"), "guest", tags.PRODUCT_SHARE, f"expected {ROWS * CLASSES} ciphertexts")


def test_packed_products_of_the_wrong_count_are_refused_by_the_guest():
    failures = run(host_change=(tags.PRODUCT, lambda encrypted: encrypted[:-1]))
    groups = shares.Packing(1024, 2 * arith.BITS + 1 - shares.RING_BITS).groups(ROWS * CLASSES)
    assert refused(failures.get("guest"), "host", tags.PRODUCT, f"expected {groups} ciphertexts")


def test_a_packed_product_overflowing_its_slots_is_refused_by_the_guest():
    """A host that returns a chosen huge plaintext instead of packed cross terms minus masks."""
    def huge(encrypted):
        packing = shares.Packing(1024, 2 * arith.BITS + 1 - shares.RING_BITS)
        return shares.encrypt(encrypted.public_key, [1 << (packing.per * packing.width)] * len(encrypted))

    failures = run(host_change=(tags.PRODUCT, huge))
    assert refused(failures.get("guest"), "host", tags.PRODUCT, "overflows its slots")
