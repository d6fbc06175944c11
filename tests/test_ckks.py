"""CKKS cipher (isthmus.crypto.ckks): exact-enough products, masks, flooding, and hetero LR parity with Paillier."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tenseal")

from isthmus.crypto import ckks  # noqa: E402


@pytest.fixture(scope="module")
def keys():
    return ckks.generate_keypair()


@pytest.mark.parametrize("rows, outputs", [(100, 1), (5000, 11), (9000, 20), (4096, 33), (500, 300)])
def test_plaintext_matrix_products_match_numpy(keys, rows, outputs):
    public_key, private_key = keys
    rng = np.random.default_rng(rows)
    d, X = rng.normal(size=rows) * 2, rng.normal(size=(rows, outputs))
    product = public_key.encrypt(d).rmatmul(X.T)
    assert len(product) == outputs and len(product.segments) <= max(1, outputs // 8)  # packed
    np.testing.assert_allclose(private_key.decrypt_exact(product), X.T @ d, atol=1e-6)


def test_the_loss_terms_align_levels_and_scales(keys):
    """Fresh + product-level sums and a power-of-two factor (the guest's Taylor loss) stay exact."""
    public_key, private_key = keys
    rng = np.random.default_rng(1)
    u, w = rng.normal(size=300), rng.normal(size=300)
    encrypted_u = public_key.encrypt(u)
    loss = encrypted_u.rmatmul(w[None, :]) + (public_key.encrypt(np.array([u @ u])) + encrypted_u.rmatmul(u[None, :])) * 0.125
    assert private_key.decrypt_exact(loss)[0] == pytest.approx(w @ u + 0.25 * (u @ u), abs=1e-6)
    with pytest.raises(ValueError, match="powers of two"):
        encrypted_u * 0.3
    shifted = encrypted_u.rmatmul(np.vstack([u, w] * 20)) + np.arange(40.0)  # a product's layout, plus plaintext
    np.testing.assert_allclose(private_key.decrypt_exact(shifted), [u @ u, w @ u] * 20 + np.arange(40.0), atol=1e-6)


def test_adding_plaintext_re_randomises(keys):
    """A host knows its own [[u]]: the guest's [[u]] + p must not be [[u]] with p added in the clear."""
    public_key, private_key = keys
    u = public_key.encrypt(np.arange(10.0))
    first, second = u + np.ones(10), u + np.ones(10)
    assert first.to_wire()["segments"] != second.to_wire()["segments"]
    np.testing.assert_allclose(private_key.decrypt_exact(first), np.arange(10.0) + 1, atol=1e-9)


def test_masked_values_are_blinded_flooded_and_unmask_to_the_product(keys):
    public_key, private_key = keys
    rng = np.random.default_rng(2)
    d, X = rng.normal(size=2000), rng.normal(size=(2000, 8))
    masked, mask = public_key.encrypt(d).rmatmul(X.T).masked()
    seen = private_key.decrypt_exact(masked)  # what the key holder sees: far from the product
    assert np.abs(seen - X.T @ d).min() > 1e3
    values = mask.unmask(private_key.decrypt_raw(masked))
    np.testing.assert_allclose(values, X.T @ d, atol=8 * np.hypot(ckks.EVALUATOR_FLOOD, ckks.HOLDER_FLOOD))


def test_the_key_holder_floods_what_leaves_it(keys):
    """Li-Micciancio: never return the exact CKKS decryption (its error term reveals the secret key)."""
    public_key, private_key = keys
    encrypted = public_key.encrypt(np.zeros(4096))
    leaving = private_key.decrypt_raw(encrypted) - private_key.decrypt_exact(encrypted)
    assert np.std(leaving) == pytest.approx(ckks.HOLDER_FLOOD, rel=0.1)


def test_public_key_wire_form_carries_no_secret_key(keys):
    public_key, _ = keys
    wire = public_key.to_wire()
    assert set(wire) == {"public", "galois"}
    received = ckks.CkksPublicKey.from_wire(wire)
    assert received.fingerprint == public_key.fingerprint
    encrypted = ckks.CkksArray.from_wire(received.encrypt(np.ones(5)).to_wire(), public_key, size=5)
    assert len(encrypted) == 5


def test_a_party_process_leaves_no_file_behind(tmp_path):
    """SEAL's binding saves and loads only through paths. A party process ends with os._exit, so a folder left
    for interpreter exit to remove stayed: every CKKS job left one per party in the temporary folder."""
    script = ("import os, numpy as np; from isthmus.crypto import ckks; public_key, _ = ckks.generate_keypair(); "
              "ckks.CkksArray.from_wire(public_key.encrypt(np.ones(5)).to_wire(), public_key, size=5); os._exit(0)")
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "TMPDIR": str(tmp_path)}, check=True)
    assert list(tmp_path.iterdir()) == []


