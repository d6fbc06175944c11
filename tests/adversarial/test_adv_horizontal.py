"""A malicious aggregator against secure aggregation and differential privacy, in process.

The aggregator runs the honest server and then bends what it forwards: it withholds the shares a
client needs, shows it too few or substituted keys, lowers a threshold, shows clients different
survivor lists, or asks for a plain round or weaker noise than the job file says. Each time the
client must abort with an error naming the aggregator before anything that depends on its input
leaves it. (The same attacks over processes and mutual TLS: test_adv_horizontal_job.py.)
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from conftest import run_parties
from sklearn.datasets import load_breast_cancer, make_classification

from isthmus.crypto.secagg import generate_keypair, sign
from isthmus.errors import IsthmusError, ProtocolError
from isthmus.horizontal import DPConfig, LinearClient, LinearModel
from isthmus.horizontal.participant import ClientProtocol
from isthmus.horizontal.partition import iid
from isthmus.horizontal.secure_sum import (
    Keyring,
    SecAggClient,
    SecAggConfig,
    SecAggServer,
    SecAggTerms,
    advert_message,
)
from isthmus.horizontal.simulation import in_memory_terms
from isthmus.transport.local import LocalHub
from isthmus.algorithms.homo_secureboost.aggregator import HomoSecureBoostAggregator
from isthmus.algorithms.homo_secureboost.client import HomoSecureBoostClient
from isthmus.algorithms.homo_secureboost.rounds import AggregatorRounds
from isthmus.tree.params import BoostParams

NAMES = [f"c{i}" for i in range(6)]
VICTIM = "c0"
ABORTED = "secure sum aborted: aggregator 'aggregator'"


def one_sum(length=16, names=NAMES, config=None):
    """Honest clients and the (about to misbehave) server of one secure sum, keys made in memory."""
    config = config or SecAggConfig()
    keyrings = Keyring.generate(names)
    quorum = config.quorum(len(names))
    terms = {name: SecAggTerms(keyrings[name], config, quorum, "job") for name in names}
    session = secrets.token_bytes(16)
    clients = {name: SecAggClient(name, terms[name], session, "round 1") for name in names}
    server = SecAggServer(terms[names[0]].public(), session, "round 1", length)
    inputs = {name: np.full(length, 1000 + i, dtype=np.uint64) for i, name in enumerate(names)}
    return clients, server, inputs


def to_masking(clients, server):
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    return server.route_shares({name: clients[name].share_keys(r) for name, r in requests.items()})


# --- isolating one client -------------------------------------------------------------------------


def test_a_client_given_no_shares_aborts_before_sending_anything_masked():
    """The attack: forward no shares to the victim, so it pair-masks with nobody; name it a survivor and
    its self mask alone comes off. The victim refuses to mask at all."""
    clients, server, inputs = one_sum()
    requests = to_masking(clients, server)
    requests[VICTIM]["shares"] = {}
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*shares of 0 peers; this client masks only with at least 4"):
        clients[VICTIM].masked_input(requests[VICTIM], inputs[VICTIM].copy())


def test_shares_from_one_peer_fewer_than_the_quorum_are_refused_and_exactly_the_quorum_accepted():
    clients, server, inputs = one_sum()
    quorum = clients[VICTIM].terms.quorum
    assert (quorum.minimum, quorum.peers) == (5, 4)  # 6 clients, dropout tolerance 0.3
    requests = to_masking(clients, server)
    shares = requests[VICTIM]["shares"]
    kept = dict(list(shares.items())[: quorum.peers - 1])
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*shares of 3 peers"):
        clients[VICTIM].masked_input({"shares": kept}, inputs[VICTIM].copy())
    enough = dict(list(requests["c1"]["shares"].items())[: quorum.peers])
    assert clients["c1"].masked_input({"shares": enough}, inputs["c1"].copy())["masked"].shape == (16,)


def test_a_client_shown_too_few_keys_aborts_before_sharing_its_secrets():
    clients, server, _ = one_sum()
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    roster = requests[VICTIM]["neighbours"]
    requests[VICTIM]["neighbours"] = {name: roster[name] for name in list(roster)[:2]}
    requests[VICTIM]["threshold"] = SecAggConfig().threshold(3)
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*keys of 2 peers"):
        clients[VICTIM].share_keys(requests[VICTIM])


# --- substituted or invented keys -----------------------------------------------------------------


def test_a_substituted_key_makes_the_client_abort():
    """Man in the middle: the aggregator shows the victim its own key in place of c1's mask key."""
    clients, server, _ = one_sum()
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    requests[VICTIM]["neighbours"]["c1"]["s_pk"] = generate_keypair()[1]
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*keys it forwarded for 'c1' do not carry that client's"):
        clients[VICTIM].share_keys(requests[VICTIM])


