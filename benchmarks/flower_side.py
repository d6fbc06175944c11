"""Flower's half of benchmarks/vs_flower.py; runs in Flower's own venv, never in the project's.

Same data, partition and local model as the isthmus side: the clients train isthmus' numpy
LinearModel (``--case linear``) or homo_nn's digits CNN through the same TorchClient
(``--case cnn``, see digits_cnn.py), imported from ../src so both sides run identical local SGD;
Flower 1.42's FedAvg aggregates, its Ray simulation engine runs the clients. Prints one JSON line
with wall time, the time of each round (from the server's evaluate_fn, which Flower calls before
round 1 and after each round) and the final test accuracy.

    FLWR_TELEMETRY_ENABLED=0 PYTHONPATH=src:benchmarks /work/flower-venv/bin/python benchmarks/flower_side.py --clients 10

Settings travel in environment variables so that Ray's worker processes, which import this module
afresh, see them too.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

import digits_cnn

from isthmus.horizontal.models import LinearModel
from isthmus.horizontal.partition import iid

ARGS = argparse.Namespace(**json.loads(os.environ.get("ISTHMUS_FLOWER_BENCH", "{}")))


@functools.lru_cache(maxsize=1)
def dataset(rows: int, features: int):
    from sklearn.datasets import make_classification

    X, y = make_classification(rows + rows // 5, features, random_state=0)
    return X[:rows], y[:rows].astype(float), X[rows:], y[rows:].astype(float)


def model() -> LinearModel:
    return LinearModel(ARGS.features, learning_rate=ARGS.lr, batch_size=ARGS.batch_size, epochs=1)


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    parameters = msg.content["arrays"].to_numpy_ndarrays()
    server_round = int(msg.content["config"]["server-round"])
    if ARGS.case == "cnn":
        new, examples, _ = digits_cnn.client(ARGS.clients, partition).fit(parameters, {"round": server_round})
    else:
        X, y, _, _ = dataset(ARGS.rows, ARGS.features)
        rows = iid(len(y), ARGS.clients)[partition]
        rng = np.random.default_rng([partition, server_round])
        new, examples = model().train(parameters, X[rows], y[rows], rng), len(rows)
    reply = RecordDict({"arrays": ArrayRecord(new), "metrics": MetricRecord({"num-examples": examples})})
    return Message(content=reply, reply_to=msg)


server_app = ServerApp()
RESULT: dict = {"round_times": []}


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        RESULT["round_times"].append(time.perf_counter())
        if ARGS.case == "cnn":
            accuracy = digits_cnn.accuracy(arrays.to_numpy_ndarrays())
        else:
            _, _, X_test, y_test = dataset(ARGS.rows, ARGS.features)
            accuracy = model().metrics(arrays.to_numpy_ndarrays(), X_test, y_test)["accuracy"]
        RESULT["accuracy"] = accuracy
        return MetricRecord({"accuracy": accuracy})

    strategy = FedAvg(
        fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=ARGS.clients, min_available_nodes=ARGS.clients
    )
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(
            digits_cnn.initial_parameters() if ARGS.case == "cnn" else model().initial_parameters()
        ),
        num_rounds=ARGS.rounds,
        evaluate_fn=evaluate,
    )


def run() -> None:
    began = time.perf_counter()
    run_simulation(
        server_app, client_app, num_supernodes=ARGS.clients, backend_config={"client_resources": {"num_cpus": 1}}
    )
    wall = time.perf_counter() - began
    times = RESULT["round_times"]
    per_round = (times[-1] - times[0]) / max(len(times) - 1, 1)
    print(
        json.dumps(
            {"clients": ARGS.clients, "wall_s": wall, "per_round_s": per_round, "accuracy": RESULT.get("accuracy")}
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=("linear", "cnn"), default="linear")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch_size", type=int, default=32)
    os.environ["ISTHMUS_FLOWER_BENCH"] = json.dumps(vars(parser.parse_args()))
    import flower_side  # the apps must live in an importable module, not __main__, for Ray's workers

    flower_side.run()
