"""Secure aggregation: primitives, exact recovery under dropouts, and what the aggregator can see."""

from __future__ import annotations

import secrets

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from isthmus.crypto.secagg import (
    FIELD_PRIME,
    MaskExpander,
    SecAggError,
    decode_fixed,
    encode_fixed,
    expand_mask,
    shamir_combine,
    shamir_split,
)
from isthmus.errors import EncodingOverflowError, ProtocolError
from isthmus.horizontal.secure_sum import (
    Keyring,
    SecAggClient,
    SecAggConfig,
    SecAggServer,
    SecAggTerms,
    _add_pair,
    _pair_context,
    mask_together,
    neighbourhoods,
)


def test_field_is_the_smallest_prime_above_2_to_256():
    assert gmpy2.is_prime(FIELD_PRIME) and gmpy2.next_prime(1 << 256) == FIELD_PRIME


@settings(max_examples=25, deadline=None)
@given(st.integers(0, (1 << 256) - 1), st.integers(2, 12), st.data())
def test_shamir_any_threshold_shares_recover_the_secret(secret, n, data):
    threshold = data.draw(st.integers(1, n))
    xs = list(range(1, n + 1))
    shares = dict(zip(xs, shamir_split(secret, xs, threshold)))
    subset = data.draw(st.permutations(xs))[:threshold]
    assert shamir_combine({x: shares[x] for x in subset}, threshold) == secret


def test_shamir_refuses_fewer_shares_than_the_threshold():
    shares = dict(zip([1, 2, 3, 4], shamir_split(12345, [1, 2, 3, 4], 3)))
    with pytest.raises(SecAggError, match="2 shares cannot recover"):
        shamir_combine({1: shares[1], 2: shares[2]}, 3)


def test_fixed_point_round_trip_and_limits():
    values = np.array([-3.25, 0.0, 1e-6, 12345.678])
    assert np.allclose(decode_fixed(encode_fixed(values, 24, 10), 24), values, atol=2**-24)
    summed = encode_fixed(values, 24, 2) + encode_fixed(-2 * values, 24, 2)  # wraps modulo 2^64
    assert np.allclose(decode_fixed(summed, 24), -values, atol=2**-23)
    with pytest.raises(EncodingOverflowError):
        encode_fixed(np.array([2.0**40]), 24, 10)
    with pytest.raises(EncodingOverflowError):
        encode_fixed(np.array([np.nan]), 24, 1)


def setup_sum(names, length, config=None, min_clients=2):
    """Clients and the server of one secure sum over ``names``, with keys made in memory."""
    config = config or SecAggConfig()
    quorum = config.quorum(len(names), min_clients)
    keyrings = Keyring.generate(names)
    terms = {name: SecAggTerms(keyrings[name], config, quorum, "test-job") for name in names}
    session = secrets.token_bytes(16)
    clients = {name: SecAggClient(name, terms[name], session, "round 1") for name in names}
    server = SecAggServer(terms[names[0]].public(), session, "round 1", length)
    return clients, server


def _run(n, length, *, drop_before_masking=(), silent_at_unmask=(), config=None, tamper=None):
    """One secure sum among ``n`` clients; returns (recovered, expected sum of survivors' inputs, server)."""
    names = [f"c{i:03d}" for i in range(n)]
    rng = np.random.default_rng(7)
    inputs = {name: rng.integers(0, 2**64, size=length, dtype=np.uint64) for name in names}
    clients, server = setup_sum(names, length, config)
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    requests = server.route_shares({name: clients[name].share_keys(r) for name, r in requests.items()})
    masked = {
        name: clients[name].masked_input(r, inputs[name].copy())
        for name, r in requests.items()
        if name not in drop_before_masking
    }
    requests = server.collect_masked(masked)
    requests = server.collect_signatures({name: clients[name].confirm(r) for name, r in requests.items()})
    replies = {name: clients[name].unmask(r) for name, r in requests.items() if name not in silent_at_unmask}
    if tamper:
        tamper(replies)
    recovered = server.finish(replies)
    expected = np.zeros(length, dtype=np.uint64)
    for name in server.survivors:
        expected += inputs[name]
    return recovered, expected, server


def test_masks_cancel_exactly_without_dropouts():
    recovered, expected, server = _run(6, 257)
    assert len(server.survivors) == 6 and np.array_equal(recovered, expected)


def test_thirty_of_a_hundred_dropping_after_masking_still_gives_the_exact_sum():
    dropped = [f"c{i:03d}" for i in range(0, 100, 10)] + [f"c{i:03d}" for i in range(1, 41, 2)]
    recovered, expected, server = _run(100, 64, drop_before_masking=dropped)
    assert len(dropped) == 30 and len(server.survivors) == 70
    assert np.array_equal(recovered, expected)


def test_survivors_silent_at_unmask_still_count_when_enough_shares_remain():
    silent = [f"c{i:03d}" for i in range(3)]
    recovered, expected, server = _run(10, 33, silent_at_unmask=silent)
    assert len(server.survivors) == 10 and np.array_equal(recovered, expected)


def test_recovery_exactly_at_the_threshold_and_a_clear_error_below_it():
    config = SecAggConfig(dropout_tolerance=0.3)
    assert config.threshold(10) == 7
    at_threshold = [f"c{i:03d}" for i in range(3)]
    recovered, expected, _ = _run(10, 16, drop_before_masking=at_threshold[:1], silent_at_unmask=at_threshold[1:])
    assert np.array_equal(recovered, expected)
    with pytest.raises(SecAggError, match="7 needed.*; none came from c005, c006$"):  # who fell silent, named
        _run(10, 16, drop_before_masking=at_threshold[:2], silent_at_unmask=["c005", "c006"])


