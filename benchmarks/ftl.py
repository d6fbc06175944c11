"""Federated transfer learning on real data: does the host label its unseen rows better than it could alone?

Splits (the issue's targets), from /work/shared/datasets/fate:

- ``default_credit`` (UCI_Credit_Card.csv, 30,000 clients): guest = payment history (PAY_0, PAY_2..6,
  PAY_AMT1..6) + the default label on rows R_A; host = demographics and bills (LIMIT_BAL, SEX,
  EDUCATION, MARRIAGE, AGE, BILL_AMT1..6) on rows R_B.
- ``give_credit`` (give_credit_homo_test.csv, 30,000 borrowers): guest = x0..x4 + label, host = x5..x9.

|R_A ∩ R_B| in {100, 300, 1000}; R_A and R_B otherwise disjoint. AUC on the host's rows outside
R_A (their true labels held back) for: FTL encrypted (Paillier, both keys), FTL plaintext (must equal
encrypted within 0.002), a host-only logistic regression fitted on the shared rows with their labels
(what sharing just those labels would give), and the upper bound of a host logistic regression that
had every host row's true label (5-fold out-of-fold scores). Both host-only models run on
standardised and on rank-gauss inputs (FTL's default) and the better AUC of the two is reported
(``overlap_baseline_auc``, ``upper_bound_auc``; each is also in the row): a choice made on the
evaluated rows, so generous to the baseline. Time per epoch and bytes sent are those of the
encrypted run (the plaintext run's when encryption is skipped). ``--seeds 0,1,2`` repeats each
setting on other rows and initial weights (one JSON row per seed); the table prints means.

Every party runs in this process (threads over the in-process hub: the same codec and protocols as
processes over gRPC). Timings depend on machine load.

    .venv/bin/python benchmarks/ftl.py [--quick] [--seeds 0,1,2,3,4] [--encrypted-overlaps 100] [--json]

What makes FTL beat the overlap-only model (the previous version, seed 0, 4 epochs, against the
standardised baseline at 100 and 300 shared rows: default_credit 0.582 vs 0.582 and 0.586 vs 0.572,
give_credit 0.573 vs 0.753 and 0.745 vs 0.781): (1) the guest's own logistic term on all its labelled rows,
alone for 300 full-batch steps and then in every step (``supervised.py``), so u_A, which the host
aligns to, carries what all 2,000 labels know rather than the 100 shared ones; (2) rank-gauss inputs
(give_credit's money and count columns have standardised maxima of 88-228); (3) enough steps: 20
epochs of batches of 50 at rate 0.02 (4 epochs of one batch hardly moved the host's network);
(4) gamma 0.2: more of the host's learning through the alignment with u_A (a d-dimensional target
per shared row) than with 0.1 (default_credit at 100 rows: 0.573 against 0.565), while 0.3 already
lost give_credit at 300 (0.785 against 0.788). d = 4, 40 epochs, a linear network and 3 local rounds
were tried and were no better. The option defaults stay gamma 0.1 and batch 64 (the demo's and the
tests' setting).

Measured with ``--quick --seeds 0,1,2,3,4`` (2,000 guest rows, 1,500 host rows; d = 8, hidden 16,
gamma 0.2, batch 50; load average 5-13 on 2 cores), mean AUC on the host's unseen rows, FTL
plaintext / overlap-only (the better of the two inputs; standardised; rank-gauss) / upper bound, and
the seeds where FTL beats the better baseline:

    default_credit  100: 0.573 / 0.564 (0.560; 0.554) / 0.615   3 of 5 (5 of 5 against rank-gauss)
                    300: 0.603 / 0.601 (0.593; 0.601) / 0.608   4 of 5
                   1000: 0.629 / 0.619 (0.612; 0.618) / 0.616   3 of 5
    give_credit     100: 0.781 / 0.766 (0.680; 0.766) / 0.790   5 of 5
                    300: 0.788 / 0.788 (0.751; 0.786) / 0.799   3 of 5
                   1000: 0.809 / 0.804 (0.694; 0.799) / 0.804   3 of 5

So FTL beats sharing the overlap's labels at 100 shared rows on both splits (+0.009 and +0.015 on
average) and at 300 only by a hair (+0.002, and a tie on give_credit); on default_credit the host's
own columns carry little (the upper bound is 0.61). At 1,000 shared rows FTL passes the all-labels
logistic upper bound (its host network is not linear). The old give_credit baseline (standardised
inputs: 0.680 at 100) was much weaker than the rank-gauss one this benchmark now also fits.

Encrypted (1024-bit keys, seed 0) gives the plaintext AUC exactly (difference 0.0 in every run):
default_credit 100: 0.597 / 0.597, give_credit 100: 0.750 / 0.750; 10.5 and 4.8 s per epoch (2
batches; including key generation and the guest's pretraining; load ~8 and ~3), 24.6 and 21.4 MB sent. With gamma 0.3 the same runs gave
0.603 / 0.603 and 0.748 / 0.748 (13.6 and 11.6 s per epoch), with gamma 0.1 0.581 / 0.581 and
0.754 / 0.754 (22.7 and 15.8 s per epoch at load ~11). Encrypted runs at 300 and 1000 shared rows
were not measured (two loaded cores; ~3x and ~10x the time of 100).

Full size (5,000 guest rows, 3,000 host rows), give_credit only, seeds 0, 1, 2, FTL plaintext vs the
better baseline: 100 shared rows 0.778 / 0.719 / 0.782 vs 0.768 / 0.756 / 0.762 (mean 0.760 vs
0.762: not met, seed 1 loses by 0.037); 300: 0.829 / 0.783 / 0.772 vs 0.819 / 0.783 / 0.760 (0.795
vs 0.787). Encrypted at 100, seed 0: 0.778 / 0.778, 5.8 s per epoch (load ~2), 22.0 MB.

The paper (Liu et al., arXiv 1812.03337) reports FTL above a target-only model trained on the
overlapping samples, with the gap largest at small overlaps (NUS-WIDE image/text and default-credit;
its exact figures are not reproduced here): the same shape as above, where the gain shrinks as the
overlap grows, except that here the baseline reaches the upper bound quickly.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.preprocessing import StandardScaler

from isthmus.algorithms.base import Party, Roster
from isthmus.algorithms.registry import algorithm
from isthmus.data.table import PartyTable
from isthmus.ml.scaling import RankGauss
from isthmus.transport.local import LocalHub

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fate"
PAY = ["PAY_0", *(f"PAY_{i}" for i in range(2, 7)), *(f"PAY_AMT{i}" for i in range(1, 7))]
DEMOGRAPHY_BILLS = ["LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", *(f"BILL_AMT{i}" for i in range(1, 7))]
SPLITS = {
    "default_credit": ("UCI_Credit_Card.csv", "ID", "default.payment.next.month", PAY, DEMOGRAPHY_BILLS),
    "give_credit": ("give_credit_homo_test.csv", "id", "y", [f"x{i}" for i in range(5)], [f"x{i}" for i in range(5, 10)]),
}
TRAIN = {"representation": 8, "hidden": 16, "gamma": 0.2, "l2": 0.01, "epochs": 20, "batch_size": 50,
         "learning_rate": 0.02, "guest_pretrain_epochs": 300, "guest_local_weight": 1.0, "inputs": "rank_gauss",
         "key_bits": 1024, "min_overlap": 50}


def split_rows(n: int, overlap: int, guest_rows: int, host_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    guest = order[:guest_rows]
    host = np.concatenate([guest[:overlap], order[guest_rows:guest_rows + host_rows - overlap]])
    return guest, host


def run_ftl(g: PartyTable, h: PartyTable, ov_g: np.ndarray, ov_h: np.ndarray, options: dict) -> dict:
    ftl = algorithm("hetero_ftl")
    opts = ftl.Options(**options)
    hub, sent, results, errors = LocalHub(["guest", "host"]), [0], {}, []
    roster = Roster({"guest": "guest", "host": "host"})
    folder = Path(tempfile.mkdtemp(prefix="ftl-bench-"))
    epochs: list[float] = []

    def party(name, table, overlap):
        channel = hub.channel(name)
        raw = channel._send_raw

        def counted(to, tag, payload):
            sent[0] += len(payload)
            raw(to, tag, payload)
        channel._send_raw = counted
        progress = (lambda **event: epochs.append(time.perf_counter())) if name == "guest" else (lambda **event: None)
        (folder / name).mkdir()
        return Party(name, roster, channel, table, folder / name, progress=progress, overlap=overlap)

    def target(name, table, overlap):
        try:
            results[name] = ftl.fit(party(name, table, overlap), opts)
        except BaseException as exc:
            errors.append(exc)

    start = time.perf_counter()
    threads = [threading.Thread(target=target, args=a) for a in (("guest", g, ov_g), ("host", h, ov_h))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    predictions = pd.read_csv(folder / "host" / "predictions.csv", dtype={"id": str})
    epoch_seconds = (epochs[-1] - start) / len(epochs) if epochs else float("nan")
    return {"predictions": predictions, "epoch_seconds": epoch_seconds, "bytes_sent": sent[0]}


def one(split: str, overlap: int, guest_rows: int, host_rows: int, encrypted: bool, epochs: int, seed: int) -> dict:
    file, id_column, label, guest_columns, host_columns = SPLITS[split]
    frame = pd.read_csv(DATA / file)
    frame[id_column] = frame[id_column].astype(str)
    guest_idx, host_idx = split_rows(len(frame), overlap, guest_rows, host_rows, seed)
    gf, hf = frame.iloc[guest_idx], frame.iloc[host_idx]
    g = PartyTable("guest", gf[id_column].to_numpy(), gf[guest_columns].to_numpy(float), guest_columns,
                   gf[label].to_numpy(float))
    h = PartyTable("host", hf[id_column].to_numpy(), hf[host_columns].to_numpy(float), host_columns, None)
    ov_g, ov_h = np.arange(overlap), np.arange(overlap)  # the first `overlap` rows of both are the shared ones
    unseen = np.arange(overlap, len(hf))
    truth = hf[label].to_numpy()
    options = {**TRAIN, "epochs": epochs, "seed": seed}
    plain = run_ftl(g, h, ov_g, ov_h, {**options, "protection": "plain"})
    scores = plain["predictions"].set_index("id").loc[h.ids[unseen], "score"].to_numpy()
    row = {"split": split, "overlap": overlap, "seed": seed, "guest_rows": guest_rows, "host_rows": host_rows,
           "ftl_plaintext_auc": roc_auc_score(truth[unseen], scores)}
    measured = plain
    if encrypted:
        measured = run_ftl(g, h, ov_g, ov_h, options)
        enc = measured["predictions"].set_index("id").loc[h.ids[unseen], "score"].to_numpy()
        row["ftl_encrypted_auc"] = roc_auc_score(truth[unseen], enc)
    else:
        row["ftl_encrypted_auc"] = None
    row.update(host_alone(h.features, truth, overlap, unseen))
    row["epoch_seconds"] = round(measured["epoch_seconds"], 3)
    row["bytes_sent"] = measured["bytes_sent"]
    row["timed"] = "encrypted" if encrypted else "plaintext"
    return row


def host_alone(features: np.ndarray, truth: np.ndarray, overlap: int, unseen: np.ndarray) -> dict:
    """The host's own logistic regression, on the shared rows' labels (the baseline) and on all its rows'
    true labels (5-fold out-of-fold: the upper bound), each on standardised and on rank-gauss inputs
    (FTL's default; fitted on all the host's rows, which it holds): the better of the two is reported,
    so no preprocessing choice of ours weakens what FTL is compared with."""
    out = {}
    for inputs, X in (("standardised", StandardScaler().fit_transform(features)),
                      ("rank_gauss", RankGauss.fit(features).transform(features))):
        model = LogisticRegression(max_iter=2000)
        baseline = model.fit(X[:overlap], truth[:overlap]).decision_function(X[unseen])
        out[f"overlap_baseline_{inputs}_auc"] = roc_auc_score(truth[unseen], baseline)
        upper = cross_val_predict(model, X, truth, cv=5, method="decision_function")
        out[f"upper_bound_{inputs}_auc"] = roc_auc_score(truth[unseen], upper[unseen])
    for name in ("overlap_baseline", "upper_bound"):
        out[f"{name}_auc"] = max(out[f"{name}_standardised_auc"], out[f"{name}_rank_gauss_auc"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default="default_credit,give_credit")
    parser.add_argument("--overlaps", default="100,300,1000")
    parser.add_argument("--encrypted-overlaps", default="100,300,1000",
                        help="overlaps also run encrypted (1024-bit keys); the others plaintext only")
    parser.add_argument("--guest-rows", type=int, default=5000)
    parser.add_argument("--host-rows", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=TRAIN["epochs"])
    parser.add_argument("--quick", action="store_true", help="2000 guest rows, 1500 host rows")
    parser.add_argument("--seeds", default="0", help="one run per seed (rows drawn and networks initialised anew)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.guest_rows, args.host_rows = 2000, 1500
    encrypted = {int(o) for o in args.encrypted_overlaps.split(",") if o}
    rows = []
    for split in args.splits.split(","):
        for overlap in (int(o) for o in args.overlaps.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                rows.append(one(split, overlap, args.guest_rows, args.host_rows, overlap in encrypted, args.epochs,
                                seed))
                if not args.json:
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"rows": rows}))
        return
    print(summary(pd.DataFrame(rows)).to_string())


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per split and overlap: mean AUCs, and FTL's gain over the baseline per seed (paired: both are
    scored on the same rows), its mean, standard deviation over seeds and the count of seeds won."""
    table = table.assign(gain=table.ftl_plaintext_auc - table.overlap_baseline_auc)
    grouped = table.groupby(["split", "overlap"])
    out = grouped[["ftl_encrypted_auc", "ftl_plaintext_auc", "overlap_baseline_auc", "upper_bound_auc"]].mean()
    out["ftl_sd"] = grouped.ftl_plaintext_auc.std()
    out["gain"], out["gain_sd"] = grouped.gain.mean(), grouped.gain.std()
    out["seeds_won"] = grouped.gain.apply(lambda gain: f"{int((gain > 0).sum())}/{len(gain)}")
    out[["epoch_seconds", "bytes_sent"]] = grouped[["epoch_seconds", "bytes_sent"]].mean()
    return out.round(3)


if __name__ == "__main__":
    main()
