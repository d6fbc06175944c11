"""A whole consortium on one machine: certificates, configuration, and one process per member.

For the demo, end-to-end tests and benchmarks: each member runs ``python -m isthmus.query serve``
as its own process, talking to the others over mutual-TLS gRPC on loopback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from isthmus.errors import IsthmusError
from isthmus.query.config import Policy, QueryConfig, config_document, load_config
from isthmus.query.control import control_call
from isthmus.transport.certs import create_federation
from isthmus.transport.ports import free_ports

AGGREGATOR = "aggregator"


@dataclass
class LocalConsortium:
    root: Path
    config: QueryConfig
    config_path: Path
    tables: dict[str, Path]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def state_dir(self, party: str) -> Path:
        return self.root / "state" / party

    def log_file(self, party: str) -> Path:
        return self.root / "logs" / f"{party}.log"

    def start(self, party: str) -> None:
        command = [sys.executable, "-m", "isthmus", "query", "serve", "--config", str(self.config_path),
                   "--party", party, "--state-dir", str(self.state_dir(party)), "--refresh-seconds", "1"]
        if party in self.tables:
            command += ["--table", str(self.tables[party])]
        self.log_file(party).parent.mkdir(parents=True, exist_ok=True)
        with self.log_file(party).open("ab") as log:
            self.processes[party] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        for party in [self.config.aggregator, *self.config.institutions]:
            self.start(party)

    def wait_ready(self, timeout: float = 300.0, parties: list[str] | None = None) -> None:
        """Until every institution's records are held by the aggregator; a dead member raises at once."""
        deadline = time.monotonic() + timeout
        waiting = list(parties or self.config.institutions)
        while waiting:
            for party in list(waiting):
                self._check_alive(party)
                self._check_alive(self.config.aggregator)
                try:
                    state = control_call(self.state_dir(party), "status", timeout=10)
                except IsthmusError:
                    continue
                if state["version"] and state["published"] >= state["version"]:
                    waiting.remove(party)
            if waiting and time.monotonic() > deadline:
                raise IsthmusError(f"{waiting} not ready within {timeout:g} s; see {self.root / 'logs'}")
            time.sleep(0.2)

    def stop(self, party: str, timeout: float = 30.0) -> None:
        process = self.processes.pop(party, None)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for party in list(self.processes):
            self.stop(party)

    def __enter__(self) -> LocalConsortium:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def _check_alive(self, party: str) -> None:
        process = self.processes.get(party)
        if process is not None and process.poll() is not None:
            tail = self.log_file(party).read_text(errors="replace")[-2000:]
            raise IsthmusError(f"the service of {party} exited with code {process.returncode}:\n{tail}")


def prepare_local_consortium(root: Path, tables: dict[str, Path], *, consortium: str = "local-lenders",
                             policy: Policy | None = None) -> LocalConsortium:
    """Certificates, a configuration on free loopback ports; call ``start_all`` to run the members."""
    root = Path(root)
    members = [AGGREGATOR, *sorted(tables)]
    create_federation(root / "certs", members)
    config = QueryConfig(consortium=consortium, aggregator=AGGREGATOR,
                         addresses={name: f"127.0.0.1:{port}" for name, port in zip(members, free_ports(len(members)))},
                         policy=policy or Policy(), cert_dir=Path("certs"))
    config_path = root / "query.yaml"
    config_path.write_text(yaml.safe_dump(config_document(config), sort_keys=False), encoding="utf-8")
    return LocalConsortium(root, load_config(config_path), config_path, dict(tables))

