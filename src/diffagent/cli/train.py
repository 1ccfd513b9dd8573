"""``diffagent train``: the default agent's ranker and the two stages of SFTA for the LLM agent."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train the default agent's ranker, and the LLM agent by SFT then RRHF.")
