"""KKRT16 PSI: its building blocks exact, and the same intersections as ECDH on the same sets."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from test_psi import assert_aligned, run_psi, shared_ids

from isthmus.protocols.kkrt import base_ot, cuckoo, ot_extension
from isthmus.protocols.kkrt.psi import digests


def test_bit_transpose_matches_numpy_and_inverts_itself():
    bits = np.frombuffer(secrets.token_bytes(512 * 48), dtype=np.uint8).reshape(512, 48)
    expected = np.packbits(np.unpackbits(bits, axis=1, bitorder="little").T, axis=1, bitorder="little")
    assert np.array_equal(ot_extension.transpose(bits), expected)
    assert np.array_equal(ot_extension.transpose(expected), bits)


def test_base_ots_give_the_receiver_exactly_the_key_it_chose():
    sender = base_ot.Sender()
    choices = np.array([0, 1, 1, 0, 1, 0, 0, 1], dtype=np.uint8)
    reply, keys = base_ot.receive(sender.message(), choices)
    pairs = sender.keys(reply, len(choices))
    assert [pair[c] for pair, c in zip(pairs, choices)] == keys
    assert all(pair[1 - c] != key for pair, c, key in zip(pairs, choices, keys))
    assert len({key for pair in pairs for key in pair}) == 2 * len(choices)


def test_the_extension_gives_equal_oprf_values_exactly_on_the_receivers_inputs():
    """Rows q_j xor (C(x) and s) equal t_j where x is the receiver's input of row j, and only there."""
    choices = np.unpackbits(np.frombuffer(secrets.token_bytes(64), dtype=np.uint8), bitorder="little")
    base = base_ot.Sender()
    reply, keys = base_ot.receive(base.message(), choices)
    receiver, sender = ot_extension.Receiver(base.keys(reply, 512)), ot_extension.Sender(choices, keys)
    code = ot_extension.PseudoRandomCode(b"seed")
    inputs = np.frombuffer(secrets.token_bytes(16 * 256), dtype=np.uint8).reshape(256, 16)
    columns, t = receiver.extend(128, code.encode(inputs))
    q = sender.extend(128, columns, 256)
    rows = np.arange(128, 384)
    assert np.array_equal(ot_extension.hash_rows(q ^ (code.encode(inputs) & sender.secret), rows), ot_extension.hash_rows(t, rows))
    others = code.encode(np.roll(inputs, 1, axis=0))
    assert not (ot_extension.hash_rows(q ^ (others & sender.secret), rows) == ot_extension.hash_rows(t, rows)).all(axis=1).any()


@pytest.mark.parametrize("n", [0, 1, 5, 3000])
def test_cuckoo_places_every_id_alone_in_one_of_its_bins(n):
    bins = cuckoo.bin_count(n)
    choices = cuckoo.candidates(secrets.token_bytes(16), digests(b"s" * 32, [str(i) for i in range(n)]), bins)
    table, used = cuckoo.build(choices, bins)
    placed = choices[np.arange(n), used]
    assert np.array_equal(table[placed], np.arange(n)) and (table >= 0).sum() == n


def _both(ids: dict, **options) -> dict[str, dict]:
    """Run ECDH and KKRT on the same sets; return each method's results, after checking alignment."""
    out = {}
    for method in ("ecdh", "kkrt"):
        results, errors = run_psi(ids, method=method, **options)
        assert not errors, errors
        out[method] = {party: set(rows) for party, rows in shared_ids(results, ids).items()}
    return out


@pytest.mark.parametrize("guest_n, host_n", [(1000, 1000), (30, 2000), (2000, 30)])  # balanced, and unbalanced both ways
def test_same_intersection_as_ecdh_on_random_sets(guest_n, host_n):
    rng = np.random.default_rng(guest_n + host_n)
    ids = {"guest": rng.choice(10_000, guest_n, replace=False), "host": [str(i) for i in rng.choice(10_000, host_n, replace=False)]}
    found = _both(ids)
    expected = {str(i) for i in ids["guest"]} & set(ids["host"])
    assert found["ecdh"] == found["kkrt"] == {"guest": expected, "host": expected}


def test_same_intersection_as_ecdh_with_repeated_ids_kept_once():
    ids = {"guest": ["a", "b", "a", "c", "d", "c"], "host": ["c", "c", "a", "x"]}
    found = _both(ids, dedupe="first")
    assert found["ecdh"] == found["kkrt"] == {"guest": {"a", "c"}, "host": {"a", "c"}}


def test_full_and_empty_intersections():
    ids = {"guest": [f"u{i}" for i in range(500)], "host": [f"u{i}" for i in reversed(range(500))]}
    results, errors = run_psi(ids, method="kkrt")
    assert not errors
    assert_aligned(results, ids, set(ids["guest"]))
    results, errors = run_psi({"guest": [f"g{i}" for i in range(500)], "host": [f"h{i}" for i in range(700)]}, method="kkrt")
    assert not errors and {r.size for r in results.values()} == {0}


def test_ids_that_differ_only_past_the_first_bytes_or_in_case_do_not_meet():
    long = "x" * 200
    ids = {"guest": [long + "a", long + "b", "Id", "é"], "host": [long + "b", long + "c", "id", "é"]}
    results, errors = run_psi(ids, method="kkrt")
    assert not errors
    assert_aligned(results, ids, {long + "b", "é"})
