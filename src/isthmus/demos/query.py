"""``isthmus demo query``: five lenders and an aggregator as separate processes over mutual TLS.

Generates the lenders' loans tables, starts the six services, asks (as bank1) about applicants
whose answers are known, prints each answer beside the plaintext truth, then stops one lender and
asks again to show that a partial answer says so. Returns 0 when every answer matches the truth.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table

from isthmus.demos.folder import demo_folder
from isthmus.query.control import ask_service
from isthmus.query.launch import prepare_local_consortium
from isthmus.query.synthetic import generate_loans, truth, write_tables

INSTITUTIONS = [f"bank{i}" for i in range(1, 6)]
ASKER = "bank1"
CUSTOMERS = 2000


def run_demo(out_dir: Path, *, console: Console | None = None) -> int:
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo query", console, job_file="query.yaml",
                     job_line="consortium: demo-lenders") as folder:
        return _run(folder, console)


def _run(out_dir: Path, console: Console) -> int:
    tables = generate_loans(INSTITUTIONS, CUSTOMERS, seed=7)
    paths = write_tables(tables, out_dir / "tables")
    applicants = _interesting_applicants(tables)
    console.print(f"loans tables of {len(INSTITUTIONS)} institutions ({CUSTOMERS} customers each) in {out_dir / 'tables'}")
    with prepare_local_consortium(out_dir, paths, consortium="demo-lenders") as consortium:
        consortium.start_all()
        console.print("started 6 services (5 lenders, 1 aggregator) over mutual TLS; waiting for setup ...")
        consortium.wait_ready(timeout=300)
        asker_state = consortium.state_dir(ASKER)
        batch = ask_service(asker_state, applicants)
        all_right = _show(console, f"{ASKER} asks about {len(applicants)} applicants", batch, truth(tables, ASKER, applicants))

        offline = INSTITUTIONS[-1]
        consortium.stop(offline)
        partial = ask_service(asker_state, applicants[:3])
        remaining = {name: frame for name, frame in tables.items() if name != offline}
        all_right &= _show(console, f"after stopping {offline}", partial, truth(remaining, ASKER, applicants[:3]))
        all_right &= not partial.complete and offline in partial.unanswered
    console.print(f"logs, audit trails and query logs: {out_dir / 'state'}")
    console.print("[green]every answer matches the plaintext truth[/]" if all_right else "[bold red]MISMATCH[/]")
    return 0 if all_right else 1


def _interesting_applicants(tables: dict) -> list[str]:
    """Applicants with active loans at 0, 1, 2, ... other lenders, one with closed loans only, one unknown."""
    candidates = sorted({c for frame in tables.values() for c in frame["customer_id"]})
    known_elsewhere = {c for name, frame in tables.items() if name != ASKER for c in frame["customer_id"]}
    by_count: dict[int, str] = {}  # count 0: a customer of no other lender
    closed_only = []
    for customer, (count, _) in zip(candidates, truth(tables, ASKER, candidates)):
        if count or customer not in known_elsewhere:
            by_count.setdefault(count, customer)
        elif not closed_only:
            closed_only.append(customer)
    return [by_count[k] for k in sorted(by_count)] + closed_only + ["NEW-APPLICANT-1"]


def _show(console: Console, title: str, batch, expected: list[tuple[int, int]]) -> bool:
    view = Table("applicant", "answer: lenders", "answer: amount", "truth: lenders", "truth: amount", "", title=title)
    all_right = True
    for answer, (count, exposure) in zip(batch.answers, expected):
        right = (answer.institutions, answer.exposure) == (count, exposure)
        all_right &= right
        view.add_row(answer.id, str(answer.institutions), f"{answer.amount(2):,}", str(count), f"{Decimal(exposure).scaleb(-2):,}",
                     "[green]ok[/]" if right else "[red]differs[/]")
    console.print(view)
    console.print(("[green]" if batch.complete else "[bold yellow]") + batch.coverage() + "[/]")
    return all_right
