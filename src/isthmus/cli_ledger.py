"""``isthmus ledger``: show, verify and export the ledgers the parties keep (see docs/incentives.md).

A LEDGER argument may be a ledger file, a party's certificate folder holding one, a federation's
certificate folder (every party's ledger in it), a launch folder (its certificate folder) or a party's
run folder (the ledger its record step appended to). ``verify`` trusts only the signing keys pinned in
the federation file given with ``--federation``; without it, only when every ledger lies in one
certificate folder is that folder's federation file taken. Exit code of ``verify``: 0 every replica
is sound and they agree, 1 otherwise (each finding is printed). With ``--node URL``, ``show`` and
``verify`` are thin clients of that node's ``GET /v1/ledger``: the node reads its own replica and
verifies it against the keys pinned in its key folder; ``verify`` then has the node ask its peers'
nodes about their replicas (``GET /v1/ledger/peers``), and exits 3 when a peer did not answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from isthmus.cli_errors import guard
from isthmus.errors import ConfigError
from isthmus.files import write_whole

if TYPE_CHECKING:
    from isthmus.node.client import NodeClient

ledger_app = typer.Typer(help="The tamper-evident ledger of jobs and contributions every party keeps.",
                         no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console()

LedgerArg = Annotated[Path, typer.Argument(help="A ledger file, the key folder holding it or a party's run folder.",
                                           exists=True)]
LedgerOptArg = Annotated[Path | None, typer.Argument(
    help="A ledger file, the key folder holding it or a party's run folder (or --node).", exists=True,
    show_default=False)]
LedgersOptArg = Annotated[list[Path] | None, typer.Argument(
    help="Ledger files, key folders holding one, parties' run folders, a certificate folder or a launch folder (every "
         "party's ledger in it); or --node.",
    exists=True, show_default=False)]
NodeOpt = Annotated[str | None, typer.Option(
    "--node", help="Ask this node's API (URL) for its own ledger instead of reading files: the node reads its replica "
                   "and verifies it against the keys pinned in its key folder (verify: and compares it with its "
                   "peers' replicas through their nodes).")]
TokenOpt = Annotated[Path | None, typer.Option(help="A file holding the node's API token (with --node).")]
FederationOpt = Annotated[Path | None, typer.Option(
    help="The federation file pinning the parties' signing keys, as the federation distributed it. Without it, "
         "the ledgers must all lie in one certificate folder (<certs>/<party>/ledger.sqlite), and its "
         "federation.json is used.", exists=True, dir_okay=False)]


@ledger_app.command()
def show(ledger: LedgerOptArg = None, node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """The records of one party's ledger, and the contributions each holds (nothing is verified: see verify)."""
    if node is not None:
        guard(lambda: print_records(_node(node, token_file, ledger).ledger(), console))
    else:
        guard(lambda: print_ledger(_one(_required(ledger)), console))


@ledger_app.command()
def verify(ledgers: LedgersOptArg = None, federation: FederationOpt = None, node: NodeOpt = None,
           token_file: TokenOpt = None) -> None:
    """Check every replica's chain and signatures against the pinned keys, and that the replicas agree."""
    if node is None:
        if not guard(lambda: print_verification(resolve_ledgers(_required(ledgers)), federation, console)):
            raise typer.Exit(1)
        return
    client = guard(lambda: _node(node, token_file, ledgers or federation))
    sound = guard(lambda: print_node_verification(client.ledger(), node, console))
    peers = guard(lambda: print_peer_replicas(client.ledger_peers(), console))
    if not sound or peers:
        raise typer.Exit(1 if not sound else peers)


@ledger_app.command()
def export(ledger: LedgerArg,
           out: Annotated[Path | None, typer.Option(help="Write the JSON here instead of printing it.")] = None) -> None:
    """One party's ledger as JSON: each record's number, hash, body and signatures (hex)."""
    from isthmus.incentive.ledger import Ledger

    def dump() -> str:
        with Ledger(_one(ledger), read_only=True) as opened:
            records = [{"seq": e.seq, **e.record.to_dict()} for e in opened.entries()]
            return json.dumps({"owner": opened.owner, "records": records}, indent=2)

    text = guard(dump)
    if out:
        guard(lambda: write_whole(out, (text + "\n").encode()))
        console.print(f"wrote {out}")
    else:
        typer.echo(text)


