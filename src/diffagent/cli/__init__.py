"""The ``diffagent`` command line: one sub-command group per package of the data flow."""

from __future__ import annotations

import typer

from . import bench, catalog, evaluate, generate, library, reward, select, serve, train
from ._common import OneLineErrors

__all__ = ["app", "main"]

app = typer.Typer(
    cls=OneLineErrors,
    help="Pick a real Civitai checkpoint, LoRAs and settings for a text-to-image prompt.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(catalog.app, name="catalog")
app.add_typer(bench.app, name="bench")
app.add_typer(train.app, name="train")
app.add_typer(library.app, name="library")
app.add_typer(reward.app, name="reward")
app.command("select")(select.select_command)
app.command("eval")(evaluate.eval_command)
app.command("serve")(serve.serve_command)
app.command("generate")(generate.generate_command)


def main() -> None:
    """The ``diffagent`` entry point; failures are one line each (see :class:`._common.OneLineErrors`)."""
    app()
