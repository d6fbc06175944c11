"""Job files: parsing, roles, relative paths, and clear errors for what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.errors import ConfigError
from isthmus.jobs.runner import check_steps
from isthmus.jobs.spec import load_job, parse_job

JOB = """
job: credit-risk
timeout: 30
parties:
  guest:   {address: 127.0.0.1:7001, data: {path: guest.csv, id: id, label: y}}
  host:
    - {address: 127.0.0.1:7002, data: {path: /abs/host1.csv, id: uid}}
    - {address: 127.0.0.1:7003, data: {path: host2.csv, id: uid, exclude: [phone]}}
  arbiter: {address: 127.0.0.1:7004}
steps:
  - intersect: {method: ecdh}
  - train: {model: hetero_lr, epochs: 3}
  - evaluate
"""


def test_parses_roles_paths_and_steps(tmp_path: Path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    spec = load_job(path)
    assert spec.name == "credit-risk"
    assert spec.one("guest") == "guest" and spec.one("arbiter") == "arbiter"
    assert spec.with_role("host") == ["host-1", "host-2"]
    assert spec.party("guest").data.path == tmp_path / "guest.csv"  # relative to the job file
    assert spec.party("host-1").data.path == Path("/abs/host1.csv")
    assert spec.party("host-2").data.exclude == ["phone"]
    assert [s.name for s in spec.steps] == ["intersect", "train", "evaluate"]
    assert spec.step("train").options == {"model": "hetero_lr", "epochs": 3}
    assert spec.options == {"timeout": 30}
    check_steps(spec)


@pytest.mark.parametrize("mutation, message", [
    (lambda j: j.replace("job: credit-risk", "job: 'bad name!'"), "job name"),
    (lambda j: j.replace("127.0.0.1:7001", "nowhere"), "host:port"),
    (lambda j: j.replace("arbiter: {", "wizard: {"), "role 'wizard'"),
    (lambda j: j.replace("{path: guest.csv, id: id, label: y}", "{path: guest.csv}"), "'path' and 'id'"),
    (lambda j: j.replace("steps:", "stepz:"), "lacks"),
])
def test_bad_job_files_are_refused_clearly(mutation, message):
    import yaml

    with pytest.raises(ConfigError, match=message):
        parse_job(yaml.safe_load(mutation(JOB)), base_dir=Path("."))


def test_unknown_step_names_the_known_ones():
    import yaml

    spec = parse_job(yaml.safe_load(JOB.replace("- evaluate", "- evaluat")), base_dir=Path("."))
    with pytest.raises(ConfigError, match="unknown steps \\['evaluat'\\]; known steps"):
        check_steps(spec)


def test_missing_file_and_party(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_job(tmp_path / "nope.yaml")
    (tmp_path / "job.yaml").write_text(JOB)
    with pytest.raises(ConfigError, match="no party 'host-9'"):
        load_job(tmp_path / "job.yaml").party("host-9")


def test_benchmark_only_plaintext_modes_need_the_job_switch():
    import yaml

    spec = parse_job(yaml.safe_load(JOB), base_dir=Path("."))
    with pytest.raises(ConfigError, match="benchmark_only_plaintext: true"):
        spec.require_plaintext_switch("train: hetero_lr with encrypt: false")
    allowed = parse_job(yaml.safe_load(JOB.replace("timeout: 30", "benchmark_only_plaintext: true")), base_dir=Path("."))
    allowed.require_plaintext_switch("train: hetero_lr with encrypt: false")
