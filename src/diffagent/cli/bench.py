"""``diffagent bench``: build DABench from the catalogue."""

from __future__ import annotations

from pathlib import Path

import typer

from ..catalog import CatalogFilter, base_models_named
from ..config import home
from ._common import console, open_filled_store, progress_bar, shown

app = typer.Typer(help="Build DABench (instruction -> API call pairs) from the catalogue.")


@app.command()
def build(
    out: Path = typer.Option(None, help="output folder (default: DIFFAGENT_HOME/bench)"),
    include_soft: bool = typer.Option(False, help="also use images Civitai marks 'Soft' (suggestive)"),
    base_model: list[str] = typer.Option(
        [], help="only checkpoints and LoRAs of these base models or families (e.g. 'SDXL 1.0', Pony)"
    ),
) -> None:
    """Write train.jsonl, val.jsonl, test.jsonl, card.md and manifest.json (deterministic)."""
    from ..bench.build import build_bench

    out = out or home() / "bench"
    with open_filled_store() as store, progress_bar("building DABench") as update:
        flt = CatalogFilter(
            base_models=base_models_named(store, base_model) if base_model else None,
            image_nsfw=("None", "Soft") if include_soft else ("None",),
        )
        report = build_bench(store, out, flt=flt, progress=update)
    dropped = sum(report.dropped.values())
    console.print(
        f"{shown(out)}: {report.pairs['train']} train, {report.pairs['val']} val, "
        f"{report.pairs['test']} test pairs"
        f" ({report.novel} novel); {dropped} of {report.images} images dropped, see card.md",
        highlight=False,
    )
