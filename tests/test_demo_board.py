"""`isthmus demo board`: three node processes leave a finished job (metrics, audit, a verified ledger record)
and a proposal waiting on the guest's board. (Running it again into its folder is `demo_folder`'s, tested in
tests/test_rerun.py.)"""

from __future__ import annotations

import httpx
import pytest

from isthmus.demos.board import run_board_demo
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
