"""The `isthmus` command: certificates, running one party, launching a whole job locally, demos."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.console import Console

from isthmus.cli_errors import fail, guard
from isthmus.cli_keys import ca_app, keys_app
from isthmus.cli_ledger import ledger_app
from isthmus.cli_metrics import metrics_table
from isthmus.cli_node import job_app, model_app, node_app
from isthmus.cli_query import query_app
from isthmus.processes import interrupt_once

app = typer.Typer(help="isthmus: federated learning for data islands.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
demo_app = typer.Typer(help="Embedded examples that need no file from you.", invoke_without_command=True)
app.add_typer(demo_app, name="demo")
app.add_typer(query_app, name="query", help="Private cross-institution queries (serve, ask, refresh, status).")
app.add_typer(ledger_app, name="ledger")
app.add_typer(keys_app, name="keys")
app.add_typer(ca_app, name="ca")
app.add_typer(node_app, name="node")
app.add_typer(job_app, name="job")
app.add_typer(model_app, name="model")
console = Console()
T = TypeVar("T")

JobArg = Annotated[Path, typer.Argument(help="The job's YAML file.", exists=True, dir_okay=False)]


@app.command()
def certs(out: Annotated[Path, typer.Argument(help="Folder for the CA and the party certificates.")],
          parties: Annotated[list[str], typer.Argument(help="Party names, one certificate each.")]) -> None:
    """Create a federation CA and one certificate per party (private keys are written mode 0600)."""
    from isthmus.transport.certs import CA_CERT, CA_KEY, create_federation

    for taken in (out / CA_KEY, out / CA_CERT):  # a new CA would cut every member of the old one out
        if taken.exists():
            fail(f"{out} holds a federation's certificates already ({taken}); choose another folder for a new "
                 "federation")
    files = guard(lambda: create_federation(out, parties))
    for party, tls in files.items():
        console.print(f"{party}: {tls.cert}")
    console.print(f"CA: {out / 'ca.pem'} — keep {out / 'ca.key'} offline; give each party only its own folder.")


@app.command()
def run(job: JobArg,
        party: Annotated[str, typer.Option(help="Which party of the job this process is.")],
        certs: Annotated[Path, typer.Option(help="This party's key folder (`isthmus keys init` + `keys install`, or one party's share of `isthmus certs`).")],
        out: Annotated[Optional[Path], typer.Option(help="Run directory; this party writes OUT/<party>/.",
                                                    show_default="runs/<job>")] = None,
        force: Annotated[bool, typer.Option("--force", help="Replace an earlier run of this party in OUT/<party>/.")] = False,
        data: Annotated[Optional[Path], typer.Option(help="This party's table, instead of the path the job gives.",
                                                     exists=True, dir_okay=False)] = None,
        test: Annotated[Optional[Path], typer.Option(help="This party's test table, instead of the job's.",
                                                     exists=True, dir_okay=False)] = None,
        listen: Annotated[Optional[str], typer.Option(help="Bind address if not the job's address.")] = None,
        resume: Annotated[bool, typer.Option(help="Horizontal aggregator: continue after the last round "
                                                  "checkpointed in OUT/<party>/checkpoints.")] = False,
        record: Annotated[Optional[bool], typer.Option("--record/--no-record", help="Endorse the job's outcome on "
                                                       "every party's ledger (default: the job's `record`).")] = None,
        compute: Annotated[Optional[str], typer.Option(help="Where this party's heavy per-row work runs: `local` or "
                                                       "`ray://HOST:PORT` (its own Ray cluster; needs isthmus[ray]). "
                                                       "Other parties do not see it.",
                                                       show_default="$ISTHMUS_COMPUTE, else local")] = None,
        ) -> None:
    """Run one party's side of a job: how parties on different machines run it.

    Each party writes only OUT/<party>/, so parties on one machine may share OUT.
    """
    from isthmus.jobs.spec import load_job

    spec = guard(lambda: load_job(job))  # before the heavy imports, so a mistake is reported at once
    guard(lambda: spec.party(party))
    run_dir = (out or Path("runs") / spec.name) / party
    from isthmus.jobs.party_process import end_process, run_party_process

    _show_progress()
    try:
        guard(lambda: run_party_process(spec, party, certs_dir=certs, run_dir=run_dir, listen=listen, resume=resume,
                                        record=record, replace=force, data=data, test=test,
                                        compute=compute))
    except KeyboardInterrupt:
        console.print(f"party {party} interrupted; its run in {run_dir} is marked so", soft_wrap=True, markup=False)
        end_process(130)
    console.print(f"party {party} finished; results in {run_dir}", soft_wrap=True, markup=False)
    _print_metrics({party: run_dir})


def _show_progress() -> None:
    """This party's progress on stdout as it runs, the lines of its party.log (steps, PSI stages, epochs and
    losses): a job of an hour said nothing until it ended. A failure is left to the one "error:" line on stderr."""
    import logging

    def progress(record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR and getattr(record, "event", {}).get("status") != "failed"

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(progress)
    logging.getLogger("isthmus").addHandler(handler)


@app.command()
def launch(job: JobArg,
           out: Annotated[Path, typer.Option(help="Run directory; each party writes OUT/<party>/. An earlier "
                                                  "launch in it is replaced.")] = Path("runs/launch"),
           compute: Annotated[Optional[list[str]], typer.Option(help="PARTY=ADDRESS: that party's own compute "
                                                                "backend (`ray://HOST:PORT`), as `isthmus run "
                                                                "--compute`; repeatable.")] = None) -> None:
    """Run every party as its own process on loopback with mutual TLS (certificates made for the run)."""
    _check_job(job)
    from isthmus.jobs.launcher import launch as launch_job

    backends = dict(_party_value(item) for item in compute or [])
    result = _stoppable(out, lambda: launch_job(job, out, console=console, compute=backends))
    _print_results(result.out_dir, result.spec, result.seconds)


@app.command()
def parity(job: JobArg,
           out: Annotated[Path, typer.Option(help="Run directory; parity.json lands here. An earlier run in it is "
                                                  "replaced.")] = Path("runs/parity")) -> None:
    """Run the federated job, then a centralised model on the POOLED data, and compare.

    Pooling the parties' data is for local benchmarking only: in a real federation no one may do it.
    """
    _check_job(job)
    from isthmus.jobs.parity import run_parity

    report = _stoppable(out, lambda: run_parity(job, out, console=console))
    console.print_json(json.dumps(report))


def _stoppable(out: Path, launching: Callable[[], T]) -> T:
    """A launch or demo that Ctrl-C or SIGTERM stops says so (it ended with no word), having stopped its parties."""
    try:
        return guard(launching)
    except KeyboardInterrupt:
        console.print(f"interrupted: every party was stopped, and each of its runs in {out} says so",
                      soft_wrap=True, markup=False)
        raise typer.Exit(130) from None


@app.command()
def selftest(out: Annotated[Path, typer.Option(help="Its folder, started afresh on every run.")] = Path("runs/selftest"),
             key_bits: Annotated[int, typer.Option(help="Paillier key size.")] = 2048) -> None:
    """Three parties as separate processes over mutual TLS: an encrypted sum the arbiter checks."""
    from isthmus.demos.selftest import run_selftest

    guard(lambda: run_selftest(out, key_bits=key_bits, console=console))


@dataclass(frozen=True)
class DemoSettings:
    out: Path
    key_bits: int | None  # None: each demo's own


_OUT_HELP = "Where the demos write; each owns OUT/<demo>/ and starts it afresh on every run."
_KEY_BITS_HELP = "Paillier key size of the vertical, secureboost, ftl, nn, ledger, federation and board demos " \
                 "(1024 is quicker, for a try only)."
#: the same options after the demo's name (`isthmus demo federation --key-bits 1024`, as people type it), where
#: they win over those given before it
DemoOut = Annotated[Optional[Path], typer.Option("--out", help=_OUT_HELP, show_default="runs/demo")]
DemoKeyBits = Annotated[Optional[int], typer.Option("--key-bits", help=_KEY_BITS_HELP, min=1024,
                                                    show_default="2048; nn, ledger and board 1024")]


@demo_app.callback()
def demo(ctx: typer.Context,
         out: Annotated[Path, typer.Option(help=_OUT_HELP)] = Path("runs/demo"),
         key_bits: Annotated[Optional[int], typer.Option(help=_KEY_BITS_HELP,
                                                         show_default="2048; nn, ledger and board 1024", min=1024)] = None) -> None:
    """Without a sub-command: the vertical demo."""
    ctx.obj = DemoSettings(out, key_bits)
    if ctx.invoked_subcommand is None:
        vertical(ctx)


def _settings(ctx: typer.Context, out: Path | None, key_bits: int | None = None) -> DemoSettings:
    return DemoSettings(out or ctx.obj.out, key_bits or ctx.obj.key_bits)


@demo_app.command()
def vertical(ctx: typer.Context, out: DemoOut = None, key_bits: DemoKeyBits = None) -> None:
    """Breast-cancer data split between a bank-like guest and a host: PSI, vertical LR, evaluation, parity."""
    from isthmus.demos.vertical import run_vertical_demo

    settings = _settings(ctx, out, key_bits)
    folder = settings.out / "vertical"
    _stoppable(folder, lambda: run_vertical_demo(folder, console=console, **_key_bits(settings)))


@demo_app.command()
def horizontal(ctx: typer.Context, out: DemoOut = None) -> None:
    """Breast-cancer rows over four client processes: secure FedAvg, one client crashing mid-run, parity."""
    from isthmus.demos.horizontal import run_horizontal_demo

    settings = _settings(ctx, out)
    folder = settings.out / "horizontal"
    _stoppable(folder, lambda: run_horizontal_demo(folder, console=console))


@demo_app.command("nn-horizontal")
def nn_horizontal(ctx: typer.Context, out: DemoOut = None) -> None:
    """Digit images over five client processes with skewed labels: a small CNN, secure FedAvg, parity."""
    from isthmus.demos.nn_horizontal import run_nn_horizontal_demo

    settings = _settings(ctx, out)
    folder = settings.out / "nn-horizontal"
    _stoppable(folder, lambda: run_nn_horizontal_demo(folder, console=console))


@demo_app.command()
def secureboost(ctx: typer.Context, out: DemoOut = None, key_bits: DemoKeyBits = None) -> None:
    """The vertical demo's split with empty cells: PSI, vertical SecureBoost (Paillier), evaluation, parity."""
    from isthmus.demos.secureboost import run_secureboost_demo

    settings = _settings(ctx, out, key_bits)
    folder = settings.out / "secureboost"
    _stoppable(folder, lambda: run_secureboost_demo(folder, console=console, **_key_bits(settings)))


