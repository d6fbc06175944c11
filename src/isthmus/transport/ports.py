"""Free loopback ports, for parties, nodes and clusters that this machine starts for itself."""

from __future__ import annotations

import socket

from isthmus.errors import ConfigError


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on loopback right now: all are held open together, so the kernel
    cannot hand out one twice, then closed for their users to bind."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(socket.socket())
            sockets[-1].bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    except OSError as exc:
        raise ConfigError(f"no free loopback port: {exc}") from None
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """One free loopback port."""
    return free_ports(1)[0]
