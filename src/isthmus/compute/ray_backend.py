"""A party's side on its own Ray cluster: the party's process is a Ray Client driver, partitions are Ray tasks.

``ray://HOST:PORT`` is Ray's own client address (the head's ``--ray-client-server-port``, 10001 by
default), so the party's machine need not be a node of the cluster. What crosses to the cluster is
what crosses to the local worker processes: the module-level function, its plain arguments (for PSI
this includes the party's per-job blinding key) and the partition of rows. The cluster is therefore
inside the party's trust boundary, like its own machines; docs/security.md says what that asks of it.

Faults: a task whose worker or node dies is re-run by Ray (``MAX_RETRIES`` times; a task returns
everything it drew at random with its result, so a re-run is as good as the first run). A task Ray gives up on becomes a :class:`ComputeError`
naming the cluster, never a missing or partial result. A function's own exception (a peer's invalid
point) comes back as that exception, exactly as from the local pool, and is not retried.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Self

from isthmus.compute.base import Compute, ComputeError
from isthmus.errors import ConfigError

#: Re-runs of a task whose worker or node died (Ray's default is 3 as well; stated, not inherited).
MAX_RETRIES = 3
CONNECT_PROBE_S = 5.0  # a TCP probe first: Ray's own connect retries for a long time before failing
CONNECT_ATTEMPTS = 3
VERIFY_S = 120.0  # for the first task to run on the cluster (its workers may have to start)


def _run(fn: Callable[..., Any], *args: Any) -> Any:
    """The Ray task: one partition's work (``fn`` is module-level, so it travels as a reference)."""
    return fn(*args)


def _versions() -> tuple[str, str]:
    """What a worker of the cluster runs: its isthmus and Ray versions (checked before a job starts)."""
    from importlib.metadata import PackageNotFoundError, version

    import ray

    try:
        isthmus_version = version("isthmus")
    except PackageNotFoundError:  # importable from a source tree without being installed
        isthmus_version = "source"
    return isthmus_version, ray.__version__


