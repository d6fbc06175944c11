"""Integer gradients, the (G, H) slot layout and packed encrypted histograms, up to the precision limit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.errors import EncodingOverflowError
from isthmus.ml.binning import bin_sums
from isthmus.tree import hist_kernel
from isthmus.tree.gh import (
    SLOT_BITS,
    SUM_BITS,
    QuantizedGH,
    pack_pairs,
    pack_slots,
    slots_per_plaintext,
    unpack_pairs,
    unpack_slots,
)
from isthmus.tree.gh_cipher import PaillierGuestCipher, PaillierHostCipher

LIMIT = (1 << SUM_BITS) - 1  # largest |G| and H a slot holds


@pytest.fixture(scope="module")
def cipher():
    return PaillierGuestCipher(1024)


def test_quantized_sums_stay_below_the_limit_and_round_trip():
    rng = np.random.default_rng(0)
    grad, hess = rng.normal(0, 3, 10_000), rng.random(10_000)
    gh = QuantizedGH.quantize(grad, hess)
    assert np.abs(gh.grad).sum() < 1 << SUM_BITS and gh.hess.sum() < 1 << SUM_BITS
    assert np.abs(gh.grad).sum() > 1 << (SUM_BITS - 1)  # and uses the range it has
    g, h = gh.scale.to_float(gh.grad, gh.hess)
    np.testing.assert_allclose(g, grad, atol=2.0**-gh.scale.grad_exponent)
    np.testing.assert_allclose(h, hess, atol=2.0**-gh.scale.hess_exponent)


def test_quantize_refuses_negative_hessians_and_nan():
    with pytest.raises(EncodingOverflowError):
        QuantizedGH.quantize(np.zeros(2), np.array([1.0, -1.0]))
    with pytest.raises(EncodingOverflowError):
        QuantizedGH.quantize(np.array([np.nan]), np.ones(1))


def test_all_zero_gradients_quantize_to_zero():
    gh = QuantizedGH.quantize(np.zeros(3), np.ones(3))
    assert gh.grad.tolist() == [0, 0, 0]


@settings(max_examples=200, deadline=None)
@given(st.integers(-LIMIT, LIMIT), st.integers(0, LIMIT))
def test_pair_round_trip(g, h):
    assert unpack_pairs(pack_pairs(np.array([g]), np.array([h]))) == ([g], [h])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-LIMIT, LIMIT), st.integers(0, LIMIT)), min_size=1, max_size=19))
def test_slots_round_trip(pairs):
    values = pack_pairs(np.array([g for g, _ in pairs], dtype=np.int64), np.array([h for _, h in pairs], dtype=np.int64))
    assert unpack_slots(pack_slots(values), len(values)) == values


def test_extreme_slots_fit_the_key_size_they_are_counted_for():
    assert slots_per_plaintext(1024) == 9 and slots_per_plaintext(2048) == 19
    for key_bits in (1024, 2048):
        slots = slots_per_plaintext(key_bits)
        extremes = pack_pairs(np.array([-LIMIT, LIMIT] * slots)[:slots], np.array([LIMIT] * slots))
        packed = pack_slots(extremes)
        assert abs(packed) < 1 << (key_bits - 2)  # |plaintext| < n / 2 for any n of key_bits bits
        assert unpack_slots(packed, slots) == extremes
    with pytest.raises(EncodingOverflowError):
        slots_per_plaintext(SLOT_BITS)


def test_decoding_more_slots_than_packed_is_detected():
    with pytest.raises(EncodingOverflowError):
        unpack_slots(pack_slots([5, 7, 9]), 2)


def test_encrypted_extremes_decrypt_exactly(cipher):
    """Nine slots of |G| = 2**52 - 1 in one 1024-bit ciphertext, after homomorphic sums."""
    grad = np.array([LIMIT - 5, 5, -LIMIT + 1, -1] * 9, dtype=np.int64)
    hess = np.array([LIMIT - 3, 3, 0, LIMIT] * 9, dtype=np.int64)
    payload = cipher.encrypt(QuantizedGH(grad, hess))
    host = PaillierHostCipher(cipher.public_key)
    host.load(payload, grad.size, peer="guest", tag="t")
    # rows 2k and 2k+1 share bin k: sums alternate (LIMIT, LIMIT) and (-LIMIT, LIMIT)
    bins = (np.arange(grad.size) // 2).astype(np.uint8).reshape(-1, 1)
    n_bins = np.array([18])
    (histogram,) = host.histograms([(np.arange(grad.size), bins)], n_bins)
    assert histogram.shape == (2,)  # 18 bins, 9 per ciphertext
    got_grad, got_hess = cipher.decode(histogram, n_bins, peer="host", tag="t")
    assert got_grad.tolist() == [LIMIT, -LIMIT] * 9
    assert got_hess.tolist() == [LIMIT, LIMIT] * 9


def plaintext_histogram(grad, hess, binned, n_bins):
    width = int(n_bins.max())
    wanted = np.arange(width)[None, :] < n_bins[:, None]
    return (bin_sums(binned, grad.astype(float), width).astype(np.int64)[wanted],
            bin_sums(binned, hess.astype(float), width).astype(np.int64)[wanted])


@pytest.mark.parametrize(("rows", "in_workers"), [(7, False), (400, False), (400, True)])
def test_encrypted_histograms_equal_plaintext_sums(cipher, rows, in_workers, monkeypatch):
    """Few rows: one feature at a time; many rows: features grouped into joint cells; big jobs
    (forced here) are shared out to worker processes."""
    if in_workers:
        monkeypatch.setattr(hist_kernel, "PARALLEL_THRESHOLD", 0)
    rng = np.random.default_rng(rows)
    n_bins = np.array([3, 5, 2, 4, 1, 12])
    binned = np.column_stack([rng.integers(0, b, rows) for b in n_bins]).astype(np.uint8)
    gh = QuantizedGH.quantize(rng.normal(size=rows), rng.random(rows))
    host = PaillierHostCipher(cipher.public_key)
    host.load(cipher.encrypt(gh), rows, peer="guest", tag="t")
    subset = np.sort(rng.choice(rows, rows // 2 + 1, replace=False))
    built = host.histograms([(np.arange(rows), binned), (subset, binned[subset])], n_bins)
    for payload, positions in zip(built, (np.arange(rows), subset)):
        got = cipher.decode(payload, n_bins, peer="host", tag="t")
        expected = plaintext_histogram(gh.grad[positions], gh.hess[positions], binned[positions], n_bins)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    if rows == 400:
        assert any(len(group) > 1 for group in hist_kernel._joint_groups(n_bins, rows))


def test_histogram_of_the_wrong_size_is_a_protocol_error(cipher):
    from isthmus.errors import ProtocolError

    payload = cipher.public_key.encrypt([1, 2, 3], precision=0)
    with pytest.raises(ProtocolError, match="ciphertexts"):
        cipher.decode(payload, np.array([33]), peer="host", tag="t")
