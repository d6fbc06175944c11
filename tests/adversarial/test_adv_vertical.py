"""Hetero linear models against a curious host and deviating guests and hosts (in-process channel).

A host decrypts its own gradient X_hᵀ d. Over a batch of no more rows than it has features it solves
d = pinv(X_hᵀ) g, and in epoch 1 d = 2 - 4y: the guest's labels. The guest must never form such a
batch, and hosts and the arbiter must refuse one from a guest that does; the arbiter must not become
a decryption oracle of any length.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from conftest import run_parties
from isthmus.errors import ConfigError, PeerAbortedError, ProtocolError
from isthmus.jobs.spec import parse_job
from isthmus.jobs.plan import make_plan
from isthmus.algorithms.hetero_linear import HeteroLinearArbiter, HeteroLinearGuest, HeteroLinearHost, LinearOptions
from isthmus.algorithms.hetero_linear import batches, cipher, disguise, tags
from isthmus.algorithms.hetero_linear.host import _HostTrainer
from isthmus.crypto.cipherarray import CipherArray
from isthmus.protocols.inspect import Inspect
from isthmus.transport.local import LocalHub

GUEST_FEATURES, HOST_FEATURES = 2, 6
SAFE_ROWS = (16 + 8) * HOST_FEATURES  # the default floor at the default precision


def pinv_attack(X_batch: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """The curious host's guess of the batch's labels: d = pinv(Xᵀ) g, and d = 2 - 4y in epoch 1."""
    d = np.linalg.pinv(X_batch.T) @ gradient
    return ((2.0 - d) / 4.0 > 0.5).astype(float)


def train_three_parties(config: LinearOptions, X_guest: np.ndarray, y: np.ndarray, X_host: np.ndarray) -> None:
    """An honest-looking run of guest, host and arbiter over the in-process hub (the tests patch in the curious parts)."""
    hub = LocalHub(["guest", "host", "arbiter"])
    run_parties({
        "guest": lambda: HeteroLinearGuest(config).fit(hub.channel("guest"), X_guest, y, hosts=["host"],
                                                       arbiter="arbiter"),
        "host": lambda: HeteroLinearHost(config).fit(hub.channel("host"), X_host, guest="guest", arbiter="arbiter"),
        "arbiter": lambda: HeteroLinearArbiter(config).fit(hub.channel("arbiter"), guest="guest", hosts=["host"]),
    }, timeout=120)


@pytest.fixture
def seen_by_host(monkeypatch) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, decrypted gradient) of every batch, as the host saw them: what a curious host keeps."""
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    batch_rows = threading.local()
    train_batch, decrypt = _HostTrainer.train_batch, cipher.decrypt_via_arbiter

    def curious_train_batch(self, rows, *rest):
        batch_rows.rows = rows
        return train_batch(self, rows, *rest)

    def curious_decrypt(channel, arbiter, value, size):
        plain = decrypt(channel, arbiter, value, size)
        if channel.party == "host":
            seen.append((batch_rows.rows.copy(), plain.copy()))
        return plain

    monkeypatch.setattr(_HostTrainer, "train_batch", curious_train_batch)
    monkeypatch.setattr(cipher, "decrypt_via_arbiter", curious_decrypt)
    return seen


def test_a_curious_host_never_sees_a_batch_it_can_solve_for_the_labels(seen_by_host):
    """The reproduction of the finding: 1027 rows, batches of 1024, 6 host features. The short last
    batch (3 rows) used to give the host all its labels; now it is merged into the previous one."""
    rng = np.random.default_rng(3)
    n = 1027
    X_guest, X_host = rng.normal(size=(n, GUEST_FEATURES)), rng.normal(size=(n, HOST_FEATURES))
    y = (X_guest[:, 0] + X_host[:, 0] + rng.normal(size=n) > 0).astype(float)
    config = LinearOptions(epochs=1, batch_size=1024, key_bits=1024)
    train_three_parties(config, X_guest, y, X_host)

    for rows, gradient in seen_by_host:
        recovered = np.mean(pinv_attack(X_host[rows], gradient) == y[rows])
        assert recovered < 0.75, f"the host recovered {recovered:.0%} of a {len(rows)}-row batch's labels"
    assert [len(rows) for rows, _ in seen_by_host] == [n]  # one batch: the 3-row tail joined the 1024 rows


