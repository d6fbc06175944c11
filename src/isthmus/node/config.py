"""A node's configuration (node.yaml): who it is, its keys, the federation, its data catalogue, its policy.

Paths in node.yaml are relative to the file's folder. The catalogue's paths stay in this process:
proposals name aliases, and only this node turns an alias into a file.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from isthmus.compute import connect
from isthmus.errors import ConfigError
from isthmus.options import Options
from isthmus.transport.keyfiles import check_party_name, federation_file, load_pinned_keys
from isthmus.transport.ports import ADDRESS_RULE, is_address
from isthmus.yaml_files import load_yaml

ALIAS = re.compile(r"[a-z][a-z0-9_\-]{0,62}")
#: Options that weaken privacy; a policy lists those it ever accepts (none by default).
WEAKENING = ("benchmark_only_plaintext", "reveal_updates", "secure_aggregation_off", "dp_off", "per_institution_query",
             "labels_to_hosts", "representations_to_guest")


class TableEntry(Options):
    """One table this node may lend to jobs: the file stays here, proposals name the alias."""

    path: str
    id: str
    label: str | None = None
    features: list[str] | None = None
    exclude: list[str] = []
    test: str | None = None
    max_rows: int | None = Field(None, ge=1)  # the most rows a job may use; tighter than policy.max_rows if both


class Policy(Options):
    """What this node consents to; a proposal outside it is refused naming the rule."""

    proposers: list[str] | None = None  # members that may propose jobs to this node (None: every member)
    models: list[str] | None = None  # accepted models (None: every registered model)
    steps: list[str] = ["intersect", "train", "evaluate"]
    min_key_bits: int = Field(2048, ge=1024)
    min_intersection: int = Field(100, ge=1)  # the intersect step's min_shared_rows must be at least this
    #: the intersect step's max_peer_ratio must be set and at most this (None: any, or none): a member bringing
    #: far more ids than this node's table could be trying ids to learn which are this node's customers
    max_peer_ratio: float | None = Field(100.0, gt=0)
    #: ids each other member may test against this node's tables in any 24 hours through the intersect steps of
    #: the jobs this node accepts, each counted as its max_peer_ratio times the table's rows (None: no budget).
    #: max_peer_ratio bounds one job; a member proposing job after job could test that many ids each time.
    max_peer_ids_per_day: int | None = Field(None, ge=1)
    max_rows: int | None = Field(None, ge=1)  # the most rows of any one catalogue table a job may use
    allow_weakening: list[Literal[WEAKENING]] = []  # type: ignore[valid-type]
    approval: Literal["auto", "manual"] = "manual"
    #: proposals one member may make to this node in an hour; more are refused and not stored, so a member
    #: cannot fill the store or the operator's list
    max_proposals_per_hour: int = Field(60, ge=1)
    #: a proposal waiting this long for this node's operator is refused as expired, and one this node proposed
    #: still lacking a vote after this long is cancelled: nobody waits for an answer that may never come
    answer_within_hours: float = Field(72.0, gt=0)
    #: ids the guest of a model this node serves may have it look up in an hour: each answer tells the guest
    #: whether this node holds the id, so without a limit a guest could test every id it can think of
    max_prediction_ids_per_hour: int = Field(100_000, ge=1)
    #: model versions one guest may have this node hold published for it at once: each holds a copy of this
    #: node's table in memory, so without a limit a guest publishing name after name could exhaust it
    max_published_versions: int = Field(16, ge=1)


class ApiSettings(Options):
    listen: str = "127.0.0.1:8700"
    token_file: str | None = None  # required when listen is not a loopback address


class QuerySettings(Options):
    """The private query service (docs/query.md) run inside this node, as the member named like the node."""

    config: str  # the consortium's query configuration, shared by its members
    table: str | None = None  # catalogue alias of this institution's loans table (none for the aggregator)
    refresh_seconds: float = Field(10.0, gt=0)  # how often the table file is checked for changes
    listen: str | None = None  # bind address, if not the configured one


class NodeOptions(Options):
    party: str
    keys: str  # the party's key folder (`isthmus keys init` + `keys install`)
    federation: str  # YAML: members: {name: host:port of its node}
    store: str = "node-store"
    listen: str | None = None  # where the node's mutual-TLS port binds (default: its federation address)
    job_host: str = "127.0.0.1"  # the host a job's data port binds and is announced on
    #: "FIRST-LAST": the ports a job's side may listen on, one per job running or agreed (so a firewall can
    #: open just these); None: any free port
    job_ports: str | None = Field(None, pattern=r"^\d{1,5}-\d{1,5}$")
    catalogue: dict[str, TableEntry] = {}
    policy: Policy = Policy()
    api: ApiSettings = ApiSettings()
    timeout: float = Field(20.0, gt=0)  # seconds a node-to-node message may take to be delivered
    #: seconds a prediction waits for its hosts' answers, and for its turn at the model (default: timeout):
    #: a serving deadline tighter than consent needs
    prediction_timeout: float | None = Field(None, gt=0)
    compute: str | None = None  # this party's backend for its jobs: "local" (default) or "ray://HOST:PORT"
    #: days after a job ended that its per-row outputs (predictions, payload copies) are removed here, as
    #: `isthmus job clean` does (None: kept until cleaned by hand); see isthmus.node.retention
    clean_after_days: float | None = Field(None, gt=0)
    query: QuerySettings | None = None  # run the query service with the node (started and stopped with it)


@dataclass(frozen=True)
class NodeConfig:
    options: NodeOptions
    base: Path  # node.yaml's folder
    members: dict[str, str]  # member -> node address

    @property
    def party(self) -> str:
        return self.options.party

    @property
    def policy(self) -> Policy:
        return self.options.policy

    def path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.base / path

    @property
    def keys(self) -> Path:
        return self.path(self.options.keys)

    @property
    def store(self) -> Path:
        return self.path(self.options.store)

    @property
    def query_state(self) -> Path:
        """The query service's state folder (its OPRF key, logs, and the socket `isthmus query ask` uses)."""
        return self.store / "query"

    @property
    def job_ports(self) -> range | None:
        if self.options.job_ports is None:
            return None
        first, last = map(int, self.options.job_ports.split("-"))
        return range(first, last + 1)

    @property
    def token_file(self) -> Path | None:
        return self.path(self.options.api.token_file) if self.options.api.token_file else None