def test_keys_of_a_party_that_is_no_client_of_the_job_are_refused():
    """The aggregator invents a client (or poses as one with its own signing key): not among the pinned keys."""
    clients, server, _ = one_sum()
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    own_key = Keyring.generate(["aggregator"])["aggregator"]
    c_pk, s_pk = generate_keypair()[1], generate_keypair()[1]
    signature = own_key.sign(advert_message("job", "round 1", clients[VICTIM].session, "aggregator", c_pk, s_pk))
    requests[VICTIM]["neighbours"]["aggregator"] = {"x": 99, "c_pk": c_pk, "s_pk": s_pk, "signature": signature}
    requests[VICTIM]["threshold"] = SecAggConfig().threshold(len(requests[VICTIM]["neighbours"]) + 1)
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*'aggregator' do not carry"):
        clients[VICTIM].share_keys(requests[VICTIM])


def test_an_advertisement_from_another_session_does_not_verify():
    clients, server, _ = one_sum()
    adverts = {name: c.advertise() for name, c in clients.items()}
    other, _, _ = one_sum()  # same names, new keys and session: a replay from an earlier round
    adverts["c1"] = other["c1"].advertise()
    server.start(adverts)
    assert "not signed with this client's pinned key" in server.rejected["c1"]


def test_a_lowered_share_threshold_is_refused():
    clients, server, _ = one_sum()
    requests = server.start({name: c.advertise() for name, c in clients.items()})
    requests[VICTIM]["threshold"] = 2  # two colluders could then open the victim's secrets
    with pytest.raises(ProtocolError, match="threshold 2 differs from this client's: 5 of 6"):
        clients[VICTIM].share_keys(requests[VICTIM])


# --- inconsistent survivor lists --------------------------------------------------------------------


def masked_and_listed(clients, server, inputs):
    requests = to_masking(clients, server)
    masked = {name: clients[name].masked_input(r, inputs[name].copy()) for name, r in requests.items()}
    return server.collect_masked(masked)


def test_clients_shown_different_survivor_lists_refuse_to_unmask():
    """The aggregator tells the victim that c1 dropped (to get c1's key shares from it) while telling the
    others c1 survived (to get c1's seed shares): both secrets of c1 would give it c1's input."""
    clients, server, inputs = one_sum()
    requests = masked_and_listed(clients, server, inputs)
    all_names = requests[VICTIM]["survivors"]
    without_c1 = [name for name in all_names if name != "c1"]
    signed = {VICTIM: clients[VICTIM].confirm({"survivors": without_c1})["signature"]}
    signed |= {name: clients[name].confirm({"survivors": all_names})["signature"] for name in all_names[1:]}
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*signature of 'c1' is not on the survivor list"):
        clients[VICTIM].unmask({"signatures": signed})
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*signature of 'c0' is not on the survivor list"):
        clients["c2"].unmask({"signatures": signed})
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*only 1 clients signed the survivor list"):
        clients["c3"].unmask({"signatures": {"c3": signed["c3"]}})  # each group shown only its own signatures


