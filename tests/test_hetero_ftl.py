"""hetero_ftl over the in-process channel: the encrypted protocol computes exactly the plaintext
gradients, labels the host's unseen rows well, writes them at the host only, and refuses bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ftl_helpers import QUICK, ROSTER, run_ftl, tables
from isthmus.algorithms.hetero_ftl import terms, training
from isthmus.algorithms.hetero_ftl.exchange import times
from isthmus.algorithms.registry import algorithm
from isthmus.errors import ConfigError, DataError

FTL = algorithm("hetero_ftl")


def autograd_loss_gradients(phi, u_a, u_b, y, gamma):
    """The paper's Taylor loss and alignment term, differentiated by PyTorch."""
    phi_t, u_a_t, u_b_t = (torch.tensor(v, requires_grad=True) for v in (phi, u_a, u_b))
    z = u_b_t @ phi_t
    y_t = torch.tensor(y)
    loss = (np.log(2) - 0.5 * y_t * z + z * z / 8 + gamma * ((u_a_t - u_b_t) ** 2).sum(1)).mean()
    loss.backward()
    return loss.item(), phi_t.grad.numpy(), u_a_t.grad.numpy(), u_b_t.grad.numpy()


@pytest.mark.parametrize("encrypted", [False, True])
def test_both_parties_gradients_and_the_loss_are_those_of_the_taylor_objective(encrypted, paillier_1024):
    rng = np.random.default_rng(0)
    n, d, gamma = 7, 3, 0.4
    phi, u_a, u_b, y = rng.normal(size=d), rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.choice([-1.0, 1.0], n)
    public, private = paillier_1024
    enc = (lambda v: public.encrypt(v.ravel(), precision=32).reshape(*v.shape)) if encrypted else (lambda v: v)
    dec = (lambda c: np.asarray(private.decrypt(c), dtype=float)) if encrypted else np.asarray
    host = terms.host_gradient({k: enc(v) for k, v in terms.guest_terms(phi, u_a, y).items()}, u_b, gamma)
    guest = terms.guest_gradients({k: enc(v) for k, v in terms.host_terms(u_b).items()}, phi, u_a, y, gamma)
    loss, d_phi, d_u_a, d_u_b = autograd_loss_gradients(phi, u_a, u_b, y, gamma)
    np.testing.assert_allclose(dec(host), d_u_b, atol=1e-8)
    np.testing.assert_allclose(dec(guest["phi"]), d_phi, atol=1e-8)
    np.testing.assert_allclose(dec(guest["u_a"]), d_u_a, atol=1e-8)
    np.testing.assert_allclose(dec(guest["loss"]), [loss], atol=1e-8)
    np.testing.assert_allclose(dec(times(u_b, enc(u_a.T))), u_b @ u_a.T, atol=1e-8)


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_partys_weight_gradient_is_its_jacobian_times_the_encrypted_output_gradient(encrypted, paillier_1024):
    from torch.func import functional_call

    from isthmus.algorithms.hetero_ftl import nets
    from isthmus.algorithms.hetero_ftl.training import parameter_gradient

    rng = np.random.default_rng(1)
    net, X, g = nets.build(5, 6, 3, seed=2), torch.from_numpy(rng.normal(size=(9, 5))), rng.normal(size=(9, 3))
    _, jacobian = nets.outputs_and_jacobian(net, lambda params: functional_call(net, params, (X,)))
    (net(X) * torch.from_numpy(g)).sum().backward()
    expected = np.concatenate([p.grad.numpy().ravel() for p in net.parameters()])
    public, private = paillier_1024
    encrypted_g = public.encrypt(g.ravel(), precision=32) if encrypted else g
    got = parameter_gradient(jacobian, encrypted_g)
    np.testing.assert_allclose(np.asarray(private.decrypt(got), dtype=float) if encrypted else got, expected, atol=1e-8)


@pytest.fixture(scope="module")
def split():
    return tables(guest_rows=300, host_rows=260, overlap=60)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, split):
    return run_ftl(tmp_path_factory.mktemp("plain"), {"protection": "plain"}, split)


def test_encrypted_training_labels_the_hosts_new_rows_as_the_plaintext_one(tmp_path, split, plain_run):
    parts, predictions, auc = run_ftl(tmp_path, {}, split)
    _, plain_predictions, plain_auc = plain_run
    assert len(predictions) == 200 and auc > 0.85, auc  # the host's 200 rows the guest does not have
    assert abs(auc - plain_auc) <= 0.002
    np.testing.assert_allclose(predictions.score, plain_predictions.score, atol=1e-6)
    assert not (tmp_path / "guest" / "predictions.csv").exists()  # written at the host only
    guest, host = parts["guest"].to_dict(), parts["host"].to_dict()
    assert host["labelled_rows"] == 200 and len(guest["phi"]) == QUICK["representation"]
    assert FTL.load("host", host).to_dict() == host


