"""``diffagent catalog sync``: crawl the live Civitai API into the store, with a progress bar."""

from __future__ import annotations

from collections.abc import Sequence

from ..catalog import CrawlQuery, CrawlReport, crawl
from ._common import console, fail, open_store, progress_bar

__all__ = ["run_sync"]


def _split(values: Sequence[str]) -> tuple[str, ...]:
    """``--types Checkpoint,LORA`` and ``--types Checkpoint --types LORA`` mean the same."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def run_sync(
    types: Sequence[str] = ("Checkpoint", "LORA"),
    base_models: Sequence[str] = (),
    limit: int | None = 1000,
    nsfw: bool = False,
    sort: str = "Most Downloaded",
    base_url: str | None = None,
    images_per_version: int = 50,
) -> CrawlReport:
    """Crawl into the store under ``DIFFAGENT_HOME``; ``limit`` None or 0 crawls everything the query finds.

    Prints a one-line summary; on failure prints a one-line reason and exits non-zero (1 when the API
    failed, 2 on bad input, 130 when interrupted); the committed pages stay and a rerun resumes.
    """
    query = CrawlQuery(
        types=_split(types),
        base_models=_split(base_models),
        nsfw=nsfw,
        sort=sort,
        images_per_version=images_per_version,
    )
    if not query.types:
        fail("--types names no model type")
    with open_store() as store, progress_bar("crawling Civitai", total=limit or None) as update:
        try:
            report = crawl(store, query, limit=limit or None, base_url=base_url, progress=update)
        except KeyboardInterrupt:
            fail("interrupted; rerun the same command to resume the crawl", code=130)
    console.print(report.summary(), highlight=False, soft_wrap=True)
    return report