def test_a_survivor_list_too_short_or_without_the_client_is_not_signed():
    clients, server, inputs = one_sum()
    survivors = masked_and_listed(clients, server, inputs)[VICTIM]["survivors"]
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*named 4 survivors.*at least 5"):
        clients[VICTIM].confirm({"survivors": survivors[:4]})
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*this client not among them"):
        clients["c1"].confirm({"survivors": [name for name in survivors if name != "c1"]})


def test_a_survivor_that_never_shared_with_the_client_is_not_signed():
    """One-sided masks: the aggregator withholds c1's shares from the victim but names c1 a survivor."""
    clients, server, inputs = one_sum()
    requests = to_masking(clients, server)
    del requests[VICTIM]["shares"]["c1"]
    masked = {name: clients[name].masked_input(r, inputs[name].copy()) for name, r in requests.items()}
    survivors = server.collect_masked(masked)[VICTIM]["survivors"]
    with pytest.raises(ProtocolError, match=f"{ABORTED}.*never received: \\['c1'\\]"):
        clients[VICTIM].confirm({"survivors": survivors})


def test_an_honest_aggregator_drops_a_client_whose_advertisement_is_forged():
    """A client's bad signature would make every honest client abort: the aggregator leaves it out first."""
    clients, server, _ = one_sum()
    adverts = {name: c.advertise() for name, c in clients.items()}
    adverts["c5"]["signature"] = sign(Keyring.generate(["x"])["x"].signing_key, b"something else")
    requests = server.start(adverts)
    assert "c5" in server.rejected and set(requests) == set(NAMES) - {"c5"}


# --- settings the aggregator asserts ----------------------------------------------------------------


def fitted_protocols(dp=None, secure=True):
    X, y = make_classification(300, 4, random_state=0)
    model = LinearModel(4)
    names = NAMES[:3]
    terms, keyring = in_memory_terms(names, len(names), secure=secure, dp=dp)
    protocols = {
        name: ClientProtocol(name, LinearClient(model, X[rows], y[rows], seed=i), terms[name])
        for i, (name, rows) in enumerate(zip(names, iid(300, 3)))
    }
    return protocols, keyring, model


def test_a_client_under_secure_aggregation_refuses_to_send_its_update_in_the_clear():
    protocols, _, model = fitted_protocols()
    request = {"op": "fit", "round": 1, "parameters": model.initial_parameters(), "config": {}}
    with pytest.raises(ProtocolError, match="without secure aggregation; this client's job file sets "
                                            "secure_aggregation: true"):
        protocols[VICTIM].handle(request)
    assert protocols[VICTIM].rounds_fitted == 0  # refused before training


def test_a_client_refuses_another_fixed_point():
    protocols, _, model = fitted_protocols()
    request = {"op": "fit", "round": 1, "parameters": model.initial_parameters(), "config": {},
               "secure": {"session": secrets.token_bytes(16), "fractional_bits": 8}}
    with pytest.raises(ProtocolError, match="fractional_bits 8 differs from this client's job file \\(24\\)"):
        protocols[VICTIM].handle(request)


DP = DPConfig(clip_norm=1.0, noise_multiplier=1.2)


