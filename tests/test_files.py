"""Writes cut short by a full disk (or a file-size limit) leave no half file, no torn line, and name the file."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from isthmus.files import append_line, json_lines_since, lines_from_the_end, write_whole
from isthmus.jobs.events import EventLog, read_events
from isthmus.transport.audit import AuditError, AuditLog


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
