"""``diffagent bench``: build DABench from the catalogue."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build DABench (instruction -> API call pairs) from the catalogue.")
