"""The exact residual's disguise: the order the arbiter sees, and every party packing its own part of it."""

from __future__ import annotations

import numpy as np
import pytest

from isthmus.algorithms.hetero_linear.disguise import PART_BOUND, Disguise, unpack_at_arbiter
from isthmus.crypto.paillier import generate_keypair
from isthmus.errors import ProtocolError
from isthmus.protocols.inspect import Inspect


@pytest.fixture(scope="module")
def keypair():
    return generate_keypair(1024)


@pytest.mark.parametrize("classes", [1, 4])
def test_restore_undoes_the_order_and_references_name_one_class_per_row(classes):
    rows = 50
    disguise = Disguise.draw(rows, classes)
    values = np.arange(rows * classes, dtype=np.float64)
    assert not np.array_equal(values[disguise.picked], values)  # 50! orders: the identity is no real chance
    np.testing.assert_array_equal(disguise.restore(values[disguise.picked]), values)
    references = disguise.references()
    assert references.shape == (rows, classes) and (references.sum(axis=1) == 1).all()


def test_the_softmax_disguise_sends_each_rows_gaps_to_its_reference():
    rows, classes = 30, 3
    disguise = Disguise.draw(rows, classes)
    scores = np.random.default_rng(0).normal(size=(rows, classes))
    gaps = disguise.apply(scores.ravel()).reshape(rows, classes - 1)
    shuffled_rows = disguise.picked.reshape(rows, classes) // classes
    reference = (scores * disguise.references()).sum(axis=1)
    # each disguised row's gaps are one batch row's other scores minus its reference, in some order
    for gap_row, source in zip(gaps, shuffled_rows[:, 0]):
        expected = np.sort(np.delete(scores[source], np.flatnonzero(disguise.references()[source])) - reference[source])
        np.testing.assert_allclose(np.sort(gap_row), expected)


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "paillier"])
def test_the_arbiter_decodes_the_sum_of_every_partys_packed_part(keypair, classes, encrypted):
    public_key, private_key = keypair if encrypted else (None, None)
    rows, parties = 97, 3
    rng = np.random.default_rng(1)
    parts = [rng.uniform(-PART_BOUND / 2, PART_BOUND / 2, size=rows * classes) for _ in range(parties)]
    disguise = Disguise.draw(rows, classes)
    packed = [disguise.pack(public_key, part, parties) for part in parts]
    assert len(packed[0]) == disguise.packed_size(public_key, parties)
    total = packed[0] + packed[1] + packed[2]
    decoded = unpack_at_arbiter(Inspect("guest", "t"), total, public_key, private_key, rows, classes, parties)
    np.testing.assert_allclose(decoded, disguise.apply(sum(parts)), atol=1e-8)


def test_a_sum_of_more_parts_than_the_arbiter_knows_of_is_refused(keypair):
    """Four parties' parts where the arbiter knows three: the slots may carry beyond the headroom."""
    public_key, private_key = keypair
    disguise = Disguise.draw(40, 1)
    part = np.full(40, PART_BOUND - 1)
    total = disguise.pack(public_key, part, 3)
    for _ in range(3):
        total = total + disguise.pack(public_key, part, 3)
    with pytest.raises(ProtocolError, match="do not decode"):
        unpack_at_arbiter(Inspect("guest", "t"), total, public_key, private_key, 40, 1, 3)
