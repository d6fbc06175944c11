"""isthmus against Flower 1.42 in the same run: FedAvg logistic regression, secure-aggregation cost, dropouts.

1. make_classification(100,000 x 30) (plus 20,000 held-out rows for accuracy), IID over 10 and over
   100 clients, 10 rounds, 1 local epoch of minibatch SGD (lr 0.05, batch 32) with the same numpy
   model on both sides; simulation on both sides (Flower: its Ray engine, in its own venv).
   Target: isthmus wall time <= 0.5x Flower's, accuracy within 0.005.
2. Secure aggregation on vs off, 100 clients x ~100,000 parameters (a PyTorch MLP 30-256-256-128-1 on
   the same data, 1 local epoch): target overhead <= 1.5x. Also with SecAgg+ neighbourhoods.
3. 30 of 100 clients drop after the key exchange, before their masked input: the recovered sum
   equals the plain sum of the survivors' inputs exactly (bit for bit in Z_2^64).
4. A CNN on scikit-learn's 8x8 digits (homo_nn's demo network, digits_cnn.py), 100 clients with
   Dirichlet(0.5) label skew, 10 rounds, simulated on both sides with identical clients (the same
   TorchClient and seeds): isthmus with secure aggregation off and on (SecAgg+ graph, 20 neighbours)
   against Flower without it; accuracy on 300 held-out images. Targets: wall time <= 0.5x Flower's
   (off), <= 1.0x (on); accuracy within 0.01.

Flower lives in its own venv, never in the project's dependencies; the script creates it if missing
(torch, gmpy2 and pandas because its clients import isthmus' own homo_nn code from ../src):
    python3 -m venv /work/flower-venv && /work/flower-venv/bin/pip install "flwr[simulation]==1.42.0" \
        scikit-learn torch==2.13.0 gmpy2 pandas

    .venv/bin/python benchmarks/vs_flower.py [--flower-python /work/flower-venv/bin/python] [--quick]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

from isthmus.crypto.secagg import encode_fixed
from isthmus.horizontal import FedAvg, LinearClient, LinearModel, SecAggConfig, simulate
from isthmus.horizontal.partition import iid
from isthmus.horizontal.secure_sum import Keyring, SecAggClient, SecAggServer, SecAggTerms

ROOT = Path(__file__).resolve().parents[1]
FLOWER_VENV = Path("/work/flower-venv")
ROWS, FEATURES, ROUNDS, LR, BATCH = 100_000, 30, 10, 0.05, 32
FLOWER_PACKAGES = ("flwr[simulation]==1.42.0", "scikit-learn", "torch==2.13.0", "gmpy2", "pandas")


def ensure_flower(python: Path) -> Path:
    if not python.exists():
        print(f"creating Flower's venv at {python.parents[1]} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(python.parents[1])], check=True)
        subprocess.run(
            [str(python.parents[0] / "pip"), "install", "-q", *FLOWER_PACKAGES], check=True
        )
    return python


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def reap_orphans(timeout: float = 60.0) -> bool:
    """Wait for the processes Ray leaves behind (handed to this process, a subreaper) so that their CPU
    time counts in RUSAGE_CHILDREN; False if some still run after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.2)
        except ChildProcessError:
            return True
    return False


