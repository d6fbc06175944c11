"""Hetero (vertical) linear and logistic regression with an arbiter, one class per role."""

from isthmus.algorithms.hetero_linear.arbiter import HeteroLinearArbiter
from isthmus.algorithms.hetero_linear.options import LinearOptions
from isthmus.algorithms.hetero_linear.guest import HeteroLinearGuest
from isthmus.algorithms.hetero_linear.host import HeteroLinearHost

__all__ = ["HeteroLinearArbiter", "HeteroLinearGuest", "HeteroLinearHost", "LinearOptions"]
