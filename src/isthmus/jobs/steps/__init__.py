"""The steps a job file may list: each parses its options when the job loads and runs at every party."""

from __future__ import annotations

from isthmus.jobs.steps import aligned, binning, contribution, evaluate, intersect, record, selftest, train
from isthmus.jobs.steps.kind import StepKind

STEPS: dict[str, StepKind] = {kind.name: kind for kind in (
    intersect.STEP, aligned.STEP, binning.BINNING, binning.SELECT, train.STEP, evaluate.STEP, selftest.STEP,
    contribution.STEP, record.STEP,
)}

__all__ = ["STEPS", "StepKind"]