def stacked_attack(X_host: np.ndarray, seen: list, epochs: int) -> np.ndarray:
    """The curious host's least squares over every gradient it decrypted: X_bᵀ (p_e - y_b) = g with the
    labels y and one mean prediction p_e per epoch unknown (d = sigmoid(z) - y). Returns its label scores."""
    n, k = X_host.shape
    per_epoch = len(seen) // epochs
    equations, values = [], []
    for index, (rows, gradient) in enumerate(seen):
        block = np.zeros((k, n + epochs))
        block[:, rows] = -X_host[rows].T
        block[:, n + index // per_epoch] = X_host[rows].sum(axis=0)
        equations.append(block)
        values.append(gradient)
    return np.linalg.lstsq(np.vstack(equations), np.concatenate(values), rcond=None)[0][:n]


def test_a_curious_host_stacking_its_gradients_over_the_epochs_learns_no_more_than_its_columns_tell(seen_by_host):
    """Each batch is safe alone, but batches drawn afresh every epoch gave the host k new equations over
    the same labels each time: stacked over 30 epochs, least squares read them at AUC 0.94 here. Every
    epoch now visits the same batches, and the attack reads no more than a model of the host's own
    columns fitted to the labels would (its in-sample AUC, 0.74)."""
    rng = np.random.default_rng(3)
    n, epochs = 300, 30
    X_guest, X_host = rng.normal(size=(n, GUEST_FEATURES)), rng.normal(size=(n, HOST_FEATURES))
    y = (X_guest[:, 0] + X_host[:, 0] + rng.normal(size=n) > 0).astype(float)
    train_three_parties(LinearOptions(epochs=epochs, batch_size=SAFE_ROWS, tol=0, encrypt=False), X_guest, y, X_host)

    assert len(seen_by_host) == 2 * epochs  # two batches of at least the floor, every epoch
    attack = roc_auc_score(y, stacked_attack(X_host, seen_by_host, epochs))
    columns_alone = roc_auc_score(y, LogisticRegression().fit(X_host, y).decision_function(X_host))
    assert attack < columns_alone + 0.04, (attack, columns_alone)


def test_the_host_refuses_a_guest_that_mixes_rows_of_earlier_batches(monkeypatch):
    """A deviating guest drawing batches afresh (to stack a host's equations, or its own over the hosts'
    partial scores) is refused at its first mixed batch, after the same batches were taken again."""
    rng = np.random.default_rng(7)
    n = 3 * SAFE_ROWS  # two batches: the floor is a little above SAFE_ROWS for labels not exactly balanced
    X_guest, X_host = rng.normal(size=(n, GUEST_FEATURES)), rng.normal(size=(n, HOST_FEATURES))
    y = (X_guest[:, 0] + X_host[:, 0] > 0).astype(float)
    sent: list[np.ndarray] = []
    train_batch = HeteroLinearGuest._train_batch

    def deviating_train_batch(self, model, rows, target, optimizer, penalized):
        sent.append(rows)
        if len(sent) == 5:  # epoch 3: one row of the other batch swapped in
            other = next(earlier for earlier in sent if not np.array_equal(earlier, rows))
            rows = np.sort(np.concatenate([rows[1:], other[:1]]))
        return train_batch(self, model, rows, target, optimizer, penalized)

    monkeypatch.setattr(HeteroLinearGuest, "_train_batch", deviating_train_batch)
    with pytest.raises(AssertionError) as failure:
        train_three_parties(LinearOptions(epochs=3, batch_size=SAFE_ROWS, tol=0, encrypt=False), X_guest, y, X_host)
    error = failure.value.__cause__
    assert isinstance(error, ProtocolError) and error.peer == "guest", repr(error)
    assert "mixes rows of earlier batches" in str(error) and len(sent) == 5


@pytest.mark.parametrize("later, taken", [
    (np.arange(10), True),  # the same batch again
    (np.arange(10, 20), True),  # rows never batched
    (np.arange(5, 15), False),  # a mix
    (np.arange(5), False),  # part of a batch
    (np.arange(12), False),  # a batch and more
])
def test_a_partition_takes_a_batch_again_or_new_rows_only(later, taken):
    partition = batches.Partition(30)
    partition.check(np.arange(10), Inspect("guest", tags.CONTROL))
    if taken:
        partition.check(later, Inspect("guest", tags.CONTROL))
    else:
        with pytest.raises(ProtocolError, match="mixes rows of earlier batches"):
            partition.check(later, Inspect("guest", tags.CONTROL))


def test_the_attack_works_on_a_batch_no_larger_than_the_host_features():
    """The premise, without the protocol: what the host decrypts over 6 rows gives the 6 labels."""
    rng = np.random.default_rng(4)
    X_batch, y = rng.normal(size=(HOST_FEATURES, HOST_FEATURES)), rng.integers(0, 2, HOST_FEATURES).astype(float)
    gradient = X_batch.T @ (2.0 - 4.0 * y)  # epoch 1: all weights are 0
    assert (pinv_attack(X_batch, gradient) == y).all()


def test_too_few_rows_for_one_safe_batch_is_a_data_error_naming_the_numbers():
    rng = np.random.default_rng(5)
    n = 100  # balanced labels: a full bit each, so the floor is exactly 24 x 6
    with pytest.raises(AssertionError) as failure:
        train_three_parties(LinearOptions(epochs=1, encrypt=False), rng.normal(size=(n, 2)), np.arange(n) % 2,
                            rng.normal(size=(n, HOST_FEATURES)))
    message = str(failure.value.__cause__)
    assert f"{n} training rows" in message and f"{SAFE_ROWS} a batch needs" in message
    assert "'host'" in message and "precision" in message


def test_too_few_validation_rows_for_a_safe_loss_is_a_data_error_naming_the_numbers():
    """Early stopping's validation loss is a sum over the held-out rows as a batch's is, and every party
    refuses it over fewer rows than a batch: the guest says so before training."""
    rng = np.random.default_rng(5)
    n = 4 * SAFE_ROWS
    config = LinearOptions(epochs=1, encrypt=False, validation_fraction=0.2, early_stopping_rounds=1)  # 115 < 144
    with pytest.raises(AssertionError) as failure:
        train_three_parties(config, rng.normal(size=(n, 2)), np.arange(n) % 2, rng.normal(size=(n, HOST_FEATURES)))
    message = str(failure.value.__cause__)
    assert "holds out 115 rows" in message and f"the {SAFE_ROWS} a batch needs" in message, message


# --- a deviating guest, scripted message by message ----------------------------------------------


class Scripted:
    """Runs one honest role in a thread; the test plays its peers by hand."""

    def __init__(self, hub: LocalHub, role):
        self.error: BaseException | None = None

        def target():
            try:
                role()
            except BaseException as exc:  # noqa: BLE001 - inspected by the test
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def refused(self, timeout: float = 30) -> ProtocolError:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the honest party is still waiting"
        assert isinstance(self.error, ProtocolError), repr(self.error)
        return self.error


def honest_host(hub: LocalHub, config: LinearOptions) -> Scripted:
    X = np.random.default_rng(6).normal(size=(400, HOST_FEATURES))
    return Scripted(hub, lambda: HeteroLinearHost(config).fit(hub.channel("host"), X, guest="guest", arbiter="arbiter"))


@pytest.mark.parametrize("rows", [np.arange(9), np.zeros(SAFE_ROWS, dtype=np.int64)], ids=["short", "repeated"])
def test_the_host_refuses_a_deviating_guests_small_batch(rows):
    config = LinearOptions(encrypt=False)
    hub = LocalHub(["guest", "host", "arbiter"])
    host = honest_host(hub, config)
    hub.channel("arbiter").send("host", tags.PUBLIC_KEY, None)
    guest = hub.channel("guest")
    assert guest.recv("host", tags.FEATURES) == HOST_FEATURES  # the host says how wide it is
    guest.send("host", tags.CONTROL, {"op": "start", "models": 1, "columns": 1, "features": {"guest": 3, "host": HOST_FEATURES}})
    guest.send("host", tags.CONTROL, {"op": "batch", "rows": rows, "model": 0})
    error = host.refused()
    assert error.peer == "guest" and "refusing a batch" in str(error)
    with pytest.raises(PeerAbortedError):  # and it tells the guest instead of going quiet
        guest.recv("host", tags.PARTIAL, timeout=5)


@pytest.mark.parametrize("key", [None, "weak", "not a key"])
def test_the_host_refuses_an_arbiter_key_other_than_the_jobs(key):
    """An arbiter handing out no key, a key shorter than the job's key_bits, or something else entirely
    is named before the host encrypts anything under it."""
    from isthmus.crypto.paillier import generate_keypair

    config = LinearOptions(key_bits=2048)
    hub = LocalHub(["guest", "host", "arbiter"])
    host = honest_host(hub, config)
    hub.channel("arbiter").send("host", tags.PUBLIC_KEY, generate_keypair(1024)[0] if key == "weak" else key)
    error = host.refused()
    assert error.peer == "arbiter" and "at least 2048 bits" in str(error)


def test_the_host_refuses_a_guest_that_misstates_its_width():
    config = LinearOptions(encrypt=False)
    hub = LocalHub(["guest", "host", "arbiter"])
    host = honest_host(hub, config)
    hub.channel("arbiter").send("host", tags.PUBLIC_KEY, None)
    guest = hub.channel("guest")
    guest.recv("host", tags.FEATURES)
    guest.send("host", tags.CONTROL, {"op": "start", "models": 1, "columns": 1, "features": {"guest": 3, "host": 1}})
    assert host.refused().peer == "guest"


def start_arbiter(config: LinearOptions) -> tuple[LocalHub, Scripted, object]:
    """An honest arbiter after the start order; returns the hub, the arbiter and its public key."""
    hub = LocalHub(["guest", "host", "arbiter"])
    arbiter = Scripted(hub, lambda: HeteroLinearArbiter(config).fit(hub.channel("arbiter"), guest="guest",
                                                                     hosts=["host"]))
    public_key = [hub.channel(party).recv("arbiter", tags.PUBLIC_KEY) for party in ("guest", "host")][0]
    hub.channel("guest").send("arbiter", tags.ARBITER_CONTROL,
                              {"op": "start", "columns": 1, "features": {"guest": 3, "host": HOST_FEATURES}})
    return hub, arbiter, public_key


def test_the_arbiter_refuses_to_decrypt_gradients_of_a_small_batch():
    hub, arbiter, _ = start_arbiter(LinearOptions(encrypt=False))
    hub.channel("guest").send("arbiter", tags.ARBITER_CONTROL, {"op": "decrypt", "rows": 9})
    error = arbiter.refused()
    assert error.peer == "guest" and "batch of 9 rows" in str(error)


def test_the_arbiter_refuses_the_sigmoid_of_a_single_score():
    """From softplus(z) of one row the guest would read z, hence the hosts' partial score."""
    hub, arbiter, _ = start_arbiter(LinearOptions(encrypt=False, residual="sigmoid"))
    guest = hub.channel("guest")
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "sigmoid"})
    guest.send("arbiter", tags.SIGMOID_REQUEST, {"scores": np.array([0.7]), "size": 1})
    error = arbiter.refused()
    assert error.peer == "guest" and "batch of 1 scores" in str(error)