@demo_app.command()
def nn(ctx: typer.Context, out: DemoOut = None, key_bits: DemoKeyBits = None) -> None:
    """default_credit over a guest and two host processes: PSI, a split neural network with a Paillier-protected
    interactive layer, evaluation, parity with PyTorch on pooled columns (1024-bit keys unless --key-bits)."""
    from isthmus.demos.nn import run_nn_demo

    settings = _settings(ctx, out, key_bits)
    folder = settings.out / "nn"
    _stoppable(folder, lambda: run_nn_demo(folder, console=console, **_key_bits(settings)))


@demo_app.command()
def ftl(ctx: typer.Context, out: DemoOut = None, key_bits: DemoKeyBits = None) -> None:
    """Transfer learning: a guest with labels, a host with other columns and mostly other customers, which it labels."""
    from isthmus.demos.ftl import run_ftl_demo

    settings = _settings(ctx, out, key_bits)
    folder = settings.out / "ftl"
    _stoppable(folder, lambda: run_ftl_demo(folder, console=console, **_key_bits(settings)))


@demo_app.command()
def ledger(ctx: typer.Context, out: DemoOut = None, key_bits: DemoKeyBits = None) -> None:
    """A guest and three hosts (one holding only noise): contributions, the ledger, verify, a tampered copy caught."""
    from isthmus.demos.ledger import run_ledger_demo

    settings = _settings(ctx, out, key_bits)
    folder = settings.out / "ledger"
    _stoppable(folder, lambda: run_ledger_demo(folder, console=console, **_key_bits(settings)))


