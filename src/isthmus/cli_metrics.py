"""The evaluation table every command that shows results prints: one row per evaluating party."""

from __future__ import annotations

from rich.table import Table


def metrics_table(evaluated: dict[str, dict], caption: str = "curves and the rest: each metrics.json") -> Table:
    """The scalar metrics of each party's metrics.json, one row each; curves (gain, lift) stay in the file."""
    names = list(dict.fromkeys(name for report in evaluated.values() for name, value in report["metrics"].items()
                               if isinstance(value, (int, float))))
    table = Table("party", "rows", *names, title="evaluation", caption=caption)
    for party, report in evaluated.items():
        values = report["metrics"]
        table.add_row(party, str(report.get("rows", "")),
                      *(f"{values[name]:.4f}" if isinstance(values.get(name), (int, float)) else "" for name in names))
    return table
