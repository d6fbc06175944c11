"""The contract every federated algorithm fulfils, so that jobs, parity, contribution and the node
dispatch on it and never name a model.

An :class:`Algorithm` declares who takes part (its roles), its typed :class:`~isthmus.options.Options`,
whether it takes empty cells, how its contribution can be measured, and its centralised reference for
``isthmus parity``. Its :meth:`~Algorithm.fit` runs one party's side over a channel and returns that
party's :class:`Part` of the model: a vertical guest's part scores rows jointly with the hosts'
parts, which serve it; in horizontal jobs every party holds the whole model. A part saves itself as
plain JSON (nothing pickled) and the algorithm loads it back for serving. See docs/architecture.md
for adding an algorithm.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from isthmus.crypto.keys import MAX_KEY_BITS, MIN_KEY_BITS
from isthmus.errors import ConfigError, DataError
from isthmus.files import write_whole
from isthmus.options import Options
from isthmus.transport.channel import Channel

if TYPE_CHECKING:  # pandas only where tables are read: validating a job file need not import it
    from isthmus.data.table import PartyTable

#: Vertical (hetero): the parties hold different columns of the same rows; horizontal (homo): the
#: same columns of different rows. Model names keep FATE's prefixes: hetero_lr is a vertical model.
Family = Literal["vertical", "horizontal"]
Task = Literal["binary", "multiclass", "regression"]
MODEL_FILE = "model.json"
#: Most label values a classifier takes as classes (its peers refuse wider models). More are a numeric
#: target or an id column: a 22,026-value label of 30,000 rows kept the guest building one-hot targets
#: (5.3 GB of float64) for 37 s before any other error.
MAX_CLASSES = 1000
#: A Paillier key size in bits, as an option (one minimum for every algorithm, from the crypto layer).
KeyBits = Annotated[int, Field(ge=MIN_KEY_BITS, le=MAX_KEY_BITS)]
Seed = Annotated[int, Field(ge=0)]


@dataclass(frozen=True)
class Roster:
    """Who plays which role in a job (party name -> role), as every party reads it from the job."""

    roles: Mapping[str, str]

    def with_role(self, role: str) -> list[str]:
        return sorted(name for name, r in self.roles.items() if r == role)

    def one(self, role: str) -> str:
        names = self.with_role(role)
        if len(names) != 1:
            raise ConfigError(f"the job needs exactly one {role}, found {names or 'none'}")
        return names[0]

    @property
    def aggregator(self) -> str:
        """The one party that aggregates a horizontal job: its `aggregator`, or its `arbiter`."""
        names = self.with_role("aggregator") + self.with_role("arbiter")
        if len(names) != 1:
            raise ConfigError(f"a horizontal job needs exactly one aggregator (or arbiter), found {names or 'none'}")
        return names[0]

    @property
    def coordinator(self) -> str:
        """The party that proposes what the job measured: its guest, else its aggregator."""
        if self.with_role("guest"):
            return self.one("guest")
        if self.with_role("client"):
            return self.aggregator
        return min(self.roles)


@dataclass
class Party:
    """What one party's side of an algorithm gets from the job: who it is, whom it talks to, its rows."""

    name: str
    roster: Roster
    channel: Channel
    #: This party's rows (aligned with the others' after an intersection), or None where its role holds no data.
    table: PartyTable | None
    #: Where the algorithm may keep files while it runs (checkpoints).
    workdir: Path
    #: Reports progress of long loops: ``progress(epoch=3, epochs=30, loss=0.41)`` becomes an event.
    progress: Callable[..., None] = lambda **event: None
    #: Continue from the checkpoints in ``workdir`` (algorithms that checkpoint).
    resume: bool = False
    #: This party's key folder (its signing key, the federation's pinned keys), for protocols that sign.
    keys_dir: Path | None = None
    #: Positions in ``table`` of the rows every party shares, in one agreed order, when `intersect` said
    #: ``keep_all_rows: true`` (the table then keeps all rows); None otherwise. Transfer learning uses it.
    overlap: np.ndarray | None = None

    @property
    def role(self) -> str:
        return self.roster.roles[self.name]

    def rows(self) -> PartyTable:
        """This party's table, or a ConfigError saying that the role needs data here."""
        if self.table is None:
            raise ConfigError(f"party {self.name!r} ({self.role}) needs data for this model but the job gives it none")
        return self.table

    def labelled_rows(self) -> PartyTable:
        table = self.rows()
        if table.label is None:
            raise ConfigError(f"party {self.name!r} needs a 'label' column in its data for this model")
        return table