def load_node_config(path: str | Path) -> NodeConfig:
    path = Path(path)
    raw = load_yaml(path, what="node configuration")
    if not isinstance(raw, dict):
        raise ConfigError(f"node configuration {path} must be a mapping with 'party', 'keys', 'federation', ...")
    options = NodeOptions.parse(raw, where=f"node configuration {path}")
    config = NodeConfig(options, path.resolve().parent, {})
    return NodeConfig(options, config.base, _check(config, path))


def _check(config: NodeConfig, path: Path) -> dict[str, str]:
    options = config.options
    party = check_party_name(options.party)
    members = load_members(config.path(options.federation))
    if party not in members:
        raise ConfigError(f"node configuration {path}: party {party!r} is not a member of the federation "
                          f"({', '.join(sorted(members))})")
    pinned = load_pinned_keys(federation_file(config.keys))
    unpinned = sorted(set(members) - set(pinned))
    if unpinned:
        raise ConfigError(f"{federation_file(config.keys)} pins no signing key for members {unpinned}")
    for alias in options.catalogue:
        if not ALIAS.fullmatch(alias):
            raise ConfigError(f"node configuration {path}: catalogue alias {alias!r}: use lower-case letters, digits, "
                              "'_' and '-'")
    unknown = sorted(set(options.policy.proposers or []) - set(members))
    if unknown:
        raise ConfigError(f"node configuration {path}: policy.proposers names non-members {unknown}")
    connect(options.compute)  # a misspelt backend fails when the node starts, not in its first job
    ports = config.job_ports
    if ports is not None and not (1024 <= ports.start and ports and ports.stop <= 65536):
        raise ConfigError(f"node configuration {path}: job_ports {options.job_ports!r} must be FIRST-LAST with "
                          "1024 <= FIRST <= LAST <= 65535")
    if options.query is not None:
        _check_query(config, path)
    listens = {"api.listen": options.api.listen, "listen": options.listen,
               "query.listen": options.query.listen if options.query else None}
    for key, listen in listens.items():
        if listen is not None and not is_address(listen):
            raise ConfigError(f"node configuration {path}: {key} must be {ADDRESS_RULE}, got {listen!r}")
    if options.api.token_file is None and not _loopback(options.api.listen):
        raise ConfigError(f"node configuration {path}: the API listens on {options.api.listen}, beyond this machine; "
                          "set api.token_file (a file holding the token clients must send)")
    return members


def _check_query(config: NodeConfig, path: Path) -> None:
    """The query section names a consortium this party belongs to, and its table when it is an institution."""
    from isthmus.query.config import load_config

    settings = config.options.query
    assert settings is not None
    query = load_config(config.path(settings.config))
    query.check_member(config.party)
    if query.policy.mode == "per_institution" and "per_institution_query" not in config.policy.allow_weakening:
        raise ConfigError(f"node configuration {path}: the consortium's query mode is per_institution (an asker learns "
                          "which institutions lend to an applicant); this node runs it only with "
                          "policy.allow_weakening: [per_institution_query]")
    if config.party != query.aggregator and settings.table not in config.options.catalogue:
        raise ConfigError(f"node configuration {path}: query.table must name this institution's loans table in the "
                          f"catalogue (aliases: {', '.join(sorted(config.options.catalogue)) or 'none'})")


def load_members(path: Path) -> dict[str, str]:
    """The federation file: ``members`` maps each member's name to its node's ``host:port``."""
    raw = load_yaml(path, what="federation file")
    members = raw.get("members") if isinstance(raw, dict) else None
    if not isinstance(members, dict) or not members:
        raise ConfigError(f"federation file {path}: 'members' must map member names to node addresses (host:port)")
    for name, address in members.items():
        check_party_name(name)
        if not is_address(address):
            raise ConfigError(f"federation file {path}: member {name!r}: address must be {ADDRESS_RULE}, "
                              f"got {address!r}")
    return dict(members)


def _loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