def run_flower(python: Path, clients: int, case: str = "linear") -> dict:
    """Flower's run in its venv: its JSON line, plus ``cpu_s``, the CPU seconds of its whole process tree
    (driver, Ray's servers and workers), which load from other jobs on the machine does not inflate."""
    if sys.platform == "linux":  # PR_SET_CHILD_SUBREAPER: Ray's orphaned workers become our children
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    cpu_before = cpu_seconds(resource.RUSAGE_CHILDREN)
    env = {
        **os.environ,
        "FLWR_TELEMETRY_ENABLED": "0",
        "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'benchmarks'}",
        "RAY_DEDUP_LOGS": "0",
    }
    args = [
        str(python),
        str(ROOT / "benchmarks" / "flower_side.py"),
        "--case",
        case,
        "--clients",
        str(clients),
        "--rounds",
        str(ROUNDS),
    ]
    args += ["--rows", str(ROWS), "--features", str(FEATURES), "--lr", str(LR), "--batch_size", str(BATCH)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"Flower run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    complete = reap_orphans()
    return {**json.loads(lines[-1]), "cpu_s": cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before,
            "cpu_complete": complete}


def data():
    X, y = make_classification(ROWS + ROWS // 5, FEATURES, random_state=0)
    return X[:ROWS], y[:ROWS].astype(float), X[ROWS:], y[ROWS:].astype(float)


def run_isthmus(clients: int, secure: bool) -> dict:
    X, y, X_test, y_test = data()
    began = time.perf_counter()
    model = LinearModel(FEATURES, learning_rate=LR, batch_size=BATCH, epochs=1)
    parties = [LinearClient(model, X[rows], y[rows], seed=i) for i, rows in enumerate(iid(ROWS, clients))]
    result = simulate(parties, FedAvg(), ROUNDS, secure=secure)
    wall = time.perf_counter() - began
    per_round = sum(r.seconds for r in result.history) / len(result.history)
    return {
        "wall_s": wall,
        "per_round_s": per_round,
        "accuracy": model.metrics(result.parameters, X_test, y_test)["accuracy"],
    }


def secure_overhead(rounds: int) -> list[tuple[str, float]]:
    """Seconds per round for 100 torch clients with ~100k parameters, plain and secure."""
    try:
        import torch
    except ImportError:
        print("  (PyTorch not installed: pip install 'isthmus[torch]'; skipped)")
        return []
    from isthmus.horizontal.torch_model import TorchClient

    torch.set_num_threads(1)
    X, y, _, _ = data()
    X, y = X.astype(np.float32), y.astype(np.float32)

    def mlp():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(FEATURES, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 256),
            torch.nn.ReLU(),
            torch.nn.Linear(256, 128),
            torch.nn.ReLU(),
            torch.nn.Linear(128, 1),
        )

    def loss(out, target):
        return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), target)

    parts = iid(ROWS, 100)
    size = sum(p.numel() for p in mlp().parameters())
    print(f"  model: MLP {FEATURES}-256-256-128-1, {size:,} parameters; 100 clients x 1,000 rows, 1 epoch, batch 32")
    timings = []
    for label, secure, secagg in [
        ("secure off", False, None),
        ("secure on (complete graph, Bonawitz)", True, SecAggConfig()),
        ("secure on (SecAgg+ graph, 20 neighbours)", True, SecAggConfig(neighbours=20)),
    ]:
        clients = [
            TorchClient(mlp(), loss, lambda p: torch.optim.SGD(p, lr=0.05), X[r], y[r], seed=i)
            for i, r in enumerate(parts)
        ]
        result = simulate(clients, FedAvg(), rounds, secure=secure, secagg=secagg)
        timings.append((label, sum(r.seconds for r in result.history) / rounds))
    return timings


def dropout_exactness(clients: int = 100, dropped: int = 30, length: int = 100_000) -> bool:
    session = secrets.token_bytes(16)
    names = [f"c{i:03d}" for i in range(clients)]
    rng = np.random.default_rng(1)
    inputs = {n: encode_fixed(rng.normal(0, 1, length), 24, clients) for n in names}
    config = SecAggConfig(dropout_tolerance=0.3)
    keyrings = Keyring.generate(names)
    terms = {n: SecAggTerms(keyrings[n], config, config.quorum(clients), "bench") for n in names}
    parties = {n: SecAggClient(n, terms[n], session, "sum") for n in names}
    server = SecAggServer(terms[names[0]].public(), session, "sum", length)
    requests = server.start({n: p.advertise() for n, p in parties.items()})
    requests = server.route_shares({n: parties[n].share_keys(r) for n, r in requests.items()})
    gone = set(rng.choice(names, dropped, replace=False))
    requests = server.collect_masked(
        {n: parties[n].masked_input(r, inputs[n].copy()) for n, r in requests.items() if n not in gone}
    )
    requests = server.collect_signatures({n: parties[n].confirm(r) for n, r in requests.items()})
    recovered = server.finish({n: parties[n].unmask(r) for n, r in requests.items()})
    plain = np.zeros(length, dtype=np.uint64)
    for n in names:
        if n not in gone:
            plain += inputs[n]
    return len(server.survivors) == clients - dropped and np.array_equal(recovered, plain)


