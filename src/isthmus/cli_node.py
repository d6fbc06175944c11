"""``isthmus node start`` (each party's long-running service) and ``isthmus job ...`` (its thin clients).

Every ``job`` command talks to a node's local HTTP API (``--node URL``, default ``$ISTHMUS_NODE`` or
http://127.0.0.1:8700); see docs/node.md.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from isthmus.cli_errors import fail, guard

node_app = typer.Typer(help="This party's node: its keys, catalogue, policy and consent to jobs.",
                       no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
job_app = typer.Typer(help="Jobs through a node: propose, approve or refuse, follow, cancel.",
                      no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
model_app = typer.Typer(help="Online serving: publish a trained vertical model at its guest's node, predict.",
                        no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

NodeOpt = Annotated[Optional[str], typer.Option("--node", help="The node's API URL (default: $ISTHMUS_NODE or "
                                                               "http://127.0.0.1:8700).")]
TokenOpt = Annotated[Optional[Path], typer.Option(help="A file holding the API token (when the node asks for one).")]
IdArg = Annotated[str, typer.Argument(help="The job's id (from `isthmus job list`), or its first characters "
                                             "(at least 4) when they name one job.")]


def _client(node: str | None, token_file: Path | None):
    from isthmus.node.client import NodeClient

    return NodeClient(node, token_file=token_file)


def _for_job(job_id: str, node: str | None, token_file: Path | None):
    """The node's client and the whole id of the job ``job_id`` names there."""
    client = _client(node, token_file)
    return client, guard(lambda: client.job_id(job_id))


@node_app.command("start")
def node_start(config: Annotated[Path, typer.Option(help="node.yaml", exists=True, dir_okay=False)]) -> None:
    """Run this party's node until interrupted: peers over mutual TLS, the HTTP API on its address."""
    import logging

    from isthmus.node.config import load_node_config
    from isthmus.node.service import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loaded = guard(lambda: load_node_config(config))
    console.print(f"node {loaded.party} starting: API http://{loaded.options.api.listen}, peers on "
                  f"{loaded.members[loaded.party]}", markup=False)
    guard(lambda: serve(loaded))


@node_app.command("status")
def node_status(node: NodeOpt = None, token_file: TokenOpt = None,
                peers: Annotated[bool, typer.Option(help="Ping every member's node (all at once); exit 3 if one "
                                                         "does not answer.")] = True) -> None:
    """This node's identity, certificate and jobs, and which members' nodes answer now."""
    status = guard(lambda: _client(node, token_file).status(peers=peers))
    cert = status["certificate"]
    console.print(f"node {status['party']}: approval {status['approval']}; catalogue: "
                  f"{', '.join(status['catalogue']) or 'empty'}", markup=False)
    console.print(f"certificate valid until {cert['valid_until'][:10]} ({cert['days_left']} days)"
                  + (": renew it (`isthmus ca sign --renew`)" if cert["renew"] else ""), markup=False)
    if cert["installed_until"]:
        console.print(f"a renewed certificate (valid until {cert['installed_until'][:10]}) is installed: restart "
                      "the node to present it", markup=False)
    keys = status["tls_keys"]
    if keys["unpinned"]:
        console.print(f"federation.json pins no TLS key for {', '.join(keys['unpinned'])}: a certificate the CA signs "
                      "under that name is accepted (each member's next `ca sign --renew` pins its key)", markup=False)
    if keys["rekey_pending"]:
        console.print("a re-key waits for its certificate: install it (`isthmus keys install --cert`), then restart "
                      "the node", markup=False)
    console.print("jobs: " + (", ".join(f"{count} {state}" for state, count in sorted(status["jobs"].items()))
                              or "none"), markup=False)
    silent = [name for name, peer in status.get("peers", {}).items() if not peer["answers"]]
    for name, peer in status.get("peers", {}).items():
        console.print(f"  {name:<16} {peer['address']:<24} {'answers' if peer['answers'] else 'no answer to a ping'}",
                      markup=False)
    if silent:
        raise typer.Exit(3)


