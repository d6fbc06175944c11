"""Federated algorithms: one package per model, one file per role (see docs/architecture.md)."""
