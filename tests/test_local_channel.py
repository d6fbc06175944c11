"""The in-process hub: same codec and audit as the network, jobs kept apart, clear timeouts."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from conftest import run_parties

from isthmus.errors import (
    ConfigError,
    DataError,
    PeerAbortedError,
    PeerGoneError,
    PeerRefusedError,
    PeerTimeoutError,
    ProtocolError,
    for_peer,
)
from isthmus.transport import codec
from isthmus.transport.local import LocalHub
from isthmus.transport.mailbox import (MAX_CLOSED_SCOPES, MAX_SCOPE_ABORTS, MAX_UNOPENED_PER_SENDER,
                                       MAX_UNOPENED_SENDERS, Mailbox, Refused)


def test_parties_in_threads_exchange_messages():
    hub = LocalHub(["guest", "host"])

    def guest():
        channel = hub.channel("guest", "job")
        channel.send("host", "ping", np.arange(4))
        return channel.recv("host", "pong", timeout=5)

    def host():
        channel = hub.channel("host", "job")
        return channel.send("guest", "pong", channel.recv("guest", "ping", timeout=5) * 10)

    np.testing.assert_array_equal(run_parties({"guest": guest, "host": host}, timeout=10)["guest"], [0, 10, 20, 30])


def test_messages_are_decoded_copies_not_shared_objects():
    hub = LocalHub(["a", "b"])
    sent = {"w": np.zeros(3)}
    hub.channel("a").send("b", "t", sent)
    sent["w"][0] = 99
    assert hub.channel("b").recv("a", "t", timeout=1)["w"][0] == 0


def test_jobs_never_mix():
    hub = LocalHub(["a", "b"])
    hub.channel("a", "job-1").send("b", "x", 1)
    hub.channel("a", "job-2").send("b", "x", 2)
    assert hub.channel("b", "job-2").recv("a", "x", timeout=1) == 2
    with pytest.raises(PeerTimeoutError):
        hub.channel("b", "job-2").recv("a", "x", timeout=0.05)
    assert hub.channel("b", "job-1").recv("a", "x", timeout=1) == 1


def test_one_tag_is_first_in_first_out_and_tags_are_separate():
    hub = LocalHub(["a", "b"])
    sender = hub.channel("a")
    for i in range(3):
        sender.send("b", "n", i)
    sender.send("b", "other", "o")
    receiver = hub.channel("b")
    assert receiver.recv("a", "other", timeout=1) == "o"
    assert [receiver.recv("a", "n", timeout=1) for _ in range(3)] == [0, 1, 2]


def test_recv_any_broadcast_and_gather():
    hub = LocalHub(["arbiter", "c1", "c2"])
    hub.channel("arbiter").broadcast(["c1", "c2"], "model", [1.0, 2.0])
    for client in ("c1", "c2"):
        channel = hub.channel(client)
        channel.send("arbiter", "update", channel.recv("arbiter", "model", timeout=1) + [client])
    assert hub.channel("arbiter").gather(["c1", "c2"], "update", timeout=1) == {"c1": [1.0, 2.0, "c1"], "c2": [1.0, 2.0, "c2"]}
    hub.channel("c2").send("arbiter", "query", "q")
    assert hub.channel("arbiter").recv_any(["c1", "c2"], "query", timeout=1) == ("c2", "q")


def test_timeout_names_peer_and_tag():
    hub = LocalHub(["a", "b"])
    with pytest.raises(PeerTimeoutError, match="'a'.*'gradients'") as waited:
        hub.channel("b").recv("a", "gradients", timeout=0.05)
    assert (waited.value.peer, waited.value.tag) == ("a", "gradients")


def test_a_relays_default_timeout_applies_to_its_receives():
    """A node's prediction sets the node's timeout on its link; over the in-process hub a receive through it
    still waited the hub's 600 s."""
    hub = LocalHub(["a", "b"])
    relay = hub.channel("a").scoped("request-1")
    relay.default_timeout = 0.2
    started = time.monotonic()
    with pytest.raises(PeerTimeoutError, match="within 0.2 s"):
        relay.recv("b", "answer")
    assert time.monotonic() - started < 5


