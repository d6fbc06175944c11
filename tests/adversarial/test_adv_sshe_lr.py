"""hetero_lr_sshe against a deviating host: every message it could abuse is refused naming it and its tag,
and a party that leaves mid-protocol stops the other without weights."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_parties
from isthmus.algorithms.sshe_lr import protocol, shares, tags
from isthmus.algorithms.sshe_lr.options import SSHEOptions
from isthmus.algorithms.sshe_lr.roles import fit_guest, fit_host
from isthmus.errors import PeerAbortedError, ProtocolError
from isthmus.transport.local import LocalHub

ROWS, GUEST_FEATURES, HOST_FEATURES = 24, 2, 3
OPTIONS = SSHEOptions(epochs=1, batch_size=0, key_bits=1024)


def guest_against(host_script, options: SSHEOptions = OPTIONS):
    """Run an honest guest against a scripted host; return the guest's error (the host's is ignored)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(ROWS, GUEST_FEATURES)), np.arange(ROWS) % 2
    hub = LocalHub(["guest", "host"])
    failures = {}

    def guest():
        try:
            fit_guest(options, hub.channel("guest"), X, y, hosts=["host"])
        except Exception as exc:
            failures["guest"] = exc

    def host():
        try:
            host_script(hub.channel("host"))
        except Exception:
            pass  # the guest's abort reaches a scripted host as an error

    run_parties({"guest": guest, "host": host}, timeout=120)
    return failures.get("guest")


def hello_and_batch(channel, key, *, features=HOST_FEATURES, announced=None):
    """A host's honest opening: its hello, the guest's hello and the first batch order."""
    channel.send("guest", tags.HELLO, {"key": announced if announced is not None else key, "features": features})
    guest_key = channel.recv("guest", tags.HELLO)["key"]
    order = channel.recv("guest", tags.CONTROL)
    return guest_key, order["rows"]


@pytest.mark.parametrize("announced", [b"not a key", 2048])
def test_a_hello_without_a_paillier_key_is_refused(paillier_1024, announced):
    error = guest_against(lambda ch: hello_and_batch(ch, paillier_1024[0], announced=announced))
    assert isinstance(error, ProtocolError) and "host" in str(error) and tags.HELLO in str(error)


def test_a_key_shorter_than_the_jobs_is_refused(paillier_1024):
    error = guest_against(lambda ch: hello_and_batch(ch, paillier_1024[0]), OPTIONS.model_copy(update={"key_bits": 1536}))
    assert isinstance(error, ProtocolError) and "at least 1536 bits" in str(error)


def test_weight_shares_under_another_key_are_refused(paillier_1024):
    def script(channel):
        hello_and_batch(channel, paillier_1024[0])
        from isthmus.crypto.paillier import generate_keypair
        other, _ = generate_keypair(1024)
        channel.send("guest", tags.WEIGHT_SHARE, shares.encrypt(other, [0] * (GUEST_FEATURES + 1)))

    error = guest_against(script)
    assert isinstance(error, ProtocolError) and "different public key" in str(error) and tags.WEIGHT_SHARE in str(error)


def test_weight_shares_of_the_wrong_count_are_refused(paillier_1024):
    def script(channel):
        hello_and_batch(channel, paillier_1024[0])
        channel.send("guest", tags.WEIGHT_SHARE, shares.encrypt(paillier_1024[0], [0] * 7))

    error = guest_against(script)
    assert isinstance(error, ProtocolError) and "expected 3 ciphertexts" in str(error)


@pytest.mark.parametrize("count, overflow", [(0, True), (1, False)])
def test_packed_score_shares_beyond_what_an_honest_host_sends_are_refused(paillier_1024, count, overflow):
    """A host that returns a chosen huge plaintext instead of packed X v - r (or one packed ciphertext
    too many): refused before it enters any share."""
    packing = shares.Packing(1024, HOST_FEATURES.bit_length() + OPTIONS.precision + protocol.FEATURE_BITS)

    def script(channel):
        guest_key, rows = hello_and_batch(channel, paillier_1024[0])
        channel.send("guest", tags.WEIGHT_SHARE, shares.encrypt(paillier_1024[0], [0] * (GUEST_FEATURES + 1)))
        channel.recv("guest", tags.WEIGHT_SHARE)
        value = 1 << (packing.per * packing.width) if overflow else 0
        channel.send("guest", tags.SCORE_SHARE, shares.encrypt(guest_key, [value] * (packing.groups(len(rows)) + count)))

    error = guest_against(script)
    assert isinstance(error, ProtocolError) and tags.SCORE_SHARE in str(error)
    assert ("overflows its slots" if overflow else f"expected {packing.groups(ROWS)} ciphertexts") in str(error)


def test_a_host_leaving_mid_protocol_fails_the_guest_naming_it_without_weights(paillier_1024):
    def script(channel):
        hello_and_batch(channel, paillier_1024[0])
        channel.abort("host crashed")

    error = guest_against(script)
    assert isinstance(error, PeerAbortedError) and "host" in str(error)


def test_a_guest_leaving_mid_protocol_fails_the_host_without_weights():
    hub = LocalHub(["guest", "host"])
    X = np.random.default_rng(0).normal(size=(ROWS, HOST_FEATURES))

    def guest():
        channel = hub.channel("guest")
        channel.send("host", tags.HELLO, {"key": channel_key, "features": GUEST_FEATURES + 1})
        channel.recv("host", tags.HELLO)
        channel.abort("guest crashed")

    from isthmus.crypto.paillier import generate_keypair
    channel_key, _ = generate_keypair(1024)
    with pytest.raises(AssertionError, match="party host failed: PeerAbortedError.*guest crashed") as failed:
        run_parties({"host": lambda: fit_host(OPTIONS, hub.channel("host"), X, guest="guest"), "guest": guest})
    assert isinstance(failed.value.__cause__, PeerAbortedError)