@pytest.mark.parametrize("setting, value, message", [
    ("noise_std", DP.noise_std(3) / 100, "noise_std .* differs"),  # 100 times less noise
    ("noise_std", DP.noise_std(30), "noise_std .* differs"),  # sized for more clients than the quorum
    ("clip_norm", 50.0, "clip_norm 50.0 differs"),
    ("noise_multiplier", 0.01, "noise_multiplier 0.01 differs"),
    ("dp", None, "dp settings \\(none\\) differ"),
])
def test_a_client_refuses_dp_settings_other_than_its_job_files(setting, value, message):
    protocols, keyring, model = fitted_protocols(dp=DP)
    names = list(protocols)
    session = secrets.token_bytes(16)
    secure = {"session": session, "fractional_bits": 24}
    replies = {n: p.handle({"op": "fit", "round": 1, "parameters": model.initial_parameters(), "config": {},
                            "secure": secure}) for n, p in protocols.items()}
    terms = protocols[VICTIM].terms.secagg.public()
    server = SecAggServer(terms, session, "hfl/fit/1", 4 + 1 + 1)
    requests = server.start(replies)
    requests = server.route_shares({n: protocols[n].handle({"op": "share_keys", "round": 1, **requests[n]})
                                    for n in names})
    dp = {"clip_norm": DP.clip_norm, "noise_multiplier": DP.noise_multiplier, "noise_std": DP.noise_std(3)}
    honest = {"op": "masked_input", "round": 1, **requests[VICTIM], "metric_keys": [], "summands": 3, "dp": dp}
    assert terms.quorum.minimum == 3 and protocols[VICTIM].handle(dict(honest))["masked"].size == 6
    bent = dict(honest, dp=None if setting == "dp" else {**dp, setting: value})
    with pytest.raises(ProtocolError, match=message):
        protocols["c1"].handle({**bent, **requests["c1"]})


# --- horizontal SecureBoost runs on the same secure sums ---------------------------------------------


def test_horizontal_secureboost_clients_abort_a_sum_whose_shares_are_withheld(monkeypatch):
    """The aggregator withholds every share from client-1 in the first sum: client-1 refuses to mask,
    leaves the job with the abort as the reason, and the others finish without it."""
    X, y = load_breast_cancer(return_X_y=True)
    names = [f"client-{i}" for i in range(1, 5)]
    parts = dict(zip(names, np.array_split(np.arange(len(y)), 4)))
    honest_route = SecAggServer.route_shares

    def route_shares(server, replies):
        requests = honest_route(server, replies)
        if server.label.startswith("hfl/init/") and "client-1" in requests:  # the first secure sum
            requests["client-1"]["shares"] = {}
        return requests

    monkeypatch.setattr(SecAggServer, "route_shares", route_shares)
    terms, keyring = in_memory_terms(names, len(names))
    hub = LocalHub([*names, "aggregator"])
    aggregator = HomoSecureBoostAggregator(BoostParams(n_trees=1, max_depth=2), bins=8, keyring=keyring,
                                           round_timeout=10.0)
    roles = {"aggregator": lambda: aggregator.fit(hub.channel("aggregator"), names)}

    def client(name):
        try:
            return HomoSecureBoostClient(X[parts[name]], y[parts[name]], terms=terms[name].secagg,
                                         timeout=30).serve(hub.channel(name))
        except IsthmusError as exc:
            return exc

    roles |= {name: lambda name=name: client(name) for name in names}
    outcomes = run_parties(roles)
    left = aggregator.history_["left"]
    assert list(left) == ["client-1"] and ABORTED in left["client-1"] and "shares of 0 peers" in left["client-1"]
    assert aggregator.history_["finished_with"] == names[1:]
    assert outcomes["client-2"].to_dict() == outcomes["aggregator"].to_dict()
    assert "ended the job without a model: left the job" in str(outcomes["client-1"])  # told, not left waiting


