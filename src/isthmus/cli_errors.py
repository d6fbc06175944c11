"""How every `isthmus` command reports an error a user can cause: one clear line and exit code 1, no traceback.

An isthmus error names party, job, step or file itself; an operating-system error (a folder that may
not be written, a disk that is full) is shown as the system states it, with the path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from isthmus.errors import IsthmusError

T = TypeVar("T")


def guard(action: Callable[[], T]) -> T:
    try:
        return action()
    except IsthmusError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr, unwrapped and without markup, and exit with code 1."""
    Console(stderr=True, soft_wrap=True).print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(1)
