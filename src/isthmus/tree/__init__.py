"""Gradient-boosted trees shared by the SecureBoost algorithms: quantised gradients, histograms, gains,
tree growing, and the plaintext reference booster. The federated roles live in
:mod:`isthmus.algorithms.hetero_secureboost` and :mod:`isthmus.algorithms.homo_secureboost`; they plug
their parties in through ``party.FeatureParty``."""

from isthmus.tree.booster import SecureBoostReference
from isthmus.tree.params import BoostParams

__all__ = ["BoostParams", "SecureBoostReference"]
