"""``diffagent catalog``: fill, inspect and search the model catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..catalog import CatalogFilter, family, import_dump, normalize_hash, search_cards
from ..textsafety import strip_control
from ._common import console, fail, open_filled_store, open_store, progress_bar, shown, stdout

app = typer.Typer(help="Fill, inspect and search the model catalogue (SQLite under DIFFAGENT_HOME).")


def _import(path: Path) -> None:
    if not path.is_file():
        fail(f"no such dump file: {path}" if not path.exists() else f"the dump {path} is not a regular file")
    with open_store() as store, progress_bar(f"importing {shown(path.name)}") as update:
        report = import_dump(store, path, progress=update)
    if report.damaged:
        fail(report.summary(), code=1)  # what came before the damage is imported; the exit says it was cut
    console.print(shown(report.summary()), highlight=False, soft_wrap=True)


@app.command("import")
def import_command(
    path: Path = typer.Argument(..., help="JSONL or JSONL.gz of raw GET /api/v1/models items"),
) -> None:
    """Load a dump of raw Civitai model items into the store (idempotent, all or nothing)."""
    _import(path)


@app.command()
def ensure(
    dump: Path = typer.Option(
        Path("../shared/data/civitai-2023-07/models.jsonl.gz"), help="dump to import if the store is empty"
    ),
    limit: int = typer.Option(200, help="models to crawl from the live API when the dump is absent"),
) -> None:
    """Fill an empty store: import DUMP if it exists, else crawl a small slice of the live API."""
    with open_store() as store:
        if not store.is_empty():
            console.print(f"catalogue ready: {store.stats()['models']} models", highlight=False)
            return
    if dump.is_file():
        _import(dump)
    else:
        from .sync import run_sync

        run_sync(limit=limit)


@app.command()
def sync(
    types: list[str] = typer.Option(
        ["Checkpoint", "LORA"], "--types", help="model types (repeat or comma-separate)"
    ),
    base_models: list[str] = typer.Option(
        [], "--base-models", help="base models, e.g. 'SD 1.5' (repeat or comma-separate; default: all)"
    ),
    limit: int = typer.Option(1000, min=0, help="models to fetch in all (0: every model the query finds)"),
    nsfw: bool = typer.Option(False, "--nsfw/--no-nsfw", help="include models Civitai flags nsfw"),
    sort: str = typer.Option("Most Downloaded", help="'Most Downloaded', 'Highest Rated' or 'Newest'"),
    base_url: str | None = typer.Option(
        None, help="API root (default: DIFFAGENT_CIVITAI_URL or https://civitai.com/api/v1)"
    ),
    images_per_version: int = typer.Option(
        50,
        min=0,
        max=200,
        help="example images asked of /images for a version whose page has no meta (0: none)",
    ),
) -> None:
    """Crawl the live Civitai API into the store (token from CIVITAI_API_TOKEN; rerun to resume)."""
    from .sync import run_sync

    run_sync(
        types=types, base_models=base_models, limit=limit, nsfw=nsfw, sort=sort, base_url=base_url,
        images_per_version=images_per_version,
    )  # fmt: skip


@app.command()
def stats(as_json: bool = typer.Option(False, "--json", help="print the counts as JSON")) -> None:
    """Counts of models, versions, files and images, by type and base model."""
    with open_store() as store:
        counts = store.stats()
    if as_json:
        typer.echo(json.dumps(counts))
        return
    table = Table("what", "count")
    for key in ("models", "versions", "files", "images"):
        table.add_row(key, str(counts[key]))
    for group in ("by_type", "by_base_model"):
        for name, count in counts[group].items():
            table.add_row(f"{group[3:]}: {shown(name)}", str(count))
    stdout().print(table)


@app.command()
def search(
    query: str = typer.Argument(..., help="words to look for in names, tags, trigger words, descriptions"),
    limit: int = typer.Option(10, min=1, help="how many models to show"),
    type_: list[str] = typer.Option(["Checkpoint", "LORA"], "--type", help="model types to include"),
    base_model: list[str] = typer.Option([], help="base models to include (default: all)"),
) -> None:
    """Keyword search over model cards, ranked by BM25."""
    if not query.strip():
        fail("the query is empty")
    flt = CatalogFilter(types=tuple(type_), base_models=tuple(base_model) or None)
    with open_filled_store() as store:
        hits = search_cards(store, query, limit=limit, flt=flt)
    table = Table("model", "version", "name", "type", "base", "downloads", "score", "tags")
    for hit in hits:
        table.add_row(
            str(hit.model_id), str(hit.version_id), shown(hit.name), shown(hit.type or ""),
            shown(hit.base_model or ""), str(hit.downloads), f"{hit.score:.2f}",
            shown(", ".join(hit.tags[:6])),
        )  # fmt: skip
    stdout().print(table)


@app.command()
def lookup(
    digest: str = typer.Argument(..., metavar="HASH", help="AutoV1, AutoV2, AutoV3, SHA256, CRC32 or BLAKE3"),
    offline: bool = typer.Option(False, "--offline", help="look in the local catalogue only"),
    as_json: bool = typer.Option(False, "--json", help="print the version as JSON"),
    base_url: str | None = typer.Option(
        None, help="API root (default: DIFFAGENT_CIVITAI_URL or https://civitai.com/api/v1)"
    ),
) -> None:
    """The catalogue version a model file's hash belongs to; asks Civitai's by-hash look-up when the
    local catalogue does not hold it (token from CIVITAI_API_TOKEN)."""
    from ..catalog import CrawlError, lookup_hash

    if normalize_hash(digest) is None:
        fail("a file hash is hexadecimal: AutoV1, AutoV2, AutoV3, SHA256, CRC32 or BLAKE3")
    with open_store() as store:
        file = store.file_by_hash(digest)
    if file is not None:
        ref = file.version
        found = {
            "source": "catalogue", "model_id": ref.model_id, "version_id": ref.version_id,
            "model_name": ref.model_name, "version_name": ref.version_name, "type": ref.model_type,
            "base_model": ref.base_model,
        }  # fmt: skip
        if not file.is_model:  # the VAE (or config) the version lists, not the model itself
            found["file_type"] = file.type
    elif offline:
        fail(f"no file with hash {digest} in the local catalogue", code=1)
    else:
        try:
            answer = lookup_hash(digest, base_url=base_url)
        except CrawlError as exc:
            fail(str(exc), code=1)
        if answer is None:
            fail(f"no file with hash {digest} in the catalogue or on Civitai", code=1)
        inner = answer.get("model")
        model: dict[str, Any] = inner if isinstance(inner, dict) else {}
        found = {
            "source": "civitai", "model_id": answer.get("modelId"), "version_id": answer.get("id"),
            "model_name": model.get("name"), "version_name": answer.get("name"), "type": model.get("type"),
            "base_model": answer.get("baseModel"),
        }  # fmt: skip
    found["family"] = family(found["base_model"] if isinstance(found["base_model"], str) else None)
    if as_json:
        typer.echo(json.dumps(found, ensure_ascii=False))
        return
    text = {key: strip_control(str(value)) for key, value in found.items()}
    what = f"the {text['file_type']} file of " if "file_type" in text else ""
    typer.echo(
        f"{what}{text['model_name']} / {text['version_name']}: model {text['model_id']},"
        f" version {text['version_id']}, {text['type']}, base model {text['base_model']}"
        f" (from the {text['source']})"
    )