def test_scores_beyond_every_partys_bound_are_refused_naming_the_guest():
    """The arbiter sizes the packing from the parties it knows, not from the guest's request; slots
    holding more than two parties' parts can sum to are the guest's fault, named as such (not an
    encoding crash)."""
    hub, arbiter, public_key = start_arbiter(LinearOptions(key_bits=1024, residual="sigmoid"))
    guest = hub.channel("guest")
    packer = disguise.score_packer(public_key, classes=1, parties=2)
    every_slot_full = (1 << (packer.capacity * packer.slot_bits)) - 1
    ciphertexts = public_key.encrypt_integers([every_slot_full] * -(-SAFE_ROWS // packer.capacity))
    payload = CipherArray.from_ciphertexts(public_key, ciphertexts, (len(ciphertexts),), 0, fresh=True)
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "sigmoid"})
    guest.send("arbiter", tags.SIGMOID_REQUEST, {"scores": payload, "size": SAFE_ROWS})
    error = arbiter.refused()
    assert error.peer == "guest" and "do not decode" in str(error)


@pytest.mark.parametrize("secret", [False, True], ids=["plaintext", "paillier"])
def test_a_second_decryption_request_of_another_length_is_refused(secret):
    """A deviating host first asks for its 6-value gradient, then for 40 values (e.g. ciphertexts of the
    guest's residual, which would be its labels): the arbiter decrypts only the length fixed at the start."""
    hub, arbiter, public_key = start_arbiter(LinearOptions(encrypt=secret, key_bits=1024))
    guest, host = hub.channel("guest"), hub.channel("host")

    def request(party, size):
        party.send("arbiter", tags.MASKED, cipher.encrypt(public_key, np.linspace(-1.0, 1.0, size)))

    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "decrypt", "rows": SAFE_ROWS})
    request(host, HOST_FEATURES)
    request(guest, 3 + 1)  # the guest's gradient and its loss
    assert len(host.recv("arbiter", tags.UNMASKED_RAW)) == HOST_FEATURES
    assert len(guest.recv("arbiter", tags.UNMASKED_RAW)) == 4
    guest.send("arbiter", tags.ARBITER_CONTROL, {"op": "decrypt", "rows": SAFE_ROWS})
    request(host, 40)
    error = arbiter.refused()
    assert error.peer == "host" and "refusing to decrypt 40 values" in str(error)


