"""Running hetero_ftl's two parties as threads over the in-process channel, on the demo's split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from conftest import run_parties
from isthmus.algorithms.base import Party, Roster
from isthmus.algorithms.registry import algorithm
from isthmus.data.table import PartyTable
from isthmus.demos.ftl_data import make_ftl_frames
from isthmus.transport.local import LocalHub

ROSTER = Roster({"guest": "guest", "host": "host"})
#: Small enough for 1024-bit keys in a few seconds: one batch of shared rows per epoch.
QUICK = {"key_bits": 1024, "epochs": 4, "batch_size": 60, "representation": 4, "hidden": 8,
         "learning_rate": 0.03, "min_overlap": 20}


def tables(**sizes) -> tuple[PartyTable, PartyTable, np.ndarray, np.ndarray, pd.DataFrame]:
    """Guest and host tables, each one's positions of the shared ids (same order), the host's truth."""
    guest, host, truth = make_ftl_frames(**sizes)
    g_cols, h_cols = [c for c in guest if c.startswith("g")], [c for c in host if c.startswith("h")]
    g = PartyTable("guest", guest.id.to_numpy(), guest[g_cols].to_numpy(float), g_cols, guest.y.to_numpy(float))
    h = PartyTable("host", host.id.to_numpy(), host[h_cols].to_numpy(float), h_cols, None)
    shared = sorted(set(g.ids) & set(h.ids))
    where_g, where_h = {v: i for i, v in enumerate(g.ids)}, {v: i for i, v in enumerate(h.ids)}
    return (g, h, np.array([where_g[s] for s in shared], dtype=np.int64),
            np.array([where_h[s] for s in shared], dtype=np.int64), truth)


def party(name: str, hub: LocalHub, table: PartyTable | None, overlap, workdir: Path) -> Party:
    workdir.mkdir(parents=True, exist_ok=True)
    return Party(name, ROSTER, hub.channel(name), table, workdir, overlap=overlap)


def run_ftl(tmp: Path, options: dict, data=None, roles=None, hub: LocalHub | None = None):
    """Train both parties; returns (parts by role, host predictions merged with the truth, AUC)."""
    ftl = algorithm("hetero_ftl")
    opts = ftl.Options(**{**QUICK, **options})
    g, h, ov_g, ov_h, truth = data or tables(guest_rows=300, host_rows=260, overlap=60)
    hub = hub or LocalHub(["guest", "host"])
    everyone = {"guest": lambda: ftl.fit(party("guest", hub, g, ov_g, tmp / "guest"), opts),
                "host": lambda: ftl.fit(party("host", hub, h, ov_h, tmp / "host"), opts)}
    parts = run_parties({**everyone, **(roles or {})}, timeout=300)
    predictions = pd.read_csv(tmp / "host" / "predictions.csv", dtype={"id": str}).merge(truth, on="id")
    return parts, predictions, roc_auc_score(predictions.y, predictions.score)
