"""The query service's local control socket: one JSON request, one reply, also from a state directory whose
path is longer than a Unix socket's 107 bytes (a job folder deep in a home directory)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from isthmus.errors import ConfigError, DataError
from isthmus.query.control import SOCKET_NAME, ControlServer, control_call


def _serve(state_dir):
    def echo(request):
        if request.get("bad"):
            raise DataError("a bad id")
        return {"echo": request["value"]}

    server = ControlServer(state_dir / SOCKET_NAME, {"echo": echo})
    server.start()
    return server


@pytest.fixture
def short_dir():
    """A folder whose socket path fits: pytest's own folders may already be too long (pytest-xdist's are)."""
    with tempfile.TemporaryDirectory(prefix="q", dir="/tmp") as name:
        yield Path(name)


@pytest.mark.parametrize("long", [False, True], ids=["short path", "path over 107 bytes"])
def test_requests_reach_the_service_and_its_errors_come_back(tmp_path, short_dir, long):
    state_dir = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5) if long else short_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    assert (len(str(state_dir / SOCKET_NAME)) > 107) == long
    server = _serve(state_dir)
    try:
        assert control_call(state_dir, "echo", value=3, timeout=5) == {"echo": 3}
        with pytest.raises(DataError, match="a bad id"):
            control_call(state_dir, "echo", value=3, bad=True, timeout=5)
        with pytest.raises(ConfigError, match="unknown control operation"):
            control_call(state_dir, "drop", timeout=5)
        assert oct((state_dir / SOCKET_NAME).stat().st_mode & 0o777) == "0o600"
    finally:
        server.stop()
    assert not (state_dir / SOCKET_NAME).exists()
    with pytest.raises(ConfigError, match="no query service is running"):
        control_call(state_dir, "echo", value=3, timeout=5)


def test_a_missing_state_directory_is_no_service(tmp_path):
    with pytest.raises(ConfigError, match="no query service is running"):
        control_call(tmp_path.joinpath(*["a-rather-long-folder-name"] * 12), "echo", timeout=5)
