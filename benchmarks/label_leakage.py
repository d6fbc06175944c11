"""What a curious party can read of its peer's data from what it decrypts, by solving equations over it.

    python benchmarks/label_leakage.py lr     # vertical LR: gradients stacked over epochs, batches fixed or drawn afresh
    python benchmarks/label_leakage.py ftl    # hetero_ftl: weight gradients solved for the per-row ones
    python benchmarks/label_leakage.py nn     # hetero_nn: the per-row gradient of the host's bottom output
    python benchmarks/label_leakage.py ftl-guest  # hetero_ftl the other way: a guest reads the host's representations
    python benchmarks/label_leakage.py lr-validation  # vertical LR: what the guest gets of the held-out rows' scores

``lr``, ``ftl`` and ``nn`` read the guest's labels (``nn`` also says what its guest gets of the host; ``ftl-guest``
and ``lr-validation`` are about the host's columns: below). Each uses only what the honest protocol gives the
host (its own decrypted values, its own rows and Jacobians) and scores the shared rows; the figure is the AUC of that score against the guest's labels,
beside what the host's own columns predict of those labels in-sample (a logistic regression fitted on
them: the most a model of its columns could tell). Data: default_credit (../shared/datasets/fate), the host
holding the demographic and bill columns. ``lr`` computes the host's decrypted gradients X_bᵀ(σ(z) − y) in
numpy, as the protocol does up to fixed-point rounding (tests/adversarial/test_adv_vertical.py runs the
protocol itself); ``ftl`` and ``nn`` run the algorithms over the in-process channel and read the host's values
where it computes them.

Measured (2 cores, load 2-4), the AUC of the host's label scores:

    lr  6,000 rows, batches of 312 (the floor), 50 epochs: batches drawn afresh every epoch 0.996, the same
        batches every epoch 0.604 (the host's 11 columns in-sample: 0.635; the model: 0.728); 10 jobs of 5 epochs,
        each its own seed (--epochs 5 --jobs 10): 0.837
    ftl 300 shared rows, 20 epochs, mean over batches, after one epoch / after 20 (host columns in-sample 0.673):
        16 hidden units (the default): batches of 50 0.949 / 0.999, 150 0.674 / 0.925, 300 0.567 / 0.835
        linear (--hidden 0): batches of 50 0.605 / 0.748, 150 0.595 / 0.561
        the guest's labels in the host's terms plus Gaussian noise of s (commit 8643b1e, reverted; its
        --label-noise flag), batches of 50, after 20 epochs: s = 1: 0.999, 2: 0.997, 4: 0.787, 10: 0.625; FTL's
        gain over the shared labels' model (benchmarks/ftl.py, seeds 20-29, default_credit 100 / 300 shared
        rows, +0.010 / +0.012 without noise): s = 4: -0.014 / -0.018, s = 10: -0.045 / -0.070 (docs/security.md)
    nn  3,000 rows (30% held out), 2 epochs, 66 batches of 64, six runs (the interactive layer starts from the
        host's fresh noise in each): median per batch 0.936-0.993, averaged over the epochs 0.955-0.990 (host
        columns in-sample 0.632); with every row trained on (no held-out rows, as first measured): 94 batches,
        median 1.000, lowest 0.935
        --host-pay (the host holds the repayment columns), 5 epochs: per batch / averaged over the epochs (upper
        bound) / the model's AUC on held-out rows: label_noise 0: 1.000 / 0.998 / 0.729, 3: 0.623 / 0.782 / 0.724,
        10: 0.561 / 0.655 / 0.725, 1000 (the host learns nothing): 0.558 / 0.630 / 0.697

``nn`` also says what its guest gets of the host: each training row's interactive-layer output z_h (4 numbers
here), from which a linear fit explains R^2 0.54-0.66 of the host's columns on average over the same six runs
(its best column, a bill or SEX, 0.78-0.93), where the guest's own columns explain 0.17.

``lr-validation``: a vertical LR guest holding out validation rows computed their loss every epoch from
each host's partial scores of them, in clear: one linear projection of their host columns per epoch. Before
the loss was formed under encryption (as of commit 2a8fdc6: 6,000 rows, validation_fraction 0.2, 20
epochs; it did so with or without early stopping), a linear fit on those 20 scores explained R^2 1.00 of every
host column on the 1,200 held-out rows (mean, LIMIT_BAL, AGE and the bills alike), where the guest's own
columns explain 0.15; now the guest gets none (the command, which turns early stopping on so that a loss is
formed every epoch, says how many it got and what they tell).

``ftl-guest``: the guest's weight gradient holds, per shared row, 2 gamma (u_A,i - u_B,i) / n, and it knows
u_A,i; solved the same way and averaged over the epochs, that gives it the host's representation u_B,i of
each row: a summary of the host's columns. The figure is how much of each host column (rank-gauss) a 5-fold
linear regression explains (R^2) from the guest's own columns, from its estimate of u_B, and from both; a
guest has no host column to fit, so this measures what the estimate carries, not a reading. 300 shared rows,
20 epochs, mean over the 11 host columns / LIMIT_BAL (the credit limit) / the six bills' mean:
        the guest's own columns 0.25 / 0.07 / 0.49; with its estimate, batches of 50: 0.43 / 0.69 / 0.65
        (the estimate alone 0.36 / 0.69 / 0.47; the true u_B 0.51 / 0.76 / 0.64), 150: 0.41 / 0.57 / 0.64,
        300 (one batch): 0.38 / 0.35 / 0.69
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ftl as ftl_bench  # noqa: E402  (its splits and its in-process FTL run)
from isthmus.ml.scaling import RankGauss  # noqa: E402

DATA = ftl_bench.DATA / "UCI_Credit_Card.csv"
LABEL = "default.payment.next.month"
HOST = ftl_bench.DEMOGRAPHY_BILLS


def standardised(frame: pd.DataFrame) -> np.ndarray:
    values = frame.to_numpy(float)
    return (values - values.mean(0)) / values.std(0)


def columns_alone(X_host: np.ndarray, y: np.ndarray) -> float:
    """What the host's columns predict of the labels, in-sample."""
    return roc_auc_score(y, LogisticRegression(max_iter=1000).fit(X_host, y).decision_function(X_host))


