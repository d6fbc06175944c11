"""Run folders: one run per folder, never two runs mixed, never a failed run that looks complete.

Whoever writes a run folder holds its lock for the whole run, so a second process is refused instead
of interleaving its files with the first's. A marker file in the folder (``run.json`` for one party,
``launch.json`` for a launched job, ``demo.json`` for a demo) says whose run it is and how it ended:
``running`` while it runs (and after a crash), ``failed`` or ``interrupted`` with the error, ``finished``
only once every result is written. A folder holding files that no isthmus command marked is never
emptied: it may be someone's work.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from isthmus.errors import ConfigError
from isthmus.files import write_whole

LOCK_FILE = ".lock"
RUN_MARKER = "run.json"
LAUNCH_MARKER = "launch.json"
DEMO_MARKER = "demo.json"
#: What marks a party's folder written before markers existed (the runner's event log).
_EVENTS = "events.jsonl"
#: Where steps that checkpoint keep them (the horizontal aggregator): a run that may be resumed.
_CHECKPOINTS = "checkpoints"


@contextmanager
def locked(folder: Path, remedy: str = "wait for it to finish or choose another --out") -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for this process until the block ends; ``remedy`` is what the
    error says to do when another process holds it.

    An advisory ``flock`` on ``folder/.lock``: the kernel drops it when the process dies, so a crashed
    run never leaves a folder locked.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(f"{folder} is in use by another isthmus process (pid {holder}); {remedy}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)


def contents(folder: Path) -> list[str]:
    """The names in ``folder`` other than its lock, sorted; empty if the folder does not exist."""
    if not Path(folder).is_dir():
        return []
    return sorted(entry.name for entry in Path(folder).iterdir() if entry.name != LOCK_FILE)


def clear(folder: Path, *, keep: tuple[str, ...] = ()) -> None:
    """Remove everything in ``folder`` but its lock and ``keep`` (the caller holds the lock).

    Run folders inside (launched parties') are locked first, so a folder that a process still writes,
    e.g. a party orphaned by a killed launch, is refused before anything is removed.
    """
    doomed = [Path(folder) / name for name in contents(folder) if name not in keep]
    with ExitStack() as held:
        for entry in doomed:
            if entry.is_dir() and not entry.is_symlink():
                for inner, _, files in os.walk(entry):
                    if LOCK_FILE in files:
                        held.enter_context(locked(Path(inner)))
        for entry in doomed:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def read_marker(path: Path) -> dict[str, Any] | None:
    """A marker's fields; ``None`` if there is none, ``{}`` if it is unreadable (a crash while writing it)."""
    try:
        marker = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically, so a reader never sees half a marker or report."""
    write_whole(path, (json.dumps(data, indent=2) + "\n").encode())


@contextmanager
def recorded(marker: Path, **fields: Any) -> Iterator[None]:
    """Mark the run ``running`` now, and ``finished`` only if the block completes."""
    fields = {**fields, "status": "running", "started": _now(), "pid": os.getpid()}
    write_json(marker, fields)
    try:
        yield
    except BaseException as exc:
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        write_json(marker, {**fields, "status": "interrupted" if interrupted else "failed", "ended": _now(),
                            "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
        raise
    write_json(marker, {**fields, "status": "finished", "ended": _now()})


def mark_stopped(marker: Path, why: str) -> None:
    """A run its launcher or node stopped says ``why``, which its process did not know: one still ``running``
    (killed: it could not mark itself) turns ``failed``; one ``interrupted`` (it marked itself on the signal)
    stays so. A run that ended otherwise is left alone."""
    fields = read_marker(marker)
    if fields and fields.get("status") in ("running", "interrupted"):
        status = "failed" if fields["status"] == "running" else "interrupted"
        write_json(marker, {**fields, "status": status, "ended": fields.get("ended") or _now(), "error": why})


def describe(marker: dict[str, Any] | None) -> str:
    """An earlier run as people read it: whose, which job, how it ended."""
    if not marker:
        return "an earlier run"
    who = f"party {marker['party']!r} of " if marker.get("party") else ""
    # Read under the lock, so a run without an end is one whose process died (killed, crashed).
    how = f"{marker.get('status', 'unknown')} {marker['ended']}" if marker.get("ended") else "stopped before it ended"
    return f"an earlier run ({who}job {marker.get('job', '?')!r}, {how})"


@contextmanager
def party_folder(folder: Path, *, job: str, party: str, role: str, replace: bool = False,
                 resume: bool = False) -> Iterator[Path]:
    """One party's run folder, for ``isthmus run``: the party's own, and never two runs mixed in it.

    A folder holding an earlier run of this party is refused unless ``replace`` (its files are removed
    first) or ``resume`` (they stay: checkpoints continue; a folder without checkpoints is refused); another
    party's run, or files isthmus did not write, are refused either way.
    """
    folder = Path(folder)
    with locked(folder):
        found = contents(folder)
        if found:
            marker = read_marker(folder / RUN_MARKER)
            if marker is None and _EVENTS not in found:
                raise ConfigError(f"{folder} holds files that isthmus did not write ({_listing(found)}); "
                                  "choose another --out")
            if marker and marker.get("party") not in (None, party):
                raise ConfigError(f"{folder} holds the run of party {marker['party']!r}, not of {party!r}; "
                                  "each party needs its own folder: choose another --out")
            if resume and marker and marker.get("job") not in (None, job):
                raise ConfigError(f"{folder} holds a run of job {marker['job']!r}, so job {job!r} cannot resume "
                                  "from it; choose another --out")
            if not resume:
                if not replace:
                    resumable = "--resume to continue it, " if (folder / _CHECKPOINTS).is_dir() else ""
                    raise ConfigError(f"{folder} holds {describe(marker)}; pass {resumable}--force to replace "
                                      "it, or choose another --out")
                clear(folder)
        if resume and not (folder / _CHECKPOINTS).is_dir():  # it ran again from scratch over the earlier run
            raise ConfigError(f"nothing to resume in {folder}: it holds no checkpoints (a horizontal aggregator "
                              "keeps them after each round); run without --resume (--force replaces an earlier run)")
        with recorded(folder / RUN_MARKER, job=job, party=party, role=role):
            yield folder


def check_owned(folder: Path, *, marker: str, owner: str, identity: dict[str, Any] | None = None,
                written_before: Callable[[Path], bool] = lambda _: False) -> None:
    """Refuse a folder that holds anything but an earlier run of ``owner`` (the caller holds its lock).

    An earlier run is one whose ``marker`` holds ``identity``, or that ``written_before`` recognises as
    written before the command left markers. ``owner`` names the command in the refusal.
    """
    found = contents(folder)
    earlier = read_marker(Path(folder) / marker)
    ours = earlier is not None and all(earlier.get(k) == v for k, v in (identity or {}).items())
    if found and not (ours or written_before(Path(folder))):
        raise ConfigError(f"{folder} holds files that {owner} did not write ({_listing(found)}); "
                          "choose another --out, or empty that folder")


@contextmanager
def owned_folder(folder: Path, *, marker: str, owner: str, identity: dict[str, Any],
                 written_before: Callable[[Path], bool] = lambda _: False) -> Iterator[Path]:
    """A folder a command owns (a demo): an earlier run of the same command is removed, then this one recorded."""
    with locked(folder):
        check_owned(folder, marker=marker, owner=owner, identity=identity, written_before=written_before)
        clear(folder)
        with recorded(Path(folder) / marker, **identity):
            yield Path(folder)


def _listing(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