@demo_app.command()
def federation(ctx: typer.Context, out: DemoOut = None, key_bits: DemoKeyBits = None) -> None:
    """Three nodes as processes: the host proposes PSI + vertical LR, the guest approves, publishes and predicts
    online; one proposal refused."""
    from isthmus.demos.federation import run_federation_demo

    settings = _settings(ctx, out, key_bits)
    folder = settings.out / "federation"
    _stoppable(folder, lambda: run_federation_demo(folder, console=console, **_key_bits(settings)))


@demo_app.command()
def board(ctx: typer.Context,
          port: Annotated[int, typer.Option(help="The guest node's API and board port on 127.0.0.1.",
                                            min=1, max=65535)] = 8700,
          out: DemoOut = None, key_bits: DemoKeyBits = None) -> None:
    """Three nodes as processes, one finished job (metrics, audit, ledger record) and one proposal waiting:
    the guest's web board on http://127.0.0.1:PORT/ until Ctrl-C (1024-bit keys unless --key-bits)."""
    from isthmus.demos.board import run_board_demo

    settings = _settings(ctx, out, key_bits)
    guard(lambda: run_board_demo(settings.out / "board", port, console=console, **_key_bits(settings)))


@demo_app.command()
def query(ctx: typer.Context, out: DemoOut = None) -> None:
    """Five lenders' loans tables, their query services as processes; asks with known answers."""
    from isthmus.demos.query import run_demo

    settings = _settings(ctx, out)
    folder = settings.out / "query"
    code = _stoppable(folder, lambda: run_demo(folder, console=console))
    if code:
        raise typer.Exit(code)


