"""Private set intersection end to end over the in-process hub: exact results, one order, nothing leaked."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from isthmus.crypto import ecdh
from isthmus.errors import ConfigError, DataError, ProtocolError
from isthmus.protocols import psi
from isthmus.protocols.psi import intersect
from isthmus.protocols.psi_wire import recv_records
from isthmus.transport import codec
from isthmus.transport.local import LocalHub

METHODS = ["ecdh", "rsa", "kkrt"]


def run_psi(ids: dict[str, Any], *, job: str = "job", hub: LocalHub | None = None, **options: Any) -> tuple[dict, dict]:
    """Every party of ``ids`` runs ``intersect`` in its own thread; the first key is the guest."""
    guest, *hosts = ids
    hub = hub or LocalHub(list(ids))
    roles = {party: _role(hub, job, party, "guest" if party == guest else "host", ids[party], guest=guest, hosts=hosts, **options) for party in ids}
    return run_roles(roles)


def run_roles(roles: dict[str, Callable[[], Any]], timeout: float = 60) -> tuple[dict, dict]:
    """Run role functions in threads; return (results, errors) by party, so tests can check every side."""
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def target(name: str, fn: Callable[[], Any]) -> None:
        try:
            results[name] = fn()
        except Exception as exc:  # inspected by the test
            errors[name] = exc

    threads = [threading.Thread(target=target, args=item, daemon=True) for item in roles.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a party hung"
    return results, errors


def _role(hub: LocalHub, job: str, party: str, role: str, ids: Any, **options: Any) -> Callable[[], psi.PsiResult]:
    channel = hub.channel(party, job)
    channel.default_timeout = 20  # a hung protocol fails the test quickly instead of waiting 10 minutes
    return lambda: intersect(channel, role, ids, **options)


def shared_ids(results: dict[str, psi.PsiResult], ids: dict[str, Any]) -> dict[str, list[str]]:
    """Each party's ids at its result positions, in canonical text form."""
    return {party: [str(ids[party][i]).strip() for i in result.positions] for party, result in results.items()}


def assert_aligned(results: dict[str, psi.PsiResult], ids: dict[str, Any], expected: set[str]) -> None:
    rows = shared_ids(results, ids)
    first = next(iter(rows.values()))
    assert set(first) == expected and len(first) == len(expected)
    for party, party_rows in rows.items():
        assert party_rows == first, f"{party} holds the shared ids in another order"
        assert results[party].size == len(expected)


def test_fresh_permutation_is_a_permutation():
    assert sorted(psi._secret_permutation(1000)) == list(range(1000))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("guest_is_larger", [False, True])  # ECDH: the guest strips its key, or raises the host's points
def test_two_parties_find_exactly_the_shared_ids_in_one_order(method, guest_is_larger):
    rng = np.random.default_rng(7)
    guest = rng.permutation(np.arange(200 if guest_is_larger else 130))  # ints ...
    host = [f" {i} " for i in rng.permutation(np.arange(100, 180))]  # ... meet strings holding the same ints
    ids = {"guest": guest, "host": host}
    results, errors = run_psi(ids, method=method)
    assert not errors
    assert_aligned(results, ids, {str(i) for i in range(100, 180 if guest_is_larger else 130)})


def test_rsa_works_whichever_side_is_larger():
    """The larger set signs: here the guest, so the host is the client and reports its matches."""
    ids = {"guest": [f"u{i}" for i in range(200)], "host": [f"u{i}" for i in range(150, 220)]}
    results, errors = run_psi(ids, method="rsa")
    assert not errors
    assert_aligned(results, ids, {f"u{i}" for i in range(150, 200)})


@pytest.mark.parametrize("method", METHODS)
def test_several_hosts_end_with_the_intersection_of_all(method):
    ids = {
        "guest": [f"c{i}" for i in range(150)],
        "bank": [f"c{i}" for i in range(50, 200)],
        "shop": [f"c{i}" for i in range(0, 300, 2)],
    }
    results, errors = run_psi(ids, method=method)
    assert not errors
    assert_aligned(results, ids, {f"c{i}" for i in range(50, 150, 2)})


