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
from isthmus.incentive.endorse import JobFacts, Statement, check_keys, endorse
from isthmus.incentive.ledger import Ledger, ledger_path
from isthmus.incentive.record import METRIC_NAME, file_fingerprint, input_commitment, new_salt
from isthmus.incentive.signing import federation_file, load_pinned_keys, load_signing_key
from isthmus.jobs.context import PartyContext
from isthmus.jobs.spec import JobSpec, Step
from isthmus.jobs.steps.data import party_table
from isthmus.jobs.steps.horizontal import aggregator_of

COMMITMENT_OPENING = "input_commitment.json"  # the salt: stays with the party, opens the commitment later


def planned_steps(spec: JobSpec) -> list[Step]:
    """The job's steps, and the `record` step after them when the job says ``record: true``."""
    record = spec.options.get("record", False)
    if not isinstance(record, bool):
        raise ConfigError(f"job {spec.name!r}: 'record' must be true or false, got {record!r}")
    if record and spec.step("record") is None:
        return [*spec.steps, Step("record", {})]
    return list(spec.steps)


def coordinator(spec: JobSpec) -> str:
    """The party that proposes (and shares) what the job measured: its guest, else its aggregator."""
    if spec.with_role("guest"):
        return spec.one("guest")
    if spec.with_role("client"):
        return aggregator_of(spec)
    return min(spec.parties)


def job_digest(spec: JobSpec) -> str:
    """SHA-256 of the job's steps and their options: every party must have run the same pipeline."""
    steps = [{"name": step.name, "options": step.options} for step in spec.steps]
    return hashlib.sha256(json.dumps(steps, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def prepare(ctx: PartyContext, options: dict) -> None:
    """Before any step: the keys the record needs are there, so no job trains for an hour to fail here."""
    _keys(ctx, options)


def run(ctx: PartyContext, options: dict) -> None:
    signing_key, pinned = _keys(ctx, options)
    facts = JobFacts(job=ctx.spec.name, job_digest=job_digest(ctx.spec),
                     roles={name: party.role for name, party in ctx.spec.parties.items()},
                     contributions=ctx.state.get("contribution"))
    path = ledger_path(ctx.certs_dir, ctx.party)
    with Ledger(path, owner=ctx.party) as ledger:
        statement = Statement(previous=ledger.head(), input=_input_commitment(ctx),
                              model=file_fingerprint(ctx.run_dir / "model.json"), metrics=_own_metrics(ctx))
        record = endorse(ctx.channel, proposer=coordinator(ctx.spec), facts=facts, statement=statement,
                         signing_key=signing_key, pinned=pinned)
        entry = ledger.append(record, pinned)
    ctx.write_json("ledger_record.json", {"ledger": str(path), "entry": entry, **record.to_dict()})
    ctx.events.emit(step="record", record=record.hash[:16], entry=entry, signed_by=len(record.signatures),
                    absent=sorted(record.content["absent"]))


def _keys(ctx: PartyContext, options: dict) -> tuple[Ed25519PrivateKey, dict[str, Ed25519PublicKey]]:
    if options:
        raise ConfigError(f"record: takes no options, got {sorted(options)}")
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