class RayCompute(Compute):
    """The Ray cluster at ``ray://HOST:PORT``; :meth:`check` connects, :meth:`close` disconnects."""

    remote = True

    def __init__(self, address: str):
        self.label = address
        self.host, self.port = _host_port(address)
        self._ray: Any = None
        self._task: Any = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Connect, and run one task, so that a cluster that cannot do the work fails before the job starts."""
        with self._lock:
            if self._ray is not None:
                return
            ray = self._connect()
            try:
                self._verify(ray)
            except ComputeError:
                ray.shutdown()
                raise
            self._ray = ray
            self._task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_run)

    def _verify(self, ray: Any) -> None:
        """One task must run on the cluster, with the party's own isthmus and Ray versions, within
        :data:`VERIFY_S`. Submitting it has no timeout of its own in Ray's client (seen blocked for over a
        minute in its PutObject), so it runs in a thread that is abandoned if it does not finish."""
        answer: Future = Future()

        def ask() -> None:
            try:
                answer.set_result(tuple(ray.get(ray.remote(_versions).remote(), timeout=VERIFY_S)))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                answer.set_exception(exc)

        threading.Thread(target=ask, name="ray-verify", daemon=True).start()
        try:
            theirs = answer.result(timeout=VERIFY_S)
        except TimeoutError:
            raise ComputeError(f"the Ray cluster at {self.label} ran no task within {VERIFY_S:g} s (are its nodes "
                               "up, with free CPUs?)") from None
        except Exception as exc:  # a cluster whose workers cannot import isthmus is no use to this party
            raise ComputeError(f"the Ray cluster at {self.label} cannot run isthmus tasks (is isthmus installed "
                               f"on its nodes?): {type(exc).__name__}: {_first_line(exc)}") from None
        ours = _versions()
        if theirs != ours:  # another isthmus could compute other bytes: the results must be the local pool's
            raise ComputeError(f"version mismatch with the Ray cluster at {self.label}: its workers run isthmus "
                               f"{theirs[0]} with Ray {theirs[1]}, this party isthmus {ours[0]} with Ray {ours[1]}")

    def parallelism(self) -> int:
        """The cluster's CPUs now: partitions are cut into a multiple of them."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def pool(self, records: int, workers: int | None = None) -> RayPool:
        self.check()
        return RayPool(self._task, self._ray, self.parallelism(), self.label)

    def share(self, value: Any) -> Any:
        """An object reference: Ray hands tasks that take it as an argument the value itself."""
        self.check()
        return self._ray.put(value)

    def close(self) -> None:
        with self._lock:
            if self._ray is not None:
                self._ray.shutdown()
                self._ray = self._task = None

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ComputeError(f"compute {self.label} needs Ray: pip install 'isthmus[ray]'") from None
        try:
            socket.create_connection((self.host, self.port), timeout=CONNECT_PROBE_S).close()
        except OSError as exc:
            raise ComputeError(f"the Ray cluster at {self.label} is unreachable ({exc}); is its head running "
                               "with this Ray Client port (`ray start --head --ray-client-server-port`)?") from None
        for attempt in range(1, CONNECT_ATTEMPTS):
            try:
                return self._init(ray)
            except ConnectionError:  # the client server may answer before it can serve (a head just started)
                time.sleep(attempt)
        try:
            return self._init(ray)
        except ConnectionError as exc:
            raise ComputeError(f"cannot connect to the Ray cluster at {self.label} ({CONNECT_ATTEMPTS} attempts): "
                               f"{type(exc).__name__}: {_first_line(exc)}") from None

    def _init(self, ray: Any) -> Any:
        try:
            ray.init(address=self.label, log_to_driver=False, logging_level="WARNING")
        except ConnectionError:
            ray.shutdown()
            raise
        except RuntimeError as exc:
            ray.shutdown()  # a half-made connection must not stay behind for the next attempt
            if "Version mismatch" in str(exc):
                raise ComputeError(f"Ray version mismatch with the cluster at {self.label}: "
                                   f"{' '.join(str(exc).split())}") from None
            raise ComputeError(f"cannot connect to the Ray cluster at {self.label}: {_first_line(exc)}") from None
        except Exception as exc:  # grpc and other errors, depending on where Ray fails
            ray.shutdown()
            raise ComputeError(f"cannot connect to the Ray cluster at {self.label}: "
                               f"{type(exc).__name__}: {_first_line(exc)}") from None
        return ray


class RayPool:
    """Tasks of one protocol run; closing it cancels what has not finished (a run that failed midway)."""

    def __init__(self, task: Any, ray: Any, workers: int, label: str):
        self._task = task
        self._ray = ray
        self.workers = workers
        self._label = label
        self._pending: list[tuple[Any, Future]] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        ref = self._task.remote(fn, *args)
        future = self._translated(ref.future())
        self._pending.append((ref, future))
        return future

    def _translated(self, ray_future: Future) -> Future:
        """A future that holds the task's result, the function's own exception, or a :class:`ComputeError`."""
        from ray.exceptions import RayError, RayTaskError

        out: Future = Future()

        def done(finished: Future) -> None:
            try:
                out.set_result(finished.result())
            except RayTaskError as exc:  # the function raised: hand on its own exception
                out.set_exception(exc.cause if isinstance(exc.cause, Exception) else exc)
            except RayError as exc:  # a worker or node died more often than Ray re-runs a task, or it was lost
                out.set_exception(ComputeError(f"the Ray cluster at {self._label} lost a task after {MAX_RETRIES} "
                                               f"re-runs ({type(exc).__name__}): {_first_line(exc)}"))
            except BaseException as exc:  # noqa: BLE001 - anything else reaches the caller as it is
                out.set_exception(exc)

        ray_future.add_done_callback(done)
        return out

    def close(self) -> None:
        for ref, future in self._pending:
            if not future.done():
                try:
                    self._ray.cancel(ref)
                except Exception:  # noqa: BLE001 - finished meanwhile or already gone: nothing to cancel
                    pass
        self._pending.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"a Ray address is ray://HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