def either_side(y: np.ndarray, scores: np.ndarray) -> float:
    """The AUC of ``scores`` taken either way round: which side is which, the base rate tells."""
    auc = roc_auc_score(y, scores)
    return max(auc, 1 - auc)


def per_batch(y: np.ndarray, scores: np.ndarray, batches: list[np.ndarray]) -> float:
    """The mean over batches of :func:`either_side`: a batch's scores are oriented within it only."""
    return float(np.mean([either_side(y[rows], scores[rows]) for rows in batches]))


def principal_scores(per_row: np.ndarray) -> np.ndarray:
    """Each row's coordinate on the first principal direction of its per-row vectors: the classes' gradients
    point apart, so this separates them (up to which side is which)."""
    centred = per_row - per_row.mean(0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][0]


def lr(rows: int, epochs: int, jobs: int) -> None:
    """One job with batches drawn afresh every epoch, then ``jobs`` jobs (seeds 0, 1, ...) with the same batches
    every epoch, the host stacking everything it decrypted."""
    frame = pd.read_csv(DATA).sample(rows, random_state=0)
    y = frame[LABEL].to_numpy(float)
    X_host = standardised(frame[HOST])
    X_guest = standardised(frame.drop(columns=[*HOST, "ID", LABEL]))
    X = np.column_stack([X_guest, X_host, np.ones(rows)])
    batch = 24 * (X_guest.shape[1] + 1)  # the floor: 24 rows per feature of the widest party
    for fixed, seeds in ((False, [0]), (True, list(range(jobs)))):
        equations, values, weights = [], [], None
        for seed in seeds:
            weights = _train_lr(X, X_host, y, batch, epochs, seed, fixed, equations, values)
        unknowns = len(seeds) * epochs  # one mean prediction per job and epoch
        system = np.zeros((len(equations) * X_host.shape[1], rows + unknowns))
        for index, (batch_rows, unknown) in enumerate(equations):
            block = system[index * X_host.shape[1]:(index + 1) * X_host.shape[1]]
            block[:, batch_rows], block[:, rows + unknown] = -X_host[batch_rows].T, X_host[batch_rows].sum(0)
        scores = np.linalg.lstsq(system, np.concatenate(values), rcond=None)[0][:rows]
        what = f"{len(seeds)} job(s), batches fixed within each" if fixed else "1 job, batches drawn afresh"
        print(f"lr {rows} rows, batches of {batch}, {epochs} epochs, {what}: host reads the labels at AUC "
              f"{roc_auc_score(y, scores):.3f} (its columns in-sample {columns_alone(X_host, y):.3f}; the model "
              f"{roc_auc_score(y, X @ weights):.3f})", flush=True)


