"""Hetero (vertical) linear and logistic regression with an arbiter, one class per role."""

from isthmus.protocols.hetero_linear.arbiter import HeteroLinearArbiter
from isthmus.protocols.hetero_linear.config import LinearConfig
from isthmus.protocols.hetero_linear.guest import HeteroLinearGuest
from isthmus.protocols.hetero_linear.host import HeteroLinearHost

__all__ = ["HeteroLinearArbiter", "HeteroLinearGuest", "HeteroLinearHost", "LinearConfig"]