def test_a_job_lowering_the_batch_floor_needs_the_benchmark_switch(tmp_path):
    parties = {"guest": {"address": "127.0.0.1:1", "data": {"path": str(tmp_path / "g.csv"), "id": "id", "label": "y"}},
               "host": {"address": "127.0.0.1:2", "data": {"path": str(tmp_path / "h.csv"), "id": "id"}},
               "arbiter": {"address": "127.0.0.1:3"}}
    train = {"model": "hetero_lr", "batch_rows_per_feature": 4}
    spec = parse_job({"job": "unsafe", "parties": parties, "steps": [{"train": train}]}, base_dir=tmp_path)
    for party in spec.parties:  # every party refuses the job when it loads, before any step runs
        with pytest.raises(ConfigError, match=f"party '{party}'.*batch_rows_per_feature 4 .*below the safe 24"):
            make_plan(spec, party)
    allowed = parse_job({"job": "bench", "benchmark_only_plaintext": True, "parties": parties,
                         "steps": [{"train": train}]}, base_dir=tmp_path)
    assert make_plan(allowed, "host").first("train").options.options.batch_rows_per_feature == 4
    assert not LinearOptions(batch_rows_per_feature=30).unsafe_batches
    assert LinearOptions(precision=8).rows_per_feature == 16  # coarser features, shorter equations


