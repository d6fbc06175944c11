"""The steps a job file may list, each a function ``(context, options) -> None`` run at every party."""

from __future__ import annotations

from collections.abc import Callable

from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps import binning, contribution, evaluate, intersect, record, selftest, train

Step = Callable[[PartyContext, dict], None]

STEPS: dict[str, Step] = {
    "intersect": intersect.run,
    "binning": binning.run_binning,
    "select": binning.run_select,
    "train": train.run,
    "evaluate": evaluate.run,
    "selftest": selftest.run,
    "contribution": contribution.run,
    "record": record.run,
}

#: Run before any step when the job lists the step: to check options early, or to watch earlier steps.
PREPARE: dict[str, Step] = {
    "contribution": contribution.prepare,
    "record": record.prepare,
}
