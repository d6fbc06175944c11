"""A hostile member of the federation, run as its own process by the adversarial transport tests.

    python hostile_peer.py CERT_DIR NAME VICTIM VICTIM_ADDRESS JOB ATTACK [N]

It holds a valid certificate of one of the victim's peers and speaks the transport's wire protocol
directly, so it can send what an honest node never would. It prints one line per outcome, for the
test to read from its output.

Attacks: ``send N`` (one message of N bytes under ``probe``), ``bomb N`` (a message of N nested array
envelopes, then a good one under ``after``), ``flood N`` (up to N messages under tags nobody reads,
until refused) and ``stall N`` (N deliveries at once that send nothing or a few bytes of the
declared size, then hold the stream open).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from isthmus.errors import PeerError
from isthmus.transport import codec
from isthmus.transport.certs import tls_files_for
from isthmus.transport.grpc_inbox import JOB_KEY, MESSAGE_ID_KEY, SENDER_KEY, SIZE_KEY, TAG_KEY
from isthmus.transport.grpc_transport import GrpcNode

STALL_DECLARED, STALL_SENT, STALL_HOLD = 1000, 10, 60.0  # bytes, bytes (every other stream), seconds


def nested_envelopes(depth: int) -> bytes:
    """A message of ``depth`` array envelopes, each the payload of the next: 6 bytes per level."""
    body = b"\xc0"  # nil
    for _ in range(depth):
        body = b"\xc9" + len(body).to_bytes(4, "big") + b"\x01" + body  # ext 32, type 1 (array)
    return codec.frame(body)


def main(cert_dir: str, name: str, victim: str, address: str, job: str, attack: str, count: str = "1") -> None:
    node = GrpcNode(name, "127.0.0.1:0", {victim: address}, tls_files_for(Path(cert_dir), name), connect_timeout=3)
    n = int(count)
    if attack == "send":
        try:
            node.deliver(victim, job, "probe", codec.encode(bytes(n)))
            print("delivered", flush=True)
        except PeerError as exc:
            print(f"refused: {type(exc).__name__}: {exc}", flush=True)
    elif attack == "bomb":
        node.deliver(victim, job, "bomb", nested_envelopes(n))
        node.deliver(victim, job, "after", codec.encode("still here"))
        print("sent", flush=True)
    elif attack == "flood":
        for i in range(n):
            try:
                node.deliver(victim, job, f"unread/{i}", codec.encode(bytes(1000)))
            except PeerError as exc:
                print(f"refused after {i}: {type(exc).__name__}: {exc}", flush=True)
                return
        print(f"never refused in {n}", flush=True)
    elif attack == "stall":
        _stall(node, victim, job, n)
    else:
        raise SystemExit(f"unknown attack {attack!r}")


def _stall(node: GrpcNode, victim: str, job: str, streams: int) -> None:
    """Open ``streams`` deliveries at once that never finish; report how each one ended."""

    def trickle(sent: int) -> Iterator[bytes]:
        if sent:
            yield bytes(sent)
        time.sleep(STALL_HOLD)

    calls = []
    for i in range(streams):
        metadata = ((SENDER_KEY, node.party.encode()), (JOB_KEY, job.encode()), (TAG_KEY, f"stall/{i}".encode()),
                    (SIZE_KEY, str(STALL_DECLARED)), (MESSAGE_ID_KEY, f"stall-{i}"))
        calls.append(node._calls_to(victim).stream.future(trickle(STALL_SENT * (i % 2)), metadata=metadata, timeout=STALL_HOLD))
    time.sleep(0.5)
    print("holding", flush=True)
    for i, call in enumerate(calls):
        try:
            call.result()
            print(f"stream {i}: OK", flush=True)
        except grpc.RpcError as err:
            print(f"stream {i}: {err.code().name}: {err.details()}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
