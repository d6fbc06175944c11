"""The board in a real browser: three node processes, a proposal from the host, the guest's operator approves
in headless Chromium, watches the job finish through the live stream, opens the ROC chart and the audit.

Screenshots of each page go to ``artefacts/board/`` (git-ignored). Needs Debian's ``chromium`` and the
``browser`` extra (Playwright); skips, saying which is missing, without them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isthmus.node.client import NodeClient
from isthmus.node.config import load_node_config
from isthmus.node.local import api_url, running_nodes
from isthmus.node.runner import job_folder
from tests.ledger_helpers import ROLES, record_at_nodes
from tests.node_helpers import federation, proposal

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.browser]
playwright = pytest.importorskip("playwright.sync_api", reason="the browser tests need Playwright: "
                                                                "pip install -e '.[browser]'")
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("the browser tests need Debian's chromium (apt-get install chromium)", allow_module_level=True)

ARTEFACTS = Path(__file__).resolve().parent.parent / "artefacts" / "board"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    configs = federation(tmp_path_factory.mktemp("board-nodes"))
    with running_nodes(configs):
        yield configs


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_an_operator_approves_in_the_browser_and_watches_the_job_finish(nodes, browser):
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    guest_url = api_url(nodes["guest"])
    job_id = NodeClient(api_url(nodes["host"])).submit(proposal())
    page, errors = _page(browser)

    page.goto(f"{guest_url}/approvals")
    _reload_until(page, f"#job-{job_id}")
    page.screenshot(path=ARTEFACTS / "approvals.png", full_page=True)
    page.click(f"#approve-{job_id}")
    page.wait_for_url(f"**/jobs/{job_id}?note=approved")
    assert page.locator("#job-status").get_attribute("data-status") != "finished"  # the rest comes live
    page.wait_for_selector('#job-status[data-status="finished"]', timeout=60_000)  # pushed by the stream
    assert page.locator('li.step[data-state="done"]').count() == 3
    page.screenshot(path=ARTEFACTS / "job.png")

    page.click("#results-link")
    points = _chart_points(page, "roc-chart")
    assert len(points) >= 3 and points[0] == {"x": 0, "y": 0} and points[-1] == {"x": 1, "y": 1}, points
    assert "ROC" in page.locator("figcaption").first.inner_text()
    page.screenshot(path=ARTEFACTS / "results.png")

    page.goto(f"{guest_url}/jobs/{job_id}/audit")
    run = job_folder(nodes["guest"].parent / "store", job_id) / "run"
    sent = sum(e["bytes"] for e in map(json.loads, (run / "audit.jsonl").read_text().splitlines())
               if e["direction"] == "send")
    assert int(page.locator("#sent-total").get_attribute("data-bytes")) == sent > 0
    assert "never its content" in page.locator("#kinds").inner_text()
    page.screenshot(path=ARTEFACTS / "audit.png", full_page=True)

    page.goto(f"{guest_url}/jobs")
    page.screenshot(path=ARTEFACTS / "jobs.png")
    page.goto(f"{guest_url}/jobs/0123456789abcdef")
    assert "404" in page.locator("h1").inner_text()
    assert not [e for e in errors if "404" not in e], errors  # no script error, no CSP violation
    page.close()


def test_the_ledger_page_shows_what_the_peers_node_processes_say_of_their_replicas(nodes, browser, tmp_path):
    """Each node process answers over its mutual-TLS link about its own replica. The guest's ledger page loads
    the answers after it is shown; the arbiter's node, whose replica lacks the job's record, differs."""
    keys = {party: load_node_config(path).keys for party, path in nodes.items()}
    record_at_nodes(keys, tmp_path / "merged", "credit", ROLES, holders=("guest", "host"))
    guest_url = api_url(nodes["guest"])
    page, errors = _page(browser)
    page.goto(f"{guest_url}/ledger")
    assert "Verified" in page.locator("#verified").inner_text()
    page.wait_for_selector("#replica-arbiter", timeout=30_000)
    host, arbiter = page.locator("#replica-host").inner_text(), page.locator("#replica-arbiter").inner_text()
    assert "agrees" in host and "holds the same 1 record(s) naming both nodes" in host, host
    assert "differs" in arbiter and "lacks 1 of this replica's records naming it: record 1 (job credit)" in arbiter
    page.screenshot(path=ARTEFACTS / "ledger.png", full_page=True)
    assert not errors, errors
    page.close()

    verify = subprocess.run([sys.executable, "-m", "isthmus", "ledger", "verify", "--node", guest_url],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 1 and "arbiter      differs" in verify.stdout, verify.stdout + verify.stderr


def test_the_federation_page_pings_the_members_node_processes(nodes, browser):
    """Loaded after the page is shown, over each node's mutual-TLS link: the host's and the arbiter's nodes."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page, errors = _page(browser)
    page.goto(f"{api_url(nodes['guest'])}/federation")
    assert "(36" in page.locator("#certificate").inner_text()
    page.wait_for_selector("#peer-arbiter", timeout=30_000)
    for member in ("host", "arbiter"):
        assert page.locator(f"#peer-{member} .status").inner_text() == "answers"
    page.screenshot(path=ARTEFACTS / "federation.png")
    assert not errors, errors
    page.close()


def _page(browser):
    """A new page, and the list its console errors (script errors, CSP violations) are collected in."""
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return page, errors


def _chart_points(page, canvas: str, timeout: float = 30.0) -> list:
    """The points Chart.js drew on the canvas, once its deferred script has run: the canvas is in the HTML at
    once, the chart a little later (later still under load). Polled from here because the board's CSP refuses
    the eval that Playwright's wait_for_function runs its predicate with."""
    chart = f"Chart.getChart(document.getElementById('{canvas}'))"
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"typeof Chart !== 'undefined' && {chart} !== undefined"):
        assert time.monotonic() < deadline, f"Chart.js never drew #{canvas}"
        time.sleep(0.1)
    return page.evaluate(f"{chart}.data.datasets[0].data")


def _reload_until(page, selector: str, attempts: int = 50) -> None:
    """The proposal reaches the guest's node a moment after the host's returns."""
    for _ in range(attempts):
        if page.locator(selector).count():
            return
        page.wait_for_timeout(200)
        page.reload()
    raise AssertionError(f"{selector} never appeared on {page.url}")
