"""Horizontal neural networks (PyTorch): clients train the same network on their own rows, an aggregator averages."""
