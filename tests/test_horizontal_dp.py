"""Differential privacy of horizontal rounds: the exact discrete Gaussian, clipping on the lattice, accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chisquare
from sklearn.datasets import make_classification

from isthmus.crypto.secagg import to_lattice
from isthmus.errors import ConfigError
from isthmus.horizontal import DPConfig, FedAvg, LinearClient, LinearModel, SecAggConfig, simulate
from isthmus.horizontal.discrete_gaussian import MAX_SIGMA, _Sampler, discrete_gaussian, lattice_variance
from isthmus.horizontal.dp import epsilon
from isthmus.horizontal.partition import iid


def test_small_sigma_samples_follow_the_discrete_gaussian_pmf():
    sigma = 1.5
    t, m = lattice_variance(sigma)
    support = np.arange(-12, 13)
    pmf = np.exp(-(support**2) / (2 * t * m))
    pmf /= pmf.sum()
    samples = discrete_gaussian(200_000, sigma)
    assert samples.dtype == np.int64 and np.abs(samples).max() <= 12
    counts = np.array([(samples == k).sum() for k in support])
    keep = pmf * len(samples) > 5  # chi-square needs populated cells
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(pmf[keep], pmf[~keep].sum()) * len(samples)
    assert chisquare(observed, expected).pvalue > 1e-4


@pytest.mark.parametrize("sigma", [1000.0, 2.0**20 + 0.5, MAX_SIGMA])
def test_large_sigma_samples_have_the_asked_spread_and_are_centred(sigma):
    t, m = lattice_variance(sigma)
    assert sigma**2 <= t * m <= sigma**2 * (1 + 2 / sigma) + 1  # never less noise than asked for
    samples = discrete_gaussian(50_000, sigma).astype(np.float64)
    assert samples.std() == pytest.approx(math.sqrt(t * m), rel=0.03)
    assert abs(samples.mean()) < 5 * math.sqrt(t * m / len(samples))


def test_bernoulli_of_exp_minus_gamma_from_integers_only():
    sampler = _Sampler()
    n = 100_000
    for whole, num, den in [(0, 3, 10), (0, 1, 1), (2, 1, 2), (5, 0, 7)]:
        gamma = whole + num / den
        hits = sampler.bernoulli_exp(np.full(n, whole), np.full(n, num), den).mean()
        assert hits == pytest.approx(math.exp(-gamma), abs=5 * math.sqrt(math.exp(-gamma) / n) + 1e-4)


def test_sigma_beyond_the_exact_range_is_refused_before_training():
    with pytest.raises(ConfigError, match="2\\^30"):
        discrete_gaussian(3, 2.0**31)
    assert not discrete_gaussian(4, 0.0).any()
    X, y = make_classification(100, 4, random_state=0)
    clients = [LinearClient(LinearModel(4), X[rows], y[rows]) for rows in iid(100, 2)]
    with pytest.raises(ConfigError, match="exceeds 64, the most noise 24 fractional bits allow"):
        simulate(clients, FedAvg(), 1, dp=DPConfig(clip_norm=10.0, noise_multiplier=7.0))


def test_rounding_toward_zero_keeps_a_clipped_update_within_its_norm():
    """The sensitivity on the lattice is the clip norm: rounding to nearest could exceed it, toward zero cannot."""
    bits = 8
    dp = DPConfig(clip_norm=0.6 * 10 / 2**bits, noise_multiplier=1.0)
    update = dp.clip(np.full(100, 0.6 / 2**bits))  # norm at the clip; each value rounds up to a whole lattice unit
    limit = dp.clip_norm * 2**bits
    assert np.linalg.norm(to_lattice(update, bits).astype(float)) > limit
    assert np.linalg.norm(to_lattice(update, bits, toward_zero=True).astype(float)) <= limit


def test_the_discrete_mechanism_accounts_as_the_gaussian_with_the_same_sigma():
    pytest.importorskip("dp_accounting")
    import dp_accounting
    from dp_accounting import rdp

    dp = DPConfig(clip_norm=0.5, noise_multiplier=1.1, delta=1e-5)
    accountant = rdp.RdpAccountant(orders=list(range(2, 257)))
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.1), 20))
    gaussian = accountant.get_epsilon(1e-5)
    for contributors in (1, 7, 100):
        discrete = epsilon(dp, 20, contributors=contributors, dimension=10_000, fractional_bits=24)
        assert gaussian * (1 - 1e-6) <= discrete <= gaussian  # sigma^2 rounded up: never more epsilon
    # with noise of a lattice unit per client, a sum of discrete Gaussians is no discrete Gaussian: the
    # bound's tau grows with the coordinates (KLS21), invisible at the sigmas above
    tiny = DPConfig(clip_norm=2**-8, noise_multiplier=1.0)
    few, many = (epsilon(tiny, 20, contributors=50, dimension=d, fractional_bits=8) for d in (1, 10**8))
    assert many > 10 * few


def test_sampling_clients_claims_no_amplification():
    """The aggregator picks each round's sample, so epsilon is that of every round in full."""
    pytest.importorskip("dp_accounting")
    X, y = make_classification(1200, 5, random_state=1)
    model = LinearModel(5)
    clients = {f"c{i:02d}": LinearClient(model, X[rows], y[rows], seed=i) for i, rows in enumerate(iid(1200, 12))}
    dp = DPConfig(clip_norm=0.5, noise_multiplier=1.0)
    sampled = simulate(clients, FedAvg(fraction_fit=0.5, min_fit_clients=2), 3, dp=dp)
    minimum = SecAggConfig().quorum(6).minimum
    assert len(sampled.history[0].clients) == 6
    assert sampled.epsilon == epsilon(dp, 3, contributors=minimum, dimension=6, fractional_bits=24)


def test_distributed_noise_reaches_the_sum_with_the_full_spread():
    """Same clients twice, with and without noise: the difference is the summed lattice noise."""
    pytest.importorskip("dp_accounting")
    X, y = make_classification(2000, 300, random_state=2)
    model = LinearModel(300)

    def run(noise_multiplier):
        clients = {f"c{i}": LinearClient(model, X[rows], y[rows], seed=i) for i, rows in enumerate(iid(2000, 10))}
        dp = DPConfig(clip_norm=0.2, noise_multiplier=noise_multiplier)
        return np.concatenate([p.ravel() for p in simulate(clients, FedAvg(), 1, dp=dp).parameters])

    noise = (run(200.0) - run(0.0)) * 10 * 2**24  # the sum over 10 clients, in lattice units
    assert np.allclose(noise, np.rint(noise), atol=1e-3)  # integers: noise on the lattice
    per_client = 200.0 * 0.2 * 2**24 / math.sqrt(7)  # sized for the quorum: 7 of 10 clients
    assert np.std(noise) == pytest.approx(per_client * math.sqrt(10), rel=0.15)
