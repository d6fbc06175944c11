"""Running anything twice: a run folder is never shared by two runs or two parties, never half replaced,
and a run that did not finish never looks as if it had."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from isthmus.errors import ConfigError, PeerAbortedError, PeerUnreachableError
from isthmus.jobs.launcher import _certs_fit
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.party_process import with_own_data
from isthmus.jobs.plan import make_plan
from isthmus.jobs.peers import needed_peers, wait_for_peers
from isthmus.jobs.rundir import (RUN_MARKER, contents, locked, mark_stopped, owned_folder, party_folder, read_marker,
                                 recorded)
from isthmus.jobs.spec import load_job, parse_job
from isthmus.transport.certs import create_federation
from isthmus.transport.mailbox import ABORT_TAG, Mailbox
from isthmus.transport.ports import free_port


def isthmus(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isthmus", *args], capture_output=True, text=True, timeout=timeout)


def marker(folder: Path, name: str = RUN_MARKER) -> dict:
    return json.loads((folder / name).read_text())


# --- run folders, in one process ------------------------------------------------------------------


def test_a_folder_in_use_is_refused_naming_the_process(tmp_path):
    with locked(tmp_path / "run"):
        with pytest.raises(ConfigError, match=rf"in use by another isthmus process \(pid {os.getpid()}\).*--out"):
            with locked(tmp_path / "run"):
                pass
    with locked(tmp_path / "run"):  # released with the block
        pass


def test_a_party_refuses_its_earlier_run_unless_told_to_replace_it(tmp_path):
    folder = tmp_path / "guest"
    with party_folder(folder, job="j", party="guest", role="guest"):
        (folder / "model.json").write_text("{}")
    assert marker(folder)["status"] == "finished"
    with pytest.raises(ConfigError, match=r"earlier run \(party 'guest' of job 'j', finished .*--force"):
        with party_folder(folder, job="j", party="guest", role="guest"):
            pass
    assert (folder / "model.json").exists()

    with party_folder(folder, job="j", party="guest", role="guest", replace=True):
        assert contents(folder) == [RUN_MARKER]  # nothing of the earlier run is left to mix with this one
        assert marker(folder)["status"] == "running"


def test_resume_continues_in_the_earlier_run(tmp_path):
    folder = tmp_path / "aggregator"
    with party_folder(folder, job="j", party="aggregator", role="aggregator"):
        (folder / "checkpoints").mkdir()
    with pytest.raises(ConfigError, match="pass --resume to continue it, --force to replace it"):
        with party_folder(folder, job="j", party="aggregator", role="aggregator"):
            pass
    with party_folder(folder, job="j", party="aggregator", role="aggregator", resume=True):
        assert (folder / "checkpoints").is_dir()
    with pytest.raises(ConfigError, match="job 'other' cannot resume"):
        with party_folder(folder, job="other", party="aggregator", role="aggregator", resume=True):
            pass


def test_resume_with_nothing_to_resume_is_refused(tmp_path):
    """A vertical guest, or a client, given --resume ran the job again from scratch over its earlier run."""
    folder = tmp_path / "guest"
    for _ in range(2):  # an empty folder, then one holding a finished run without checkpoints
        with pytest.raises(ConfigError, match=f"nothing to resume in {folder}: it holds no checkpoints"):
            with party_folder(folder, job="j", party="guest", role="guest", resume=True):
                pass
        with party_folder(folder, job="j", party="guest", role="guest", replace=True):
            (folder / "model.json").write_text("{}")
    assert (folder / "model.json").exists()


def test_a_party_never_writes_into_another_partys_run(tmp_path):
    folder = tmp_path / "shared"
    with party_folder(folder, job="j", party="host", role="host"):
        pass
    with pytest.raises(ConfigError, match="run of party 'host', not of 'guest'"):
        with party_folder(folder, job="j", party="guest", role="guest", replace=True):
            pass
    assert marker(folder)["party"] == "host"


def test_files_isthmus_did_not_write_are_never_removed(tmp_path):
    (tmp_path / "guest").mkdir()
    (tmp_path / "guest" / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match=r"holds files that isthmus did not write \(thesis.tex\)"):
        with party_folder(tmp_path / "guest", job="j", party="guest", role="guest", replace=True):
            pass
    with pytest.raises(ConfigError, match="`isthmus demo vertical` did not write"):
        with owned_folder(tmp_path / "guest", marker="demo.json", owner="`isthmus demo vertical`",
                          identity={"command": "isthmus demo vertical"}):
            pass
    assert (tmp_path / "guest" / "thesis.tex").read_text() == "years of work"


def test_a_failed_run_is_marked_failed_and_a_demo_folder_starts_afresh(tmp_path):
    folder = tmp_path / "demo"
    with pytest.raises(RuntimeError):
        with owned_folder(folder, marker="demo.json", owner="the demo", identity={"command": "d"}):
            (folder / "half-written.csv").write_text("1,2")
            raise RuntimeError("disk full")
    assert marker(folder, "demo.json")["status"] == "failed" and marker(folder, "demo.json")["error"] == "disk full"
    with owned_folder(folder, marker="demo.json", owner="the demo", identity={"command": "d"}):
        assert contents(folder) == ["demo.json"]
    assert marker(folder, "demo.json")["status"] == "finished"


def test_a_launch_keeps_its_certificates_only_for_the_same_parties(tmp_path):
    certs = tmp_path / "certs"
    create_federation(certs, ["arbiter", "guest", "host"])
    assert _certs_fit(certs, ["arbiter", "guest", "host"])
    assert not _certs_fit(certs, ["arbiter", "guest", "host", "host-2"])
    assert not _certs_fit(certs, ["guest", "host"])
    (certs / "host" / "key.pem").unlink()
    assert not _certs_fit(certs, ["arbiter", "guest", "host"])
    assert not _certs_fit(tmp_path / "none", ["guest"])


# --- each party reads its own files ---------------------------------------------------------------


def two_party_job(folder: Path, **guest_data) -> Path:
    return write_job(folder / "job.yaml", {
        "job": "own-data",
        "parties": {"guest": {"address": "127.0.0.1:7001", "data": {"path": "shared/guest.csv", "id": "id",
                                                                   "label": "y", **guest_data}},
                    "host": {"address": "127.0.0.1:7002", "data": {"path": "shared/host.csv", "id": "id"}},
                    "arbiter": {"address": "127.0.0.1:7003"}},
        "steps": ["intersect"]})


def test_a_party_chooses_its_own_files(tmp_path):
    spec = load_job(two_party_job(tmp_path, test="shared/guest-test.csv"))
    mine = with_own_data(spec, "guest", data=Path("mine.csv"), test=Path("/data/test.csv"))
    assert mine.party("guest").data.path == Path.cwd() / "mine.csv"  # relative to where the party runs it
    assert mine.party("guest").data.test == Path("/data/test.csv")
    assert mine.party("guest").data.label == "y"  # the job's columns still apply
    assert mine.party("host") == spec.party("host") and spec.party("guest").data.path == tmp_path / "shared/guest.csv"
    assert with_own_data(spec, "guest") is spec


def test_own_files_replace_only_what_the_job_names(tmp_path):
    spec = load_job(two_party_job(tmp_path))
    with pytest.raises(ConfigError, match="party 'arbiter' no data"):
        with_own_data(spec, "arbiter", data=Path("x.csv"))
    with pytest.raises(ConfigError, match="party 'guest' no test data"):
        with_own_data(spec, "guest", test=Path("t.csv"))


# --- peers that never start -----------------------------------------------------------------------


def test_a_peer_that_never_listens_is_named_after_the_connect_timeout(tmp_path):
    spec = load_job(two_party_job(tmp_path))
    with socket.create_server(("127.0.0.1", 0)) as listening:
        raw = spec.to_dict()
        raw["parties"]["arbiter"]["address"] = f"127.0.0.1:{listening.getsockname()[1]}"
        raw["parties"]["host"]["address"] = f"127.0.0.1:{free_port()}"
        spec = parse_job(raw, base_dir=tmp_path)
        with pytest.raises(PeerUnreachableError, match=r"waited 0.5 s .* nothing listens where 'host' \(127") as caught:
            wait_for_peers(make_plan(spec, "guest"), timeout=0.5)
    assert caught.value.peer == "host" and "'arbiter'" not in str(caught.value)


def test_a_wait_for_a_late_peer_is_told_then_its_end(tmp_path, caplog):
    """`isthmus run` said nothing for the connect timeout (a minute by default) while a peer had not started."""
    spec = load_job(two_party_job(tmp_path))
    late = socket.socket()
    late.bind(("127.0.0.1", 0))
    raw = spec.to_dict()
    with socket.create_server(("127.0.0.1", 0)) as listening:
        raw["parties"]["arbiter"]["address"] = f"127.0.0.1:{listening.getsockname()[1]}"
        raw["parties"]["host"]["address"] = f"127.0.0.1:{late.getsockname()[1]}"
        starts = threading.Timer(1.6, late.listen)
        starts.start()
        with caplog.at_level("INFO", logger="isthmus.guest"):
            wait_for_peers(make_plan(parse_job(raw, base_dir=tmp_path), "guest"), timeout=10)
    starts.join()
    late.close()
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 2, said
    assert said[0] == (f"step=connect waiting for 'host' ({raw['parties']['host']['address']}), for at most 10 s "
                       "(connect_timeout)")
    assert said[1].startswith("step=connect every peer listens, after ")


def test_a_peer_that_delivered_and_left_counts_as_reached(tmp_path):
    """CI saw this: a quick host sent all it had to the guest and exited before the slow guest first
    looked for it; the guest then waited its whole connect_timeout for a peer that had done its part."""
    spec = load_job(two_party_job(tmp_path))
    with socket.create_server(("127.0.0.1", 0)) as listening:
        raw = spec.to_dict()
        raw["parties"]["arbiter"]["address"] = f"127.0.0.1:{listening.getsockname()[1]}"
        raw["parties"]["host"]["address"] = f"127.0.0.1:{free_port()}"  # gone
        spec = parse_job(raw, base_dir=tmp_path)
        mailbox = Mailbox()
        mailbox.open_job(spec.name)
        mailbox.put(spec.name, "host", "psi/hello", b"x")
        wait_for_peers(make_plan(spec, "guest"), timeout=5, heard_from=lambda: mailbox.senders(spec.name))


@pytest.mark.parametrize("steps, waited_for", [
    (["intersect"], False),  # a PSI-only job: the arbiter meets nobody
    (["intersect", {"train": {"model": "hetero_secureboost"}}], False),  # it idles (a job may list one)
    (["intersect", {"train": {"model": "hetero_lr"}}], True),
    (["intersect", {"train": {"model": "hetero_secureboost"}}, "record"], True),  # it signs the record
])
def test_a_party_that_meets_nobody_is_not_waited_for(tmp_path, steps, waited_for):
    """An arbiter with nothing to do ends as soon as its peers listen: the last of them to start then looked for
    it, found it gone and waited its connect timeout (60 s) before failing with "start it"."""
    raw = load_job(two_party_job(tmp_path)).to_dict()
    raw["steps"] = steps
    with socket.create_server(("127.0.0.1", 0)) as listening:
        raw["parties"]["host"]["address"] = f"127.0.0.1:{listening.getsockname()[1]}"
        raw["parties"]["arbiter"]["address"] = f"127.0.0.1:{free_port()}"  # done, and gone
        spec = parse_job(raw, base_dir=tmp_path)
        assert needed_peers(make_plan(spec, "guest")) == (["arbiter", "host"] if waited_for else ["host"])
        assert needed_peers(make_plan(spec, "arbiter")) == (["guest", "host"] if waited_for else [])
        if waited_for:
            with pytest.raises(PeerUnreachableError, match="nothing listens where 'arbiter'"):
                wait_for_peers(make_plan(spec, "guest"), timeout=0.5)
        else:
            wait_for_peers(make_plan(spec, "guest"), timeout=0.5)


def test_waiting_for_peers_stops_when_a_peer_aborts_the_job(tmp_path):
    """A peer may fail and exit before this party sees it listening: its abort must end the wait."""
    spec = load_job(two_party_job(tmp_path))
    raw = spec.to_dict()
    raw["parties"]["host"]["address"] = f"127.0.0.1:{free_port()}"
    mailbox = Mailbox()
    mailbox.open_job(spec.name)
    mailbox.put(spec.name, "host", ABORT_TAG, b"step intersect failed at host (DataError)")
    started = time.monotonic()
    with pytest.raises(PeerAbortedError, match="failed at host"):
        wait_for_peers(make_plan(parse_job(raw, base_dir=tmp_path), "guest"), timeout=30,
                       check_abort=lambda: mailbox.raise_if_aborted(spec.name, "connect"))
    assert time.monotonic() - started < 5


def test_clients_are_not_waited_for_as_the_job_survives_their_absence():
    raw = {"job": "h", "parties": {"client-1": {"address": "127.0.0.1:1", "data": {"path": "a", "id": "id"}},
                                   "client-2": {"address": "127.0.0.1:2", "data": {"path": "b", "id": "id"}},
                                   "aggregator": {"address": "127.0.0.1:3"}},
           "steps": [{"train": {"model": "homo_lr"}}]}
    spec = parse_job(raw, base_dir=Path("."))
    assert needed_peers(make_plan(spec, "aggregator")) == []
    assert needed_peers(make_plan(spec, "client-1")) == ["aggregator"]


# --- real processes -------------------------------------------------------------------------------


def finished_events(party_dir: Path) -> int:
    return sum('"status": "finished"' in line for line in (party_dir / "events.jsonl").read_text().splitlines())


@pytest.mark.e2e
def test_launch_twice_into_the_same_folder(tmp_path):
    job = write_job(tmp_path / "job.yaml", {"job": "twice", "record": False,
                                            "parties": loopback_parties({"guest": {}, "host": {}, "arbiter": {}}),
                                            "steps": [{"selftest": {"key_bits": 1024}}]})
    run = tmp_path / "run"
    first = isthmus("launch", str(job), "--out", str(run))
    assert first.returncode == 0, first.stdout + first.stderr
    ca = (run / "certs" / "ca.pem").read_bytes()
    (run / "guest" / "left-over.json").write_text("{}")  # a result of the first run only

    second = isthmus("launch", str(job), "--out", str(run))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "replacing the earlier run" in second.stdout and "certificates are kept" in second.stdout
    assert (run / "certs" / "ca.pem").read_bytes() == ca
    assert not (run / "guest" / "left-over.json").exists()
    assert marker(run, "launch.json")["status"] == "finished"
    for party in ("guest", "host", "arbiter"):
        assert finished_events(run / party) == 1 and marker(run / party)["status"] == "finished"


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_twice_in_the_same_folder(tmp_path):
    for _ in range(2):
        result = isthmus("demo", "--out", str(tmp_path), "--key-bits", "1024")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1] == f"results: {tmp_path / 'vertical'}"
    folder = tmp_path / "vertical"
    assert marker(folder, "demo.json")["status"] == "finished"
    assert json.loads((folder / "run" / "parity.json").read_text())["metric"] == "auc"
    assert finished_events(folder / "run" / "guest") == 1


@pytest.mark.e2e
def test_parties_sharing_an_out_folder_each_keep_their_own_run_and_files(tmp_path):
    from isthmus.demos.vertical import make_vertical_data

    guest_csv, host_csv = make_vertical_data(tmp_path / "data")
    job = write_job(tmp_path / "job.yaml", {
        "job": "shared-out", "record": False,
        "parties": loopback_parties({
            # the job file every member shares names a file the guest does not have: it uses its own
            "guest": {"data": {"path": "/nonexistent/guest.csv", "id": "id", "label": "y"}},
            "host": {"data": {"path": str(host_csv), "id": "id"}}, "arbiter": {}}),
        "steps": [{"intersect": {"method": "ecdh"}},
                  {"train": {"model": "hetero_lr", "epochs": 2, "batch_size": 128, "key_bits": 1024, "precision": 6}}]})
    certs, out = tmp_path / "certs", tmp_path / "out"
    create_federation(certs, ["arbiter", "guest", "host"])
    own = {"guest": ["--data", str(guest_csv)]}
    processes = {party: subprocess.Popen([sys.executable, "-m", "isthmus", "run", str(job), "--party", party,
                                          "--certs", str(certs), "--out", str(out), *own.get(party, [])],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for party in ("guest", "host", "arbiter")}
    for party, process in processes.items():
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, f"{party}: {output}"
    assert len(json.loads((out / "guest" / "model.json").read_text())["coef"]) == 11  # its 10 columns + intercept
    assert len(json.loads((out / "host" / "model.json").read_text())["coef"]) == 20
    for party in ("guest", "host", "arbiter"):
        rows = [json.loads(line) for line in (out / party / "audit.jsonl").read_text().splitlines()]
        assert rows and party not in {row["peer"] for row in rows}  # only this party's messages
        assert all(row.get("party", party) == party for row in rows)
        assert {event["party"] for event in map(json.loads, (out / party / "events.jsonl").read_text().splitlines())} \
            == {party}

    again = isthmus("run", str(job), "--party", "guest", "--certs", str(certs), "--out", str(out),
                    "--data", str(guest_csv))
    assert again.returncode == 1 and "--force" in again.stderr
    assert len(json.loads((out / "guest" / "model.json").read_text())["coef"]) == 11


@pytest.mark.e2e
def test_a_party_whose_peer_never_starts_fails_naming_it(tmp_path):
    from isthmus.demos.vertical import make_vertical_data

    guest_csv, host_csv = make_vertical_data(tmp_path / "data")
    job = write_job(tmp_path / "job.yaml", {
        "job": "alone", "connect_timeout": 2, "timeout": 600,
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(host_csv), "id": "id"}}}),
        "steps": [{"intersect": {"method": "ecdh"}}]})
    create_federation(tmp_path / "certs", ["guest", "host"])
    # the host only receives at first: without a bound it would wait the job's 600 s message timeout
    result = isthmus("run", str(job), "--party", "host", "--certs", str(tmp_path / "certs"), "--out",
                     str(tmp_path / "out"), timeout=90)
    assert result.returncode == 1
    guest_address = load_job(job).party("guest").address
    assert f"'guest' ({guest_address})" in result.stderr and "connect_timeout" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert marker(tmp_path / "out" / "host")["status"] == "failed"


def test_a_run_folder_still_written_is_not_pulled_away(tmp_path):
    with owned_folder(tmp_path / "demo", marker="demo.json", owner="the demo", identity={"command": "d"}):
        with party_folder(tmp_path / "demo" / "run" / "guest", job="j", party="guest", role="guest"):
            pass
    with locked(tmp_path / "demo" / "run" / "guest"):  # an orphaned party process, still running
        with pytest.raises(ConfigError, match="guest is in use"):
            with owned_folder(tmp_path / "demo", marker="demo.json", owner="the demo", identity={"command": "d"}):
                pass
    with owned_folder(tmp_path / "demo", marker="demo.json", owner="the demo", identity={"command": "d"}):
        assert contents(tmp_path / "demo") == ["demo.json"]


def test_a_stopped_run_says_why_its_killer_stopped_it_and_an_ended_one_is_left_alone(tmp_path):
    """A party killed by the launch (still busy after a peer failed) or by its node kept "running" for ever; one
    that marked itself interrupted on the launch's SIGTERM gets the launch's reason."""
    marker = tmp_path / RUN_MARKER
    with recorded(marker, job="j", party="guest"):
        mark_stopped(marker, "stopped by `isthmus launch`")  # as the launch does once the process is gone
        killed = read_marker(marker)
        assert (killed["status"], killed["error"]) == ("failed", "stopped by `isthmus launch`")
    finished = read_marker(marker)
    mark_stopped(marker, "too late")
    assert read_marker(marker) == finished and finished["status"] == "finished"
    with pytest.raises(KeyboardInterrupt), recorded(marker, job="j", party="guest"):
        raise KeyboardInterrupt  # the party's own SIGTERM handling
    mark_stopped(marker, "stopped by `isthmus launch`, itself interrupted (SIGTERM)")
    interrupted = read_marker(marker)
    assert (interrupted["status"], interrupted["error"]) == ("interrupted", "stopped by `isthmus launch`, itself "
                                                                            "interrupted (SIGTERM)")
