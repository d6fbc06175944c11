"""Big-array paths over several cores give the same results as the serial ones."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from isthmus.crypto import keys as keys_module
from isthmus.crypto import multiexp, parallel
from isthmus.crypto.paillier import generate_keypair
from isthmus.transport.local import LocalHub


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024)


@pytest.fixture
def two_workers(monkeypatch):
    """Two workers, and thresholds low enough that small test arrays take the parallel paths."""
    monkeypatch.setattr(keys_module, "PARALLEL_MIN_ENCRYPTIONS", 8)
    monkeypatch.setattr(keys_module, "PARALLEL_MIN_DECRYPTIONS", 4)
    monkeypatch.setattr(multiexp, "PARALLEL_MIN_PRODUCTS", 16)
    monkeypatch.setattr(multiexp, "PARALLEL_MIN_POWERS", 8)
    before = parallel.workers()
    parallel.configure(2)
    yield
    parallel.configure(before)


def test_chunks_cover_the_range_once():
    assert parallel.chunks(10, 3) == [range(0, 3), range(3, 6), range(6, 10)]
    assert parallel.chunks(2, 4) == [range(0, 1), range(1, 2)]
    assert parallel.chunks(0, 4) == []
    with pytest.raises(ValueError):
        parallel.configure(0)


def test_parallel_paths_agree_with_numpy(keys, two_workers):
    public_key, private_key = keys
    rng = np.random.default_rng(6)
    x, X = rng.normal(size=40), rng.normal(size=(40, 3))
    c = public_key.encrypt(x)  # random factors from worker processes
    assert len(set(c.ciphertexts())) == 40
    np.testing.assert_allclose(private_key.decrypt(c), x, atol=2**-32)  # decryption in threads
    np.testing.assert_allclose(private_key.decrypt(c * x), x * x, atol=1e-8)  # powers in processes
    np.testing.assert_allclose(private_key.decrypt(X.T @ c), X.T @ x, atol=40 * 2**-17 * 3)  # bases split
    public_key.precompute(10)
    assert public_key.precomputed >= 10


def test_arbiter_round_trip_over_the_local_hub(keys):
    """The masked-gradient exchange as protocols run it: guest masks, arbiter decrypts raw, guest unmasks."""
    public_key, private_key = keys
    hub = LocalHub(["guest", "arbiter"])
    gradient = np.array([0.125, -4.0, 1e-3])
    received = {}

    def arbiter() -> None:
        channel = hub.channel("arbiter")
        masked = channel.recv("guest", "masked_gradient", timeout=10)
        channel.send("guest", "decrypted", private_key.decrypt_raw(masked))

    thread = threading.Thread(target=arbiter)
    thread.start()
    guest = hub.channel("guest")
    masked, mask = (public_key.encrypt(gradient) * 2).masked()
    guest.send("arbiter", "masked_gradient", masked)
    received["values"] = mask.unmask(guest.recv("arbiter", "decrypted", timeout=10), peer="arbiter", tag="decrypted")
    thread.join()
    np.testing.assert_allclose(received["values"], gradient * 2, atol=2**-31)