def classifier_task(task: Task, label: np.ndarray, model: str) -> Task:
    """The task the guest's labels make of ``task``: a binary classifier's labels with three or more
    values are multiclass; more than :data:`MAX_CLASSES` values are refused, pointing at regression."""
    if task == "regression":
        return task
    values = len(np.unique(label))
    if values > MAX_CLASSES:
        raise DataError(f"{model} is a classifier, and the guest's label has {values} distinct values, more than the "
                        f"{MAX_CLASSES} classes it takes; a numeric target needs a regression model (hetero_linr, "
                        "or objective: regression in hetero_secureboost, task: regression in hetero_nn)")
    return "multiclass" if task == "binary" and values > 2 else task


class Part(ABC):
    """One party's share of a trained model."""

    role: str

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The part as JSON-able data: what ``model.json`` holds, and what :meth:`Algorithm.load` reads."""

    def save(self, folder: Path) -> Path:
        """Write ``model.json`` atomically, so a crash never leaves a part that looks complete."""
        path = Path(folder) / MODEL_FILE
        write_whole(path, json.dumps(self.to_dict(), indent=1, default=jsonable).encode())
        return path


class GuestPart(Part):
    """The vertical guest's part: it holds the labels' side and scores rows jointly with the hosts."""

    role = "guest"
    task: Task
    classes: np.ndarray | None  # label values of a classifier, in class-index order (the larger of two positive)
    evaluation_rows: np.ndarray  # rows the training held out (or all of them): where `evaluate` scores

    @abstractmethod
    def predict(self, channel: Channel, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Scores of ``rows`` of ``X`` (the guest's raw columns, aligned with the hosts' tables): P(y=1)
        (binary), class probabilities (multiclass) or values (regression). The hosts serve meanwhile."""

    @abstractmethod
    def finish(self, channel: Channel) -> None:
        """Tell the hosts that serving ends."""

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` as the scores index them: a classifier's class indices (of two values, the larger is 1),
        a regression's values."""
        return labels if self.classes is None else np.searchsorted(self.classes, labels)


class HostPart(Part):
    """A vertical host's part: it answers the guest's scoring requests for its own rows."""

    role = "host"

    @abstractmethod
    def serve(self, channel: Channel, X: np.ndarray) -> None:
        """Answer the guest's requests for rows of ``X`` (this host's raw columns) until it finishes."""


class LocalPart(Part):
    """A horizontal party's copy of the whole model: it scores its own rows alone."""

    task: Task
    feature_names: list[str]  # the columns, in the order the model takes them

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores of rows of ``X`` (columns in :attr:`feature_names` order)."""


@dataclass
class RecordPart(Part):
    """The part of a role that keeps no model (an arbiter): what it did, for the record."""

    role: str
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, **self.facts}


@dataclass(frozen=True)
class Reference:
    """A centralised model's scores on the evaluation rows, for ``isthmus parity``, and its name."""

    scores: np.ndarray
    name: str


@dataclass(frozen=True)
class Disclosure:
    """What one role's peers learn of its data beyond what the model's outputs tell, measured (benchmarks/
    label_leakage.py): a node of that role runs the model only if its policy allows ``weakening``."""

    weakening: str
    #: Said to that role's party, e.g. "the hosts learn your labels".
    headline: str
    #: How, for this model.
    how: str


def labels_to_hosts(how: str) -> Disclosure:
    return Disclosure("labels_to_hosts", "the hosts learn your labels", how)


def representations_to_guest(how: str) -> Disclosure:
    return Disclosure("representations_to_guest", "the guest learns a summary of your columns", how)


class Algorithm(ABC):
    """One federated model as the jobs see it: declaration, training, loading, and its centralised twin."""

    #: The model name in job files (``train: {model: NAME}``).
    name: ClassVar[str]
    family: ClassVar[Family]
    #: Role -> (fewest, most) parties in it; ``None``: no upper bound. Roles not listed may not take part.
    roles: ClassVar[Mapping[str, tuple[int, int | None]]]
    #: The typed options of its `train` step (without ``model``).
    Options: ClassVar[type[Options]]
    #: Whether rows may hold empty cells (the model routes them), else they are refused when loaded.
    accepts_missing: ClassVar[bool] = False
    #: Heavy modules its parties import to train (PyTorch): a launch's fork server imports them once, so its
    #: parties do not import them one by one (about 2 CPU s each for PyTorch).
    imports: ClassVar[tuple[str, ...]] = ()
    #: How `contribution` can value each party: "coalitions" (vertical: retrain on each coalition's
    #: columns), "rounds" (horizontal: from each round's updates), or None.
    contribution: ClassVar[Literal["coalitions", "rounds"] | None] = None
    #: Roles a job may list that take no part in this model (they finish at once), so no peer waits for them.
    idle_roles: ClassVar[frozenset[str]] = frozenset()
    #: Why an `evaluate` step has nothing to score for this model (refused at load), or None: it can be evaluated.
    unevaluable: ClassVar[str | None] = None
    #: What each role's peers learn of its data (:class:`Disclosure`), by role; a role absent: nothing measured.
    discloses: ClassVar[Mapping[str, Disclosure]] = {}

    def check(self, roster: Roster, options: Options, *, allow_plaintext: bool) -> None:
        """Refuse, at load, a job this algorithm cannot run: role counts here; subclasses add their own
        rules (e.g. a benchmark-only mode without the job's plaintext switch)."""
        for role, (fewest, most) in self.roles.items():
            count = len(roster.with_role(role))
            if count < fewest or (most is not None and count > most):
                wanted = f"exactly {fewest}" if fewest == most else f"at least {fewest}" if most is None \
                    else f"{fewest} to {most}"
                raise ConfigError(f"{self.name} needs {wanted} {role}(s), the job has {count}")
        strangers = sorted(name for name, role in roster.roles.items() if role not in self.roles)
        if strangers:
            raise ConfigError(f"{self.name} takes roles {sorted(self.roles)}; {strangers} have none of them")

    def check_contribution(self, options: Options) -> None:
        """Refuse, at load, options under which this model's contributions cannot be measured."""

    def tasks(self, options: Options) -> frozenset[Task]:
        """What a model trained with ``options`` may turn out to be, for checking evaluation metrics at load:
        from its options' ``task`` (or ``objective``), else its own ``task`` attribute; a binary classifier
        turns multiclass with three or more label values. Every task when neither says."""
        task = getattr(options, "task", None) or getattr(options, "objective", None) or getattr(self, "task", None)
        if task not in ("binary", "multiclass", "regression"):
            return frozenset(("binary", "multiclass", "regression"))
        return frozenset(("binary", "multiclass")) if task == "binary" else frozenset((task,))

    @abstractmethod
    def fit(self, party: Party, options: Options) -> Part:
        """Train this party's side with the others; returns its part (the caller saves it)."""

    @abstractmethod
    def load(self, role: str, model: dict[str, Any]) -> Part:
        """A part from what its :meth:`Part.to_dict` wrote (to serve it, or score with it later)."""

    def reference(self, options: Options, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                  X_eval: np.ndarray) -> Reference:
        """The same model trained centrally on pooled rows (for ``isthmus parity`` only)."""
        raise ConfigError(f"parity has no centralised reference for {self.name}")

    def reference_by_party(self, options: Options, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                           X_eval: np.ndarray, owners: list[str], roster: Roster) -> Reference:
        """:meth:`reference` for models whose architecture follows who holds which columns (split neural
        networks: one bottom model per party); ``owners`` names the party of each pooled column. By
        default the pooled reference, which ignores them."""
        return self.reference(options, task, X_train, y_train, X_eval)

    def local_options(self, options: Options) -> Options:
        """Options for a run whose parties all live in this process (nothing leaves it, so nothing needs
        encrypting): contribution values coalitions without hosts this way."""
        return options

    def coalition_options(self, options: Options, part: GuestPart) -> Options:
        """The guest's options for the contribution step's runs on coalitions of the parties that trained
        ``part``: whatever those runs show a party must add nothing to what the job's own run showed it."""
        return options


def jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Options):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
