"""hetero_nn against deviating hosts and guests (in-process channel): every bad message is a
ProtocolError naming the peer and the tag, and a host that drops out fails the guest, naming it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("torch")

from isthmus.algorithms.base import Party, Roster  # noqa: E402
from isthmus.algorithms.hetero_nn import interactive, tags  # noqa: E402
from isthmus.algorithms.hetero_nn.algorithm import HeteroNN  # noqa: E402
from isthmus.algorithms.hetero_nn.options import NNOptions  # noqa: E402
from isthmus.data.table import PartyTable  # noqa: E402
from isthmus.errors import PeerAbortedError, PeerTimeoutError, ProtocolError  # noqa: E402
from isthmus.transport.local import LocalHub  # noqa: E402

ROWS = 80
OPTIONS = dict(bottom={"guest": [3], "host": [3]}, interactive_units=2, top=[], key_bits=1024, epochs=2,
               batch_size=40)


def run(options: NNOptions, tmp_path, *, timeout: float = 60.0) -> dict[str, BaseException | object]:
    """Guest and one host fit (each in a thread); what each returned or raised."""
    rng = np.random.default_rng(0)
    ids = np.array([f"r{i}" for i in range(ROWS)])
    tables = {"guest": PartyTable("guest", ids, rng.normal(size=(ROWS, 2)), ["a", "b"], (rng.random(ROWS) > 0.5) * 1.0),
              "host-1": PartyTable("host-1", ids, rng.normal(size=(ROWS, 3)), ["c", "d", "e"], None)}
    roster, hub, outcome = Roster({"guest": "guest", "host-1": "host"}), LocalHub(list(tables)), {}

    def fit(name):
        channel = hub.channel(name)
        channel.default_timeout = timeout
        try:
            outcome[name] = HeteroNN().fit(Party(name, roster, channel, tables[name], tmp_path), options)
        except BaseException as exc:  # the outcome under test
            outcome[name] = exc

    threads = [threading.Thread(target=fit, args=(name,), daemon=True) for name in tables]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcome


def hostile_forward(monkeypatch, corrupt):
    """The host sends ``corrupt(alpha, keys)`` instead of its (encrypted) bottom output."""
    def forward(self, alpha, *, training):
        self.channel.send(self.guest, tags.ACTIVATIONS, corrupt(alpha, self.keys if self.protected else None))
    monkeypatch.setattr(interactive.HostLink, "forward", forward)


def guest_error(outcome) -> ProtocolError:
    error = outcome["guest"]
    assert isinstance(error, ProtocolError), error
    assert isinstance(outcome["host-1"], PeerAbortedError), outcome["host-1"]  # told at once, no hang
    return error


def test_plain_bottom_output_with_non_finite_values_is_named(monkeypatch, tmp_path):
    def nan(alpha, keys):
        alpha[0, 0] = np.nan
        return alpha
    hostile_forward(monkeypatch, nan)
    error = guest_error(run(NNOptions(protection="plain", **OPTIONS), tmp_path))
    assert error.peer == "host-1" and "NaN" in str(error) and tags.ACTIVATIONS in str(error)


def test_plain_bottom_output_of_the_wrong_shape_is_named(monkeypatch, tmp_path):
    hostile_forward(monkeypatch, lambda alpha, keys: alpha[:, :2])
    error = guest_error(run(NNOptions(protection="plain", **OPTIONS), tmp_path))
    assert error.peer == "host-1" and "expected shape (40, 3)" in str(error)


def test_encrypted_bottom_output_of_the_wrong_size_is_named(monkeypatch, tmp_path):
    """One column short: a column's 40 rows fill 3 packed ciphertexts (16 slots each), so 6 where 9 are due."""
    options = NNOptions(**OPTIONS)
    hostile_forward(monkeypatch, lambda alpha, keys: interactive.link_slots(keys[0], options).values.encrypt_rows(
        alpha[:, :-1].T, interactive.ACTIVATION_PRECISION).ravel())
    error = guest_error(run(options, tmp_path))
    assert error.peer == "host-1" and "expected 9 ciphertexts" in str(error)


def test_encrypted_bottom_output_under_a_short_key_is_refused(monkeypatch, tmp_path):
    from isthmus.crypto.paillier import generate_keypair
    weak = generate_keypair(1024)[0]
    hostile_forward(monkeypatch, lambda alpha, keys: weak.encrypt(alpha.ravel(), precision=24))
    error = guest_error(run(NNOptions(**{**OPTIONS, "key_bits": 2048}), tmp_path))
    assert error.peer == "host-1" and "1024-bit key, the job asks for 2048" in str(error)


def test_a_projection_reply_out_of_range_is_named(monkeypatch, tmp_path):
    """The host's answer to the masked projection decodes to values no honest host produces."""
    honest = interactive.masked_plus
    monkeypatch.setattr(interactive, "masked_plus",
                        lambda raw, slots, plain, exponent: honest(raw, slots, plain + 1.5e6, exponent))
    error = guest_error(run(NNOptions(**OPTIONS), tmp_path))
    assert error.peer == "host-1" and "within +-" in str(error)


def test_a_reply_with_values_beyond_its_packed_slots_is_named(monkeypatch, tmp_path):
    """Packed replies: whatever a host puts above the slots in use (here the top slot of the last
    plaintext, unused by 40 rows in slots of 16) fails the guest instead of shifting into the values."""
    honest = interactive.masked_plus

    def beyond(raw, slots, plain, exponent):
        reply = honest(raw, slots, plain, exponent)
        reply[-1] = (reply[-1] + (1 << (slots.slot_bits * (slots.capacity - 1)))) % int(slots.public_key.n)
        return reply
    monkeypatch.setattr(interactive, "masked_plus", beyond)
    error = guest_error(run(NNOptions(**OPTIONS), tmp_path))
    assert error.peer == "host-1" and "a packed slot overflowed" in str(error)


