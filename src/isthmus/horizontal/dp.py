"""Client-level differential privacy for horizontal rounds: clip each update, add Gaussian noise, account.

This is DP-FedAvg (McMahan et al. 2018): each client's update is clipped to L2 norm ``clip_norm`` and
counts with weight 1, so one client changes the sum by at most ``clip_norm``; Gaussian noise of
standard deviation ``noise_multiplier * clip_norm`` on the sum makes each round a Gaussian mechanism.

Who adds the noise:
- with secure aggregation, the clients, in distributed form: each adds noise of variance
  ``(noise_multiplier * clip_norm)^2 / m``, where ``m`` is the fewest inputs the aggregator accepts in
  a round, so the sum it decrypts carries at least the full variance and no one sees less-noised data;
- without it, the aggregator adds the full noise to the sum (it sees individual updates anyway).

The epsilon for a target delta comes from Google's ``dp-accounting`` (RDP accountant over Poisson-
sampled Gaussian rounds), an optional extra: ``pip install isthmus[dp]``. Clients' fit metrics are
not noised, so under DP they are left out of the aggregate. Noise comes from numpy's PCG64 seeded from
the OS generator; like most DP libraries it samples in floating point.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np

from isthmus.errors import ConfigError

#: Integer Renyi orders: the accountant's fractional orders fail to converge for common settings.
_RDP_ORDERS = tuple(range(2, 257))


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

    def noise(self, size: int, std: float) -> np.ndarray:
        if std == 0:
            return np.zeros(size)
        return np.random.default_rng(secrets.randbits(128)).normal(0.0, std, size)


def clip_l2(vector: np.ndarray, max_norm: float) -> np.ndarray:
    """``vector`` scaled down, if needed, to L2 norm ``max_norm``."""
    norm = float(np.linalg.norm(vector))
    return vector * (max_norm / norm) if norm > max_norm else vector


def epsilon(noise_multiplier: float, sampling_rate: float, rounds: int, delta: float) -> float:
    """Epsilon spent by ``rounds`` Gaussian rounds sampling clients with probability ``sampling_rate``."""
    try:
        import dp_accounting
        from dp_accounting import rdp
    except ImportError:
        raise ConfigError("privacy accounting needs the optional extra: pip install 'isthmus[dp]'") from None
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)), rounds
    )
    accountant = rdp.RdpAccountant(orders=list(_RDP_ORDERS))
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))
