"""Exception types that the command line turns into a one-line reason and a non-zero exit.

::

    DiffAgentError                 every failure a user can reach; str() is one line
    ├── UserInputError             bad input: a missing file, a malformed line, an unknown name (exit 2)
    │   └── UnsafeOutputError      an output path that is a device, a FIFO, a folder or the input
    ├── MissingExtra               a feature whose optional dependencies (an extra) are not installed
    ├── StoreError                 the catalogue cannot be written: disk full, locked by another writer
    ├── CrawlError                 (diffagent.catalog) the Civitai API failed
    └── WorkerDied                 (diffagent._fork) a worker process sharing a batch was killed
"""

__all__ = ["DiffAgentError", "MissingExtra", "StoreError", "UnsafeOutputError", "UserInputError", "one_line"]


class DiffAgentError(Exception):
    """Base class of diffagent's own errors."""

    exit_code = 1


class UserInputError(DiffAgentError, ValueError):
    """Bad input from the user: a missing file, a malformed line, an unknown name."""

    exit_code = 2


class UnsafeOutputError(UserInputError):
    """An output path that is not a regular file or a new name: writing it would clobber something."""


class StoreError(DiffAgentError):
    """The catalogue cannot be read or written (disk full, locked by another import); the store is intact."""


def one_line(message: str) -> str:
    """``message`` on one line: the CLI prints exactly one line per failure."""
    return " ".join(message.split())


class MissingExtra(DiffAgentError):
    """A feature whose optional dependencies are not installed; the message names the extra to install."""
