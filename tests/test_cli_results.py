"""What `isthmus launch` prints at the end: every evaluating party's headline metrics, one row each.

It printed the guest's metrics.json whole (the gain and lift curves: dozens of lines) and, for a
horizontal job, which has no guest, nothing at all."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from isthmus.cli import _print_results, console
from isthmus.jobs.spec import parse_job

JOB = """
job: homo
parties:
  client-1: {address: 127.0.0.1:7001, data: {path: a.csv, id: id, label: y}}
  client-2: {address: 127.0.0.1:7002, data: {path: b.csv, id: id, label: y}}
  aggregator: {address: 127.0.0.1:7003}
steps: [{train: {model: homo_lr}}, evaluate]
"""


def test_every_evaluating_party_gets_a_row_of_scalar_metrics(tmp_path: Path):
    spec = parse_job(yaml.safe_load(JOB), base_dir=tmp_path)
    for party, auc in (("client-1", 0.71), ("client-2", 0.69)):
        (tmp_path / party).mkdir()
        (tmp_path / party / "metrics.json").write_text(json.dumps(
            {"task": "binary", "rows": 600, "metrics": {"auc": auc, "ks": 0.3, "gain": [0.1] * 40}}))
    (tmp_path / "aggregator").mkdir()
    with console.capture() as captured:
        _print_results(tmp_path, spec, 3.2)
    text = captured.get()
    assert "job 'homo' finished in 3.2 s" in text
    rows = [line for line in text.splitlines() if "client-" in line and "600" in line]
    assert len(rows) == 2 and "0.7100" in rows[0] and "0.6900" in rows[1]
    assert "gain" not in text and "aggregator" in text  # its folder is listed; it evaluated nothing
