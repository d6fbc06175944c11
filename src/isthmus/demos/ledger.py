"""`isthmus demo ledger`: what each party's data is worth, recorded on a ledger every party holds.

scikit-learn's breast cancer data split by columns over four parties: the guest holds the diagnosis
and the 10 "error" columns, host-1 the 10 "mean" columns, host-2 the 10 "worst" columns, and host-3
only random noise. They align privately (ECDH PSI), train vertical logistic regression with an arbiter,
evaluate, measure each party's Shapley value (every coalition trained federatedly) and endorse a
record of the job in each party's ledger. The demo then verifies the ledgers, edits a copy of
host-3's ledger to claim a bigger share, and verifies again: the edit is caught.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from isthmus.cli_ledger import contribution_table, print_ledger, print_verification
from isthmus.demos.folder import demo_folder
from isthmus.incentive.ledger import LEDGER_FILE, ledger_path
from isthmus.incentive.record import canonical
from isthmus.jobs.launcher import launch
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.transport.certs import FEDERATION_FILE

COLUMNS = {"guest": slice(10, 20), "host-1": slice(0, 10), "host-2": slice(20, 30)}
NOISE_HOST = "host-3"


def make_ledger_data(folder: Path, *, seed: int = 7) -> dict[str, Path]:
    """One CSV per party; each party misses a different 5% of the patients, so PSI has work to do."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = np.array([n.replace(" ", "_") for n in data.feature_names])
    ids = np.array([f"patient-{i:05d}" for i in range(len(data.target))])
    rng = np.random.default_rng(seed)
    columns = {**{party: (data.data[:, cut], names[cut]) for party, cut in COLUMNS.items()},
               NOISE_HOST: (rng.normal(size=(len(ids), 10)), np.array([f"noise_{i}" for i in range(10)]))}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for party, (values, header) in columns.items():
        rows = np.sort(rng.choice(len(ids), int(0.95 * len(ids)), replace=False))
        frame = pd.DataFrame(values[rows], columns=header)
        if party == "guest":
            frame.insert(0, "diagnosis", data.target[rows])
        frame.insert(0, "id", ids[rows])
        paths[party] = folder / f"{party}.csv"
        frame.sample(frac=1, random_state=seed).to_csv(paths[party], index=False)
    return paths


def run_ledger_demo(out_dir: Path, *, console: Console | None = None, key_bits: int = 1024) -> dict:
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo ledger", console, job_line="job: demo-ledger") as folder:
        return _run(folder, console, key_bits)


def _run(out_dir: Path, console: Console, key_bits: int) -> dict:
    paths = make_ledger_data(out_dir / "data")
    parties = {"guest": {"data": {"path": str(paths["guest"]), "id": "id", "label": "diagnosis"}},
               **{host: {"data": {"path": str(paths[host]), "id": "id"}} for host in ("host-1", "host-2", NOISE_HOST)},
               "arbiter": {}}
    job = {
        "job": "demo-ledger",
        "record": True,
        "parties": loopback_parties(parties),
        "steps": [
            {"intersect": {"method": "ecdh"}},
            {"train": {"model": "hetero_lr", "epochs": 10, "batch_size": 64, "learning_rate": 0.15,
                       "validation_fraction": 0.3, "key_bits": key_bits}},
            {"evaluate": {}},
            {"contribution": {"budget": 1000}},
        ],
    }
    job_path = write_job(out_dir / "job.yaml", job)
    console.print(f"job file: {job_path}  (4 parties with data: 16 coalitions, 13 of them trained federatedly; "
                  f"{key_bits}-bit Paillier keys to keep the demo short)")
    run = out_dir / "run"
    result = launch(job_path, run, console=console)
    console.print(f"job finished in {result.seconds:.0f} s; each party's results in {run}/<party>/")

    report = json.loads((run / "guest" / "contribution.json").read_text())
    console.print(contribution_table(report, title=f"contributions ({report['method']}, {report['metric']})"))
    certs = run / "certs"
    console.print(f"\n[bold]$ isthmus ledger show {certs / 'guest'}[/]")
    print_ledger(ledger_path(certs, "guest"), console)

    console.print(f"\n[bold]$ isthmus ledger verify {certs}[/]")
    print_verification(sorted(certs.glob(f"*/{LEDGER_FILE}")), None, console)

    tampered = _claim_bigger_share(ledger_path(certs, NOISE_HOST), out_dir / "tampered" / NOISE_HOST)
    others = [ledger_path(certs, party) for party in ("arbiter", "guest", "host-1", "host-2")]
    console.print(f"\n{NOISE_HOST}'s ledger, copied to {tampered} and edited to claim a 25% share:")
    console.print(f"[bold]$ isthmus ledger verify {' '.join(map(str, others))} {tampered} "
                  f"--federation {certs / FEDERATION_FILE}[/]", soft_wrap=True)
    caught = not print_verification([*others, tampered], certs / FEDERATION_FILE, console)
    console.print("[green]the edit was caught[/]" if caught else "[red]the edit was NOT caught[/]")
    return report


def _claim_bigger_share(original: Path, folder: Path) -> Path:
    """What a dishonest party might try: rewrite its own copy of the record (dropping the append-only guard)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / LEDGER_FILE
    shutil.copy(original, copy)
    db = sqlite3.connect(copy)
    with db:
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f"DROP TRIGGER {trigger}")
        seq, body = db.execute("SELECT seq, body FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        content = json.loads(body)
        report = content["contributions"]
        report["shares"][NOISE_HOST] = 0.25
        report["rewards"][NOISE_HOST] = 0.25 * report["budget"]
        db.execute("UPDATE records SET body = ? WHERE seq = ?", (canonical(content), seq))
    db.close()
    return copy