def test_too_few_masked_inputs_abort_before_anything_is_revealed():
    with pytest.raises(SecAggError, match="only 6 clients sent masked input, 7 needed .*; not c000, c001, c002, c003$"):
        _run(10, 8, drop_before_masking=[f"c{i:03d}" for i in range(4)])


def test_a_single_masked_update_is_indistinguishable_from_random_bytes():
    """Chi-square on byte frequencies: the masked vector passes, the same input unmasked fails."""
    clients, server = setup_sum(["a", "b", "c"], 8192)
    update = encode_fixed(np.random.default_rng(0).normal(0, 0.01, 8192), 24, 3)  # small values: very skewed bytes
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    requests = server.route_shares({name: clients[name].share_keys(r) for name, r in requests.items()})
    masked = clients["a"].masked_input(requests["a"], update.copy())["masked"]

    def byte_p_value(vector: np.ndarray) -> float:
        counts = np.bincount(np.frombuffer(vector.tobytes(), dtype=np.uint8), minlength=256)
        return chisquare(counts).pvalue

    assert byte_p_value(masked) > 1e-4
    assert byte_p_value(update) < 1e-12


def test_a_wrong_share_is_caught_by_the_seed_commitment():
    def corrupt(replies):
        holder = next(iter(replies))
        owner = next(iter(replies[holder]["seed_shares"]))
        value = int.from_bytes(replies[holder]["seed_shares"][owner], "big")
        replies[holder]["seed_shares"][owner] = ((value + 1) % FIELD_PRIME).to_bytes(33, "big")

    with pytest.raises(SecAggError, match="commitment|out of range"):
        _run(5, 8, tamper=corrupt)


def test_client_reveals_one_secret_of_each_neighbour_as_the_signed_list_says():
    names = ["a", "b", "c", "d"]
    clients, server = setup_sum(names, 4, SecAggConfig(dropout_tolerance=0.25))
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    requests = server.route_shares({name: clients[name].share_keys(r) for name, r in requests.items()})
    masked = {n: clients[n].masked_input(r, np.zeros(4, dtype=np.uint64)) for n, r in requests.items() if n != "d"}
    requests = server.collect_signatures({n: clients[n].confirm(r) for n, r in server.collect_masked(masked).items()})
    reply = clients["a"].unmask(requests["a"])
    assert set(reply["seed_shares"]) == {"a", "b", "c"} and set(reply["key_shares"]) == {"d"}


def test_a_misrouted_share_fails_authentication():
    clients, server = setup_sum(["a", "b", "c"], 4)
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    requests = server.route_shares({name: clients[name].share_keys(r) for name, r in requests.items()})
    shares = requests["a"]["shares"]
    shares["b"], shares["c"] = shares["c"], shares["b"]
    with pytest.raises(ProtocolError, match="invalid"):
        clients["a"].masked_input(requests["a"], np.zeros(4, dtype=np.uint64))


def test_harary_neighbourhoods_are_symmetric_and_regular():
    names = [f"c{i}" for i in range(50)]
    graph = neighbourhoods(names, 8)
    assert all(len(others) == 8 for others in graph.values())
    assert all(name in graph[other] for name, others in graph.items() for other in others)


def test_sparse_neighbourhoods_recover_the_exact_sum_with_dropouts():
    recovered, expected, server = _run(
        40, 32, config=SecAggConfig(neighbours=10), drop_before_masking=["c001", "c017"], silent_at_unmask=["c030"]
    )
    assert len(server.survivors) == 38 and np.array_equal(recovered, expected)


def test_masks_are_deterministic_in_seed_and_context_only():
    seed = secrets.token_bytes(32)
    assert np.array_equal(expand_mask(seed, 100, b"x"), expand_mask(seed, 100, b"x"))
    assert not np.array_equal(expand_mask(seed, 100, b"x"), expand_mask(seed, 100, b"y"))


def test_masking_many_clients_together_is_bit_identical_to_masking_each():
    names = [f"c{i}" for i in range(6)]
    clients, server = setup_sum(names, 50)
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    requests = server.route_shares({name: clients[name].share_keys(r) for name, r in requests.items()})
    inputs = {name: np.full(50, i, dtype=np.uint64) for i, name in enumerate(names)}
    present = names[:4]  # c4 and c5 mask on their own (elsewhere), the rest together
    together, failures = mask_together({name: (clients[name], requests[name], inputs[name].copy()) for name in present})
    assert not failures
    expander = MaskExpander(50)
    for name in present:  # what masked_input computes for one client alone
        alone = clients[name].self_masked(inputs[name].copy(), expander)
        for other in clients[name].active:
            pair = expander.mask(clients[name].pair_seed(other), _pair_context(clients[name].session, name, other))
            _add_pair(alone, pair, name, other)
        assert np.array_equal(together[name]["masked"], alone)
    masked = {**together, **{name: clients[name].masked_input(requests[name], inputs[name].copy()) for name in names[4:]}}
    requests = server.collect_signatures({n: clients[n].confirm(r) for n, r in server.collect_masked(masked).items()})
    total = server.finish({name: clients[name].unmask(r) for name, r in requests.items()})
    assert np.array_equal(total, np.full(50, sum(range(6)), dtype=np.uint64))
