"""`deploybench stacks`: the serving stacks, whether each is installed here, what it serves and speaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from deploybench.cli.app import app, console
from deploybench.stacks import all_stacks


def stack_rows() -> list[dict[str, Any]]:
    rows = []
    for name, cls in all_stacks().items():
        stack = cls()
        availability = stack.availability()
        rows.append(
            {
                "stack": name,
                "available": availability.ok,
                "reason": availability.reason or None,
                "protocol": stack.protocol,
                "backends": sorted(stack.backends) if stack.backends is not None else "any",
                "description": stack.description,
            }
        )
    return rows


@app.command()
def stacks(
    json_out: Annotated[Path | None, typer.Option("--json", help="write the list as JSON")] = None,
) -> None:
    """List the serving stacks a study can compare (`run --stacks a,b` or `--stacks all`)."""
    rows = stack_rows()
    table = Table(title="Serving stacks")
    for column in ("stack", "installed", "protocol", "backends", "what"):
        table.add_column(column)
    for row in rows:
        backends = row["backends"] if isinstance(row["backends"], str) else ", ".join(row["backends"])
        installed = "yes" if row["available"] else f"[red]{row['reason']}[/]"
        table.add_row(row["stack"], installed, row["protocol"], backends, row["description"])
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=2))
