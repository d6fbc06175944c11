"""gRPC + mutual TLS on loopback: throughput for one large array and small-message round-trip latency.

Named peers measured in the same run:
- plain TCP on loopback (no TLS, no codec): what the machine can move at best;
- the in-process LocalHub: what the codec alone costs, with no network.

    python benchmarks/transport.py            # readable table
    python benchmarks/transport.py --json     # one JSON object

Both nodes run in this process, so encoding, TLS and decoding share its cores; both keep an audit
log, as in production (a sha256 of every message on each side).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from isthmus.transport.audit import AuditLog
from isthmus.transport.certs import create_federation
from isthmus.transport.grpc_transport import GrpcNode
from isthmus.transport.local import LocalHub
from isthmus.transport.ports import free_ports

TARGET_MB_PER_S = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200, help="size of the float64 array (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="large transfers per transport (median is reported)")
    parser.add_argument("--messages", type=int, default=1000, help="ping-pong round trips (default 1000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    array = np.random.default_rng(0).random(args.megabytes * 1_000_000 // 8)
    with tempfile.TemporaryDirectory() as tmp, _grpc_pair(Path(tmp)) as (alice, bob):
        grpc_mb_s = _throughput(array, args.repeats, alice.channel("bench"), bob.channel("bench"))
        grpc_rtt = _ping_pong(args.messages, alice.channel("ping"), bob.channel("ping"))
    hub = LocalHub(["alice", "bob"])
    local_mb_s = _throughput(array, args.repeats, hub.channel("alice"), hub.channel("bob"))
    tcp_mb_s = _tcp_throughput(array.nbytes, args.repeats)
    tcp_rtt = _tcp_ping_pong(args.messages)

    result = {
        "array_megabytes": array.nbytes / 1e6,
        "grpc_mtls_mb_per_s": grpc_mb_s,
        "local_hub_mb_per_s": local_mb_s,
        "tcp_mb_per_s": tcp_mb_s,
        "grpc_vs_tcp_throughput": grpc_mb_s / tcp_mb_s,
        "grpc_vs_local_hub_throughput": grpc_mb_s / local_mb_s,
        "meets_target": grpc_mb_s >= TARGET_MB_PER_S,
        "round_trips": args.messages,
        "grpc_rtt_median_ms": statistics.median(grpc_rtt),
        "grpc_rtt_p99_ms": _p99(grpc_rtt),
        "tcp_rtt_median_ms": statistics.median(tcp_rtt),
        "tcp_rtt_p99_ms": _p99(tcp_rtt),
        "grpc_vs_tcp_rtt": statistics.median(grpc_rtt) / statistics.median(tcp_rtt),
    }
    print(json.dumps(result) if args.json else _table(result))


class _grpc_pair:
    """Two started nodes, alice and bob, on free loopback ports with a fresh federation."""

    def __init__(self, tmp: Path):
        tls = create_federation(tmp / "certs", ["alice", "bob"])
        addresses = {party: f"127.0.0.1:{port}" for party, port in zip(tls, free_ports(len(tls)))}
        self.nodes = [
            GrpcNode(p, addresses[p], addresses, tls[p], audit=AuditLog(tmp / p / "audit.jsonl", p), recv_timeout=300)
            for p in ("alice", "bob")
        ]

    def __enter__(self) -> tuple[GrpcNode, GrpcNode]:
        for node in self.nodes:
            node.start()
        return self.nodes[0], self.nodes[1]

    def __exit__(self, *exc_info: object) -> None:
        for node in self.nodes:
            node.stop()


def _throughput(array: np.ndarray, repeats: int, sender, receiver) -> float:
    """MB/s for encode, send, receive and decode of ``array``, median over ``repeats``."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        sender.send(receiver.party, "array", array)
        got = receiver.recv(sender.party, "array")
        rates.append(array.nbytes / (time.perf_counter() - start) / 1e6)
        assert got.shape == array.shape
    return statistics.median(rates)


def _ping_pong(messages: int, alice, bob) -> list[float]:
    """Round-trip milliseconds of a small message echoed by bob."""

    def echo() -> None:
        for _ in range(messages):
            bob.send("alice", "pong", bob.recv("alice", "ping"))

    return _timed_round_trips(messages, echo, lambda i: (alice.send("bob", "ping", {"i": i}), alice.recv("bob", "pong")))


def _tcp_throughput(nbytes: int, repeats: int) -> float:
    payload = bytes(nbytes)
    rates = []
    for _ in range(repeats):
        with _tcp_pair() as (client, server):
            sink = bytearray(nbytes)
            receiver = threading.Thread(target=_recv_exactly, args=(server, memoryview(sink)))
            start = time.perf_counter()
            receiver.start()
            client.sendall(payload)
            receiver.join()
            rates.append(nbytes / (time.perf_counter() - start) / 1e6)
    return statistics.median(rates)


def _tcp_ping_pong(messages: int) -> list[float]:
    with _tcp_pair() as (client, server):

        def echo() -> None:
            buffer = bytearray(64)
            for _ in range(messages):
                _recv_exactly(server, memoryview(buffer))
                server.sendall(buffer)

        def round_trip(_: int) -> None:
            client.sendall(bytes(64))
            _recv_exactly(client, memoryview(bytearray(64)))

        return _timed_round_trips(messages, echo, round_trip)


def _timed_round_trips(messages: int, echo: Callable[[], None], round_trip: Callable[[int], object]) -> list[float]:
    echoer = threading.Thread(target=echo, daemon=True)
    echoer.start()
    times = []
    for i in range(messages):
        start = time.perf_counter()
        round_trip(i)
        times.append((time.perf_counter() - start) * 1000)
    echoer.join()
    return times


class _tcp_pair:
    def __enter__(self) -> tuple[socket.socket, socket.socket]:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.client = socket.create_connection(listener.getsockname())
            self.server, _ = listener.accept()
        for sock in (self.client, self.server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.client, self.server

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()
        self.server.close()


def _recv_exactly(sock: socket.socket, view: memoryview) -> None:
    while view:
        got = sock.recv_into(view)
        if not got:
            raise ConnectionError("peer closed early")
        view = view[got:]


def _p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def _table(r: dict) -> str:
    return "\n".join(
        [
            f"transport benchmark: one {r['array_megabytes']:.0f} MB float64 array, {r['round_trips']} small round trips",
            "",
            f"{'transport':<28}{'MB/s':>10}{'RTT median ms':>16}{'RTT p99 ms':>13}",
            f"{'gRPC + mTLS (isthmus)':<28}{r['grpc_mtls_mb_per_s']:>10.0f}{r['grpc_rtt_median_ms']:>16.3f}{r['grpc_rtt_p99_ms']:>13.3f}",
            f"{'LocalHub (codec only)':<28}{r['local_hub_mb_per_s']:>10.0f}{'-':>16}{'-':>13}",
            f"{'plain TCP (no TLS, no codec)':<28}{r['tcp_mb_per_s']:>10.0f}{r['tcp_rtt_median_ms']:>16.3f}{r['tcp_rtt_p99_ms']:>13.3f}",
            "",
            f"gRPC / TCP throughput: {r['grpc_vs_tcp_throughput']:.2f}   gRPC / LocalHub throughput: {r['grpc_vs_local_hub_throughput']:.2f}",
            f"gRPC / TCP median RTT: {r['grpc_vs_tcp_rtt']:.1f}x",
            f"target >= {TARGET_MB_PER_S:.0f} MB/s end to end: {'met' if r['meets_target'] else 'NOT met'}",
        ]
    )


if __name__ == "__main__":
    main()
