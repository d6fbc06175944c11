"""A ledger replica as plain rows (JSON-ready), and whether its chain verifies: what `isthmus ledger show`,
the node's ``GET /v1/ledger`` and its board all print, computed once here."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from isthmus.incentive.ledger import Entry, Ledger
from isthmus.incentive.verify import verify_ledgers


def record_rows(entries: list[Entry]) -> list[dict]:
    """One row per record as stored; a malformed body is a row saying so, not an error (verify reports it)."""
    rows = []
    for entry in entries:
        try:
            body = entry.record.content
        except ValueError as exc:
            rows.append({"seq": entry.seq, "hash": entry.stored_hash, "malformed": str(exc)})
            continue
        rows.append({"seq": entry.seq, "hash": entry.stored_hash, "created": body["created"], "job": body["job"],
                     "parties": sorted(body["parties"]), "absent": sorted(body["absent"]),
                     "signed": len(entry.record.signatures), "contributions": body["contributions"]})
    return rows


def summarise(path: Path, pinned: dict[str, Ed25519PublicKey]) -> dict:
    """A party's replica: its records, and whether it verifies against ``pinned`` (``None``: no ledger yet)."""
    if not path.is_file():
        return {"records": [], "verified": None, "findings": []}
    with Ledger(path, read_only=True) as opened:
        rows = record_rows(opened.entries())
    result = verify_ledgers([path], pinned)
    return {"records": rows, "verified": result.ok, "findings": [str(f) for f in result.findings]}
