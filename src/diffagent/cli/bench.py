"""``diffagent bench``: build DABench from the catalogue."""

from __future__ import annotations

from pathlib import Path

import typer

from ..bench.build import build_bench
from ..catalog import CatalogFilter
from ..config import home
from ._common import console, open_filled_store, progress_bar

app = typer.Typer(help="Build DABench (instruction -> API call pairs) from the catalogue.")


@app.command()
def build(
    out: Path = typer.Option(None, help="output folder (default: DIFFAGENT_HOME/bench)"),
    include_soft: bool = typer.Option(False, help="also use images Civitai marks 'Soft' (suggestive)"),
    base_model: list[str] = typer.Option([], help="only checkpoints and LoRAs of these base models"),
) -> None:
    """Write train.jsonl, val.jsonl, test.jsonl, card.md and manifest.json (deterministic)."""
    flt = CatalogFilter(
        base_models=tuple(base_model) or None,
        image_nsfw=("None", "Soft") if include_soft else ("None",),
        rated_safety=False,
    )
    out = out or home() / "bench"
    with open_filled_store() as store, progress_bar("building DABench") as update:
        report = build_bench(store, out, flt=flt, progress=update)
    dropped = sum(report.dropped.values())
    console.print(
        f"{out}: {report.pairs['train']} train, {report.pairs['val']} val, {report.pairs['test']} test pairs"
        f" ({report.novel} novel); {dropped} of {report.images} images dropped, see card.md",
        highlight=False,
    )
