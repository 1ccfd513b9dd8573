"""Shared pieces of the command line: the store, progress bars, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..catalog import Store
from ..config import store_path
from ..errors import UserInputError

console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def open_store() -> Store:
    return Store(store_path())


def open_filled_store() -> Store:
    """The store, or a one-line error saying how to fill it when it is empty."""
    store = open_store()
    try:
        store.require_models()
    except UserInputError as exc:
        store.close()
        fail(str(exc))
    return store


@contextmanager
def progress_bar(description: str, total: float | None = None) -> Iterator[Callable[[float, float], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``. Silent when stderr is no terminal."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task(description, total=total)

        def update(done: float, new_total: float) -> None:
            progress.update(task, completed=done, total=new_total)

        yield update
