"""Tests on a real local Ray cluster (see conftest.py)."""