def test_hetero_lr_with_ckks_matches_paillier(paillier_1024):
    """Same data, same options (the Taylor residual, the one ckks has): the breast-cancer AUC within 0.002 and the
    weights within 1e-3."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from isthmus.algorithms.hetero_linear import LinearOptions
    from test_hetero_linear import train_jointly

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    runs = {}
    for cipher in ("paillier", "ckks"):
        options = LinearOptions(epochs=2, batch_size=300, key_bits=1024, cipher=cipher, residual="taylor")
        scores, guest, hosts = train_jointly(options, X[:, :10], y, [X[:, 10:20], X[:, 20:]])
        runs[cipher] = roc_auc_score(y, scores), guest, hosts
    (auc_p, guest_p, hosts_p), (auc_c, guest_c, hosts_c) = runs["paillier"], runs["ckks"]
    assert abs(auc_c - auc_p) < 0.002
    np.testing.assert_allclose(guest_c.coef_, guest_p.coef_, atol=1e-3)
    for name in hosts_p:
        np.testing.assert_allclose(hosts_c[name].coef_, hosts_p[name].coef_, atol=1e-3)
    assert [h["loss"] for h in guest_c.history_] == pytest.approx([h["loss"] for h in guest_p.history_], abs=1e-3)


def test_the_sigmoid_residual_is_refused_with_ckks():
    """Its packed sigmoid exchange is built on Paillier: refused when the job is read, not mid-training."""
    from isthmus.algorithms.hetero_linear import LinearOptions
    from isthmus.errors import ConfigError

    with pytest.raises(ConfigError, match="residual: sigmoid needs cipher: paillier"):
        LinearOptions(cipher="ckks", residual="sigmoid")
    assert LinearOptions(cipher="ckks", task="regression", residual="sigmoid").cipher == "ckks"  # no sigmoid there


def test_hetero_linear_regression_with_ckks_matches_paillier(paillier_1024):
    """Regression sends u_g - y and weighs the loss's squares by 1/2: the same weights as Paillier's."""
    from sklearn.datasets import load_diabetes
    from sklearn.preprocessing import StandardScaler

    from isthmus.algorithms.hetero_linear import LinearOptions
    from test_hetero_linear import train_jointly

    X, y = load_diabetes(return_X_y=True)
    X, y = StandardScaler().fit_transform(X), (y - y.mean()) / y.std()
    coefs = {}
    for cipher in ("paillier", "ckks"):
        options = LinearOptions(task="regression", epochs=3, batch_size=0, key_bits=1024, cipher=cipher)
        _, guest, hosts = train_jointly(options, X[:, :4], y, [X[:, 4:]])
        coefs[cipher] = np.concatenate([guest.coef_.ravel(), hosts["host-1"].coef_.ravel()]), guest.history_
    np.testing.assert_allclose(coefs["ckks"][0], coefs["paillier"][0], atol=1e-3)
    assert [h["loss"] for h in coefs["ckks"][1]] == pytest.approx([h["loss"] for h in coefs["paillier"][1]], abs=1e-3)
