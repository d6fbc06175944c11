"""A throwaway Ray cluster on this machine, for tests and benchmarks: a head and worker nodes, each its own
``ray start --block`` process, with its own ports and temp folder.

Stopping a node kills exactly the process tree of its ``ray start`` (``ray stop`` would stop every Ray
process of the user, other people's clusters included). The nodes stay in the caller's session: with
the kernel's autogroup scheduling, a new session would get its own fair share of a loaded machine
and make Ray look faster than the local pool on the same cores. Nodes get this isthmus on their
``PYTHONPATH`` so their workers import the same code as the driver.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import isthmus
from isthmus.compute.select import ENV_VAR
from isthmus.transport.ports import free_port, free_ports

START_TIMEOUT_S = 60.0


class LocalRayCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1):
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.temp_dir = Path(tempfile.mkdtemp(prefix="isray", dir="/tmp"))  # Ray's socket paths must stay short
        self.gcs_port, self.client_port = free_ports(2)
        self._processes: list[subprocess.Popen] = []

    @property
    def address(self) -> str:
        """The Ray Client address a party passes as ``--compute``."""
        return f"ray://127.0.0.1:{self.client_port}"

    def start(self) -> LocalRayCluster:
        self._processes.append(self._start_node(0))
        self._wait_started(0)
        self._processes.extend(self._start_node(index) for index in range(1, self.nodes))
        for index in range(1, self.nodes):
            self._wait_started(index)
        return self

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (0: the head) and everything it started: a machine that died."""
        _kill_tree(self._processes[index])

    def restart_node(self, index: int) -> None:
        """Start worker node ``index`` again after :meth:`kill_node` (a machine back from the dead), so the
        cluster is whole for whoever uses it next."""
        _kill_tree(self._processes[index])
        since = self._log(index).stat().st_size
        self._processes[index] = self._start_node(index)
        self._wait_started(index, since)

    def process_titles(self, index: int) -> list[str]:
        """Titles of node ``index``'s Ray processes: a worker running a task is ``ray::<function>``, an idle
        one ``ray::IDLE``."""
        titles = []
        for pid in _descendants(self._processes[index].pid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            if title.startswith("ray::"):
                titles.append(title)
        return titles

    def stop(self) -> None:
        for process in reversed(self._processes):
            _kill_tree(process)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        try:
            return self.start()
        except BaseException:  # a node that did not start: the others must not outlive the attempt
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log(self, index: int) -> Path:
        return self.temp_dir / ("head.log" if index == 0 else f"node{index}.log")

    def _wait_started(self, index: int, since: int = 0) -> None:
        """Until ``ray start`` says the node is up (its ports accept connections a little before that), in
        its log after byte ``since`` (a restarted node appends to the same log)."""
        log = self._log(index)
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"Ray runtime started" not in log.read_bytes()[since:]:
            if self._processes[index].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"local Ray cluster: node {index} did not start; its log ends:\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)

    def _start_node(self, index: int) -> subprocess.Popen:
        if index == 0:
            args = ["--head", "--port", str(self.gcs_port), "--ray-client-server-port", str(self.client_port),
                    "--include-dashboard", "false", "--temp-dir", str(self.temp_dir)]
        else:
            args = ["--address", f"127.0.0.1:{self.gcs_port}"]
        source = str(Path(isthmus.__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
                   RAY_USAGE_STATS_ENABLED="0")
        env.pop(ENV_VAR, None)  # a task runs its work where it is, never as a client of another cluster
        ray = str(Path(sys.executable).with_name("ray"))
        command = [ray, "start", "--block", "--num-cpus", str(self.cpus_per_node), "--node-ip-address", "127.0.0.1",
                   "--dashboard-agent-listen-port", str(free_port()), "--object-store-memory", str(100 * 2**20),
                   "--disable-usage-stats", *args]
        with open(self._log(index), "ab") as log:
            return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0)


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL ``process`` and all its descendants (Ray's workers are the raylet's children)."""
    for pid in [process.pid, *_descendants(process.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(10)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))  # after (comm): state, ppid
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