def cnn_case(rounds: int = ROUNDS, clients: int = 100) -> list[tuple[str, float, float, float]]:
    """(label, wall seconds, CPU seconds, accuracy) of the digits CNN over ``clients`` skewed clients,
    secagg off and on."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("  (PyTorch not installed: pip install 'isthmus[torch]'; skipped)")
        return []
    import digits_cnn

    results = []
    for label, secure, secagg in [("secure off", False, None),
                                  ("secure on (SecAgg+ graph, 20 neighbours)", True, SecAggConfig(neighbours=20))]:
        began, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
        parties = [digits_cnn.client(clients, i) for i in range(clients)]
        result = simulate(parties, FedAvg(), rounds, secure=secure, secagg=secagg)
        results.append((label, time.perf_counter() - began, cpu_seconds(resource.RUSAGE_SELF) - cpu,
                        digits_cnn.accuracy(result.parameters)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flower-python", type=Path, default=FLOWER_VENV / "bin" / "python")
    parser.add_argument("--overhead-rounds", type=int, default=2)
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--cnn-only", action="store_true", help="section 4 only")
    args = parser.parse_args()
    print(
        f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (other jobs depress all numbers)\n"
    )
    flower_python = None if args.skip_flower else args.flower_python
    if args.cnn_only:
        return cnn_section(flower_python)

    print("1. FedAvg logistic regression, 10 rounds: isthmus vs Flower 1.42 (Ray), both simulated")
    print(f"{'clients':>7} {'system':<24} {'wall s':>8} {'s/round':>8} {'accuracy':>9} {'wall vs Flower':>15}")
    for clients in (10, 100):
        flower = run_flower(ensure_flower(flower_python), clients) if flower_python else None
        if flower:
            print(
                f"{clients:>7} {'Flower (no secagg)':<24} {flower['wall_s']:>8.2f} {flower['per_round_s']:>8.3f} {flower['accuracy']:>9.4f} {'1.00x':>15}"
            )
        for secure in (False, True):
            ours = run_isthmus(clients, secure)
            ratio = f"{ours['wall_s'] / flower['wall_s']:.2f}x" if flower else "-"
            label = "isthmus secagg " + ("on" if secure else "off")
            print(
                f"{clients:>7} {label:<24} {ours['wall_s']:>8.2f} {ours['per_round_s']:>8.3f} {ours['accuracy']:>9.4f} {ratio:>15}"
            )
            if flower:
                print(f"{'':>7} {'':<24} accuracy delta vs Flower: {abs(ours['accuracy'] - flower['accuracy']):.4f}")

    print("\n2. Secure aggregation overhead, 100 clients x ~100,000 parameters")
    timings = secure_overhead(args.overhead_rounds)
    if timings:
        base = timings[0][1]
        for label, seconds in timings:
            print(f"  {label:<42} {seconds:7.2f} s/round  {seconds / base:5.2f}x")

    print("\n3. Dropout: 30 of 100 clients vanish after sharing keys, 100,000 values each")
    print(f"  recovered sum == plain sum of the 70 survivors, bit for bit: {dropout_exactness()}")
    cnn_section(flower_python)


def cnn_section(flower_python: Path | None) -> None:
    print("\n4. CNN on 8x8 digits, 100 clients, Dirichlet(0.5) label skew, 10 rounds, both simulated")
    print("   (CPU s: every process of the run, so other jobs' load does not count; wall s: as the user waits)")
    flower = run_flower(ensure_flower(flower_python), 100, "cnn") if flower_python else None
    if flower:
        lower = "" if flower["cpu_complete"] else " (a lower bound: some Ray processes outlived the wait)"
        print(f"  {'Flower 1.42 (Ray, no secagg)':<50} {flower['wall_s']:7.2f} s wall {flower['cpu_s']:7.2f} s CPU  "
              f"accuracy {flower['accuracy']:.4f}{lower}")
    for label, wall, cpu, accuracy in cnn_case():
        versus = (f"  vs Flower: {wall / flower['wall_s']:.2f}x wall, {cpu / flower['cpu_s']:.2f}x CPU, accuracy "
                  f"delta {abs(accuracy - flower['accuracy']):.4f}") if flower else ""
        print(f"  isthmus {label:<42} {wall:7.2f} s wall {cpu:7.2f} s CPU  accuracy {accuracy:.4f}{versus}")


if __name__ == "__main__":
    main()
