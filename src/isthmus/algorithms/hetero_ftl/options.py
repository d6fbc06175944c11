"""The options of ``hetero_ftl``, as in the paper: representation size, alignment weight,
regularisation, epochs, batch, learning rate and the communication-saving local rounds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from isthmus.algorithms.base import KeyBits, Seed
from isthmus.options import Options


class FtlOptions(Options):
    #: How each party maps its own columns before its network: ``rank_gauss`` (each column through its
    #: quantiles onto a normal: robust to the heavy tails of money and count columns) or ``standardise``
    #: (for columns mostly at one value, such as pixels, whose rare other values rank-gauss sends to the
    #: normal's +-5.2 clip: benchmarks/ftl.py digits).
    inputs: Literal["rank_gauss", "standardise"] = "rank_gauss"
    #: Width d of the common representation u = Net(x) both parties map their rows into.
    representation: Annotated[int, Field(ge=1, le=128)] = 8
    #: Width of each party's one hidden layer (0: the network is linear).
    hidden: Annotated[int, Field(ge=0, le=512)] = 16
    #: Weight gamma of the alignment loss sum ||u_A - u_B||^2 over the shared rows (0.2, as benchmarks/ftl.py
    #: chose and measures it).
    gamma: Annotated[float, Field(ge=0, le=1000)] = 0.2
    #: Weight of the guest's own logistic loss on all its labelled rows in every step (``supervised.py``):
    #: it anchors u_A to all the guest's labels against the alignment's pull towards the host's
    #: representations of a few shared rows; 2 (chosen on development seeds, benchmarks/ftl.py).
    guest_local_weight: Annotated[float, Field(ge=0, le=1000)] = 2.0
    #: Full-batch steps the guest takes on that loss alone before training together.
    guest_pretrain_epochs: Annotated[int, Field(ge=0, le=100_000)] = 300
    #: L2 penalty on each party's own network weights; the host's is fitted on a few shared rows, so 0.01
    #: (chosen on development seeds, benchmarks/ftl.py).
    l2: Annotated[float, Field(ge=0, le=10)] = 1e-2
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 20
    #: Shared rows per step (50, as benchmarks/ftl.py measures), raised to the floor below which a party
    #: solves what it decrypts for single rows (training.min_batch_rows).
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 50
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.02
    #: Gradient steps each party takes per exchange of the other's encrypted terms (FATE's local_round):
    #: more rounds, fewer encryptions; the other party's terms are stale for the extra rounds.
    local_rounds: Annotated[int, Field(ge=1, le=100)] = 1
    #: ``encrypted``: each party's own Paillier key and masked terms; ``plain``: benchmark_only_plaintext only.
    protection: Literal["encrypted", "plain"] = "encrypted"
    key_bits: KeyBits = 2048
    #: Fewer shared rows than this stop the job before training.
    min_overlap: Annotated[int, Field(ge=1)] = 20
    #: A host row is labelled positive when its score is at least this.
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    seed: Seed = 0