def _party_value(item: str) -> tuple[str, str]:
    party, sep, value = item.partition("=")
    if not (sep and party and value):
        fail(f"--compute takes PARTY=ADDRESS (host=ray://10.0.0.5:10001), not {item!r}")
    return party, value


def _key_bits(settings: DemoSettings) -> dict:
    return {} if settings.key_bits is None else {"key_bits": settings.key_bits}


def _check_job(job: Path) -> None:
    """Read the job file before the heavy imports, so a mistake in it is reported at once."""
    from isthmus.jobs.spec import load_job

    guard(lambda: load_job(job))


def _print_results(out_dir: Path, spec, seconds: float) -> None:
    """Where each party's results are, and the headline metrics of every party that evaluated (a horizontal
    job's clients too, not only a guest), one row each; the curves stay in their metrics.json."""
    console.print(f"job {spec.name!r} finished in {seconds:.1f} s")
    for party in sorted(spec.parties):
        console.print(f"  {party:<10} {out_dir / party}")
    _print_metrics({party: out_dir / party for party in sorted(spec.parties)})


def _print_metrics(run_dirs: dict[str, Path]) -> None:
    evaluated = {}
    for party, run_dir in run_dirs.items():
        path = run_dir / "metrics.json"
        report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if isinstance(report.get("metrics"), dict):
            evaluated[party] = report
    if evaluated:
        console.print(metrics_table(evaluated))


def main() -> None:
    # Every command stops on SIGTERM (kill, systemd, docker, schedulers) as on Ctrl-C: a party tells its peers
    # and marks its run, a launch stops its parties; commands that serve (node, query, board) set their own.
    interrupt_once()
    app(prog_name="isthmus")


if __name__ == "__main__":
    sys.exit(main())
