"""Gradient-boosted tree models: hetero SecureBoost (guest and host roles), its plaintext reference
booster, and the encrypted WOE/IV binning step. Shared pieces (histograms, gains, tree growing) are
written so that a horizontal variant plugs in its own parties (see ``party.FeatureParty``)."""

from isthmus.tree.booster import SecureBoostReference
from isthmus.tree.hetero_guest import HeteroSecureBoostGuest
from isthmus.tree.hetero_host import HeteroSecureBoostHost
from isthmus.tree.params import BoostParams

__all__ = ["BoostParams", "HeteroSecureBoostGuest", "HeteroSecureBoostHost", "SecureBoostReference"]
