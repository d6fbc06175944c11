"""Free ports: on loopback, for parties, nodes and clusters that this machine starts for itself; on any host, for
a node choosing its jobs' ports from a range."""

from __future__ import annotations

import errno
import re
import socket

from isthmus.errors import ConfigError


_ADDRESS = re.compile(r"[A-Za-z0-9.\-\[\]:]+:(?P<port>[0-9]{1,5})")


#: What :func:`is_address` accepts, as error messages say it.
ADDRESS_RULE = "host:port with a port from 1 to 65535"


def is_address(address: object) -> bool:
    """Whether ``address`` is host:port with a port from 1 to 65535 (a port of five digits such as 99999
    passes a pattern, and gRPC listened on it modulo 65536)."""
    match = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    return match is not None and 0 < int(match["port"]) < 65536


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


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` now (as gRPC binds: an address in TIME_WAIT is reusable)."""
    return not why_unbindable(host, port)


def why_unbindable(host: str, port: int) -> str:
    """Why ``host:port`` cannot be bound here, in words; empty if it can (as gRPC binds: an address in TIME_WAIT
    is reusable)."""
    if not 0 <= port <= 65535:  # getaddrinfo takes 99999 as 34463, and gRPC listened there
        return f"{port} is not a port (1 to 65535)"
    try:
        family, _, _, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        return f"the name {host!r} does not resolve on this machine"
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is in use (another party, node or program listens there)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host!r} is not an address of this machine"
            return exc.strerror or str(exc)
    return ""
