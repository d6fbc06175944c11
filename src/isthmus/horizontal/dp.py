"""Client-level differential privacy for horizontal rounds: clip each update, add discrete Gaussian noise, account.

This is DP-FedAvg (McMahan et al. 2018): each client's update is clipped to L2 norm ``clip_norm`` and
counts with weight 1, so one client changes the sum by at most ``clip_norm``; noise of standard
deviation ``noise_multiplier * clip_norm`` on the sum makes each round a Gaussian mechanism.

The noise is the discrete Gaussian on the fixed-point lattice 2^-fractional_bits Z (Canonne, Kamath &
Steinke 2020, "CKS20"), sampled exactly from OS randomness (:mod:`~isthmus.horizontal.discrete_gaussian`):
the clipped update is rounded toward zero onto the lattice, so its norm, the sensitivity, stays within
``clip_norm``, and integer noise is added. Secure aggregation sums those integers exactly; no
floating-point noise (whose low bits leak, Mironov 2012) is involved.

Who adds the noise:
- with secure aggregation, the clients, in distributed form (the distributed discrete Gaussian of
  Kairouz, Liu & Steinke 2021, "KLS21"): each adds noise of variance ``(noise_multiplier * clip_norm)^2 / T``,
  where T is the fewest inputs any sum may hold (the clients' own quorum, which they enforce), so
  the sum the aggregator learns carries at least the full variance and no one sees less-noised data;
- without it, the aggregator adds the whole noise to the sum (it sees individual updates anyway).

Accounting (:func:`epsilon`): dp-accounting has no discrete Gaussian event, so each round is accounted
as the Gaussian mechanism that bounds it. The Renyi divergence of order alpha of the discrete
Gaussian N_Z(0, sigma^2) shifted by an integer vector of L2 norm D is at most alpha D^2 / (2 sigma^2),
the continuous Gaussian's (CKS20, Theorems 4 and 14: 1/2 (D/sigma)^2-concentrated DP). The sum of T
clients' independent discrete Gaussians of variance s^2 each is 1/2 eps^2-concentrated DP with
eps = min(sqrt(D^2 / (T s^2) + tau d / 2), D / (sqrt(T) s) + tau sqrt(d)), tau = 10 sum_{k<T} e^{-2 pi^2 s^2 k/(k+1)},
for d coordinates (KLS21, Theorem 1); for the s here (thousands of lattice units) tau is zero in
double precision. 1/2 eps^2-concentrated DP is Renyi DP alpha eps^2 / 2 at every order: exactly a
Gaussian mechanism with noise multiplier 1 / eps, which dp-accounting's RDP accountant composes over
the rounds (an optional extra: ``pip install isthmus[dp]``). The accountant uses the s^2 actually
drawn, rounded up from the one asked for (:func:`~isthmus.horizontal.discrete_gaussian.lattice_variance`).

No amplification by subsampling is claimed: the aggregator chooses who trains in each round (from a
seed in the job file), so the sample is no secret from those the guarantee is meant against; every
round counts in full. Clients' fit metrics are not noised, so under DP they are left out of the
aggregate, and the number of clients in a round (the weight) is public.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from isthmus.errors import ConfigError
from isthmus.horizontal.discrete_gaussian import MAX_SIGMA, discrete_gaussian, lattice_variance

#: Integer Renyi orders: the accountant's fractional orders fail to converge for common settings.
_RDP_ORDERS = tuple(range(2, 257))
#: Clipping aims this much under ``clip_norm``, so floating-point rounding never takes a norm over it.
_CLIP_MARGIN = 1.0 - 2.0**-40


@dataclass(frozen=True)
class DPConfig:
    clip_norm: float
    noise_multiplier: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not self.clip_norm > 0 or not self.noise_multiplier >= 0 or not 0 < self.delta < 1:
            raise ConfigError("differential privacy needs clip_norm > 0, noise_multiplier >= 0 and 0 < delta < 1")

    def noise_std(self, contributors: int) -> float:
        """Per-contributor noise so that the sum of ``contributors`` noises has the full variance."""
        return self.noise_multiplier * self.clip_norm / math.sqrt(max(contributors, 1))

    def clip(self, update: np.ndarray) -> np.ndarray:
        return clip_l2(update, self.clip_norm * _CLIP_MARGIN)

    def check_lattice(self, fractional_bits: int) -> None:
        """The whole noise must be one the exact sampler can draw at this fixed point: fail at setup, not mid-job."""
        if self.noise_std(1) * 2.0**fractional_bits > MAX_SIGMA:
            raise ConfigError(f"dp: noise_multiplier * clip_norm = {self.noise_std(1):.4g} exceeds "
                              f"{MAX_SIGMA / 2.0**fractional_bits:g}, the most noise {fractional_bits} fractional bits "
                              "allow; scale the updates down")


def clip_l2(vector: np.ndarray, max_norm: float) -> np.ndarray:
    """``vector`` scaled down, if needed, to L2 norm ``max_norm``."""
    norm = float(np.linalg.norm(vector))
    return vector * (max_norm / norm) if norm > max_norm else vector


def lattice_noise(size: int, noise_std: float, fractional_bits: int) -> np.ndarray:
    """Discrete Gaussian noise of standard deviation ``noise_std`` (at least), in int64 lattice units."""
    return discrete_gaussian(size, noise_std * 2.0**fractional_bits)


def epsilon(dp: DPConfig, rounds: int, *, contributors: int, dimension: int, fractional_bits: int) -> float:
    """Epsilon (at ``dp.delta``) spent by ``rounds`` rounds whose sums each hold the noise of ``contributors``
    clients (1: the aggregator adds it all) on a ``dimension``-long update; see the module's docstring."""
    try:
        import dp_accounting
        from dp_accounting import rdp
    except ImportError:
        raise ConfigError("privacy accounting needs the optional extra: pip install 'isthmus[dp]'") from None
    if rounds == 0:
        return 0.0
    if dp.noise_multiplier == 0:
        return math.inf
    t, m = lattice_variance(dp.noise_std(contributors) * 2.0**fractional_bits)
    s2, sensitivity = float(t * m), dp.clip_norm * 2.0**fractional_bits
    k = np.arange(1, contributors)
    tau = 10.0 * float(np.exp(-2 * math.pi**2 * s2 * k / (k + 1)).sum())
    concentrated = min(math.sqrt(sensitivity**2 / (contributors * s2) + tau * dimension / 2),
                       sensitivity / math.sqrt(contributors * s2) + tau * math.sqrt(dimension))
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.0 / concentrated), rounds)
    accountant = rdp.RdpAccountant(orders=list(_RDP_ORDERS))
    accountant.compose(event)
    return float(accountant.get_epsilon(dp.delta))
