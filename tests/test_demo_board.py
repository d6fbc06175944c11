"""`isthmus demo board`: three node processes leave a finished job (metrics, audit, a verified ledger record)
and a proposal waiting on the guest's board. (Running it again into its folder is `demo_folder`'s, tested in
tests/test_rerun.py.)"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from isthmus.demos.board import run_board_demo
from isthmus.errors import ConfigError
from isthmus.transport.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_board_demo_serves_a_finished_job_and_a_waiting_proposal(tmp_path):
    seen: dict[str, str] = {}

    def look(url: str) -> None:
        for page in ("/jobs", "/approvals", "/ledger", "/serving"):
            response = httpx.get(url + page)
            assert response.status_code == 200, (page, response.text[-2000:])
            seen[page] = response.text

    port = free_port()
    result = run_board_demo(tmp_path / "demo", port, serve=look)
    assert result["url"] == f"http://127.0.0.1:{port}"
    assert f'href="/jobs/{result["job"]}"' in seen["/jobs"] and "finished" in seen["/jobs"]
    assert f'id="approve-{result["pending"]}"' in seen["/approvals"]
    assert 'id="verified"' in seen["/ledger"] and "Verified" in seen["/ledger"] and "share" in seen["/ledger"]
    assert "credit-v1" in seen["/serving"] and "<td>20</td>" in seen["/serving"]


def test_a_port_taken_by_another_program_is_refused_before_any_node_starts(tmp_path):
    """Another node on that port answered the demo's readiness check as if it were the guest's, and the demo
    then waited 30 s there for a job that another federation's guest had never been sent."""
    class Squatter(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps({"party": "guest", "id": "x", "status": "running"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    squatter = ThreadingHTTPServer(("127.0.0.1", 0), Squatter)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    port = squatter.server_address[1]
    try:
        with pytest.raises(ConfigError, match=f"node 'guest' cannot serve its API on 127.0.0.1:{port}: port {port} "
                                              "is in use"):
            run_board_demo(tmp_path / "demo", port, serve=lambda url: None)
    finally:
        squatter.shutdown()
    assert not list((tmp_path / "demo" / "nodes").glob("*/node.log"))