def test_a_curious_host_cannot_link_the_residual_to_its_own_partials(monkeypatch):
    """The host knows its ciphertexts [[u]]. Were the residual [[u]] * (1 + g n) not re-randomised, or
    two encryptions to share a random factor (a pool handing a factor out twice), dividing one
    ciphertext by the other would leave 1 + m n, i.e. 1 modulo n, and m the guest's plaintext part
    (u_g + 2 - 4y). Randomness drawn ahead of time in the background must keep every factor fresh."""
    from isthmus.protocols.inspect import Inspect

    rng = np.random.default_rng(5)
    n = 2 * SAFE_ROWS
    X_guest, X_host = rng.normal(size=(n, GUEST_FEATURES)), rng.normal(size=(n, HOST_FEATURES))
    y = (X_guest[:, 0] + X_host[:, 0] > 0).astype(float)
    sent, received, key = [], [], []
    encrypt, inspect_cipher = cipher.encrypt, Inspect.cipher

    def recording_encrypt(public_key, values):
        encrypted = encrypt(public_key, values)
        key[:] = [public_key]
        sent.append(encrypted.ciphertexts())
        return encrypted

    def recording_cipher(self, obj, public_key, **kwargs):
        value = inspect_cipher(self, obj, public_key, **kwargs)
        if self.tag == tags.RESIDUAL:
            received.append(value.ciphertexts())
        return value

    monkeypatch.setattr(cipher, "encrypt", recording_encrypt)
    monkeypatch.setattr(Inspect, "cipher", recording_cipher)
    config = LinearOptions(epochs=2, batch_size=SAFE_ROWS, key_bits=1024, residual="taylor")
    train_three_parties(config, X_guest, y, X_host)

    import gmpy2

    assert len(received) >= 2 and len(sent) == 2 * len(received)  # per batch the host sends [[u]] and [[|u|^2]]
    nn, nsquare = key[0].n, key[0].nsquare
    partials = [batch for batch in sent if len(batch) > 1]
    for mine, residual in zip(partials, received):
        linked = sum((r * gmpy2.invert(u, nsquare) % nsquare) % nn == 1 for u, r in zip(mine, residual))
        assert linked == 0, f"{linked} residual ciphertexts are the host's own [[u]] times a plaintext"
    # across every ciphertext the host made or received, no two share a random factor
    firsts = [batch[0] for batch in sent + received]
    for i, a in enumerate(firsts):
        for b in firsts[i + 1:]:
            assert (a * gmpy2.invert(b, nsquare) % nsquare) % nn != 1


