"""Writing files so that a write cut short (a full disk, a file-size limit) leaves nothing half-written.

A report, model or key written in place and cut short looks whole to the next reader. A log line cut
short runs into the next line written after it, and a reader skipping lines it cannot parse then loses
that entry too. So a file is replaced whole, a line is appended whole or not at all, and the error names
the file: the operating system's write errors do not (``[Errno 28] No space left on device``). A log
appended to for years is read from its end, as far back as a reader needs.

A file replaced whole, or a key created, is on disk before its name is: the written data is synced,
then the rename, then the folder. Otherwise a power cut soon after can leave the new name on an
empty file (ext4's delayed allocation and xfs do): a model, a checkpoint or a key gone while the
ledger, whose database syncs itself, says the job produced it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

#: Held while a line is appended: undoing a cut write must not cut another thread's line.
_APPENDING = threading.Lock()


def write_whole(path: str | Path, data: bytes, *, sync: bool = True) -> None:
    """Put ``data`` in ``path`` through a temporary file beside it: ``path`` holds its old content or the
    new one, never a part, and a failed write leaves no temporary file behind. ``sync=False`` for a file
    whose loss in a power cut costs nothing a log line would not (a message's copy kept beside the
    audit log, one per message)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        _write_and_close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), data, sync)
        os.replace(tmp, path)
        if sync:
            sync_folder(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, path) from None


def create_private(path: str | Path, data: bytes) -> None:
    """Create ``path`` (mode 0600 from the start: no moment where others may read it) holding ``data`` whole
    and synced, or not at all: a key cut short by a full disk blocked making it again, keys being never
    overwritten. Raises FileExistsError if ``path`` exists."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_and_close(fd, data, sync=True)
        sync_folder(path.parent)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise _naming(exc, path) from None


def sync_folder(folder: str | Path) -> None:
    """Put the names in ``folder`` on disk (a file's own sync does not cover the name that leads to it)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: str | Path, line: bytes) -> None:
    """Append ``line`` (ending in a newline) to ``path`` whole, or leave the file as it was and raise."""
    path = Path(path)
    with _APPENDING:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
            except OSError as exc:
                with contextlib.suppress(OSError):  # not a regular file (a device): nothing to undo
                    os.ftruncate(fd, size)  # shrinking needs no free space
                raise _naming(exc, path) from None
        finally:
            os.close(fd)


def lines_from_the_end(path: str | Path, block_bytes: int = 1 << 16) -> Iterator[bytes]:
    """The non-empty lines of ``path``, last first, read a block at a time from its end: a reader wanting the
    last day of a log kept for years stops there instead of reading it all."""
    with open(path, "rb") as file:
        end, rest = file.seek(0, os.SEEK_END), b""
        while end > 0:
            start = max(0, end - block_bytes)
            file.seek(start)
            lines = (file.read(end - start) + rest).split(b"\n")
            end, rest = start, lines[0]  # the first may begin in the block before
            yield from (line for line in reversed(lines[1:]) if line)
        if rest:
            yield rest


def json_lines_since(path: str | Path, since: float) -> list[dict]:
    """The JSON objects of the log ``path`` whose "time" is ``since`` or later, oldest first. Read from the end,
    and only that far: the log is in time order. A line that does not parse, or has no numeric "time", is
    skipped (one cut by a crash, or written by another release)."""
    found: list[dict] = []
    if not Path(path).exists():
        return found
    for line in lines_from_the_end(path):
        try:
            entry = json.loads(line)
            when = entry["time"]
        except (ValueError, TypeError, KeyError):
            continue
        if not isinstance(when, float | int):
            continue
        if when < since:
            break
        found.append(entry)
    return found[::-1]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a full disk may take part of a write before it refuses the rest
        written = os.write(fd, view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _write_and_close(fd: int, data: bytes, sync: bool) -> None:
    try:
        _write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name, so ``str(exc)`` says which file: the write calls give none, and the
    temporary file beside it is not one the user named."""
    return exc if exc.filename == str(path) else type(exc)(exc.errno, exc.strerror, str(path))
