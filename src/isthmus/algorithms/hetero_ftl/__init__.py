"""Federated transfer learning (Liu et al., arXiv 1812.03337): model ``hetero_ftl``."""