def test_horizontal_secureboost_clients_sign_no_sum_over_other_clients_than_the_first(monkeypatch, caplog):
    """The aggregator leaves client-2's masked counts out of the first refinement, a live client made to
    look dropped: the parts' counts over the other three, less their cells' counts over all four (the
    init sum), would be client-2's counts in those cells. Its clients sign no survivor list but the first
    sum's, so that sum is never unmasked; the aggregator recovers only sums over all four."""
    X, y = load_breast_cancer(return_X_y=True)
    names = [f"client-{i}" for i in range(1, 5)]
    parts = dict(zip(names, np.array_split(np.arange(len(y)), 4)))
    honest_collect, honest_finish = SecAggServer.collect_masked, SecAggServer.finish
    recovered = []

    def collect_masked(server, replies):
        if server.label.startswith("hfl/refine/"):
            replies = {name: reply for name, reply in replies.items() if name != "client-2"}
        return honest_collect(server, replies)

    def finish(server, replies):
        recovered.append(server.survivors)
        return honest_finish(server, replies)

    monkeypatch.setattr(SecAggServer, "collect_masked", collect_masked)
    monkeypatch.setattr(SecAggServer, "finish", finish)
    monkeypatch.setattr(AggregatorRounds, "_all_members_in", lambda *args: None)  # it does not stop itself
    terms, keyring = in_memory_terms(names, len(names))
    hub = LocalHub([*names, "aggregator"])
    aggregator = HomoSecureBoostAggregator(BoostParams(n_trees=1, max_depth=2), bins=8, keyring=keyring,
                                           round_timeout=10.0)

    def settled(role):
        try:
            return role()
        except IsthmusError as exc:
            return exc

    roles = {"aggregator": lambda: settled(lambda: aggregator.fit(hub.channel("aggregator"), names))}
    roles |= {name: lambda name=name: settled(lambda: HomoSecureBoostClient(
        X[parts[name]], y[parts[name]], terms=terms[name].secagg, timeout=30).serve(hub.channel(name)))
        for name in names}
    with caplog.at_level("WARNING", logger="isthmus.tree.homo"):
        outcomes = run_parties(roles)
    assert recovered == [names]  # the init sum only
    assert "only 0 clients signed the survivor list" in str(outcomes["aggregator"])
    refusals = [r.getMessage() for r in caplog.records if "consistency" in r.getMessage()]
    assert len(refusals) == 3 and all("not over the clients of every earlier sum" in r for r in refusals), refusals


def test_a_client_masks_once_and_never_after_aborting():
    """Asked to mask again (with other peers), a client would give two maskings of one input."""
    clients, server, inputs = one_sum()
    requests = to_masking(clients, server)
    clients[VICTIM].masked_input(requests[VICTIM], inputs[VICTIM].copy())
    with pytest.raises(ProtocolError, match="masked_input out of order in this secure sum \\(expected consistency\\)"):
        clients[VICTIM].masked_input(requests[VICTIM], inputs[VICTIM].copy())
    with pytest.raises(ProtocolError, match="expected nothing more"):  # the failed stage ended the sum for it
        clients[VICTIM].confirm({"survivors": list(NAMES)})


def test_a_client_whose_model_fails_tells_the_aggregator_only_the_error_class():
    """The error of a client's own model may quote its rows; only the class may reach the aggregator."""
    from conftest import run_parties

    from isthmus.horizontal import FedAvg, LinearClient, LinearModel, run_aggregator, run_client
    from isthmus.horizontal.simulation import in_memory_terms
    from isthmus.transport.local import LocalHub

    class Leaky(LinearClient):
        def fit(self, parameters, config):
            raise ValueError("customer 790512-1234567 has income 'n/a-48213x'")

    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    model = LinearModel(3)
    clients = {n: (Leaky if n == "c" else LinearClient)(model, rng.normal(size=(40, 3)), rng.integers(0, 2, 40).astype(float))
               for n in names}
    hub = LocalHub(["aggregator", *names])
    terms, keyring = in_memory_terms(names, len(names), secure=False)
    roles = {n: (lambda n=n: run_client(hub.channel(n), "aggregator", clients[n], terms=terms[n], idle_timeout=30))
             for n in names}
    roles["aggregator"] = lambda: run_aggregator(hub.channel("aggregator"), names, FedAvg(), 1, secure=False,
                                                 keyring=keyring, round_timeout=10, min_clients=2)
    result = run_parties(roles)["aggregator"]
    reason = result.history[0].left_out["c"]
    assert "ValueError" in reason and "790512" not in reason and "n/a-48213x" not in reason