@pytest.mark.parametrize("method, size", [("ecdh", 3000), ("rsa", 300)])
def test_worker_processes_give_the_same_answer(method, size):
    ids = {"guest": list(range(size)), "host": list(range(size // 2, 2 * size))}
    results, errors = run_psi(ids, method=method, workers=2)
    assert not errors
    assert_aligned(results, ids, {str(i) for i in range(size // 2, size)})


@pytest.mark.parametrize("method", METHODS)
def test_empty_and_disjoint_sets_give_an_empty_result(method):
    for ids in ({"guest": [], "host": ["a", "b"]}, {"guest": ["a"], "host": []}, {"guest": ["a", "b"], "host": ["c"]}):
        results, errors = run_psi(ids, method=method)
        assert not errors
        assert {party: r.size for party, r in results.items()} == {"guest": 0, "host": 0}
        assert all(r.positions.dtype == np.int64 and len(r.positions) == 0 for r in results.values())


def test_repeated_ids_stop_every_party_with_a_data_error():
    ids = {"guest": ["a", "b", "c"], "bank": ["a", "b", "a"], "shop": ["a", "c"]}
    results, errors = run_psi(ids)
    assert not results
    assert "'bank'" in str(errors["bank"]) and "rows 0 and 2" in str(errors["bank"])
    assert all(isinstance(e, DataError) for e in errors.values())
    assert "'bank'" in str(errors["guest"]) and "stopped" in str(errors["shop"])


def test_a_guest_with_unusable_ids_stops_the_hosts():
    _, errors = run_psi({"guest": ["a", None], "host": ["a"]})
    assert isinstance(errors["guest"], DataError) and "row 1 is missing" in str(errors["guest"])
    assert isinstance(errors["host"], DataError) and "'guest' could not take part" in str(errors["host"])


def test_fate_sample_id_files(fate_data):
    guest_ids = pd.read_csv(fate_data / "breast_hetero_guest_sample_id.csv")["id"]
    host_ids = pd.read_csv(fate_data / "breast_hetero_host_sample_id.csv")["id"]
    ids = {"guest": guest_ids, "host": host_ids}

    _, errors = run_psi(ids)  # the guest file repeats match ids: refused by default
    assert isinstance(errors["guest"], DataError) and "appears in rows" in str(errors["guest"])

    results, errors = run_psi(ids, dedupe="first")
    assert not errors
    expected = set(guest_ids) & set(host_ids)
    assert len(expected) > 0 and results["guest"].size == len(expected)
    assert list(guest_ids.iloc[results["guest"].positions]) == list(host_ids.iloc[results["host"].positions])
    first_rows = {value: row for row, value in reversed(list(enumerate(guest_ids)))}
    assert all(first_rows[guest_ids[row]] == row for row in results["guest"].positions)


@pytest.mark.parametrize("method", METHODS)
def test_no_id_and_no_unsalted_hash_of_one_leaves_a_party(tmp_path, method):
    ids = {"guest": [f"patient-{i:06d}" for i in range(40)], "host": [f"patient-{i:06d}" for i in range(20, 80)]}
    hub = LocalHub(list(ids), audit_dir=tmp_path, keep_payloads=True)
    _, errors = run_psi(ids, hub=hub, method=method)
    assert not errors
    payloads = [p for party in ids for p in hub.audits[party].sent_payloads()]
    assert len(payloads) >= 6
    secrets_of_ids = set()
    for identifier in set(ids["guest"]) | set(ids["host"]):
        digest = hashlib.sha256(identifier.encode()).digest()
        secrets_of_ids |= {identifier.encode(), digest, digest.hex().encode(), hashlib.sha512(identifier.encode()).digest()[:16]}
    assert not [s for s in secrets_of_ids for p in payloads if s in p]


def test_blinded_values_of_two_jobs_cannot_be_linked(tmp_path):
    ids = {"guest": [str(i) for i in range(50)], "host": [str(i) for i in range(25, 75)]}
    sent = []
    for job in ("job-1", "job-2"):
        hub = LocalHub(list(ids), audit_dir=tmp_path / job, keep_payloads=True)
        run_psi(ids, hub=hub, job=job)
        messages = [codec.decode(p) for p in hub.audits["host"].sent_payloads()]
        sent.append({m[i : i + 32] for m in messages if isinstance(m, bytes) and len(m) % 32 == 0 for i in range(0, len(m), 32)})
    assert len(sent[0]) >= 100 and not sent[0] & sent[1]


def test_progress_reports_reach_done():
    seen = []
    ids = {"guest": ["a", "b"], "host": ["b"]}
    run_psi(ids, progress=lambda stage, fraction: seen.append((stage, fraction)))
    assert ("handshake", 1.0) in seen and seen.count(("done", 1.0)) == 2


@pytest.mark.parametrize(
    "options, match",
    [
        ({"role": "arbiter"}, "role"),
        ({"method": "bloom"}, "method"),
        ({"hosts": ["guest"]}, "distinct hosts"),
        ({"salt_bytes": 8}, "salt_bytes"),
        ({"dedupe": "last"}, "dedupe"),
    ],
)
def test_bad_setup_is_a_config_error(options, match):
    channel = LocalHub(["guest", "host"]).channel("guest")
    call = {"role": "guest", "ids": ["a"]} | options
    with pytest.raises(ConfigError, match=match):
        intersect(channel, call.pop("role"), call.pop("ids"), **call)


# --- a hostile peer: one side is played by hand, the other must fail with a ProtocolError ---------


def _guest_and_fake_host(fake_host: Callable, guest_ids: list[str] | None = None, **options: Any) -> tuple[dict, dict]:
    hub = LocalHub(["guest", "host"])
    channel = hub.channel("host")
    channel.default_timeout = 20
    roles = {"guest": _role(hub, "job", "guest", "guest", guest_ids or ["a", "b", "c"], **options), "host": lambda: fake_host(channel)}
    return run_roles(roles)


def _host_and_fake_guest(fake_guest: Callable, host_ids: list[str] | None = None, **options: Any) -> tuple[dict, dict]:
    hub = LocalHub(["guest", "host"])
    channel = hub.channel("guest")
    channel.default_timeout = 20
    roles = {"host": _role(hub, "job", "host", "host", host_ids or ["a", "b", "c"], **options), "guest": lambda: fake_guest(channel)}
    return run_roles(roles)


def _hello(**fields: Any) -> dict:
    return {"version": psi.PROTOCOL_VERSION, "method": "ecdh", "salt": bytes(32), "count": 3} | fields


def _fake_host_sending(records: Any, count: int = 2) -> Callable:
    def fake(channel):
        channel.recv("guest", psi.TAG_HELLO)
        channel.send("guest", psi.TAG_REPLY, {"count": count})
        channel.recv("guest", psi.TAG_START)
        channel.send("guest", psi.TAG_HOST_POINTS, records)

    return fake


def _points(n: int) -> bytes:
    return ecdh.blind_ids(ecdh.new_key(), bytes(32), [str(i) for i in range(n)])


@pytest.mark.parametrize(
    "records, count, message",
    [
        ([b"x" * 32, b"y" * 32], 2, "non-empty chunk of 32-byte records"),  # a list of small bytes, not one bytes
        (b"\x01" * 33, 2, "non-empty chunk"),
        (_points(3), 2, "overruns"),
        (bytes(32) + _points(1), 2, "not a canonical point"),  # u = 0, of order 2, fails the curve test
        ((1).to_bytes(32, "little") + _points(1), 2, "small order"),
        (((1 << 255) - 1).to_bytes(32, "little") + _points(1), 2, "not a canonical point"),  # u >= p
        (_points(1) * 2, 2, "repeated records"),
    ],
    ids=["list of small bytes", "33 bytes", "overrun", "u = 0", "u = 1", "u >= p", "repeated"],  # points are random
)
def test_malformed_host_points_are_refused(records, count, message):
    _, errors = _guest_and_fake_host(_fake_host_sending(records, count))
    error = errors["guest"]
    assert isinstance(error, ProtocolError) and message in str(error)
    assert error.peer == "host" and error.tag == psi.TAG_HOST_POINTS


@pytest.mark.parametrize(
    "records, message",
    [((1).to_bytes(32, "little") + _points(2), "small order"), (_points(2), "non-empty chunk"), (_points(4), "overruns")],
    ids=["small order", "short chunk", "overrun"],
)
def test_malformed_points_sent_back_are_refused(records, message):
    def fake(channel):
        channel.recv("guest", psi.TAG_HELLO)
        channel.send("guest", psi.TAG_REPLY, {"count": 3})
        channel.recv("guest", psi.TAG_START)
        channel.send("guest", psi.TAG_HOST_POINTS, _points(3))
        channel.send("guest", psi.TAG_GUEST_POINTS_BACK, records)
        channel.send("guest", psi.TAG_GUEST_POINTS_BACK, b"\x05")  # so a short first chunk is followed by a bad one

    _, errors = _guest_and_fake_host(fake, guest_ids=["a", "b", "c"])
    assert isinstance(errors["guest"], ProtocolError) and message in str(errors["guest"])
    assert errors["guest"].tag == psi.TAG_GUEST_POINTS_BACK


def test_a_twist_point_is_refused():
    twist_u = next(u for u in range(2, 100) if not ecdh._on_curve(u))
    _, errors = _guest_and_fake_host(_fake_host_sending(twist_u.to_bytes(32, "little") + _points(1)))
    assert isinstance(errors["guest"], ProtocolError) and "not a canonical point" in str(errors["guest"])


@pytest.mark.parametrize(
    "reply, message",
    [({"count": -1}, "set size"), ({"count": "3"}, "set size"), ({"count": 2, "extra": 1}, "keys"), ([1, 2], "keys"), (np.arange(3), "keys")],
)
def test_malformed_replies_are_refused(reply, message):
    def fake(channel):
        channel.recv("guest", psi.TAG_HELLO)
        channel.send("guest", psi.TAG_REPLY, reply)

    _, errors = _guest_and_fake_host(fake)
    assert isinstance(errors["guest"], ProtocolError) and message in str(errors["guest"])
    assert errors["guest"].tag == psi.TAG_REPLY


@pytest.mark.parametrize(
    "hello, message",
    [
        (_hello(salt=bytes(8)), "salt"),
        (_hello(salt="salt" * 8), "salt"),
        (_hello(method="rsa"), "set up for 'ecdh'"),
        (_hello(method=np.arange(2)), "set up for"),
        (_hello(version=2), "protocol version"),
        (_hello(count=2**40), "set size"),
        ({"version": 1}, "keys"),
        ("hello", "protocol version"),
    ],
)
def test_malformed_hellos_are_refused_and_answered(hello, message):
    replies = []

    def fake(channel):
        channel.send("host", psi.TAG_HELLO, hello)
        replies.append(channel.recv("host", psi.TAG_REPLY))

    _, errors = _host_and_fake_guest(fake)
    assert isinstance(errors["host"], ProtocolError) and message in str(errors["host"])
    assert replies == [{"abort": True}]  # the guest is told at once, instead of waiting for a timeout


def test_method_mismatch_stops_both_sides():
    hub = LocalHub(["guest", "host"])
    _, errors = run_roles({
        "guest": _role(hub, "job", "guest", "guest", ["a"], method="rsa"),
        "host": _role(hub, "job", "host", "host", ["a"], method="ecdh"),
    })
    assert isinstance(errors["host"], ProtocolError) and isinstance(errors["guest"], DataError)


def _fake_guest_until_result(result: Any) -> Callable:
    """Plays an honest ECDH guest of three ids, then sends ``result`` as the final positions."""

    def fake(channel):
        key, salt = ecdh.new_key(), bytes(32)
        channel.send("host", psi.TAG_HELLO, _hello(salt=salt))
        count = channel.recv("host", psi.TAG_REPLY)["count"]
        channel.send("host", psi.TAG_START, {"go": True})
        channel.send("host", psi.TAG_GUEST_POINTS, ecdh.blind_ids(key, salt, ["a", "b", "c"]))
        channel.recv("host", psi.TAG_HOST_POINTS)
        channel.recv("host", psi.TAG_GUEST_POINTS_BACK)
        assert count == 3
        channel.send("host", psi.TAG_RESULT, result)

    return fake


@pytest.mark.parametrize(
    "result, message",
    [
        (np.array([0, 0], "<u4").tobytes(), "unique"),
        (np.array([3], "<u4").tobytes(), "below 3"),
        (np.arange(4, dtype="<u4").tobytes(), "more than"),
        (b"\x00\x00\x00", "uint32"),
        ([0, 1], "uint32"),
    ],
)
def test_malformed_result_positions_are_refused(result, message):
    _, errors = _host_and_fake_guest(_fake_guest_until_result(result))
    assert isinstance(errors["host"], ProtocolError) and message in str(errors["host"])
    assert errors["host"].tag == psi.TAG_RESULT


def test_a_valid_result_from_a_hand_played_guest_is_accepted():
    results, errors = _host_and_fake_guest(_fake_guest_until_result(np.array([2, 0], "<u4").tobytes()))
    assert not errors and results["host"].size == 2


def _fake_rsa_server(key_fields: Callable[[Any], dict], sign: Callable[[Any, bytes], bytes] | None = None) -> Callable:
    from isthmus.crypto import rsa_blind

    def fake(channel):
        key = rsa_blind.RsaPrivateKey.generate()
        channel.recv("guest", psi.TAG_HELLO)
        channel.send("guest", psi.TAG_REPLY, {"count": 5})
        channel.recv("guest", psi.TAG_START)
        channel.send("guest", psi.TAG_RSA_KEY, key_fields(key))
        if sign is None:
            return  # the guest must refuse the key and stop here
        blinded = b"".join(recv_records(channel, "guest", psi.TAG_RSA_BLINDED, 3, key.public.byte_length))
        channel.send("guest", psi.TAG_RSA_DIGESTS, b"".join(bytes([i]) * 32 for i in range(5)))
        channel.send("guest", psi.TAG_RSA_SIGNED, sign(key, blinded))

    return fake


@pytest.mark.parametrize(
    "key_fields, message",
    [
        (lambda key: {"n": key.public.n.to_bytes(256, "big"), "e": 3}, "exponent"),
        (lambda key: {"n": (2**1023 + 1).to_bytes(128, "big"), "e": 65537}, "modulus"),
        (lambda key: {"n": (key.public.n + 1).to_bytes(256, "big"), "e": 65537}, "odd"),
        (lambda key: {"n": key.public.n, "e": 65537}, "modulus"),
    ],
)
def test_bad_rsa_keys_are_refused(key_fields, message):
    _, errors = _guest_and_fake_host(_fake_rsa_server(key_fields), method="rsa")
    assert isinstance(errors["guest"], ProtocolError) and message in str(errors["guest"])
    assert errors["guest"].tag == psi.TAG_RSA_KEY


def test_wrong_rsa_signatures_are_detected():
    def sign_garbage(key, blinded):
        return (12345).to_bytes(key.public.byte_length, "big") * (len(blinded) // key.public.byte_length)

    _, errors = _guest_and_fake_host(_fake_rsa_server(lambda key: key.public.to_wire(), sign_garbage), method="rsa")
    assert isinstance(errors["guest"], ProtocolError) and "does not verify" in str(errors["guest"])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("larger", ["guest", "host"])
def test_one_side_with_far_more_ids_stops_both_before_any_id_is_blinded(method, larger):
    """What PSI reveals is a membership test: a side with made-up ids (every phone number) learns which the
    other holds. More than max_peer_ratio times the other's ids stops the pair at the handshake."""
    many, few = [f"id-{i}" for i in range(51)], ["id-1", "id-2"]
    ids = {"guest": many, "host": few} if larger == "guest" else {"guest": few, "host": many}
    results, errors = run_psi(ids, method=method, max_peer_ratio=25)
    assert not results and set(errors) == {"guest", "host"}
    for error in errors.values():
        assert isinstance(error, DataError) and str(error).startswith(
            f"intersection of job 'job' refused: '{larger}' brings 51 ids against 2 at "
            f"'{'host' if larger == 'guest' else 'guest'}', more than the job's max_peer_ratio (25) times as many")
    results, errors = run_psi(ids, method=method, max_peer_ratio=25.5)  # 51 = 25.5 x 2: allowed
    assert not errors and results["guest"].size == 2

