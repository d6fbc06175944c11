"""How every `isthmus` command reports an isthmus error: one clear line and exit code 1, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from isthmus.errors import IsthmusError

T = TypeVar("T")


def guard(action: Callable[[], T]) -> T:
    try:
        return action()
    except IsthmusError as exc:
        # One line however long (no wrapping), and the message's brackets printed, not read as markup.
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