def lr_validation(rows: int, epochs: int, validation_fraction: float) -> None:
    """A vertical LR guest holding out validation rows gets each host's partial score of each of them every
    epoch (to compute the validation loss): one linear projection of those rows' host columns per epoch."""
    from isthmus.algorithms.hetero_linear import HeteroLinearArbiter, HeteroLinearGuest, HeteroLinearHost, LinearOptions
    from isthmus.transport.local import LocalHub

    frame = pd.read_csv(DATA).sample(rows, random_state=0)
    y = frame[LABEL].to_numpy(float)
    X_host = standardised(frame[HOST])
    X_guest = standardised(frame.drop(columns=[*HOST, "ID", LABEL]))
    received, scores = [], HeteroLinearGuest._scores

    def spy_scores(self, score_rows, x):  # the hosts' partial scores: the total less the guest's own part
        total = scores(self, score_rows, x)
        received.append((np.array(score_rows), (total - x @ self.coef_)[:, 0]))
        return total

    HeteroLinearGuest._scores = spy_scores
    options = LinearOptions(epochs=epochs, validation_fraction=validation_fraction, early_stopping_rounds=epochs,
                            encrypt=False, learning_rate=0.15)  # a validation loss every epoch, never stopping
    hub, guest = LocalHub(["guest", "host", "arbiter"]), HeteroLinearGuest(options)
    roles = {"guest": lambda: guest.fit(hub.channel("guest"), X_guest, y, hosts=["host"], arbiter="arbiter"),
             "host": lambda: HeteroLinearHost(options).fit(hub.channel("host"), X_host, guest="guest", arbiter="arbiter"),
             "arbiter": lambda: HeteroLinearArbiter(options).fit(hub.channel("arbiter"), guest="guest", hosts=["host"])}
    threads = [threading.Thread(target=role) for role in roles.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held_out = guest.validation_rows_
    got = [partial for score_rows, partial in received if np.array_equal(score_rows, held_out)]
    figures = f"from the guest's own columns {_r2_figures(explained(X_guest[held_out], X_host[held_out]))}"
    if got:
        figures += (", from the host's partial scores it got "
                    f"{_r2_figures(explained(np.column_stack(got), X_host[held_out]))}")
    print(f"lr-validation {rows} rows, validation_fraction {validation_fraction:g} ({len(held_out)} rows), "
          f"{len(guest.history_)} epochs: the guest got the host's partial scores of every validation row "
          f"{len(got)} times; R^2 of the host's columns on those rows, mean / LIMIT_BAL / bills' mean, "
          f"{figures}", flush=True)


def _r2_figures(r2: np.ndarray) -> str:
    """Per-column R^2 of the host's columns (HOST) as mean / LIMIT_BAL (the credit limit) / the bills' mean."""
    bills = [k for k, column in enumerate(HOST) if column.startswith("BILL_AMT")]
    return f"{r2.mean():.2f} / {r2[HOST.index('LIMIT_BAL')]:.2f} / {r2[bills].mean():.2f}"


def _train_lr(X: np.ndarray, X_host: np.ndarray, y: np.ndarray, batch: int, epochs: int, seed: int, fixed: bool,
              equations: list, values: list) -> np.ndarray:
    """Minibatch SGD from zero weights as the guest runs it, recording what the host decrypts, X_bᵀ d per
    batch, beside the rows and the unknown it models d with (d = p - y, p one unknown per job and epoch)."""
    rows, first_unknown = len(y), equations[-1][1] + 1 if equations else 0
    rng = np.random.default_rng(seed)
    weights, partition = np.zeros(X.shape[1]), rng.permutation(rows)
    edges = [i * batch for i in range(rows // batch)] + [rows]
    for epoch in range(epochs):
        order = partition if fixed else rng.permutation(rows)
        for start, stop in zip(edges, edges[1:]):
            batch_rows = np.sort(order[start:stop])
            residual = 1 / (1 + np.exp(-X[batch_rows] @ weights)) - y[batch_rows]
            equations.append((batch_rows, first_unknown + epoch))
            values.append(X_host[batch_rows].T @ residual)
            weights -= 0.15 * X[batch_rows].T @ residual / len(batch_rows)
    return weights


def ftl(overlap: int, batch_sizes: list[int], epochs: int, hidden: int) -> None:
    from isthmus.algorithms.hetero_ftl import host, training

    seen, plans = [], []
    parameter_gradient, plan_batches = host.parameter_gradient, host.plan_batches

    def spy_gradient(jacobian, output_gradient):  # the host's decrypted sums are jacobianᵀ output_gradient
        seen.append((jacobian, jacobian.T @ np.asarray(output_gradient, dtype=float).ravel()))
        return parameter_gradient(jacobian, output_gradient)

    def spy_plan(*args):
        plans.append(plan_batches(*args))
        return plans[-1]

    host.parameter_gradient, host.plan_batches = spy_gradient, spy_plan
    file, _, label, _, host_columns = ftl_bench.SPLITS["default_credit"]
    frame = pd.read_csv(ftl_bench.DATA / file)
    guest_rows, _ = ftl_bench.split_rows(len(frame), overlap, 5000, 3000, 0)
    y = frame.iloc[guest_rows[:overlap]][label].to_numpy()
    X_shared = standardised(frame.iloc[guest_rows[:overlap]][host_columns])
    for batch_size in batch_sizes:
        seen.clear()
        plans.clear()
        settings = {"batch_size": batch_size, "hidden": hidden}
        ftl_bench.one("default_credit", overlap, 5000, 3000, False, epochs, 0, settings)
        options = ftl_bench.algorithm("hetero_ftl").Options(**{**ftl_bench.TRAIN, **settings})
        d, steps, totals, first = options.representation, iter(seen), np.zeros(overlap), 0.0
        for epoch in range(epochs):
            for rows in training.batches(plans[-1], options, epoch):
                jacobian, sums = next(steps)
                solved = np.linalg.lstsq(jacobian.T, sums, rcond=None)[0].reshape(len(rows), d)
                score = principal_scores(solved)
                score /= score.std() + 1e-12
                agrees = epoch == 0 or np.corrcoef(score, totals[rows])[0, 1] >= 0  # turned as earlier epochs
                totals[rows] += score if agrees else -score
            if epoch == 0:
                first = per_batch(y, totals, plans[-1])
        print(f"ftl {overlap} shared rows, hidden {hidden}, batch_size {batch_size} (batches of {len(plans[-1][0])}, P = "
              f"{seen[0][0].shape[1]}): host reads each batch's labels at AUC {first:.3f} after one epoch, "
              f"{per_batch(y, totals, plans[-1]):.3f} after {epochs} (mean over batches; its columns in-sample "
              f"{columns_alone(X_shared, y):.3f})", flush=True)


def ftl_guest(overlap: int, batch_sizes: list[int], epochs: int) -> None:
    from isthmus.algorithms.hetero_ftl import guest, terms, training

    seen, host_values, plans = [], [], []  # per step: what the guest holds; the host's u_B (to score only)
    parameter_gradient, plan_batches, guest_terms, host_terms = (guest.parameter_gradient, guest.plan_batches,
                                                                 terms.guest_terms, terms.host_terms)

    def spy_gradient(jacobian, output_gradient):  # the guest decrypts jacobianᵀ output_gradient
        seen[-1]["sums"] = jacobian.T @ np.asarray(output_gradient, dtype=float).ravel()
        seen[-1]["jacobian"] = jacobian
        return parameter_gradient(jacobian, output_gradient)

    def spy_plan(*args):
        plans.append(plan_batches(*args))
        return plans[-1]

    def spy_guest_terms(phi, u_a, y):  # the guest's own u_A, which it knows
        seen.append({"u_a": np.array(u_a)})
        return guest_terms(phi, u_a, y)

    def truth(u_b):
        host_values.append(np.array(u_b))
        return host_terms(u_b)

    guest.parameter_gradient, guest.plan_batches, terms.guest_terms, terms.host_terms = (
        spy_gradient, spy_plan, spy_guest_terms, truth)
    file, _, _, guest_columns, host_columns = ftl_bench.SPLITS["default_credit"]
    frame = pd.read_csv(ftl_bench.DATA / file)
    guest_rows, host_rows = ftl_bench.split_rows(len(frame), overlap, 5000, 3000, 0)

    def inputs(rows, columns):  # a party's inputs, its shared rows first (in the same order at both)
        values = frame.iloc[rows][columns].to_numpy(float)
        return RankGauss.fit(values).transform(values)[:overlap]
    X_shared, X_own = inputs(host_rows, host_columns), inputs(guest_rows, guest_columns)
    for batch_size in batch_sizes:
        seen.clear()
        host_values.clear()
        plans.clear()
        ftl_bench.one("default_credit", overlap, 5000, 3000, False, epochs, 0, {"batch_size": batch_size})
        options = ftl_bench.algorithm("hetero_ftl").Options(**{**ftl_bench.TRAIN, "batch_size": batch_size})
        d, steps = options.representation, iter(zip(seen, host_values))
        estimate, true = np.zeros((overlap, d)), np.zeros((overlap, d))
        for epoch in range(epochs):
            for rows in training.batches(plans[-1], options, epoch):
                (step, u_b), n = next(steps), len(rows)
                solved = np.linalg.lstsq(step["jacobian"].T, step["sums"], rcond=None)[0]
                per_row = solved[d:].reshape(n, d)  # after dL/dPhi: 2 gamma (u_A,i - u_B,i) / n per row
                estimate[rows] += step["u_a"] - per_row * n / (2 * options.gamma)
                true[rows] += u_b
        figures = {name: _r2_figures(explained(U, X_shared))
                   for name, U in (("own", X_own), ("estimate", estimate / epochs),
                                   ("both", np.hstack([X_own, estimate / epochs])), ("true", true / epochs))}
        print(f"ftl-guest {overlap} shared rows, batch_size {batch_size} (batches of {len(plans[-1][0])}), {epochs} "
              f"epochs: R^2 of the host's columns (mean / LIMIT_BAL / bills) from the guest's own columns "
              f"{figures['own']}, from its estimate of u_B {figures['estimate']}, from both {figures['both']} (from "
              f"the true u_B: {figures['true']})", flush=True)


def explained(features: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """5-fold R^2 of a linear regression of each of ``columns`` on ``features``."""
    predicted = cross_val_predict(LinearRegression(), features, columns, cv=5)
    return 1 - ((columns - predicted) ** 2).mean(axis=0) / columns.var(axis=0)


def nn(rows: int, epochs: int, label_noise: float, host_columns: list[str]) -> None:
    from isthmus.algorithms.base import Party, Roster
    from isthmus.algorithms.hetero_nn import interactive
    from isthmus.algorithms.hetero_nn.algorithm import HeteroNN
    from isthmus.algorithms.hetero_nn.guest import NNGuest
    from isthmus.algorithms.hetero_nn.options import NNOptions
    from isthmus.data.table import PartyTable
    from isthmus.protocols.inspect import Inspect
    from isthmus.transport.local import LocalHub

    frame = pd.read_csv(DATA).sample(rows, random_state=0)
    y = frame[LABEL].to_numpy(float)
    X_host = standardised(frame[host_columns])
    X_guest = standardised(frame.drop(columns=[*host_columns, "ID", LABEL]))
    ids = np.array([str(i) for i in range(rows)])
    tables = {"guest": PartyTable("guest", ids, X_guest, [f"g{i}" for i in range(X_guest.shape[1])], y),
              "host": PartyTable("host", ids, X_host, list(host_columns), None)}
    batches, indices, backward = [], Inspect.indices, interactive.HostLink.backward

    def spy_indices(self, *args, **kwargs):
        spy_indices.rows = indices(self, *args, **kwargs)
        return spy_indices.rows

    def spy_backward(self, size):  # the gradient of the host's bottom output, row by row
        gradient = backward(self, size)
        batches.append((spy_indices.rows.copy(), np.array(gradient)))
        return gradient

    units = 4
    guest_got, hosts_part = np.full((rows, units), np.nan), NNGuest._hosts_part

    def spy_hosts_part(self, op, batch_rows):  # what the guest gets: z_h = alpha_h W_h, row by row
        z = hosts_part(self, op, batch_rows)
        if op == "batch":
            guest_got[batch_rows] = z  # the latest epoch's
        return z

    Inspect.indices, interactive.HostLink.backward, NNGuest._hosts_part = spy_indices, spy_backward, spy_hosts_part
    options = NNOptions(epochs=epochs, bottom={"guest": [4], "host": [4]}, interactive_units=units, top=[4, "relu"],
                        key_bits=1024, batch_size=64, learning_rate=0.02, validation_fraction=0.3,
                        label_noise=label_noise)
    hub, roster, folder = LocalHub(list(tables)), Roster({"guest": "guest", "host": "host"}), Path(tempfile.mkdtemp())
    held_out = {}

    def run(name):
        part = HeteroNN().fit(Party(name, roster, hub.channel(name), tables[name], folder), options)
        if name == "guest":
            rows = part.evaluation_rows
            held_out["auc"] = roc_auc_score(y[rows], part.predict(hub.channel(name), tables[name].features, rows))
            part.finish(hub.channel(name))
        else:
            part.serve(hub.channel(name), tables[name].features)

    threads = [threading.Thread(target=run, args=(name,)) for name in tables]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batches = [(rows, gradient) for rows, gradient in batches if len(set(y[rows])) == 2]
    aucs = [either_side(y[rows], principal_scores(gradient)) for rows, gradient in batches]
    # Averaging a row's scores over the epochs, each batch turned the way the labels say: more than a host
    # can orient (an upper bound), and above 0.5 even for pure noise, since each batch is turned its best way.
    totals, counts = np.zeros(rows), np.zeros(rows)
    for batch_rows, gradient in batches:
        score = principal_scores(gradient)
        score /= score.std() + 1e-12
        totals[batch_rows] += score if roc_auc_score(y[batch_rows], score) >= 0.5 else -score
        counts[batch_rows] += 1
    seen = counts > 0
    print(f"nn {rows} rows, {epochs} epochs, label_noise {label_noise:g}, {len(aucs)} batches of 64: host reads each "
          f"batch's labels at AUC median {np.median(aucs):.3f}, lowest {min(aucs):.3f}; averaged over the epochs "
          f"(upper bound) {roc_auc_score(y[seen], totals[seen] / counts[seen]):.3f} (its columns in-sample "
          f"{columns_alone(X_host, y):.3f}); the model's AUC on held-out rows {held_out['auc']:.3f}", flush=True)
    trained = ~np.isnan(guest_got[:, 0])
    r2 = {name: explained(U[trained], X_host[trained])
          for name, U in (("own", X_guest), ("z", guest_got), ("both", np.hstack([X_guest, guest_got])))}
    best = int(np.argmax(r2["z"]))
    print(f"nn: the guest's z_h ({units} numbers per training row, the last epoch's): R^2 of the host's columns, "
          f"mean / {host_columns[best]}, from the guest's own columns {r2['own'].mean():.2f} / {r2['own'][best]:.2f}, "
          f"from z_h {r2['z'].mean():.2f} / {r2['z'][best]:.2f}, from both {r2['both'].mean():.2f} / "
          f"{r2['both'][best]:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["lr", "ftl", "nn", "ftl-guest", "lr-validation"])
    parser.add_argument("--rows", type=int, default=None, help="lr, lr-validation: 6000, nn: 3000; ftl, ftl-guest: shared rows, 300")
    parser.add_argument("--epochs", type=int, default=None, help="lr: 50, lr-validation: 20, ftl: 20, nn: 2")
    parser.add_argument("--batch-sizes", default="50,150", help="ftl, ftl-guest: batch_size values (raised to the floor)")
    parser.add_argument("--hidden", type=int, default=ftl_bench.TRAIN["hidden"], help="ftl: hidden units (0: linear)")
    parser.add_argument("--label-noise", type=float, default=0.0, help="nn: the guest's label_noise")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="lr-validation: the guest's share held out")
    parser.add_argument("--jobs", type=int, default=1, help="lr: jobs of the same guest and host, each its own seed")
    parser.add_argument("--host-pay", action="store_true",
                        help="nn: the host holds the repayment columns (the strong ones) instead of demography and bills")
    args = parser.parse_args()
    if args.model == "lr":
        lr(args.rows or 6000, args.epochs or 50, args.jobs)
    elif args.model == "lr-validation":
        lr_validation(args.rows or 6000, args.epochs or 20, args.validation_fraction)
    elif args.model == "ftl-guest":
        ftl_guest(args.rows or 300, [int(b) for b in args.batch_sizes.split(",")], args.epochs or 20)
    elif args.model == "ftl":
        ftl(args.rows or 300, [int(b) for b in args.batch_sizes.split(",")], args.epochs or 20, args.hidden)
    else:
        nn(args.rows or 3000, args.epochs or 2, args.label_noise, ftl_bench.PAY if args.host_pay else HOST)


if __name__ == "__main__":
    main()
