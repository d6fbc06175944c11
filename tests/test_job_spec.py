"""Job files: parsing, roles, relative paths, and clear errors for what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.errors import ConfigError, PeerAbortedError
from isthmus.jobs.plan import check_someone_evaluates, make_plan
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
    assert spec.options.timeout == 30 and spec.options.model_fields_set == {"timeout"}
    assert [step.scope for step in make_plan(spec, "host-1").steps] == ["0-intersect", "1-train", "2-evaluate"]


@pytest.mark.parametrize("mutation, message", [
    (lambda j: j.replace("job: credit-risk", "job: 'bad name!'"), "job name"),
    (lambda j: j.replace("127.0.0.1:7001", "nowhere"), "host:port"),
    (lambda j: j.replace("arbiter: {", "wizard: {"), "role 'wizard'"),
    (lambda j: j.replace("{path: guest.csv, id: id, label: y}", "{path: guest.csv}"), "'path' and 'id'"),
    (lambda j: j.replace("steps:", "stepz:"), "lacks"),
    (lambda j: j.replace("127.0.0.1:7004", "127.0.0.1:7002"), "parties 'host-1' and 'arbiter' both have address"),
    (lambda j: j.replace("  arbiter:", "  host-2: {address: 127.0.0.1:7009}\n  arbiter:"), "'host-2' is named twice"),
    (lambda j: j.replace("intersect: {method: ecdh}", "intersect: ecdh"),
     "step 'intersect': options must be a mapping, like 'intersect: {option: value}', got 'ecdh'"),
    # data settings: a lone name was read letter by letter, numbers crashed the party, a contradiction was
    # settled silently (the column used), each only at the intersection
    (lambda j: j.replace("exclude: [phone]", "exclude: phone"),
     "party 'host-2': data 'exclude' must be a list of column names, like \\[phone\\], got 'phone'"),
    (lambda j: j.replace("exclude: [phone]", "features: [phone, 7, {a: 1}]"),
     "party 'host-2': data 'features' must be a column name, got \\{'a': 1\\}"),
    (lambda j: j.replace("exclude: [phone]", "features: [phone, age], exclude: [phone]"),
     "party 'host-2': data column\\(s\\) \\['phone'\\] are in both 'features' and 'exclude'"),
    (lambda j: j.replace("{path: guest.csv, id: id, label: y}", "{path: guest.csv, id: id, label: y, features: [a, y]}"),
     "party 'guest': data 'features' names \\['y'\\], its id or label column"),
    (lambda j: j.replace("{path: guest.csv, id: id, label: y}", "{path: [guest.csv], id: id}"),
     "party 'guest': data 'path' must be a file path, got \\['guest.csv'\\]"),
    (lambda j: j.replace("{path: guest.csv, id: id, label: y}", "{path: guest.csv, id: id, label: true}"),
     "party 'guest': data 'label' must be a column name, got True"),
])
def test_bad_job_files_are_refused_clearly(mutation, message):
    import yaml

    with pytest.raises(ConfigError, match=message):
        parse_job(yaml.safe_load(mutation(JOB)), base_dir=Path("."))


@pytest.mark.parametrize("mutation, message", [
    (lambda j: j.replace("  - evaluate", "  - select: {top_k: 3}\n  - evaluate"), "step 2 'select': needs a 'binning' step"),
    (lambda j: j.replace("  - intersect: {method: ecdh}", "  - evaluate\n  - intersect: {method: ecdh}"),
     "step 0 'evaluate': needs a 'train' step before it"),
    (lambda j: j.replace("  - evaluate", "  - contribution: {}"), None),
    (lambda j: j.replace("  - intersect: {method: ecdh}", "  - contribution: {}\n  - intersect: {method: ecdh}"),
     "step 0 'contribution': needs a 'train' step before it"),
    # it trained on the `aligned` check (or failed it), then intersected for nothing
    (lambda j: j.replace("  - intersect: {method: ecdh}\n", "").replace("  - evaluate", "  - intersect\n  - evaluate"),
     "step 1 'intersect' comes after step 0 'train', which read the rows before they were aligned: put intersect first"),
    (lambda j: j.replace("  - evaluate", "  - train: {model: hetero_secureboost}\n  - evaluate"),  # it replaced model.json
     "steps 1 and 2 both train; a job trains one model"),
    # a metric of another task failed only after the training
    (lambda j: j.replace("  - evaluate", "  - evaluate: {metrics: [auc, rmse]}"),
     "step 2 'evaluate': 'rmse' does not apply to hetero_lr \\(a binary or multiclass model\\)"),
    (lambda j: j.replace("hetero_lr", "hetero_linr").replace("  - evaluate", "  - evaluate: {metrics: [r2, ks]}"),
     "'ks' does not apply to hetero_linr \\(a regression model\\); its metrics: mae, r2, rmse"),
    (lambda j: j.replace("  - evaluate", "  - evaluate: {metrics: [auc, macro_f1]}"), None),
    (lambda j: j.replace("  - evaluate", "  - contribution: {metric: r2}"),
     "step 2 'contribution': 'r2' does not apply to hetero_lr"),
])
def test_a_step_that_needs_an_earlier_one_is_refused_before_anything_runs(mutation, message):
    """evaluate before train failed only after the processes had started and intersected."""
    import yaml

    spec = parse_job(yaml.safe_load(mutation(JOB)), base_dir=Path("."))
    if message is None:
        make_plan(spec, "guest")
        return
    with pytest.raises(ConfigError, match=message):
        make_plan(spec, "guest")


def test_an_evaluate_step_for_a_model_with_nothing_to_evaluate_is_refused_at_load():
    """hetero_ftl's output is the host's predictions: its evaluate step used to pass silently, writing nothing."""
    import yaml

    job = yaml.safe_load(JOB.replace("hetero_lr", "hetero_ftl").replace("{method: ecdh}", "{keep_all_rows: true}"))
    job["parties"] = {"guest": job["parties"]["guest"], "host": job["parties"]["host"][0]}
    spec = parse_job(job, base_dir=Path("."))
    with pytest.raises(ConfigError, match="step 2 'evaluate': hetero_ftl has nothing to evaluate jointly: its output "
                                          "is the host's predictions.csv"):
        make_plan(spec, "host")
    del job["steps"][2]
    make_plan(parse_job(job, base_dir=Path(".")), "host")


def test_a_launched_horizontal_job_whose_evaluate_step_finds_no_rows_is_refused_before_it_starts(tmp_path: Path):
    """Without a test file at any client (or data at the aggregator) the launch finished with no metric and
    no word; one test file is enough."""
    from isthmus.jobs.launcher import launch

    for name in ("a.csv", "b.csv", "held_out.csv"):
        (tmp_path / name).write_text("id,y,x\n1,0,0.5\n2,1,1.5\n")
    job = tmp_path / "job.yaml"
    job.write_text("""
