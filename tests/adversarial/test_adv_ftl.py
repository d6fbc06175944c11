"""A hostile FTL peer: every value it sends the guest is checked, and the failure names it and the tag.

The hostile host plays the protocol honestly up to one message, which it replaces: a masked gradient of
the wrong shape, one under the guest's own key... The guest must stop with a ProtocolError naming
``host`` and the message's tag, before using anything of it.
"""

from __future__ import annotations

import numpy as np
import pytest

from ftl_helpers import QUICK, run_ftl
from isthmus.algorithms.hetero_ftl import terms
from isthmus.algorithms.hetero_ftl.exchange import MASKED, RAW, TERMS, Link
from isthmus.errors import ProtocolError
from isthmus.transport.local import LocalHub

D = QUICK["representation"]


def hostile_host(attack):
    """A host that exchanges keys and terms honestly, then sends ``attack(link, n)`` instead of its masked gradient."""
    def play(hub: LocalHub):
        link = Link(hub.channel("host"), "guest", True, QUICK["key_bits"])
        n = QUICK["batch_size"]
        theirs = link.swap_terms(terms.host_terms(np.zeros((n, D))), terms.guest_shapes(n, D))
        attack(link, n, theirs)
    return play


def wrong_shape(link, n, theirs):
    masked, _ = theirs["u_a"][: n - 1].ravel().masked()
    link.channel.send("guest", MASKED, {"u_b": masked})


def under_its_own_key(link, n, theirs):
    link.channel.send("guest", MASKED, {"u_b": link.encrypt(np.zeros(n * D), link.public_key)})


def extra_field(link, n, theirs):
    masked, _ = theirs["u_a"].ravel().masked()
    link.channel.send("guest", MASKED, {"u_b": masked, "phi": masked})


def forged_decryption(link, n, theirs):
    """Honest masked gradient, then a decryption of the guest's gradients that is not a list of residues."""
    masked, _ = theirs["u_a"].ravel().masked()
    link.channel.send("guest", MASKED, {"u_b": masked})
    link.channel.recv("guest", MASKED)
    link.channel.send("guest", RAW, {"phi": [-1] * D, "u_a": [0] * (n * D), "loss": [0]})


@pytest.mark.parametrize("attack, tag, words", [
    (wrong_shape, MASKED, "u_b"),
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
        link = Link(hub.channel("host"), "guest", True, QUICK["key_bits"])
        n = QUICK["batch_size"]
        hub.channel("host").send("guest", TERMS, {"u_b": np.zeros(n * D), "m": np.zeros(D * D)})
        del link

    hub = LocalHub(["guest", "host"])
    with pytest.raises(AssertionError) as failed:
        run_ftl(tmp_path, {}, roles={"host": lambda: host(hub)}, hub=hub)
    assert isinstance(failed.value.__cause__, ProtocolError) and TERMS in str(failed.value.__cause__)
