"""Writes cut short by a full disk (or a file-size limit) leave no half file, no torn line, and name the file."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys

import pytest

from isthmus.files import append_line, create_private, json_lines_since, lines_from_the_end, write_whole
from isthmus.jobs.events import EventLog, read_events
from isthmus.transport.audit import AuditError, AuditLog
from isthmus.transport.ca import init_ca
from isthmus.transport.party_keys import init_party_keys


@pytest.fixture
def disk_fills_after(monkeypatch):
    """``os.write`` takes ``room`` more bytes, then refuses with "No space left on device", as a full disk does."""
    def fill(room: int) -> None:
        write = os.write

        def cut(fd: int, data) -> int:
            nonlocal room
            if not room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            taken = write(fd, bytes(data[:room]))
            room -= taken
            return taken

        monkeypatch.setattr("isthmus.files.os.write", cut)
    return fill


def test_a_line_cut_short_is_undone_and_the_error_names_the_file(tmp_path, disk_fills_after):
    log = tmp_path / "log.jsonl"
    append_line(log, b'{"a": 1}\n')
    disk_fills_after(5)
    with pytest.raises(OSError, match="No space left on device") as raised:
        append_line(log, b'{"b": 2}\n')
    assert raised.value.filename == str(log) and str(log) in str(raised.value)
    assert log.read_bytes() == b'{"a": 1}\n'


def test_a_file_cut_short_keeps_its_old_content_and_leaves_no_temporary_file(tmp_path):
    report = tmp_path / "run.json"
    write_whole(report, b"old")
    script = ("import resource, sys; from isthmus.files import write_whole; "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100)); write_whole(sys.argv[1], b'x' * 1000)")
    done = subprocess.run([sys.executable, "-c", script, str(report)], capture_output=True, text=True)
    assert done.returncode == 1 and f"File too large: '{report}'" in done.stderr, done.stderr
    assert report.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_the_audit_log_refuses_a_message_it_cannot_record_and_keeps_no_copy_of_it(tmp_path, disk_fills_after):
    audit = AuditLog(tmp_path / "audit.jsonl", "host", keep_payloads=True)
    audit.record("send", "job", "guest", "tag", b"first")
    disk_fills_after(20)  # the payload's copy is written (not through os.write), its line is cut after 20 bytes
    with pytest.raises(AuditError, match=r"party 'host' cannot write its audit log: No space left on device: .*audit\.jsonl"):
        audit.record("send", "job", "guest", "tag", b"second")
    assert [e["bytes"] for e in audit.entries()] == [5]
    assert audit.sent_payloads() == [b"first"]


def test_a_torn_line_hides_none_of_the_events_after_it(tmp_path):
    """A line cut short before lines were appended whole (or by a crash) ran into the next one; a reader that
    stopped there lost every later event, and the board every later audit entry."""
    events = EventLog(tmp_path, "host")
    events.emit(step="train", status="running")
    with events.path.open("a") as log:
        log.write('{"time": 1, "party": "host", "st')  # cut short, no newline
    events.emit(step="train", status="lost")  # runs into the torn line: that one is gone
    events.emit(step="train", status="failed", error="AuditError")
    assert [e["status"] for e in read_events(events.path)] == ["running", "failed"]


def test_a_file_size_limit_is_met_with_whole_lines(tmp_path):
    """A real limit (RLIMIT_FSIZE, as a full disk cuts a write): every line in the file still parses."""
    log = tmp_path / "audit.jsonl"
    script = ("import resource, sys; from isthmus.transport.audit import AuditLog, AuditError\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
              "audit = AuditLog(sys.argv[1], 'host')\n"
              "for n in range(100):\n"
              "    try: audit.record('recv', 'job', 'guest', f'tag-{n}', b'x')\n"
              "    except AuditError as exc: print(exc); break\n")
    done = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True)
    assert "cannot write its audit log: File too large" in done.stdout, done.stderr
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line)["party"] == "host" for line in lines[:-1])


@pytest.mark.parametrize("block_bytes", [1, 3, 7, 1 << 16])
@pytest.mark.parametrize("text", [b"", b"\n", b"one\n", b"one", b"one\n\ntwo\nthree-is-long\n", b"a\nbb\nccc"])
def test_lines_from_the_end_are_the_files_lines_last_first_whatever_the_block(tmp_path, text, block_bytes):
    path = tmp_path / "log.jsonl"
    path.write_bytes(text)
    assert list(lines_from_the_end(path, block_bytes)) == [line for line in text.split(b"\n") if line][::-1]


def test_json_lines_since_reads_a_log_back_to_a_time_and_skips_what_does_not_parse(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [{"time": 1.0, "n": 1}, {"time": 5, "n": 2}, "not json", [1, 2], {"time": "now", "n": 3}, {"n": 4},
             {"time": 6.5, "n": 5}]
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
                    + '{"time": 7.0, "n"')  # cut by a crash
    assert json_lines_since(path, 5) == [{"time": 5, "n": 2}, {"time": 6.5, "n": 5}]
    assert json_lines_since(path, 100) == [] and json_lines_since(tmp_path / "none.jsonl", 0) == []


def test_a_file_replaced_whole_is_synced_before_its_new_name_and_the_name_after(tmp_path, monkeypatch):
    """Unsynced, a power cut soon after the rename can leave the new name on an empty file."""
    steps = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr("isthmus.files.os.fsync",
                        lambda fd: (steps.append(("sync", os.readlink(f"/proc/self/fd/{fd}"))), fsync(fd))[1])
    monkeypatch.setattr("isthmus.files.os.replace", lambda a, b: (steps.append(("rename", str(b))), replace(a, b))[1])
    model = tmp_path / "model.json"
    write_whole(model, b"{}")
    assert steps == [("sync", f"{model}.tmp"), ("rename", str(model)), ("sync", str(tmp_path))]
    steps.clear()
    create_private(tmp_path / "key.pem", b"secret")
    assert steps == [("sync", str(tmp_path / "key.pem")), ("sync", str(tmp_path))]


@pytest.mark.parametrize("make, keys", [
    (lambda folder: init_party_keys(folder, "bank"), ["bank/key.pem", "bank/signing.key"]),
    (lambda folder: init_ca(folder / "ca"), ["ca/ca.key"]),
])
def test_keys_cut_short_by_a_full_disk_are_not_left_to_block_the_next_try(tmp_path, monkeypatch, disk_fills_after,
                                                                           make, keys):
    """An empty key.pem was left behind, unnamed ("[Errno 28]"), and every later `keys init` refused to
    overwrite it. Now the error names the file, the keys made are removed, and the next try works."""
    disk_fills_after(300)  # the first key (about 240 bytes) is written whole, the next one is cut
    with pytest.raises(OSError, match="No space left on device") as raised:
        make(tmp_path)
    assert raised.value.filename.startswith(str(tmp_path))
    assert not [key for key in keys if (tmp_path / key).exists()]
    monkeypatch.undo()  # room again
    make(tmp_path)
    assert all((tmp_path / key).stat().st_mode & 0o777 == 0o600 for key in keys)


def test_keys_init_on_a_full_disk_says_which_file_and_runs_again_once_there_is_room(tmp_path):
    """A real limit (RLIMIT_FSIZE) on the real command: it said "[Errno 27] File too large" and left an empty
    key.pem, and every `keys init` after it refused to overwrite that."""
    command = [sys.executable, "-m", "isthmus", "keys", "init", "--party", "bank", "--dir", str(tmp_path)]
    full = subprocess.run(command, capture_output=True, text=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)))
    assert full.returncode == 1 and f"error: File too large: {tmp_path / 'bank' / 'key.pem'}" in full.stderr, full
    assert not list((tmp_path / "bank").iterdir())
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "bank").iterdir()) == ["key.pem", "request.csr", "signing.key",
                                                                    "signing.pub"]


def test_a_write_that_cannot_start_names_the_file_asked_for_not_its_temporary(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        write_whole(tmp_path / "no-folder" / "report.json", b"{}")
    assert missing.value.filename == str(tmp_path / "no-folder" / "report.json")
    with pytest.raises(IsADirectoryError) as folder:
        write_whole(tmp_path, b"{}")
    assert folder.value.filename == str(tmp_path) and not list(tmp_path.parent.glob("*.tmp"))