job: no-test-rows
parties:
  aggregator: {address: 127.0.0.1:7301}
  client:
    - {address: 127.0.0.1:7302, data: {path: a.csv, id: id, label: y}}
    - {address: 127.0.0.1:7303, data: {path: b.csv, id: id, label: y}}
steps:
  - train: {model: homo_lr, rounds: 1}
  - evaluate
""")
    with pytest.raises(ConfigError, match="step 1 'evaluate': no party has rows to score; give clients held-out rows"):
        launch(job, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    make_plan(load_job(job), "client-1")  # `run` cannot know another party's --test file: only the launch checks
    job.write_text(job.read_text().replace("b.csv, id: id", "b.csv, test: held_out.csv, id: id"))
    check_someone_evaluates(make_plan(load_job(job), "aggregator"))


def test_numeric_column_names_in_a_job_file_are_the_headers_text():
    """A header of years (2019, 2020) is written unquoted in YAML, which makes numbers of them."""
    import yaml

    job = JOB.replace("exclude: [phone]", "features: [2019, 2020.5], label: 7")
    data = parse_job(yaml.safe_load(job), base_dir=Path(".")).party("host-2").data
    assert (data.features, data.label, data.exclude) == (["2019", "2020.5"], "7", [])


def test_unknown_step_names_the_known_ones():
    import yaml

    spec = parse_job(yaml.safe_load(JOB.replace("- evaluate", "- evaluat")), base_dir=Path("."))
    with pytest.raises(ConfigError, match=r"unknown step 'evaluat' \(did you mean 'evaluate'\?\); steps: .*evaluate"):
        make_plan(spec, "guest")


def test_missing_file_and_party(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_job(tmp_path / "nope.yaml")
    (tmp_path / "job.yaml").write_text(JOB)
    with pytest.raises(ConfigError, match="no party 'host-9'"):
        load_job(tmp_path / "job.yaml").party("host-9")


def test_benchmark_only_plaintext_modes_need_the_job_switch():
    import yaml

    plain = JOB.replace("{model: hetero_lr, epochs: 3}", "{model: hetero_lr, epochs: 3, encrypt: false}")
    spec = parse_job(yaml.safe_load(plain), base_dir=Path("."))
    with pytest.raises(ConfigError, match="party 'guest', step 1 'train' .*benchmark_only_plaintext: true"):
        make_plan(spec, "guest")
    allowed = parse_job(yaml.safe_load(plain.replace("timeout: 30", "benchmark_only_plaintext: true")), base_dir=Path("."))
    assert make_plan(allowed, "guest").first("train").options.options.encrypt is False


@pytest.mark.parametrize("train, message", [
    ("{model: hetero_lr, learning_rat: 0.1}", "unknown option 'learning_rat' \\(did you mean 'learning_rate'\\?\\)"),
    ("{model: hetero_lr, key_bits: 512}", "option 'key_bits': Input should be greater than or equal to 1024"),
    ("{model: hetero_lr, epochs: '3'}", "option 'epochs': Input should be a valid integer"),
    ("{model: hetero_lr, learning_rate: 1e-2, penalty: l3}", "option 'penalty'"),
    ("{model: hetero_secureboost, trees: 0}", "option 'trees'"),
    ("{model: homo_lr}", "homo_lr needs at least 2 client"),
    ("{model: hetero_lrr}", "unknown model 'hetero_lrr' \\(did you mean 'hetero_lr'\\?\\)"),
])
def test_any_invalid_train_option_is_refused_at_load_naming_party_step_and_option(train, message):
    """Every party refuses it when the job loads, before the intersection runs (issue 10, finding 9)."""
    import yaml

    spec = parse_job(yaml.safe_load(JOB.replace("{model: hetero_lr, epochs: 3}", train)), base_dir=Path("."))
    for party in spec.parties:
        with pytest.raises(ConfigError, match=f"party '{party}', step 1 'train'.*{message}"):
            make_plan(spec, party)


@pytest.mark.parametrize("step, message", [
    ("intersect: {method: ecdhh}", "step 0 'intersect': option 'method'"),
    ("intersect: {dedup: first}", "unknown option 'dedup' \\(did you mean 'dedupe'\\?\\)"),
    ("evaluate: {metrics: [aucc]}", "option 'metrics.0'"),
    ("evaluate: {threshold: 1.5}", "option 'threshold'"),
])
def test_any_invalid_option_of_any_step_is_refused_at_load(step, message):
    import yaml

    first = JOB.replace("  - intersect: {method: ecdh}", f"  - {step}") if step.startswith("intersect") else \
        JOB.replace("  - evaluate", f"  - {step}")
    spec = parse_job(yaml.safe_load(first), base_dir=Path("."))
    with pytest.raises(ConfigError, match=message):
        make_plan(spec, "guest")


def test_an_unknown_job_level_option_is_refused():
    import yaml

    with pytest.raises(ConfigError, match="unknown option 'timout' \\(did you mean 'timeout'\\?\\)"):
        parse_job(yaml.safe_load(JOB.replace("timeout: 30", "timout: 30")), base_dir=Path("."))


@pytest.mark.parametrize(("line", "records"), [("", True), ("record: true\n", True), ("record: false\n", False)])
def test_a_launched_job_is_recorded_unless_it_says_record_false(line, records):
    import yaml

    from isthmus.jobs.launcher import records_on_ledger

    spec = parse_job(yaml.safe_load(line + JOB), base_dir=Path("."))
    assert records_on_ledger(spec) is records


def test_a_party_that_died_before_opening_its_log_is_named_in_the_launch_report(tmp_path: Path):
    """A party process that dies while starting leaves no events and no log: the report names it and the missing
    log, instead of failing itself on the absent file (and hiding which party died)."""
    from isthmus.jobs.launcher import _failure_report

    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    report = _failure_report(load_job(path), tmp_path / "run", {"guest": 0, "host-1": 1})
    assert "party 'host-1' exited with 1" in report and "writing its log" in report


def test_a_party_that_refused_to_start_is_reported_by_its_own_error(tmp_path: Path):
    """Its log's last line said why (a port in use); the report called that "before reporting an error"
    and showed the whole tail of the log."""
    from isthmus.jobs.launcher import _failure_report, log_file

    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    log = log_file(tmp_path / "run", "host-1")
    log.parent.mkdir(parents=True)
    log.write_text("starting\nerror: party 'host-1' cannot listen on 127.0.0.1:7002: port 7002 is in use\n")
    report = _failure_report(load_job(path), tmp_path / "run", {"guest": None, "host-1": 1})
    assert report == "party 'host-1' exited with 1: party 'host-1' cannot listen on 127.0.0.1:7002: port 7002 is in use"


def test_a_party_killed_mid_job_is_named_in_the_launch_report_not_a_peer_still_waiting(tmp_path: Path):
    """A party killed by a signal (-9: the OOM killer) leaves no failed event; the report named the first party
    in the job ('arbiter ... exited with None'), which was only waiting for it."""
    from isthmus.jobs.launcher import _failure_report

    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    report = _failure_report(load_job(path), tmp_path / "run", {"guest": None, "host-1": -9})
    assert "party 'host-1' was killed by SIGKILL" in report


def test_the_launch_report_names_the_party_that_failed_not_the_peer_it_told_first(tmp_path: Path):
    """A failing guest tells its peers before it writes its own failure, so the arbiter's "peer aborted the
    job" was the earliest event, and the report named the arbiter for the guest's label error."""
    from isthmus.jobs.events import EventLog
    from isthmus.jobs.launcher import _failure_report
    from isthmus.jobs.runner import run_party
    from isthmus.transport.local import LocalHub

    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    spec = load_job(path)
    hub = LocalHub(list(spec.parties))
    hub.channel("host-1", spec.name).abort("step train failed at host-1 (DataError)")
    with pytest.raises(PeerAbortedError):
        run_party(spec, "arbiter", hub.channel("arbiter", spec.name), tmp_path / "run" / "arbiter")
    (tmp_path / "run" / "host-1").mkdir()
    EventLog(tmp_path / "run" / "host-1", "host-1").emit(step="train", status="failed", error="label 'x0' is not binary")
    report = _failure_report(spec, tmp_path / "run", {"arbiter": 1, "guest": None, "host-1": 1})
    assert report.startswith("job 'credit-risk' failed: party 'host-1' at step 'train': label 'x0' is not binary")


