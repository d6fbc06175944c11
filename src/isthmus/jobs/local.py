"""Helpers for jobs that run on this machine: loopback parties and writing a job file."""

from __future__ import annotations

from pathlib import Path

import yaml

from isthmus.transport.ports import free_ports


def write_job(path: Path, job: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return path


def loopback_parties(parties: dict[str, dict]) -> dict[str, dict]:
    """Give every party a free loopback address."""
    ports = free_ports(len(parties))
    return {name: {**entry, "address": f"127.0.0.1:{port}"} for (name, entry), port in zip(parties.items(), ports)}
