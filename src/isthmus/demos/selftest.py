"""`isthmus selftest`: guest, host and arbiter as three processes over mutual TLS on loopback."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from isthmus.demos.folder import demo_folder
from isthmus.jobs.events import read_events
from isthmus.jobs.launcher import launch
from isthmus.jobs.local import loopback_parties, write_job


def run_selftest(out_dir: Path, *, key_bits: int = 2048, console: Console | None = None) -> dict:
    console = console or Console()
    with demo_folder(out_dir, "isthmus selftest", console, job_file="selftest.yaml", job_line="job: selftest") as folder:
        return _run(folder, key_bits, console)


def _run(folder: Path, key_bits: int, console: Console) -> dict:
    job = {
        "job": "selftest",
        "record": False,  # a connectivity check, not an outcome for the ledger
        "parties": loopback_parties({"guest": {}, "host": {}, "arbiter": {}}),
        "steps": [{"selftest": {"key_bits": key_bits}}],
    }
    run = folder / "run"
    result = launch(write_job(folder / "selftest.yaml", job), run, console=console)
    timings = {}
    for party in ("arbiter", "guest", "host"):
        events = [e for e in read_events(run / party / "events.jsonl") if e.get("step") == "selftest" and "values" in e]
        timings[party] = {k: round(v, 4) for k, v in events[-1].items() if k.endswith("_s")} if events else {}
    console.print(f"[green]selftest passed[/]: the arbiter decrypted the guest+host encrypted sum "
                  f"({key_bits}-bit Paillier, mutual TLS) in {result.seconds:.1f} s")
    for party, values in timings.items():
        console.print(f"  {party:<8} {values}")
    console.print("audit logs:")
    for party in ("guest", "host", "arbiter"):
        console.print(f"  {run / party / 'audit.jsonl'}")
    return timings