def test_a_guest_sending_ciphertexts_at_another_exponent_is_named(monkeypatch, tmp_path):
    """The host adds its term at the exponent it expects; a guest's other exponent is refused, not decoded."""
    original = interactive.GuestLink.__init__

    def init(self, channel, host, options, width, weights):
        original(self, channel, host, options.model_copy(update={"precision": 12}), width, weights)
    monkeypatch.setattr(interactive.GuestLink, "__init__", init)
    error = run(NNOptions(**OPTIONS), tmp_path)["host-1"]
    assert isinstance(error, ProtocolError) and error.peer == "guest" and "36 fractional bits" in str(error), error


def test_a_host_dropping_out_mid_training_fails_the_guest_naming_it(monkeypatch, tmp_path):
    """The host goes silent after its first batch: the guest times out naming it and returns no part."""
    calls = {"n": 0}
    original = interactive.HostLink.backward

    def backward(self, size):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("host vanished")  # not an Exception: no abort message, the guest sees silence
        return original(self, size)
    monkeypatch.setattr(interactive.HostLink, "backward", backward)
    outcome = run(NNOptions(**OPTIONS), tmp_path, timeout=3.0)
    error = outcome["guest"]
    assert isinstance(error, PeerTimeoutError) and error.peer == "host-1", error
    assert not list(tmp_path.glob("**/model.json"))



def test_a_guest_gradient_beyond_its_packed_slots_is_named(monkeypatch, tmp_path):
    """The guest puts bits above the d = 3 slots of the host's bottom output gradient: the host refuses
    the gradient, naming the guest, instead of training on shifted values."""
    from isthmus.crypto.paillier import CipherArray

    options, honest = NNOptions(**OPTIONS), CipherArray.plus_encoded

    def beyond(self, plaintexts):
        slots = interactive.link_slots(self.public_key, options).values
        return honest(self, [m + (1 << (slots.slot_bits * 5)) for m in plaintexts])
    monkeypatch.setattr(CipherArray, "plus_encoded", beyond)
    error = run(options, tmp_path)["host-1"]
    assert isinstance(error, ProtocolError) and error.peer == "guest" and "packed slot overflowed" in str(error), error


def curious_host_reading(options: NNOptions, tmp_path, monkeypatch) -> float:
    """Breast cancer split between guest and host; the host keeps every batch's per-row gradient of its
    bottom output and scores each row on their first principal direction. The median over batches of that
    score's AUC against the labels (either way round: the base rate tells which side is which)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import roc_auc_score

    from isthmus.protocols.inspect import Inspect

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    ids = np.array([f"r{i}" for i in range(len(y))])
    tables = {"guest": PartyTable("guest", ids, X[:, :5], [f"g{i}" for i in range(5)], y * 1.0),
              "host-1": PartyTable("host-1", ids, X[:, 5:], [f"h{i}" for i in range(25)], None)}
    seen, indices, backward = [], Inspect.indices, interactive.HostLink.backward

    def spy_indices(self, *args, **kwargs):
        spy_indices.rows = indices(self, *args, **kwargs)
        return spy_indices.rows

    def spy_backward(self, size):
        gradient = backward(self, size)
        seen.append((spy_indices.rows.copy(), np.array(gradient)))
        return gradient

    monkeypatch.setattr(Inspect, "indices", spy_indices)
    monkeypatch.setattr(interactive.HostLink, "backward", spy_backward)
    roster, hub = Roster({"guest": "guest", "host-1": "host"}), LocalHub(list(tables))
    threads = [threading.Thread(target=lambda name=name: HeteroNN().fit(
        Party(name, roster, hub.channel(name), tables[name], tmp_path), options)) for name in tables]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    aucs = []
    for rows, gradient in seen:
        centred = gradient - gradient.mean(0)
        score = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        auc = roc_auc_score(y[rows], score)
        aucs.append(max(auc, 1 - auc))
    return float(np.median(aucs))


def test_label_noise_drowns_the_labels_a_curious_host_reads_off_its_gradients(monkeypatch, tmp_path):
    """Split learning's leak: the rows of each class get gradients pointing one way. With the guest's
    label_noise at 10 times the gradient's size, the host's reading falls to what 64 rows of pure noise give."""
    options = dict(bottom={"guest": [4], "host": [4]}, interactive_units=4, top=[4, "relu"], epochs=2, batch_size=64,
                   protection="plain")
    assert curious_host_reading(NNOptions(**options), tmp_path, monkeypatch) > 0.95
    assert curious_host_reading(NNOptions(**options, label_noise=10), tmp_path, monkeypatch) < 0.7


def test_label_noise_is_the_guests_own_and_scaled_to_the_batch():
    from isthmus.algorithms.hetero_nn.guest import with_label_noise

    delta = np.random.default_rng(0).normal(size=(4000, 8)) * 1e-3
    assert with_label_noise(delta, 0.0, np.random.default_rng()) is delta
    noisy = [with_label_noise(delta, 10.0, np.random.default_rng()) - delta for _ in range(2)]
    size = np.sqrt((delta ** 2).sum(axis=1).mean())
    for noise in noisy:
        assert abs(np.sqrt((noise ** 2).sum(axis=1).mean()) / size - 10) < 0.5
    assert not np.allclose(*noisy)  # drawn from the OS each run: a host knows the job's seed
