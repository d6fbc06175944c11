"""``isthmus query``: run the private cross-institution query service and ask it about applicants.

Exit codes of ``ask``: 0 every other institution answered; 3 the answer is partial (it says which
institutions are missing and why); 1 an error (malformed id, batch too large, service not running).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from isthmus.cli_errors import guard

query_app = typer.Typer(help="Private query: does an applicant already borrow elsewhere?", no_args_is_help=True,
                        pretty_exceptions_enable=False, add_completion=False)
console = Console()
PARTIAL_EXIT = 3

ConfigOpt = Annotated[Path, typer.Option("--config", help="The consortium's query configuration (YAML).", exists=True, dir_okay=False)]
PartyOpt = Annotated[str, typer.Option("--party", help="Which member this is (a name from the configuration).")]
StateOpt = Annotated[Optional[Path], typer.Option("--state-dir", help="The service's state folder [default: query-state/PARTY].")]


@query_app.command()
def serve(config: ConfigOpt, party: PartyOpt,
          table: Annotated[Optional[Path], typer.Option(help="This institution's loans table (CSV or Parquet); not for the aggregator.")] = None,
          state_dir: StateOpt = None,
          listen: Annotated[Optional[str], typer.Option(help="Bind address, if not the configured one (e.g. 0.0.0.0:7401).")] = None,
          refresh_seconds: Annotated[float, typer.Option(help="How often to check the table file for changes.")] = 10.0,
          workers: Annotated[Optional[int], typer.Option(help="Threads for curve operations [default: all cores].")] = None) -> None:
    """Run this member's query service until interrupted (SIGINT or SIGTERM)."""
    from isthmus.query.config import load_config
    from isthmus.query.runtime import serve as serve_party

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    guard(lambda: serve_party(load_config(config), party, _state(state_dir, party), stop, table=table, listen=listen,
                               refresh_seconds=refresh_seconds, workers=workers))


@query_app.command()
def ask(config: ConfigOpt, party: PartyOpt,
        ids: Annotated[Optional[list[str]], typer.Argument(help="Applicant ids.")] = None,
        ids_file: Annotated[Optional[Path], typer.Option("--file", help="A file with one id per line.", exists=True, dir_okay=False)] = None,
        state_dir: StateOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Ask the federation, through this institution's running service, about one or more applicants."""
    from isthmus.query.config import load_config
    from isthmus.query.control import ask_service, batch_to_json

    settings = guard(lambda: load_config(config))
    guard(lambda: settings.check_institution(party))
    asked = list(ids or []) + (ids_file.read_text(encoding="utf-8").splitlines() if ids_file else [])
    batch = guard(lambda: ask_service(_state(state_dir, party), asked, timeout=settings.answer_timeout * 4 + 600))
    if as_json:
        console.print_json(json.dumps(batch_to_json(batch)))
    else:
        decimals = settings.policy.amount_decimals
        table = Table("id", "other institutions with an active loan", "total amount")
        per_institution = settings.policy.mode == "per_institution"
        if per_institution:
            table.add_column("which")
        for answer in batch.answers:
            row = [answer.id, str(answer.institutions), str(answer.amount(decimals))]
            if per_institution:
                row.append(", ".join(name for name, active in sorted((answer.per_institution or {}).items()) if active) or "-")
            table.add_row(*row)
        console.print(table)
        style = "green" if batch.complete else "bold yellow"
        console.print(f"[{style}]{batch.coverage()}[/]")
    if not batch.complete:
        raise typer.Exit(PARTIAL_EXIT)


@query_app.command()
def refresh(party: PartyOpt, state_dir: StateOpt = None) -> None:
    """Reload this institution's loans table now and wait until the aggregator holds the new version."""
    from isthmus.query.control import control_call

    console.print_json(json.dumps(guard(lambda: control_call(_state(state_dir, party), "refresh"))))


@query_app.command()
def status(party: PartyOpt, state_dir: StateOpt = None) -> None:
    """What a running service holds: table version and publication, or the aggregator's tables."""
    from isthmus.query.control import control_call

    console.print_json(json.dumps(guard(lambda: control_call(_state(state_dir, party), "status", timeout=30))))


def _state(state_dir: Path | None, party: str) -> Path:
    return state_dir if state_dir is not None else Path("query-state") / party


