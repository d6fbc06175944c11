"""The query service end to end: one process per member over mutual-TLS gRPC, driven through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from isthmus.query.launch import prepare_local_consortium
from isthmus.query.synthetic import generate_loans, truth

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BANKS = ["bank1", "bank2", "bank3"]


def cli(consortium, *args):
    command = [sys.executable, "-m", "isthmus", "query", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=consortium.root)


def ask(consortium, *ids, party="bank1"):
    return cli(consortium, "ask", "--config", str(consortium.config_path), "--party", party,
               "--state-dir", str(consortium.state_dir(party)), "--json", *ids)


def test_serve_ask_refresh_and_offline_over_mutual_tls(tmp_path):
    tables = generate_loans(BANKS, 300, seed=5)
    paths = {}
    for name, frame in tables.items():
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    shared = sorted(set(tables["bank2"]["customer_id"]) & set(tables["bank3"]["customer_id"]))[:5]
    ids = [*shared, "NOBODY-1"]
    with prepare_local_consortium(tmp_path / "run", paths) as consortium:
        consortium.start_all()
        consortium.wait_ready(timeout=120)

        done = ask(consortium, *ids)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert [(a["institutions"], a["exposure"]) for a in answer["answers"]] == truth(tables, "bank1", ids)
        assert sorted(answer["answered"]) == ["bank2", "bank3"] and answer["unanswered"] == {}

        # A second service on bank2's state folder used to take over the running one's control socket,
        # which `refresh` below uses.
        twice = cli(consortium, "serve", "--config", str(consortium.config_path), "--party", "bank2", "--table",
                    str(paths["bank2"]), "--state-dir", str(consortium.state_dir("bank2")), "--listen", "127.0.0.1:0")
        assert twice.returncode == 1 and "query service running already?" in twice.stderr, twice.stderr

        changed = tables["bank2"].copy()
        changed.loc[changed["customer_id"] == shared[0], ["status", "amount"]] = ["active", 123.45]
        staging = paths["bank2"].with_suffix(".tmp")
        changed.to_csv(staging, index=False)
        os.replace(staging, paths["bank2"])  # how a table is replaced without downtime
        refreshed = cli(consortium, "refresh", "--party", "bank2", "--state-dir", str(consortium.state_dir("bank2")))
        assert refreshed.returncode == 0, refreshed.stderr
        assert json.loads(refreshed.stdout)["version"] >= 2
        again = json.loads(ask(consortium, shared[0]).stdout)["answers"][0]
        assert (again["institutions"], again["exposure"]) == truth({**tables, "bank2": changed}, "bank1", [shared[0]])[0]

        text = cli(consortium, "ask", "--config", str(consortium.config_path), "--party", "bank1",
                   "--state-dir", str(consortium.state_dir("bank1")), shared[1])
        assert text.returncode == 0 and shared[1] in text.stdout and "2 of 2 institutions answered" in text.stdout

        malformed = ask(consortium, "good-id", "bad id")
        assert malformed.returncode == 1 and "id 2: contains white space" in malformed.stderr
        unknown = ask(consortium, "C1", party="bank9")
        assert unknown.returncode == 1 and "unknown party 'bank9'" in unknown.stderr

        consortium.stop("bank3")
        partial = ask(consortium, *ids)
        assert partial.returncode == 3
        report = json.loads(partial.stdout)
        assert report["answered"] == ["bank2"] and list(report["unanswered"]) == ["bank3"]
        without = {"bank1": tables["bank1"], "bank2": changed}
        assert [(a["institutions"], a["exposure"]) for a in report["answers"]] == truth(without, "bank1", ids)
        # Each query waited the whole connect timeout for it again (5.4 s); now a ping of half a second.
        still = json.loads(ask(consortium, *ids).stdout)["unanswered"]
        assert list(still) == ["bank3"] and "no answer to a ping since" in still["bank3"], still
        consortium.start("bank3")  # back: the others reach it again (they once gave up on it for good)
        consortium.wait_ready(timeout=120, parties=["bank3"])
        back = ask(consortium, *ids)  # the first query after it is back reaches it
        assert back.returncode == 0 and sorted(json.loads(back.stdout)["answered"]) == ["bank2", "bank3"], back.stdout

        for party in ["bank1", "bank2", "aggregator"]:
            state = consortium.state_dir(party)
            assert (state / "audit.jsonl").stat().st_size > 0
            logged = (state / "queries.jsonl").read_text()
            assert logged and not any(customer in logged for customer in ids)
        assert oct((consortium.state_dir("bank1") / "oprf.key").stat().st_mode & 0o777) == "0o600"


def test_demo_matches_the_plaintext_truth(tmp_path):
    from isthmus.demos.query import run_demo

    assert run_demo(tmp_path / "demo") == 0
