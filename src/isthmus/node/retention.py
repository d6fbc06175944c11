"""Removing a job's per-row outputs from this node: what names customers, kept no longer than needed.

A job's run folder keeps, at each party, what that party's side produced. Most of it is about the model
(its part, metrics, plots, steps, the audit log's tags and sizes, the ledger record); two things are about
customers, row by row: ``predictions.csv`` (each evaluated id with its label and score, or a transfer
host's new labels) and ``audit-payloads/`` (copies of every byte sent, when the job asked for them).
Storage limitation (GDPR art. 5(1)(e)) asks that such data go once its purpose is served: an operator
removes them with ``isthmus job clean``, or the node does ``clean_after_days`` after a job ended. The rest
stays: it is what the board, the ledger and an auditor read later, and a served model needs only its part.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from isthmus.errors import ConfigError
from isthmus.node.runner import job_folder
from isthmus.node.store import FINAL, Store

_log = logging.getLogger(__name__)

#: The per-row outputs of a party's run folder.
ROW_OUTPUTS = ("predictions.csv", "audit-payloads")
#: Why a job was cleaned when its operator asked (through the API, the CLI or the board).
CLEANED_BY_OPERATOR = "cleaned by this node's operator"


def clean(store: Store, store_dir: Path, job_id: str, reason: str) -> list[str]:
    """Remove ``job_id``'s per-row outputs here and record why; returns the names removed. A job not ended
    yet is refused: its process may still write them."""
    job = store.job(job_id)
    if job is None:
        raise ConfigError(f"no job {job_id!r} on this node")
    if job["status"] not in FINAL:
        raise ConfigError(f"job {job_id} is {job['status']}: clean it once it has ended (or cancel it first)")
    run = job_folder(store_dir, job_id) / "run"
    removed = []
    for name in ROW_OUTPUTS:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    store.mark_cleaned(job_id, reason)
    return removed


def clean_expired(store: Store, store_dir: Path, days: float, now: float | None = None) -> list[str]:
    """Clean every job that ended more than ``days`` ago and is not cleaned yet; returns their ids."""
    cutoff = (time.time() if now is None else now) - days * 86400
    due = [job["id"] for job in store.with_status(*FINAL) if job["cleaned"] is None and job["updated"] < cutoff]
    for job_id in due:
        removed = clean(store, store_dir, job_id, f"ended more than {days:g} days ago (clean_after_days)")
        _log.info("job %s: removed its per-row outputs %s (clean_after_days %g)", job_id, removed or "(none)", days)
    return due