def test_unknown_peers_are_a_config_error():
    hub = LocalHub(["a", "b"])
    with pytest.raises(ConfigError, match="no peer 'zed'"):
        hub.channel("a").send("zed", "t", 1)
    with pytest.raises(ConfigError):
        hub.channel("a").recv("a", "t", timeout=0.05)


def test_bad_bytes_from_a_peer_fail_at_recv_naming_peer_and_tag():
    hub = LocalHub(["a", "b"])
    receiver = hub.channel("b")
    hub.mailboxes["b"].put("job", "a", "weights", codec.frame(b"\xc1"))
    with pytest.raises(ProtocolError) as bad:
        receiver.recv("a", "weights", timeout=1)
    assert (bad.value.peer, bad.value.tag) == ("a", "weights")


def test_every_message_is_audited_with_the_hash_of_its_bytes(tmp_path):
    hub = LocalHub(["a", "b"], audit_dir=tmp_path, keep_payloads=True)
    hub.channel("a", "job-9").send("b", "t", {"x": np.arange(3)})
    hub.channel("b", "job-9").recv("a", "t", timeout=1)
    (payload,) = hub.audits["a"].sent_payloads()
    sent, received = hub.audits["a"].entries(), hub.audits["b"].entries()
    assert [(e["party"], e["direction"], e["job"], e["peer"], e["tag"]) for e in sent] == [("a", "send", "job-9", "b", "t")]
    assert [(e["party"], e["direction"], e["job"], e["peer"], e["tag"]) for e in received] == [("b", "recv", "job-9", "a", "t")]
    assert sent[0]["sha256"] == received[0]["sha256"] == hashlib.sha256(payload).hexdigest()
    assert sent[0]["bytes"] == len(payload)
    np.testing.assert_array_equal(codec.decode(payload)["x"], np.arange(3))
    assert hub.audits["b"].sent_payloads() == []


def test_a_sender_over_its_backlog_quota_is_refused_and_the_receiver_told_once():
    hub = LocalHub(["a", "b", "c"])
    hub.mailboxes["b"] = Mailbox(backlog_messages=3)
    sender, receiver = hub.channel("a"), hub.channel("b")
    for i in range(3):
        sender.send("b", f"unread/{i}", i)
    with pytest.raises(PeerRefusedError, match="'a' already has 3 messages .* quota of 3 messages") as refused:
        sender.send("b", "unread/3", 3)
    assert (refused.value.peer, refused.value.tag) == ("b", "unread/3")
    hub.channel("c").send("b", "hello", "c is not a")  # the quota is per sender
    assert receiver.recv("c", "hello", timeout=1) == "c is not a"
    with pytest.raises(ProtocolError, match="refused on arrival: .*quota"):
        receiver.recv("a", "unread/0", timeout=1)
    assert receiver.recv("a", "unread/0", timeout=1) == 0
    sender.send("b", "unread/3", 3)  # reading made room
    assert hub.mailboxes["b"].backlog("a")[1] == 3


def test_deliveries_for_a_job_nobody_opened_are_refused():
    mailbox = Mailbox()
    with pytest.raises(Refused, match="job 'nobody' is not open"):
        mailbox.put("nobody", "a", "t", b"x")
    assert mailbox.backlog("a") == (0, 0)


def test_deliveries_for_a_job_not_open_are_remembered_per_sender_within_bounds():
    """What a job process knows of a peer that runs another job: the job and tag of its refused deliveries."""
    mailbox = Mailbox()
    mailbox.open_job("mine")
    for index in range(MAX_UNOPENED_PER_SENDER + 2):
        with pytest.raises(Refused):
            mailbox.put("theirs", "peer", f"tag-{index}", b"x")
    for index in range(MAX_UNOPENED_SENDERS + 5):
        with pytest.raises(Refused):
            mailbox.put("theirs", f"member-{index}", "t", b"x")
    remembered = mailbox.unopened()
    assert remembered["peer"] == [("theirs", f"tag-{i}") for i in range(2, MAX_UNOPENED_PER_SENDER + 2)]
    assert len(remembered) == MAX_UNOPENED_SENDERS