@job_app.command("submit")
def job_submit(job: Annotated[Path, typer.Argument(help="The proposal: a job file whose parties name table aliases.",
                                                   exists=True, dir_okay=False)],
               node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """Propose a job to its participants through this node; prints the job's id."""
    from isthmus.yaml_files import load_yaml

    proposal = guard(lambda: load_yaml(job, what="job file"))
    job_id = guard(lambda: _client(node, token_file).submit(proposal))
    console.print(job_id)


@job_app.command("list")
def job_list(node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """Every job this node knows, oldest first."""
    table = Table()
    for column in ("id", "name", "proposer", "status", "reason"):
        table.add_column(column)
    for job in guard(lambda: _client(node, token_file).jobs()):
        table.add_row(job["id"], job["name"], job["proposer"], job["status"], job["reason"] or "")
    console.print(table)


@job_app.command("status")
def job_status(job_id: IdArg, node: NodeOpt = None, token_file: TokenOpt = None,
               wait: Annotated[bool, typer.Option(help="Wait until the job is finished, failed, refused or "
                                                       "cancelled here.")] = False) -> None:
    """The job's status, its votes and its proposal, as JSON; with --wait, what it waits for meanwhile (stderr)."""
    from isthmus.node.store import FINAL

    client, job_id = _for_job(job_id, node, token_file)
    job = guard(lambda: client.job(job_id))
    if wait and job["status"] not in FINAL:
        here, events, said, started = guard(client.status)["party"], [], None, time.monotonic()
        while job["status"] not in FINAL:
            events += guard(lambda: client.events(job_id, after=len(events)))
            line = waiting_for(job, here, events)
            if line != said:
                errors.print(f"[{time.monotonic() - started:.0f} s] {line}", markup=False)
                said = line
            time.sleep(0.5)
            job = guard(lambda: client.job(job_id))
    console.print_json(json.dumps(job))


def waiting_for(job: dict, here: str, events: list[dict]) -> str:
    """What a job waits for, as node ``here`` knows it: only the proposer's node holds every party's vote."""
    status, proposer = job["status"], job["proposer"]
    if status == "running":
        steps = [event for event in events if event.get("step") and event.get("source") == "run"]
        if not steps:
            return "running: starting"
        last = steps[-1]
        progress = f", epoch {last['epoch']}/{last.get('epochs', '?')}" if "epoch" in last else ""
        return f"running: step {last['step']}{progress}"
    if here != proposer:
        if status == "accepted":
            return f"accepted here; {proposer}, the proposer, starts the job once every party has consented"
        return f"{status} here: {job['reason'] or 'no reason given'}"
    missing = sorted(set(job["parties"]) - set(job["votes"]))
    line = f"{status}: {job['reason']}" if job["reason"] else status
    return line + (f"; no answer yet from {', '.join(missing)}" if missing else "; every party consented")


@job_app.command("logs")
def job_logs(job_id: IdArg, node: NodeOpt = None, token_file: TokenOpt = None,
             events: Annotated[bool, typer.Option(help="The events (consent, steps, progress) instead of the "
                                                       "run's log.")] = False) -> None:
    """This party's log of the job (its last 64 KiB), or its events."""
    client, job_id = _for_job(job_id, node, token_file)
    if events:
        for event in guard(lambda: client.events(job_id)):
            console.print(json.dumps(event), markup=False)
    else:
        log = guard(lambda: client.logs(job_id))
        console.print(log, markup=False, end="")
        if not log:  # an empty answer said nothing, and looked like a failure to read
            status = guard(lambda: client.job(job_id))["status"]
            errors.print(f"job {job_id} has no log here (it is {status}; its side writes one once it runs)", markup=False)


@job_app.command("results")
def job_results(job_id: IdArg, node: NodeOpt = None, token_file: TokenOpt = None,
                as_json: Annotated[bool, typer.Option("--json", help="This party's metrics.json as it is, curves "
                                                                     "included.")] = False) -> None:
    """This party's evaluation of a job: its headline metrics (the board also draws its curves)."""
    from isthmus.cli_metrics import metrics_table

    client, job_id = _for_job(job_id, node, token_file)
    report = guard(lambda: client.metrics(job_id))
    if as_json:
        console.print_json(json.dumps(report))
        return
    here = guard(client.status)["party"]
    console.print(metrics_table({here: report}, caption="curves: --json, or the job's page on the board"))


@job_app.command("approve")
def job_approve(job_id: IdArg, node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """Consent to a job waiting for this node's operator (this node signs its digest)."""
    client, job_id = _for_job(job_id, node, token_file)
    console.print(guard(lambda: client.approve(job_id))["status"])


@job_app.command("refuse")
def job_refuse(job_id: IdArg, reason: Annotated[str, typer.Option(help="Why: the proposer is told.")],
               node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """Refuse a job waiting for this node's operator; the reason reaches the proposer and the parties."""
    client, job_id = _for_job(job_id, node, token_file)
    console.print(guard(lambda: client.refuse(job_id, reason))["status"])


@job_app.command("cancel")
def job_cancel(job_id: IdArg, node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """Stop a job here and tell its other parties."""
    client, job_id = _for_job(job_id, node, token_file)
    console.print(guard(lambda: client.cancel(job_id))["status"])


@job_app.command("clean")
def job_clean(job_id: IdArg, node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """Remove an ended job's per-row outputs here (its predictions and payload copies, which name customers);
    its model part, metrics, logs, audit and ledger record stay."""
    client, job_id = _for_job(job_id, node, token_file)
    removed = guard(lambda: client.clean(job_id))["removed"]
    console.print(f"removed {', '.join(removed)}" if removed else "nothing to remove: the job left no per-row output "
                  "here", markup=False)


@model_app.command("publish")
def model_publish(job_id: IdArg, name: Annotated[str, typer.Option(help="The model's name, e.g. credit-v1.")],
                  node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """At the guest's node: serve the model job JOB trained, every host serving its part to this guest.

    Publishing a name again adds its next version (served from then on) and keeps the earlier ones."""
    client, job_id = _for_job(job_id, node, token_file)
    console.print_json(json.dumps(guard(lambda: client.publish(job_id, name))))


ModelArg = Annotated[str, typer.Argument(help="The published model.")]
VersionOpt = Annotated[int | None, typer.Option(help="A version of the model (default: its current one).")]


@model_app.command("list")
def model_list(node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """Every version of every model this node has published, and which one each name serves by default."""
    table = Table("name", "version", "job", "status", "published", "current")
    for model in guard(lambda: _client(node, token_file).models()):
        published = dt.datetime.fromtimestamp(model["created"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        table.add_row(model["name"], str(model["version"]), model["job"], model["status"], published,
                      "yes" if model["current"] else "")
    console.print(table if table.rows else "no model published at this node")


@model_app.command("rollback")
def model_rollback(name: ModelArg, version: Annotated[int | None, typer.Option(
        help="The version to serve by default (default: the published one before the current one).")] = None,
                   node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """At the guest's node: serve an earlier version by default (the hosts serve whichever it names, if they hold it)."""
    console.print_json(json.dumps(guard(lambda: _client(node, token_file).rollback(name, version))))


@model_app.command("unpublish")
def model_unpublish(name: ModelArg, version: Annotated[int | None, typer.Option(
        help="The version to withdraw (default: every version).")] = None,
                    node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """Stop serving a version (at the guest: its hosts drop theirs too; at a host: its guest loses it)."""
    console.print_json(json.dumps(guard(lambda: _client(node, token_file).unpublish(name, version))))


@model_app.command("predict")
def model_predict(name: ModelArg,
                  ids: Annotated[Optional[list[str]], typer.Argument(help="The ids to score.", show_default=False)] = None,
                  ids_file: Annotated[Optional[Path], typer.Option(
                      help="A file of ids to score, one per line ('-': standard input); asked in batches of the "
                           "node's limit.", dir_okay=False, allow_dash=True)] = None,
                  as_csv: Annotated[bool, typer.Option("--csv", help="Print 'id,score' lines instead of JSON.")] = False,
                  version: VersionOpt = None, node: NodeOpt = None, token_file: TokenOpt = None) -> None:
    """Score ids with a published model (at the guest's node), jointly with its hosts."""
    import csv
    import sys

    from isthmus.errors import IsthmusError
    from isthmus.node.serving import MAX_IDS

    wanted = [*(ids or []), *(_read_ids(ids_file) if ids_file else [])]
    if not wanted:
        fail("no ids to score: name them, or give a file of them (--ids-file)")
    client, scores = _client(node, token_file), []
    rows = csv.writer(sys.stdout, lineterminator="\n") if as_csv else None
    if rows:
        rows.writerow(("id", "score"))
    for start in range(0, len(wanted), MAX_IDS):
        batch = wanted[start:start + MAX_IDS]
        try:
            scored = client.predict(name, batch, version)
        except IsthmusError as exc:
            fail(f"{exc} (after the first {start} of {len(wanted)} ids were scored{', printed above' if rows else ''})"
                 if start else str(exc))
        if rows:  # as they come: a later batch's failure loses none of them
            rows.writerows(zip(batch, scored))
            sys.stdout.flush()
        scores += scored
        if len(wanted) > MAX_IDS:
            errors.print(f"scored {len(scores)} of {len(wanted)} ids")
    if not rows:
        console.print_json(json.dumps(dict(zip(wanted, scores))))


def _read_ids(path: Path) -> list[str]:
    """One id per line, blank lines skipped (a CSV would need its id column cut out first)."""
    import sys

    lines = sys.stdin if str(path) == "-" else guard(lambda: path.open(encoding="utf-8"))
    with lines:
        return [line.strip() for line in lines if line.strip()]
