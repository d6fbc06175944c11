"""Helpers for jobs that run on this machine: free loopback ports and writing a job file."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml


def free_ports(count: int) -> list[int]:
    """Ports that are free on loopback right now (held open together so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_job(path: Path, job: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return path


def loopback_parties(parties: dict[str, dict]) -> dict[str, dict]:
    """Give every party a free loopback address."""
    ports = free_ports(len(parties))
    return {name: {**entry, "address": f"127.0.0.1:{port}"} for (name, entry), port in zip(parties.items(), ports)}
