"""A federation of nodes on this machine (demos, tests): each node its own folder, keys and node.yaml.

The keys are made with the one-machine shortcut (:func:`isthmus.transport.certs.create_federation`)
and then split: each node's folder receives only its own private keys, the CA certificate and the
federation file, as if each party had run ``isthmus keys init`` and ``keys install`` itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from isthmus.errors import ConfigError, IsthmusError
from isthmus.transport.ports import free_ports, why_unbindable
from isthmus.transport.certs import create_federation
from isthmus.transport.keyfiles import CA_CERT, FEDERATION_FILE


def make_local_federation(root: Path, nodes: dict[str, dict]) -> dict[str, Path]:
    """``nodes`` maps each party to its node.yaml settings beyond the federation's (catalogue, policy);
    returns each party's node.yaml. Every node gets loopback ports for its peers and its API."""
    root = Path(root)
    parties = sorted(nodes)
    shared = root / "ca-operator"
    create_federation(shared, parties)
    ports = free_ports(2 * len(parties))
    members = {party: f"127.0.0.1:{ports[i]}" for i, party in enumerate(parties)}
    configs = {}
    for i, party in enumerate(parties):
        folder = root / party
        keys = folder / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        for name in (CA_CERT, FEDERATION_FILE):
            shutil.copy(shared / name, keys / name)
        shutil.copytree(shared / party, keys / party)
        (folder / "federation.yaml").write_text(yaml.safe_dump({"members": members}), encoding="utf-8")
        config = {"party": party, "keys": "keys", "federation": "federation.yaml", "store": "store",
                  "api": {"listen": f"127.0.0.1:{ports[len(parties) + i]}"}, **nodes[party]}
        configs[party] = folder / "node.yaml"
        configs[party].write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    shutil.rmtree(shared)  # the CA operator is done: no node keeps the CA key or another party's keys
    return configs


def start_node(config: Path, log: Path) -> subprocess.Popen:
    """``isthmus node start --config CONFIG`` as its own process, its output in ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "isthmus", "node", "start", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)


def api_url(config: Path) -> str:
    return f"http://{yaml.safe_load(Path(config).read_text(encoding='utf-8'))['api']['listen']}"


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    """Return once the node answers on its API; fail with its log if it exits or never answers."""
    from isthmus.node.client import NodeClient

    client, deadline = NodeClient(url, timeout=2.0), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise IsthmusError(f"node at {url} exited ({process.returncode}): {log.read_text(errors='replace')[-2000:]}")
        try:
            client.status()
            return
        except IsthmusError:
            time.sleep(0.2)
    raise IsthmusError(f"node at {url} did not answer within {timeout:g} s; see {log}")


@contextmanager
def running_nodes(configs: dict[str, Path], timeout: float = 60.0) -> Iterator[dict[str, subprocess.Popen]]:
    """Every node of ``configs`` as its own process (log beside its node.yaml), answering when the block
    starts; terminated (killed after 10 s) when it ends. An API address already taken is refused first:
    the program there (another node) would answer the readiness check as if it were this node."""
    for party, config in configs.items():
        listen = api_url(config).removeprefix("http://")
        host, _, port = listen.rpartition(":")
        why = why_unbindable(host, int(port))
        if why:
            raise ConfigError(f"node {party!r} cannot serve its API on {listen}: {why}")
    processes: dict[str, subprocess.Popen] = {}
    try:
        for party, config in configs.items():
            processes[party] = start_node(config, config.parent / "node.log")
        for party, config in configs.items():
            wait_ready(api_url(config), processes[party], config.parent / "node.log", timeout=timeout)
        yield processes
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
