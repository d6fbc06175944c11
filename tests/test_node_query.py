"""The query service inside the node: started with it from node.yaml's ``query:`` section (its table a catalogue
alias), answering beside members run as `isthmus query serve` processes, stopped with it."""

from __future__ import annotations

import time

import pytest
import yaml

from isthmus.errors import ConfigError, IsthmusError
from isthmus.node.config import load_node_config
from isthmus.node.service import running_node
from isthmus.query.config import Policy
from isthmus.query.control import ask_service, control_call
from isthmus.query.launch import prepare_local_consortium
from isthmus.query.synthetic import generate_loans, truth
from tests.node_helpers import federation

pytestmark = [pytest.mark.e2e]


def test_the_node_runs_its_query_service_and_stops_it(tmp_path):
    tables = generate_loans(["guest", "host"], 200, seed=3)
    paths = {}
    for name, frame in tables.items():
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    with prepare_local_consortium(tmp_path / "run", paths, policy=Policy(paillier_bits=1024)) as consortium:
        config = load_node_config(node_yaml(tmp_path, consortium.config_path, paths["guest"]))
        consortium.start("aggregator")
        consortium.start("host")
        with running_node(config):  # the node's own peers are down: it starts all the same
            consortium.wait_ready(timeout=120, parties=["host"])
            published(config.query_state, timeout=120)
            ids = sorted(set(tables["guest"]["customer_id"]) & set(tables["host"]["customer_id"]))[:3] + ["NOBODY-1"]
            expected = truth(tables, "guest", ids)
            assert sum(n for n, _ in expected) >= 1  # the host lends to one of them, at least
            batch = ask_service(config.query_state, ids, timeout=120)
            assert [(a.institutions, a.exposure) for a in batch.answers] == expected and batch.complete
        with pytest.raises(IsthmusError):
            control_call(config.query_state, "status", timeout=2)


def test_a_query_section_is_checked_when_the_node_loads(tmp_path):
    consortium = prepare_local_consortium(tmp_path / "run", {"guest": tmp_path / "g.csv"},
                                          policy=Policy(mode="per_institution"))
    with pytest.raises(ConfigError, match=r"per_institution.*allow_weakening: \[per_institution_query\]"):
        load_node_config(node_yaml(tmp_path / "a", consortium.config_path, tmp_path / "g.csv"))
    with pytest.raises(ConfigError, match="query.table must name this institution's loans table"):
        load_node_config(node_yaml(tmp_path / "b", consortium.config_path, tmp_path / "g.csv", alias=None,
                                   allow=["per_institution_query"]))
    loaded = load_node_config(node_yaml(tmp_path / "c", consortium.config_path, tmp_path / "g.csv",
                                        allow=["per_institution_query"]))
    assert loaded.options.query.table == "loans" and loaded.query_state == loaded.store / "query"


def node_yaml(folder, query_config, table, *, alias: str | None = "loans", allow: list[str] | None = None):
    """The guest's node.yaml with its loans table in the catalogue and a ``query:`` section."""
    path = federation(folder / "nodes", guest={"allow_weakening": allow or []})["guest"]
    node = yaml.safe_load(path.read_text())
    node["catalogue"]["loans"] = {"path": str(table), "id": "customer_id"}
    node["query"] = {"config": str(query_config), "refresh_seconds": 1, **({"table": alias} if alias else {})}
    path.write_text(yaml.safe_dump(node))
    return path


def published(state, timeout: float) -> None:
    """Until the node's institution has published its table to the aggregator."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = control_call(state, "status", timeout=10)
            if status["version"] and status["published"] >= status["version"]:
                return
        except IsthmusError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the node's query service did not publish within {timeout} s")
