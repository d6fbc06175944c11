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

How choices are made: settings are compared on development seeds 10-14 (other row draws and
initial weights) and reported on seeds 0-4, so nothing is tuned on the rows the table scores.
FTL and the baseline are scored on the same rows, so their per-seed difference (``gain``) is the
quantity to judge; ``gain_sd`` is its spread over seeds (the evaluated rows hold 80-95 positives on
give_credit, 6.7% of rows, so a single seed's AUC moves by a few hundredths).

What makes FTL beat the overlap-only model: (1) the guest's own logistic term on all its labelled
rows, alone for 300 full-batch steps and then in every step (``supervised.py``), so u_A, which the
host aligns to, carries what all the guest's labels know; (2) rank-gauss inputs (give_credit's money
and count columns have standardised maxima of 88-228); (3) 20 epochs of batches of 50 at rate 0.02;
(4) gamma 0.2; (5) l2 0.01 (was 1e-3): the host's network is fitted on 100-300 rows, and it
overfits them. On the development seeds, the mean gain at default_credit 100 / 300, give_credit
100 / 300 (quick size, plaintext):

    l2 1e-3 (the previous setting)   -0.001 / +0.004 / -0.017 / -0.023
      gamma 0.05 / 0.5 / 1.0         -0.003 / +0.003 / -0.004 / -0.030;  -0.013 / -0.002 / -0.046 / -0.012;
                                     -0.018 / -0.016 / -0.082 / -0.004
      40 epochs                      +0.007 / -0.008 / -0.032 / -0.042   (overfits)
      linear networks (hidden 0)     -0.012 / -0.003 / -0.021 / +0.000
    l2 0.01                          +0.005 / +0.004 / +0.012 / +0.011   (chosen)
    l2 0.03 / 0.1                    +0.001 / -0.001 / +0.021 / +0.007;  -0.006 / -0.016 / +0.005 / -0.013
    l2 0.01, the host labelling with the mean of its representations over the last 10 epochs
      (local, no message)            -0.004 / +0.004 / -0.008 / +0.019   (not kept: worse on three)

So the previous setting's wins on seeds 0-4 were partly luck of the draw: on other draws it lost on
give_credit. Why gains stay small: the host learns from two signals on the shared rows, the labels
(the Taylor term) and u_A (the alignment, a distillation of the guest's score). A host ridge
regression of the guest's own score Phi . u_A on the host's columns (100 shared rows, development
seeds) scores 0.595 on default_credit against 0.549 for logistic regression on the labels, but
0.731 against 0.750 on give_credit: there the host's columns know about the label what the guest's do
not, so the distillation is biased, and only the labels (as many as the baseline has) teach it.
A linear least-squares fit of the labels (what the Taylor loss is) scores about as logistic
regression does (give_credit at 100 rows, seeds 10-19, rank-gauss inputs: 0.739-0.745 against
0.750), so the approximation is not what costs.

Measured with ``--quick --seeds 0,1,2,3,4`` (2,000 guest rows, 1,500 host rows; d = 8, hidden 16,
gamma 0.2, l2 0.01, batch 50; load average 15-25 on 2 cores), mean AUC on the host's unseen rows,
FTL plaintext (its sd over seeds) / overlap-only baseline (the better of standardised and
rank-gauss) / upper bound, and the gain over the baseline (mean, sd, seeds won):

    default_credit  100: 0.571 (0.026) / 0.564 / 0.615   +0.007 (0.018)  4 of 5
                    300: 0.607 (0.011) / 0.601 / 0.608   +0.006 (0.010)  4 of 5
                   1000: 0.622 (0.024) / 0.619 / 0.616   +0.004 (0.016)  3 of 5
    give_credit     100: 0.785 (0.019) / 0.766 / 0.790   +0.019 (0.011)  5 of 5
                    300: 0.788 (0.011) / 0.788 / 0.799   -0.000 (0.015)  3 of 5
                   1000: 0.799 (0.020) / 0.804 / 0.804   -0.006 (0.010)  2 of 5

At 1,000 shared rows (the issue asks FTL to beat the baseline at the small overlaps only) the
stronger l2 costs: l2 1e-3 gave 0.629 and 0.809 on these seeds. The plaintext runs took 1.2-3.9 s
per epoch and sent 0.8-8.7 MB (100 to 1,000 shared rows), the full-size ones 1.3-6.0 s and 0.8-2.6 MB.

Full size (5,000 guest rows, 3,000 host rows; ``--seeds 0,1,2``, the same setting, load 15-20), in
the same columns:

    default_credit  100: 0.584 (0.028) / 0.570 / 0.622   +0.013 (0.015)  2 of 3
                    300: 0.619 (0.019) / 0.610 / 0.624   +0.009 (0.023)  2 of 3
    give_credit     100: 0.784 (0.025) / 0.762 / 0.796   +0.022 (0.021)  2 of 3
                    300: 0.797 (0.026) / 0.788 / 0.802   +0.009 (0.009)  3 of 3

(With l2 1e-3 the full-size give_credit runs gave 0.760 against 0.762 at 100 shared rows, seed 1
losing by 0.037; it now loses by 0.002.) Against the targets: FTL's mean is above the baseline in
seven of the eight settings at 100 and 300 shared rows, and a tie in the eighth (give_credit 300,
quick); only at 100 shared rows on give_credit (quick and full) by more than the spread of the gain
over seeds. Elsewhere the mean gain is below one standard deviation of it, so a single run can
lose: 7 of these 32 runs do.

Encrypted (1024-bit Paillier keys, each party its own; seed 0, quick size; 2 epochs instead of 20,
as the loaded machine allowed: every step sends the same messages, so parity and the time and
bytes of a step do not depend on the count), encrypted / plaintext AUC, seconds per epoch
(including key generation and the guest's 300 pretraining steps, shared over 2 epochs; load 15-25),
bytes sent by both parties in the whole run:

    default_credit   300: 0.566 / 0.566   213.8 s    7.7 MB
                    1000: 0.633 / 0.633   662.4 s   24.3 MB
    give_credit      300: 0.736 / 0.736   154.7 s    6.7 MB
                    1000: 0.790 / 0.790   487.0 s   21.1 MB

The difference is 0.0 in every run, as it was at 100 shared rows (20 epochs, l2 1e-3:
default_credit 0.597 / 0.597, give_credit 0.750 / 0.750; 10.5 and 4.8 s per epoch at load 3-8,
24.6 and 21.4 MB). The AUCs of these 2-epoch runs are not those of the 20-epoch tables above.

The paper (Liu, Kang, Xing, Chen, Yang, arXiv 1812.03337): its reported figures could not be
retrieved here (the stored copies of the paper reach only its abstract and introduction), so no
number of it is compared with ours. Its abstract claims the accuracy of the non-private approach;
here encrypted equals plaintext exactly. Whatever its figures, the settings would differ: this
implementation adds the guest's term on all its labels (``supervised.py``), rank-gauss inputs and
an l2 chosen on development draws, and its baseline is the better of two logistic regressions,
picked on the evaluated rows.
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
         "learning_rate": 0.02, "guest_pretrain_epochs": 300, "guest_local_weight": 2.0, "inputs": "rank_gauss",
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


def one(split: str, overlap: int, guest_rows: int, host_rows: int, encrypted: bool, epochs: int, seed: int,
        overrides: dict | None = None) -> dict:
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
    options = {**TRAIN, **(overrides or {}), "epochs": epochs, "seed": seed}
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
    parser.add_argument("--options", type=json.loads, default={},
                        help='JSON overriding the training settings, e.g. \'{"guest_local_weight": 1.0}\'')
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
                                seed, args.options))
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
