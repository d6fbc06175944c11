"""isthmus: federated learning for data islands."""

__version__ = "0.1.0"