def test_audit_rows_name_their_party(tmp_path):
    hub = LocalHub(["a", "b"], audit_dir=tmp_path)
    hub.channel("a").send("b", "t", 1)
    hub.channel("b").recv("a", "t")
    assert [(e["party"], e["direction"]) for e in hub.audits["a"].entries()] == [("a", "send")]
    assert [(e["party"], e["direction"]) for e in hub.audits["b"].entries()] == [("b", "recv")]


def test_an_abort_after_an_error_names_the_member_that_went_silent_but_quotes_no_data():
    """The host of a job whose arbiter vanished read only "guest failed: PeerGoneError": not whom to look for."""
    hub = LocalHub(["guest", "host", "arbiter"])
    guest, host = hub.channel("guest"), hub.channel("host")
    guest.abort_after(PeerGoneError("no answer to pings for 60 s", peer="arbiter", address="10.0.0.7:7003", tag="t"), "train")
    with pytest.raises(PeerAbortedError) as told:
        host.recv("guest", "anything", timeout=5)
    assert "train failed: PeerGoneError from 'arbiter'" in str(told.value)
    assert "10.0.0.7" not in str(told.value) and "60 s" not in str(told.value)
    assert "alice-1234" not in for_peer(DataError("duplicate id 'alice-1234' in customers.csv"))


def test_an_abort_is_not_sent_back_to_peers_that_aborted_themselves(tmp_path):
    """A peer that gave up may have exited; retrying it would delay this party's own failure report."""
    hub = LocalHub(["a", "b", "c"], audit_dir=tmp_path)
    hub.channel("b").abort("step train failed at b (DataError)")
    hub.channel("a").abort("step train failed at a (PeerAbortedError)")
    told = [(e["peer"], e["tag"]) for e in hub.audits["a"].entries() if e["direction"] == "send"]
    assert told == [("c", "isthmus/abort")]


def test_a_job_kept_open_drops_abort_notices_and_keeps_its_messages():
    hub = LocalHub(["a", "b"])
    service, peer = hub.channel("a", "svc"), hub.channel("b", "svc")
    peer.send("a", "ask", 1)
    peer.abort("stop")  # before keep_open: forgotten then
    service.keep_open()
    peer.abort("stop again")
    peer.send("a", "ask", 2)
    assert [service.recv("b", "ask", timeout=1) for _ in range(2)] == [1, 2]
    assert service._mailbox().quitters("svc") == set()
    training = hub.channel("a", "train")  # any other job still ends on an abort
    hub.channel("b", "train").abort("stop")
    with pytest.raises(PeerAbortedError, match="stop"):
        training.recv("b", "x", timeout=1)


def test_in_a_job_kept_open_a_scopes_abort_ends_only_that_senders_receives_in_that_scope():
    """One request of a service failing at one member (a prediction at a host) ends that request, not the
    requests of others nor the member's next one."""
    hub = LocalHub(["a", "b", "c"])
    service = hub.channel("a", "svc")
    service.keep_open()
    b, c = hub.channel("b", "svc"), hub.channel("c", "svc")
    b.scoped("serve/1").scoped("step").abort("scoring failed")
    with pytest.raises(PeerAbortedError, match="b: scoring failed"):
        service.scoped("serve/1").recv("b", "step/ready", timeout=1)
    with pytest.raises(PeerAbortedError):  # also to a receive from several, one of them b
        service.scoped("serve/1/step").recv_any(["c", "b"], "ready", timeout=1)
    c.scoped("serve/1/step").send("a", "ready", "c's")
    b.scoped("serve/2").send("a", "ready", "b's next")
    b.send("a", "ask", "b's own")
    assert service.scoped("serve/1/step").recv("c", "ready", timeout=1) == "c's"
    assert service.scoped("serve/2").recv("b", "ready", timeout=1) == "b's next"
    assert service.recv("b", "ask", timeout=1) == "b's own"


