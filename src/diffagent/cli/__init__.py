"""The ``diffagent`` command line: one sub-command group per package of the data flow.

Each sub-command's module is imported when that command runs (or when ``--help`` lists them all), so that
``diffagent select`` does not pay for the HTTP client of ``generate`` or the trainers' options.
"""

from __future__ import annotations

import atexit
import gc
import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
from typer._click import Command
from typer.main import get_command_from_info, get_group
from typer.models import CommandInfo

from ._common import OneLineErrors

__all__ = ["app", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "select": ("select", "select_command"),
    "eval": ("evaluate", "eval_command"),
    "serve": ("serve", "serve_command"),
    "generate": ("generate", "generate_command"),
    "catalog": ("catalog", "app"),
    "bench": ("bench", "app"),
    "train": ("train", "app"),
    "library": ("library", "app"),
    "reward": ("reward", "app"),
}
"""Sub-command -> (module of this package, its Typer group or command function), in ``--help`` order."""


class _Commands(MutableMapping[str, Command]):
    """The root group's commands by name, each built from its module on first look-up."""

    def __init__(self, built: dict[str, Command]) -> None:
        self._built = dict(built)

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            module, attribute = COMMANDS[name]
            target = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            if isinstance(target, typer.Typer):  # a group even with one command (bench build)
                command: Command = get_group(target)
            else:
                command = get_command_from_info(
                    CommandInfo(name=name, callback=target),
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                )
            command.name = name
            self._built[name] = command
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._built))


class _LazyGroup(OneLineErrors):
    """The root group: its sub-commands are :class:`_Commands`, imported on use."""

    def __init__(self, *args: Any, commands: dict[str, Command] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, commands=_Commands(commands or {}), **kwargs)  # type: ignore[arg-type]

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: listing builds nothing


app = typer.Typer(
    cls=_LazyGroup,
    help="Pick a real Civitai checkpoint, LoRAs and settings for a text-to-image prompt.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Pick a real Civitai checkpoint, LoRAs and settings for a text-to-image prompt."""


def main() -> None:
    """The ``diffagent`` entry point; failures are one line each (see :class:`._common.OneLineErrors`)."""
    # The process is about to end when the last exit handler runs: freezing the garbage collector then
    # spares the interpreter's final collection over everything loaded (0.1 s of a warm `select`'s 1 s).
    # Objects are still freed by reference counting as modules are torn down.
    atexit.register(gc.freeze)
    app()
