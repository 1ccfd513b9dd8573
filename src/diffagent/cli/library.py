"""``diffagent library``: the user's model files, matched to the catalogue by hash; verified downloads."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..library import InstalledFile, Library, download_version, lookup_hashes
from ._common import console, fail, open_store, progress_bar

app = typer.Typer(
    help="Your model files (A1111 / Forge / ComfyUI folders), matched to the catalogue by hash."
)


def _printable(text: str | None) -> str:
    """Catalogue text and file names for the terminal: no control characters, no rich markup."""
    return escape("".join(ch if ch.isprintable() else "?" for ch in text or ""))


def _table(files: list[InstalledFile], title: str) -> Table:
    table = Table("type", "model", "base", "version", "file", title=title, title_justify="left")
    for item in files:
        v = item.version
        table.add_row(
            _printable(v.model_type if v else "?"),
            _printable(v.model_name if v else "(not in the catalogue)"),
            _printable(v.base_model if v else ""),
            str(v.version_id) if v else "",
            _printable(str(item.path)),
        )
    return table


@app.command()
def scan(
    folders: list[Path] = typer.Argument(..., help="model folders, e.g. stable-diffusion-webui/models"),
    as_json: bool = typer.Option(False, "--json", help='print {"files", "matched", "unknown"}'),
    online: bool = typer.Option(
        False, "--online", help="look unknown files up on Civitai by hash (only hashes are sent)"
    ),
) -> None:
    """Hash every .safetensors / .ckpt / .pt under FOLDERS (cached: rescans read only changed files) and
    match each to a catalogue version, whatever the file is called."""
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        fail(f"not a folder: {', '.join(missing)}")
    with open_store() as store, Library() as library, progress_bar("hashing model files") as update:
        report = library.scan(folders, store, progress=update)
    result = report.to_json()
    if online and report.unknown:
        found = lookup_hashes(f.hashes.sha256 for f in report.unknown)
        for item in result["unknown"]:
            if item["sha256"] in found:
                item["civitai"] = found[item["sha256"]]
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    Console().print(_table(report.files, f"{len(report.files)} model files"))
    for item in result["unknown"]:
        if "civitai" in item:
            info = item["civitai"]
            console.print(
                f"{_printable(item['path'])}: on Civitai as {_printable(str(info['name']))}"
                f" (version {info['version_id']}, {_printable(str(info['base_model']))}); not in the local"
                " catalogue: `diffagent catalog sync` to add it",
                highlight=False,
            )
    console.print(
        f"{len(report.matched)} matched, {len(report.unknown)} unknown;"
        f" {report.hashed} hashed now ({report.hashed_bytes / 2**20:.1f} MiB), the rest from the cache",
        highlight=False,
    )


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="print the files as JSON")) -> None:
    """The model files scanned so far that are still in place, with the catalogue version of each."""
    with open_store() as store, Library() as library:
        files = library.installed(store)
    if as_json:
        typer.echo(json.dumps([f.to_json() for f in files], ensure_ascii=False))
        return
    if not files:
        fail("the library is empty: run `diffagent library scan DIR` on your model folder")
    Console().print(_table(files, f"{len(files)} installed model files"))


@app.command()
def download(
    version_id: int = typer.Argument(..., help="the Civitai model version id"),
    dest: Path = typer.Option(
        None, "--dest", help="folder to put the file in (default: DIFFAGENT_HOME/models/<A1111 folder>)"
    ),
    vae: bool = typer.Option(
        False, "--vae", help="the VAE file the checkpoint version is published with, into models/VAE"
    ),
) -> None:
    """Download a catalogue version's primary file from Civitai (token: CIVITAI_API_TOKEN), resumable,
    SHA256-verified before it is moved into place; prints its path."""
    with open_store() as store, progress_bar(f"downloading version {version_id}") as update:
        path, hashes = download_version(store, version_id, dest, progress=update, vae=vae)
        with Library() as library:
            library.record(path, hashes)
    typer.echo(str(path))