def test_the_exact_residual_reaches_the_host_as_the_arbiters_encryption_and_no_host_row_reaches_the_guest(
        monkeypatch):
    """With ``residual: sigmoid`` the guest sends [[sigmoid(z)]] - y without re-randomising (a random factor
    per row saved): each residual ciphertext is one the arbiter made, times a plaintext. No host saw those
    (none is a ciphertext a host made), so dividing gives it nothing; the arbiter, which could link them,
    never receives the residual. The other way, a host sends the guest no ciphertext per row: its packed
    part of the arbiter's request (many rows per ciphertext) and one loss term."""
    import gmpy2

    rng = np.random.default_rng(6)
    n = 2 * SAFE_ROWS
    X_guest, X_host = rng.normal(size=(n, GUEST_FEATURES)), rng.normal(size=(n, HOST_FEATURES))
    y = (X_guest[:, 0] + X_host[:, 0] > 0).astype(float)
    arbiter_made, from_host, residuals, key = [], [], [], []
    encrypt, inspect_cipher = cipher.encrypt, Inspect.cipher

    def recording_encrypt(public_key, values):
        encrypted = encrypt(public_key, values)
        key[:] = [public_key]
        if threading.current_thread().name == "arbiter":
            arbiter_made.extend(encrypted.ciphertexts())
        return encrypted

    def recording_cipher(self, obj, public_key, **kwargs):
        value = inspect_cipher(self, obj, public_key, **kwargs)
        if self.tag == tags.RESIDUAL:
            residuals.extend(value.ciphertexts())
        if self.tag == tags.PARTIAL:
            from_host.extend(value.ciphertexts())
        return value

    monkeypatch.setattr(cipher, "encrypt", recording_encrypt)
    monkeypatch.setattr(Inspect, "cipher", recording_cipher)
    train_three_parties(LinearOptions(epochs=1, batch_size=SAFE_ROWS, key_bits=1024), X_guest, y, X_host)

    nn, nsquare = key[0].n, key[0].nsquare

    def linked(a, b) -> bool:  # a = b * (1 + n)^m: the same random factor
        return (a * gmpy2.invert(b, nsquare) % nsquare) % nn == 1

    assert len(residuals) == n and len(arbiter_made) == n
    assert all(any(linked(r, s) for s in arbiter_made) for r in residuals)
    assert not any(linked(r, h) for r in residuals for h in from_host)
    assert len(from_host) <= n // 10  # two batches: a few packed ciphertexts and one loss term each


def test_a_guest_holding_out_validation_rows_gets_no_host_partial_score_during_training():
    """Each epoch's validation loss needed the host's partial scores of the held-out rows, sent in clear: one
    linear projection of their host columns per epoch, all of them up to a linear map after as many epochs as
    the host has columns (benchmarks/label_leakage.py lr-validation: R^2 1.00). The loss is now formed under
    encryption; what left the host during training holds no plaintext score."""
    rng = np.random.default_rng(3)
    n = 6 * SAFE_ROWS
    X_guest, X_host = rng.normal(size=(n, GUEST_FEATURES)), rng.normal(size=(n, HOST_FEATURES))
    y = (X_guest[:, 0] + X_host[:, 0] > 0).astype(float)
    config = LinearOptions(epochs=HOST_FEATURES + 2, batch_size=SAFE_ROWS, validation_fraction=0.25, tol=0,
                           early_stopping_rounds=HOST_FEATURES + 2, encrypt=False)
    hub = LocalHub(["guest", "host", "arbiter"])
    host_channel, left_the_host = hub.channel("host"), []
    send = host_channel._send_raw
    host_channel._send_raw = lambda to, tag, payload: (left_the_host.append(tag), send(to, tag, payload))[1]
    guest = HeteroLinearGuest(config)
    run_parties({
        "guest": lambda: guest.fit(hub.channel("guest"), X_guest, y, hosts=["host"], arbiter="arbiter"),
        "host": lambda: HeteroLinearHost(config).fit(host_channel, X_host, guest="guest", arbiter="arbiter"),
        "arbiter": lambda: HeteroLinearArbiter(config).fit(hub.channel("arbiter"), guest="guest", hosts=["host"]),
    }, timeout=120)
    assert len(guest.history_) == config.epochs and all("validation_loss" in h for h in guest.history_)
    assert tags.PARTIAL in left_the_host and tags.SCORES not in left_the_host


