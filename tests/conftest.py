"""Shared fixtures: where the shared data sets are, and running protocol roles as threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fate"


@pytest.fixture
def fate_data() -> Path:
    if not (DATASETS / "README.md").exists():
        pytest.skip(f"shared FATE data sets not found at {DATASETS}")
    return DATASETS


def run_parties(roles: dict[str, Callable[[], Any]], timeout: float = 120.0) -> dict[str, Any]:
    """Run each party's role function in its own thread; re-raise the first failure."""
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def target(name: str, fn: Callable[[], Any]) -> None:
        try:
            results[name] = fn()
        except BaseException as exc:  # reported below
            errors[name] = exc

    threads = [threading.Thread(target=target, args=(n, f), daemon=True, name=n) for n, f in roles.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    hung = [t.name for t in threads if t.is_alive()]
    if errors:
        name, exc = next(iter(errors.items()))
        raise AssertionError(f"party {name} failed: {exc!r}") from exc
    if hung:
        raise AssertionError(f"parties still running after {timeout} s: {hung}")
    return results


@pytest.fixture(scope="session")
def paillier_1024():
    """A 1024-bit key pair shared by the tests that need one (generating keys is slow)."""
    paillier = pytest.importorskip("isthmus.crypto.paillier")
    return paillier.generate_keypair(1024)
