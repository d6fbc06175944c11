"""The local control socket of a running query service, and the client side of it.

``isthmus query ask`` (and :func:`ask_service` for batches from Python) talk to their own
institution's service through a Unix socket in its state directory: the service holds the
certificate and the federation connections, the officer's tool does not. The socket is reachable
only by the service's user (the directory is 0700), so the ids it carries in clear never leave the
institution's machine. One JSON request per connection, one JSON reply.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from isthmus.errors import ConfigError, DataError, IsthmusError
from isthmus.query.asker import Answer, BatchAnswer

SOCKET_NAME = "control.sock"
_MAX_SOCKET_PATH_BYTES = 100  # the kernel's limit is 107 (sun_path); a little margin
_MAX_REQUEST_BYTES = 64 << 20
_ERRORS: dict[str, type[IsthmusError]] = {"DataError": DataError, "ConfigError": ConfigError}

Operation = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    def __init__(self, path: Path, operations: dict[str, Operation]):
        self.path = path
        self.operations = operations
        self._server: socketserver.ThreadingUnixStreamServer | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        operations = self.operations

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(json.dumps(_dispatch(operations, self.rfile.readline(_MAX_REQUEST_BYTES))).encode() + b"\n")

        with _reachable(self.path) as address:
            self._server = socketserver.ThreadingUnixStreamServer(address, Handler)
        self.path.chmod(0o600)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="query-control", daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self.path.unlink(missing_ok=True)


def control_call(state_dir: Path, op: str, *, timeout: float = 600.0, **args: Any) -> dict[str, Any]:
    """One request to the service whose state directory is ``state_dir``; its errors re-raised here."""
    path = Path(state_dir) / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            with _reachable(path) as address:
                sock.connect(address)
        except OSError as exc:
            raise ConfigError(f"no query service is running with state directory {state_dir} ({exc})") from None
        sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        with sock.makefile("rb") as reply_stream:
            line = reply_stream.readline()
    if not line:
        raise IsthmusError(f"the query service at {state_dir} closed the connection without answering")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise _ERRORS.get(reply.get("kind"), IsthmusError)(reply.get("error", "unknown error"))
    return reply["result"]


def ask_service(state_dir: Path, ids: list[str], *, timeout: float = 600.0) -> BatchAnswer:
    """Ask the running service of one's own institution about a batch of ids."""
    return batch_from_json(control_call(state_dir, "ask", ids=list(ids), timeout=timeout))


def batch_to_json(batch: BatchAnswer) -> dict[str, Any]:
    return asdict(batch)


def batch_from_json(data: dict[str, Any]) -> BatchAnswer:
    return BatchAnswer(
        answers=[Answer(**answer) for answer in data["answers"]],
        answered=data["answered"],
        unanswered=data["unanswered"],
        request=data["request"],
    )


@contextmanager
def _reachable(path: Path) -> Iterator[str]:
    """``path`` as bind and connect take it. A Unix socket's path may hold 107 bytes, which a state directory
    deep in a home or job folder exceeds; a longer one is reached through a descriptor of its directory
    (``/proc/self/fd/N/control.sock``, Linux), which the kernel resolves to the same file."""
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH_BYTES:
        yield str(path)
        return
    if not Path("/proc/self/fd").is_dir():
        raise ConfigError(f"control socket path {path} is too long for a Unix socket; use a shorter --state-dir")
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def _dispatch(operations: dict[str, Operation], line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        operation = operations.get(request.get("op")) if isinstance(request, dict) else None
        if operation is None:
            raise ConfigError(f"unknown control operation; this service offers {sorted(operations)}")
        return {"ok": True, "result": operation(request)}
    except json.JSONDecodeError:
        return {"ok": False, "kind": "ConfigError", "error": "the control request is not one line of JSON"}
    except IsthmusError as exc:
        return {"ok": False, "kind": type(exc).__name__, "error": str(exc)}
    except Exception as exc:  # local caller: the detail helps the operator and stays on this machine
        return {"ok": False, "kind": type(exc).__name__, "error": f"{type(exc).__name__}: {exc}"}