def test_transfer_comes_close_to_a_host_model_that_had_every_true_label(plain_run, split):
    """The upper bound: the host's own model fitted with the true labels of all its rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    g, h, ov_g, ov_h, truth = split
    rest = np.setdiff1d(np.arange(h.n_rows), ov_h)
    labels = np.empty(h.n_rows)
    labels[ov_h], labels[rest] = g.label[ov_g], truth.set_index("id").loc[h.ids[rest], "y"]
    upper = LogisticRegression().fit(h.features, labels).predict_proba(h.features[rest])[:, 1]
    upper_auc = roc_auc_score(labels[rest], upper)
    assert plain_run[2] > upper_auc - 0.05, (plain_run[2], upper_auc)


def test_local_rounds_trade_exchanges_for_stale_terms_and_still_learn(tmp_path, split):
    """Linear networks: each local round adds a party's weight count to the sums it decrypts over the same
    terms, so three rounds of the 8-unit networks would need more than the 60 shared rows (min_batch_rows)."""
    linear = {"protection": "plain", "hidden": 0}
    _, once, _ = run_ftl(tmp_path / "once", linear, split)
    _, predictions, auc = run_ftl(tmp_path / "thrice", {**linear, "local_rounds": 3}, split)
    assert auc > 0.85 and not np.allclose(predictions.score, once.score)


def test_batches_are_drawn_once_never_below_the_floor_and_visited_in_a_new_order():
    options = FTL.Options(batch_size=10, local_rounds=2, representation=4)
    floor = training.min_batch_rows(options, 92, 84)
    assert floor == 2 * 92 // 4 + 1  # more per-row values (rows x representation) than the sums of both rounds
    parts = training.partition(200, options, floor)
    assert [len(p) for p in parts] == [47, 47, 47, 59]  # batch_size raised to the floor; the short tail merged
    assert sorted(np.concatenate(parts).tolist()) == list(range(200))
    epochs = [[p.tolist() for p in training.batches(parts, options, epoch)] for epoch in range(4)]
    assert all(sorted(e) == sorted(p.tolist() for p in parts) for e in epochs)  # the same batches every epoch
    assert len({tuple(map(tuple, e)) for e in epochs}) > 1  # in new orders
    with pytest.raises(DataError, match="share 40 rows, fewer than the 47 a batch needs"):
        training.partition(40, options, floor)


def test_the_guests_own_term_on_all_its_rows_makes_phi_rank_them_before_any_message(split):
    """Pretraining on L_local alone: Phi . u_A, the predictor the host will use, learns the guest's labels."""
    from sklearn.metrics import roc_auc_score

    from isthmus.algorithms.hetero_ftl import nets, supervised
    from isthmus.ml.scaling import RankGauss

    g = split[0]
    X, y = torch.from_numpy(RankGauss.fit(g.features).transform(g.features)), torch.from_numpy(2.0 * g.label - 1)
    net = nets.build(X.shape[1], 8, 4, seed=0)
    untrained = supervised.local_loss(net, X, y).item()
    supervised.pretrain(net, torch.optim.Adam(net.parameters(), lr=0.02), X, y, epochs=300, l2=1e-3)
    u = nets.represent(net, X.numpy())
    assert supervised.local_loss(net, X, y).item() < untrained - 0.2
    assert roc_auc_score(g.label, u @ (y.numpy()[:, None] * u).mean(0)) > 0.9


def test_options_are_typed_and_bounded_at_load():
    for bad in ({"representation": 0}, {"gamma": -1.0}, {"local_rounds": 0}, {"learning_rate": 0.0},
                {"epochs": "3"}, {"protection": "paillier"}, {"alpha": 1.0}, {"key_bits": 512},
                {"guest_local_weight": -1.0}, {"guest_pretrain_epochs": -1}, {"guest_pretrain_epochs": 1.5},
                {"inputs": "minmax"}):
        with pytest.raises(ConfigError):
            FTL.Options.parse(bad, where="test")
    with pytest.raises(ConfigError, match="benchmark_only_plaintext"):
        FTL.check(ROSTER, FTL.Options(protection="plain"), allow_plaintext=False)
    FTL.check(ROSTER, FTL.Options(protection="plain"), allow_plaintext=True)


def test_without_the_overlap_or_with_too_small_an_overlap_training_does_not_start(tmp_path, split):
    g, h, ov_g, ov_h, truth = split
    with pytest.raises(AssertionError, match="keep_all_rows") as failed:
        run_ftl(tmp_path, {}, (g, h, None, None, truth))
    assert isinstance(failed.value.__cause__, ConfigError)
    with pytest.raises(AssertionError, match="share 60 rows, fewer than min_overlap") as failed:
        run_ftl(tmp_path, {"min_overlap": 61}, split)
    assert isinstance(failed.value.__cause__, DataError)


def test_labels_must_be_binary(tmp_path, split):
    g, h, ov_g, ov_h, truth = split
    three = type(g)("guest", g.ids, g.features, g.feature_names, np.arange(g.n_rows, dtype=float) % 3)
    with pytest.raises(AssertionError, match="binary labels") as failed:
        run_ftl(tmp_path, {}, (three, h, ov_g, ov_h, truth), roles={"host": lambda: None})
    assert isinstance(failed.value.__cause__, DataError)
