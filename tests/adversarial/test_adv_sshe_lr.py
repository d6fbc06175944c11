"""hetero_lr_sshe against deviating peers: every message they could abuse is refused naming the sender and its tag,
and a party that leaves mid-protocol stops the other without weights."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_parties
from isthmus.algorithms.sshe_lr import protocol, shares, tags
from isthmus.algorithms.sshe_lr.options import SSHEOptions
from isthmus.algorithms.sshe_lr.roles import fit_guest, fit_host
from isthmus.crypto.paillier import generate_keypair
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


# -- several hosts: the place, the folds and the spread ------------------------------------------------

def host_against(guest_script, peers=("guest", "host", "other")):
    """Run an honest host against a scripted guest; return the host's error."""
    hub = LocalHub(list(peers))
    X = np.random.default_rng(0).normal(size=(ROWS, HOST_FEATURES))
    failures = {}

    def host():
        try:
            fit_host(OPTIONS, hub.channel("host"), X, guest="guest")
        except Exception as exc:
            failures["host"] = exc

    def guest():
        try:
            guest_script(hub.channel("guest"))
        except Exception:
            pass

    run_parties({"host": host, "guest": guest}, timeout=120)
    return failures.get("host")


def guest_hello(channel, key):
    channel.send("host", tags.HELLO, {"key": key, "features": 0})
    return channel.recv("host", tags.HELLO)["key"]


@pytest.mark.parametrize("place, message", [
    ({"lead": "yes", "keys": {}}, "a place is a flag"),
    ({"lead": False, "keys": {}}, "one key for a host that does not lead"),
    ({"lead": True, "keys": {"stranger": None}}, "not other hosts of this job"),
    ({"lead": True, "keys": {"other": b"not a key"}}, "must be a Paillier key"),
])
def test_a_place_that_is_not_a_flag_and_keys_of_other_hosts_is_refused(paillier_1024, place, message):
    def script(channel):
        guest_hello(channel, paillier_1024[0])
        channel.send("host", tags.PLACE, place)

    error = host_against(script)
    assert isinstance(error, ProtocolError) and message in str(error) and tags.PLACE in str(error)


def test_a_fold_overflowing_its_slots_is_refused_by_the_lead(paillier_1024):
    """The lead decrypts the other hosts' shares of z: a plaintext beyond their 256-bit slots is refused."""
    other_key = generate_keypair(1024)[0]

    def script(channel):
        host_key = guest_hello(channel, paillier_1024[0])
        channel.send("host", tags.PLACE, {"lead": True, "keys": {"other": other_key}})
        rows = np.arange(ROWS)
        channel.send("host", tags.CONTROL, {"op": "batch", "rows": rows})
        channel.send("host", tags.WEIGHT_SHARE, shares.encrypt(paillier_1024[0], [0] * HOST_FEATURES))
        channel.recv("host", tags.SCORE_SHARE)
        groups = shares.ring_groups(1024, ROWS)
        channel.send("host", tags.FOLD, [shares.encrypt(host_key, [1 << 1000] * groups)])

    error = host_against(script)
    assert isinstance(error, ProtocolError) and "overflows its slots" in str(error) and tags.FOLD in str(error)


def test_a_spread_without_every_other_host_is_refused_by_the_guest(paillier_1024):
    """The guest relays the lead's residual shares: a map missing a host (or naming another) stops it."""
    hub = LocalHub(["guest", "lead", "other"])
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(ROWS, GUEST_FEATURES)), np.arange(ROWS) % 2
    failures = {}

    def guest():
        try:
            fit_guest(OPTIONS, hub.channel("guest"), X, y, hosts=["lead", "other"])
        except Exception as exc:
            failures["guest"] = exc

    def lead():
        try:
            channel = hub.channel("lead")
            real_send = channel.send

            def send(to, tag, obj):  # an honest lead but for the spread, which names a stranger
                real_send(to, tag, {"stranger": next(iter(obj.values()))} if tag == tags.SPREAD else obj)

            channel.send = send
            fit_host(OPTIONS, channel, rng.normal(size=(ROWS, 2)), guest="guest")
        except Exception:
            pass

    def other():
        try:
            fit_host(OPTIONS, hub.channel("other"), rng.normal(size=(ROWS, 2)), guest="guest")
        except Exception:
            pass

    run_parties({"guest": guest, "lead": lead, "other": other}, timeout=120)
    error = failures.get("guest")
    assert isinstance(error, ProtocolError) and "lead" in str(error) and tags.SPREAD in str(error)