# --- shared with the demo ------------------------------------------------------------------------


def resolve_ledgers(paths: list[Path]) -> list[Path]:
    """The ledger files that ``paths`` name: ledger files, key folders, certificate folders, and what a user
    holds after ``isthmus launch`` or ``run``: the launch folder (its certificates) or a party's run folder
    (the ledger its record step names)."""
    from isthmus.incentive.ledger import LEDGER_FILE
    from isthmus.jobs.launcher import CERTS
    from isthmus.jobs.steps.record import RECORD_FILE
    from isthmus.transport.certs import FEDERATION_FILE

    found = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif (path / LEDGER_FILE).is_file():
            found.append(path / LEDGER_FILE)
        elif (path / FEDERATION_FILE).is_file():
            found += sorted(path.glob(f"*/{LEDGER_FILE}"))
        elif (path / CERTS / FEDERATION_FILE).is_file():
            found += sorted(path.glob(f"{CERTS}/*/{LEDGER_FILE}"))
        elif (path / RECORD_FILE).is_file():
            found.append(_recorded_ledger(path / RECORD_FILE))
        else:
            raise ConfigError(f"no ledger at {path}: give a ledger file, a party's key folder, a certificate folder, "
                              "a launch folder or a party's run folder after its record step")
    if not found:
        raise ConfigError(f"no ledger in {', '.join(map(str, paths))}")
    return found


