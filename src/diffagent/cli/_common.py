"""Shared pieces of the command line: the error boundary, the store, progress bars, terminal-safe text."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, cast

import typer

# typer (>= 0.20) carries its own copy of click, whose exceptions its parser raises
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from ..catalog import Store
from ..config import store_path
from ..errors import DiffAgentError, UserInputError, one_line
from ..textsafety import strip_control

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "OneLineErrors",
    "console",
    "fail",
    "open_filled_store",
    "open_store",
    "progress_bar",
    "shown",
    "stdout",
]


class _StderrConsole:
    """rich's console on stderr, made on first use: rich costs a tenth of a second to import, and a
    ``select --json`` that succeeds prints nothing there."""

    _console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, emoji=False)
        return getattr(self._console, name)


console = cast("Console", _StderrConsole())
"""Progress, summaries and errors, on stderr; ``emoji=False`` keeps ``[cat:dog:0.5]`` as written."""


def stdout() -> Console:
    """A console on stdout for tables, printing catalogue text as written (see :func:`shown`)."""
    from rich.console import Console

    return Console(emoji=False)


class CommandFailed(UserInputError):
    """A command's own check of its arguments failed (see :func:`fail`)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop the command with a one-line reason on stderr and exit ``code`` (printed by the boundary)."""
    raise CommandFailed(message, code)


def _report(message: str) -> None:
    from rich.text import Text

    console.print(Text.assemble(("error: ", "bold red"), one_line(strip_control(message))), soft_wrap=True)


def _not_utf8(args: Sequence[str]) -> int | None:
    """The position of the first argument that was not valid UTF-8 (Python keeps such bytes as surrogates)."""
    for position, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return position
    return None


class OneLineErrors(TyperGroup):
    """The command line's one error boundary: every failure is one line on stderr and a non-zero exit.

    Usage errors (click's), diffagent's own errors (their ``exit_code``: 2 for bad input, 1 otherwise),
    operating-system errors (a file that cannot be read or written) and interruptions (130) all end
    here, so commands raise instead of printing; a traceback means a bug.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        code: int
        try:
            if (position := _not_utf8(args)) is not None:
                raise UserInputError(f"argument {position} is not valid UTF-8")
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except NoArgsIsHelpError as exc:  # a bare group: its help is the answer
            exc.show()
            code = exc.exit_code
        except UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "diffagent"
            _report(f"{exc.format_message()} (see {where} --help)")
            code = exc.exit_code
        except ClickException as exc:
            _report(exc.format_message())
            code = exc.exit_code
        except DiffAgentError as exc:
            _report(str(exc))
            code = exc.exit_code
        except (typer.Abort, KeyboardInterrupt):
            _report("interrupted")
            code = 130
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader of stdout went away (| head): nothing to say
                code = 1
            else:
                _report(
                    f"{exc.strerror or type(exc).__name__}" + (f": {exc.filename}" if exc.filename else "")
                )
                code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def shown(text: object) -> str:
    """Catalogue or user text as rich markup that prints it literally, without escape sequences."""
    from rich.markup import escape

    return escape(strip_control(str(text)))


def open_store() -> Store:
    return Store(store_path())


def open_filled_store() -> Store:
    """The store, or a one-line error saying how to fill it when it is empty."""
    store = open_store()
    try:
        store.require_models()
    except BaseException:
        store.close()
        raise
    return store


@contextmanager
def progress_bar(
    description: str, total: float | None = None
) -> Iterator[Callable[[float, float | None], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``. Silent when stderr is no terminal
    (and then rich is not even imported)."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)

        def update(done: float, new_total: float | None) -> None:
            progress.update(task, completed=done, total=new_total)

        yield update
