"""`isthmus demo NAME --out X --key-bits N`: the demo options work after the demo's name, as people type them
(before, only `isthmus demo --key-bits N NAME` parsed: "No such option: --key-bits")."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import isthmus.demos.federation
import isthmus.demos.horizontal
from isthmus.cli import app


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    """The demos' entry points, recording what they were given instead of running."""
    seen: list[tuple] = []
    monkeypatch.setattr(isthmus.demos.federation, "run_federation_demo",
                        lambda out, console, **kwargs: seen.append(("federation", out, kwargs)))
    monkeypatch.setattr(isthmus.demos.horizontal, "run_horizontal_demo",
                        lambda out, console: seen.append(("horizontal", out, {})))
    return seen


@pytest.mark.parametrize("args, expected", [
    (["demo", "federation", "--key-bits", "1024", "--out", "x"], ("federation", Path("x/federation"), {"key_bits": 1024})),
    (["demo", "--key-bits", "3072", "--out", "y", "federation"], ("federation", Path("y/federation"), {"key_bits": 3072})),
    (["demo", "--key-bits", "3072", "--out", "y", "federation", "--out", "x"],
     ("federation", Path("x/federation"), {"key_bits": 3072})),
    (["demo", "federation"], ("federation", Path("runs/demo/federation"), {})),
    (["demo", "horizontal", "--out", "x"], ("horizontal", Path("x/horizontal"), {})),
])
def test_demo_options_before_or_after_the_demo_name(calls, args, expected):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls == [expected]


def test_a_demo_without_keys_does_not_take_key_bits(calls):
    result = CliRunner().invoke(app, ["demo", "horizontal", "--key-bits", "1024"])
    assert result.exit_code == 2 and "No such option: --key-bits" in result.output