def test_a_plan_names_the_heavy_modules_its_training_imports():
    """A launch's fork server imports them once for all its parties (PyTorch: ~2 CPU s a party otherwise)."""
    import yaml

    neural = parse_job(yaml.safe_load("""
job: nn
parties:
  guest: {address: 127.0.0.1:7001, data: {path: guest.csv, id: id, label: y}}
  host: {address: 127.0.0.1:7002, data: {path: host.csv, id: id}}
steps: [intersect, {train: {model: hetero_nn}}, evaluate]
"""), base_dir=Path("."))
    assert {party: make_plan(neural, party).imports() for party in neural.parties} == {"guest": {"torch"},
                                                                                       "host": {"torch"}}
    linear = parse_job(yaml.safe_load(JOB), base_dir=Path("."))
    assert all(make_plan(linear, party).imports() == set() for party in linear.parties)


def test_a_guest_without_a_label_fails_before_the_intersection(tmp_path: Path):
    """It failed in the train step, after the intersection had run (minutes on large tables)."""
    import dataclasses

    from isthmus.jobs.events import read_events
    from isthmus.jobs.runner import run_party
    from isthmus.transport.local import LocalHub
    from test_aligned import vertical

    spec = vertical(tmp_path, ["intersect", {"train": {"model": "hetero_lr"}}])
    guest = spec.party("guest")
    spec = dataclasses.replace(spec, parties={**spec.parties, "guest": dataclasses.replace(
        guest, data=dataclasses.replace(guest.data, label=None))})
    channel = LocalHub(["guest", "host", "arbiter"]).channel("guest", spec.name)
    channel.default_timeout = 5  # the host never answers: without the check, the intersection waits for it
    with pytest.raises(ConfigError, match=r"party 'guest' \(guest\) needs a 'label' in its data for hetero_lr"):
        run_party(spec, "guest", channel, tmp_path / "g")
    assert not [e for e in read_events(tmp_path / "g" / "events.jsonl") if e.get("step") == "intersect"]
