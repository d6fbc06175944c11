"""How every `isthmus` command reports an isthmus error: one clear line and exit code 1, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from isthmus.errors import IsthmusError

T = TypeVar("T")


def guard(action: Callable[[], T]) -> T:
    try:
        return action()
    except IsthmusError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
