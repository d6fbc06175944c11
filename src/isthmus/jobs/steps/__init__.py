"""The steps a job file may list, each a function ``(context, options) -> None`` run at every party."""

from __future__ import annotations

from collections.abc import Callable

from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps import evaluate, intersect, selftest, train

Step = Callable[[PartyContext, dict], None]

STEPS: dict[str, Step] = {
    "intersect": intersect.run,
    "train": train.run,
    "evaluate": evaluate.run,
    "selftest": selftest.run,
}
