"""Exception types that the command line turns into a one-line reason and a non-zero exit."""

__all__ = ["DiffAgentError", "MissingExtra", "UserInputError"]


class DiffAgentError(Exception):
    """Base class of diffagent's own errors."""


class UserInputError(DiffAgentError, ValueError):
    """Bad input from the user: a missing file, a malformed line, an unknown name."""


class MissingExtra(DiffAgentError):
    """A feature whose optional dependencies are not installed; the message names the extra to install."""
