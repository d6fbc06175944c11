"""A hostile FTL peer: every value it sends the other is checked, and the failure names it and the tag.

The hostile host plays the protocol honestly up to one message, which it replaces: a masked weight
gradient of the wrong length, one under its own key instead of the guest's, an extra field, a forged
decryption, plaintext terms in an encrypted job, held-out terms of the wrong shape. The guest must stop
with a ProtocolError naming ``host`` and the message's tag, before using anything of it. The host
likewise refuses a malformed gradient of the guest's, or a choice of candidate that is no index of the job's.
"""

from __future__ import annotations

import numpy as np
import pytest

from ftl_helpers import QUICK, party, run_ftl, tables
from isthmus.algorithms.hetero_ftl import nets, selection, terms
from isthmus.algorithms.hetero_ftl.exchange import MASKED, RAW, TERMS, Link
from isthmus.algorithms.registry import algorithm
from isthmus.errors import ProtocolError
from isthmus.transport.local import LocalHub

FTL = algorithm("hetero_ftl")
D = QUICK["representation"]
#: The honest host's weight count: 5 columns, one hidden layer, D outputs.
WEIGHTS = nets.flat_parameters(nets.build(5, QUICK["hidden"], D, 0))


def hostile_host(attack):
    """A host that exchanges keys and terms honestly, then sends ``attack(link, n)`` instead of its masked gradient."""
    def play(hub: LocalHub):
        link = Link(hub.channel("host"), "guest", True, QUICK["key_bits"], WEIGHTS)
        n = QUICK["batch_size"]
        theirs = link.swap_terms(terms.host_terms(np.zeros((n, D))), terms.guest_shapes(n, D))
        attack(link, n, theirs)
    return play


def wrong_shape(link, n, theirs):
    masked, _ = theirs["u_a"].ravel()[: WEIGHTS - 1].masked()
    link.channel.send("guest", MASKED, {"theta": masked})


def under_its_own_key(link, n, theirs):
    link.channel.send("guest", MASKED, {"theta": link.encrypt(np.zeros(WEIGHTS), link.public_key)})


def extra_field(link, n, theirs):
    masked, _ = theirs["u_a"].ravel()[:WEIGHTS].masked()
    link.channel.send("guest", MASKED, {"theta": masked, "phi": masked})


def forged_decryption(link, n, theirs):
    """Honest masked gradient, then a decryption of the guest's gradients that is not a list of residues."""
    masked, _ = theirs["u_a"].ravel()[:WEIGHTS].masked()
    link.channel.send("guest", MASKED, {"theta": masked})
    link.channel.recv("guest", MASKED)
    link.channel.send("guest", RAW, {"theta": [-1] * link.peer_parameters, "loss": [0]})


@pytest.mark.parametrize("attack, tag, words", [
    (wrong_shape, MASKED, "theta"),
    (under_its_own_key, MASKED, "different public key"),
    (extra_field, MASKED, "phi"),
    (forged_decryption, RAW, "integers in [0, n)"),
])
def test_a_malformed_message_from_the_host_stops_the_guest_naming_it(tmp_path, attack, tag, words):
    hub = LocalHub(["guest", "host"])
    with pytest.raises(AssertionError) as failed:
        run_ftl(tmp_path, {}, roles={"host": lambda: hostile_host(attack)(hub)}, hub=hub)
    error = failed.value.__cause__
    assert isinstance(error, ProtocolError), repr(error)
    assert "host" in str(error) and tag in str(error) and words in str(error), str(error)


def test_plaintext_terms_in_an_encrypted_job_are_refused(tmp_path):
    def host(hub):
        link = Link(hub.channel("host"), "guest", True, QUICK["key_bits"], WEIGHTS)
        n = QUICK["batch_size"]
        hub.channel("host").send("guest", TERMS, {"u_b": np.zeros(n * D), "m": np.zeros(D * D)})
        del link

    hub = LocalHub(["guest", "host"])
    with pytest.raises(AssertionError) as failed:
        run_ftl(tmp_path, {}, roles={"host": lambda: host(hub)}, hub=hub)
    assert isinstance(failed.value.__cause__, ProtocolError) and TERMS in str(failed.value.__cause__)


def test_a_malformed_masked_gradient_from_the_guest_stops_the_host_naming_it(tmp_path):
    """The host checks the guest's values the same way (the exchange code is shared, the shapes are its own)."""
    def guest(hub):
        link = Link(hub.channel("guest"), "host", True, QUICK["key_bits"], WEIGHTS)
        n = QUICK["batch_size"]
        theirs = link.swap_terms(terms.guest_terms(np.zeros(D), np.zeros((n, D)), np.ones(n)), terms.host_shapes(n, D))
        masked, _ = theirs["u_b"].ravel().masked()  # n * D values under the host's key, not the host's weight count
        link.channel.send("host", MASKED, {"theta": masked, "loss": masked[:1]})

    hub = LocalHub(["guest", "host"])
    with pytest.raises(AssertionError) as failed:
        run_ftl(tmp_path, {}, roles={"guest": lambda: guest(hub)}, hub=hub)
    error = failed.value.__cause__
    assert isinstance(error, ProtocolError) and "guest" in str(error) and MASKED in str(error), repr(error)


class Played(Exception):
    """Raised by a hostile party once it has sent its one bad message: it plays no further."""


CHOOSE = {"guest_alignment_weights": [1.0, 0.0], "epochs": 1, "protection": "plain"}


def error_of_the_honest_party(tmp_path, hostile_role: str) -> Exception:
    """Runs a job choosing between two candidates in which ``hostile_role`` plays honestly until a patched
    step of it raises :class:`Played`; returns what stopped the other party."""
    hub = LocalHub(["guest", "host"])
    g, h, ov_g, ov_h, _ = tables(guest_rows=300, host_rows=260, overlap=60)
    table, overlap = {"guest": (g, ov_g), "host": (h, ov_h)}[hostile_role]
    opts = FTL.Options(**{**QUICK, **CHOOSE})

    def play():
        try:
            return FTL.fit(party(hostile_role, hub, table, overlap, tmp_path / hostile_role), opts)
        except Played:
            return None

    with pytest.raises(AssertionError) as failed:
        run_ftl(tmp_path, CHOOSE, (g, h, ov_g, ov_h, None), roles={hostile_role: play}, hub=hub)
    return failed.value.__cause__


@pytest.mark.parametrize("choice", [2, -1, True, 1.0, "1", [0]])
def test_a_choice_the_guest_could_not_have_made_stops_the_host_naming_it(tmp_path, monkeypatch, choice):
    """Only an index of the job's own candidates is taken (not a bool, float, string or list)."""
    def send(link, losses):
        link.channel.send(link.peer, selection.CHOICE, choice)
        raise Played

    monkeypatch.setattr(selection, "send_choice", send)
    error = error_of_the_honest_party(tmp_path, "guest")
    assert isinstance(error, ProtocolError) and "guest" in str(error) and selection.CHOICE in str(error), repr(error)
    assert "candidate must be an integer in [0, 1]" in str(error)


def test_held_out_terms_of_the_wrong_shape_stop_the_guest_before_it_scores_them(tmp_path, monkeypatch):
    """Terms for 40 rows where the fold holds out 30."""
    def replay(link, u_held):
        link.swap_terms(terms.host_terms(np.zeros((40, D))), {})
        raise Played

    monkeypatch.setattr(selection, "host_terms", replay)
    error = error_of_the_honest_party(tmp_path, "host")
    assert isinstance(error, ProtocolError) and "host" in str(error) and TERMS in str(error), repr(error)
