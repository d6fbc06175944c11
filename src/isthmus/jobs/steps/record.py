"""The `record` step: the job's outcome, endorsed by every party, appended to each party's own ledger.

It runs last: a job with ``record: true`` (the default of ``isthmus launch``) gets it after its other
steps, so the record holds the evaluation and the contributions. Each party states its own part
(a salted commitment to its input rows and schema, its model part's fingerprint, its own metrics);
the job's guest (or aggregator) proposes the record, every present party checks and signs it, and
each appends it to ``<certs>/<party>/ledger.sqlite``. See docs/incentives.md.
"""

from __future__ import annotations

import hashlib
import json
import math

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from isthmus.errors import ConfigError
from isthmus.incentive.endorse import JobFacts, Statement, endorse
from isthmus.incentive.ledger import Ledger, ledger_path
from isthmus.incentive.record import METRIC_NAME, file_fingerprint, input_commitment, new_salt
from isthmus.transport.keyfiles import check_keys, federation_file, load_pinned_keys, load_signing_key
from isthmus.jobs.context import PartyContext
from isthmus.jobs.spec import JobSpec
from isthmus.jobs.steps.data import party_table
from isthmus.jobs.steps.kind import StepKind, parse_with
from isthmus.options import Options

COMMITMENT_OPENING = "input_commitment.json"  # the salt: stays with the party, opens the commitment later
RECORD_FILE = "ledger_record.json"  # in the run folder: the record and the ledger it was appended to


def job_digest(spec: JobSpec) -> str:
    """SHA-256 of the job's steps and their options: every party must have run the same pipeline."""
    steps = [{"name": step.name, "options": step.options} for step in spec.steps]
    return hashlib.sha256(json.dumps(steps, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


class RecordOptions(Options):
    """The record takes no options: what it holds is fixed (see the module's docstring)."""


def prepare(ctx: PartyContext, options: RecordOptions) -> None:
    """Before any step: the keys the record needs are there, so no job trains for an hour to fail here."""
    _keys(ctx)


def run(ctx: PartyContext, options: RecordOptions) -> None:
    signing_key, pinned = _keys(ctx)
    facts = JobFacts(job=ctx.spec.name, job_digest=job_digest(ctx.spec),
                     roles={name: party.role for name, party in ctx.spec.parties.items()},
                     contributions=ctx.state.get("contribution"))
    path = ledger_path(ctx.certs_dir, ctx.party)
    with Ledger(path, owner=ctx.party) as ledger:
        statement = Statement(previous=ledger.head(), input=_input_commitment(ctx),
                              model=file_fingerprint(ctx.run_dir / "model.json"), metrics=_own_metrics(ctx))
        record = endorse(ctx.channel, proposer=ctx.spec.roster.coordinator, facts=facts, statement=statement,
                         signing_key=signing_key, pinned=pinned)
        entry = ledger.append(record, pinned)
    ctx.write_json(RECORD_FILE, {"ledger": str(path), "entry": entry, **record.to_dict()})
    ctx.events.emit(step="record", record=record.hash[:16], entry=entry, signed_by=len(record.signatures),
                    absent=sorted(record.content["absent"]))


def _keys(ctx: PartyContext) -> tuple[Ed25519PrivateKey, dict[str, Ed25519PublicKey]]:
    if ctx.certs_dir is None:
        raise ConfigError("record needs the party's certificate folder (its signing key, the federation's pinned "
                          "keys and its ledger): run the job with `isthmus run --certs` or `isthmus launch`")
    signing_key = load_signing_key(ctx.certs_dir, ctx.party)
    pinned = load_pinned_keys(federation_file(ctx.certs_dir))
    check_keys(ctx.party, ctx.spec.parties, signing_key, pinned)
    return signing_key, pinned


def _input_commitment(ctx: PartyContext) -> str | None:
    """Commit to the rows this party used (after alignment) and its schema; keep the salt to open it later."""
    data = ctx.spec.party(ctx.party).data
    if data is None:
        return None
    table = party_table(ctx)
    schema = {"id": data.id, "label": data.label, "features": table.feature_names}
    salt = new_salt()
    commitment = input_commitment(table.ids, schema, salt)
    ctx.write_json(COMMITMENT_OPENING, {"commitment": commitment, "salt": salt.hex(), "schema": schema,
                                        "rows": table.n_rows, "note": "opens the commitment with the row ids; "
                                                                      "keep private"})
    return commitment


def _own_metrics(ctx: PartyContext) -> dict[str, float]:
    """The scalar metrics of this party's own evaluation (metrics.json), if it made one."""
    path = ctx.run_dir / "metrics.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text(encoding="utf-8")).get("metrics", {})
    return {name: value for name, value in metrics.items()
            if isinstance(value, float) and math.isfinite(value) and METRIC_NAME.fullmatch(name)}


STEP = StepKind("record", parse_with(RecordOptions), run, prepare=prepare)
