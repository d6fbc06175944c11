"""Where a demo writes: a folder it owns and starts afresh on every run, named on the demo's last line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from isthmus.jobs.rundir import DEMO_MARKER, owned_folder


@contextmanager
def demo_folder(folder: Path, command: str, console: Console, *, job_file: str = "job.yaml",
                job_line: str) -> Iterator[Path]:
    """Hold ``folder`` for the demo ``command``, emptied of its earlier run; say where the results are at the end.

    A folder the demo wrote before it left a marker is recognised by the first line of its job file,
    ``job_line`` in ``job_file``. Anything else in the folder is refused, never removed.
    """
    folder = Path(folder).resolve()
    with owned_folder(folder, marker=DEMO_MARKER, owner=f"`{command}`", identity={"command": command},
                      written_before=lambda earlier: _first_line(earlier / job_file) == job_line):
        yield folder
    console.print(f"results: {folder}", soft_wrap=True, markup=False)


def _first_line(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8") as text:
            return text.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None