def test_in_a_job_kept_open_what_a_member_sent_before_its_scopes_abort_is_read_before_the_abort():
    """A host that says why it refuses a prediction and then ends it: the guest reads the reason, then the
    notice. Read the other way round, the notice came in place of the reason, which waited for ever."""
    hub = LocalHub(["a", "b"])
    service = hub.channel("a", "svc")
    service.keep_open()
    request = hub.channel("b", "svc").scoped("serve/1")
    request.send("a", "refused", {"error": "unknown id"})
    request.abort("refused the prediction")
    assert service.scoped("serve/1").recv("b", "refused", timeout=1) == {"error": "unknown id"}
    with pytest.raises(PeerAbortedError, match="b: refused the prediction"):
        service.scoped("serve/1").recv("b", "refused", timeout=1)
    training = hub.channel("a", "train")  # in any other job, an abort still ends every receive at once
    hub.channel("b", "train").send("a", "x", 1)
    hub.channel("b", "train").abort("stop")
    with pytest.raises(PeerAbortedError, match="stop"):
        training.recv("b", "x", timeout=1)


def test_a_closed_scope_drops_what_waits_in_it_and_what_arrives_in_it_later():
    """What a party no longer reads must not wait for ever in a job that never ends, held against its
    sender's quota (the guest's release of a prediction the host refused; a late answer)."""
    hub = LocalHub(["a", "b"])
    service = hub.channel("a", "svc")
    service.keep_open()
    peer = hub.channel("b", "svc")
    peer.scoped("serve/1").send("a", "scores", np.arange(3))
    peer.scoped("serve/1").scoped("step").send("a", "x", 1)
    peer.scoped("serve/2").send("a", "scores", "kept")
    service.scoped("serve/1").close()
    peer.scoped("serve/1").send("a", "finish", 2)  # after the close: discarded on arrival
    peer.scoped("serve/1").abort("late")
    assert hub.mailboxes["a"].backlog("b") == (len(codec.encode("kept")), 1)
    assert service.scoped("serve/2").recv("b", "scores", timeout=1) == "kept"
    assert hub.mailboxes["a"].backlog("b") == (0, 0)
    assert hub.mailboxes["a"]._jobs["svc"].scope_aborts.get("b", {}) == {}
    with pytest.raises(PeerTimeoutError):
        service.scoped("serve/1").recv("b", "finish", timeout=0.1)
    for i in range(MAX_CLOSED_SCOPES + 10):  # the latest closed scopes are remembered, no more
        service.scoped(f"serve/x{i}").close()
    assert len(hub.mailboxes["a"]._jobs["svc"].closed_scopes) == MAX_CLOSED_SCOPES


def test_a_member_cannot_pile_up_scope_aborts_in_a_job_kept_open():
    hub = LocalHub(["a", "b"])
    service = hub.channel("a", "svc")
    service.keep_open()
    peer = hub.channel("b", "svc")
    for i in range(MAX_SCOPE_ABORTS + 10):
        peer.scoped(f"serve/{i}").abort("x")
    assert list(hub.mailboxes["a"]._jobs["svc"].scope_aborts["b"]) == [f"serve/{i}" for i in range(10, MAX_SCOPE_ABORTS + 10)]


def test_a_scopes_abort_ends_the_whole_job_in_any_other_job():
    hub = LocalHub(["a", "b"])
    hub.channel("b", "train").scoped("step").abort("step failed")
    with pytest.raises(PeerAbortedError, match="step failed"):
        hub.channel("a", "train").recv("b", "other/x", timeout=1)