def _recorded_ledger(record: Path) -> Path:
    """The ledger a run's record step appended to, as its record file names it."""
    try:
        ledger = json.loads(record.read_text(encoding="utf-8"))["ledger"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{record} does not name its ledger ({exc})") from None
    if not isinstance(ledger, str) or not Path(ledger).is_file():
        raise ConfigError(f"{record} names the ledger {ledger!r:.200}, which is not a file (moved since the run?)")
    return Path(ledger)


def print_verification(ledgers: list[Path], federation: Path | None, out: Console) -> bool:
    from isthmus.transport.keyfiles import load_pinned_keys
    from isthmus.incentive.verify import verify_ledgers

    federation = federation or default_federation(ledgers)
    result = verify_ledgers(ledgers, load_pinned_keys(federation))
    for path, (owner, count) in result.replicas.items():
        out.print(f"  {owner:<12} {count} record(s)  {path}", soft_wrap=True)
    if result.ok:
        out.print(f"[green]ledger verified[/]: {len(ledgers)} replica(s); every chain intact, every record signed by "
                  f"all its parties (keys pinned in {federation}), replicas agree", soft_wrap=True)
    else:
        out.print(f"[bold red]ledger verification failed[/]: {len(result.findings)} finding(s)")
        for finding in result.findings:
            out.print(f"  - {finding}", markup=False, soft_wrap=True)
    return result.ok


def default_federation(ledgers: list[Path]) -> Path:
    """The federation file of the one certificate folder holding every ledger; otherwise ask for one.

    Ledgers gathered from several machines may sit beside any file called federation.json, and the
    keys a verifier trusts must not come with what it verifies: so no guess beyond that one layout.
    """
    from isthmus.transport.certs import FEDERATION_FILE

    folders = sorted({str(path.resolve().parent.parent) for path in ledgers})
    candidate = Path(folders[0]) / FEDERATION_FILE
    if len(folders) != 1 or not candidate.is_file():
        raise ConfigError(f"the ledgers are not all in one certificate folder holding a {FEDERATION_FILE} "
                          f"({', '.join(folders)}); give the federation file that pins the parties' signing keys, "
                          "as the federation distributed it: --federation PATH")
    return candidate


def print_ledger(path: Path, out: Console) -> None:
    from isthmus.incentive.ledger import Ledger
    from isthmus.incentive.summary import record_rows

    with Ledger(path, read_only=True) as ledger:
        print_records({"party": ledger.owner, "records": record_rows(ledger.entries())}, out, where=str(path))


def print_records(ledger: dict, out: Console, where: str | None = None) -> None:
    """A replica's rows (:func:`isthmus.incentive.summary.record_rows`), read from a file or sent by a node."""
    table = Table(title=f"ledger of {ledger['party']}" + (f" ({where})" if where else ""))
    for column in ("#", "created", "job", "parties", "signed", "hash"):
        table.add_column(column)
    for row in ledger["records"]:
        if "malformed" in row:
            table.add_row(str(row["seq"]), "-", f"[red]malformed: {escape(row['malformed'])}[/]", "", "",
                          row["hash"][:16])
            continue
        parties = ", ".join(row["parties"]) + "".join(f", [dim]{p} absent[/]" for p in row["absent"])
        table.add_row(str(row["seq"]), row["created"], row["job"], parties, f"{row['signed']}/{len(row['parties'])}",
                      row["hash"][:16])
    out.print(table)
    for row in ledger["records"]:
        report = row.get("contributions")
        if report:
            out.print(contribution_table(report, title=f"record {row['seq']}: contributions ({report['method']}, "
                                                       f"{report['metric']})"))


def print_node_verification(ledger: dict, node: str, out: Console) -> bool:
    """The node's own verdict on its replica (it holds the pinned keys; the CLI trusts its own node)."""
    count = len(ledger["records"])
    if ledger["verified"] is None:
        out.print(f"node {ledger['party']} ({node}) holds no ledger yet: nothing to verify")
    elif ledger["verified"]:
        out.print(f"[green]ledger verified[/] by node {ledger['party']} ({node}): {count} record(s); the chain is "
                  "intact and every record is signed by all its parties (keys pinned in the node's key folder)")
    else:
        out.print(f"[bold red]ledger verification failed[/] at node {ledger['party']} ({node}): "
                  f"{len(ledger['findings'])} finding(s)")
        for finding in ledger["findings"]:
            out.print(f"  - {finding}", markup=False, soft_wrap=True)
    return ledger["verified"] is not False


def print_peer_replicas(answer: dict, out: Console) -> int:
    """Each peer's replica against the node's (``GET /v1/ledger/peers``); the exit code: 0 every peer agrees,
    1 one differs, 3 one did not answer or could not be compared (and none differs)."""
    peers = answer["peers"]
    if not peers:
        out.print(f"node {answer['party']} has no peers to compare its replica with")
        return 0
    out.print(f"the peers' replicas, as node {answer['party']} asked them (records naming both must be in both):")
    colour = {"agrees": "green", "differs": "bold red"}
    for peer, report in sorted(peers.items()):
        out.print(f"  {escape(peer):<12} [{colour.get(report['status'], 'yellow')}]{report['status']}[/]: "
                  f"{escape(report['detail'])}", soft_wrap=True)
    statuses = {report["status"] for report in peers.values()}
    return 1 if "differs" in statuses else 0 if statuses == {"agrees"} else 3


def contribution_table(report: dict, *, title: str) -> Table:
    table = Table(title=title)
    for column in ("party", "value", "share", "reward", "leave-one-out"):
        table.add_column(column, justify="right" if column != "party" else "left")
    loo = report.get("leave_one_out") or {}
    for party in sorted(report["values"], key=lambda p: -report["values"][p]):
        table.add_row(party, f"{report['values'][party]:+.4f}", f"{report['shares'][party]:.1%}",
                      f"{report['rewards'][party]:.2f}", f"{loo[party]:+.4f}" if party in loo else "-")
    table.caption = (f"{report['metric']}: {report['empty_value']:.4f} with no party's data, "
                     f"{report['grand_value']:.4f} with everyone's; budget {report['budget']:g}")
    return table


def _node(node: str, token_file: Path | None, files: object) -> NodeClient:
    """The node's API client; ``files``: what else was given."""
    from isthmus.node.client import NodeClient

    if files:
        raise ConfigError("give ledger files or --node URL, not both")
    return NodeClient(node, token_file=token_file)


def _required(paths):
    if not paths:
        raise ConfigError("give a ledger (a file, a party folder or a certificate folder), or --node URL")
    return paths


def _one(path: Path) -> Path:
    (found, *others) = resolve_ledgers([path])
    if others:
        raise ConfigError(f"{path} holds several ledgers; name one of them: "
                          f"{', '.join(str(ledger) for ledger in (found, *others))}")
    return found


