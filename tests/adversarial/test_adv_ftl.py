"""A hostile FTL peer: every value it sends the guest is checked, and the failure names it and the tag;
and a curious host, which must not solve its decrypted weight gradient for the per-row gradients.

The hostile host plays the protocol honestly up to one message, which it replaces: a masked weight
gradient of the wrong length, one under its own key instead of the guest's, an extra field, a forged
decryption, plaintext terms in an encrypted job. The guest must stop with a ProtocolError naming
``host`` and the message's tag, before using anything of it.
"""

from __future__ import annotations

import numpy as np
import pytest

from ftl_helpers import QUICK, run_ftl
from isthmus.algorithms.hetero_ftl import nets, terms
from isthmus.algorithms.hetero_ftl.exchange import MASKED, RAW, TERMS, Link
from isthmus.errors import ProtocolError
from isthmus.transport.local import LocalHub

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


def test_a_curious_host_cannot_solve_its_weight_gradient_for_the_per_row_gradients(tmp_path, monkeypatch):
    """The host decrypts J^T g: its weight gradient, P sums over the batch of the n x d per-row gradients g,
    which carry the guest's labels (-y_i Phi / 2). Batches of 10 shared rows (n d = 40 < P = 84) gave it g
    exactly, by least squares; every batch now holds more per-row values than sums."""
    from isthmus.algorithms.hetero_ftl import host

    seen = []
    parameter_gradient = host.parameter_gradient

    def curious(jacobian, output_gradient):
        seen.append((jacobian, np.asarray(output_gradient, dtype=float).ravel()))
        return parameter_gradient(jacobian, output_gradient)

    monkeypatch.setattr(host, "parameter_gradient", curious)
    run_ftl(tmp_path, {"protection": "plain", "batch_size": 10})
    assert seen
    for jacobian, g in seen:
        solved = np.linalg.lstsq(jacobian.T, jacobian.T @ g, rcond=None)[0]
        assert np.linalg.norm(solved - g) > 0.1 * np.linalg.norm(g), "the host solved for the per-row gradients"
        assert jacobian.shape[0] > jacobian.shape[1]
