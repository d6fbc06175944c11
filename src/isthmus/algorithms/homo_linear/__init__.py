"""Horizontal logistic and linear regression: clients train on their own rows, an aggregator averages."""