def started_host(config: LinearOptions) -> tuple[LocalHub, Scripted]:
    """An honest host after the start order, its arbiter key plaintext."""
    hub = LocalHub(["guest", "host", "arbiter"])
    host = honest_host(hub, config)
    hub.channel("arbiter").send("host", tags.PUBLIC_KEY, None)
    guest = hub.channel("guest")
    guest.recv("host", tags.FEATURES)
    guest.send("host", tags.CONTROL, {"op": "start", "models": 1, "columns": 1,
                                      "features": {"guest": GUEST_FEATURES, "host": HOST_FEATURES}})
    return hub, host


def test_the_host_sends_no_plaintext_scores_before_training_is_over():
    """A deviating guest asking for the host's partial scores after every epoch would get them as the
    validation loss once did: refused until the fit is done (prediction, after it, is one projection)."""
    hub, host = started_host(LinearOptions(encrypt=False))
    hub.channel("guest").send("host", tags.CONTROL, {"op": "score", "rows": np.arange(10)})
    error = host.refused()
    assert error.peer == "guest" and "'score'" in str(error)


def test_the_host_refuses_a_validation_loss_over_other_rows():
    """Losses over overlapping row sets, differenced, would give single rows' partial scores."""
    hub, host = started_host(LinearOptions(encrypt=False))
    guest = hub.channel("guest")
    for rows in (np.arange(SAFE_ROWS), np.arange(1, SAFE_ROWS + 1)):
        first = {"labels": np.zeros(SAFE_ROWS)} if rows[0] == 0 else {}
        guest.send("host", tags.CONTROL, {"op": "validate", "rows": rows, "model": 0,
                                          "disguise": np.arange(SAFE_ROWS), **first})
        if rows[0] == 0:
            guest.recv("host", tags.PARTIAL)
            guest.send("host", tags.PARTNERS, [])
    error = host.refused()
    assert error.peer == "guest" and "other rows than the first" in str(error)


@pytest.mark.parametrize("disguise", [None, np.zeros(SAFE_ROWS, dtype=np.int64), np.arange(SAFE_ROWS - 1)],
                         ids=["missing", "one-row-repeated", "too-short"])
def test_the_host_packs_its_scores_only_in_an_order_of_the_batch(disguise):
    """For the exact residual the guest tells the hosts the batch's secret order for the arbiter; anything
    but an order of the batch's rows (none, a row twice and another left out, too few) is refused before
    the host encrypts anything."""
    hub, host = started_host(LinearOptions(encrypt=False))
    order = {"op": "batch", "rows": np.arange(SAFE_ROWS), "model": 0}
    hub.channel("guest").send("host", tags.CONTROL, order if disguise is None else {**order, "disguise": disguise})
    error = host.refused()
    assert error.peer == "guest" and "disguise" in str(error)


def test_the_host_takes_a_batchs_encrypted_labels_with_its_first_order_only():
    """For the exact loss the guest sends a batch's [[y]] once, and the host returns one inner product of
    them with its partial scores per epoch. A guest sending new labels every epoch (e.g. one row's
    indicator) would choose a new projection of the host's scores each time: refused, as are none."""
    hub, host = started_host(LinearOptions(encrypt=False))
    guest = hub.channel("guest")
    order = {"op": "batch", "rows": np.arange(SAFE_ROWS), "model": 0, "disguise": np.arange(SAFE_ROWS)}
    guest.send("host", tags.CONTROL, {**order, "labels": np.zeros(SAFE_ROWS)})
    assert set(guest.recv("host", tags.PARTIAL)) == {"disguised", "loss"}
    guest.send("host", tags.RESIDUAL, {"residual": np.zeros(SAFE_ROWS), "partners": []})
    hub.channel("arbiter").send("host", tags.UNMASKED_RAW, np.zeros(HOST_FEATURES))
    guest.send("host", tags.CONTROL, {**order, "labels": np.eye(SAFE_ROWS)[0]})  # the batch again, new labels
    error = host.refused()
    assert error.peer == "guest" and "come with its first order, and only with it" in str(error)


def test_the_host_refuses_a_new_batch_without_its_encrypted_labels():
    hub, host = started_host(LinearOptions(encrypt=False))
    hub.channel("guest").send("host", tags.CONTROL, {"op": "batch", "rows": np.arange(SAFE_ROWS), "model": 0,
                                                     "disguise": np.arange(SAFE_ROWS)})
    error = host.refused()
    assert error.peer == "guest" and "encrypted labels" in str(error)
