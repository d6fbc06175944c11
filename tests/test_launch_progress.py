"""A launch whose output is a log or a pipe (a CI job's) prints its parties' progress as lines: it printed
nothing until the job ended, however long it ran."""

from __future__ import annotations

import io
import re

from rich.console import Console

from isthmus.jobs import launcher
from isthmus.jobs.launcher import PROGRESS_EVERY_S, _ProgressLines


def test_a_line_for_each_new_step_or_status_and_progress_at_most_every_few_seconds(monkeypatch):
    out = io.StringIO()
    lines = _ProgressLines(Console(file=out, width=200))
    clock = [100.0]
    monkeypatch.setattr(launcher.time, "monotonic", lambda: clock[0])

    def show(*rows):
        lines.show([(name, "guest", step, status, detail) for name, step, status, detail in rows])

    show(("guest", "-", "running", ""), ("host", "-", "running", ""))  # started, no step yet: nothing to say
    show(("guest", "intersect", "running", ""), ("host", "intersect", "running", ""))
    show(("guest", "intersect", "running", ""), ("host", "intersect", "running", ""))  # nothing new
    clock[0] += 1
    show(("guest", "train", "running", "epoch 1/30 loss 0.6"), ("host", "intersect", "running", ""))
    clock[0] += 1
    show(("guest", "train", "running", "epoch 2/30 loss 0.5"), ("host", "train", "running", ""))  # too soon
    clock[0] += PROGRESS_EVERY_S
    show(("guest", "train", "running", "epoch 9/30 loss 0.4"), ("host", "train", "running", ""))
    show(("guest", "evaluate", "running", ""), ("host", "train", "finished", ""))
    printed = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in out.getvalue().splitlines()]
    assert printed == ["guest intersect running", "host intersect running", "guest train running epoch 1/30 loss 0.6",
                       "host train running", "guest train running epoch 9/30 loss 0.4", "guest evaluate running",
                       "host train finished"]
    assert re.match(r"\d\d:\d\d:\d\d guest intersect running$", out.getvalue().splitlines()[0])


def test_an_epoch_without_a_loss_shows_none():
    """A party that cannot know the loss (an FTL host: the guest holds the labels) printed "loss nan"."""
    assert launcher._detail({"epoch": 4, "epochs": 10}) == "epoch 4/10"
    assert launcher._detail({"epoch": 4, "epochs": 10, "loss": 0.60321}) == "epoch 4/10 loss 0.6032"
    with_model = {"epoch": 2, "epochs": 5, "loss": 0.5, "model": "host-1"}
    assert launcher._detail(with_model) == "model host-1 epoch 2/5 loss 0.5000"
